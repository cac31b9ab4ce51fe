//! OpenAI's response JSON, only the fields we read. Unknown fields (`obfuscation`,
//! Azure's `content_filter_results`, …) are ignored.

use serde::Deserialize;

use super::finish_reason;
use crate::error::{GatewayError, Result};
use crate::types::{Completion, ToolCall, Usage};

#[derive(Debug, Deserialize)]
pub struct ChatCompletion {
  #[serde(default)]
  pub id: String,
  #[serde(default)]
  pub model: String,
  #[serde(default)]
  pub choices: Vec<Choice>,
  pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub struct Choice {
  pub message: ResponseMessage,
  pub finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseMessage {
  pub content: Option<String>,
  pub refusal: Option<String>,
  #[serde(default)]
  pub tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Deserialize)]
pub struct WireToolCall {
  #[serde(default)]
  pub id: String,
  pub function: WireFunction,
}

#[derive(Debug, Deserialize)]
pub struct WireFunction {
  #[serde(default)]
  pub name: String,
  #[serde(default)]
  pub arguments: String,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct WireUsage {
  #[serde(default)]
  pub prompt_tokens: u64,
  #[serde(default)]
  pub completion_tokens: u64,
  pub prompt_tokens_details: Option<PromptDetails>,
  pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct PromptDetails {
  pub cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct CompletionDetails {
  pub reasoning_tokens: Option<u64>,
}

impl WireUsage {
  pub fn normalize(self) -> Usage {
    let mut usage = Usage::new(self.prompt_tokens, self.completion_tokens);
    usage.cached_prompt_tokens = self
      .prompt_tokens_details
      .and_then(|d| d.cached_tokens)
      .unwrap_or(0);
    usage.reasoning_tokens = self
      .completion_tokens_details
      .and_then(|d| d.reasoning_tokens)
      .unwrap_or(0);
    usage
  }
}

impl ChatCompletion {
  pub fn into_completion(self) -> Result<Completion> {
    let choice = self
      .choices
      .into_iter()
      .next()
      .ok_or_else(|| GatewayError::protocol("openai sent a response with no choices"))?;
    let tool_calls = choice
      .message
      .tool_calls
      .into_iter()
      .map(|call| ToolCall {
        id: call.id,
        name: call.function.name,
        arguments: call.function.arguments,
        ..ToolCall::default()
      })
      .collect();
    Ok(Completion {
      id: self.id,
      model: self.model,
      content: choice.message.content.unwrap_or_default(),
      refusal: choice.message.refusal,
      tool_calls,
      finish_reason: finish_reason(choice.finish_reason.as_deref().unwrap_or("stop")),
      usage: self.usage.map(WireUsage::normalize),
      embeddings: None,
    })
  }
}
