//! Anthropic Messages: `POST {baseUrl}/v1/messages`.
//!
//! JSON output has no native switch on the stable API, so `responseFormat` becomes a
//! forced tool whose input is the JSON document; its input is returned (and streamed) as
//! the answer's text, and no tool call is reported.

mod stream;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{json, Map, Value};

use super::{
  arguments_value, join_url, parse_data_url, parse_json, Adapter, AlternatingTurns, HttpCall,
  StreamDecoder,
};
use crate::error::{GatewayError, Result};
use crate::secret::Secret;
use crate::types::{
  ChatRequest, Completion, ContentPart, FinishReason, Message, ResponseFormat, Role, ToolChoice,
};

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is the default when the caller gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
/// The forced tool that carries JSON output.
pub const JSON_TOOL_NAME: &str = "json_output";

pub struct Anthropic {
  pub base_url: String,
  pub api_key: Option<Secret>,
  pub headers: Vec<(String, String)>,
}

impl Adapter for Anthropic {
  fn vendor(&self) -> &'static str {
    "anthropic"
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    let mut headers = self.headers.clone();
    if let Some(key) = &self.api_key {
      headers.push(("x-api-key".into(), key.expose().to_string()));
    }
    headers.push(("anthropic-version".into(), API_VERSION.into()));
    Ok(HttpCall {
      url: join_url(&self.base_url, "v1/messages"),
      headers,
      body: request_body(req, stream)?,
    })
  }

  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    let message: wire::MessageResponse = parse_json("anthropic", body)?;
    Ok(message.into_completion(json_mode(req)))
  }

  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
    Box::new(stream::AnthropicStream::new(json_mode(req)))
  }

  fn count_tokens_url(&self) -> Option<String> {
    Some(join_url(&self.base_url, "v1/messages/count_tokens"))
  }
}

fn json_mode(req: &ChatRequest) -> bool {
  matches!(
    req.response_format,
    Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { .. })
  )
}

pub fn request_body(req: &ChatRequest, stream: bool) -> Result<Value> {
  let mut body = Map::new();
  body.insert("model".into(), json!(req.model));
  body.insert(
    "max_tokens".into(),
    json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
  );
  let system: Vec<String> = req
    .messages
    .iter()
    .filter(|m| m.role == Role::System)
    .map(Message::joined_text)
    .collect();
  if !system.is_empty() {
    body.insert("system".into(), json!(system.join("\n\n")));
  }
  body.insert("messages".into(), Value::Array(turns(&req.messages)?));
  if let Some(temperature) = req.temperature {
    body.insert("temperature".into(), json!(temperature));
  }
  if let Some(top_p) = req.top_p {
    body.insert("top_p".into(), json!(top_p));
  }
  if !req.stop.is_empty() {
    body.insert("stop_sequences".into(), json!(req.stop));
  }
  let mut tools: Vec<Value> = req
    .tools
    .iter()
    .map(|tool| {
      let mut out = Map::new();
      out.insert("name".into(), json!(tool.name));
      if let Some(description) = &tool.description {
        out.insert("description".into(), json!(description));
      }
      out.insert("input_schema".into(), tool.parameters.clone());
      Value::Object(out)
    })
    .collect();
  let mut tool_choice = req.tool_choice.as_ref().map(|choice| match choice {
    ToolChoice::Auto => json!({"type": "auto"}),
    ToolChoice::None => json!({"type": "none"}),
    ToolChoice::Required => json!({"type": "any"}),
    ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
  });
  let json_schema = match &req.response_format {
    Some(ResponseFormat::JsonObject) => Some(json!({"type": "object"})),
    Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema.clone()),
    _ => None,
  };
  if let Some(schema) = json_schema {
    tools.push(json!({
      "name": JSON_TOOL_NAME,
      "description": "Respond with the answer as this JSON document.",
      "input_schema": schema,
    }));
    tool_choice = Some(json!({"type": "tool", "name": JSON_TOOL_NAME}));
  }
  if !tools.is_empty() {
    body.insert("tools".into(), Value::Array(tools));
  }
  if let Some(choice) = tool_choice {
    body.insert("tool_choice".into(), choice);
  }
  if let Some(user) = &req.user {
    body.insert("metadata".into(), json!({"user_id": user}));
  }
  if stream {
    body.insert("stream".into(), json!(true));
  }
  Ok(Value::Object(body))
}

/// Anthropic wants strictly alternating user/assistant turns: tool results become user
/// turns of `tool_result` blocks, and consecutive turns of one role are merged.
fn turns(messages: &[Message]) -> Result<Vec<Value>> {
  let mut turns = AlternatingTurns::default();
  for message in messages {
    let (role, blocks) = match message.role {
      Role::System => continue,
      Role::User => ("user", content_blocks(&message.content)),
      Role::Tool => {
        let id = message.tool_call_id.clone().ok_or_else(|| {
          GatewayError::invalid_request("a message with role 'tool' needs toolCallId")
        })?;
        (
          "user",
          vec![json!({
            "type": "tool_result",
            "tool_use_id": id,
            "content": message.joined_text(),
          })],
        )
      }
      Role::Assistant => {
        let mut blocks = content_blocks(&message.content);
        for call in &message.tool_calls {
          blocks.push(json!({
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": arguments_value(&call.arguments)?,
          }));
        }
        ("assistant", blocks)
      }
    };
    turns.push(role, blocks);
  }
  Ok(turns.into_json("content"))
}

fn content_blocks(parts: &[ContentPart]) -> Vec<Value> {
  parts
    .iter()
    .filter(|part| !matches!(part, ContentPart::Text(text) if text.is_empty()))
    .map(|part| match part {
      ContentPart::Text(text) => json!({"type": "text", "text": text}),
      ContentPart::Image { data, mime_type } => json!({
        "type": "image",
        "source": {"type": "base64", "media_type": mime_type, "data": data},
      }),
      ContentPart::ImageUrl(url) => match parse_data_url(url) {
        Some((mime_type, data)) => json!({
          "type": "image",
          "source": {"type": "base64", "media_type": mime_type, "data": data},
        }),
        None => json!({"type": "image", "source": {"type": "url", "url": url}}),
      },
    })
    .collect()
}

pub fn finish_reason(raw: &str) -> FinishReason {
  match raw {
    "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
    "tool_use" => FinishReason::ToolCalls,
    "refusal" => FinishReason::ContentFilter,
    _ => FinishReason::Stop,
  }
}
