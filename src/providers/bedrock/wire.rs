//! Converse's response JSON and stream payloads, only the fields we read.

use serde::Deserialize;
use serde_json::Value;

use super::{finish_reason, JSON_TOOL_NAME};
use crate::providers::arguments_text;
use crate::types::{Completion, FinishReason, ToolCall, Usage};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
  pub output: Option<Output>,
  pub stop_reason: Option<String>,
  pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
pub struct Output {
  pub message: Option<OutputMessage>,
}

#[derive(Debug, Deserialize)]
pub struct OutputMessage {
  #[serde(default)]
  pub content: Vec<Block>,
}

/// A content block is an object with one member naming its kind.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Block {
  pub text: Option<String>,
  pub tool_use: Option<ToolUse>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
  #[serde(default)]
  pub tool_use_id: String,
  #[serde(default)]
  pub name: String,
  #[serde(default)]
  pub input: Value,
}

/// `inputTokens` counts only the uncached prompt; cache reads and writes come apart.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub struct WireUsage {
  pub input_tokens: Option<u64>,
  pub output_tokens: Option<u64>,
  pub cache_read_input_tokens: Option<u64>,
  pub cache_write_input_tokens: Option<u64>,
}

impl WireUsage {
  /// What is billed: the prompt includes cache reads and writes.
  pub fn normalize(&self) -> Usage {
    Usage::with_prompt_cache(
      self.input_tokens.unwrap_or(0),
      self.cache_read_input_tokens.unwrap_or(0),
      self.cache_write_input_tokens.unwrap_or(0),
      self.output_tokens.unwrap_or(0),
    )
  }
}

impl ConverseResponse {
  pub fn into_completion(self, model: &str, json_mode: bool) -> Completion {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let blocks = self
      .output
      .and_then(|output| output.message)
      .map(|message| message.content)
      .unwrap_or_default();
    for block in blocks {
      if let Some(text) = block.text {
        content.push_str(&text);
      }
      match block.tool_use {
        Some(tool) if json_mode && tool.name == JSON_TOOL_NAME => {
          content.push_str(&arguments_text(&tool.input));
        }
        Some(tool) => tool_calls.push(ToolCall {
          id: tool.tool_use_id,
          name: tool.name,
          arguments: arguments_text(&tool.input),
          ..ToolCall::default()
        }),
        None => {}
      }
    }
    let mut finish = finish_reason(self.stop_reason.as_deref().unwrap_or("end_turn"));
    if finish == FinishReason::ToolCalls && tool_calls.is_empty() {
      finish = FinishReason::Stop;
    }
    Completion {
      id: String::new(),
      model: model.to_string(),
      content,
      refusal: None,
      tool_calls,
      finish_reason: finish,
      usage: self.usage.as_ref().map(WireUsage::normalize),
      embeddings: None,
    }
  }
}
