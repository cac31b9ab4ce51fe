//! OpenAI's chat-completions wire format as a server speaks it: requests in, completions
//! and `chat.completion.chunk` SSE events out. The same mapping as ferrogate/express's
//! openaiRouter (express.js), in Rust for `ferrogate serve`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, ToolCall, ToolChoice,
  ToolDefinition, Usage,
};

#[derive(Deserialize)]
pub struct OaRequest {
  pub model: String,
  pub messages: Vec<OaMessage>,
  #[serde(default)]
  pub stream: Option<bool>,
  pub stream_options: Option<OaStreamOptions>,
  pub temperature: Option<f64>,
  pub top_p: Option<f64>,
  pub max_tokens: Option<u32>,
  pub max_completion_tokens: Option<u32>,
  pub stop: Option<OaStop>,
  pub tools: Option<Vec<OaTool>>,
  pub tool_choice: Option<Value>,
  pub response_format: Option<OaResponseFormat>,
  pub user: Option<String>,
  #[allow(dead_code)]
  pub metadata: Option<HashMap<String, Value>>,
}

#[derive(Deserialize)]
pub struct OaStreamOptions {
  #[serde(default)]
  pub include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OaStop {
  One(String),
  Many(Vec<String>),
}

#[derive(Deserialize)]
pub struct OaMessage {
  pub role: String,
  pub content: Option<OaContent>,
  pub tool_call_id: Option<String>,
  pub tool_calls: Option<Vec<OaToolCall>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OaContent {
  Text(String),
  Parts(Vec<OaPart>),
}

#[derive(Deserialize)]
pub struct OaPart {
  #[serde(rename = "type")]
  pub kind: String,
  pub text: Option<String>,
  pub image_url: Option<OaImageUrl>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OaImageUrl {
  Url(String),
  Object { url: String },
}

#[derive(Deserialize)]
pub struct OaToolCall {
  pub id: String,
  pub function: OaFunctionCall,
}

#[derive(Deserialize)]
pub struct OaFunctionCall {
  pub name: String,
  #[serde(default)]
  pub arguments: String,
}

#[derive(Deserialize)]
pub struct OaTool {
  pub function: OaFunction,
}

#[derive(Deserialize)]
pub struct OaFunction {
  pub name: String,
  pub description: Option<String>,
  pub parameters: Option<Value>,
}

#[derive(Deserialize)]
pub struct OaResponseFormat {
  #[serde(rename = "type")]
  pub kind: String,
  pub json_schema: Option<OaJsonSchema>,
}

#[derive(Deserialize)]
pub struct OaJsonSchema {
  pub name: Option<String>,
  pub schema: Option<Value>,
}

fn invalid(message: impl Into<String>) -> GatewayError {
  GatewayError::invalid_request(message)
}

/// What the server needs besides the core request.
pub struct Parsed {
  pub model: String,
  pub request: ChatRequest,
  pub stream: bool,
  pub include_usage: bool,
}

pub fn parse_request(body: &[u8]) -> Result<Parsed> {
  let raw: OaRequest = serde_json::from_slice(body).map_err(|e| {
    invalid(format!(
      "the request body is not a valid chat completions request: {e}"
    ))
  })?;
  if raw.model.is_empty() {
    return Err(invalid("you must provide a model parameter"));
  }
  if raw.messages.is_empty() {
    return Err(invalid("'messages' must be a non-empty array"));
  }
  let messages = raw
    .messages
    .into_iter()
    .enumerate()
    .map(|(i, m)| message(i, m))
    .collect::<Result<Vec<_>>>()?;
  let tools = raw
    .tools
    .unwrap_or_default()
    .into_iter()
    .map(|tool| ToolDefinition {
      name: tool.function.name,
      description: tool.function.description,
      parameters: tool
        .function
        .parameters
        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    })
    .collect();
  let tool_choice = match raw.tool_choice {
    None | Some(Value::Null) => None,
    Some(Value::String(choice)) => Some(match choice.as_str() {
      "auto" => ToolChoice::Auto,
      "none" => ToolChoice::None,
      "required" => ToolChoice::Required,
      other => return Err(invalid(format!("tool_choice '{other}' is not supported"))),
    }),
    Some(named) => {
      let name = named
        .pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("tool_choice needs function.name"))?;
      Some(ToolChoice::Named(name.to_string()))
    }
  };
  let response_format = match raw.response_format {
    None => None,
    Some(format) => Some(match format.kind.as_str() {
      "text" => ResponseFormat::Text,
      "json_object" => ResponseFormat::JsonObject,
      "json_schema" => {
        let spec = format.json_schema.unwrap_or(OaJsonSchema {
          name: None,
          schema: None,
        });
        ResponseFormat::JsonSchema {
          name: spec.name.unwrap_or_else(|| "response".into()),
          schema: spec.schema.unwrap_or_else(|| json!({})),
        }
      }
      other => {
        return Err(invalid(format!(
          "response_format.type '{other}' is not supported"
        )))
      }
    }),
  };
  let request = ChatRequest {
    model: String::new(),
    messages,
    temperature: raw.temperature,
    top_p: raw.top_p,
    max_tokens: raw.max_completion_tokens.or(raw.max_tokens),
    stop: match raw.stop {
      None => Vec::new(),
      Some(OaStop::One(stop)) => vec![stop],
      Some(OaStop::Many(stops)) => stops,
    },
    response_format,
    tools,
    tool_choice,
    user: raw.user,
  };
  Ok(Parsed {
    model: raw.model,
    request,
    stream: raw.stream.unwrap_or(false),
    include_usage: raw.stream_options.is_some_and(|o| o.include_usage),
  })
}

fn message(i: usize, raw: OaMessage) -> Result<Message> {
  let role_name = if raw.role == "developer" {
    "system"
  } else {
    raw.role.as_str()
  };
  let role = Role::parse(role_name).ok_or_else(|| {
    invalid(format!(
      "messages[{i}].role must be system, user, assistant or tool, not '{}'",
      raw.role
    ))
  })?;
  let content = match raw.content {
    None => Vec::new(),
    Some(OaContent::Text(text)) => vec![ContentPart::Text(text)],
    Some(OaContent::Parts(parts)) => parts
      .into_iter()
      .enumerate()
      .map(|(j, part)| match part.kind.as_str() {
        "text" => Ok(ContentPart::Text(part.text.unwrap_or_default())),
        "image_url" => {
          let url = match part.image_url {
            Some(OaImageUrl::Url(url)) | Some(OaImageUrl::Object { url }) => url,
            None => {
              return Err(invalid(format!(
                "messages[{i}].content[{j}] needs image_url"
              )))
            }
          };
          Ok(image(url))
        }
        other => Err(invalid(format!(
          "messages[{i}].content[{j}].type '{other}' is not supported (text, image_url)"
        ))),
      })
      .collect::<Result<Vec<_>>>()?,
  };
  if role == Role::Tool && raw.tool_call_id.is_none() {
    return Err(invalid(format!(
      "messages[{i}] has role 'tool' but no tool_call_id"
    )));
  }
  Ok(Message {
    role,
    content,
    tool_call_id: raw.tool_call_id,
    tool_calls: raw
      .tool_calls
      .unwrap_or_default()
      .into_iter()
      .map(|call| ToolCall {
        id: call.id,
        name: call.function.name,
        arguments: call.function.arguments,
        // Gemini's signature does not travel over the OpenAI wire format.
        thought_signature: None,
      })
      .collect(),
  })
}

/// data: URLs become inline images, as the openaiRouter does.
fn image(url: String) -> ContentPart {
  if let Some(rest) = url.strip_prefix("data:") {
    if let Some((mime, data)) = rest.split_once(";base64,") {
      return ContentPart::Image {
        data: data.to_string(),
        mime_type: mime.to_string(),
      };
    }
  }
  ContentPart::ImageUrl(url)
}

pub fn usage_json(usage: &Usage) -> Value {
  json!({
    "prompt_tokens": usage.prompt_tokens,
    "completion_tokens": usage.completion_tokens,
    "total_tokens": usage.total_tokens,
    "prompt_tokens_details": { "cached_tokens": usage.cached_prompt_tokens },
    "completion_tokens_details": { "reasoning_tokens": usage.reasoning_tokens },
  })
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
  Value::Array(
    calls
      .iter()
      .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
      .collect(),
  )
}

pub fn completion_json(response: &ChatResponse, id: &str, created: u64, model: &str) -> Vec<u8> {
  let mut message = json!({
    "role": "assistant",
    "content": if response.tool_calls.is_empty() || !response.content.is_empty() { Value::String(response.content.clone()) } else { Value::Null },
    "refusal": response.refusal,
  });
  if !response.tool_calls.is_empty() {
    message["tool_calls"] = tool_calls_json(&response.tool_calls);
  }
  let body = json!({
    "id": id,
    "object": "chat.completion",
    "created": created,
    "model": model,
    "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": response.finish_reason.as_str() }],
    "usage": usage_json(&response.usage),
  });
  serde_json::to_vec(&body).unwrap_or_default()
}

/// The fixed parts of a stream's chunks, encoded once; a text delta costs one string escape.
pub struct ChunkEncoder {
  head: String,
  usage_field: &'static str,
}

impl ChunkEncoder {
  pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    ChunkEncoder {
      head: format!(
        "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{},\"choices\":",
        quote(id),
        quote(model)
      ),
      usage_field: if include_usage { ",\"usage\":null" } else { "" },
    }
  }

  fn choice(&self, out: &mut Vec<u8>, delta: &str, finish: &str) {
    self.choice_with(out, |out| out.extend_from_slice(delta.as_bytes()), finish);
  }

  /// One chunk whose delta `write_delta` writes straight into `out`.
  fn choice_with(&self, out: &mut Vec<u8>, write_delta: impl FnOnce(&mut Vec<u8>), finish: &str) {
    out.extend_from_slice(self.head.as_bytes());
    out.extend_from_slice(b"[{\"index\":0,\"delta\":");
    write_delta(out);
    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
    out.extend_from_slice(finish.as_bytes());
    out.extend_from_slice(b"}]");
    out.extend_from_slice(self.usage_field.as_bytes());
    out.extend_from_slice(b"}\n\n");
  }

  pub fn role(&self, out: &mut Vec<u8>) {
    self.choice(
      out,
      "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
      "null",
    );
  }

  /// The text is escaped straight into `out`: no string of its own per chunk.
  pub fn text(&self, out: &mut Vec<u8>, text: &str) {
    self.choice_with(
      out,
      |out| {
        out.extend_from_slice(b"{\"content\":");
        write_json_string(out, text);
        out.push(b'}');
      },
      "null",
    );
  }

  pub fn tool_call(
    &self,
    out: &mut Vec<u8>,
    index: u32,
    id: Option<&str>,
    name: Option<&str>,
    arguments: &str,
  ) {
    let mut call = json!({ "index": index });
    if let Some(id) = id {
      call["id"] = json!(id);
      call["type"] = json!("function");
    }
    let mut function = json!({});
    if let Some(name) = name {
      function["name"] = json!(name);
    }
    function["arguments"] = json!(arguments);
    call["function"] = function;
    self.choice(out, &json!({ "tool_calls": [call] }).to_string(), "null");
  }

  pub fn finish(&self, out: &mut Vec<u8>, response: &ChatResponse, include_usage: bool) {
    let finish = format!("\"{}\"", response.finish_reason.as_str());
    self.choice(out, "{}", &finish);
    if include_usage {
      out.extend_from_slice(self.head.as_bytes());
      out.extend_from_slice(b"[],\"usage\":");
      out.extend_from_slice(usage_json(&response.usage).to_string().as_bytes());
      out.extend_from_slice(b"}\n\n");
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
  }
}

/// `text` as a JSON string literal, appended to `out`.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
  // Writing a str into a Vec cannot fail (no I/O, no non-string keys).
  if serde_json::to_writer(&mut *out, text).is_err() {
    out.extend_from_slice(b"\"\"");
  }
}

pub fn error_type(code: ErrorCode) -> &'static str {
  match code {
    ErrorCode::RateLimited => "rate_limit_error",
    ErrorCode::BudgetExceeded => "insufficient_quota",
    ErrorCode::Authentication => "authentication_error",
    ErrorCode::InvalidRequest => "invalid_request_error",
    ErrorCode::NotFound => "not_found_error",
    ErrorCode::Timeout => "timeout_error",
    ErrorCode::Aborted => "aborted",
    ErrorCode::Config | ErrorCode::CallbackError => "server_error",
    ErrorCode::ProviderError | ErrorCode::UpstreamUnavailable => "api_error",
  }
}

pub fn error_code(code: ErrorCode) -> String {
  match code {
    ErrorCode::RateLimited => "rate_limit_exceeded".into(),
    ErrorCode::BudgetExceeded => "insufficient_quota".into(),
    ErrorCode::Authentication => "invalid_api_key".into(),
    ErrorCode::NotFound => "model_not_found".into(),
    ErrorCode::InvalidRequest => "invalid_request".into(),
    other => other.as_str().to_ascii_lowercase(),
  }
}

pub fn error_json(error: &GatewayError) -> Vec<u8> {
  serde_json::to_vec(&json!({
    "error": {
      "message": error.message,
      "type": error_type(error.code),
      "param": null,
      "code": error_code(error.code),
    }
  }))
  .unwrap_or_default()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn openai_requests_map_to_the_core_request() {
    let body = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
      "messages":[{"role":"developer","content":"be brief"},
        {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"42"}],
      "max_tokens":10,"max_completion_tokens":20,"stop":"END","temperature":0.5,
      "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
      "tool_choice":{"type":"function","function":{"name":"f"}},
      "response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#;
    let parsed = parse_request(body).map_err(|e| e.message).expect("parsed");
    assert!(parsed.stream && parsed.include_usage);
    let req = parsed.request;
    assert_eq!(req.messages[0].role, Role::System);
    assert!(matches!(
      req.messages[1].content[1],
      ContentPart::Image { .. }
    ));
    assert_eq!(req.messages[2].tool_calls[0].name, "f");
    assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(req.max_tokens, Some(20));
    assert_eq!(req.stop, vec!["END".to_string()]);
    assert_eq!(req.tool_choice, Some(ToolChoice::Named("f".into())));
    assert!(matches!(
      req.response_format,
      Some(ResponseFormat::JsonSchema { .. })
    ));
    for bad in [
      &br#"{"model":"m","messages":[]}"#[..],
      b"{",
      br#"{"messages":[]}"#,
    ] {
      let error = parse_request(bad).map(|_| ()).expect_err("invalid");
      assert_eq!(error.code, ErrorCode::InvalidRequest);
    }
  }

  #[test]
  fn chunks_are_openai_chunk_objects() {
    let encoder = ChunkEncoder::new("chatcmpl-1", 7, "m", true);
    let mut out = Vec::new();
    encoder.role(&mut out);
    encoder.text(&mut out, "a\"b");
    encoder.tool_call(&mut out, 0, Some("c1"), Some("f"), "{");
    let text = String::from_utf8(out).expect("utf8");
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
      let chunk: Value = serde_json::from_str(&event["data: ".len()..]).expect("json");
      assert_eq!(chunk["object"], "chat.completion.chunk");
      assert!(chunk["usage"].is_null());
    }
    assert!(text.contains(r#""delta":{"content":"a\"b"}"#));
    assert!(text.contains(r#""tool_calls":[{"function":{"arguments":"{","name":"f"},"id":"c1","index":0,"type":"function"}]"#));
  }
}
