//! Anthropic Messages (`POST /v1/messages`, `POST /v1/messages/count_tokens`): the codec.
//!
//! `parse` reads the whole request model: `system` (a string or text blocks), messages whose
//! content is a string or blocks (`text`, `image`, `tool_use`, `tool_result`, `thinking`,
//! `redacted_thinking`, `document`, server-tool blocks), `tools`, `tool_choice`, `max_tokens`,
//! `stop_sequences`, the sampling fields, `metadata.user_id`, `stream`, `thinking`,
//! `output_config` and `context_management`. What the normalized [`ChatRequest`] cannot hold stays
//! in `Parsed.native`, which a same-protocol target receives as sent.
//!
//! Same-protocol target: the provider kinds `Kind::speaks_natively` names (`anthropic`) speak this
//! protocol. The driver sends such a target `Parsed.native` (only `model` renamed) with
//! `Parsed.native_headers` (every `anthropic-*` header the client sent) and relays the vendor's
//! bytes; every other target gets `Parsed.request`, after `Parsed.native_only` is checked.
//!
//! When translating, what another vendor cannot take is handled so a real client keeps working:
//! - `role: "system"` messages inside `messages` (Claude Code sends one after the user turn) are
//!   merged, with the top-level `system`, into one system prompt at the start;
//! - `thinking` / `redacted_thinking` blocks, `cache_control`, `thinking`, `context_management`,
//!   `top_k` and unknown fields are dropped (never refused);
//! - server tools (`web_search_*`, `bash_*`, `text_editor_*`, …) and server-tool history blocks
//!   are left out with a warning in `Parsed.warnings`;
//! - `document`, `search_result`, `container_upload` blocks and `file` image sources only an
//!   Anthropic target can read: they are listed in `Parsed.native_only`, and another target
//!   answers INVALID_REQUEST naming them.
//!
//! The encoder answers in Anthropic's shapes: a `message` object, or the event stream
//! `message_start`, `content_block_start|delta|stop`, `ping`, `message_delta`, `message_stop`,
//! framed `event: <type>\ndata: <json>\n\n` as Anthropic frames it. A translated answer reports
//! `stop_reason: "end_turn"` where the vendor stopped on a stop sequence: the other vendors do not
//! say which of the two it was.

use std::fmt::Display;

use serde_json::{Map, Value};

use super::{Encoder, ErrorReply, Headers, Parsed, Protocol};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role, StreamEvent,
  ToolCall, ToolChoice, ToolDefinition,
};

#[cfg(test)]
mod tests;

/// Messages in the driver's route table: `anthropic` providers speak it natively; the
/// caller's identity goes in `metadata.user_id` of a relayed body.
pub const CODEC: super::Codec = super::Codec {
  protocol: Protocol::Messages,
  parse,
  error_reply,
  identity_path: &["metadata", "user_id"],
};

/// Blocks only an Anthropic target can read; another target answers INVALID_REQUEST naming them.
const NATIVE_ONLY_BLOCKS: &[&str] = &["document", "search_result", "container_upload"];
/// History of tools Anthropic ran on its side: meaningless to another vendor, left out.
const SERVER_TOOL_BLOCKS: &[&str] = &[
  "server_tool_use",
  "web_search_tool_result",
  "web_fetch_tool_result",
  "code_execution_tool_result",
  "bash_code_execution_tool_result",
  "text_editor_code_execution_tool_result",
  "tool_search_tool_result",
  "mcp_tool_use",
  "mcp_tool_result",
];

// ------------------------------------------------------------------------------------- parse

/// Parses a `POST /v1/messages` body.
pub fn parse(body: &[u8], headers: Headers) -> Result<Parsed> {
  let (native, request, notes) = parse_request(body, true)?;
  let stream = match native.get("stream") {
    None | Some(Value::Null) => false,
    Some(Value::Bool(stream)) => *stream,
    Some(other) => return Err(expected("stream", "true or false", other)),
  };
  let model = request.model.clone();
  let encoder = Box::new(MessagesEncoder::new(&model, new_message_id()));
  Ok(Parsed {
    protocol: Protocol::Messages,
    model,
    request,
    stream,
    metadata: notes.metadata,
    native,
    native_headers: native_headers(headers),
    native_only: notes.native_only,
    warnings: notes.warnings,
    encoder,
  })
}

/// What parsing noted beside the normalized request.
#[derive(Default)]
struct Notes {
  metadata: Vec<(String, String)>,
  native_only: Vec<String>,
  warnings: Vec<String>,
}

/// Every `anthropic-*` header (`anthropic-beta`, `anthropic-version`, …), for a same-protocol target.
fn native_headers(headers: Headers) -> Vec<(String, String)> {
  headers
    .iter()
    .filter(|(name, _)| name.starts_with("anthropic-"))
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

fn parse_request(
  body: &[u8],
  max_tokens_required: bool,
) -> Result<(Map<String, Value>, ChatRequest, Notes)> {
  let value: Value = serde_json::from_slice(body).map_err(|e| invalid_json(&e))?;
  let Value::Object(native) = value else {
    return Err(GatewayError::invalid_request(format!(
      "the request body must be a JSON object, got {}",
      describe(&value)
    )));
  };
  let mut notes = Notes::default();
  let mut request = ChatRequest {
    model: match native.get("model") {
      Some(Value::String(model)) if !model.is_empty() => model.clone(),
      Some(Value::String(_)) => return Err(bad("model", "must not be empty")),
      None | Some(Value::Null) => return Err(bad("model", "is required")),
      Some(other) => return Err(expected("model", "a string", other)),
    },
    ..ChatRequest::default()
  };
  match native.get("max_tokens") {
    None | Some(Value::Null) if max_tokens_required => {
      return Err(bad("max_tokens", "is required"))
    }
    None | Some(Value::Null) => {}
    Some(value) => request.max_tokens = Some(whole_number("max_tokens", value, 1)?),
  }

  let mut system = Vec::new();
  match native.get("system") {
    None | Some(Value::Null) => {}
    Some(value) => system_texts("system", value, &mut system)?,
  }
  let messages = match native.get("messages") {
    Some(Value::Array(messages)) if !messages.is_empty() => messages,
    Some(Value::Array(_)) => return Err(bad("messages", "needs at least one message")),
    None | Some(Value::Null) => return Err(bad("messages", "is required")),
    Some(other) => return Err(expected("messages", "an array", other)),
  };
  let mut turns = Vec::with_capacity(messages.len());
  for (i, message) in messages.iter().enumerate() {
    parse_message(
      &format!("messages[{i}]"),
      message,
      &mut system,
      &mut turns,
      &mut notes,
    )?;
  }
  if !system.is_empty() {
    request
      .messages
      .push(Message::text(Role::System, system.join("\n\n")));
  }
  request.messages.extend(turns);

  if let Some(value) = present(&native, "tools") {
    let Value::Array(tools) = value else {
      return Err(expected("tools", "an array", value));
    };
    for (i, tool) in tools.iter().enumerate() {
      if let Some(tool) = parse_tool(&format!("tools[{i}]"), tool, &mut notes)? {
        request.tools.push(tool);
      }
    }
  }
  if let Some(value) = present(&native, "tool_choice") {
    request.tool_choice = parse_tool_choice(value)?;
  }
  if let Some(value) = present(&native, "stop_sequences") {
    let Value::Array(sequences) = value else {
      return Err(expected("stop_sequences", "an array of strings", value));
    };
    for (i, sequence) in sequences.iter().enumerate() {
      match sequence {
        Value::String(text) => request.stop.push(text.clone()),
        other => return Err(expected(&format!("stop_sequences[{i}]"), "a string", other)),
      }
    }
  }
  request.temperature = optional_number(&native, "temperature")?;
  request.top_p = optional_number(&native, "top_p")?;
  if let Some(value) = present(&native, "top_k") {
    whole_number("top_k", value, 0)?;
    notes
      .warnings
      .push("top_k is not sent to a provider of another protocol".to_string());
  }
  if let Some(value) = present(&native, "metadata") {
    let Value::Object(metadata) = value else {
      return Err(expected("metadata", "an object", value));
    };
    for (key, value) in metadata {
      match (key.as_str(), value) {
        (_, Value::Null) => {}
        ("user_id", Value::String(user)) => {
          request.user = Some(user.clone());
          notes.metadata.push((key.clone(), user.clone()));
        }
        ("user_id", other) => return Err(expected("metadata.user_id", "a string", other)),
        (_, Value::String(text)) => notes.metadata.push((key.clone(), text.clone())),
        _ => {}
      }
    }
  }
  for field in ["thinking", "output_config", "context_management"] {
    if let Some(value) = present(&native, field) {
      if !value.is_object() {
        return Err(expected(field, "an object", value));
      }
    }
  }
  if let Some(format) = native
    .get("output_config")
    .and_then(|config| config.get("format"))
    .filter(|format| !format.is_null())
  {
    request.response_format = Some(output_format(format)?);
  }
  Ok((native, request, notes))
}

/// A message of any role: user and assistant turns become normalized messages; a system
/// message's text joins the system prompt.
fn parse_message(
  at: &str,
  message: &Value,
  system: &mut Vec<String>,
  turns: &mut Vec<Message>,
  notes: &mut Notes,
) -> Result<()> {
  let Value::Object(message) = message else {
    return Err(expected(at, "an object with role and content", message));
  };
  let role = match message.get("role") {
    Some(Value::String(role)) => role.as_str(),
    None | Some(Value::Null) => return Err(bad(&format!("{at}.role"), "is required")),
    Some(other) => return Err(expected(&format!("{at}.role"), "a string", other)),
  };
  let content_at = format!("{at}.content");
  let content = match message.get("content") {
    None | Some(Value::Null) => return Err(bad(&content_at, "is required")),
    Some(content @ (Value::String(_) | Value::Array(_))) => content,
    Some(other) => {
      return Err(expected(
        &content_at,
        "a string or an array of blocks",
        other,
      ))
    }
  };
  match role {
    "system" => system_texts(&content_at, content, system),
    "user" | "assistant" => {
      let assistant = role == "assistant";
      let mut turn = Turn::default();
      match content {
        Value::String(text) => turn.text(text),
        Value::Array(blocks) => {
          for (j, block) in blocks.iter().enumerate() {
            parse_block(
              &format!("{content_at}[{j}]"),
              block,
              assistant,
              &mut turn,
              notes,
            )?;
          }
        }
        _ => {}
      }
      turn.finish(assistant, turns);
      Ok(())
    }
    other => Err(bad(
      &format!("{at}.role"),
      format!("expected 'user', 'assistant' or 'system', got '{other}'"),
    )),
  }
}

/// One user or assistant message being translated.
#[derive(Default)]
struct Turn {
  parts: Vec<ContentPart>,
  tool_calls: Vec<ToolCall>,
  /// `tool_result` blocks, each its own tool message, sent before the turn's other content
  /// (OpenAI wants tool answers right after the call).
  tool_results: Vec<Message>,
}

impl Turn {
  fn text(&mut self, text: &str) {
    if !text.is_empty() {
      self.parts.push(ContentPart::Text(text.to_string()));
    }
  }

  fn finish(self, assistant: bool, turns: &mut Vec<Message>) {
    turns.extend(self.tool_results);
    if self.parts.is_empty() && self.tool_calls.is_empty() {
      return;
    }
    turns.push(Message {
      role: if assistant {
        Role::Assistant
      } else {
        Role::User
      },
      content: self.parts,
      tool_call_id: None,
      tool_calls: self.tool_calls,
    });
  }
}

fn block_type<'a>(at: &str, block: &'a Value) -> Result<&'a str> {
  let Value::Object(fields) = block else {
    return Err(expected(at, "a content block object", block));
  };
  match fields.get("type") {
    Some(Value::String(kind)) => Ok(kind),
    None | Some(Value::Null) => Err(bad(&format!("{at}.type"), "is required")),
    Some(other) => Err(expected(&format!("{at}.type"), "a string", other)),
  }
}

fn parse_block(
  at: &str,
  block: &Value,
  assistant: bool,
  turn: &mut Turn,
  notes: &mut Notes,
) -> Result<()> {
  let kind = block_type(at, block)?;
  match kind {
    "text" => turn.text(required_str(at, block, "text")?),
    "image" => {
      if let Some(part) = image_part(at, block, notes)? {
        turn.parts.push(part);
      }
    }
    "tool_use" if assistant => {
      let id = required_str(at, block, "id")?;
      let name = required_str(at, block, "name")?;
      let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(input @ Value::Object(_)) => input.to_string(),
        Some(other) => return Err(expected(&format!("{at}.input"), "an object", other)),
      };
      turn.tool_calls.push(ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        arguments,
        ..ToolCall::default()
      });
    }
    "tool_result" if !assistant => {
      let id = required_str(at, block, "tool_use_id")?;
      if let Some(value) = block.get("is_error").filter(|v| !v.is_null()) {
        if !value.is_boolean() {
          return Err(expected(&format!("{at}.is_error"), "true or false", value));
        }
      }
      let text = tool_result_text(at, block, notes)?;
      turn.tool_results.push(Message {
        role: Role::Tool,
        content: vec![ContentPart::Text(text)],
        tool_call_id: Some(id.to_string()),
        tool_calls: Vec::new(),
      });
    }
    "tool_use" | "tool_result" => {
      let belongs = if kind == "tool_use" {
        "assistant"
      } else {
        "user"
      };
      return Err(bad(
        &format!("{at}.type"),
        format!("a '{kind}' block belongs in a message with role '{belongs}'"),
      ));
    }
    "thinking" => {
      required_str(at, block, "thinking")?;
    }
    "redacted_thinking" => {
      required_str(at, block, "data")?;
    }
    kind if NATIVE_ONLY_BLOCKS.contains(&kind) => {
      notes.native_only.push(format!("{at} (a '{kind}' block)"))
    }
    kind if SERVER_TOOL_BLOCKS.contains(&kind) => notes.warnings.push(format!(
      "{at}: a '{kind}' block (server tool history) was left out for a provider of another protocol"
    )),
    other => {
      return Err(bad(
        &format!("{at}.type"),
        format!("unknown block type '{other}'"),
      ));
    }
  }
  Ok(())
}

fn image_part(at: &str, block: &Value, notes: &mut Notes) -> Result<Option<ContentPart>> {
  let source_at = format!("{at}.source");
  let source = match block.get("source") {
    Some(source @ Value::Object(_)) => source,
    None | Some(Value::Null) => return Err(bad(&source_at, "is required")),
    Some(other) => return Err(expected(&source_at, "an object", other)),
  };
  match block_type(&source_at, source)? {
    "base64" => Ok(Some(ContentPart::Image {
      mime_type: required_str(&source_at, source, "media_type")?.to_string(),
      data: required_str(&source_at, source, "data")?.to_string(),
    })),
    "url" => Ok(Some(ContentPart::ImageUrl(
      required_str(&source_at, source, "url")?.to_string(),
    ))),
    "file" => {
      notes
        .native_only
        .push(format!("{source_at} (a 'file' image source)"));
      Ok(None)
    }
    other => Err(bad(
      &format!("{source_at}.type"),
      format!("unknown image source type '{other}' (expected 'base64', 'url' or 'file')"),
    )),
  }
}

/// A tool result's content as the text a tool message carries.
fn tool_result_text(at: &str, block: &Value, notes: &mut Notes) -> Result<String> {
  let content_at = format!("{at}.content");
  match block.get("content") {
    None | Some(Value::Null) => Ok(String::new()),
    Some(Value::String(text)) => Ok(text.clone()),
    Some(Value::Array(blocks)) => {
      let mut texts = Vec::new();
      for (k, inner) in blocks.iter().enumerate() {
        let inner_at = format!("{content_at}[{k}]");
        match block_type(&inner_at, inner)? {
          "text" => texts.push(required_str(&inner_at, inner, "text")?.to_string()),
          "image" => {
            image_part(&inner_at, inner, notes)?;
            notes.warnings.push(format!(
              "{inner_at}: an image inside a tool result was left out for a provider of another protocol"
            ));
          }
          kind if NATIVE_ONLY_BLOCKS.contains(&kind) => notes
            .native_only
            .push(format!("{inner_at} (a '{kind}' block)")),
          other => {
            return Err(bad(
              &format!("{inner_at}.type"),
              format!("unknown block type '{other}' in a tool result"),
            ))
          }
        }
      }
      Ok(texts.join("\n"))
    }
    Some(other) => Err(expected(
      &content_at,
      "a string or an array of blocks",
      other,
    )),
  }
}

/// `system` and a system message's content: a string or text blocks.
fn system_texts(at: &str, value: &Value, out: &mut Vec<String>) -> Result<()> {
  match value {
    Value::String(text) => {
      if !text.is_empty() {
        out.push(text.clone());
      }
      Ok(())
    }
    Value::Array(blocks) => {
      for (i, block) in blocks.iter().enumerate() {
        let block_at = format!("{at}[{i}]");
        match block_type(&block_at, block)? {
          "text" => {
            let text = required_str(&block_at, block, "text")?;
            if !text.is_empty() {
              out.push(text.to_string());
            }
          }
          other => {
            return Err(bad(
              &format!("{block_at}.type"),
              format!("a system prompt takes 'text' blocks, got '{other}'"),
            ))
          }
        }
      }
      Ok(())
    }
    other => Err(expected(at, "a string or an array of text blocks", other)),
  }
}

/// A custom tool, or `None` for a server tool (left out, with a warning).
fn parse_tool(at: &str, tool: &Value, notes: &mut Notes) -> Result<Option<ToolDefinition>> {
  let Value::Object(fields) = tool else {
    return Err(expected(at, "a tool object", tool));
  };
  match fields.get("type") {
    None | Some(Value::Null) => {}
    Some(Value::String(kind)) if kind == "custom" => {}
    Some(Value::String(kind)) => {
      notes.warnings.push(format!(
        "{at}: the server tool '{kind}' was left out: only Anthropic runs it"
      ));
      return Ok(None);
    }
    Some(other) => return Err(expected(&format!("{at}.type"), "a string", other)),
  }
  let name = required_str(at, tool, "name")?;
  if name.is_empty() {
    return Err(bad(&format!("{at}.name"), "must not be empty"));
  }
  let description = match fields.get("description") {
    None | Some(Value::Null) => None,
    Some(Value::String(text)) => Some(text.clone()),
    Some(other) => return Err(expected(&format!("{at}.description"), "a string", other)),
  };
  let parameters = match fields.get("input_schema") {
    Some(schema @ Value::Object(_)) => schema.clone(),
    None | Some(Value::Null) => return Err(bad(&format!("{at}.input_schema"), "is required")),
    Some(other) => {
      return Err(expected(
        &format!("{at}.input_schema"),
        "a JSON Schema object",
        other,
      ))
    }
  };
  Ok(Some(ToolDefinition {
    name: name.to_string(),
    description,
    parameters,
  }))
}

fn parse_tool_choice(value: &Value) -> Result<Option<ToolChoice>> {
  if !value.is_object() {
    return Err(expected("tool_choice", "an object", value));
  }
  match block_type("tool_choice", value)? {
    "auto" => Ok(Some(ToolChoice::Auto)),
    "any" => Ok(Some(ToolChoice::Required)),
    "none" => Ok(Some(ToolChoice::None)),
    "tool" => Ok(Some(ToolChoice::Named(
      required_str("tool_choice", value, "name")?.to_string(),
    ))),
    other => Err(bad(
      "tool_choice.type",
      format!("expected 'auto', 'any', 'tool' or 'none', got '{other}'"),
    )),
  }
}

/// `output_config.format`: a JSON schema the answer must follow.
fn output_format(format: &Value) -> Result<ResponseFormat> {
  let at = "output_config.format";
  match block_type(at, format)? {
    "json_schema" => match format.get("schema") {
      Some(schema @ Value::Object(_)) => Ok(ResponseFormat::JsonSchema {
        name: "output".to_string(),
        schema: schema.clone(),
      }),
      None | Some(Value::Null) => Err(bad(&format!("{at}.schema"), "is required")),
      Some(other) => Err(expected(
        &format!("{at}.schema"),
        "a JSON Schema object",
        other,
      )),
    },
    other => Err(bad(
      &format!("{at}.type"),
      format!("unknown format type '{other}' (expected 'json_schema')"),
    )),
  }
}

// ------------------------------------------------------------------------- field helpers

fn bad(at: &str, what: impl Display) -> GatewayError {
  GatewayError::invalid_request(format!("{at}: {what}"))
}

fn expected(at: &str, what: &str, got: &Value) -> GatewayError {
  bad(at, format!("expected {what}, got {}", describe(got)))
}

/// A value's kind in plain words, for error messages.
fn describe(value: &Value) -> &'static str {
  match value {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

fn present<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
  map.get(key).filter(|value| !value.is_null())
}

fn required_str<'a>(at: &str, object: &'a Value, key: &str) -> Result<&'a str> {
  match object.get(key) {
    Some(Value::String(text)) => Ok(text),
    None | Some(Value::Null) => Err(bad(&format!("{at}.{key}"), "is required")),
    Some(other) => Err(expected(&format!("{at}.{key}"), "a string", other)),
  }
}

fn whole_number(at: &str, value: &Value, min: u64) -> Result<u32> {
  let number = value
    .as_u64()
    .filter(|n| *n >= min)
    .and_then(|n| u32::try_from(n).ok());
  number.ok_or_else(|| match value {
    Value::Number(n) => bad(
      at,
      format!("expected a whole number of at least {min}, got {n}"),
    ),
    other => expected(at, &format!("a whole number of at least {min}"), other),
  })
}

fn optional_number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
  match present(map, key) {
    None => Ok(None),
    Some(Value::Number(n)) => match n.as_f64() {
      Some(x) if x >= 0.0 && x.is_finite() => Ok(Some(x)),
      _ => Err(bad(
        key,
        format!("expected a number of at least 0, got {n}"),
      )),
    },
    Some(other) => Err(expected(key, "a number", other)),
  }
}

fn invalid_json(error: &serde_json::Error) -> GatewayError {
  let what = if error.is_eof() {
    "ended before its JSON was complete"
  } else {
    "is not valid JSON"
  };
  GatewayError::invalid_request(format!(
    "the request body {what} (line {}, column {})",
    error.line(),
    error.column()
  ))
}

fn new_message_id() -> String {
  const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let mut id = String::from("msg_");
  for _ in 0..24 {
    id.push(char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]));
  }
  id
}

// ------------------------------------------------------------------------------ encoder

fn json_text(text: &str) -> String {
  // Serializing a string cannot fail.
  serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

fn stop_reason(reason: FinishReason) -> &'static str {
  match reason {
    FinishReason::Stop => "end_turn",
    FinishReason::Length => "max_tokens",
    FinishReason::ToolCalls => "tool_use",
    FinishReason::ContentFilter => "refusal",
  }
}

/// Anthropic's usage object: `input_tokens` excludes the prompt tokens read from or written to
/// the cache, which have their own fields.
fn usage_json(response: &ChatResponse) -> String {
  let usage = &response.usage;
  let uncached = usage
    .prompt_tokens
    .saturating_sub(usage.cached_prompt_tokens)
    .saturating_sub(usage.cache_write_prompt_tokens);
  format!(
    "{{\"input_tokens\":{uncached},\"cache_creation_input_tokens\":{},\"cache_read_input_tokens\":{},\"output_tokens\":{}}}",
    usage.cache_write_prompt_tokens, usage.cached_prompt_tokens, usage.completion_tokens
  )
}

/// A tool call's arguments as the `input` object Anthropic sends; arguments that are not a JSON
/// object (a vendor's broken output) are kept under `_raw` rather than lost.
fn tool_input(arguments: &str) -> String {
  if arguments.trim().is_empty() {
    return "{}".to_string();
  }
  match serde_json::from_str::<Value>(arguments) {
    Ok(value @ Value::Object(_)) => value.to_string(),
    _ => format!("{{\"_raw\":{}}}", json_text(arguments)),
  }
}

/// The content block open in a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
  Text,
  /// A tool call, by the gateway's tool-call index.
  Tool(u32),
}

/// Encodes one call's answer as Anthropic Messages.
pub struct MessagesEncoder {
  id: String,
  model: String,
  /// The next content block's index.
  next_index: u32,
  open: Option<OpenBlock>,
}

impl MessagesEncoder {
  pub fn new(model: &str, id: String) -> Self {
    MessagesEncoder {
      id,
      model: model.to_string(),
      next_index: 0,
      open: None,
    }
  }

  fn event(out: &mut Vec<u8>, kind: &str, data: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
  }

  fn close_block(&mut self, out: &mut Vec<u8>) {
    if self.open.take().is_some() {
      let index = self.next_index - 1;
      Self::event(
        out,
        "content_block_stop",
        &format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}"),
      );
    }
  }

  fn open_block(&mut self, out: &mut Vec<u8>, block: OpenBlock, content_block: &str) {
    self.close_block(out);
    let index = self.next_index;
    self.next_index += 1;
    self.open = Some(block);
    Self::event(
      out,
      "content_block_start",
      &format!(
        "{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{content_block}}}"
      ),
    );
  }

  fn text(&mut self, out: &mut Vec<u8>, text: &str) {
    if text.is_empty() {
      return;
    }
    if self.open != Some(OpenBlock::Text) {
      self.open_block(out, OpenBlock::Text, "{\"type\":\"text\",\"text\":\"\"}");
    }
    let index = self.next_index - 1;
    Self::event(
      out,
      "content_block_delta",
      &format!(
        "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
        json_text(text)
      ),
    );
  }

  fn tool_call(
    &mut self,
    out: &mut Vec<u8>,
    call: u32,
    id: Option<&str>,
    name: Option<&str>,
    json: &str,
  ) {
    if self.open != Some(OpenBlock::Tool(call)) {
      let id = match id {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("toolu_{}_{call}", self.id.trim_start_matches("msg_")),
      };
      let block = format!(
        "{{\"type\":\"tool_use\",\"id\":{},\"name\":{},\"input\":{{}}}}",
        json_text(&id),
        json_text(name.unwrap_or_default())
      );
      self.open_block(out, OpenBlock::Tool(call), &block);
    }
    if json.is_empty() {
      return;
    }
    let index = self.next_index - 1;
    Self::event(
      out,
      "content_block_delta",
      &format!(
        "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}",
        json_text(json)
      ),
    );
  }
}

impl Encoder for MessagesEncoder {
  fn json(&mut self, response: &ChatResponse) -> Vec<u8> {
    let mut content = Vec::new();
    if !response.content.is_empty() {
      content.push(format!(
        "{{\"type\":\"text\",\"text\":{}}}",
        json_text(&response.content)
      ));
    }
    for call in &response.tool_calls {
      content.push(format!(
        "{{\"type\":\"tool_use\",\"id\":{},\"name\":{},\"input\":{}}}",
        json_text(&call.id),
        json_text(&call.name),
        tool_input(&call.arguments)
      ));
    }
    format!(
      "{{\"id\":{},\"type\":\"message\",\"role\":\"assistant\",\"model\":{},\"content\":[{}],\"stop_reason\":\"{}\",\"stop_sequence\":null,\"usage\":{}}}",
      json_text(&self.id),
      json_text(&self.model),
      content.join(","),
      stop_reason(response.finish_reason),
      usage_json(response)
    )
    .into_bytes()
  }

  fn stream_start(&mut self, _request_id: &str, out: &mut Vec<u8>) {
    // The prompt's usage is known only at the end; message_delta carries it.
    Self::event(
      out,
      "message_start",
      &format!(
        "{{\"type\":\"message_start\",\"message\":{{\"id\":{},\"type\":\"message\",\"role\":\"assistant\",\"model\":{},\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":0,\"output_tokens\":0}}}}}}",
        json_text(&self.id),
        json_text(&self.model)
      ),
    );
    Self::event(out, "ping", "{\"type\":\"ping\"}");
  }

  fn stream_event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
    match event {
      StreamEvent::Text(text) => self.text(out, text),
      StreamEvent::ToolCall(call) => self.tool_call(
        out,
        call.index,
        call.id.as_deref(),
        call.name.as_deref(),
        &call.arguments_delta,
      ),
      // A relayed vendor stream is written by the driver, never encoded.
      StreamEvent::Done(_) | StreamEvent::Native(_) => {}
    }
  }

  fn stream_end(&mut self, response: &ChatResponse, out: &mut Vec<u8>) {
    if self.next_index == 0 {
      // Nothing was streamed (an answer that arrived whole): send it as blocks now.
      self.text(out, &response.content);
      for (i, call) in response.tool_calls.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        self.tool_call(
          out,
          index,
          Some(&call.id),
          Some(&call.name),
          &call.arguments,
        );
      }
    }
    self.close_block(out);
    Self::event(
      out,
      "message_delta",
      &format!(
        "{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{}\",\"stop_sequence\":null}},\"usage\":{}}}",
        stop_reason(response.finish_reason),
        usage_json(response)
      ),
    );
    Self::event(out, "message_stop", "{\"type\":\"message_stop\"}");
  }

  fn stream_error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
    let (_, kind) = status_and_type(error);
    Self::event(out, "error", &error_body(kind, &error.message, None));
  }
}

// ------------------------------------------------------------------------------- errors

/// The HTTP status and Anthropic error type for each of our error codes.
fn status_and_type(error: &GatewayError) -> (u16, &'static str) {
  match error.code {
    ErrorCode::InvalidRequest if error.status == 413 => (413, "request_too_large"),
    ErrorCode::InvalidRequest | ErrorCode::GuardrailBlocked => (400, "invalid_request_error"),
    ErrorCode::Authentication if error.status == 403 => (403, "permission_error"),
    ErrorCode::Authentication => (401, "authentication_error"),
    ErrorCode::NotFound => (404, "not_found_error"),
    ErrorCode::RateLimited => (429, "rate_limit_error"),
    ErrorCode::BudgetExceeded => (402, "billing_error"),
    ErrorCode::UpstreamUnavailable => (529, "overloaded_error"),
    ErrorCode::Timeout => (504, "timeout_error"),
    // The caller is gone; the status only matters to logs.
    ErrorCode::Aborted => (400, "invalid_request_error"),
    ErrorCode::ProviderError | ErrorCode::Config | ErrorCode::CallbackError => (500, "api_error"),
  }
}

fn error_body(kind: &str, message: &str, request_id: Option<&str>) -> String {
  let request_id = request_id
    .map(|id| format!(",\"request_id\":{}", json_text(id)))
    .unwrap_or_default();
  format!(
    "{{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":{}}}{request_id}}}",
    json_text(message)
  )
}

/// An error before any answer, the way Anthropic answers it: `{type:'error', error:{type,
/// message}, request_id}` with `request-id` (and `retry-after` seconds on a 429 or 529).
pub fn error_reply(error: &GatewayError, request_id: &str) -> ErrorReply {
  let (status, kind) = status_and_type(error);
  let mut headers = vec![
    ("content-type", "application/json".to_string()),
    ("request-id", request_id.to_string()),
  ];
  if let Some(wait) = error.retry_after {
    headers.push(("retry-after", wait.as_secs_f64().ceil().to_string()));
  }
  ErrorReply {
    status,
    headers,
    body: error_body(kind, &error.message, Some(request_id)).into_bytes(),
  }
}

// ------------------------------------------------------------------------- count_tokens

/// A `POST /v1/messages/count_tokens` request: the Messages body without `max_tokens`.
pub struct CountTokens {
  pub model: String,
  pub request: ChatRequest,
  /// The body as sent, for an Anthropic target.
  pub native: Map<String, Value>,
  pub native_headers: Vec<(String, String)>,
}

pub fn parse_count_tokens(body: &[u8], headers: Headers) -> Result<CountTokens> {
  let (native, request, _) = parse_request(body, false)?;
  Ok(CountTokens {
    model: request.model.clone(),
    request,
    native,
    native_headers: native_headers(headers),
  })
}

/// The count for a target that is not Anthropic: ferrogate's `countTokens` of the translated
/// prompt plus the tool definitions (an estimate for non-OpenAI models, as `countTokens` says).
pub fn count_tokens_locally(count: &CountTokens) -> u64 {
  let encoding = crate::tokens::encoding_for(&count.model);
  let mut total = encoding.count_messages(&count.request.messages);
  for tool in &count.request.tools {
    total += encoding.count_text(&tool.name);
    total += encoding.count_text(tool.description.as_deref().unwrap_or_default());
    total += encoding.count_text(&tool.parameters.to_string());
  }
  u64::try_from(total).unwrap_or(u64::MAX)
}

/// Anthropic's count_tokens answer (`{"input_tokens": n}`).
pub fn parse_count_tokens_answer(body: &[u8]) -> Result<u64> {
  let value: Value = crate::providers::parse_json("anthropic", body)?;
  value
    .get("input_tokens")
    .and_then(Value::as_u64)
    .ok_or_else(|| GatewayError::protocol("anthropic's count_tokens answer has no input_tokens"))
}

/// The count_tokens answer to the client.
pub fn count_tokens_json(input_tokens: u64) -> Vec<u8> {
  format!("{{\"input_tokens\":{input_tokens}}}").into_bytes()
}
