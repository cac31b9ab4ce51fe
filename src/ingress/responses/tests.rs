use super::*;
use crate::types::{ChatResponse, FinishReason, Usage};

fn parse_body(body: &str) -> Result<(Parsed, Turn)> {
  parse_turn(body.as_bytes(), Headers::new(&[]))
}

fn error_of(body: &str) -> String {
  match parse_body(body) {
    Ok(_) => panic!("accepted: {body}"),
    Err(error) => {
      assert_eq!(error.code, ErrorCode::InvalidRequest);
      error.message
    }
  }
}

#[test]
fn bad_requests_name_the_field() {
  assert_eq!(
    error_of(r#"{"model":"m","input":[{"role":"user","content":"hi"},{"type":"foo"}]}"#),
    "input[1].type: unknown item type 'foo'"
  );
  assert_eq!(
    error_of(r#"{"input":"hi"}"#),
    "model: you must provide a model parameter"
  );
  assert_eq!(
    error_of(r#"{"model":"m"}"#),
    "input: you must provide an input"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":42}"#),
    "input: expected a string or an array of items, got a number"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":[{"role":"robot","content":"x"}]}"#),
    "input[0].role: unknown role 'robot' (expected user, assistant, system or developer)"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#),
    "input[0].content[0].text: expected a string"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":[{"type":"function_call_output","output":"1"}]}"#),
    "input[0].call_id: missing"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":"x","tools":{}}"#),
    "tools: expected an array, got an object"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":"x","tools":[null]}"#),
    "tools[0]: expected an object, got null"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":"x","text":{"format":{"type":"yaml"}}}"#),
    "text.format.type: unknown format 'yaml' (expected text, json_object or json_schema)"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":"x","stream":"yes"}"#),
    "stream: expected a boolean, got a string"
  );
  assert_eq!(
    error_of(r#"{"model":"m","input":"x","max_output_tokens":0}"#),
    "max_output_tokens: expected a whole number >= 1, got 0"
  );
  assert!(error_of("{not json").starts_with("the request body is not valid JSON"));
}

#[test]
fn error_replies_have_openais_shape_and_name_the_param() {
  let error = invalid("input[3].type: unknown item type 'foo'");
  let reply = error_reply(&error, "fg_1");
  assert_eq!(reply.status, 400);
  let body: Value = serde_json::from_slice(&reply.body).unwrap();
  assert_eq!(
    body,
    json!({"error": {"message": "input[3].type: unknown item type 'foo'", "type": "invalid_request_error",
      "param": "input[3].type", "code": "invalid_request"}})
  );
  let mut limited = GatewayError::new(ErrorCode::RateLimited, "slow down");
  limited.retry_after = Some(std::time::Duration::from_millis(1500));
  let reply = error_reply(&limited, "fg_2");
  assert_eq!(reply.status, 429);
  assert!(reply.headers.contains(&("retry-after", "2".to_string())));
  let missing = error_reply(&response_not_found("resp_x"), "");
  assert_eq!(missing.status, 404);
  let body: Value = serde_json::from_slice(&missing.body).unwrap();
  assert_eq!(
    body["error"]["message"],
    "Response with id 'resp_x' not found."
  );
  assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[test]
fn items_translate_with_system_merged_tools_attached_and_hosted_tools_left_out() {
  let (parsed, turn) = parse_body(
    r#"{"model":"openai/gpt-5","instructions":"be brief","store":false,"stream":true,
      "metadata":{"team":"a"},"max_output_tokens":50,"temperature":0.2,"unknown_field":{"x":1},
      "input":[
        {"type":"message","role":"developer","content":[{"type":"input_text","text":"base prompt"}]},
        {"role":"user","content":[{"type":"input_text","text":"fix it"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
        {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"opaque"},
        {"type":"message","role":"assistant","content":[{"type":"output_text","text":"looking"}]},
        {"type":"function_call","call_id":"c1","name":"shell","arguments":"{\"cmd\":\"ls\"}"},
        {"type":"custom_tool_call","call_id":"c2","name":"apply_patch","input":"*** Begin Patch"},
        {"type":"function_call_output","call_id":"c1","output":"a.txt"},
        {"type":"custom_tool_call_output","call_id":"c2","output":[{"type":"input_text","text":"done"}]},
        {"role":"system","content":"late system note"}],
      "tools":[{"type":"function","name":"shell","parameters":{"type":"object"},"strict":false},
        {"type":"custom","name":"apply_patch","description":"Patch files","format":{"type":"grammar","syntax":"lark","definition":"start: x"}},
        {"type":"web_search"},{"type":"tool_search","execution":"client"}],
      "tool_choice":"auto","text":{"format":{"type":"json_schema","name":"out","schema":{"type":"object"}},"verbosity":"low"},
      "reasoning":{"effort":"high","summary":"auto"},"include":["reasoning.encrypted_content"],"prompt_cache_key":"k"}"#,
  )
  .unwrap();
  assert_eq!(parsed.model, "openai/gpt-5");
  assert!(parsed.stream);
  assert!(!turn.store);
  assert_eq!(parsed.metadata, vec![("team".to_string(), "a".to_string())]);
  assert!(parsed.native.contains_key("unknown_field"));
  let req = &parsed.request;
  assert_eq!(req.max_tokens, Some(50));
  assert_eq!(req.temperature, Some(0.2));
  assert_eq!(req.messages[0].role, Role::System);
  assert_eq!(
    req.messages[0].joined_text(),
    "be brief\n\nbase prompt\n\nlate system note"
  );
  assert_eq!(req.messages[1].role, Role::User);
  assert_eq!(
    req.messages[1].content,
    vec![
      ContentPart::Text("fix it".into()),
      ContentPart::ImageUrl("data:image/png;base64,AAAA".into())
    ]
  );
  let assistant = &req.messages[2];
  assert_eq!(assistant.role, Role::Assistant);
  assert_eq!(assistant.joined_text(), "looking");
  assert_eq!(assistant.tool_calls.len(), 2);
  assert_eq!(
    assistant.tool_calls[1].arguments,
    r#"{"input":"*** Begin Patch"}"#
  );
  assert_eq!(req.messages[3].tool_call_id.as_deref(), Some("c1"));
  assert_eq!(req.messages[4].joined_text(), "done");
  assert_eq!(req.messages.len(), 5);
  assert_eq!(req.tools.len(), 2);
  assert_eq!(req.tools[1].parameters["required"], json!(["input"]));
  assert!(req.tools[1]
    .description
    .as_deref()
    .unwrap()
    .contains("lark grammar:\nstart: x"));
  assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
  assert!(parsed.warnings[0].contains("'web_search'"));
  assert!(matches!(
    req.response_format,
    Some(ResponseFormat::JsonSchema { .. })
  ));
}

#[test]
fn history_goes_before_the_input_and_a_string_input_is_one_user_item() {
  let (mut parsed, turn) =
    parse_body(r#"{"model":"m","input":"and then?","instructions":"now"}"#).unwrap();
  assert_eq!(
    turn.input_items,
    vec![
      json!({"type":"message","role":"user","content":[{"type":"input_text","text":"and then?"}]})
    ]
  );
  let history = vec![
    json!({"type":"message","role":"user","content":"first"}),
    json!({"type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"one","annotations":[]}]}),
  ];
  prepend_history(&mut parsed, &turn, &history).unwrap();
  let texts: Vec<String> = parsed
    .request
    .messages
    .iter()
    .map(Message::joined_text)
    .collect();
  assert_eq!(texts, ["now", "first", "one", "and then?"]);
}

fn answer(content: &str, tool_calls: Vec<ToolCall>, finish_reason: FinishReason) -> ChatResponse {
  let mut usage = Usage::new(12, 7);
  usage.cached_prompt_tokens = 2;
  usage.reasoning_tokens = 3;
  ChatResponse {
    id: "x".into(),
    provider: "mock".into(),
    model: "m".into(),
    content: content.into(),
    refusal: None,
    tool_calls,
    finish_reason,
    usage,
    cost_usd: 0.0,
    cached: false,
    latency_ms: 1.0,
    ttft_ms: None,
    attempts: 1,
    request_id: "fg".into(),
    embeddings: None,
    cache_similarity: None,
  }
}

/// Item ids are random: `msg_<32 hex>` → `msg_X`.
fn mask_ids(text: &str) -> String {
  let mut out = String::new();
  let mut rest = text;
  while let Some(at) = ["msg_", "fc_", "ctc_"]
    .iter()
    .filter_map(|prefix| rest.find(prefix).map(|i| (i, prefix.len())))
    .min()
  {
    let (i, len) = at;
    out.push_str(&rest[..i + len]);
    let tail = &rest[i + len..];
    let hex = tail.chars().take_while(|c| c.is_ascii_hexdigit()).count();
    out.push('X');
    rest = &tail[hex..];
  }
  out.push_str(rest);
  out
}

fn encoder_for(body: &str) -> (Box<dyn Encoder>, Turn) {
  let (parsed, turn) = parse_body(body).unwrap();
  (parsed.encoder, turn)
}

/// The events after `response.created` / `response.in_progress`, one per line.
fn events_after_start(out: &[u8]) -> Vec<String> {
  let text = String::from_utf8(out.to_vec()).unwrap();
  mask_ids(&text)
    .split("\n\n")
    .filter(|e| !e.is_empty())
    .skip(2)
    .map(str::to_string)
    .collect()
}

#[test]
fn a_streamed_text_answer_is_the_exact_openai_event_sequence() {
  let (mut encoder, turn) = encoder_for(r#"{"model":"m","input":"hi","stream":true}"#);
  let mut out = Vec::new();
  encoder.stream_start("fg", &mut out);
  let start = String::from_utf8(out.clone()).unwrap();
  assert!(start.starts_with("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{"));
  assert!(start.contains(
    "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,"
  ));
  assert!(start.contains("\"status\":\"in_progress\""));
  encoder.stream_event(&StreamEvent::Text("Hel".into()), &mut out);
  encoder.stream_event(&StreamEvent::Text("lo".into()), &mut out);
  let response = answer("Hello", Vec::new(), FinishReason::Stop);
  let mut end = Vec::new();
  encoder.stream_end(&response, &mut end);
  out.extend_from_slice(&end);
  let events = events_after_start(&out);
  let expected = [
    r#"event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"item":{"content":[],"id":"msg_X","role":"assistant","status":"in_progress","type":"message"},"output_index":0}"#,
    r#"event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":3,"content_index":0,"item_id":"msg_X","output_index":0,"part":{"annotations":[],"logprobs":[],"text":"","type":"output_text"}}"#,
    r#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"content_index":0,"delta":"Hel","item_id":"msg_X","logprobs":[],"output_index":0}"#,
    r#"event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":5,"content_index":0,"delta":"lo","item_id":"msg_X","logprobs":[],"output_index":0}"#,
    r#"event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":6,"content_index":0,"item_id":"msg_X","logprobs":[],"output_index":0,"text":"Hello"}"#,
    r#"event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":7,"content_index":0,"item_id":"msg_X","output_index":0,"part":{"annotations":[],"logprobs":[],"text":"Hello","type":"output_text"}}"#,
    r#"event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":8,"item":{"content":[{"annotations":[],"logprobs":[],"text":"Hello","type":"output_text"}],"id":"msg_X","role":"assistant","status":"completed","type":"message"},"output_index":0}"#,
  ];
  assert_eq!(&events[..7], &expected[..]);
  assert_eq!(events.len(), 8);
  let completed = &events[7];
  assert!(completed.starts_with("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{"));
  let data: Value = serde_json::from_str(completed.split_once("data: ").unwrap().1).unwrap();
  assert_eq!(data["response"]["status"], "completed");
  assert_eq!(
    data["response"]["usage"],
    json!({"input_tokens":12,"input_tokens_details":{"cached_tokens":2},"output_tokens":7,
      "output_tokens_details":{"reasoning_tokens":3},"total_tokens":19})
  );
  assert_eq!(data["response"]["id"], json!(turn.response_id));
  assert_eq!(
    turn.finished_response().unwrap()["output"][0]["content"][0]["text"],
    "Hello"
  );
}

#[test]
fn a_streamed_function_call_is_the_exact_openai_event_sequence() {
  let (mut encoder, _) = encoder_for(
    r#"{"model":"m","input":"hi","stream":true,"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}"#,
  );
  let mut out = Vec::new();
  encoder.stream_start("fg", &mut out);
  let call = |id: Option<&str>, name: Option<&str>, delta: &str| {
    StreamEvent::tool_call(
      0,
      id.map(str::to_string),
      name.map(str::to_string),
      delta.into(),
    )
  };
  encoder.stream_event(&call(Some("call_1"), Some("get_weather"), ""), &mut out);
  encoder.stream_event(&call(None, None, "{\"city\":"), &mut out);
  encoder.stream_event(&call(None, None, "\"Paris\"}"), &mut out);
  let tool_call = ToolCall {
    id: "call_1".into(),
    name: "get_weather".into(),
    arguments: "{\"city\":\"Paris\"}".into(),
    thought_signature: None,
  };
  encoder.stream_end(
    &answer("", vec![tool_call], FinishReason::ToolCalls),
    &mut out,
  );
  let events = events_after_start(&out);
  let expected = [
    r#"event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"item":{"arguments":"","call_id":"call_1","id":"fc_X","name":"get_weather","status":"in_progress","type":"function_call"},"output_index":0}"#,
    r#"event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":3,"delta":"{\"city\":","item_id":"fc_X","output_index":0}"#,
    r#"event: response.function_call_arguments.delta
data: {"type":"response.function_call_arguments.delta","sequence_number":4,"delta":"\"Paris\"}","item_id":"fc_X","output_index":0}"#,
    r#"event: response.function_call_arguments.done
data: {"type":"response.function_call_arguments.done","sequence_number":5,"arguments":"{\"city\":\"Paris\"}","item_id":"fc_X","name":"get_weather","output_index":0}"#,
    r#"event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":6,"item":{"arguments":"{\"city\":\"Paris\"}","call_id":"call_1","id":"fc_X","name":"get_weather","status":"completed","type":"function_call"},"output_index":0}"#,
  ];
  assert_eq!(&events[..5], &expected[..]);
  assert!(events[5].starts_with("event: response.completed\n"));
  assert_eq!(events.len(), 6);
}

#[test]
fn a_custom_tool_call_goes_back_as_a_custom_tool_call_item() {
  let body = r#"{"model":"m","input":"patch","tools":[{"type":"custom","name":"apply_patch"}]}"#;
  let tool_call = ToolCall {
    id: "call_9".into(),
    name: "apply_patch".into(),
    arguments: r#"{"input":"*** Begin Patch\n"}"#.into(),
    thought_signature: None,
  };
  let (mut encoder, _) = encoder_for(body);
  let whole: Value = serde_json::from_slice(&encoder.json(&answer(
    "",
    vec![tool_call.clone()],
    FinishReason::ToolCalls,
  )))
  .unwrap();
  assert_eq!(whole["output"].as_array().unwrap().len(), 1);
  let item = &whole["output"][0];
  assert_eq!(item["type"], "custom_tool_call");
  assert_eq!(item["input"], "*** Begin Patch\n");
  assert_eq!(item["call_id"], "call_9");

  let (mut encoder, _) = encoder_for(body);
  let mut out = Vec::new();
  encoder.stream_start("fg", &mut out);
  encoder.stream_event(
    &StreamEvent::tool_call(
      0,
      Some("call_9".into()),
      Some("apply_patch".into()),
      r#"{"input":"*** Begin"#.into(),
    ),
    &mut out,
  );
  encoder.stream_event(
    &StreamEvent::tool_call(0, None, None, r#" Patch\n"}"#.into()),
    &mut out,
  );
  encoder.stream_end(
    &answer("", vec![tool_call], FinishReason::ToolCalls),
    &mut out,
  );
  let kinds: Vec<String> = events_after_start(&out)
    .iter()
    .map(|e| e.lines().next().unwrap().to_string())
    .collect();
  assert_eq!(
    kinds,
    [
      "event: response.output_item.added",
      "event: response.custom_tool_call_input.delta",
      "event: response.custom_tool_call_input.done",
      "event: response.output_item.done",
      "event: response.completed"
    ]
  );
  assert!(mask_ids(&String::from_utf8(out).unwrap()).contains(
    r#""item":{"call_id":"call_9","id":"ctc_X","input":"*** Begin Patch\n","name":"apply_patch","status":"completed","type":"custom_tool_call"}"#
  ));
}

#[test]
fn the_json_answer_echoes_the_request_and_reports_incomplete_answers() {
  let (mut encoder, turn) = encoder_for(
    r#"{"model":"alias","input":"hi","instructions":"be kind","temperature":0.5,"metadata":{"a":"b"},"store":true}"#,
  );
  let whole: Value =
    serde_json::from_slice(&encoder.json(&answer("cut", Vec::new(), FinishReason::Length)))
      .unwrap();
  assert_eq!(whole["object"], "response");
  assert_eq!(whole["id"], json!(turn.response_id));
  assert!(turn.response_id.starts_with("resp_"));
  assert_eq!(whole["model"], "alias");
  assert_eq!(whole["instructions"], "be kind");
  assert_eq!(whole["temperature"], 0.5);
  assert_eq!(whole["metadata"], json!({"a": "b"}));
  assert_eq!(whole["store"], true);
  assert_eq!(whole["status"], "incomplete");
  assert_eq!(
    whole["incomplete_details"],
    json!({"reason": "max_output_tokens"})
  );
  assert_eq!(whole["output"][0]["content"][0]["text"], "cut");
  assert_eq!(whole["usage"]["total_tokens"], 19);
}

#[test]
fn a_failure_inside_a_stream_is_an_error_event_and_response_failed() {
  let (mut encoder, turn) = encoder_for(r#"{"model":"m","input":"hi","stream":true}"#);
  let mut out = Vec::new();
  encoder.stream_start("fg", &mut out);
  encoder.stream_event(&StreamEvent::Text("par".into()), &mut out);
  encoder.stream_error(&GatewayError::protocol("upstream broke"), &mut out);
  let events = events_after_start(&out);
  let kinds: Vec<&str> = events.iter().map(|e| e.lines().next().unwrap()).collect();
  assert_eq!(
    kinds,
    [
      "event: response.output_item.added",
      "event: response.content_part.added",
      "event: response.output_text.delta",
      "event: response.output_text.done",
      "event: response.content_part.done",
      "event: response.output_item.done",
      "event: error",
      "event: response.failed"
    ]
  );
  assert!(events[6].contains(r#""code":"provider_error","message":"upstream broke""#));
  assert!(events[7].contains(r#""status":"failed""#));
  assert!(turn.finished_response().is_none());
  assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));
}

#[test]
fn the_native_body_renames_the_model_and_puts_a_stored_conversation_before_the_input() {
  let (parsed, turn) =
    parse_body(r#"{"model":"resp/gpt-5","input":"next","previous_response_id":"resp_ours","text":{"verbosity":"low"}}"#)
      .unwrap();
  let plain = native_body(&parsed, &turn, &[], "gpt-5");
  assert_eq!(plain["model"], "gpt-5");
  assert_eq!(plain["input"], "next");
  assert_eq!(plain["text"], json!({"verbosity": "low"}));
  let history = [json!({"type":"message","role":"user","content":"first"})];
  let continued = native_body(&parsed, &turn, &history, "gpt-5");
  assert_eq!(continued.get("previous_response_id"), None);
  assert_eq!(continued["input"][0]["content"], "first");
  assert_eq!(continued["input"][1]["content"][0]["text"], "next");
}
