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
    embeddings: None,
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

/// Vector size of mock embeddings when the request names none.
pub const DEFAULT_EMBEDDING_DIMENSIONS: u32 = 256;

/// Embeddings for an embeddings call (its inputs are its user messages): one unit vector
/// per input, seeded by a hash of the text, so the same text always gets the same vector
/// and different texts (almost surely) different ones. Usage is the inputs' token count.
pub fn embed(req: &ChatRequest, dimensions: Option<u32>) -> Completion {
  let dimensions = dimensions.unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS) as usize;
  let encoding = encoding_for(&req.model);
  let mut tokens = 0u64;
  let vectors = req
    .messages
    .iter()
    .map(|message| {
      let text = message.joined_text();
      tokens += encoding.count_text(&text) as u64;
      unit_vector(&text, dimensions)
    })
    .collect();
  Completion {
    id: String::new(),
    model: req.model.clone(),
    content: String::new(),
    refusal: None,
    tool_calls: Vec::new(),
    finish_reason: FinishReason::Stop,
    usage: Some(Usage::new(tokens, 0)),
    embeddings: Some(vectors),
  }
}

/// A pseudo-random vector of length 1, the same for the same text (SplitMix64 seeded by
/// FNV-1a of the text).
fn unit_vector(text: &str, dimensions: usize) -> Vec<f32> {
  let mut state = fnv1a(text);
  let mut next = || {
    state = state.wrapping_add(0x9e3779b97f4a7c15);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
  };
  // Uniform in [-1, 1): 53 random bits scaled.
  let raw: Vec<f64> = (0..dimensions)
    .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    .collect();
  let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
  if norm == 0.0 {
    return raw.iter().map(|_| 0.0).collect();
  }
  raw.iter().map(|x| (x / norm) as f32).collect()
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

  fn inputs(texts: &[&str]) -> ChatRequest {
    ChatRequest {
      model: "embed".into(),
      messages: texts
        .iter()
        .map(|t| Message::text(Role::User, *t))
        .collect(),
      ..ChatRequest::default()
    }
  }

  #[test]
  fn mock_embeddings_are_deterministic_unit_vectors_of_the_asked_size() {
    let first = embed(&inputs(&["hello", "world", "hello"]), Some(64));
    let vectors = first.embeddings.expect("vectors");
    assert_eq!(vectors.len(), 3);
    for vector in &vectors {
      assert_eq!(vector.len(), 64);
      let norm = vector
        .iter()
        .map(|x| f64::from(*x).powi(2))
        .sum::<f64>()
        .sqrt();
      assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert_eq!(vectors[0], vectors[2], "same text, same vector");
    assert_ne!(vectors[0], vectors[1]);
    let again = embed(&inputs(&["hello"]), Some(64))
      .embeddings
      .expect("vectors");
    assert_eq!(again[0], vectors[0], "deterministic across calls");
    let default = embed(&inputs(&["hello"]), None)
      .embeddings
      .expect("vectors");
    assert_eq!(default[0].len(), DEFAULT_EMBEDDING_DIMENSIONS as usize);
    assert!(first.usage.expect("usage").prompt_tokens >= 3);
  }

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
