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

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    self.0.key_header(key)
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
  if let Some(key) = &req.prompt_cache_key {
    body.insert("prompt_cache_key".into(), json!(key));
  }
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
        for part in item
          .get("content")
          .and_then(Value::as_array)
          .into_iter()
          .flatten()
        {
          match part.get("type").and_then(Value::as_str) {
            Some("output_text") => {
              content.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("refusal") => refusal.get_or_insert_with(String::new).push_str(
              part
                .get("refusal")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            ),
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
    embeddings: None,
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
        let field = |name: &str| {
          response
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
        };
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

#[cfg(test)]
mod tests {
  use super::*;
  use crate::providers::StreamSession;
  use crate::types::{StreamEvent, ToolDefinition};

  fn request() -> ChatRequest {
    ChatRequest {
      model: "gpt-5".into(),
      messages: vec![
        Message::text(Role::System, "be brief"),
        Message::text(Role::User, "weather?"),
        Message {
          role: Role::Assistant,
          content: Vec::new(),
          tool_call_id: None,
          tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
            thought_signature: None,
          }],
        },
        Message {
          role: Role::Tool,
          content: vec![ContentPart::Text("18C".into())],
          tool_call_id: Some("call_1".into()),
          tool_calls: Vec::new(),
        },
      ],
      max_tokens: Some(100),
      tools: vec![ToolDefinition {
        name: "get_weather".into(),
        description: None,
        parameters: json!({"type": "object"}),
      }],
      tool_choice: Some(ToolChoice::Named("get_weather".into())),
      response_format: Some(ResponseFormat::JsonObject),
      ..ChatRequest::default()
    }
  }

  #[test]
  fn the_request_is_instructions_plus_input_items() {
    let body = request_body(&request(), true).unwrap();
    assert_eq!(
      body,
      json!({
        "model": "gpt-5",
        "instructions": "be brief",
        "input": [
          {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
          {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
          {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
        "max_output_tokens": 100,
        "text": {"format": {"type": "json_object"}},
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": false}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "store": false,
        "stream": true,
      })
    );
    let mut with_stop = request();
    with_stop.stop = vec!["END".into()];
    assert!(request_body(&with_stop, false)
      .unwrap_err()
      .message
      .starts_with("stop:"));
  }

  #[test]
  fn a_json_response_becomes_a_completion() {
    let response = json!({
      "id": "resp_1", "object": "response", "model": "gpt-5", "status": "completed",
      "output": [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_2", "name": "f", "arguments": "{}"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_3", "name": "apply_patch", "input": "patch"},
      ],
      "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 50},
    });
    let completion = completion(&response).unwrap();
    assert_eq!(completion.content, "Hi");
    assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    assert_eq!(completion.tool_calls[0].id, "call_2");
    assert_eq!(completion.tool_calls[1].arguments, "{\"input\":\"patch\"}");
    let usage = completion.usage.unwrap();
    assert_eq!(
      (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens
      ),
      (30, 20, 50)
    );
    assert_eq!(
      (usage.cached_prompt_tokens, usage.reasoning_tokens),
      (10, 5)
    );
    let failed = json!({"status": "failed", "error": {"code": "server_error", "message": "boom"}});
    assert!(completion_error_message(&failed).contains("boom"));
    let incomplete = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "output": []});
    assert_eq!(
      super::completion(&incomplete).unwrap().finish_reason,
      FinishReason::Length
    );
  }

  fn completion_error_message(value: &Value) -> String {
    super::completion(value).unwrap_err().message
  }

  #[test]
  fn the_event_stream_becomes_stream_events() {
    let events = [
      r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_9","model":"gpt-5","status":"in_progress","output":[]}}"#,
      r#"{"type":"response.output_item.added","sequence_number":1,"output_index":0,"item":{"type":"message","id":"msg_1","content":[]}}"#,
      r#"{"type":"response.output_text.delta","sequence_number":2,"output_index":0,"content_index":0,"item_id":"msg_1","delta":"He"}"#,
      r#"{"type":"response.output_text.delta","sequence_number":3,"output_index":0,"content_index":0,"item_id":"msg_1","delta":"y"}"#,
      r#"{"type":"response.output_item.added","sequence_number":4,"output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_7","name":"f","arguments":""}}"#,
      r#"{"type":"response.function_call_arguments.delta","sequence_number":5,"output_index":1,"item_id":"fc_1","delta":"{\"a\":"}"#,
      r#"{"type":"response.function_call_arguments.delta","sequence_number":6,"output_index":1,"item_id":"fc_1","delta":"1}"}"#,
      r#"{"type":"response.completed","sequence_number":7,"response":{"id":"resp_9","status":"completed","output":[],"usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10}}}"#,
    ];
    let mut wire = String::new();
    for event in events {
      let kind: Value = serde_json::from_str(event).unwrap();
      wire.push_str(&format!(
        "event: {}\ndata: {event}\n\n",
        kind["type"].as_str().unwrap()
      ));
    }
    let mut session = StreamSession::new(Box::new(ResponsesStream::default()));
    let mut seen = session.push(wire.as_bytes()).unwrap();
    assert!(session.is_done());
    let (rest, completion) = session.finish().unwrap();
    seen.extend(rest);
    assert_eq!(seen[0], StreamEvent::Text("He".into()));
    assert_eq!(seen[1], StreamEvent::Text("y".into()));
    assert!(
      matches!(&seen[2], StreamEvent::ToolCall(call) if call.id.as_deref() == Some("call_7") && call.name.as_deref() == Some("f"))
    );
    assert_eq!(completion.content, "Hey");
    assert_eq!(completion.tool_calls[0].arguments, "{\"a\":1}");
    assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
    assert_eq!(completion.usage.unwrap().total_tokens, 10);
    assert_eq!(completion.id, "resp_9");

    let failed = "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\"}}}\n\n";
    let mut session = StreamSession::new(Box::new(ResponsesStream::default()));
    let error = session.push(failed.as_bytes()).unwrap_err();
    assert!(error.message.contains("slow down"), "{}", error.message);

    let mut cut = StreamSession::new(Box::new(ResponsesStream::default()));
    cut
      .push(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n")
      .unwrap();
    assert!(cut.finish().is_err());
  }
}
