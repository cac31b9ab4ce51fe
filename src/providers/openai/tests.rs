use serde_json::json;

use super::*;
use crate::error::ErrorCode;
use crate::types::{ContentPart, Message, ToolCall, ToolDefinition};
use reqwest::header::HeaderMap;

fn base() -> ChatRequest {
  ChatRequest {
    model: "gpt-4o-mini".into(),
    messages: vec![Message::text(Role::User, "hi")],
    ..ChatRequest::default()
  }
}

#[test]
fn every_request_field_maps_to_openai() {
  let req = ChatRequest {
    temperature: Some(0.2),
    top_p: Some(0.9),
    max_tokens: Some(64),
    stop: vec!["END".into()],
    response_format: Some(ResponseFormat::JsonSchema {
      name: "person".into(),
      schema: json!({"type": "object"}),
    }),
    tools: vec![ToolDefinition {
      name: "lookup".into(),
      description: Some("Look it up".into()),
      parameters: json!({"type": "object"}),
    }],
    tool_choice: Some(ToolChoice::Named("lookup".into())),
    user: Some("u1".into()),
    ..base()
  };
  let body = request_body(&req, true);
  assert_eq!(body["temperature"], 0.2);
  assert_eq!(body["top_p"], 0.9);
  assert_eq!(body["max_tokens"], 64);
  assert_eq!(body["stop"], json!(["END"]));
  assert_eq!(
    body["response_format"],
    json!({"type": "json_schema", "json_schema": {"name": "person", "schema": {"type": "object"}}})
  );
  assert_eq!(body["tools"][0]["function"]["description"], "Look it up");
  assert_eq!(
    body["tool_choice"],
    json!({"type": "function", "function": {"name": "lookup"}})
  );
  assert_eq!(body["user"], "u1");
  assert_eq!(body["stream"], true);
  assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[test]
fn reasoning_models_get_max_completion_tokens() {
  let req = ChatRequest {
    model: "gpt-5-nano".into(),
    max_tokens: Some(10),
    ..base()
  };
  let body = request_body(&req, false);
  assert_eq!(body["max_completion_tokens"], 10);
  assert!(body.get("max_tokens").is_none());
  assert!(body.get("stream").is_none());
}

#[test]
fn images_tool_calls_and_results_keep_openai_shapes() {
  let req = ChatRequest {
    messages: vec![
      Message {
        role: Role::User,
        content: vec![
          ContentPart::Text("look".into()),
          ContentPart::Image {
            data: "AAAA".into(),
            mime_type: "image/png".into(),
          },
          ContentPart::ImageUrl("https://x/y.jpg".into()),
        ],
        tool_call_id: None,
        tool_calls: vec![],
      },
      Message {
        role: Role::Assistant,
        content: vec![],
        tool_call_id: None,
        tool_calls: vec![ToolCall {
          id: "c1".into(),
          name: "f".into(),
          arguments: "{}".into(),
          ..ToolCall::default()
        }],
      },
      Message {
        role: Role::Tool,
        content: vec![ContentPart::Text("42".into())],
        tool_call_id: Some("c1".into()),
        tool_calls: vec![],
      },
    ],
    ..base()
  };
  let body = request_body(&req, false);
  let messages = &body["messages"];
  assert_eq!(
    messages[0]["content"][1]["image_url"]["url"],
    "data:image/png;base64,AAAA"
  );
  assert_eq!(
    messages[0]["content"][2]["image_url"]["url"],
    "https://x/y.jpg"
  );
  assert_eq!(messages[1]["content"], serde_json::Value::Null);
  assert_eq!(messages[1]["tool_calls"][0]["function"]["arguments"], "{}");
  assert_eq!(
    messages[2],
    json!({"role": "tool", "tool_call_id": "c1", "content": "42"})
  );
}

#[test]
fn compatible_servers_error_shapes_are_understood() {
  let adapter = OpenAi {
    base_url: DEFAULT_BASE_URL.into(),
    api_key: None,
    organization: None,
    headers: vec![],
  };
  let headers = HeaderMap::new();
  let detail = adapter.parse_error(422, &headers, br#"{"detail":"model field required"}"#);
  assert_eq!(detail.code, ErrorCode::InvalidRequest);
  assert_eq!(detail.message, "model field required");
  let text = adapter.parse_error(400, &headers, br#"{"error":"context too long","code":400}"#);
  assert_eq!(text.message, "context too long");
  let numeric = adapter.parse_error(
    503,
    &headers,
    br#"{"error":{"message":"loading model","type":"server","code":503}}"#,
  );
  assert_eq!(numeric.code, ErrorCode::UpstreamUnavailable);
  assert!(numeric.retryable);
  assert_eq!(numeric.message, "loading model");
}
