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
  CacheAt, CacheTtl, ChatRequest, Completion, ContentPart, FinishReason, Message, ResponseFormat,
  Role, ToolChoice,
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

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    Some(("x-api-key".into(), key.to_string()))
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    let mut headers = self.headers.clone();
    headers.extend(
      self
        .api_key
        .as_ref()
        .and_then(|key| self.key_header(key.expose())),
    );
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
  if let Some(system) = system(req) {
    body.insert("system".into(), system);
  }
  body.insert("messages".into(), Value::Array(turns(req)?));
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
    .enumerate()
    .map(|(k, tool)| {
      let mut out = Map::new();
      out.insert("name".into(), json!(tool.name));
      if let Some(description) = &tool.description {
        out.insert("description".into(), json!(description));
      }
      out.insert("input_schema".into(), tool.parameters.clone());
      let mut out = Value::Object(out);
      mark_cache(&mut out, req.tool_cache(k));
      out
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

/// `cache_control` for a breakpoint: ephemeral, with the `ttl` when one was asked.
pub fn cache_control(ttl: CacheTtl) -> Value {
  match ttl.as_str() {
    Some(ttl) => json!({"type": "ephemeral", "ttl": ttl}),
    None => json!({"type": "ephemeral"}),
  }
}

/// Puts `cache_control` on `block` when a breakpoint was asked there.
fn mark_cache(block: &mut Value, ttl: Option<CacheTtl>) {
  if let (Some(ttl), Some(block)) = (ttl, block.as_object_mut()) {
    block.insert("cache_control".into(), cache_control(ttl));
  }
}

/// The system prompt: the system messages joined as one string, or, when a breakpoint is
/// set on one of them, as text blocks (the only form `cache_control` can go on).
fn system(req: &ChatRequest) -> Option<Value> {
  let system: Vec<(usize, &Message)> = req
    .messages
    .iter()
    .enumerate()
    .filter(|(_, m)| m.role == Role::System)
    .collect();
  if system.is_empty() {
    return None;
  }
  let cached = req.cache_breakpoints.iter().any(|breakpoint| {
    let message = match breakpoint.at {
      CacheAt::Message(i) | CacheAt::Part { message: i, .. } => i,
      CacheAt::Tool(_) => return false,
    };
    system.iter().any(|(i, _)| *i == message)
  });
  if !cached {
    let texts: Vec<String> = system.iter().map(|(_, m)| m.joined_text()).collect();
    return Some(json!(texts.join("\n\n")));
  }
  let mut blocks = Vec::new();
  for (i, message) in system {
    let mut own = content_blocks(req, i, &message.content);
    own.retain(|block| block["type"] == "text");
    if let Some(last) = own.last_mut() {
      mark_cache(last, req.message_cache(i));
    }
    blocks.extend(own);
  }
  Some(Value::Array(blocks))
}

/// Anthropic wants strictly alternating user/assistant turns: tool results become user
/// turns of `tool_result` blocks, and consecutive turns of one role are merged. A message's
/// breakpoint goes on its last block, a part's on that part's block.
fn turns(req: &ChatRequest) -> Result<Vec<Value>> {
  let mut turns = AlternatingTurns::default();
  for (i, message) in req.messages.iter().enumerate() {
    let (role, mut blocks) = match message.role {
      Role::System => continue,
      Role::User => ("user", content_blocks(req, i, &message.content)),
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
        let mut blocks = content_blocks(req, i, &message.content);
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
    if let Some(last) = blocks.last_mut() {
      mark_cache(last, req.message_cache(i));
    }
    turns.push(role, blocks);
  }
  Ok(turns.into_json("content"))
}

/// The blocks of message `message`'s parts (empty text dropped), each with its breakpoint.
fn content_blocks(req: &ChatRequest, message: usize, parts: &[ContentPart]) -> Vec<Value> {
  parts
    .iter()
    .enumerate()
    .filter(|(_, part)| !matches!(part, ContentPart::Text(text) if text.is_empty()))
    .map(|(j, part)| {
      let mut block = match part {
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
      };
      mark_cache(&mut block, req.part_cache(message, j));
      block
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
