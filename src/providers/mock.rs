//! The built-in offline provider for tests and demos (like LiteLLM's `mock_response`):
//! a deterministic answer derived from the prompt, streamed word by word with a small
//! delay, usage filled in. Offered tools (and a `tool_choice` other than `none`), it calls
//! one, the named one or else the first, with arguments that are an instance of the tool's
//! `parameters` schema; once a tool result comes back it answers in text, as a model would
//! at the end of a tool loop. A `json_schema` request gets a deterministic instance of the
//! schema (see [`schema_instance`]), a `json_object` one a small object echoing the prompt.

use std::time::Duration;

use serde_json::json;

use super::schema_instance;
use crate::tokens::encoding_for;
use crate::types::{
  ChatRequest, Completion, FinishReason, ResponseFormat, Role, ToolCall, ToolChoice, Usage,
};

pub const DEFAULT_CHUNK_DELAY: Duration = Duration::from_millis(15);

#[derive(Debug, Clone, Copy)]
pub struct MockConfig {
  pub chunk_delay: Duration,
}

/// The answer as the chunks it streams in, and the whole completion.
pub fn respond(req: &ChatRequest) -> (Vec<String>, Completion) {
  let prompt = req
    .messages
    .iter()
    .rev()
    .find(|m| m.role == Role::User)
    .map(|m| m.joined_text())
    .unwrap_or_default();
  let excerpt: String = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
  let excerpt: String = excerpt.chars().take(80).collect();
  let tool_result = req
    .messages
    .last()
    .filter(|m| m.role == Role::Tool)
    .map(|m| m.joined_text());
  let (text, tool_calls, finish_reason) = if let Some(result) = tool_result {
    let result: String = result.split_whitespace().collect::<Vec<_>>().join(" ");
    let result: String = result.chars().take(80).collect();
    let text = format!(
      "This is the ferrogate mock provider answering \"{excerpt}\" with the tool's result: {result}"
    );
    (text, vec![], FinishReason::Stop)
  } else if let Some(tool) = tool_to_call(req) {
    let parameters = tool
      .parameters
      .as_object()
      .map(|_| schema_instance::instance_of(&tool.parameters))
      .unwrap_or_else(|| json!({}));
    let call = ToolCall {
      id: format!("call_mock_{}", fnv1a(&excerpt) % 1_000_000),
      name: tool.name.clone(),
      arguments: parameters.to_string(),
      ..ToolCall::default()
    };
    (String::new(), vec![call], FinishReason::ToolCalls)
  } else if let Some(ResponseFormat::JsonSchema { schema, .. }) = &req.response_format {
    (
      schema_instance::instance_of(schema).to_string(),
      vec![],
      FinishReason::Stop,
    )
  } else if matches!(req.response_format, Some(ResponseFormat::JsonObject)) {
    (
      json!({ "mock": true, "echo": excerpt }).to_string(),
      vec![],
      FinishReason::Stop,
    )
  } else {
    let text = format!(
      "This is the ferrogate mock provider answering \"{excerpt}\". It streams one word at a time, so you can watch tokens arrive without an API key."
    );
    (text, vec![], FinishReason::Stop)
  };
  let chunks = if req.response_format.is_some() && tool_calls.is_empty() && text.starts_with('{') {
    json_chunks(&text)
  } else {
    word_chunks(&text)
  };
  let encoding = encoding_for(&req.model);
  let completion_tokens = encoding.count_text(&text) as u64
    + tool_calls
      .iter()
      .map(|c| encoding.count_text(&c.arguments) as u64)
      .sum::<u64>();
  let usage = Usage::new(
    encoding.count_messages(&req.messages) as u64,
    completion_tokens,
  );
  let completion = Completion {
    id: format!("mock-{:016x}", fnv1a(&prompt)),
    model: req.model.clone(),
    content: text,
    refusal: None,
    tool_calls,
    finish_reason,
    usage: Some(usage),
  };
  (chunks, completion)
}

/// The tool a model would call: the named one, else the first offered, unless the caller
/// said `none` (or named a tool it did not offer).
fn tool_to_call(req: &ChatRequest) -> Option<&crate::types::ToolDefinition> {
  match &req.tool_choice {
    Some(ToolChoice::None) => None,
    Some(ToolChoice::Named(name)) => req.tools.iter().find(|t| &t.name == name),
    Some(ToolChoice::Auto) | Some(ToolChoice::Required) | None => req.tools.first(),
  }
}

/// Words with the space before them, so prose streams a word at a time.
fn word_chunks(text: &str) -> Vec<String> {
  let mut chunks = Vec::new();
  let mut start = 0;
  for (i, c) in text.char_indices() {
    if c == ' ' && i > start {
      chunks.push(text[start..i].to_string());
      start = i;
    }
  }
  if start < text.len() {
    chunks.push(text[start..].to_string());
  }
  chunks
}

/// Compact JSON has no spaces to split at: pieces of a few characters instead, cut on
/// character boundaries, so a JSON answer streams like prose does.
fn json_chunks(text: &str) -> Vec<String> {
  const CHUNK_CHARS: usize = 12;
  let chars: Vec<char> = text.chars().collect();
  chars
    .chunks(CHUNK_CHARS)
    .map(|piece| piece.iter().collect())
    .collect()
}

/// A stable hash so the same prompt always gets the same ids.
fn fnv1a(text: &str) -> u64 {
  text.bytes().fold(0xcbf29ce484222325, |hash, byte| {
    (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::types::Message;

  #[test]
  fn answer_is_deterministic_and_chunks_rebuild_it() {
    let req = ChatRequest {
      model: "demo".into(),
      messages: vec![Message::text(Role::User, "hi there")],
      ..ChatRequest::default()
    };
    let (chunks, completion) = respond(&req);
    assert_eq!(chunks.concat(), completion.content);
    assert!(completion.content.contains("\"hi there\""));
    assert_eq!(respond(&req).1, completion);
    assert!(completion.usage.expect("usage").completion_tokens > 10);
  }

  #[test]
  fn json_schema_answer_is_the_schema_instance_streamed_in_pieces() {
    let schema = json!({
      "type": "object",
      "properties": { "intent": { "enum": ["order", "refund"] }, "summary": { "type": "string", "minLength": 40 } },
      "required": ["intent", "summary"]
    });
    let req = ChatRequest {
      model: "demo".into(),
      messages: vec![Message::text(Role::User, "I want my money back")],
      response_format: Some(ResponseFormat::JsonSchema {
        name: "intent".into(),
        schema: schema.clone(),
      }),
      ..ChatRequest::default()
    };
    let (chunks, completion) = respond(&req);
    let answer: serde_json::Value = serde_json::from_str(&completion.content).expect("JSON answer");
    assert_eq!(answer, schema_instance::instance_of(&schema));
    assert!(chunks.len() > 3, "{chunks:?}");
    assert_eq!(chunks.concat(), completion.content);
    assert_eq!(completion.finish_reason, FinishReason::Stop);
  }

  fn with_tools(choice: Option<ToolChoice>, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
      model: "demo".into(),
      messages,
      tools: vec![
        crate::types::ToolDefinition {
          name: "get_weather".into(),
          description: None,
          parameters: json!({
            "type": "object",
            "properties": { "city": { "type": "string" }, "days": { "type": "integer", "minimum": 1 } },
            "required": ["city", "days"]
          }),
        },
        crate::types::ToolDefinition {
          name: "get_time".into(),
          description: None,
          parameters: json!({ "type": "object", "properties": { "zone": { "enum": ["UTC", "CET"] } }, "required": ["zone"] }),
        },
      ],
      tool_choice: choice,
      ..ChatRequest::default()
    }
  }

  #[test]
  fn offered_tools_are_called_with_arguments_fitting_their_schema() {
    let ask = vec![Message::text(Role::User, "weather in Oslo?")];
    for choice in [None, Some(ToolChoice::Auto), Some(ToolChoice::Required)] {
      let (_, completion) = respond(&with_tools(choice, ask.clone()));
      assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
      assert_eq!(completion.tool_calls[0].name, "get_weather");
      let arguments: serde_json::Value =
        serde_json::from_str(&completion.tool_calls[0].arguments).expect("JSON arguments");
      assert!(arguments["city"].is_string(), "{arguments}");
      assert!(
        arguments["days"].as_i64().is_some_and(|d| d >= 1),
        "{arguments}"
      );
    }
    let (_, named) = respond(&with_tools(
      Some(ToolChoice::Named("get_time".into())),
      ask.clone(),
    ));
    assert_eq!(named.tool_calls[0].name, "get_time");
    let (_, none) = respond(&with_tools(Some(ToolChoice::None), ask));
    assert!(none.tool_calls.is_empty());
    assert_eq!(none.finish_reason, FinishReason::Stop);
  }

  #[test]
  fn a_tool_result_gets_a_text_answer() {
    let mut result = Message::text(Role::Tool, "12 degrees, light rain");
    result.tool_call_id = Some("call_1".into());
    let (chunks, completion) = respond(&with_tools(
      Some(ToolChoice::Auto),
      vec![Message::text(Role::User, "weather in Oslo?"), result],
    ));
    assert!(completion.tool_calls.is_empty());
    assert!(
      completion.content.contains("12 degrees"),
      "{}",
      completion.content
    );
    assert_eq!(chunks.concat(), completion.content);
  }

  #[test]
  fn json_object_answer_is_an_object() {
    let req = ChatRequest {
      model: "demo".into(),
      messages: vec![Message::text(Role::User, "say \"hi\" é")],
      response_format: Some(ResponseFormat::JsonObject),
      ..ChatRequest::default()
    };
    let (chunks, completion) = respond(&req);
    let answer: serde_json::Value = serde_json::from_str(&completion.content).expect("JSON answer");
    assert_eq!(answer["echo"], "say \"hi\" é");
    assert_eq!(chunks.concat(), completion.content);
  }
}
