use serde_json::json;

use super::*;
use crate::error::ErrorCode;
use crate::types::{ToolCall, ToolDefinition};

fn tool_message(id: &str, text: &str) -> Message {
  Message {
    role: Role::Tool,
    content: vec![ContentPart::Text(text.into())],
    tool_call_id: Some(id.into()),
    tool_calls: vec![],
  }
}

#[test]
fn turns_alternate_and_tool_results_merge_into_one_user_turn() {
  let req = ChatRequest {
    model: "claude".into(),
    messages: vec![
      Message::text(Role::System, "be brief"),
      Message::text(Role::User, "a"),
      Message::text(Role::User, "b"),
      Message {
        role: Role::Assistant,
        content: vec![ContentPart::Text("calling".into())],
        tool_call_id: None,
        tool_calls: vec![
          ToolCall {
            id: "t1".into(),
            name: "f".into(),
            arguments: "{\"x\":1}".into(),
            ..ToolCall::default()
          },
          ToolCall {
            id: "t2".into(),
            name: "g".into(),
            arguments: String::new(),
            ..ToolCall::default()
          },
        ],
      },
      tool_message("t1", "one"),
      tool_message("t2", "two"),
    ],
    ..ChatRequest::default()
  };
  let body = request_body(&req, false).expect("body");
  assert_eq!(body["system"], "be brief");
  assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
  let messages = body["messages"].as_array().expect("messages");
  assert_eq!(messages.len(), 3);
  assert_eq!(messages[0]["content"].as_array().map(Vec::len), Some(2));
  assert_eq!(messages[1]["content"][1]["input"], json!({"x": 1}));
  assert_eq!(messages[1]["content"][2]["input"], json!({}));
  assert_eq!(messages[2]["role"], "user");
  assert_eq!(messages[2]["content"][1]["tool_use_id"], "t2");
}

#[test]
fn json_output_is_a_forced_tool_whose_input_is_the_answer() {
  let req = ChatRequest {
    model: "claude".into(),
    messages: vec![Message::text(Role::User, "a person")],
    response_format: Some(ResponseFormat::JsonSchema {
      name: "person".into(),
      schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
    }),
    tools: vec![ToolDefinition {
      name: "other".into(),
      description: None,
      parameters: json!({"type": "object"}),
    }],
    ..ChatRequest::default()
  };
  let body = request_body(&req, false).expect("body");
  assert_eq!(
    body["tool_choice"],
    json!({"type": "tool", "name": JSON_TOOL_NAME})
  );
  assert_eq!(body["tools"][1]["name"], JSON_TOOL_NAME);
  let adapter = Anthropic {
    base_url: DEFAULT_BASE_URL.into(),
    api_key: None,
    headers: vec![],
  };
  let response = br#"{"id":"m","model":"c","stop_reason":"tool_use","content":[{"type":"tool_use","id":"t","name":"json_output","input":{"name":"Ada"}}],"usage":{"input_tokens":5,"output_tokens":3}}"#;
  let completion = adapter.parse_response(&req, response).expect("completion");
  assert_eq!(completion.content, "{\"name\":\"Ada\"}");
  assert!(completion.tool_calls.is_empty());
  assert_eq!(completion.finish_reason, FinishReason::Stop);
}

#[test]
fn a_tool_message_without_id_is_rejected() {
  let mut message = tool_message("x", "r");
  message.tool_call_id = None;
  let req = ChatRequest {
    messages: vec![Message::text(Role::User, "a"), message],
    ..ChatRequest::default()
  };
  let error = request_body(&req, false).expect_err("no id");
  assert_eq!(error.code, ErrorCode::InvalidRequest);
}

#[test]
fn cache_breakpoints_become_cache_control_on_the_block_or_tool_asked() {
  use crate::types::{CacheAt, CacheBreakpoint, CacheTtl};
  let breakpoint = |at, ttl| CacheBreakpoint { at, ttl };
  let req = ChatRequest {
    model: "claude".into(),
    messages: vec![
      Message::text(Role::System, "You are terse."),
      Message {
        role: Role::User,
        content: vec![
          ContentPart::Text("a long document".into()),
          ContentPart::Text("the question".into()),
        ],
        tool_call_id: None,
        tool_calls: vec![],
      },
      Message {
        role: Role::Assistant,
        content: vec![],
        tool_call_id: None,
        tool_calls: vec![ToolCall {
          id: "call_1".into(),
          name: "lookup".into(),
          arguments: "{}".into(),
          thought_signature: None,
        }],
      },
      tool_message("call_1", "found"),
    ],
    tools: vec![ToolDefinition {
      name: "lookup".into(),
      description: None,
      parameters: json!({"type": "object"}),
    }],
    cache_breakpoints: vec![
      breakpoint(CacheAt::Message(0), CacheTtl::Default),
      breakpoint(
        CacheAt::Part {
          message: 1,
          part: 0,
        },
        CacheTtl::OneHour,
      ),
      breakpoint(CacheAt::Message(3), CacheTtl::FiveMinutes),
      breakpoint(CacheAt::Tool(0), CacheTtl::Default),
    ],
    ..ChatRequest::default()
  };
  let body = request_body(&req, false).expect("body");
  let ephemeral = json!({"type": "ephemeral"});
  assert_eq!(
    body["system"],
    json!([{"type": "text", "text": "You are terse.", "cache_control": ephemeral}])
  );
  let user = &body["messages"][0]["content"];
  assert_eq!(
    user[0]["cache_control"],
    json!({"type": "ephemeral", "ttl": "1h"})
  );
  assert!(
    user[1].get("cache_control").is_none(),
    "only the part asked"
  );
  assert!(body["messages"][1]["content"][0]
    .get("cache_control")
    .is_none());
  assert_eq!(
    body["messages"][2]["content"][0]["cache_control"],
    json!({"type": "ephemeral", "ttl": "5m"}),
    "a tool result message's breakpoint is on its tool_result block"
  );
  assert_eq!(body["tools"][0]["cache_control"], ephemeral);

  let plain = request_body(
    &ChatRequest {
      cache_breakpoints: vec![],
      ..req
    },
    false,
  )
  .expect("body");
  assert_eq!(
    plain["system"],
    json!("You are terse."),
    "no breakpoint: the system prompt stays a string"
  );
  assert!(!plain.to_string().contains("cache_control"));
}
