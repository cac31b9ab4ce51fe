use serde_json::json;

use super::*;
use crate::providers::anthropic::Anthropic;
use crate::providers::{Adapter, StreamSession};
use crate::types::Usage;

fn parse_json(body: Value) -> Result<Parsed> {
  parse_with_headers(body, &[])
}

fn parse_with_headers(body: Value, headers: &[(String, String)]) -> Result<Parsed> {
  parse(body.to_string().as_bytes(), Headers::new(headers))
}

fn error_of(body: Value) -> String {
  match parse_json(body) {
    Ok(_) => panic!("expected an error"),
    Err(error) => {
      assert_eq!(error.code, ErrorCode::InvalidRequest);
      error.message
    }
  }
}

fn base(messages: Value) -> Value {
  json!({ "model": "claude-sonnet-4-5", "max_tokens": 100, "messages": messages })
}

#[test]
fn every_block_type_is_read_and_translated() {
  let body = json!({
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [
      { "type": "text", "text": "You are Claude Code.", "cache_control": { "type": "ephemeral" } },
      { "type": "text", "text": "Be brief." }
    ],
    "messages": [
      { "role": "user", "content": [
        { "type": "text", "text": "look" },
        { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
        { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.png" } }
      ] },
      { "role": "assistant", "content": [
        { "type": "thinking", "thinking": "hmm", "signature": "sig==" },
        { "type": "redacted_thinking", "data": "opaque" },
        { "type": "text", "text": "calling" },
        { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } },
        { "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {} }
      ] },
      { "role": "user", "content": [
        { "type": "tool_result", "tool_use_id": "toolu_1", "content": [{ "type": "text", "text": "sunny" }], "is_error": false },
        { "type": "text", "text": "and tomorrow?", "cache_control": { "type": "ephemeral" } }
      ] },
      { "role": "system", "content": "Answer in French.", "output_config": { "effort": "low" } }
    ],
    "tools": [
      { "name": "get_weather", "description": "Weather", "input_schema": { "type": "object", "properties": { "city": { "type": "string" } } }, "cache_control": { "type": "ephemeral" } },
      { "name": "later", "input_schema": { "type": "object" }, "defer_loading": true },
      { "type": "web_search_20250305", "name": "web_search", "max_uses": 3 }
    ],
    "tool_choice": { "type": "auto" },
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 40,
    "metadata": { "user_id": "{\"session\":\"abc\"}" },
    "stream": true,
    "thinking": { "type": "adaptive" },
    "output_config": { "effort": "high" },
    "context_management": { "edits": [] },
    "something_new": { "kept": true }
  });
  let headers = vec![
    (
      "anthropic-beta".to_string(),
      "claude-code-20250219,interleaved-thinking-2025-05-14".to_string(),
    ),
    ("anthropic-version".to_string(), "2023-06-01".to_string()),
    ("authorization".to_string(), "Bearer secret".to_string()),
  ];
  let parsed = parse_with_headers(body.clone(), &headers).unwrap();
  assert_eq!(parsed.protocol, Protocol::Messages);
  assert_eq!(parsed.model, "claude-sonnet-4-5");
  assert!(parsed.stream);
  assert_eq!(
    Value::Object(parsed.native.clone()),
    body,
    "the body is kept as sent"
  );
  assert_eq!(parsed.native_headers, headers[..2].to_vec());
  assert!(parsed.native_only.is_empty());
  assert_eq!(
    parsed.metadata,
    vec![("user_id".to_string(), "{\"session\":\"abc\"}".to_string())]
  );

  let request = &parsed.request;
  assert_eq!(request.user.as_deref(), Some("{\"session\":\"abc\"}"));
  assert_eq!(request.max_tokens, Some(1024));
  assert_eq!(request.stop, vec!["END"]);
  assert_eq!(request.temperature, Some(0.5));
  assert_eq!(request.top_p, Some(0.9));
  assert_eq!(request.tool_choice, Some(ToolChoice::Auto));
  assert_eq!(request.tools.len(), 2, "the server tool is left out");
  assert_eq!(request.tools[0].name, "get_weather");
  assert_eq!(request.tools[0].description.as_deref(), Some("Weather"));
  assert_eq!(request.tools[1].name, "later");

  let expected = vec![
    Message::text(
      Role::System,
      "You are Claude Code.\n\nBe brief.\n\nAnswer in French.",
    ),
    Message {
      role: Role::User,
      content: vec![
        ContentPart::Text("look".into()),
        ContentPart::Image {
          data: "iVBORw0KGgo=".into(),
          mime_type: "image/png".into(),
        },
        ContentPart::ImageUrl("https://example.com/cat.png".into()),
      ],
      tool_call_id: None,
      tool_calls: vec![],
    },
    Message {
      role: Role::Assistant,
      content: vec![ContentPart::Text("calling".into())],
      tool_call_id: None,
      tool_calls: vec![ToolCall {
        id: "toolu_1".into(),
        name: "get_weather".into(),
        arguments: "{\"city\":\"Paris\"}".into(),
        ..ToolCall::default()
      }],
    },
    Message {
      role: Role::Tool,
      content: vec![ContentPart::Text("sunny".into())],
      tool_call_id: Some("toolu_1".into()),
      tool_calls: vec![],
    },
    Message::text(Role::User, "and tomorrow?"),
  ];
  assert_eq!(request.messages, expected);
  let warnings = parsed.warnings.join("\n");
  assert!(
    warnings.contains("tools[2]: the server tool 'web_search_20250305' was left out"),
    "{warnings}"
  );
  assert!(
    warnings.contains("messages[1].content[4]: a 'server_tool_use' block"),
    "{warnings}"
  );
  assert!(warnings.contains("top_k"), "{warnings}");
}

#[test]
fn string_content_tool_choice_and_structured_output() {
  let mut body = base(json!([{ "role": "user", "content": "hi" }]));
  body["tool_choice"] = json!({ "type": "tool", "name": "f" });
  body["tools"] = json!([{ "type": "custom", "name": "f", "input_schema": { "type": "object" } }]);
  body["output_config"] =
    json!({ "format": { "type": "json_schema", "schema": { "type": "object" } } });
  let parsed = parse_json(body).unwrap();
  assert!(!parsed.stream);
  assert_eq!(
    parsed.request.messages,
    vec![Message::text(Role::User, "hi")]
  );
  assert_eq!(
    parsed.request.tool_choice,
    Some(ToolChoice::Named("f".into()))
  );
  assert_eq!(
    parsed.request.response_format,
    Some(ResponseFormat::JsonSchema {
      name: "output".into(),
      schema: json!({ "type": "object" })
    })
  );
  for (choice, expected) in [("any", ToolChoice::Required), ("none", ToolChoice::None)] {
    let mut body = base(json!([{ "role": "user", "content": "hi" }]));
    body["tool_choice"] = json!({ "type": choice });
    assert_eq!(
      parse_json(body).unwrap().request.tool_choice,
      Some(expected)
    );
  }
}

#[test]
fn tool_results_with_string_content_errors_and_images() {
  let parsed = parse_json(base(json!([
    { "role": "user", "content": "go" },
    { "role": "assistant", "content": [
      { "type": "tool_use", "id": "a", "name": "f", "input": {} },
      { "type": "tool_use", "id": "b", "name": "g" }
    ] },
    { "role": "user", "content": [
      { "type": "tool_result", "tool_use_id": "a", "content": "boom", "is_error": true },
      { "type": "tool_result", "tool_use_id": "b", "content": [
        { "type": "text", "text": "one" },
        { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "AAAA" } },
        { "type": "text", "text": "two" }
      ] }
    ] }
  ])))
  .unwrap();
  let messages = &parsed.request.messages;
  assert_eq!(messages.len(), 4);
  assert_eq!(messages[1].tool_calls[1].arguments, "{}");
  assert_eq!(messages[2].tool_call_id.as_deref(), Some("a"));
  assert_eq!(messages[2].joined_text(), "boom");
  assert_eq!(messages[3].joined_text(), "one\ntwo");
  assert!(parsed.warnings[0]
    .starts_with("messages[2].content[1].content[1]: an image inside a tool result"));
}

#[test]
fn documents_and_file_images_are_for_an_anthropic_target_only() {
  let parsed = parse_json(base(json!([{ "role": "user", "content": [
    { "type": "document", "source": { "type": "base64", "media_type": "application/pdf", "data": "JVBER" } },
    { "type": "image", "source": { "type": "file", "file_id": "file_1" } },
    { "type": "text", "text": "summarise" }
  ] }])))
  .unwrap();
  assert_eq!(
    parsed.native_only,
    vec![
      "messages[0].content[0] (a 'document' block)".to_string(),
      "messages[0].content[1].source (a 'file' image source)".to_string(),
    ]
  );
  assert_eq!(
    parsed.request.messages,
    vec![Message::text(Role::User, "summarise")]
  );
}

#[test]
fn errors_name_the_field_in_plain_words() {
  let cases = [
    (
      json!([1]),
      "the request body must be a JSON object, got an array",
    ),
    (
      json!({ "max_tokens": 1, "messages": [] }),
      "model: is required",
    ),
    (
      json!({ "model": 3, "max_tokens": 1, "messages": [] }),
      "model: expected a string, got a number",
    ),
    (
      json!({ "model": "m", "messages": [{ "role": "user", "content": "x" }] }),
      "max_tokens: is required",
    ),
    (
      json!({ "model": "m", "max_tokens": 0, "messages": [] }),
      "max_tokens: expected a whole number of at least 1, got 0",
    ),
    (
      json!({ "model": "m", "max_tokens": 1.5, "messages": [] }),
      "max_tokens: expected a whole number of at least 1, got 1.5",
    ),
    (
      json!({ "model": "m", "max_tokens": 1 }),
      "messages: is required",
    ),
    (
      json!({ "model": "m", "max_tokens": 1, "messages": [] }),
      "messages: needs at least one message",
    ),
    (
      json!({ "model": "m", "max_tokens": 1, "messages": {} }),
      "messages: expected an array, got an object",
    ),
  ];
  for (body, message) in cases {
    assert_eq!(error_of(body), message);
  }
  let message_cases = [
    (json!([{ "role": "user", "content": "a" }, { "role": "user", "content": [{ "type": "foo" }] }]), "messages[1].content[0].type: unknown block type 'foo'"),
    (json!([{ "role": "tool", "content": "a" }]), "messages[0].role: expected 'user', 'assistant' or 'system', got 'tool'"),
    (json!([{ "content": "a" }]), "messages[0].role: is required"),
    (json!([{ "role": "user" }]), "messages[0].content: is required"),
    (json!([{ "role": "user", "content": {} }]), "messages[0].content: expected a string or an array of blocks, got an object"),
    (json!([null]), "messages[0]: expected an object with role and content, got null"),
    (json!([{ "role": "user", "content": [{ "text": "x" }] }]), "messages[0].content[0].type: is required"),
    (json!([{ "role": "user", "content": [{ "type": "text", "text": 5 }] }]), "messages[0].content[0].text: expected a string, got a number"),
    (json!([{ "role": "user", "content": [{ "type": "image", "source": { "type": "base64", "data": "AA" } }] }]), "messages[0].content[0].source.media_type: is required"),
    (json!([{ "role": "user", "content": [{ "type": "image", "source": { "type": "ftp" } }] }]), "messages[0].content[0].source.type: unknown image source type 'ftp' (expected 'base64', 'url' or 'file')"),
    (json!([{ "role": "user", "content": [{ "type": "tool_use", "id": "a", "name": "f", "input": {} }] }]), "messages[0].content[0].type: a 'tool_use' block belongs in a message with role 'assistant'"),
    (json!([{ "role": "assistant", "content": [{ "type": "tool_use", "id": "a", "name": "f", "input": "x" }] }]), "messages[0].content[0].input: expected an object, got a string"),
    (json!([{ "role": "user", "content": [{ "type": "tool_result", "content": "x" }] }]), "messages[0].content[0].tool_use_id: is required"),
    (json!([{ "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "a", "is_error": "yes" }] }]), "messages[0].content[0].is_error: expected true or false, got a string"),
    (json!([{ "role": "system", "content": [{ "type": "image" }] }]), "messages[0].content[0].type: a system prompt takes 'text' blocks, got 'image'"),
  ];
  for (messages, message) in message_cases {
    assert_eq!(error_of(base(messages)), message);
  }
  let field_cases = [
    (
      "system",
      json!(5),
      "system: expected a string or an array of text blocks, got a number",
    ),
    (
      "tools",
      json!([{ "name": "f" }]),
      "tools[0].input_schema: is required",
    ),
    (
      "tools",
      json!([{ "input_schema": {} }]),
      "tools[0].name: is required",
    ),
    (
      "tools",
      json!({}),
      "tools: expected an array, got an object",
    ),
    (
      "tool_choice",
      json!({ "type": "sometimes" }),
      "tool_choice.type: expected 'auto', 'any', 'tool' or 'none', got 'sometimes'",
    ),
    (
      "tool_choice",
      json!({ "type": "tool" }),
      "tool_choice.name: is required",
    ),
    (
      "stop_sequences",
      json!(["a", 1]),
      "stop_sequences[1]: expected a string, got a number",
    ),
    (
      "temperature",
      json!("hot"),
      "temperature: expected a number, got a string",
    ),
    (
      "temperature",
      json!(-1),
      "temperature: expected a number of at least 0, got -1",
    ),
    (
      "top_k",
      json!(1.5),
      "top_k: expected a whole number of at least 0, got 1.5",
    ),
    (
      "metadata",
      json!({ "user_id": 5 }),
      "metadata.user_id: expected a string, got a number",
    ),
    (
      "stream",
      json!("yes"),
      "stream: expected true or false, got a string",
    ),
    (
      "thinking",
      json!("on"),
      "thinking: expected an object, got a string",
    ),
    (
      "output_config",
      json!({ "format": { "type": "xml" } }),
      "output_config.format.type: unknown format type 'xml' (expected 'json_schema')",
    ),
  ];
  for (field, value, message) in field_cases {
    let mut body = base(json!([{ "role": "user", "content": "x" }]));
    body[field] = value;
    assert_eq!(error_of(body), message);
  }
  let broken = parse(b"{\"model\": ", Headers::new(&[])).err().unwrap();
  assert_eq!(
    broken.message,
    "the request body ended before its JSON was complete (line 1, column 10)"
  );
  let broken = parse(b"{\"model\" 1}", Headers::new(&[])).err().unwrap();
  assert_eq!(
    broken.message,
    "the request body is not valid JSON (line 1, column 10)"
  );
}

fn response(content: &str, tool_calls: Vec<ToolCall>, finish_reason: FinishReason) -> ChatResponse {
  ChatResponse {
    id: "chatcmpl-1".into(),
    provider: "openai".into(),
    model: "gpt-4o-mini".into(),
    content: content.into(),
    refusal: None,
    tool_calls,
    finish_reason,
    usage: Usage {
      prompt_tokens: 30,
      completion_tokens: 7,
      total_tokens: 37,
      cached_prompt_tokens: 10,
      cache_write_prompt_tokens: 5,
      ..Usage::default()
    },
    cost_usd: 0.0,
    cached: false,
    latency_ms: 1.0,
    ttft_ms: None,
    attempts: 1,
    request_id: "fg_1".into(),
    embeddings: None,
    cache_similarity: None,
  }
}

fn encoder() -> MessagesEncoder {
  MessagesEncoder::new("openai/gpt-4o-mini", "msg_test".into())
}

#[test]
fn a_whole_answer_is_an_anthropic_message() {
  let call = ToolCall {
    id: "call_1".into(),
    name: "get_weather".into(),
    arguments: "{\"city\":\"Paris\"}".into(),
    ..ToolCall::default()
  };
  let body = encoder().json(&response(
    "Let me check.",
    vec![call],
    FinishReason::ToolCalls,
  ));
  assert_eq!(
    String::from_utf8(body).unwrap(),
    concat!(
      r#"{"id":"msg_test","type":"message","role":"assistant","model":"openai/gpt-4o-mini","#,
      r#""content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}],"#,
      r#""stop_reason":"tool_use","stop_sequence":null,"#,
      r#""usage":{"input_tokens":15,"cache_creation_input_tokens":5,"cache_read_input_tokens":10,"output_tokens":7}}"#
    )
  );
  let length = encoder().json(&response("cut", vec![], FinishReason::Length));
  assert!(String::from_utf8(length)
    .unwrap()
    .contains(r#""stop_reason":"max_tokens""#));
  let broken = ToolCall {
    id: "c".into(),
    name: "f".into(),
    arguments: "not json".into(),
    ..ToolCall::default()
  };
  let kept = encoder().json(&response("", vec![broken], FinishReason::ToolCalls));
  assert!(String::from_utf8(kept).unwrap().contains(
    r#""content":[{"type":"tool_use","id":"c","name":"f","input":{"_raw":"not json"}}]"#
  ));
}

fn encode_stream(events: &[StreamEvent], done: &ChatResponse) -> String {
  let mut encoder = encoder();
  let mut out = Vec::new();
  encoder.stream_start("fg_1", &mut out);
  for event in events {
    encoder.stream_event(event, &mut out);
  }
  encoder.stream_end(done, &mut out);
  String::from_utf8(out).unwrap()
}

#[test]
fn a_text_stream_is_framed_exactly_as_anthropic_frames_it() {
  let events = [
    StreamEvent::Text("Hello".into()),
    StreamEvent::Text(", wörld".into()),
  ];
  let stream = encode_stream(
    &events,
    &response("Hello, wörld", vec![], FinishReason::Stop),
  );
  assert_eq!(
    stream,
    concat!(
      "event: message_start\n",
      r#"data: {"type":"message_start","message":{"id":"msg_test","type":"message","role":"assistant","model":"openai/gpt-4o-mini","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}"#,
      "\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n",
      "event: content_block_start\n",
      r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
      "\n\nevent: content_block_delta\n",
      r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
      "\n\nevent: content_block_delta\n",
      r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", wörld"}}"#,
      "\n\nevent: content_block_stop\n",
      r#"data: {"type":"content_block_stop","index":0}"#,
      "\n\nevent: message_delta\n",
      r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":15,"cache_creation_input_tokens":5,"cache_read_input_tokens":10,"output_tokens":7}}"#,
      "\n\nevent: message_stop\n",
      r#"data: {"type":"message_stop"}"#,
      "\n\n"
    )
  );
}

fn tool_events() -> Vec<StreamEvent> {
  vec![
    StreamEvent::Text("Checking.".into()),
    StreamEvent::tool_call(
      0,
      Some("call_1".into()),
      Some("get_weather".into()),
      String::new(),
    ),
    StreamEvent::tool_call(0, None, None, "{\"city\":".into()),
    StreamEvent::tool_call(0, None, None, "\"Paris\"}".into()),
    StreamEvent::tool_call(
      1,
      Some("call_2".into()),
      Some("get_time".into()),
      "{}".into(),
    ),
  ]
}

fn tool_calls() -> Vec<ToolCall> {
  vec![
    ToolCall {
      id: "call_1".into(),
      name: "get_weather".into(),
      arguments: "{\"city\":\"Paris\"}".into(),
      ..ToolCall::default()
    },
    ToolCall {
      id: "call_2".into(),
      name: "get_time".into(),
      arguments: "{}".into(),
      ..ToolCall::default()
    },
  ]
}

#[test]
fn a_tool_call_split_across_deltas_streams_as_input_json_deltas() {
  let stream = encode_stream(
    &tool_events(),
    &response("Checking.", tool_calls(), FinishReason::ToolCalls),
  );
  let body: Vec<&str> = stream
    .split("\n\n")
    .filter(|e| !e.is_empty())
    .skip(2)
    .collect();
  assert_eq!(
    body,
    vec![
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}",
      "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{}}}",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}",
      "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}",
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_2\",\"name\":\"get_time\",\"input\":{}}}",
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}",
      "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}",
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":15,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":10,\"output_tokens\":7}}",
      "event: message_stop\ndata: {\"type\":\"message_stop\"}",
    ]
  );
}

/// Our own Anthropic decoder reads what the encoder wrote back into the same answer.
#[test]
fn our_anthropic_decoder_reads_back_the_same_answer() {
  let adapter = Anthropic {
    base_url: "http://x".into(),
    api_key: None,
    headers: vec![],
  };
  let request = ChatRequest::default();
  let done = response("Checking.", tool_calls(), FinishReason::ToolCalls);
  let stream = encode_stream(&tool_events(), &done);
  // Fed in small pieces, as a network would deliver it.
  let mut session = StreamSession::new(adapter.stream_decoder(&request));
  let mut decoded = Vec::new();
  for piece in stream.as_bytes().chunks(7) {
    decoded.extend(session.push(piece).unwrap());
  }
  let (rest, completion) = session.finish().unwrap();
  decoded.extend(rest);
  let text: String = decoded
    .iter()
    .filter_map(|e| match e {
      StreamEvent::Text(t) => Some(t.as_str()),
      _ => None,
    })
    .collect();
  assert_eq!(text, "Checking.");
  assert_eq!(completion.content, done.content);
  assert_eq!(completion.tool_calls, done.tool_calls);
  assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
  assert_eq!(
    completion.usage,
    Some(Usage {
      estimated: false,
      reasoning_tokens: 0,
      ..done.usage
    })
  );

  let whole = adapter
    .parse_response(&request, &encoder().json(&done))
    .unwrap();
  assert_eq!(whole.content, done.content);
  assert_eq!(whole.tool_calls, done.tool_calls);
  assert_eq!(whole.finish_reason, done.finish_reason);
  assert_eq!(whole.usage, completion.usage);
}

#[test]
fn an_answer_that_arrived_whole_is_streamed_as_blocks() {
  let stream = encode_stream(
    &[],
    &response("cached", tool_calls(), FinishReason::ToolCalls),
  );
  assert!(stream.contains("\"text_delta\",\"text\":\"cached\""));
  assert!(stream.contains("\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_2\""));
  assert_eq!(
    stream.matches("content_block_stop").count(),
    6,
    "three blocks, each stopped"
  );
}

#[test]
fn errors_take_anthropic_types_statuses_and_headers() {
  let retry = |code| {
    GatewayError::new(code, "slow down")
      .with_retry_after(Some(std::time::Duration::from_millis(1500)))
  };
  let cases = [
    (
      GatewayError::invalid_request("bad"),
      400,
      "invalid_request_error",
    ),
    (
      GatewayError::invalid_request("big").with_status(413),
      413,
      "request_too_large",
    ),
    (
      GatewayError::new(ErrorCode::Authentication, "who"),
      401,
      "authentication_error",
    ),
    (
      GatewayError::new(ErrorCode::Authentication, "no").with_status(403),
      403,
      "permission_error",
    ),
    (GatewayError::not_found("where"), 404, "not_found_error"),
    (retry(ErrorCode::RateLimited), 429, "rate_limit_error"),
    (
      GatewayError::new(ErrorCode::BudgetExceeded, "spent"),
      402,
      "billing_error",
    ),
    (GatewayError::protocol("broken"), 500, "api_error"),
    (
      retry(ErrorCode::UpstreamUnavailable),
      529,
      "overloaded_error",
    ),
    (
      GatewayError::timeout(std::time::Duration::from_secs(1)),
      504,
      "timeout_error",
    ),
    (GatewayError::aborted(), 400, "invalid_request_error"),
    (GatewayError::config("cfg"), 500, "api_error"),
    (
      GatewayError::new(ErrorCode::CallbackError, "cb"),
      500,
      "api_error",
    ),
    (
      GatewayError::guardrail_blocked("pii", "credit_card", "blocked"),
      400,
      "invalid_request_error",
    ),
  ];
  assert_eq!(
    cases.len(),
    ErrorCode::ALL.len() + 2,
    "every code is mapped"
  );
  for (error, status, kind) in cases {
    let reply = error_reply(&error, "req_1");
    assert_eq!(reply.status, status, "{kind}");
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
      body,
      json!({ "type": "error", "error": { "type": kind, "message": error.message }, "request_id": "req_1" })
    );
    assert!(reply.headers.contains(&("request-id", "req_1".to_string())));
    let retry_after = reply
      .headers
      .iter()
      .find(|(name, _)| *name == "retry-after")
      .map(|(_, v)| v.as_str());
    assert_eq!(retry_after, error.retry_after.map(|_| "2"), "{kind}");
  }
  let mut out = Vec::new();
  encoder().stream_error(&retry(ErrorCode::UpstreamUnavailable), &mut out);
  assert_eq!(
    String::from_utf8(out).unwrap(),
    "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"slow down\"}}\n\n"
  );
}

#[test]
fn count_tokens_parses_without_max_tokens_counts_and_keeps_the_body_for_anthropic() {
  let body = json!({
    "model": "anthropic/claude-sonnet-4-5",
    "system": "be brief",
    "messages": [{ "role": "user", "content": "hello there" }],
    "tools": [{ "name": "f", "input_schema": { "type": "object" } }],
    "thinking": { "type": "enabled", "budget_tokens": 1024 }
  });
  let headers = vec![(
    "anthropic-beta".to_string(),
    "token-counting-2024-11-01".to_string(),
  )];
  let count = parse_count_tokens(body.to_string().as_bytes(), Headers::new(&headers)).unwrap();
  let without_tools = {
    let mut copy = parse_count_tokens(body.to_string().as_bytes(), Headers::new(&[])).unwrap();
    copy.request.tools.clear();
    count_tokens_locally(&copy)
  };
  let counted = count_tokens_locally(&count);
  assert!(
    without_tools > 5 && counted > without_tools,
    "{without_tools} < {counted}"
  );
  assert_eq!(count_tokens_json(42), b"{\"input_tokens\":42}");

  assert_eq!(
    count.native["thinking"], body["thinking"],
    "the client's body is kept as sent"
  );
  assert_eq!(count.native_headers, headers);
  assert_eq!(
    parse_count_tokens_answer(b"{\"input_tokens\":17}").unwrap(),
    17
  );
  assert_eq!(
    parse_count_tokens_answer(b"{}").unwrap_err().code,
    ErrorCode::ProviderError
  );
  let missing = parse_count_tokens(b"{\"model\":\"m\"}", Headers::new(&[]))
    .err()
    .unwrap();
  assert_eq!(missing.message, "messages: is required");
}

fn fixture(name: &str) -> Vec<u8> {
  let dir = std::env::var("FIXTURES_DIR")
    .map(std::path::PathBuf::from)
    .unwrap_or_else(|_| {
      std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("__test__/fixtures/providers")
    });
  std::fs::read(dir.join(name)).unwrap()
}

fn decode_stream(bytes: &[u8]) -> (Vec<StreamEvent>, crate::types::Completion) {
  let adapter = Anthropic {
    base_url: "http://x".into(),
    api_key: None,
    headers: vec![],
  };
  let mut session = StreamSession::new(adapter.stream_decoder(&ChatRequest::default()));
  let mut events = session.push(bytes).unwrap();
  let (rest, completion) = session.finish().unwrap();
  events.extend(rest);
  (events, completion)
}

fn event_names(stream: &[u8]) -> Vec<String> {
  let names: Vec<String> = String::from_utf8_lossy(stream)
    .lines()
    .filter_map(|line| line.strip_prefix("event: "))
    .filter(|name| *name != "ping")
    .map(str::to_string)
    .collect();
  // Runs of deltas squeezed: the vendor's chunking is its own.
  let mut squeezed = names.clone();
  squeezed.dedup_by(|a, b| a == b && a == "content_block_delta");
  squeezed
}

/// A recorded Anthropic stream, decoded by our Anthropic decoder and encoded again by this codec,
/// has Anthropic's event sequence and decodes to the same answer.
#[test]
fn recorded_anthropic_streams_survive_decode_and_encode() {
  for name in [
    "anthropic/stream-text-then-tool-use.sse",
    "anthropic/stream-tool-use-input-json-delta.sse",
  ] {
    let recorded = fixture(name);
    let (events, completion) = decode_stream(&recorded);
    let done = ChatResponse {
      id: completion.id.clone(),
      content: completion.content.clone(),
      tool_calls: completion.tool_calls.clone(),
      finish_reason: completion.finish_reason,
      usage: completion.usage.unwrap(),
      ..response("", vec![], FinishReason::Stop)
    };
    let encoded = encode_stream(&events, &done);
    assert_eq!(
      event_names(encoded.as_bytes()),
      event_names(&recorded),
      "{name}"
    );
    let (again, decoded) = decode_stream(encoded.as_bytes());
    // The vendor's empty `input_json_delta` carries nothing; the encoder does not repeat it.
    let meaningful = |events: Vec<StreamEvent>| -> Vec<StreamEvent> {
      events
        .into_iter()
        .filter(|e| !matches!(e, StreamEvent::ToolCall(call) if call.id.is_none() && call.arguments_delta.is_empty()))
        .collect()
    };
    assert_eq!(meaningful(again), meaningful(events), "{name}");
    assert_eq!(decoded.content, completion.content, "{name}");
    assert_eq!(decoded.tool_calls, completion.tool_calls, "{name}");
    assert_eq!(decoded.finish_reason, completion.finish_reason, "{name}");
    assert_eq!(decoded.usage, completion.usage, "{name}");
  }
}

/// The body Anthropic's Python SDK sent for a streamed tool call (recorded) parses as sent.
#[test]
fn a_recorded_sdk_request_parses() {
  let recorded: Value =
    serde_json::from_slice(&fixture("anthropic/request-messages-stream-tools.json")).unwrap();
  let parsed = parse(recorded["body"].to_string().as_bytes(), Headers::new(&[])).unwrap();
  assert_eq!(Value::Object(parsed.native), recorded["body"]);
  assert_eq!(parsed.request.tools[0].name, "get_weather");
  assert_eq!(
    parsed.request.messages,
    vec![Message::text(Role::User, "What is the weather in SF?")]
  );
  assert_eq!(parsed.stream, recorded["body"]["stream"] == json!(true));
  assert!(parsed.warnings.is_empty() && parsed.native_only.is_empty());
}
