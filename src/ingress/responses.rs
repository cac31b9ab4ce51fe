//! OpenAI Responses (`POST /v1/responses`) as clients speak it: Codex CLI, the Agents SDK,
//! `openai.responses.create`. Parsing turns input items into the gateway's normalized
//! request (system and developer messages merged into one system prompt, `custom` tools as
//! functions taking one string, hosted tools left out with a warning); the encoder answers
//! with a `response` object or the typed event stream (`sequence_number`, one
//! `response.output_item.done` per item, `response.completed` with usage, no `[DONE]`).
//!
//! The request's own input items, normalized, travel in [`Turn`] so the response store can
//! keep the conversation for `previous_response_id` (see `response_store`).
//!
//! Same-protocol passthrough: an `openai` provider with `api: 'responses'` speaks this
//! protocol natively. The driver sends it [`native_body`] (the client's body, model renamed,
//! a stored conversation put in front of `input`) and relays the vendor's bytes; it keeps
//! the vendor's `response` object with `response_store::remember_response`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Encoder, ErrorReply, Headers, Parsed, Protocol};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, FinishReason, Message, ResponseFormat, Role, StreamEvent,
  ToolCall, ToolChoice, ToolDefinition, Usage,
};

/// Fields of the request that the `response` object echoes back, as OpenAI does.
const ECHOED: [&str; 16] = [
  "instructions",
  "max_output_tokens",
  "max_tool_calls",
  "metadata",
  "parallel_tool_calls",
  "previous_response_id",
  "prompt_cache_key",
  "reasoning",
  "safety_identifier",
  "service_tier",
  "temperature",
  "text",
  "tool_choice",
  "tools",
  "top_p",
  "user",
];

/// What the response store needs of one call besides its answer.
pub struct Turn {
  /// `resp_…`: the id the client sees, in the JSON answer and in every stream event.
  pub response_id: String,
  /// `store` (default true): keep this response for GET and `previous_response_id`.
  pub store: bool,
  pub previous_response_id: Option<String>,
  /// This request's input, as items (a string input is one user message item).
  pub input_items: Vec<Value>,
  /// The `response` object the encoder produced (whole answers and completed streams).
  finished: Arc<Mutex<Option<Value>>>,
}

impl Turn {
  /// The `response` object sent to the client, once the call completed.
  pub fn finished_response(&self) -> Option<Value> {
    self.finished.lock().ok().and_then(|slot| slot.clone())
  }
}

fn invalid(message: impl Into<String>) -> GatewayError {
  GatewayError::invalid_request(message)
}

fn type_name(value: &Value) -> &'static str {
  match value {
    Value::Null => "null",
    Value::Bool(_) => "a boolean",
    Value::Number(_) => "a number",
    Value::String(_) => "a string",
    Value::Array(_) => "an array",
    Value::Object(_) => "an object",
  }
}

fn random_id(prefix: &str) -> String {
  format!(
    "{prefix}_{:016x}{:016x}",
    fastrand::u64(..),
    fastrand::u64(..)
  )
}

fn now_seconds() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_secs())
    .unwrap_or(0)
}

/// Responses in the driver's route table: an `openai` provider with `api: 'responses'`
/// speaks it natively (one without it speaks Chat Completions, and is translated for).
pub const CODEC: super::Codec = super::Codec {
  protocol: Protocol::Responses,
  parse,
  error_reply,
  identity_path: &["user"],
};

/// [`parse_turn`] for the codec contract.
pub fn parse(body: &[u8], headers: Headers) -> Result<Parsed> {
  parse_turn(body, headers).map(|(parsed, _)| parsed)
}

/// Parses a Responses request: the normalized call, and what the store needs of it.
pub fn parse_turn(body: &[u8], _headers: Headers) -> Result<(Parsed, Turn)> {
  let value: Value = serde_json::from_slice(body)
    .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
  let Value::Object(native) = value else {
    return Err(invalid(format!(
      "the request body must be a JSON object, not {}",
      type_name(&value)
    )));
  };
  let model = match native.get("model") {
    Some(Value::String(model)) if !model.is_empty() => model.clone(),
    None | Some(Value::Null) => return Err(invalid("model: you must provide a model parameter")),
    Some(other) => {
      return Err(invalid(format!(
        "model: expected a non-empty string, got {}",
        type_name(other)
      )))
    }
  };
  let input_items = input_items(native.get("input"))?;
  let mut warnings = Vec::new();
  let mut custom_tools = HashSet::new();
  let tools = tools(native.get("tools"), &mut custom_tools, &mut warnings)?;
  let instructions = optional_string(&native, "instructions")?;
  let messages = translate_items(instructions.as_deref(), &[], &input_items, &mut warnings)?;
  let request = ChatRequest {
    model: String::new(),
    messages,
    temperature: optional_number(&native, "temperature")?,
    top_p: optional_number(&native, "top_p")?,
    max_tokens: optional_count(&native, "max_output_tokens")?,
    stop: Vec::new(),
    response_format: text_format(native.get("text"))?,
    tools,
    tool_choice: tool_choice(native.get("tool_choice"))?,
    user: optional_string(&native, "user")?,
    ..ChatRequest::default()
  };
  let stream = optional_bool(&native, "stream")?.unwrap_or(false);
  let store = optional_bool(&native, "store")?.unwrap_or(true);
  let previous_response_id = optional_string(&native, "previous_response_id")?;
  let metadata = metadata(native.get("metadata"))?;
  let finished = Arc::new(Mutex::new(None));
  let response_id = random_id("resp");
  let mut echo = Map::new();
  for field in ECHOED {
    if let Some(value) = native.get(field) {
      echo.insert(field.to_string(), value.clone());
    }
  }
  echo.insert("store".into(), json!(store));
  let encoder = ResponsesEncoder {
    response_id: response_id.clone(),
    created_at: now_seconds(),
    model: model.clone(),
    echo,
    custom_tools,
    sequence: 0,
    items: Vec::new(),
    open: None,
    custom_calls: Vec::new(),
    finished: finished.clone(),
  };
  let parsed = Parsed {
    protocol: Protocol::Responses,
    model,
    request,
    stream,
    metadata,
    native,
    native_headers: Vec::new(),
    native_only: Vec::new(),
    warnings,
    encoder: Box::new(encoder),
  };
  let turn = Turn {
    response_id,
    store,
    previous_response_id,
    input_items,
    finished,
  };
  Ok((parsed, turn))
}

/// The body a same-protocol target (an `openai` provider with `api: 'responses'`) receives:
/// the client's body with only `model` renamed, except that a conversation resolved from our
/// store goes in front of `input` and `previous_response_id` (an id the vendor never saw) is
/// removed.
pub fn native_body(parsed: &Parsed, turn: &Turn, history: &[Value], vendor_model: &str) -> Value {
  let mut body = parsed.native.clone();
  body.insert("model".into(), json!(vendor_model));
  if !history.is_empty() {
    let mut input = history.to_vec();
    input.extend(turn.input_items.iter().cloned());
    body.insert("input".into(), Value::Array(input));
    body.remove("previous_response_id");
  }
  Value::Object(body)
}

/// Puts the conversation a `previous_response_id` named (its items, oldest first) before
/// this request's input. `instructions` are this request's only, as OpenAI does.
pub fn prepend_history(parsed: &mut Parsed, turn: &Turn, history: &[Value]) -> Result<()> {
  if history.is_empty() {
    return Ok(());
  }
  let instructions = optional_string(&parsed.native, "instructions")?;
  let mut warnings = Vec::new();
  parsed.request.messages = translate_items(
    instructions.as_deref(),
    history,
    &turn.input_items,
    &mut warnings,
  )?;
  for warning in warnings {
    if !parsed.warnings.contains(&warning) {
      parsed.warnings.push(warning);
    }
  }
  Ok(())
}

// ------------------------------------------------------------------------------- request fields

fn optional_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>> {
  match body.get(field) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(text)) => Ok(Some(text.clone())),
    Some(other) => Err(invalid(format!(
      "{field}: expected a string, got {}",
      type_name(other)
    ))),
  }
}

fn optional_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
  match body.get(field) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Bool(flag)) => Ok(Some(*flag)),
    Some(other) => Err(invalid(format!(
      "{field}: expected a boolean, got {}",
      type_name(other)
    ))),
  }
}

fn optional_number(body: &Map<String, Value>, field: &str) -> Result<Option<f64>> {
  match body.get(field) {
    None | Some(Value::Null) => Ok(None),
    Some(Value::Number(n)) => Ok(n.as_f64()),
    Some(other) => Err(invalid(format!(
      "{field}: expected a number, got {}",
      type_name(other)
    ))),
  }
}

fn optional_count(body: &Map<String, Value>, field: &str) -> Result<Option<u32>> {
  match body.get(field) {
    None | Some(Value::Null) => Ok(None),
    Some(value) => value
      .as_u64()
      .filter(|n| *n >= 1)
      .and_then(|n| u32::try_from(n).ok())
      .map(Some)
      .ok_or_else(|| {
        invalid(format!(
          "{field}: expected a whole number >= 1, got {value}"
        ))
      }),
  }
}

fn metadata(value: Option<&Value>) -> Result<Vec<(String, String)>> {
  match value {
    None | Some(Value::Null) => Ok(Vec::new()),
    Some(Value::Object(map)) => map
      .iter()
      .map(|(key, value)| match value {
        Value::String(text) => Ok((key.clone(), text.clone())),
        Value::Number(_) | Value::Bool(_) => Ok((key.clone(), value.to_string())),
        other => Err(invalid(format!(
          "metadata.{key}: expected a string, got {}",
          type_name(other)
        ))),
      })
      .collect(),
    Some(other) => Err(invalid(format!(
      "metadata: expected an object, got {}",
      type_name(other)
    ))),
  }
}

fn text_format(text: Option<&Value>) -> Result<Option<ResponseFormat>> {
  let format = match text {
    None | Some(Value::Null) => return Ok(None),
    Some(Value::Object(text)) => match text.get("format") {
      None | Some(Value::Null) => return Ok(None),
      Some(Value::Object(format)) => format,
      Some(other) => {
        return Err(invalid(format!(
          "text.format: expected an object, got {}",
          type_name(other)
        )))
      }
    },
    Some(other) => {
      return Err(invalid(format!(
        "text: expected an object, got {}",
        type_name(other)
      )))
    }
  };
  match format.get("type").and_then(Value::as_str) {
    Some("text") => Ok(Some(ResponseFormat::Text)),
    Some("json_object") => Ok(Some(ResponseFormat::JsonObject)),
    Some("json_schema") => {
      let name = format
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("response")
        .to_string();
      let schema = match format.get("schema") {
        Some(schema @ Value::Object(_)) => schema.clone(),
        _ => {
          return Err(invalid(
            "text.format.schema: a json_schema format needs a schema object",
          ))
        }
      };
      Ok(Some(ResponseFormat::JsonSchema { name, schema }))
    }
    Some(other) => Err(invalid(format!(
      "text.format.type: unknown format '{other}' (expected text, json_object or json_schema)"
    ))),
    None => Err(invalid("text.format.type: missing")),
  }
}

fn tool_choice(value: Option<&Value>) -> Result<Option<ToolChoice>> {
  match value {
    None | Some(Value::Null) => Ok(None),
    Some(Value::String(choice)) => match choice.as_str() {
      "auto" => Ok(Some(ToolChoice::Auto)),
      "none" => Ok(Some(ToolChoice::None)),
      "required" => Ok(Some(ToolChoice::Required)),
      other => Err(invalid(format!(
        "tool_choice: unknown value '{other}' (expected auto, none or required)"
      ))),
    },
    Some(Value::Object(choice)) => match choice.get("type").and_then(Value::as_str) {
      Some("function") | Some("custom") => match choice.get("name").and_then(Value::as_str) {
        Some(name) => Ok(Some(ToolChoice::Named(name.to_string()))),
        None => Err(invalid("tool_choice.name: missing")),
      },
      Some("allowed_tools") => match choice.get("mode").and_then(Value::as_str) {
        Some("required") => Ok(Some(ToolChoice::Required)),
        _ => Ok(Some(ToolChoice::Auto)),
      },
      // A hosted tool forced by type: the tool itself is left out when translating.
      Some(_) => Ok(Some(ToolChoice::Auto)),
      None => Err(invalid("tool_choice.type: missing")),
    },
    Some(other) => Err(invalid(format!(
      "tool_choice: expected a string or an object, got {}",
      type_name(other)
    ))),
  }
}

/// The parameters schema a `custom` tool gets when translated: one string, `input`.
fn custom_tool_parameters() -> Value {
  json!({
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text in the tool's format."}},
    "required": ["input"],
    "additionalProperties": false,
  })
}

fn tools(
  value: Option<&Value>,
  custom_tools: &mut HashSet<String>,
  warnings: &mut Vec<String>,
) -> Result<Vec<ToolDefinition>> {
  let list = match value {
    None | Some(Value::Null) => return Ok(Vec::new()),
    Some(Value::Array(list)) => list,
    Some(other) => {
      return Err(invalid(format!(
        "tools: expected an array, got {}",
        type_name(other)
      )))
    }
  };
  let mut out = Vec::new();
  for (i, tool) in list.iter().enumerate() {
    let Value::Object(tool) = tool else {
      return Err(invalid(format!(
        "tools[{i}]: expected an object, got {}",
        type_name(tool)
      )));
    };
    let kind = match tool.get("type") {
      Some(Value::String(kind)) => kind.as_str(),
      _ => return Err(invalid(format!("tools[{i}].type: missing"))),
    };
    let name = || match tool.get("name") {
      Some(Value::String(name)) if !name.is_empty() => Ok(name.clone()),
      _ => Err(invalid(format!("tools[{i}].name: missing"))),
    };
    let description = tool
      .get("description")
      .and_then(Value::as_str)
      .map(str::to_string);
    match kind {
      "function" => {
        let parameters = match tool.get("parameters") {
          None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
          Some(schema @ Value::Object(_)) => schema.clone(),
          Some(other) => {
            return Err(invalid(format!(
              "tools[{i}].parameters: expected an object, got {}",
              type_name(other)
            )))
          }
        };
        out.push(ToolDefinition {
          name: name()?,
          description,
          parameters,
        });
      }
      "custom" => {
        let name = name()?;
        // The model of another vendor sees the format in the description: it has no
        // grammar-constrained decoding to enforce it.
        let mut description = description.unwrap_or_default();
        if let Some(format) = tool.get("format").and_then(Value::as_object) {
          if let Some(definition) = format.get("definition").and_then(Value::as_str) {
            let syntax = format.get("syntax").and_then(Value::as_str).unwrap_or("grammar");
            if !description.is_empty() {
              description.push_str("\n\n");
            }
            description.push_str(&format!(
              "The input must follow this {syntax} grammar:\n{definition}"
            ));
          }
        }
        custom_tools.insert(name.clone());
        out.push(ToolDefinition {
          name,
          description: (!description.is_empty()).then_some(description),
          parameters: custom_tool_parameters(),
        });
      }
      hosted => warnings.push(format!(
        "tools[{i}]: the '{hosted}' tool runs only on OpenAI's Responses API; left out for this provider"
      )),
    }
  }
  Ok(out)
}

// ------------------------------------------------------------------------------------ input items

/// The input as a list of item objects. A string is one user message; each item is checked
/// enough that translating it cannot fail later.
fn input_items(value: Option<&Value>) -> Result<Vec<Value>> {
  let list = match value {
    None | Some(Value::Null) => return Err(invalid("input: you must provide an input")),
    Some(Value::String(text)) => {
      return Ok(vec![json!({
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
      })])
    }
    Some(Value::Array(list)) => list,
    Some(other) => {
      return Err(invalid(format!(
        "input: expected a string or an array of items, got {}",
        type_name(other)
      )))
    }
  };
  list
    .iter()
    .enumerate()
    .map(|(i, item)| check_item(i, item).map(|()| item.clone()))
    .collect()
}

fn item_kind(item: &Map<String, Value>) -> Option<&str> {
  match item.get("type").and_then(Value::as_str) {
    Some(kind) => Some(kind),
    // EasyInputMessage: `{role, content}` without a type.
    None if item.contains_key("role") => Some("message"),
    None => None,
  }
}

fn check_item(i: usize, item: &Value) -> Result<()> {
  let Value::Object(item) = item else {
    return Err(invalid(format!(
      "input[{i}]: expected an object, got {}",
      type_name(item)
    )));
  };
  let field = |name: &str| -> Result<&str> {
    match item.get(name) {
      Some(Value::String(text)) => Ok(text.as_str()),
      None | Some(Value::Null) => Err(invalid(format!("input[{i}].{name}: missing"))),
      Some(other) => Err(invalid(format!(
        "input[{i}].{name}: expected a string, got {}",
        type_name(other)
      ))),
    }
  };
  match item_kind(item) {
    Some("message") => {
      let role = field("role")?;
      if !matches!(role, "user" | "assistant" | "system" | "developer") {
        return Err(invalid(format!(
          "input[{i}].role: unknown role '{role}' (expected user, assistant, system or developer)"
        )));
      }
      match item.get("content") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
          for (j, part) in parts.iter().enumerate() {
            check_part(&format!("input[{i}].content[{j}]"), part)?;
          }
          Ok(())
        }
        None | Some(Value::Null) => Err(invalid(format!("input[{i}].content: missing"))),
        Some(other) => Err(invalid(format!(
          "input[{i}].content: expected a string or an array, got {}",
          type_name(other)
        ))),
      }
    }
    Some("function_call") => {
      field("call_id")?;
      field("name")?;
      field("arguments")?;
      Ok(())
    }
    Some("custom_tool_call") => {
      field("call_id")?;
      field("name")?;
      field("input")?;
      Ok(())
    }
    Some("function_call_output") | Some("custom_tool_call_output") => {
      field("call_id")?;
      match item.get("output") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
          for (j, part) in parts.iter().enumerate() {
            check_part(&format!("input[{i}].output[{j}]"), part)?;
          }
          Ok(())
        }
        None | Some(Value::Null) => Err(invalid(format!("input[{i}].output: missing"))),
        Some(other) => Err(invalid(format!(
          "input[{i}].output: expected a string or an array, got {}",
          type_name(other)
        ))),
      }
    }
    // Kept in the conversation for a Responses target; another vendor cannot read them.
    Some("reasoning") | Some("item_reference") => Ok(()),
    // Hosted tools' items: kept for a Responses target, left out (with a warning) for others.
    Some(
      "web_search_call"
      | "file_search_call"
      | "computer_call"
      | "computer_call_output"
      | "code_interpreter_call"
      | "image_generation_call"
      | "local_shell_call"
      | "local_shell_call_output"
      | "mcp_call"
      | "mcp_list_tools"
      | "mcp_approval_request"
      | "mcp_approval_response"
      | "tool_search_call"
      | "tool_search_output"
      | "shell_call"
      | "shell_call_output"
      | "apply_patch_call"
      | "apply_patch_call_output"
      | "compaction",
    ) => Ok(()),
    Some(other) => Err(invalid(format!(
      "input[{i}].type: unknown item type '{other}'"
    ))),
    None => Err(invalid(format!("input[{i}].type: missing"))),
  }
}

fn check_part(at: &str, part: &Value) -> Result<()> {
  let Value::Object(part) = part else {
    return Err(invalid(format!(
      "{at}: expected an object, got {}",
      type_name(part)
    )));
  };
  match part.get("type").and_then(Value::as_str) {
    Some("input_text") | Some("output_text") | Some("text") | Some("summary_text") => {
      match part.get("text") {
        Some(Value::String(_)) => Ok(()),
        _ => Err(invalid(format!("{at}.text: expected a string"))),
      }
    }
    Some("refusal") => match part.get("refusal") {
      Some(Value::String(_)) => Ok(()),
      _ => Err(invalid(format!("{at}.refusal: expected a string"))),
    },
    Some("input_image") => match part.get("image_url") {
      Some(Value::String(_)) => Ok(()),
      _ if part.get("file_id").is_some() => Ok(()),
      _ => Err(invalid(format!(
        "{at}.image_url: an input_image needs an image_url (a URL or a data: URL)"
      ))),
    },
    Some("input_file") | Some("input_audio") => Ok(()),
    Some(other) => Err(invalid(format!(
      "{at}.type: unknown content type '{other}'"
    ))),
    None => Err(invalid(format!("{at}.type: missing"))),
  }
}

fn parts_of(content: Option<&Value>, warnings: &mut Vec<String>) -> Vec<ContentPart> {
  match content {
    Some(Value::String(text)) => vec![ContentPart::Text(text.clone())],
    Some(Value::Array(parts)) => parts
      .iter()
      .filter_map(|part| {
        let part = part.as_object()?;
        match part.get("type").and_then(Value::as_str)? {
          "input_text" | "output_text" | "text" | "summary_text" => part
            .get("text")
            .and_then(Value::as_str)
            .map(|t| ContentPart::Text(t.to_string())),
          "refusal" => part
            .get("refusal")
            .and_then(Value::as_str)
            .map(|t| ContentPart::Text(t.to_string())),
          "input_image" => match part.get("image_url").and_then(Value::as_str) {
            Some(url) => Some(ContentPart::ImageUrl(url.to_string())),
            None => {
              warnings
                .push("an input_image given by file_id was left out for this provider".into());
              None
            }
          },
          other => {
            warnings.push(format!(
              "an {other} content part was left out for this provider"
            ));
            None
          }
        }
      })
      .collect(),
    _ => Vec::new(),
  }
}

fn text_of(content: Option<&Value>, warnings: &mut Vec<String>) -> String {
  parts_of(content, warnings)
    .into_iter()
    .filter_map(|part| match part {
      ContentPart::Text(text) => Some(text),
      _ => None,
    })
    .collect::<Vec<_>>()
    .join("")
}

fn str_field(item: &Map<String, Value>, name: &str) -> String {
  item
    .get(name)
    .and_then(Value::as_str)
    .unwrap_or_default()
    .to_string()
}

/// The arguments of a translated `custom` tool call: `{"input": "<the free text>"}`.
fn custom_arguments(input: &str) -> String {
  json!({ "input": input }).to_string()
}

/// The free-text input of a translated `custom` tool call, from the arguments the model
/// produced (the raw text when they are not the expected object).
fn custom_input(arguments: &str) -> String {
  match serde_json::from_str::<Value>(arguments) {
    Ok(Value::Object(map)) => match map.get("input") {
      Some(Value::String(input)) => input.clone(),
      Some(other) => other.to_string(),
      None => arguments.to_string(),
    },
    _ => arguments.to_string(),
  }
}

/// Items (history first, then this request's input) as normalized messages: one system
/// message first (instructions, then every system and developer message, wherever it was),
/// then the turns, with tool calls attached to the assistant turn before them.
fn translate_items(
  instructions: Option<&str>,
  history: &[Value],
  input: &[Value],
  warnings: &mut Vec<String>,
) -> Result<Vec<Message>> {
  let mut system: Vec<String> = Vec::new();
  if let Some(text) = instructions.filter(|t| !t.is_empty()) {
    system.push(text.to_string());
  }
  let mut turns: Vec<Message> = Vec::new();
  for item in history.iter().chain(input) {
    let Some(item) = item.as_object() else {
      continue;
    };
    match item_kind(item).unwrap_or_default() {
      "message" => {
        let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
          "system" | "developer" => {
            let text = text_of(item.get("content"), warnings);
            if !text.is_empty() {
              system.push(text);
            }
          }
          "assistant" => {
            let text = text_of(item.get("content"), warnings);
            turns.push(Message::text(Role::Assistant, text));
          }
          _ => turns.push(Message {
            role: Role::User,
            content: parts_of(item.get("content"), warnings),
            tool_call_id: None,
            tool_calls: Vec::new(),
          }),
        }
      }
      kind @ ("function_call" | "custom_tool_call") => {
        let arguments = if kind == "function_call" {
          str_field(item, "arguments")
        } else {
          custom_arguments(&str_field(item, "input"))
        };
        let call = ToolCall {
          id: str_field(item, "call_id"),
          name: str_field(item, "name"),
          arguments,
          thought_signature: None,
        };
        match turns.last_mut() {
          Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
          _ => turns.push(Message {
            role: Role::Assistant,
            content: Vec::new(),
            tool_call_id: None,
            tool_calls: vec![call],
          }),
        }
      }
      "function_call_output" | "custom_tool_call_output" => {
        let output = text_of(item.get("output"), warnings);
        turns.push(Message {
          role: Role::Tool,
          content: vec![ContentPart::Text(output)],
          tool_call_id: Some(str_field(item, "call_id")),
          tool_calls: Vec::new(),
        });
      }
      // Reasoning is the vendor's own; another vendor cannot read it.
      "reasoning" => {}
      other => {
        let warning = format!("input items of type '{other}' were left out for this provider");
        if !warnings.contains(&warning) {
          warnings.push(warning);
        }
      }
    }
  }
  let mut messages = Vec::with_capacity(turns.len() + 1);
  if !system.is_empty() {
    messages.push(Message::text(Role::System, system.join("\n\n")));
  }
  messages.extend(turns);
  Ok(messages)
}

// --------------------------------------------------------------------------------------- errors

/// The field an INVALID_REQUEST message names first (`input[3].type: …` → `input[3].type`).
fn param_of(error: &GatewayError) -> Value {
  if error.code != ErrorCode::InvalidRequest {
    return Value::Null;
  }
  match error.message.split_once(": ") {
    Some((field, _))
      if !field.is_empty()
        && field
          .chars()
          .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)) =>
    {
      json!(field)
    }
    _ => Value::Null,
  }
}

/// `{ error: { message, type, param, code } }`: the Chat Completions codec's body, with the
/// field an invalid request names as `param`, and a missing stored response an
/// `invalid_request_error` coded `not_found`, as OpenAI answers them.
pub fn error_body(error: &GatewayError) -> Value {
  let mut body = super::chat_completions::error_value(error);
  body["error"]["param"] = param_of(error);
  if error.code == ErrorCode::NotFound {
    body["error"]["type"] = json!("invalid_request_error");
    body["error"]["code"] = json!("not_found");
  }
  body
}

/// An error before any answer: OpenAI's status and body, `retry-after` when the error has
/// a wait, and our request id.
pub fn error_reply(error: &GatewayError, _request_id: &str) -> ErrorReply {
  let mut reply = super::chat_completions::error_reply(error);
  reply.body = serde_json::to_vec(&error_body(error)).unwrap_or_default();
  reply
}

/// GET or DELETE of a response id the store does not hold.
pub fn response_not_found(id: &str) -> GatewayError {
  GatewayError::not_found(format!("Response with id '{id}' not found."))
}

// -------------------------------------------------------------------------------------- encoder

enum OpenItem {
  Message {
    id: String,
    output_index: usize,
    text: String,
  },
  Function {
    /// The `StreamEvent::ToolCall` index.
    index: u32,
    id: String,
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
  },
}

pub struct ResponsesEncoder {
  response_id: String,
  created_at: u64,
  model: String,
  echo: Map<String, Value>,
  /// Tool names the client declared `custom`: their calls go back as `custom_tool_call`.
  custom_tools: HashSet<String>,
  sequence: u64,
  /// Output items completed so far in a stream.
  items: Vec<Value>,
  open: Option<OpenItem>,
  /// Custom tool calls of a stream, by event index: their input is only known whole.
  custom_calls: Vec<(u32, ToolCall)>,
  finished: Arc<Mutex<Option<Value>>>,
}

fn usage_json(usage: &Usage) -> Value {
  json!({
    "input_tokens": usage.prompt_tokens,
    "input_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    "output_tokens": usage.completion_tokens,
    "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    "total_tokens": usage.total_tokens,
  })
}

fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
  json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

fn text_part(text: &str) -> Value {
  json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn function_item(id: &str, status: &str, call_id: &str, name: &str, arguments: &str) -> Value {
  json!({"id": id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments})
}

fn custom_item(id: &str, status: &str, call_id: &str, name: &str, input: &str) -> Value {
  json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name, "input": input})
}

impl ResponsesEncoder {
  fn is_custom(&self, name: &str) -> bool {
    self.custom_tools.contains(name)
  }

  /// The `response` object with every echoed request field and its defaults.
  fn response_object(
    &self,
    status: &str,
    output: Vec<Value>,
    response: Option<&ChatResponse>,
  ) -> Value {
    let mut object = Map::new();
    for (field, default) in [
      ("instructions", Value::Null),
      ("max_output_tokens", Value::Null),
      ("max_tool_calls", Value::Null),
      ("metadata", json!({})),
      ("parallel_tool_calls", json!(true)),
      ("previous_response_id", Value::Null),
      ("prompt_cache_key", Value::Null),
      ("reasoning", json!({"effort": null, "summary": null})),
      ("safety_identifier", Value::Null),
      ("service_tier", json!("default")),
      ("temperature", json!(1.0)),
      ("text", json!({"format": {"type": "text"}})),
      ("tool_choice", json!("auto")),
      ("tools", json!([])),
      ("top_p", json!(1.0)),
      ("user", Value::Null),
    ] {
      let value = self.echo.get(field).cloned().unwrap_or(default);
      object.insert(field.into(), value);
    }
    object.insert(
      "store".into(),
      self.echo.get("store").cloned().unwrap_or(json!(true)),
    );
    object.insert("id".into(), json!(self.response_id));
    object.insert("object".into(), json!("response"));
    object.insert("created_at".into(), json!(self.created_at));
    object.insert("status".into(), json!(status));
    object.insert("background".into(), json!(false));
    object.insert("error".into(), Value::Null);
    let incomplete = response.and_then(|r| match r.finish_reason {
      FinishReason::Length => Some(json!({"reason": "max_output_tokens"})),
      FinishReason::ContentFilter => Some(json!({"reason": "content_filter"})),
      _ => None,
    });
    object.insert(
      "incomplete_details".into(),
      incomplete.unwrap_or(Value::Null),
    );
    object.insert("model".into(), json!(self.model));
    object.insert("output".into(), Value::Array(output));
    object.insert("truncation".into(), json!("disabled"));
    object.insert(
      "usage".into(),
      response.map_or(Value::Null, |r| usage_json(&r.usage)),
    );
    Value::Object(object)
  }

  fn final_status(response: &ChatResponse) -> &'static str {
    match response.finish_reason {
      FinishReason::Length | FinishReason::ContentFilter => "incomplete",
      _ => "completed",
    }
  }

  /// The output items of a whole answer.
  fn output_items(&self, response: &ChatResponse) -> Vec<Value> {
    let mut output = Vec::new();
    let mut content = Vec::new();
    if !response.content.is_empty()
      || (response.tool_calls.is_empty() && response.refusal.is_none())
    {
      content.push(text_part(&response.content));
    }
    if let Some(refusal) = &response.refusal {
      content.push(json!({"type": "refusal", "refusal": refusal}));
    }
    if !content.is_empty() {
      output.push(message_item(&random_id("msg"), "completed", content));
    }
    for call in &response.tool_calls {
      output.push(self.call_item(call));
    }
    output
  }

  fn call_item(&self, call: &ToolCall) -> Value {
    if self.is_custom(&call.name) {
      custom_item(
        &random_id("ctc"),
        "completed",
        &call.id,
        &call.name,
        &custom_input(&call.arguments),
      )
    } else {
      function_item(
        &random_id("fc"),
        "completed",
        &call.id,
        &call.name,
        &call.arguments,
      )
    }
  }

  /// One SSE event: `event: <type>` and the data with `type` and `sequence_number` first,
  /// as OpenAI orders them.
  fn event(&mut self, out: &mut Vec<u8>, kind: &str, fields: Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: {\"type\":");
    write_json(out, &json!(kind));
    out.extend_from_slice(b",\"sequence_number\":");
    out.extend_from_slice(self.sequence.to_string().as_bytes());
    self.sequence += 1;
    if let Value::Object(fields) = fields {
      for (key, value) in &fields {
        out.push(b',');
        write_json(out, &json!(key));
        out.push(b':');
        write_json(out, value);
      }
    }
    out.extend_from_slice(b"}\n\n");
  }

  fn open_message(&mut self, out: &mut Vec<u8>) {
    if matches!(self.open, Some(OpenItem::Message { .. })) {
      return;
    }
    self.close_open(out);
    let id = random_id("msg");
    let output_index = self.items.len();
    self.event(
      out,
      "response.output_item.added",
      json!({"output_index": output_index, "item": message_item(&id, "in_progress", Vec::new())}),
    );
    self.event(
      out,
      "response.content_part.added",
      json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": text_part("")}),
    );
    self.open = Some(OpenItem::Message {
      id,
      output_index,
      text: String::new(),
    });
  }

  fn text_delta(&mut self, out: &mut Vec<u8>, delta: &str) {
    self.open_message(out);
    let Some(OpenItem::Message {
      id,
      output_index,
      text,
    }) = &mut self.open
    else {
      return;
    };
    text.push_str(delta);
    let fields = json!({"item_id": id, "output_index": output_index, "content_index": 0, "delta": delta, "logprobs": []});
    self.event(out, "response.output_text.delta", fields);
  }

  /// Ends the item in progress with its `…done` events.
  fn close_open(&mut self, out: &mut Vec<u8>) {
    match self.open.take() {
      None => {}
      Some(OpenItem::Message {
        id,
        output_index,
        text,
      }) => {
        self.event(
          out,
          "response.output_text.done",
          json!({"item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}),
        );
        self.event(
          out,
          "response.content_part.done",
          json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": text_part(&text)}),
        );
        let item = message_item(&id, "completed", vec![text_part(&text)]);
        self.event(
          out,
          "response.output_item.done",
          json!({"output_index": output_index, "item": item}),
        );
        self.items.push(item);
      }
      Some(OpenItem::Function {
        id,
        output_index,
        call_id,
        name,
        arguments,
        ..
      }) => {
        self.event(
          out,
          "response.function_call_arguments.done",
          json!({"item_id": id, "output_index": output_index, "name": name, "arguments": arguments}),
        );
        let item = function_item(&id, "completed", &call_id, &name, &arguments);
        self.event(
          out,
          "response.output_item.done",
          json!({"output_index": output_index, "item": item}),
        );
        self.items.push(item);
      }
    }
  }

  fn tool_delta(
    &mut self,
    out: &mut Vec<u8>,
    index: u32,
    call_id: Option<&str>,
    name: Option<&str>,
    delta: &str,
  ) {
    if let Some((_, call)) = self.custom_calls.iter_mut().find(|(i, _)| *i == index) {
      call.arguments.push_str(delta);
      return;
    }
    if let Some(OpenItem::Function {
      index: open,
      arguments,
      id,
      output_index,
      ..
    }) = &mut self.open
    {
      if *open == index {
        arguments.push_str(delta);
        if !delta.is_empty() {
          let fields = json!({"item_id": id, "output_index": output_index, "delta": delta});
          self.event(out, "response.function_call_arguments.delta", fields);
        }
        return;
      }
    }
    let name = name.unwrap_or_default().to_string();
    let call_id = call_id
      .map(str::to_string)
      .unwrap_or_else(crate::assembler::generated_call_id);
    if self.is_custom(&name) {
      self.custom_calls.push((
        index,
        ToolCall {
          id: call_id,
          name,
          arguments: delta.to_string(),
          thought_signature: None,
        },
      ));
      return;
    }
    self.close_open(out);
    let id = random_id("fc");
    let output_index = self.items.len();
    self.event(
      out,
      "response.output_item.added",
      json!({"output_index": output_index, "item": function_item(&id, "in_progress", &call_id, &name, "")}),
    );
    self.open = Some(OpenItem::Function {
      index,
      id,
      output_index,
      call_id,
      name,
      arguments: String::new(),
    });
    self.tool_delta(out, index, None, None, delta);
  }

  fn custom_call_events(&mut self, out: &mut Vec<u8>, call: &ToolCall) {
    let id = random_id("ctc");
    let output_index = self.items.len();
    let input = custom_input(&call.arguments);
    self.event(
      out,
      "response.output_item.added",
      json!({"output_index": output_index, "item": custom_item(&id, "in_progress", &call.id, &call.name, "")}),
    );
    if !input.is_empty() {
      self.event(
        out,
        "response.custom_tool_call_input.delta",
        json!({"item_id": id, "output_index": output_index, "delta": input}),
      );
    }
    self.event(
      out,
      "response.custom_tool_call_input.done",
      json!({"item_id": id, "output_index": output_index, "input": input}),
    );
    let item = custom_item(&id, "completed", &call.id, &call.name, &input);
    self.event(
      out,
      "response.output_item.done",
      json!({"output_index": output_index, "item": item}),
    );
    self.items.push(item);
  }

  fn remember(&self, object: &Value) {
    if let Ok(mut slot) = self.finished.lock() {
      *slot = Some(object.clone());
    }
  }
}

fn write_json(out: &mut Vec<u8>, value: &Value) {
  // Writing JSON into a Vec cannot fail (no I/O, string keys only).
  if serde_json::to_writer(&mut *out, value).is_err() {
    out.extend_from_slice(b"null");
  }
}

impl Encoder for ResponsesEncoder {
  fn json(&mut self, response: &ChatResponse) -> Vec<u8> {
    let output = self.output_items(response);
    let object = self.response_object(Self::final_status(response), output, Some(response));
    self.remember(&object);
    serde_json::to_vec(&object).unwrap_or_default()
  }

  fn stream_start(&mut self, _request_id: &str, out: &mut Vec<u8>) {
    let object = self.response_object("in_progress", Vec::new(), None);
    self.event(out, "response.created", json!({ "response": object }));
    self.event(out, "response.in_progress", json!({ "response": object }));
  }

  fn stream_event(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
    match event {
      StreamEvent::Text(text) => self.text_delta(out, text),
      StreamEvent::ToolCall(call) => self.tool_delta(
        out,
        call.index,
        call.id.as_deref(),
        call.name.as_deref(),
        &call.arguments_delta,
      ),
      StreamEvent::Done(response) => self.stream_end(response, out),
      // A relayed vendor stream is written by the driver, never encoded.
      StreamEvent::Native(_) => {}
    }
  }

  fn stream_end(&mut self, response: &ChatResponse, out: &mut Vec<u8>) {
    let streamed_anything =
      !self.items.is_empty() || self.open.is_some() || !self.custom_calls.is_empty();
    if !streamed_anything {
      // An answer that arrived whole (a cache hit replayed without deltas).
      if !response.content.is_empty() {
        self.text_delta(out, &response.content);
      }
      for (index, call) in response.tool_calls.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        self.tool_delta(
          out,
          index,
          Some(&call.id),
          Some(&call.name),
          &call.arguments,
        );
      }
      if response.content.is_empty() && response.tool_calls.is_empty() {
        self.open_message(out);
      }
    }
    self.close_open(out);
    for (_, call) in std::mem::take(&mut self.custom_calls) {
      self.custom_call_events(out, &call);
    }
    let status = Self::final_status(response);
    let object = self.response_object(status, self.items.clone(), Some(response));
    self.remember(&object);
    let kind = if status == "completed" {
      "response.completed"
    } else {
      "response.incomplete"
    };
    self.event(out, kind, json!({ "response": object }));
  }

  fn stream_error(&mut self, error: &GatewayError, out: &mut Vec<u8>) {
    self.close_open(out);
    let code = super::chat_completions::error_code(error.code);
    self.event(
      out,
      "error",
      json!({"code": code, "message": error.message, "param": null}),
    );
    let mut object = self.response_object("failed", self.items.clone(), None);
    if let Value::Object(map) = &mut object {
      map.insert(
        "error".into(),
        json!({"code": code, "message": error.message}),
      );
    }
    self.event(out, "response.failed", json!({ "response": object }));
  }
}

#[cfg(test)]
mod tests;
