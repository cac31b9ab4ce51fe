//! AWS Bedrock Runtime Converse: `POST {baseUrl}/model/{modelId}/converse` and
//! `/converse-stream` (AWS's binary event stream), signed with SigV4 or sent with a
//! Bedrock API key as Bearer.
//!
//! A model id may be a plain id, an inference-profile id or an ARN; it is one path segment,
//! encoded as the AWS SDKs encode it (`:` and `/` too), and signed as it is sent.
//! JSON output is a forced tool, as for Anthropic (Converse has no JSON switch).

pub mod sigv4;
mod stream;
mod wire;

#[cfg(test)]
mod tests;

use reqwest::header::HeaderMap;
use serde_json::{json, Map, Value};

use super::auth::{Authorizer, AwsCredentials};
use super::{
  arguments_value, parse_data_url, parse_json, Adapter, AlternatingTurns, HttpCall, StreamDecoder,
  JSON_CONTENT_TYPE,
};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::pipeline::ProviderConfig;
use crate::secret::Secret;
use crate::types::{
  ChatRequest, Completion, ContentPart, FinishReason, ResponseFormat, Role, ToolChoice,
};

pub use sigv4::Credentials;

/// The forced tool that carries JSON output.
pub const JSON_TOOL_NAME: &str = "json_output";
const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The endpoint for `region` when no `baseUrl` is given.
pub fn default_base_url(region: &str) -> String {
  format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// How each request proves who sends it.
#[derive(Debug, Clone)]
pub enum Auth {
  SigV4(sigv4::Signer),
  /// A Bedrock API key, sent as `Authorization: Bearer`.
  ApiKey(Secret),
}

pub struct Bedrock {
  pub base_url: String,
  pub auth: Auth,
  pub headers: Vec<(String, String)>,
}

fn env(name: &str) -> Option<String> {
  std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The adapter of a `bedrock` provider `config.name`: the region from `region` /
/// `AWS_REGION` / `AWS_DEFAULT_REGION`; auth from `apiKey`, else `credentials`, else
/// `AWS_BEARER_TOKEN_BEDROCK`, else `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+
/// `AWS_SESSION_TOKEN`). `api_key` is `apiKey` or `AWS_BEARER_TOKEN_BEDROCK`, already among
/// `secrets`; every other secret is added there. What is missing is CONFIG naming it.
pub fn build(
  config: &ProviderConfig,
  api_key: Option<Secret>,
  secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  Ok(Box::new(Bedrock::new(config, api_key, secrets)?))
}

impl Bedrock {
  pub fn new(
    config: &ProviderConfig,
    api_key: Option<Secret>,
    secrets: &mut Vec<Secret>,
  ) -> Result<Bedrock> {
    let name = &config.name;
    let region = config
      .region
      .clone()
      .filter(|r| !r.is_empty())
      .or_else(|| env("AWS_REGION"))
      .or_else(|| env("AWS_DEFAULT_REGION"))
      .ok_or_else(|| {
        GatewayError::config(format!(
          "provider '{name}' (bedrock) has no region: set region, or AWS_REGION"
        ))
      })?;
    let valid_region = region
      .bytes()
      .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_region {
      return Err(GatewayError::config(format!(
        "provider '{name}' (bedrock) region '{region}' is not an AWS region name"
      )));
    }
    let explicit_key = config.api_key.as_deref().is_some_and(|k| !k.is_empty());
    let auth = match (api_key, &config.credentials) {
      (Some(key), _) if explicit_key => Auth::ApiKey(key),
      (_, Some(given)) => Auth::SigV4(signer(name, &region, given, "credentials")?),
      (Some(key), None) => Auth::ApiKey(key),
      (None, None) => {
        let from_env = AwsCredentials {
          access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_default(),
          secret_access_key: env("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
          session_token: env("AWS_SESSION_TOKEN"),
        };
        if from_env.access_key_id.is_empty() && from_env.secret_access_key.is_empty() {
          return Err(GatewayError::config(format!(
            "provider '{name}' (bedrock) has no credentials: set credentials or apiKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_BEARER_TOKEN_BEDROCK)"
          )));
        }
        Auth::SigV4(signer(
          name,
          &region,
          &from_env,
          "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        )?)
      }
    };
    if let Auth::SigV4(signer) = &auth {
      secrets.push(signer.credentials.secret_access_key.clone());
      secrets.extend(signer.credentials.session_token.clone());
    }
    let base_url = config
      .base_url
      .clone()
      .unwrap_or_else(|| default_base_url(&region));
    Ok(Bedrock {
      base_url,
      auth,
      headers: config.headers.clone(),
    })
  }
}

fn signer(name: &str, region: &str, given: &AwsCredentials, source: &str) -> Result<sigv4::Signer> {
  let missing = |what: &str| {
    GatewayError::config(format!(
      "provider '{name}' (bedrock) {source} has no {what}"
    ))
  };
  if given.access_key_id.is_empty() {
    return Err(missing("accessKeyId"));
  }
  if given.secret_access_key.is_empty() {
    return Err(missing("secretAccessKey"));
  }
  let header_safe = |value: &str| reqwest::header::HeaderValue::from_str(value).is_ok();
  let token_safe = given.session_token.as_deref().is_none_or(header_safe);
  if !header_safe(&given.access_key_id) || !token_safe {
    return Err(GatewayError::config(format!(
      "provider '{name}' (bedrock) {source} holds characters no HTTP header may carry"
    )));
  }
  Ok(sigv4::Signer {
    credentials: Credentials {
      access_key_id: given.access_key_id.clone(),
      secret_access_key: Secret::new(given.secret_access_key.clone()),
      session_token: given
        .session_token
        .clone()
        .filter(|t| !t.is_empty())
        .map(Secret::new),
    },
    region: region.to_string(),
    service: "bedrock",
  })
}

impl Adapter for Bedrock {
  fn vendor(&self) -> &'static str {
    "bedrock"
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    if matches!(req.model.as_str(), "" | "." | "..") {
      return Err(GatewayError::invalid_request(format!(
        "'{}' is not a Bedrock model id",
        req.model
      )));
    }
    let action = if stream {
      "converse-stream"
    } else {
      "converse"
    };
    let url = format!(
      "{}/model/{}/{action}",
      self.base_url.trim_end_matches('/'),
      percent_encoding::utf8_percent_encode(&req.model, sigv4::URI_ENCODE)
    );
    let mut headers = self.headers.clone();
    let accept = if stream {
      EVENT_STREAM_CONTENT_TYPE
    } else {
      JSON_CONTENT_TYPE
    };
    headers.push(("accept".into(), accept.into()));
    if let Auth::ApiKey(key) = &self.auth {
      headers.extend(self.key_header(key.expose()));
    }
    Ok(HttpCall {
      url,
      headers,
      body: request_body(req)?,
    })
  }

  fn authorizer(&self) -> Option<&dyn Authorizer> {
    match &self.auth {
      Auth::SigV4(signer) => Some(signer),
      Auth::ApiKey(_) => None,
    }
  }

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    Some(("authorization".into(), format!("Bearer {key}")))
  }

  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    let response: wire::ConverseResponse = parse_json("bedrock", body)?;
    Ok(response.into_completion(&req.model, json_mode(req)))
  }

  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
    Box::new(stream::BedrockStream::new(&req.model, json_mode(req)))
  }

  fn build_embed(&self, _batch: &super::EmbedBatch<'_>) -> Result<HttpCall> {
    Err(GatewayError::invalid_request(
      "bedrock embeddings (Titan, Cohere through InvokeModel) are not supported yet: use an openai, gemini or mock provider for embeddings",
    ))
  }

  fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    let mut error = super::http_error("bedrock", status, headers, body);
    // `x-amzn-ErrorType: ThrottlingException:http://internal.amazon.com/…`, else the
    // body's `__type` (`com.amazon…#ThrottlingException`).
    let from_header = headers
      .get("x-amzn-errortype")
      .and_then(|v| v.to_str().ok())
      .map(|v| v.split(':').next().unwrap_or(v).to_string());
    let from_body = || {
      let value: Value = serde_json::from_slice(body).ok()?;
      let kind = value.get("__type")?.as_str()?;
      Some(kind.rsplit('#').next().unwrap_or(kind).to_string())
    };
    if let Some(kind) = from_header.or_else(from_body) {
      apply_exception(&mut error, &kind);
    }
    error
  }
}

/// Bedrock's named exceptions where they say more than the HTTP status (or, in a stream,
/// where there is no status).
pub(crate) fn apply_exception(error: &mut GatewayError, kind: &str) {
  let (code, retryable) = match lower_first(kind).as_str() {
    "throttlingException" => (ErrorCode::RateLimited, true),
    "serviceUnavailableException" => (ErrorCode::UpstreamUnavailable, true),
    "validationException" => (ErrorCode::InvalidRequest, false),
    "accessDeniedException" | "unrecognizedClientException" => (ErrorCode::Authentication, false),
    "resourceNotFoundException" => (ErrorCode::NotFound, false),
    "modelTimeoutException" => (ErrorCode::Timeout, true),
    "internalServerException" | "modelStreamErrorException" => (ErrorCode::ProviderError, true),
    _ => return,
  };
  error.code = code;
  error.retryable = retryable;
  if code != ErrorCode::Authentication {
    error.status = code.default_status();
  } else if !(401..=403).contains(&error.status) {
    error.status = 403;
  }
}

fn lower_first(kind: &str) -> String {
  let mut chars = kind.chars();
  match chars.next() {
    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
    None => String::new(),
  }
}

fn json_mode(req: &ChatRequest) -> bool {
  matches!(
    req.response_format,
    Some(ResponseFormat::JsonObject) | Some(ResponseFormat::JsonSchema { .. })
  )
}

pub fn request_body(req: &ChatRequest) -> Result<Value> {
  let mut body = Map::new();
  let mut system = Vec::new();
  for (index, message) in req.messages.iter().enumerate() {
    if message.role != Role::System {
      continue;
    }
    system.push(json!({"text": message.joined_text()}));
    // A system message is sent as one text block: a breakpoint on any of its parts
    // caches up to its end.
    let part_cached = (0..message.content.len()).any(|part| req.part_cache(index, part).is_some());
    if part_cached || req.message_cache(index).is_some() {
      system.push(cache_point());
    }
  }
  body.insert("messages".into(), Value::Array(turns(req)?));
  if !system.is_empty() {
    body.insert("system".into(), Value::Array(system));
  }
  let mut inference = Map::new();
  if let Some(max_tokens) = req.max_tokens {
    inference.insert("maxTokens".into(), json!(max_tokens));
  }
  if let Some(temperature) = req.temperature {
    inference.insert("temperature".into(), json!(temperature));
  }
  if let Some(top_p) = req.top_p {
    inference.insert("topP".into(), json!(top_p));
  }
  if !req.stop.is_empty() {
    inference.insert("stopSequences".into(), json!(req.stop));
  }
  if !inference.is_empty() {
    body.insert("inferenceConfig".into(), Value::Object(inference));
  }
  if let Some(config) = tool_config(req) {
    body.insert("toolConfig".into(), config);
  }
  Ok(Value::Object(body))
}

fn tool_config(req: &ChatRequest) -> Option<Value> {
  let mut tools: Vec<Value> = req
    .tools
    .iter()
    .enumerate()
    .flat_map(|(index, tool)| {
      let mut spec = Map::new();
      spec.insert("name".into(), json!(tool.name));
      if let Some(description) = &tool.description {
        spec.insert("description".into(), json!(description));
      }
      spec.insert("inputSchema".into(), json!({"json": tool.parameters}));
      let cached = req.tool_cache(index).map(|_| cache_point());
      std::iter::once(json!({"toolSpec": spec})).chain(cached)
    })
    .collect();
  let mut choice = match &req.tool_choice {
    Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
    Some(ToolChoice::Required) => Some(json!({"any": {}})),
    Some(ToolChoice::Named(name)) => Some(json!({"tool": {"name": name}})),
    // Converse has no "none": the tools stay declared (a conversation holding toolUse
    // blocks needs them) only when the history uses them.
    Some(ToolChoice::None) => {
      let history_uses_tools = req
        .messages
        .iter()
        .any(|m| m.role == Role::Tool || !m.tool_calls.is_empty());
      if !history_uses_tools {
        tools.clear();
      }
      None
    }
    None => None,
  };
  let json_schema = match &req.response_format {
    Some(ResponseFormat::JsonObject) => Some(json!({"type": "object"})),
    Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema.clone()),
    _ => None,
  };
  if let Some(schema) = json_schema {
    tools.push(json!({"toolSpec": {
      "name": JSON_TOOL_NAME,
      "description": "Respond with the answer as this JSON document.",
      "inputSchema": {"json": schema},
    }}));
    choice = Some(json!({"tool": {"name": JSON_TOOL_NAME}}));
  }
  if tools.is_empty() {
    return None;
  }
  let mut config = Map::new();
  config.insert("tools".into(), Value::Array(tools));
  if let Some(choice) = choice {
    config.insert("toolChoice".into(), choice);
  }
  Some(Value::Object(config))
}

/// Converse wants alternating user/assistant turns, like Anthropic: tool results are
/// user turns of `toolResult` blocks, and consecutive turns of one role merge.
fn turns(req: &ChatRequest) -> Result<Vec<Value>> {
  let mut turns = AlternatingTurns::default();
  for (index, message) in req.messages.iter().enumerate() {
    let (role, mut blocks) = match message.role {
      Role::System => continue,
      Role::User => ("user", content_blocks(req, index)?),
      Role::Tool => {
        let id = message.tool_call_id.clone().ok_or_else(|| {
          GatewayError::invalid_request("a message with role 'tool' needs toolCallId")
        })?;
        let block = json!({"toolResult": {
          "toolUseId": id,
          "content": [{"text": message.joined_text()}],
        }});
        ("user", vec![block])
      }
      Role::Assistant => {
        let mut blocks = content_blocks(req, index)?;
        for call in &message.tool_calls {
          blocks.push(json!({"toolUse": {
            "toolUseId": call.id,
            "name": call.name,
            "input": arguments_value(&call.arguments)?,
          }}));
        }
        ("assistant", blocks)
      }
    };
    if req.message_cache(index).is_some() && !blocks.is_empty() {
      blocks.push(cache_point());
    }
    turns.push(role, blocks);
  }
  Ok(turns.into_json("content"))
}

/// A prompt-caching breakpoint: the prompt up to here may be cached. Converse's cachePoint
/// takes no TTL here, so `ttl` is not sent (the vendor's 5-minute default applies).
fn cache_point() -> Value {
  json!({"cachePoint": {"type": "default"}})
}

/// Message `index`'s parts as Converse blocks, each followed by a cachePoint when the
/// request put a breakpoint on it.
fn content_blocks(req: &ChatRequest, index: usize) -> Result<Vec<Value>> {
  let mut blocks = Vec::new();
  for (part_index, part) in req.messages[index].content.iter().enumerate() {
    let block = match part {
      ContentPart::Text(text) if text.is_empty() => continue,
      ContentPart::Text(text) => json!({"text": text}),
      ContentPart::Image { data, mime_type } => image_block(mime_type, data)?,
      ContentPart::ImageUrl(url) => match parse_data_url(url) {
        Some((mime_type, data)) => image_block(mime_type, data)?,
        None => {
          return Err(GatewayError::invalid_request(
            "Bedrock takes images as bytes: send a data: URL or an image part with base64 data",
          ))
        }
      },
    };
    blocks.push(block);
    if req.part_cache(index, part_index).is_some() {
      blocks.push(cache_point());
    }
  }
  Ok(blocks)
}

/// `{"image": {"format": "png", "source": {"bytes": <base64>}}}`: Converse's JSON carries
/// a blob as base64.
fn image_block(mime_type: &str, data: &str) -> Result<Value> {
  let format = match mime_type.to_ascii_lowercase().as_str() {
    "image/png" => "png",
    "image/jpeg" | "image/jpg" => "jpeg",
    "image/gif" => "gif",
    "image/webp" => "webp",
    other => {
      return Err(GatewayError::invalid_request(format!(
        "Bedrock takes png, jpeg, gif or webp images, not '{other}'"
      )))
    }
  };
  Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

pub fn finish_reason(raw: &str) -> FinishReason {
  match raw {
    "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
    "tool_use" => FinishReason::ToolCalls,
    "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
    _ => FinishReason::Stop,
  }
}
