//! Anthropic's response JSON, only the fields we read.

use serde::Deserialize;
use serde_json::Value;

use super::{finish_reason, JSON_TOOL_NAME};
use crate::providers::arguments_text;
use crate::types::{Completion, FinishReason, ToolCall, Usage};

#[derive(Debug, Deserialize)]
pub struct MessageResponse {
  #[serde(default)]
  pub id: String,
  #[serde(default)]
  pub model: String,
  #[serde(default)]
  pub content: Vec<Block>,
  pub stop_reason: Option<String>,
  pub usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
  Text {
    text: String,
  },
  ToolUse {
    id: String,
    name: String,
    #[serde(default)]
    input: Value,
  },
  /// thinking, redacted_thinking, compaction, server tools: not part of the answer.
  #[serde(other)]
  Other,
}

/// Every field optional: a `message_delta` carries only what changed.
#[derive(Debug, Deserialize, Default, Clone)]
pub struct WireUsage {
  pub input_tokens: Option<u64>,
  pub output_tokens: Option<u64>,
  pub cache_creation_input_tokens: Option<u64>,
  pub cache_read_input_tokens: Option<u64>,
  /// With context-management compaction, one entry per billed step.
  pub iterations: Option<Vec<WireUsage>>,
}

impl WireUsage {
  /// Values in a later report are cumulative: present fields replace earlier ones.
  pub fn merge(&mut self, later: WireUsage) {
    if later.input_tokens.is_some() {
      self.input_tokens = later.input_tokens;
    }
    if later.output_tokens.is_some() {
      self.output_tokens = later.output_tokens;
    }
    if later.cache_creation_input_tokens.is_some() {
      self.cache_creation_input_tokens = later.cache_creation_input_tokens;
    }
    if later.cache_read_input_tokens.is_some() {
      self.cache_read_input_tokens = later.cache_read_input_tokens;
    }
    if later.iterations.is_some() {
      self.iterations = later.iterations;
    }
  }

  /// What is billed: prompt includes cache reads and writes; with iterations, the sum
  /// over every step (the top-level numbers cover only the last one).
  pub fn normalize(&self) -> Usage {
    let steps: Vec<&WireUsage> = match &self.iterations {
      Some(iterations) if !iterations.is_empty() => iterations.iter().collect(),
      _ => vec![self],
    };
    let billed = |step: &WireUsage| {
      Usage::with_prompt_cache(
        step.input_tokens.unwrap_or(0),
        step.cache_read_input_tokens.unwrap_or(0),
        step.cache_creation_input_tokens.unwrap_or(0),
        step.output_tokens.unwrap_or(0),
      )
    };
    steps
      .into_iter()
      .map(billed)
      .fold(Usage::default(), |sum, step| Usage {
        cached_prompt_tokens: sum
          .cached_prompt_tokens
          .saturating_add(step.cached_prompt_tokens),
        cache_write_prompt_tokens: sum
          .cache_write_prompt_tokens
          .saturating_add(step.cache_write_prompt_tokens),
        ..Usage::new(
          sum.prompt_tokens.saturating_add(step.prompt_tokens),
          sum.completion_tokens.saturating_add(step.completion_tokens),
        )
      })
  }
}

impl MessageResponse {
  pub fn into_completion(self, json_mode: bool) -> Completion {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in self.content {
      match block {
        Block::Text { text } => content.push_str(&text),
        Block::ToolUse { name, input, .. } if json_mode && name == JSON_TOOL_NAME => {
          content.push_str(&arguments_text(&input));
        }
        Block::ToolUse { id, name, input } => tool_calls.push(ToolCall {
          id,
          name,
          arguments: arguments_text(&input),
          ..ToolCall::default()
        }),
        Block::Other => {}
      }
    }
    let mut finish = finish_reason(self.stop_reason.as_deref().unwrap_or("end_turn"));
    if json_mode && finish == FinishReason::ToolCalls && tool_calls.is_empty() {
      finish = FinishReason::Stop;
    }
    Completion {
      id: self.id,
      model: self.model,
      content,
      refusal: None,
      tool_calls,
      finish_reason: finish,
      usage: self.usage.as_ref().map(WireUsage::normalize),
      embeddings: None,
    }
  }
}
