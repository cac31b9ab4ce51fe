//! Gemini's GenerateContentResponse, fields we read only.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
  #[serde(default)]
  pub candidates: Vec<Candidate>,
  pub prompt_feedback: Option<PromptFeedback>,
  pub usage_metadata: Option<UsageMetadata>,
  pub model_version: Option<String>,
  pub response_id: Option<String>,
  /// A stream (or a compatible server's 200) can carry an error object instead of a response.
  pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
  pub content: Option<Content>,
  pub finish_reason: Option<String>,
  #[serde(default)]
  pub index: u32,
}

#[derive(Debug, Deserialize)]
pub struct Content {
  #[serde(default)]
  pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
  pub text: Option<String>,
  #[serde(default)]
  pub thought: bool,
  pub function_call: Option<FunctionCall>,
  /// Gemini 3 signs the reasoning behind a call; the signature must come back with it.
  pub thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
  pub id: Option<String>,
  pub name: String,
  #[serde(default)]
  pub args: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
  pub block_reason: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
  pub prompt_token_count: Option<u64>,
  pub candidates_token_count: Option<u64>,
  pub thoughts_token_count: Option<u64>,
  pub cached_content_token_count: Option<u64>,
}
