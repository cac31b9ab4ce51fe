//! Replays every recorded vendor response, stream and error in
//! `__test__/fixtures/providers/manifest.json` (in this repository) through the adapters, and checks the
//! normalized result against the manifest's expectations. Streams are decoded whole,
//! one byte at a time (every byte boundary is a split), and split in two with an empty
//! piece between the halves at every boundary (at evenly spread boundaries for the few
//! fixtures over 6 KiB).

use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::ErrorCode;
use crate::pipeline::{Kind, KindSpec};
use crate::providers::anthropic::Anthropic;
use crate::providers::bedrock::{Auth, Bedrock};
use crate::providers::gemini::Gemini;
use crate::providers::openai::OpenAi;
use crate::providers::{Adapter, StreamSession};
use crate::secret::Secret;
use crate::types::{ChatRequest, Completion, StreamEvent};

fn fixtures_dir() -> PathBuf {
  std::env::var_os("FIXTURES_DIR")
    .map(PathBuf::from)
    .unwrap_or_else(|| {
      PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("__test__/fixtures/providers")
    })
}

fn manifest() -> Vec<Value> {
  let text = std::fs::read_to_string(fixtures_dir().join("manifest.json")).expect("manifest.json");
  let manifest: Value = serde_json::from_str(&text).expect("manifest parses");
  manifest["files"].as_array().expect("files").clone()
}

fn adapter(vendor: &str) -> Box<dyn Adapter> {
  let base_url = "http://127.0.0.1:9".to_string();
  let kind = KindSpec::parse(vendor)
    .unwrap_or_else(|| panic!("manifest vendor '{vendor}' is not a provider kind"))
    .kind;
  match kind {
    Kind::OpenAi => Box::new(OpenAi {
      base_url,
      api_key: None,
      organization: None,
      headers: vec![],
    }),
    Kind::Anthropic => Box::new(Anthropic {
      base_url,
      api_key: None,
      headers: vec![],
    }),
    Kind::Bedrock => Box::new(Bedrock {
      base_url,
      auth: Auth::ApiKey(Secret::new("recorded".into())),
      headers: vec![],
    }),
    Kind::Gemini => Box::new(Gemini {
      base_url,
      api_key: None,
      headers: vec![],
    }),
    Kind::Azure | Kind::Vertex | Kind::Mock => {
      panic!("no recorded fixtures are decoded for kind '{vendor}'")
    }
  }
}

fn request() -> ChatRequest {
  ChatRequest {
    model: "recorded".into(),
    ..ChatRequest::default()
  }
}

/// Decodes `bytes` fed in the given pieces; the events and the completion.
fn decode(
  adapter: &dyn Adapter,
  bytes: &[u8],
  splits: &[usize],
) -> crate::error::Result<(Vec<StreamEvent>, Completion)> {
  let mut session = StreamSession::new(adapter.stream_decoder(&request()));
  let mut events = Vec::new();
  let mut start = 0;
  for &at in splits.iter().chain(std::iter::once(&bytes.len())) {
    events.extend(session.push(&bytes[start..at])?);
    start = at;
  }
  let (tail, completion) = session.finish()?;
  events.extend(tail);
  Ok((events, completion))
}

fn check_completion(file: &str, expected: &Value, completion: &Completion) {
  let text = expected["text"].as_str().unwrap_or("");
  assert_eq!(completion.content, text, "{file}: text");
  if let Some(reason) = expected["finish_reason"].as_str() {
    assert_eq!(
      completion.finish_reason.as_str(),
      reason,
      "{file}: finish reason"
    );
  }
  match (expected["prompt_tokens"].as_u64(), completion.usage) {
    (Some(prompt), Some(usage)) => {
      assert_eq!(usage.prompt_tokens, prompt, "{file}: prompt tokens");
      let completion_tokens = expected["completion_tokens"]
        .as_u64()
        .expect("completion tokens");
      assert_eq!(
        usage.completion_tokens, completion_tokens,
        "{file}: completion tokens"
      );
      if let Some(reasoning) = expected["reasoning_tokens"].as_u64() {
        assert_eq!(
          usage.reasoning_tokens, reasoning,
          "{file}: reasoning tokens"
        );
      }
    }
    (None, None) => {}
    (prompt, usage) => panic!("{file}: expected prompt tokens {prompt:?}, got usage {usage:?}"),
  }
  if let Some(refusal) = expected["refusal"].as_str() {
    assert_eq!(
      completion.refusal.as_deref(),
      Some(refusal),
      "{file}: refusal"
    );
  }
  let expected_calls = expected["tool_calls"]
    .as_array()
    .cloned()
    .unwrap_or_default();
  assert_eq!(
    completion.tool_calls.len(),
    expected_calls.len(),
    "{file}: tool call count"
  );
  for (call, want) in completion.tool_calls.iter().zip(&expected_calls) {
    assert_eq!(
      call.name,
      want["name"].as_str().expect("name"),
      "{file}: tool name"
    );
    if let Some(id) = want["id"].as_str() {
      assert_eq!(call.id, id, "{file}: tool call id");
    } else {
      assert!(!call.id.is_empty(), "{file}: a generated tool call id");
    }
    if let Some(raw) = want["arguments_raw"].as_str() {
      assert_eq!(call.arguments, raw, "{file}: raw arguments");
    }
    let arguments: Value = serde_json::from_str(&call.arguments).expect("arguments are JSON");
    assert_eq!(arguments, want["arguments"], "{file}: arguments");
  }
}

/// What the events delivered to a caller add up to must be the completion itself.
fn check_events_rebuild(file: &str, events: &[StreamEvent], completion: &Completion) {
  let mut text = String::new();
  let mut arguments: Vec<String> = Vec::new();
  for event in events {
    match event {
      StreamEvent::Text(delta) => text.push_str(delta),
      StreamEvent::ToolCall(call) => {
        let (index, arguments_delta) = (call.index as usize, &call.arguments_delta);
        if arguments.len() <= index {
          arguments.resize(index + 1, String::new());
        }
        arguments[index].push_str(arguments_delta);
      }
      StreamEvent::Done(_) => panic!("{file}: the decoder never emits done"),
      StreamEvent::Native(_) => panic!("{file}: decoders never relay bytes"),
    }
  }
  assert_eq!(text, completion.content, "{file}: streamed text");
  let whole: Vec<&str> = completion
    .tool_calls
    .iter()
    .map(|c| c.arguments.as_str())
    .collect();
  assert_eq!(arguments, whole, "{file}: streamed tool arguments");
}

fn split_points(len: usize) -> Vec<usize> {
  const EXHAUSTIVE_UP_TO: usize = 6 * 1024;
  if len <= EXHAUSTIVE_UP_TO {
    (0..=len).collect()
  } else {
    let step = len / 1500 + 1;
    (0..=len).step_by(step).chain([len - 1, len]).collect()
  }
}

fn header_map(file: &str) -> HeaderMap {
  let mut map = HeaderMap::new();
  let path = fixtures_dir().join(file.replace(".json", ".headers.json"));
  let Ok(text) = std::fs::read_to_string(path) else {
    return map;
  };
  let parsed: Value = serde_json::from_str(&text).expect("headers parse");
  if let Some(headers) = parsed["headers"].as_object() {
    for (name, value) in headers {
      let value = value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| value.to_string());
      if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(&value),
      ) {
        map.insert(name, value);
      }
    }
  }
  map
}

#[test]
fn every_recorded_response_normalizes_as_the_manifest_says() {
  let mut checked = 0;
  for entry in manifest().iter().filter(|e| e["kind"] == "response") {
    let file = entry["file"].as_str().expect("file");
    let body = std::fs::read(fixtures_dir().join(file)).expect("fixture");
    let adapter = adapter(entry["provider"].as_str().expect("provider"));
    let completion = adapter
      .parse_response(&request(), &body)
      .unwrap_or_else(|e| panic!("{file}: {e}"));
    check_completion(file, &entry["expected"], &completion);
    checked += 1;
  }
  assert!(checked >= 14, "only {checked} responses in the manifest");
}

#[test]
fn every_recorded_stream_decodes_the_same_for_every_split() {
  let mut checked = 0;
  for entry in manifest().iter().filter(|e| e["kind"] == "stream") {
    let file = entry["file"].as_str().expect("file");
    let expected = &entry["expected"];
    let bytes = std::fs::read(fixtures_dir().join(file)).expect("fixture");
    let adapter = adapter(entry["provider"].as_str().expect("provider"));
    if expected["expect_error"].as_bool() == Some(true) {
      let error = decode(adapter.as_ref(), &bytes, &[]).expect_err(file);
      let retryable = expected["retryable"].as_bool().expect("retryable");
      assert_eq!(error.retryable, retryable, "{file}: retryable");
      let want = if file.contains("overloaded") {
        ErrorCode::UpstreamUnavailable
      } else {
        ErrorCode::ProviderError
      };
      assert_eq!(error.code, want, "{file}: code");
      let partial = partial_text(adapter.as_ref(), &bytes);
      let before = expected["partial_text_before_error"]
        .as_str()
        .or(expected["text"].as_str())
        .expect("partial text");
      assert_eq!(partial, before, "{file}: text delivered before the error");
      checked += 1;
      continue;
    }
    check_recorded_stream(adapter.as_ref(), file, &bytes, expected);
    checked += 1;
  }
  assert!(checked >= 20, "only {checked} streams in the manifest");
}

/// A recorded stream decoded whole, one byte at a time, and split in two at every boundary
/// (with an empty read between the halves): each must give the manifest's answer.
fn check_recorded_stream(adapter: &dyn Adapter, file: &str, bytes: &[u8], expected: &Value) {
  let (events, completion) = decode(adapter, bytes, &[]).unwrap_or_else(|e| panic!("{file}: {e}"));
  check_completion(file, expected, &completion);
  check_events_rebuild(file, &events, &completion);
  let every_byte: Vec<usize> = (1..bytes.len()).collect();
  let (byte_events, byte_completion) =
    decode(adapter, bytes, &every_byte).unwrap_or_else(|e| panic!("{file}: {e}"));
  assert_eq!(
    byte_completion.content, completion.content,
    "{file}: byte at a time"
  );
  check_events_rebuild(file, &byte_events, &byte_completion);
  // Split in two with an empty read between the halves: an empty read (say between a
  // `\r` and its `\n`) must change nothing.
  for at in split_points(bytes.len()) {
    let (_, split) =
      decode(adapter, bytes, &[at, at]).unwrap_or_else(|e| panic!("{file} split {at}: {e}"));
    assert_eq!(split.content, completion.content, "{file}: split at {at}");
    assert_eq!(
      split.usage, completion.usage,
      "{file}: usage, split at {at}"
    );
    assert_eq!(
      split.finish_reason, completion.finish_reason,
      "{file}: split at {at}"
    );
    assert_eq!(
      split.tool_calls.len(),
      completion.tool_calls.len(),
      "{file}: split at {at}"
    );
  }
}

/// Text a caller received before the stream failed.
fn partial_text(adapter: &dyn Adapter, bytes: &[u8]) -> String {
  let mut session = StreamSession::new(adapter.stream_decoder(&request()));
  let mut text = String::new();
  let collect = |events: Vec<StreamEvent>, text: &mut String| {
    for event in events {
      if let StreamEvent::Text(delta) = event {
        text.push_str(&delta);
      }
    }
  };
  // One byte at a time, so every event before the failing one is delivered.
  for byte in bytes.chunks(1) {
    match session.push(byte) {
      Ok(events) => collect(events, &mut text),
      Err(_) => return text,
    }
  }
  if let Ok((events, _)) = session.finish() {
    collect(events, &mut text);
  }
  text
}

#[test]
fn every_recorded_error_maps_to_its_code_and_retry_policy() {
  let expected_codes = [
    (
      "openai/error-400-unsupported-parameter.json",
      ErrorCode::InvalidRequest,
      400,
    ),
    (
      "openai/error-401-invalid-api-key.json",
      ErrorCode::Authentication,
      401,
    ),
    (
      "openai/error-404-model-not-found.json",
      ErrorCode::NotFound,
      404,
    ),
    (
      "openai/error-429-rate-limit.json",
      ErrorCode::RateLimited,
      429,
    ),
    (
      "openai/error-500-server-error.json",
      ErrorCode::ProviderError,
      502,
    ),
    (
      "anthropic/error-400-invalid-request.json",
      ErrorCode::InvalidRequest,
      400,
    ),
    (
      "anthropic/error-401-authentication.json",
      ErrorCode::Authentication,
      401,
    ),
    (
      "anthropic/error-429-rate-limit.json",
      ErrorCode::RateLimited,
      429,
    ),
    (
      "anthropic/error-500-api-error.json",
      ErrorCode::ProviderError,
      502,
    ),
    (
      "anthropic/error-529-overloaded.json",
      ErrorCode::UpstreamUnavailable,
      503,
    ),
    (
      "gemini/error-400-api-key-invalid.json",
      ErrorCode::Authentication,
      401,
    ),
    (
      "gemini/error-404-model-not-found.json",
      ErrorCode::NotFound,
      404,
    ),
    (
      "gemini/error-429-resource-exhausted.json",
      ErrorCode::RateLimited,
      429,
    ),
    (
      "gemini/error-429-retry-info.json",
      ErrorCode::RateLimited,
      429,
    ),
    (
      "gemini/error-500-internal.json",
      ErrorCode::ProviderError,
      502,
    ),
    (
      "gemini/error-503-unavailable.json",
      ErrorCode::UpstreamUnavailable,
      503,
    ),
  ];
  let entries = manifest();
  let errors: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "error").collect();
  assert_eq!(
    errors.len(),
    expected_codes.len(),
    "every error fixture has an expectation"
  );
  for entry in errors {
    let file = entry["file"].as_str().expect("file");
    let (_, code, status) = expected_codes
      .iter()
      .find(|(name, _, _)| *name == file)
      .unwrap_or_else(|| panic!("no expectation for {file}"));
    let body = std::fs::read(fixtures_dir().join(file)).expect("fixture");
    let http_status = entry["http_status"].as_u64().expect("status") as u16;
    let adapter = adapter(entry["provider"].as_str().expect("provider"));
    let error = adapter.parse_error(http_status, &header_map(file), &body);
    let expected = &entry["expected"];
    assert_eq!(error.code, *code, "{file}: code");
    assert_eq!(error.status, *status, "{file}: status");
    assert_eq!(
      error.retryable,
      expected["retryable"].as_bool().expect("retryable"),
      "{file}: retryable"
    );
    assert_eq!(
      error.message,
      expected["error_message"].as_str().expect("message"),
      "{file}: the vendor's message is the message"
    );
    let hint = expected["retry_delay_seconds"]
      .as_f64()
      .or(expected["retry_after_seconds_from_message"].as_f64());
    if let Some(seconds) = hint {
      let wait = error
        .retry_after
        .unwrap_or_else(|| panic!("{file}: retry hint"));
      assert!(
        (wait.as_secs_f64() - seconds).abs() < 0.001,
        "{file}: {wait:?}"
      );
    }
  }
}

/// Vertex's recordings (vertex/manifest.json), through the decoders the `vertex` kind uses
/// for each model: Gemini's on publishers/google, Anthropic's on publishers/anthropic.
#[test]
fn every_recorded_vertex_answer_decodes_as_the_manifest_says_for_every_split() {
  let text =
    std::fs::read_to_string(fixtures_dir().join("vertex/manifest.json")).expect("vertex manifest");
  let manifest: Value = serde_json::from_str(&text).expect("vertex manifest parses");
  let mut checked = 0;
  for entry in manifest["files"].as_array().expect("files") {
    let file = entry["file"].as_str().expect("file");
    let adapter = crate::providers::vertex::wire(entry["model"].as_str().expect("model"));
    let bytes = std::fs::read(fixtures_dir().join(file)).expect("fixture");
    match entry["kind"].as_str() {
      Some("response") => {
        let completion = adapter
          .parse_response(&request(), &bytes)
          .unwrap_or_else(|e| panic!("{file}: {e}"));
        check_completion(file, &entry["expected"], &completion);
      }
      Some("stream") => check_recorded_stream(adapter, file, &bytes, &entry["expected"]),
      other => panic!("{file}: unknown kind {other:?}"),
    }
    checked += 1;
  }
  assert_eq!(checked, 7, "every vertex fixture is checked");
}
