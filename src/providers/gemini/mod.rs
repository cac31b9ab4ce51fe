//! Google Gemini (Developer API): `POST {baseUrl}/v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`, key in the `x-goog-api-key` header (never in
//! the URL, where proxies and logs would keep it).
//!
//! Schemas go out as `parametersJsonSchema` / `responseJsonSchema`: callers write plain
//! JSON Schema (as for OpenAI), which the older `parameters` / `responseSchema` fields
//! (an OpenAPI subset) reject as soon as it uses `additionalProperties` or `$ref`.

pub mod embeddings;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{
  arguments_value, in_band_error, parse_data_url, parse_json, url_with_segments, Adapter,
  AlternatingTurns, EmbedAnswer, EmbedBatch, ErrorBody, HttpCall, StreamDecoder,
};
use crate::error::{GatewayError, Result};
use crate::secret::Secret;
use crate::types::{
  ChatRequest, Completion, ContentPart, FinishReason, Message, ResponseFormat, Role, ToolChoice,
};

pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

pub struct Gemini {
  pub base_url: String,
  pub api_key: Option<Secret>,
  pub headers: Vec<(String, String)>,
}

impl Adapter for Gemini {
  fn vendor(&self) -> &'static str {
    "gemini"
  }

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    Some(("x-goog-api-key".into(), key.to_string()))
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    let headers = self.request_headers();
    let model = req.model.strip_prefix("models/").unwrap_or(&req.model);
    let (method, query) = if stream {
      ("streamGenerateContent", Some("alt=sse"))
    } else {
      ("generateContent", None)
    };
    let resource = format!("{model}:{method}");
    Ok(HttpCall {
      url: url_with_segments(&self.base_url, &["v1beta", "models", &resource], query)?,
      headers,
      body: request_body(req)?,
    })
  }

  fn parse_response(&self, _req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    let response: wire::GenerateResponse = parse_json("gemini", body)?;
    if response.error.is_some() {
      return Err(in_band_error("gemini", ErrorBody::parse(body), body));
    }
    let mut assembler = crate::assembler::StreamAssembler::new();
    stream::apply_chunk(&mut assembler, response, &mut 0);
    // Like a stream, an answer without a finish reason (no candidates) is not an answer.
    stream::settle_finish(&mut assembler, "gemini answered without a candidate")?;
    Ok(assembler.into_completion())
  }

  fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
    Box::new(stream::GeminiStream::default())
  }

  fn embed_batch_limit(&self) -> usize {
    embeddings::BATCH_LIMIT
  }

  fn build_embed(&self, batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    let model = batch.model.strip_prefix("models/").unwrap_or(batch.model);
    let resource = format!("{model}:batchEmbedContents");
    Ok(HttpCall {
      url: url_with_segments(&self.base_url, &["v1beta", "models", &resource], None)?,
      headers: self.request_headers(),
      body: embeddings::request_body(model, batch.input, batch.dimensions),
    })
  }

  fn parse_embed(&self, body: &[u8], expected: usize) -> Result<EmbedAnswer> {
    embeddings::parse_response(body, expected)
  }
}

impl Gemini {
  /// The key goes in `x-goog-api-key`, never in the URL.
  fn request_headers(&self) -> Vec<(String, String)> {
    let mut headers = self.headers.clone();
    headers.extend(
      self
        .api_key
        .as_ref()
        .and_then(|key| self.key_header(key.expose())),
    );
    headers
  }
}

pub fn request_body(req: &ChatRequest) -> Result<Value> {
  let mut body = Map::new();
  let system: Vec<String> = req
    .messages
    .iter()
    .filter(|m| m.role == Role::System)
    .map(Message::joined_text)
    .collect();
  if !system.is_empty() {
    body.insert(
      "systemInstruction".into(),
      json!({"parts": [{"text": system.join("\n\n")}]}),
    );
  }
  body.insert("contents".into(), Value::Array(contents(&req.messages)?));
  let mut config = Map::new();
  if let Some(temperature) = req.temperature {
    config.insert("temperature".into(), json!(temperature));
  }
  if let Some(top_p) = req.top_p {
    config.insert("topP".into(), json!(top_p));
  }
  if let Some(max_tokens) = req.max_tokens {
    config.insert("maxOutputTokens".into(), json!(max_tokens));
  }
  if !req.stop.is_empty() {
    config.insert("stopSequences".into(), json!(req.stop));
  }
  match &req.response_format {
    None | Some(ResponseFormat::Text) => {}
    Some(ResponseFormat::JsonObject) => {
      config.insert("responseMimeType".into(), json!("application/json"));
    }
    Some(ResponseFormat::JsonSchema { schema, .. }) => {
      config.insert("responseMimeType".into(), json!("application/json"));
      config.insert("responseJsonSchema".into(), schema.clone());
    }
  }
  if !config.is_empty() {
    body.insert("generationConfig".into(), Value::Object(config));
  }
  if !req.tools.is_empty() {
    let declarations: Vec<Value> = req
      .tools
      .iter()
      .map(|tool| {
        let mut out = Map::new();
        out.insert("name".into(), json!(tool.name));
        if let Some(description) = &tool.description {
          out.insert("description".into(), json!(description));
        }
        out.insert("parametersJsonSchema".into(), tool.parameters.clone());
        Value::Object(out)
      })
      .collect();
    body.insert(
      "tools".into(),
      json!([{ "functionDeclarations": declarations }]),
    );
  }
  if let Some(choice) = &req.tool_choice {
    let config = match choice {
      ToolChoice::Auto => json!({"mode": "AUTO"}),
      ToolChoice::None => json!({"mode": "NONE"}),
      ToolChoice::Required => json!({"mode": "ANY"}),
      ToolChoice::Named(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    body.insert(
      "toolConfig".into(),
      json!({ "functionCallingConfig": config }),
    );
  }
  Ok(Value::Object(body))
}

/// Turns of `user` and `model`. Tool results are `functionResponse` parts of a user turn,
/// named after the call they answer (Gemini matches by name; ids are ours).
fn contents(messages: &[Message]) -> Result<Vec<Value>> {
  let mut call_names: HashMap<&str, &str> = HashMap::new();
  let mut turns = AlternatingTurns::default();
  for message in messages {
    let (role, parts) = match message.role {
      Role::System => continue,
      Role::User => ("user", parts(&message.content)),
      Role::Assistant => {
        let mut parts = parts(&message.content);
        for call in &message.tool_calls {
          call_names.insert(&call.id, &call.name);
          let mut part = json!({
            "functionCall": {"name": call.name, "args": arguments_value(&call.arguments)?},
          });
          if let Some(signature) = &call.thought_signature {
            part["thoughtSignature"] = json!(signature);
          }
          parts.push(part);
        }
        ("model", parts)
      }
      Role::Tool => {
        let id = message.tool_call_id.as_deref().ok_or_else(|| {
          GatewayError::invalid_request("a message with role 'tool' needs toolCallId")
        })?;
        let name = call_names.get(id).ok_or_else(|| {
          GatewayError::invalid_request(format!(
            "tool result '{id}' answers no tool call of an earlier assistant message"
          ))
        })?;
        let text = message.joined_text();
        // Gemini wants an object; a JSON object result goes as is, anything else wrapped.
        let response = match serde_json::from_str::<Value>(&text) {
          Ok(object @ Value::Object(_)) => object,
          Ok(other) => json!({ "result": other }),
          Err(_) => json!({ "result": text }),
        };
        (
          "user",
          vec![json!({"functionResponse": {"name": name, "response": response}})],
        )
      }
    };
    turns.push(role, parts);
  }
  Ok(turns.into_json("parts"))
}

fn parts(content: &[ContentPart]) -> Vec<Value> {
  content
    .iter()
    .filter(|part| !matches!(part, ContentPart::Text(text) if text.is_empty()))
    .map(|part| match part {
      ContentPart::Text(text) => json!({"text": text}),
      ContentPart::Image { data, mime_type } => {
        json!({"inlineData": {"mimeType": mime_type, "data": data}})
      }
      ContentPart::ImageUrl(url) => match parse_data_url(url) {
        Some((mime_type, data)) => json!({"inlineData": {"mimeType": mime_type, "data": data}}),
        None => json!({"fileData": {"mimeType": mime_from_url(url), "fileUri": url}}),
      },
    })
    .collect()
}

fn mime_from_url(url: &str) -> &'static str {
  let path = url
    .split(['?', '#'])
    .next()
    .unwrap_or(url)
    .to_ascii_lowercase();
  if path.ends_with(".png") {
    "image/png"
  } else if path.ends_with(".webp") {
    "image/webp"
  } else if path.ends_with(".gif") {
    "image/gif"
  } else {
    "image/jpeg"
  }
}

pub fn finish_reason(raw: &str) -> FinishReason {
  match raw {
    "MAX_TOKENS" => FinishReason::Length,
    "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
      FinishReason::ContentFilter
    }
    _ => FinishReason::Stop,
  }
}
