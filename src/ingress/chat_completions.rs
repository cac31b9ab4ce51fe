//! OpenAI Chat Completions as a server speaks it: the request bytes parsed into the
//! gateway's request (every error names its field in plain words), the completion JSON, the
//! `chat.completion.chunk` SSE stream (with `stream_options.include_usage`) and OpenAI's
//! error shape `{ error: { message, type, param, code } }`. The only owner of this wire format
//! on the server side: `gatewayRouter` (Express) and `ferrogate serve` both come through here.

use serde_json::{json, Map, Value};

use super::{ErrorReply, Headers, Parsed, Protocol};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, StreamEvent, ToolCall,
  ToolChoice, ToolDefinition, Usage,
};

/// Chat Completions in the driver's route table; `openai`-kind providers speak it natively.
pub const CODEC: super::Codec = super::Codec {
  protocol: Protocol::ChatCompletions,
  parse,
  error_reply: codec_error_reply,
  identity_path: &["user"],
};

fn invalid(message: impl Into<String>) -> GatewayError {
  GatewayError::invalid_request(message)
}

/// A JSON value's kind in the words an error message uses.
pub(crate) fn kind(value: &Value) -> &'static str {
  match value {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

fn wrong(field: &str, expected: &str, got: &Value) -> GatewayError {
  invalid(format!("{field} must be {expected} (got {})", kind(got)))
}

/// The body as a JSON object, or INVALID_REQUEST saying why not (never serde's wording).
pub(crate) fn body_object(body: &[u8]) -> Result<Map<String, Value>> {
  if body.iter().all(u8::is_ascii_whitespace) {
    return Err(invalid("the request body is empty: send a JSON object"));
  }
  match serde_json::from_slice::<Value>(body) {
    Ok(Value::Object(object)) => Ok(object),
    Ok(other) => Err(invalid(format!(
      "the request body must be a JSON object (got {})",
      kind(&other)
    ))),
    Err(_) => Err(invalid("the request body is not valid JSON")),
  }
}

/// Reads typed fields of one JSON object, naming the field (with its path) in every error.
struct Fields<'a> {
  object: &'a Map<String, Value>,
  at: String,
}

impl<'a> Fields<'a> {
  fn new(object: &'a Map<String, Value>, at: &str) -> Self {
    Fields {
      object,
      at: at.to_string(),
    }
  }

  fn path(&self, name: &str) -> String {
    if self.at.is_empty() {
      name.to_string()
    } else {
      format!("{}.{name}", self.at)
    }
  }

  /// The field, with JSON null read as absent (OpenAI's clients send nulls for unset fields).
  fn get(&self, name: &str) -> Option<&'a Value> {
    self.object.get(name).filter(|value| !value.is_null())
  }

  fn string(&self, name: &str) -> Result<Option<&'a str>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::String(text)) => Ok(Some(text)),
      Some(other) => Err(wrong(&self.path(name), "a string", other)),
    }
  }

  fn required_string(&self, name: &str) -> Result<&'a str> {
    self
      .string(name)?
      .ok_or_else(|| invalid(format!("{} is required", self.path(name))))
  }

  fn boolean(&self, name: &str) -> Result<Option<bool>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::Bool(flag)) => Ok(Some(*flag)),
      Some(other) => Err(wrong(&self.path(name), "true or false", other)),
    }
  }

  fn number(&self, name: &str) -> Result<Option<f64>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::Number(number)) => number
        .as_f64()
        .filter(|n| n.is_finite())
        .map(Some)
        .ok_or_else(|| invalid(format!("{} must be a finite number", self.path(name)))),
      Some(other) => Err(wrong(&self.path(name), "a number", other)),
    }
  }

  /// A whole number >= 0 that fits in u32.
  fn count(&self, name: &str) -> Result<Option<u32>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::Number(number)) => number
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
          invalid(format!(
            "{} must be a whole number >= 0 (got {number})",
            self.path(name)
          ))
        }),
      Some(other) => Err(wrong(&self.path(name), "a whole number", other)),
    }
  }

  fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::Object(object)) => Ok(Some(object)),
      Some(other) => Err(wrong(&self.path(name), "an object", other)),
    }
  }

  fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>> {
    match self.get(name) {
      None => Ok(None),
      Some(Value::Array(items)) => Ok(Some(items)),
      Some(other) => Err(wrong(&self.path(name), "an array", other)),
    }
  }
}

/// The object at `items[i]`, or an error naming it.
fn item<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
  match value {
    Value::Object(object) => Ok(object),
    other => Err(wrong(at, "an object", other)),
  }
}

/// Fields this codec reads into the gateway's request; any other field reaches only a target
/// that speaks Chat Completions itself (and is named in the call record's warnings otherwise).
const MODELLED: &[&str] = &[
  "model",
  "messages",
  "stream",
  "stream_options",
  "temperature",
  "top_p",
  "max_tokens",
  "max_completion_tokens",
  "stop",
  "tools",
  "tool_choice",
  "response_format",
  "user",
  "metadata",
  "parallel_tool_calls",
  "store",
];

/// Parses a Chat Completions request body. Every refusal is INVALID_REQUEST naming the field.
pub fn parse(body: &[u8], _headers: Headers<'_>) -> Result<Parsed> {
  let object = body_object(body)?;
  let fields = Fields::new(&object, "");
  let model = fields.required_string("model")?;
  if model.is_empty() {
    return Err(invalid("model must not be empty"));
  }
  let raw_messages = fields
    .array("messages")?
    .ok_or_else(|| invalid("messages is required: an array of messages"))?;
  if raw_messages.is_empty() {
    return Err(invalid("messages must not be empty"));
  }
  let messages = raw_messages
    .iter()
    .enumerate()
    .map(|(i, m)| message(i, m))
    .collect::<Result<Vec<_>>>()?;
  let stream = fields.boolean("stream")?.unwrap_or(false);
  let include_usage = match fields.object("stream_options")? {
    Some(options) => Fields::new(options, "stream_options")
      .boolean("include_usage")?
      .unwrap_or(false),
    None => false,
  };
  let temperature = fields.number("temperature")?;
  let top_p = fields.number("top_p")?;
  let max_tokens = fields.count("max_completion_tokens")?;
  let max_tokens = max_tokens.or(fields.count("max_tokens")?);
  let stop = match fields.get("stop") {
    None => Vec::new(),
    Some(Value::String(stop)) => vec![stop.clone()],
    Some(Value::Array(stops)) => stops
      .iter()
      .enumerate()
      .map(|(i, stop)| match stop {
        Value::String(stop) => Ok(stop.clone()),
        other => Err(wrong(&format!("stop[{i}]"), "a string", other)),
      })
      .collect::<Result<Vec<_>>>()?,
    Some(other) => return Err(wrong("stop", "a string or an array of strings", other)),
  };
  let tools = match fields.array("tools")? {
    None => Vec::new(),
    Some(tools) => tools
      .iter()
      .enumerate()
      .map(|(i, t)| tool(i, t))
      .collect::<Result<Vec<_>>>()?,
  };
  let tool_choice = tool_choice(fields.get("tool_choice"))?;
  let response_format = response_format(fields.object("response_format")?)?;
  let user = fields.string("user")?.map(str::to_string);
  let metadata = metadata(fields.object("metadata")?)?;
  fields.boolean("parallel_tool_calls")?;
  fields.boolean("store")?;
  let native_only = native_only(&fields)?;
  let warnings = object
    .keys()
    .filter(|key| !MODELLED.contains(&key.as_str()) && !object[*key].is_null())
    .map(|key| format!("{key} was not sent: the target does not speak Chat Completions"))
    .collect();
  let request = ChatRequest {
    model: String::new(),
    messages,
    temperature,
    top_p,
    max_tokens,
    stop,
    response_format,
    tools,
    tool_choice,
    user,
    ..ChatRequest::default()
  };
  let model = model.to_string();
  Ok(Parsed {
    protocol: Protocol::ChatCompletions,
    encoder: Box::new(ChatEncoder::new(&model, include_usage)),
    model,
    request,
    stream,
    metadata,
    native: object,
    native_headers: Vec::new(),
    native_only,
    warnings,
  })
}

/// Fields a target of another protocol cannot honour: it answers 400 naming the first one
/// instead of silently doing less than asked (`n: 2` answered with one choice).
fn native_only(fields: &Fields<'_>) -> Result<Vec<String>> {
  let mut only = Vec::new();
  if fields.count("n")?.is_some_and(|n| n > 1) {
    only.push("n".to_string());
  }
  if fields.boolean("logprobs")? == Some(true) {
    only.push("logprobs".to_string());
  }
  if fields.count("top_logprobs")?.is_some() {
    only.push("top_logprobs".to_string());
  }
  if fields
    .object("logit_bias")?
    .is_some_and(|bias| !bias.is_empty())
  {
    only.push("logit_bias".to_string());
  }
  // Checked for type only: a seed or a penalty changes sampling, and a vendor without them
  // still answers the request (named in the record's warnings).
  fields.number("seed")?;
  fields.number("frequency_penalty")?;
  fields.number("presence_penalty")?;
  fields.string("service_tier")?;
  Ok(only)
}

fn metadata(object: Option<&Map<String, Value>>) -> Result<Vec<(String, String)>> {
  let Some(object) = object else {
    return Ok(Vec::new());
  };
  let mut pairs = object
    .iter()
    .filter(|(_, value)| !value.is_null())
    .map(|(key, value)| match value {
      Value::String(text) => Ok((key.clone(), text.clone())),
      Value::Number(number) => Ok((key.clone(), number.to_string())),
      Value::Bool(flag) => Ok((key.clone(), flag.to_string())),
      other => Err(wrong(&format!("metadata.{key}"), "a string", other)),
    })
    .collect::<Result<Vec<_>>>()?;
  pairs.sort();
  Ok(pairs)
}

fn message(i: usize, value: &Value) -> Result<Message> {
  let at = format!("messages[{i}]");
  let object = item(value, &at)?;
  let fields = Fields::new(object, &at);
  let role_name = fields.required_string("role")?;
  let role = match role_name {
    "developer" | "system" => Role::System,
    "user" => Role::User,
    "assistant" => Role::Assistant,
    "tool" => Role::Tool,
    other => {
      return Err(invalid(format!(
        "{at}.role '{other}' is not supported (system, developer, user, assistant, tool)"
      )))
    }
  };
  let content = match fields.get("content") {
    None => Vec::new(),
    Some(Value::String(text)) => vec![ContentPart::Text(text.clone())],
    Some(Value::Array(parts)) => parts
      .iter()
      .enumerate()
      .map(|(j, part)| content_part(&format!("{at}.content[{j}]"), part))
      .collect::<Result<Vec<_>>>()?,
    Some(other) => {
      return Err(wrong(
        &format!("{at}.content"),
        "a string or an array of parts",
        other,
      ))
    }
  };
  if fields.get("content").is_none() && role != Role::Assistant {
    return Err(invalid(format!("{at}.content is required")));
  }
  fields.string("name")?;
  let tool_call_id = fields.string("tool_call_id")?.map(str::to_string);
  if role == Role::Tool && tool_call_id.is_none() {
    return Err(invalid(format!(
      "{at}.tool_call_id is required for role 'tool'"
    )));
  }
  let tool_calls = match fields.array("tool_calls")? {
    None => Vec::new(),
    Some(calls) => calls
      .iter()
      .enumerate()
      .map(|(j, call)| tool_call(&format!("{at}.tool_calls[{j}]"), call))
      .collect::<Result<Vec<_>>>()?,
  };
  Ok(Message {
    role,
    content,
    tool_call_id,
    tool_calls,
  })
}

fn content_part(at: &str, value: &Value) -> Result<ContentPart> {
  let object = item(value, at)?;
  let fields = Fields::new(object, at);
  match fields.required_string("type")? {
    "text" => Ok(ContentPart::Text(
      fields.required_string("text")?.to_string(),
    )),
    "image_url" => {
      let url = match fields.get("image_url") {
        Some(Value::String(url)) => url.clone(),
        Some(Value::Object(image)) => Fields::new(image, &format!("{at}.image_url"))
          .required_string("url")?
          .to_string(),
        Some(other) => return Err(wrong(&format!("{at}.image_url"), "an object", other)),
        None => return Err(invalid(format!("{at}.image_url is required"))),
      };
      Ok(image(url))
    }
    other => Err(invalid(format!(
      "{at}.type '{other}' is not supported (text, image_url)"
    ))),
  }
}

fn tool_call(at: &str, value: &Value) -> Result<ToolCall> {
  let object = item(value, at)?;
  let fields = Fields::new(object, at);
  let id = fields.required_string("id")?.to_string();
  if let Some(kind) = fields.string("type")? {
    if kind != "function" {
      return Err(invalid(format!(
        "{at}.type '{kind}' is not supported (function)"
      )));
    }
  }
  let function = fields
    .object("function")?
    .ok_or_else(|| invalid(format!("{at}.function is required")))?;
  let function = Fields::new(function, &format!("{at}.function"));
  Ok(ToolCall {
    id,
    name: function.required_string("name")?.to_string(),
    arguments: function
      .string("arguments")?
      .unwrap_or_default()
      .to_string(),
    // Gemini's signature does not travel over the OpenAI wire format.
    thought_signature: None,
  })
}

fn tool(i: usize, value: &Value) -> Result<ToolDefinition> {
  let at = format!("tools[{i}]");
  let object = item(value, &at)?;
  let fields = Fields::new(object, &at);
  if let Some(kind) = fields.string("type")? {
    if kind != "function" {
      return Err(invalid(format!(
        "{at}.type '{kind}' is not supported (function)"
      )));
    }
  }
  let function = fields
    .object("function")?
    .ok_or_else(|| invalid(format!("{at}.function is required")))?;
  let function_at = format!("{at}.function");
  let function = Fields::new(function, &function_at);
  let name = function.required_string("name")?;
  if name.is_empty() {
    return Err(invalid(format!("{function_at}.name must not be empty")));
  }
  let parameters = match function.object("parameters")? {
    Some(schema) => Value::Object(schema.clone()),
    None => json!({"type": "object", "properties": {}}),
  };
  function.boolean("strict")?;
  Ok(ToolDefinition {
    name: name.to_string(),
    description: function.string("description")?.map(str::to_string),
    parameters,
  })
}

fn tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice>> {
  match value {
    None => Ok(None),
    Some(Value::String(choice)) => Ok(Some(match choice.as_str() {
      "auto" => ToolChoice::Auto,
      "none" => ToolChoice::None,
      "required" => ToolChoice::Required,
      other => {
        return Err(invalid(format!(
          "tool_choice '{other}' is not supported (auto, none, required, or a named function)"
        )))
      }
    })),
    Some(Value::Object(named)) => {
      let fields = Fields::new(named, "tool_choice");
      let function = fields
        .object("function")?
        .ok_or_else(|| invalid("tool_choice.function is required"))?;
      let name = Fields::new(function, "tool_choice.function").required_string("name")?;
      Ok(Some(ToolChoice::Named(name.to_string())))
    }
    Some(other) => Err(wrong("tool_choice", "a string or an object", other)),
  }
}

fn response_format(object: Option<&Map<String, Value>>) -> Result<Option<ResponseFormat>> {
  let Some(object) = object else {
    return Ok(None);
  };
  let fields = Fields::new(object, "response_format");
  Ok(Some(match fields.required_string("type")? {
    "text" => ResponseFormat::Text,
    "json_object" => ResponseFormat::JsonObject,
    "json_schema" => {
      let spec = fields
        .object("json_schema")?
        .ok_or_else(|| invalid("response_format.json_schema is required"))?;
      let spec = Fields::new(spec, "response_format.json_schema");
      ResponseFormat::JsonSchema {
        name: spec.string("name")?.unwrap_or("response").to_string(),
        schema: spec
          .object("schema")?
          .map(|schema| Value::Object(schema.clone()))
          .unwrap_or_else(|| json!({})),
      }
    }
    other => {
      return Err(invalid(format!(
        "response_format.type '{other}' is not supported (text, json_object, json_schema)"
      )))
    }
  }))
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
    ErrorCode::InvalidRequest | ErrorCode::GuardrailBlocked => "invalid_request_error",
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

/// An error before any answer: OpenAI's status (499, which no client knows, as 400: the
/// caller is gone anyway), `retry-after` when the error has a delay, and the error body.
pub fn error_reply(error: &GatewayError) -> ErrorReply {
  let status = if error.status == 499 {
    400
  } else {
    error.status
  };
  ErrorReply {
    status,
    headers: super::retry_after_headers(error),
    body: error_json(error),
  }
}

fn codec_error_reply(error: &GatewayError, _request_id: &str) -> ErrorReply {
  error_reply(error)
}

/// A Chat Completions call's answer: the completion JSON, or the chunk stream.
pub struct ChatEncoder {
  model: String,
  include_usage: bool,
  id: String,
  created: u64,
  chunks: Option<ChunkEncoder>,
}

impl ChatEncoder {
  pub fn new(model: &str, include_usage: bool) -> Self {
    ChatEncoder {
      model: model.to_string(),
      include_usage,
      id: format!(
        "chatcmpl-{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
      ),
      created: super::unix_seconds(),
      chunks: None,
    }
  }

  fn chunks(&mut self) -> &ChunkEncoder {
    let (id, created, model, include_usage) =
      (&self.id, self.created, &self.model, self.include_usage);
    self
      .chunks
      .get_or_insert_with(|| ChunkEncoder::new(id, created, model, include_usage))
  }
}

impl super::Encoder for ChatEncoder {
  fn json(&mut self, response: &ChatResponse) -> Vec<u8> {
    completion_json(response, &self.id, self.created, &self.model)
  }

  fn stream_start(&mut self, _request_id: &str, out: &mut Vec<u8>) {
    self.chunks().role(out);
  }

  fn stream_event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
    match event {
      StreamEvent::Text(text) => self.chunks().text(out, text),
      StreamEvent::ToolCall(call) => self.chunks().tool_call(
        out,
        call.index,
        call.id.as_deref(),
        call.name.as_deref(),
        &call.arguments_delta,
      ),
      StreamEvent::Done(response) => self.stream_end(response, out),
      // A relayed vendor stream is already in this protocol.
      StreamEvent::Native(bytes) => out.extend_from_slice(bytes.as_bytes()),
    }
  }

  fn stream_end(&mut self, response: &ChatResponse, out: &mut Vec<u8>) {
    let include_usage = self.include_usage;
    self.chunks().finish(out, response, include_usage);
  }

  fn stream_error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&error_json(error));
    out.extend_from_slice(b"\n\n");
  }
}

pub fn error_json(error: &GatewayError) -> Vec<u8> {
  serde_json::to_vec(&error_value(error)).unwrap_or_default()
}

/// OpenAI's error body `{ error: { message, type, param, code } }`, for the other OpenAI
/// protocols (Responses, Embeddings) to build on.
pub fn error_value(error: &GatewayError) -> Value {
  let mut body = json!({
    "error": {
      "message": error.message,
      "type": error_type(error.code),
      "param": null,
      "code": error_code(error.code),
    }
  });
  // GUARDRAIL_BLOCKED says which guardrail and what it found (never the text).
  if let Some(hit) = &error.guardrail {
    body["error"]["guardrail"] = json!(hit.guardrail);
    body["error"]["entity"] = json!(hit.entity);
  }
  body
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
    let parsed = parse(body, Headers::new(&[]))
      .map_err(|e| e.message)
      .expect("parsed");
    assert!(parsed.stream);
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
      let error = parse(bad, Headers::new(&[]))
        .map(|_| ())
        .expect_err("invalid");
      assert_eq!(error.code, ErrorCode::InvalidRequest);
    }
  }

  fn refusal(body: &str) -> String {
    match parse(body.as_bytes(), Headers::new(&[])) {
      Ok(_) => panic!("accepted: {body}"),
      Err(error) => {
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{body}");
        error.message
      }
    }
  }

  #[test]
  fn bad_requests_name_their_field_in_plain_words() {
    let cases = [
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":{}}]}"#,
        "messages[1].content must be a string or an array of parts (got an object)",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"temperature":"hot"}"#,
        "temperature must be a number (got a string)",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[null]}"#,
        "tools[0] must be an object (got null)",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#,
        "messages[0].content[0].type 'input_audio' is not supported",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"tools":[{"type":"web_search"}]}"#,
        "tools[0].type 'web_search' is not supported",
      ),
      (
        r#"{"model":"m","messages":[{"role":"wizard","content":"a"}]}"#,
        "messages[0].role 'wizard' is not supported",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"max_tokens":-1}"#,
        "max_tokens must be a whole number >= 0",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"metadata":{"a":{}}}"#,
        "metadata.a must be a string",
      ),
      (r#"{"messages":[]}"#, "model is required"),
      (
        r#"{"model":7,"messages":[]}"#,
        "model must be a string (got a number)",
      ),
      (r#"{"model":"m"}"#, "messages is required"),
      (
        r#"{"model":"m","messages":[]}"#,
        "messages must not be empty",
      ),
      (
        r#"{"model":"m","messages":[{"role":"user","content":"a"}],"stream":"yes"}"#,
        "stream must be true or false (got a string)",
      ),
      ("{", "the request body is not valid JSON"),
      (
        "[1]",
        "the request body must be a JSON object (got an array)",
      ),
      ("", "the request body is empty"),
    ];
    for (body, expected) in cases {
      let message = refusal(body);
      assert!(message.starts_with(expected), "{body}: {message}");
      assert!(!message.contains("line 1 column"), "{message}");
    }
  }

  #[test]
  fn metadata_and_fields_only_the_same_protocol_can_honour_are_kept() {
    let body =
      br#"{"model":"m","messages":[{"role":"user","content":"a"}],"metadata":{"team":"x","n":3},
      "n":2,"seed":7,"logprobs":true,"frequency_penalty":0.5,"service_tier":"flex"}"#;
    let parsed = parse(body, Headers::new(&[]))
      .map_err(|e| e.message)
      .expect("parsed");
    assert_eq!(
      parsed.metadata,
      vec![
        ("n".to_string(), "3".to_string()),
        ("team".to_string(), "x".to_string())
      ]
    );
    assert_eq!(
      parsed.native_only,
      vec!["n".to_string(), "logprobs".to_string()]
    );
    assert_eq!(parsed.native["seed"], 7);
    assert!(parsed.warnings.iter().any(|w| w.starts_with("seed ")));
    let error = error_reply(&GatewayError::invalid_request("bad"));
    let body: Value = serde_json::from_slice(&error.body).expect("json");
    assert_eq!(error.status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]
      .as_object()
      .is_some_and(|e| e.contains_key("param")));
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
