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
    })
  }
}

/// `{"error": {...}}`, OpenAI's shape; compatible servers also send `{"detail": "..."}`
/// or `{"message": "..."}` or `{"error": "text"}`.
#[derive(Debug, Deserialize)]
pub struct ErrorEnvelope {
  pub error: Option<serde_json::Value>,
  pub detail: Option<serde_json::Value>,
  pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
  #[serde(default)]
  pub message: String,
  #[serde(rename = "type")]
  pub kind: Option<String>,
  pub code: Option<String>,
  pub param: Option<String>,
}

impl ErrorDetail {
  pub fn describe(&self) -> String {
    let mut parts = vec![];
    if let Some(kind) = &self.kind {
      parts.push(format!("type={kind}"));
    }
    if let Some(code) = &self.code {
      parts.push(format!("code={code}"));
    }
    if let Some(param) = &self.param {
      parts.push(format!("param={param}"));
    }
    format!("openai error {}", parts.join(" "))
  }
}

impl ErrorEnvelope {
  pub fn into_detail(self) -> Option<ErrorDetail> {
    let text_detail = |message: String| ErrorDetail {
      message,
      kind: None,
      code: None,
      param: None,
    };
    match self.error {
      Some(serde_json::Value::String(message)) => return Some(text_detail(message)),
      Some(value @ serde_json::Value::Object(_)) => {
        // `code` may be a number at some compatible servers.
        let mut value = value;
        if let Some(code) = value.get_mut("code") {
          if !code.is_string() && !code.is_null() {
            *code = serde_json::Value::String(code.to_string());
          }
        }
        return serde_json::from_value(value).ok();
      }
      _ => {}
    }
    if let Some(detail) = self.detail {
      let message = match detail {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
      };
      return Some(text_detail(message));
    }
    self.message.map(text_detail)
  }
}
