//! Vendor errors, whatever shape they come in and wherever they arrive (a non-2xx answer,
//! an event inside a stream, a bare line in a stream). Gateways and compatible servers
//! answer in each other's shapes (LiteLLM's Google routes send OpenAI's, proxies in front
//! of Anthropic send Google's), so every kind reads every common shape with one parser.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::error::{ErrorCode, GatewayError};
use crate::retry::{parse_proto_duration, retry_after_from_headers, retry_hint_in_message};

/// The raw body kept as an error's `cause`, at most this many characters.
const MAX_CAUSE_CHARS: usize = 2000;

/// The HTTP error taxonomy shared by every vendor: which code, and whether to retry.
pub fn classify_status(status: u16) -> (ErrorCode, bool) {
  match status {
    400 | 413 | 422 => (ErrorCode::InvalidRequest, false),
    401 | 403 => (ErrorCode::Authentication, false),
    404 => (ErrorCode::NotFound, false),
    408 => (ErrorCode::Timeout, true),
    409 => (ErrorCode::ProviderError, true),
    429 => (ErrorCode::RateLimited, true),
    503 | 529 => (ErrorCode::UpstreamUnavailable, true),
    500..=599 => (ErrorCode::ProviderError, true),
    _ => (ErrorCode::ProviderError, false),
  }
}

/// What an error body says, read from any of the common shapes:
/// - OpenAI `{"error": {"message", "type", "code", "param"}}`, `code` a string or (vLLM,
///   LiteLLM) a number or a numeric string;
/// - Anthropic `{"type": "error", "error": {"type", "message"}, "request_id"}`;
/// - Google `{"error": {"code", "message", "status", "details"}}`, also as a one-element array;
/// - compatible servers' `{"error": "text"}`, `{"detail": …}` (FastAPI), `{"message": "…"}`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ErrorBody {
  pub message: Option<String>,
  /// OpenAI's and Anthropic's `type` (`invalid_request_error`, `overloaded_error`, …).
  pub kind: Option<String>,
  /// Google's status name (`RESOURCE_EXHAUSTED`, …).
  pub status: Option<String>,
  /// `code` as text (`insufficient_quota`, `400`, …).
  pub code: Option<String>,
  /// Google's `details` (RetryInfo, ErrorInfo, …).
  pub details: Vec<Value>,
  /// Anthropic's body `request_id`.
  pub request_id: Option<String>,
}

impl ErrorBody {
  pub fn parse(body: &[u8]) -> Option<ErrorBody> {
    Self::from_value(&serde_json::from_slice(body).ok()?)
  }

  pub fn from_value(value: &Value) -> Option<ErrorBody> {
    let object = match value {
      Value::Array(items) if items.len() == 1 => return Self::from_value(&items[0]),
      Value::Object(object) => object,
      _ => return None,
    };
    let text = |value: Option<&Value>| {
      value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    };
    let mut parsed = ErrorBody {
      request_id: text(object.get("request_id")),
      ..ErrorBody::default()
    };
    match object.get("error") {
      Some(Value::Object(error)) => {
        parsed.message = text(error.get("message"));
        parsed.kind = text(error.get("type"));
        parsed.status = text(error.get("status"));
        parsed.code = match error.get("code") {
          Some(Value::Number(code)) => Some(code.to_string()),
          code => text(code),
        };
        parsed.details = match error.get("details") {
          Some(Value::Array(details)) => details.clone(),
          _ => Vec::new(),
        };
      }
      Some(Value::String(message)) => parsed.message = Some(message.clone()),
      _ => {
        parsed.message = match object.get("detail") {
          Some(Value::String(detail)) => Some(detail.clone()),
          Some(Value::Null) | None => text(object.get("message")),
          Some(other) => Some(other.to_string()),
        };
      }
    }
    let says_something = parsed.message.is_some()
      || parsed.kind.is_some()
      || parsed.status.is_some()
      || parsed.code.is_some();
    says_something.then_some(parsed)
  }

  /// The HTTP status this error stands for, when it arrived without one (in a stream):
  /// a numeric `code` first (vLLM, LiteLLM, Google), then the error type, then Google's status.
  pub fn http_status(&self) -> Option<u16> {
    let numeric = self
      .code
      .as_deref()
      .and_then(|code| code.parse::<u16>().ok())
      .filter(|code| (400..600).contains(code));
    numeric
      .or_else(|| self.kind.as_deref().and_then(status_of_type))
      .or_else(|| self.status.as_deref().and_then(status_of_google_status))
  }

  /// Applies what the body knows beyond the HTTP status.
  pub fn refine(&self, error: &mut GatewayError) {
    // The type decides where the status alone would mislead: an `overloaded_error` can
    // come with any 5xx.
    match self.kind.as_deref() {
      Some("overloaded_error") => set_code(error, ErrorCode::UpstreamUnavailable, 503, true),
      Some("rate_limit_error") => set_code(error, ErrorCode::RateLimited, 429, true),
      _ => {}
    }
    for detail in &self.details {
      if let Some(delay) = detail.get("retryDelay").and_then(Value::as_str) {
        error.retry_after = parse_proto_duration(delay).or(error.retry_after);
      }
      if detail.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID") {
        set_code(error, ErrorCode::Authentication, 401, false);
      }
    }
    if self.status.as_deref() == Some("PERMISSION_DENIED") {
      set_code(error, ErrorCode::Authentication, 403, false);
    }
    // Quota exhaustion is a 429 that no amount of waiting fixes.
    if self.code.as_deref() == Some("insufficient_quota") {
      error.retryable = false;
    }
    if error.code == ErrorCode::RateLimited && error.retry_after.is_none() {
      error.retry_after = self.message.as_deref().and_then(retry_hint_in_message);
    }
    if self.request_id.is_some() {
      error.upstream_request_id = self.request_id.as_deref().map(Box::from);
    }
  }
}

fn set_code(error: &mut GatewayError, code: ErrorCode, status: u16, retryable: bool) {
  error.code = code;
  error.status = status;
  error.retryable = retryable;
}

/// OpenAI and Anthropic error types, as the HTTP status each comes with.
fn status_of_type(kind: &str) -> Option<u16> {
  Some(match kind {
    "invalid_request_error" => 400,
    "authentication_error" => 401,
    "permission_error" => 403,
    "not_found_error" => 404,
    "request_too_large" => 413,
    "rate_limit_error" | "insufficient_quota" => 429,
    "api_error" | "server_error" => 500,
    "timeout_error" => 504,
    "overloaded_error" => 529,
    _ => return None,
  })
}

/// google.rpc.Code names, as the HTTP status Google maps each to.
fn status_of_google_status(status: &str) -> Option<u16> {
  Some(match status {
    "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
    "UNAUTHENTICATED" => 401,
    "PERMISSION_DENIED" => 403,
    "NOT_FOUND" => 404,
    "ALREADY_EXISTS" | "ABORTED" => 409,
    "RESOURCE_EXHAUSTED" => 429,
    "CANCELLED" => 499,
    "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
    "UNIMPLEMENTED" => 501,
    "UNAVAILABLE" => 503,
    "DEADLINE_EXCEEDED" => 504,
    _ => return None,
  })
}

/// A non-2xx answer: the status decides the code, the body (in whichever shape) refines
/// it, and the raw body is kept as `cause`.
pub fn http_error(vendor: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
  let parsed = ErrorBody::parse(body);
  let message = parsed.as_ref().and_then(|p| p.message.clone());
  let mut error = vendor_error(vendor, status, headers, message, body);
  if let Some(parsed) = &parsed {
    parsed.refine(&mut error);
  }
  error.cause = raw_cause(body);
  error
}

/// An error the vendor wrote into a 200 answer (a stream event or line, a body), classified
/// as the same error over HTTP would be.
pub fn in_band_error(vendor: &str, parsed: Option<ErrorBody>, raw: &[u8]) -> GatewayError {
  let parsed = parsed.unwrap_or_default();
  // An error without a status is most likely the server's own trouble, like a 500.
  let status = parsed.http_status().unwrap_or(500);
  let (code, retryable) = match status {
    // CANCELLED: the server gave up on this call; not ours to retry.
    499 => (ErrorCode::ProviderError, false),
    _ => classify_status(status),
  };
  let message = parsed
    .message
    .as_deref()
    .unwrap_or("an error without a message");
  let mut error =
    GatewayError::new(code, format!("{vendor} reported an error: {message}")).retryable(retryable);
  if code == ErrorCode::Authentication {
    error.status = status;
  }
  parsed.refine(&mut error);
  error.cause = raw_cause(raw);
  error
}

/// A stream line that is no SSE field: a bare JSON error (Gemini writes mid-stream
/// failures this way, some compatible servers too), else a protocol error.
pub fn stray_line(vendor: &str, text: &str) -> GatewayError {
  match ErrorBody::parse(text.as_bytes()) {
    Some(parsed) => in_band_error(vendor, Some(parsed), text.as_bytes()),
    None => {
      let snippet: String = text.chars().take(200).collect();
      GatewayError::protocol(format!(
        "{vendor} stream contained a non-SSE line: {snippet}"
      ))
    }
  }
}

/// A vendor error with the status taxonomy, headers (retry hints, request id) applied.
pub fn vendor_error(
  vendor: &str,
  status: u16,
  headers: &HeaderMap,
  message: Option<String>,
  body: &[u8],
) -> GatewayError {
  let (code, retryable) = classify_status(status);
  let message = message.unwrap_or_else(|| {
    let snippet: String = String::from_utf8_lossy(body).chars().take(300).collect();
    if snippet.trim().is_empty() {
      format!("{vendor} answered HTTP {status}")
    } else {
      format!("{vendor} answered HTTP {status}: {}", snippet.trim())
    }
  });
  let status_for_caller = match code {
    ErrorCode::Authentication => status,
    _ => code.default_status(),
  };
  let request_id = ["x-request-id", "request-id"]
    .iter()
    .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_string));
  GatewayError::new(code, message)
    .with_status(status_for_caller)
    .retryable(retryable)
    .with_retry_after(retry_after_from_headers(headers))
    .with_upstream_request_id(request_id)
}

/// The raw body as `cause`, truncated: what the vendor said beyond its message.
fn raw_cause(body: &[u8]) -> Option<String> {
  let text = String::from_utf8_lossy(body);
  let text = text.trim();
  if text.is_empty() {
    return None;
  }
  let mut cause: String = text.chars().take(MAX_CAUSE_CHARS).collect();
  if cause.len() < text.len() {
    cause.push('…');
  }
  Some(cause)
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn http(status: u16, body: Value) -> GatewayError {
    http_error("v", status, &HeaderMap::new(), body.to_string().as_bytes())
  }

  #[test]
  fn every_vendor_shape_gives_its_message_and_keeps_the_raw_body() {
    let shapes = [
      json!({"error": {"message": "m", "type": "invalid_request_error", "param": null, "code": "x"}}),
      json!({"type": "error", "error": {"type": "invalid_request_error", "message": "m"}, "request_id": "req_1"}),
      json!({"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}),
      json!([{"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}]),
      json!({"error": "m"}),
      json!({"detail": "m"}),
      json!({"message": "m"}),
    ];
    for shape in shapes {
      let error = http(400, shape.clone());
      assert_eq!(error.message, "m", "{shape}");
      assert_eq!(error.code, ErrorCode::InvalidRequest, "{shape}");
      assert_eq!(error.cause.as_deref(), Some(shape.to_string().as_str()));
    }
    let unparsed = http_error("v", 502, &HeaderMap::new(), b"<html>bad gateway</html>");
    assert_eq!(
      unparsed.message,
      "v answered HTTP 502: <html>bad gateway</html>"
    );
    assert_eq!(unparsed.cause.as_deref(), Some("<html>bad gateway</html>"));
  }

  #[test]
  fn body_refinements_apply_whatever_the_kind() {
    let overloaded = http(
      500,
      json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    assert_eq!(
      (overloaded.code, overloaded.retryable),
      (ErrorCode::UpstreamUnavailable, true)
    );
    let key = http(
      400,
      json!({"error": {"code": 400, "message": "bad key", "status": "INVALID_ARGUMENT",
        "details": [{"reason": "API_KEY_INVALID"}]}}),
    );
    assert_eq!((key.code, key.status), (ErrorCode::Authentication, 401));
    let quota = http(
      429,
      json!({"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}),
    );
    assert_eq!(
      (quota.code, quota.retryable),
      (ErrorCode::RateLimited, false)
    );
    let hinted = http(
      429,
      json!({"error": {"code": 429, "message": "slow", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3s"}]}}),
    );
    assert_eq!(hinted.retry_after, Some(std::time::Duration::from_secs(3)));
  }

  #[test]
  fn in_band_errors_are_classified_like_http() {
    let cases = [
      (
        json!({"error": {"code": 400, "message": "m", "type": "BadRequestError"}}),
        ErrorCode::InvalidRequest,
        false,
      ),
      (
        json!({"error": {"code": "400", "message": "m", "type": null}}),
        ErrorCode::InvalidRequest,
        false,
      ),
      (
        json!({"error": {"message": "m", "type": "invalid_request_error", "code": null}}),
        ErrorCode::InvalidRequest,
        false,
      ),
      (
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "m"}}),
        ErrorCode::UpstreamUnavailable,
        true,
      ),
      (
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "m"}}),
        ErrorCode::RateLimited,
        true,
      ),
      (
        json!({"type": "error", "error": {"type": "authentication_error", "message": "m"}}),
        ErrorCode::Authentication,
        false,
      ),
      (
        json!({"error": {"code": 503, "message": "m", "status": "UNAVAILABLE"}}),
        ErrorCode::UpstreamUnavailable,
        true,
      ),
      (
        json!({"error": {"code": 499, "message": "m", "status": "CANCELLED"}}),
        ErrorCode::ProviderError,
        false,
      ),
      (
        json!({"error": {"message": "m", "type": "server_error"}}),
        ErrorCode::ProviderError,
        true,
      ),
      (json!({"error": {}}), ErrorCode::ProviderError, true),
    ];
    for (body, code, retryable) in cases {
      let raw = body.to_string();
      let error = in_band_error("v", ErrorBody::parse(raw.as_bytes()), raw.as_bytes());
      assert_eq!((error.code, error.retryable), (code, retryable), "{body}");
      assert_eq!(
        error.status,
        if code == ErrorCode::Authentication {
          401
        } else {
          code.default_status()
        }
      );
    }
  }
}
