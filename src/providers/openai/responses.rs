//! OpenAI's Responses API as an upstream (`ProviderConfig.api: 'responses'`):
//! `POST {baseUrl}/responses`, for models that exist only there. The normalized request
//! becomes `instructions` plus input items; the answer's output items (and the typed event
//! stream) become the normalized completion. Nothing is left stored at OpenAI (`store:
//! false`): the gateway sends the whole conversation every time, as for every vendor.

use serde_json::{json, Map, Value};

use super::OpenAi;
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  in_band_error, join_url, parse_json, parse_json_str, stray_line, Adapter, ErrorBody, HttpCall,
  StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;
use crate::types::{
  ChatRequest, Completion, ContentPart, FinishReason, Message, ResponseFormat, Role, ToolCall,
  ToolChoice, Usage,
};

/// The OpenAI adapter's key, organization and headers, speaking `/responses`.
pub struct OpenAiResponses(pub OpenAi);

impl Adapter for OpenAiResponses {
  fn vendor(&self) -> &'static str {
    "openai"
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    Ok(HttpCall {
      url: join_url(&self.0.base_url, "responses"),
      headers: self.0.request_headers(),
      body: request_body(req, stream)?,
    })
  }

  fn health_check(&self) -> Option<HttpCall> {
    self.0.health_check()
  }

  fn parse_response(&self, _req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    let response: Value = parse_json("openai", body)?;
    completion(&response)
  }

  fn stream_decoder(&self, _req: &ChatRequest) -> Box<dyn StreamDecoder> {
    Box::new(ResponsesStream::default())
  }
}

fn input_message(message: &Message, input: &mut Vec<Value>) {
  match message.role {
    Role::System => {}
    Role::User => {
      let content: Vec<Value> = message
        .content
        .iter()
        .map(|part| match part {
          ContentPart::Text(text) => json!({"type": "input_text", "text": text}),
          ContentPart::Image { data, mime_type } => json!({
            "type": "input_image",
            "image_url": format!("data:{mime_type};base64,{data}"),
          }),
          ContentPart::ImageUrl(url) => json!({"type": "input_image", "image_url": url}),
        })
        .collect();
      input.push(json!({"type": "message", "role": "user", "content": content}));
    }
    Role::Assistant => {
      let text = message.joined_text();
      if !text.is_empty() {
        input.push(json!({"type": "message", "role": "assistant", "content": text}));
      }
      for call in &message.tool_calls {
        input.push(json!({
          "type": "function_call",
          "call_id": call.id,
          "name": call.name,
          "arguments": call.arguments,
        }));
      }
    }
    Role::Tool => input.push(json!({
      "type": "function_call_output",
      "call_id": message.tool_call_id.clone().unwrap_or_default(),
      "output": message.joined_text(),
    })),
  }
}

pub fn request_body(req: &ChatRequest, stream: bool) -> Result<Value> {
  if !req.stop.is_empty() {
    return Err(GatewayError::invalid_request(
      "stop: OpenAI's Responses API has no stop sequences (this provider has api 'responses')",
    ));
  }
  let mut body = Map::new();
  body.insert("model".into(), json!(req.model));
  let instructions: Vec<String> = req
    .messages
    .iter()
    .filter(|m| m.role == Role::System)
    .map(Message::joined_text)
    .collect();
  if !instructions.is_empty() {
    body.insert("instructions".into(), json!(instructions.join("\n\n")));
  }
  let mut input = Vec::new();
  for message in &req.messages {
    input_message(message, &mut input);
  }
  body.insert("input".into(), Value::Array(input));
  if let Some(temperature) = req.temperature {
    body.insert("temperature".into(), json!(temperature));
  }
  if let Some(top_p) = req.top_p {
    body.insert("top_p".into(), json!(top_p));
  }
  if let Some(max_tokens) = req.max_tokens {
    body.insert("max_output_tokens".into(), json!(max_tokens));
  }
  match &req.response_format {
    None | Some(ResponseFormat::Text) => {}
    Some(ResponseFormat::JsonObject) => {
      body.insert("text".into(), json!({"format": {"type": "json_object"}}));
    }
    Some(ResponseFormat::JsonSchema { name, schema }) => {
      body.insert(
        "text".into(),
        json!({"format": {"type": "json_schema", "name": name, "schema": schema}}),
      );
    }
  }
  if !req.tools.is_empty() {
    let tools: Vec<Value> = req
      .tools
      .iter()
      .map(|tool| {
        let mut function = Map::new();
        function.insert("type".into(), json!("function"));
        function.insert("name".into(), json!(tool.name));
        if let Some(description) = &tool.description {
          function.insert("description".into(), json!(description));
        }
        function.insert("parameters".into(), tool.parameters.clone());
        function.insert("strict".into(), json!(false));
        Value::Object(function)
      })
      .collect();
    body.insert("tools".into(), Value::Array(tools));
  }
  if let Some(choice) = &req.tool_choice {
    let value = match choice {
      ToolChoice::Auto => json!("auto"),
      ToolChoice::None => json!("none"),
      ToolChoice::Required => json!("required"),
      ToolChoice::Named(name) => json!({"type": "function", "name": name}),
    };
    body.insert("tool_choice".into(), value);
  }
  if let Some(user) = &req.user {
    body.insert("user".into(), json!(user));
  }
  body.insert("store".into(), json!(false));
  if stream {
    body.insert("stream".into(), json!(true));
  }
  Ok(Value::Object(body))
}

fn usage(value: &Value) -> Option<Usage> {
  value.as_object()?;
  let number = |pointer: &str| value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
  let mut usage = Usage::new(number("/input_tokens"), number("/output_tokens"));
  usage.cached_prompt_tokens = number("/input_tokens_details/cached_tokens");
  usage.reasoning_tokens = number("/output_tokens_details/reasoning_tokens");
  Some(usage)
}

/// `{"input": "<text>"}`: a custom tool's free-text input as the arguments of a function
/// (what a client of the gateway's other protocols can read).
fn custom_arguments(input: &str) -> String {
  json!({ "input": input }).to_string()
}

fn finish_reason(response: &Value, has_tool_calls: bool) -> FinishReason {
  let status = response.get("status").and_then(Value::as_str);
  let reason = response
    .pointer("/incomplete_details/reason")
    .and_then(Value::as_str);
  match (status, reason) {
    (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
    (Some("incomplete"), _) => FinishReason::Length,
    _ if has_tool_calls => FinishReason::ToolCalls,
    _ => FinishReason::Stop,
  }
}

/// A failed response (`status: 'failed'`, or an `error` event) as one of our errors.
fn failure(error: &Value) -> GatewayError {
  let body = json!({ "error": error });
  let raw = body.to_string();
  in_band_error("openai", ErrorBody::from_value(&body), raw.as_bytes())
}

pub fn completion(response: &Value) -> Result<Completion> {
  if response.get("status").and_then(Value::as_str) == Some("failed") {
    return Err(failure(response.get("error").unwrap_or(&Value::Null)));
  }
  let output = response
    .get("output")
    .and_then(Value::as_array)
    .ok_or_else(|| GatewayError::protocol("openai sent a response with no output"))?;
  let mut content = String::new();
  let mut refusal: Option<String> = None;
  let mut tool_calls = Vec::new();
  for item in output {
    let text = |name: &str| {
      item
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
    };
    match item.get("type").and_then(Value::as_str) {
      Some("message") => {
        for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
          match part.get("type").and_then(Value::as_str) {
            Some("output_text") => {
              content.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("refusal") => refusal
              .get_or_insert_with(String::new)
              .push_str(part.get("refusal").and_then(Value::as_str).unwrap_or_default()),
            _ => {}
          }
        }
      }
      Some("function_call") => tool_calls.push(ToolCall {
        id: text("call_id"),
        name: text("name"),
        arguments: text("arguments"),
        thought_signature: None,
      }),
      Some("custom_tool_call") => tool_calls.push(ToolCall {
        id: text("call_id"),
        name: text("name"),
        arguments: custom_arguments(&text("input")),
        thought_signature: None,
      }),
      _ => {}
    }
  }
  let string = |name: &str| {
    response
      .get(name)
      .and_then(Value::as_str)
      .unwrap_or_default()
      .to_string()
  };
  Ok(Completion {
    id: string("id"),
    model: string("model"),
    finish_reason: finish_reason(response, !tool_calls.is_empty()),
    content,
    refusal,
    tool_calls,
    usage: response.get("usage").and_then(usage),
  })
}

/// The typed events (`response.output_text.delta`, …, `response.completed`); the output
/// index of an item is its vendor index for tool calls.
#[derive(Default)]
pub struct ResponsesStream {
  done: bool,
}

impl StreamDecoder for ResponsesStream {
  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep> {
    let data = match frame {
      SseFrame::Event { data, .. } => data,
      SseFrame::Stray(text) => return Err(stray_line("openai", &text)),
    };
    if data.trim() == "[DONE]" {
      self.done = true;
      return Ok(StreamStep::Done);
    }
    let event: Value = parse_json_str("openai", &data)?;
    let text = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    let output_index = || {
      event
        .get("output_index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0)
    };
    match text("type") {
      "response.created" | "response.in_progress" => {
        let response = event.get("response").unwrap_or(&Value::Null);
        let field = |name: &str| response.get(name).and_then(Value::as_str).unwrap_or_default();
        out.set_identity(field("id"), field("model"));
      }
      "response.output_text.delta" => out.text(text("delta")),
      "response.refusal.delta" => out.refusal(text("delta")),
      "response.output_item.added" => {
        let item = event.get("item").unwrap_or(&Value::Null);
        let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
        if field("type") == "function_call" {
          out.tool_call_delta(
            output_index(),
            Some(field("call_id")),
            Some(field("name")),
            field("arguments"),
          );
        }
      }
      "response.function_call_arguments.delta" => {
        out.tool_call_delta(output_index(), None, None, text("delta"))
      }
      "response.output_item.done" => {
        // A custom tool's input is free text: it goes out whole, as JSON arguments.
        let item = event.get("item").unwrap_or(&Value::Null);
        let field = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
        if field("type") == "custom_tool_call" {
          out.tool_call_delta(
            output_index(),
            Some(field("call_id")),
            Some(field("name")),
            &custom_arguments(field("input")),
          );
        }
      }
      "response.completed" | "response.incomplete" => {
        let response = event.get("response").unwrap_or(&Value::Null);
        if let Some(usage) = response.get("usage").and_then(usage) {
          out.set_usage(usage);
        }
        out.finish(finish_reason(response, out.has_tool_calls()));
        self.done = true;
        return Ok(StreamStep::Done);
      }
      "response.failed" => {
        let error = event.pointer("/response/error").unwrap_or(&Value::Null);
        return Err(failure(error));
      }
      "error" => {
        let error = event.get("error").unwrap_or(&event);
        return Err(failure(error));
      }
      _ => {}
    }
    Ok(StreamStep::Continue)
  }

  fn on_end(&mut self, _out: &mut StreamAssembler) -> Result<()> {
    if self.done {
      Ok(())
    } else {
      Err(GatewayError::protocol(
        "openai stream ended before the response was completed",
      ))
    }
  }
}
