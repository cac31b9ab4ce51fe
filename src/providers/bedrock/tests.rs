use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::json;

use std::time::SystemTime;

use super::*;
use crate::eventstream::encode;
use crate::providers::StreamSession;
use crate::types::{
  CacheAt, CacheBreakpoint, CacheTtl, Message, StreamEvent, ToolCall, ToolDefinition,
};

fn adapter() -> Bedrock {
  Bedrock {
    base_url: "http://127.0.0.1:9/".into(),
    auth: Auth::ApiKey(Secret::new("bedrock-api-key-0123".into())),
    headers: vec![],
  }
}

fn user(text: &str) -> Message {
  Message::text(Role::User, text)
}

fn request(messages: Vec<Message>) -> ChatRequest {
  ChatRequest {
    model: "anthropic.claude-3-haiku-20240307-v1:0".into(),
    messages,
    ..ChatRequest::default()
  }
}

#[test]
fn model_ids_and_arns_are_one_path_segment_encoded_as_the_aws_sdk_does() {
  let mut req = request(vec![user("hi")]);
  req.model =
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
      .into();
  let call = adapter().build(&req, true).expect("builds");
  assert_eq!(
    call.url,
    "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
  );
  req.model = "us.amazon.nova-lite-v1:0".into();
  let call = adapter().build(&req, false).expect("builds");
  assert!(call
    .url
    .ends_with("/model/us.amazon.nova-lite-v1%3A0/converse"));
  assert!(call
    .headers
    .contains(&("authorization".into(), "Bearer bedrock-api-key-0123".into())));
  req.model = "..".into();
  assert_eq!(
    adapter().build(&req, false).expect_err("dots").code,
    ErrorCode::InvalidRequest
  );
}

#[test]
fn the_body_carries_system_inference_config_tools_and_images() {
  let mut req = request(vec![
    Message::text(Role::System, "Be brief."),
    Message {
      role: Role::User,
      content: vec![
        ContentPart::Text("look".into()),
        ContentPart::ImageUrl("data:image/jpeg;base64,AAEC".into()),
      ],
      tool_call_id: None,
      tool_calls: vec![],
    },
    Message {
      role: Role::Assistant,
      content: vec![],
      tool_call_id: None,
      tool_calls: vec![ToolCall {
        id: "t1".into(),
        name: "get".into(),
        arguments: r#"{"a":1}"#.into(),
        ..ToolCall::default()
      }],
    },
    Message {
      role: Role::Tool,
      content: vec![ContentPart::Text("ok".into())],
      tool_call_id: Some("t1".into()),
      tool_calls: vec![],
    },
  ]);
  req.max_tokens = Some(10);
  req.stop = vec!["END".into()];
  req.tools = vec![ToolDefinition {
    name: "get".into(),
    description: None,
    parameters: json!({"type": "object"}),
  }];
  req.tool_choice = Some(ToolChoice::Named("get".into()));
  let body = request_body(&req).expect("body");
  assert_eq!(
    body,
    json!({
      "system": [{"text": "Be brief."}],
      "messages": [
        {"role": "user", "content": [
          {"text": "look"},
          {"image": {"format": "jpeg", "source": {"bytes": "AAEC"}}},
        ]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get", "input": {"a": 1}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}}]},
      ],
      "inferenceConfig": {"maxTokens": 10, "stopSequences": ["END"]},
      "toolConfig": {
        "tools": [{"toolSpec": {"name": "get", "inputSchema": {"json": {"type": "object"}}}}],
        "toolChoice": {"tool": {"name": "get"}},
      },
    })
  );
  let mut remote = request(vec![Message {
    role: Role::User,
    content: vec![ContentPart::ImageUrl("https://example.com/a.png".into())],
    tool_call_id: None,
    tool_calls: vec![],
  }]);
  assert_eq!(
    request_body(&remote).expect_err("url").code,
    ErrorCode::InvalidRequest
  );
  remote.messages[0].content = vec![ContentPart::Image {
    data: "AA".into(),
    mime_type: "image/tiff".into(),
  }];
  assert_eq!(
    request_body(&remote).expect_err("tiff").code,
    ErrorCode::InvalidRequest
  );
}

#[test]
fn a_converse_answer_with_cache_usage_normalizes() {
  let body = json!({
    "output": {"message": {"role": "assistant", "content": [
      {"text": "Calling."},
      {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song", "input": {"sign": "WZPZ"}}},
    ]}},
    "stopReason": "tool_use",
    "usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 112, "cacheReadInputTokens": 60, "cacheWriteInputTokens": 40},
  });
  let req = request(vec![user("x")]);
  let completion = adapter()
    .parse_response(&req, body.to_string().as_bytes())
    .expect("parses");
  assert_eq!(completion.content, "Calling.");
  assert_eq!(completion.finish_reason, FinishReason::ToolCalls);
  assert_eq!(completion.tool_calls[0].arguments, r#"{"sign":"WZPZ"}"#);
  let usage = completion.usage.expect("usage");
  assert_eq!(
    (
      usage.prompt_tokens,
      usage.completion_tokens,
      usage.total_tokens,
      usage.cached_prompt_tokens,
      usage.cache_write_prompt_tokens
    ),
    (105, 7, 112, 60, 40)
  );
}

fn event(name: &str, payload: serde_json::Value) -> Vec<u8> {
  encode(
    &[
      (":event-type", name),
      (":content-type", "application/json"),
      (":message-type", "event"),
    ],
    payload.to_string().as_bytes(),
  )
}

fn decode(bytes: &[u8], splits: &[usize], json: bool) -> crate::error::Result<Completion> {
  let mut req = request(vec![user("x")]);
  if json {
    req.response_format = Some(ResponseFormat::JsonObject);
  }
  let mut session = StreamSession::new(adapter().stream_decoder(&req));
  let mut start = 0;
  let mut streamed = String::new();
  for &at in splits.iter().chain(std::iter::once(&bytes.len())) {
    for event in session.push(&bytes[start..at])? {
      if let StreamEvent::Text(text) = event {
        streamed.push_str(&text);
      }
    }
    start = at;
  }
  let (_, completion) = session.finish()?;
  Ok(completion)
}

#[test]
fn a_json_mode_stream_gives_the_forced_tool_input_as_text_for_any_split() {
  let bytes = [
    event("messageStart", json!({"role": "assistant"})),
    event(
      "contentBlockStart",
      json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL_NAME}}}),
    ),
    event(
      "contentBlockDelta",
      json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"a\":"}}}),
    ),
    event(
      "contentBlockDelta",
      json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
    ),
    event("messageStop", json!({"stopReason": "tool_use"})),
    event(
      "metadata",
      json!({"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}}),
    ),
  ]
  .concat();
  for at in 0..=bytes.len() {
    let completion = decode(&bytes, &[at], true).expect("decodes");
    assert_eq!(completion.content, r#"{"a":1}"#);
    assert!(completion.tool_calls.is_empty());
    assert_eq!(completion.finish_reason, FinishReason::Stop);
    assert_eq!(completion.usage.map(|u| u.total_tokens), Some(7));
  }
}

#[test]
fn stream_exceptions_are_classified_by_name() {
  let start = event("messageStart", json!({"role": "assistant"}));
  for (name, code, retryable) in [
    ("throttlingException", ErrorCode::RateLimited, true),
    (
      "serviceUnavailableException",
      ErrorCode::UpstreamUnavailable,
      true,
    ),
    ("validationException", ErrorCode::InvalidRequest, false),
    ("modelStreamErrorException", ErrorCode::ProviderError, true),
    ("somethingNewException", ErrorCode::ProviderError, true),
  ] {
    let exception = encode(
      &[(":exception-type", name), (":message-type", "exception")],
      br#"{"message":"no"}"#,
    );
    let bytes = [start.clone(), exception].concat();
    let error = decode(&bytes, &[], false).expect_err(name);
    assert_eq!((error.code, error.retryable), (code, retryable), "{name}");
    assert!(error.message.contains(name), "{}", error.message);
  }
}

#[test]
fn http_errors_read_the_error_type_header_or_body() {
  let mut headers = HeaderMap::new();
  headers.insert(
    "x-amzn-errortype",
    HeaderValue::from_static(
      "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
    ),
  );
  let error = adapter().parse_error(400, &headers, br#"{"message":"Too many tokens"}"#);
  assert_eq!(error.code, ErrorCode::RateLimited);
  assert!(error.retryable);
  assert!(error.message.contains("Too many tokens"));
  let error = adapter().parse_error(
    500,
    &HeaderMap::new(),
    br#"{"__type":"com.amazon.bedrock#ValidationException","message":"bad"}"#,
  );
  assert_eq!(error.code, ErrorCode::InvalidRequest);
  let error = adapter().parse_error(403, &HeaderMap::new(), br#"{"message":"denied"}"#);
  assert_eq!((error.code, error.status), (ErrorCode::Authentication, 403));
}

fn config(credentials: Option<AwsCredentials>, region: Option<&str>) -> ProviderConfig {
  ProviderConfig {
    name: "aws".into(),
    kind: "bedrock".into(),
    region: region.map(str::to_string),
    credentials,
    ..ProviderConfig::default()
  }
}

#[test]
fn construction_names_what_is_missing_and_keeps_secrets_out_of_messages() {
  let mut secrets = Vec::new();
  let credentials = AwsCredentials {
    access_key_id: "AKIA1".into(),
    secret_access_key: "very-secret-access-key".into(),
    session_token: Some("session-token-value".into()),
  };
  let bedrock = Bedrock::new(
    &config(Some(credentials.clone()), Some("eu-west-1")),
    None,
    &mut secrets,
  )
  .expect("builds");
  assert_eq!(
    bedrock.base_url,
    "https://bedrock-runtime.eu-west-1.amazonaws.com"
  );
  let kept: Vec<&str> = secrets.iter().map(Secret::expose).collect();
  assert_eq!(kept, ["very-secret-access-key", "session-token-value"]);
  let debug = format!("{:?}", bedrock.auth);
  assert!(!debug.contains("very-secret") && !debug.contains("session-token-value"));
  let no_secret = AwsCredentials {
    secret_access_key: String::new(),
    ..credentials.clone()
  };
  let error = Bedrock::new(
    &config(Some(no_secret), Some("eu-west-1")),
    None,
    &mut Vec::new(),
  )
  .err()
  .expect("no secret");
  assert_eq!(error.code, ErrorCode::Config);
  assert!(
    error.message.contains("secretAccessKey"),
    "{}",
    error.message
  );
  let error = Bedrock::new(
    &config(Some(credentials), Some("eu west/1")),
    None,
    &mut Vec::new(),
  )
  .err()
  .expect("bad region");
  assert!(error.message.contains("region"), "{}", error.message);
}

#[test]
fn an_explicit_key_wins_then_explicit_credentials_then_the_environment_key() {
  let credentials = AwsCredentials {
    access_key_id: "AKIA1".into(),
    secret_access_key: "secret".into(),
    session_token: None,
  };
  let key = || Some(Secret::new("bedrock-key".into()));
  let mut explicit = config(Some(credentials.clone()), Some("us-east-1"));
  explicit.api_key = Some("bedrock-key".into());
  let bedrock = Bedrock::new(&explicit, key(), &mut Vec::new()).expect("builds");
  assert!(matches!(bedrock.auth, Auth::ApiKey(_)));
  assert!(bedrock.authorizer().is_none());
  // A key from AWS_BEARER_TOKEN_BEDROCK does not override credentials given in the options.
  let given = config(Some(credentials), Some("us-east-1"));
  let bedrock = Bedrock::new(&given, key(), &mut Vec::new()).expect("builds");
  assert!(matches!(bedrock.auth, Auth::SigV4(_)));
  assert!(bedrock.authorizer().is_some());
  let only_key = config(None, Some("us-east-1"));
  let bedrock = Bedrock::new(&only_key, key(), &mut Vec::new()).expect("builds");
  assert!(matches!(bedrock.auth, Auth::ApiKey(_)));
}

#[test]
fn sigv4_signs_the_exact_body_and_url_sent() {
  let signer = sigv4::Signer {
    credentials: Credentials {
      access_key_id: "AKIA1".into(),
      secret_access_key: Secret::new("secret".into()),
      session_token: None,
    },
    region: "us-east-1".into(),
    service: "bedrock",
  };
  let bedrock = Bedrock {
    auth: Auth::SigV4(signer),
    ..adapter()
  };
  let call = bedrock
    .build(&request(vec![user("x")]), false)
    .expect("builds");
  let Auth::SigV4(signer) = &bedrock.auth else {
    unreachable!("built with SigV4")
  };
  let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
  let names: Vec<String> = signer
    .sign(&call.url, JSON_CONTENT_TYPE, b"{}", at)
    .expect("signs")
    .into_iter()
    .map(|(n, _)| n)
    .collect();
  assert_eq!(
    names,
    ["x-amz-content-sha256", "x-amz-date", "authorization"]
  );
  let auth = |body: &[u8]| {
    let headers = signer
      .sign(&call.url, JSON_CONTENT_TYPE, body, at)
      .expect("signs");
    headers.into_iter().last().expect("auth").1
  };
  assert_eq!(auth(b"{}"), auth(b"{}"), "deterministic for one instant");
  assert_ne!(auth(b"{}"), auth(b"{ }"), "the body is signed");
}

#[test]
fn cache_breakpoints_become_cache_points_after_their_block() {
  let mut req = request(vec![
    Message::text(Role::System, "Long instructions."),
    Message {
      role: Role::User,
      content: vec![
        ContentPart::Text("doc".into()),
        ContentPart::Text("question".into()),
      ],
      tool_call_id: None,
      tool_calls: vec![],
    },
  ]);
  req.tools = vec![ToolDefinition {
    name: "get".into(),
    description: None,
    parameters: json!({"type": "object"}),
  }];
  let breakpoint = |at| CacheBreakpoint {
    at,
    ttl: CacheTtl::OneHour,
  };
  req.cache_breakpoints = vec![
    breakpoint(CacheAt::Message(0)),
    breakpoint(CacheAt::Part {
      message: 1,
      part: 0,
    }),
    breakpoint(CacheAt::Tool(0)),
  ];
  let body = request_body(&req).expect("body");
  let point = json!({"cachePoint": {"type": "default"}});
  assert_eq!(
    body["system"],
    json!([{"text": "Long instructions."}, point])
  );
  assert_eq!(
    body["messages"][0]["content"],
    json!([{"text": "doc"}, point, {"text": "question"}])
  );
  assert_eq!(body["toolConfig"]["tools"][1], point);
  req.cache_breakpoints = vec![breakpoint(CacheAt::Message(1))];
  let body = request_body(&req).expect("body");
  assert_eq!(
    body["messages"][0]["content"],
    json!([{"text": "doc"}, {"text": "question"}, point])
  );
  assert_eq!(body["system"], json!([{"text": "Long instructions."}]));
}
