use serde_json::json;

use super::*;
use crate::error::ErrorCode;
use crate::types::ToolCall;

#[test]
fn json_schema_and_sampling_go_to_generation_config() {
  let req = ChatRequest {
    model: "gemini-2.5-flash".into(),
    messages: vec![Message::text(Role::User, "a")],
    temperature: Some(0.5),
    stop: vec!["x".into()],
    response_format: Some(ResponseFormat::JsonSchema {
      name: "n".into(),
      schema: json!({"type": "object", "additionalProperties": false}),
    }),
    tool_choice: Some(ToolChoice::Named("f".into())),
    ..ChatRequest::default()
  };
  let body = request_body(&req).expect("body");
  let config = &body["generationConfig"];
  assert_eq!(config["temperature"], 0.5);
  assert_eq!(config["stopSequences"], json!(["x"]));
  assert_eq!(config["responseMimeType"], "application/json");
  assert_eq!(config["responseJsonSchema"]["additionalProperties"], false);
  assert_eq!(
    body["toolConfig"]["functionCallingConfig"],
    json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
  );
}

#[test]
fn tool_results_are_named_after_their_call_and_wrapped_when_not_objects() {
  let req = ChatRequest {
    model: "m".into(),
    messages: vec![
      Message::text(Role::User, "a"),
      Message {
        role: Role::Assistant,
        content: vec![],
        tool_call_id: None,
        tool_calls: vec![ToolCall {
          id: "call_1".into(),
          name: "add".into(),
          arguments: "{\"x\":1}".into(),
          ..ToolCall::default()
        }],
      },
      Message {
        role: Role::Tool,
        content: vec![crate::types::ContentPart::Text("3".into())],
        tool_call_id: Some("call_1".into()),
        tool_calls: vec![],
      },
    ],
    ..ChatRequest::default()
  };
  let body = request_body(&req).expect("body");
  assert_eq!(
    body["contents"][2]["parts"][0],
    json!({"functionResponse": {"name": "add", "response": {"result": 3}}})
  );
  let mut orphan = req.clone();
  orphan.messages.remove(1);
  let error = request_body(&orphan).expect_err("orphan result");
  assert_eq!(error.code, ErrorCode::InvalidRequest);
}

#[test]
fn url_and_key_header() {
  let adapter = Gemini {
    base_url: "http://h/".into(),
    api_key: Some(Secret::new("k".into())),
    headers: vec![],
  };
  let req = ChatRequest {
    model: "models/gemini-2.5-flash".into(),
    messages: vec![Message::text(Role::User, "a")],
    ..ChatRequest::default()
  };
  let call = adapter.build(&req, true).expect("call");
  assert_eq!(
    call.url,
    "http://h/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
  );
  assert!(call
    .headers
    .contains(&("x-goog-api-key".to_string(), "k".to_string())));
}

#[test]
fn model_names_stay_one_path_segment() {
  let adapter = Gemini {
    base_url: "http://h/prefix/?k=1".into(),
    api_key: None,
    headers: vec![],
  };
  for (model, path) in [
    ("a?b#c", "a%3Fb%23c"),
    (
      "../../v1/chat/completions",
      "..%2F..%2Fv1%2Fchat%2Fcompletions",
    ),
    ("..", ".."),
    ("100%", "100%25"),
  ] {
    let req = ChatRequest {
      model: model.into(),
      messages: vec![Message::text(Role::User, "a")],
      ..ChatRequest::default()
    };
    let call = adapter.build(&req, true).expect("call");
    assert_eq!(
      call.url,
      format!("http://h/prefix/v1beta/models/{path}:streamGenerateContent?k=1&alt=sse")
    );
  }
}

#[test]
fn thought_signatures_travel_with_tool_calls() {
  let adapter = Gemini {
    base_url: "http://h".into(),
    api_key: None,
    headers: vec![],
  };
  let body = json!({"candidates": [{"content": {"parts": [
    {"functionCall": {"name": "now", "args": {}}, "thoughtSignature": "sig=="}
  ]}, "finishReason": "STOP", "index": 0}]});
  let req = ChatRequest::default();
  let completion = adapter
    .parse_response(&req, body.to_string().as_bytes())
    .expect("completion");
  assert_eq!(
    completion.tool_calls[0].thought_signature.as_deref(),
    Some("sig==")
  );
  let next = ChatRequest {
    model: "m".into(),
    messages: vec![
      Message::text(Role::User, "a"),
      Message {
        role: Role::Assistant,
        content: vec![],
        tool_call_id: None,
        tool_calls: completion.tool_calls.clone(),
      },
    ],
    ..ChatRequest::default()
  };
  let sent = request_body(&next).expect("body");
  assert_eq!(sent["contents"][1]["parts"][0]["thoughtSignature"], "sig==");
}

#[test]
fn an_answer_without_candidates_is_an_error_streamed_or_not() {
  let adapter = Gemini {
    base_url: "http://h".into(),
    api_key: None,
    headers: vec![],
  };
  let empty = br#"{"usageMetadata": {"promptTokenCount": 3}, "modelVersion": "g"}"#;
  let error = adapter
    .parse_response(&ChatRequest::default(), empty)
    .expect_err("no candidates");
  assert_eq!(error.code, ErrorCode::ProviderError);
}
