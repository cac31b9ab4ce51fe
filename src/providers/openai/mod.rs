//! OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp,
//! Azure-style gateways): `POST {baseUrl}/chat/completions`.

pub mod embeddings;
pub mod responses;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::{json, Map, Value};

use super::{join_url, parse_json, Adapter, EmbedAnswer, EmbedBatch, HttpCall, StreamDecoder};
use crate::error::Result;
use crate::secret::Secret;
use crate::types::{
  ChatRequest, Completion, ContentPart, FinishReason, Message, ResponseFormat, Role, ToolChoice,
};

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

pub struct OpenAi {
  pub base_url: String,
  pub api_key: Option<Secret>,
  pub organization: Option<String>,
  pub headers: Vec<(String, String)>,
}

impl OpenAi {
  fn request_headers(&self) -> Vec<(String, String)> {
    let mut headers = self.headers.clone();
    headers.extend(
      self
        .api_key
        .as_ref()
        .and_then(|key| self.key_header(key.expose())),
    );
    if let Some(organization) = &self.organization {
      headers.push(("openai-organization".into(), organization.clone()));
    }
    headers
  }
}

impl Adapter for OpenAi {
  fn vendor(&self) -> &'static str {
    "openai"
  }

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    Some(("authorization".into(), format!("Bearer {key}")))
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    Ok(HttpCall {
      url: join_url(&self.base_url, "chat/completions"),
      headers: self.request_headers(),
      body: request_body(req, stream),
    })
  }

  /// `GET /models`: costs nothing, and needs the same key and base URL as a call.
  fn health_check(&self) -> Option<HttpCall> {
    Some(HttpCall {
      url: join_url(&self.base_url, "models"),
      headers: self.request_headers(),
      body: serde_json::Value::Null,
    })
  }

  fn parse_response(&self, _req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    let response: wire::ChatCompletion = parse_json("openai", body)?;
    response.into_completion()
  }

  fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
    Box::new(stream::OpenAiStream::default())
  }

  fn embed_batch_limit(&self) -> usize {
    embeddings::BATCH_LIMIT
  }

  fn build_embed(&self, batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    Ok(HttpCall {
      url: join_url(&self.base_url, "embeddings"),
      headers: self.request_headers(),
      body: embeddings::request_body(batch),
    })
  }

  fn parse_embed(&self, body: &[u8], expected: usize) -> Result<EmbedAnswer> {
    embeddings::parse_response(body, expected)
  }
}

/// Models that reject `max_tokens` and want `max_completion_tokens` (reasoning models).
fn wants_max_completion_tokens(model: &str) -> bool {
  ["o1", "o3", "o4", "gpt-5"]
    .iter()
    .any(|prefix| model.starts_with(prefix))
}

pub fn request_body(req: &ChatRequest, stream: bool) -> Value {
  let mut body = Map::new();
  body.insert("model".into(), json!(req.model));
  body.insert(
    "messages".into(),
    Value::Array(req.messages.iter().map(message_json).collect()),
  );
  if let Some(temperature) = req.temperature {
    body.insert("temperature".into(), json!(temperature));
  }
  if let Some(top_p) = req.top_p {
    body.insert("top_p".into(), json!(top_p));
  }
  if let Some(max_tokens) = req.max_tokens {
    let field = if wants_max_completion_tokens(&req.model) {
      "max_completion_tokens"
    } else {
      "max_tokens"
    };
    body.insert(field.into(), json!(max_tokens));
  }
  if !req.stop.is_empty() {
    body.insert("stop".into(), json!(req.stop));
  }
  if let Some(key) = &req.prompt_cache_key {
    body.insert("prompt_cache_key".into(), json!(key));
  }
  match &req.response_format {
    None | Some(ResponseFormat::Text) => {}
    Some(ResponseFormat::JsonObject) => {
      body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    Some(ResponseFormat::JsonSchema { name, schema }) => {
      body.insert(
        "response_format".into(),
        json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}}),
      );
    }
  }
  if !req.tools.is_empty() {
    let tools: Vec<Value> = req
      .tools
      .iter()
      .map(|tool| {
        let mut function = Map::new();
        function.insert("name".into(), json!(tool.name));
        if let Some(description) = &tool.description {
          function.insert("description".into(), json!(description));
        }
        function.insert("parameters".into(), tool.parameters.clone());
        json!({"type": "function", "function": function})
      })
      .collect();
    body.insert("tools".into(), Value::Array(tools));
  }
  if let Some(choice) = &req.tool_choice {
    let value = match choice {
      ToolChoice::Auto => json!("auto"),
      ToolChoice::None => json!("none"),
      ToolChoice::Required => json!("required"),
      ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
    };
    body.insert("tool_choice".into(), value);
  }
  if let Some(user) = &req.user {
    body.insert("user".into(), json!(user));
  }
  if stream {
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
  }
  Value::Object(body)
}

fn message_json(message: &Message) -> Value {
  match message.role {
    Role::System => json!({"role": "system", "content": message.joined_text()}),
    Role::Tool => json!({
      "role": "tool",
      "tool_call_id": message.tool_call_id.clone().unwrap_or_default(),
      "content": message.joined_text(),
    }),
    Role::User => json!({"role": "user", "content": content_json(&message.content)}),
    Role::Assistant => {
      let mut out = Map::new();
      out.insert("role".into(), json!("assistant"));
      let text = message.joined_text();
      let content = if text.is_empty() && !message.tool_calls.is_empty() {
        Value::Null
      } else {
        json!(text)
      };
      out.insert("content".into(), content);
      if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
          .tool_calls
          .iter()
          .map(|call| {
            json!({
              "id": call.id,
              "type": "function",
              "function": {"name": call.name, "arguments": call.arguments},
            })
          })
          .collect();
        out.insert("tool_calls".into(), Value::Array(calls));
      }
      Value::Object(out)
    }
  }
}

/// A plain string when the content is one text part (what every compatible server
/// accepts), else OpenAI's array of parts.
fn content_json(parts: &[ContentPart]) -> Value {
  if let [ContentPart::Text(text)] = parts {
    return json!(text);
  }
  Value::Array(
    parts
      .iter()
      .map(|part| match part {
        ContentPart::Text(text) => json!({"type": "text", "text": text}),
        ContentPart::Image { data, mime_type } => json!({
          "type": "image_url",
          "image_url": {"url": format!("data:{mime_type};base64,{data}")},
        }),
        ContentPart::ImageUrl(url) => json!({"type": "image_url", "image_url": {"url": url}}),
      })
      .collect(),
  )
}

pub fn finish_reason(raw: &str) -> FinishReason {
  match raw {
    "length" => FinishReason::Length,
    "tool_calls" | "function_call" => FinishReason::ToolCalls,
    "content_filter" => FinishReason::ContentFilter,
    _ => FinishReason::Stop,
  }
}
