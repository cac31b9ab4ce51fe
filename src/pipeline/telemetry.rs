//! Trace context of a call and the report its OpenTelemetry spans are made from.
//!
//! A call carries a [`CallTrace`] only when it arrived with a W3C `traceparent` (from the JS
//! layer's call span, or a client's header through `serve` / the front door). Then every
//! upstream request sends that `traceparent`, and each attempt is noted (target, start, end,
//! error) for the JS layer, which makes one child span per attempt with those times. A call
//! without one pays a single task-local lookup per request sent and per attempt.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;

use super::record::Trace;
use crate::error::{GatewayError, Result};
use crate::types::{ChatRequest, ChatResponse};

tokio::task_local! {
  /// The trace of the call this task is running, while the pipeline runs it (`None`: untraced).
  static CURRENT: Option<Arc<CallTrace>>;
}

/// One call's trace context and what its spans need to know.
#[derive(Debug)]
pub struct CallTrace {
  /// The `traceparent` header value every upstream request of the call carries.
  traceparent: String,
  started: Instant,
  report: Mutex<Report>,
}

/// The call as its span describes it (JSON for the JS layer: camelCase, absent = unknown).
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
  #[serde(skip_serializing_if = "Option::is_none")]
  pub operation: Option<&'static str>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub request_id: Option<String>,
  /// The model as the caller asked for it (a route alias or "provider/model").
  #[serde(skip_serializing_if = "Option::is_none")]
  pub model: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub route: Option<String>,
  /// The configured provider that answered, and its kind ('openai', 'anthropic', …).
  #[serde(skip_serializing_if = "Option::is_none")]
  pub provider: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub provider_kind: Option<&'static str>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub response_model: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub response_id: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub finish_reason: Option<&'static str>,
  pub stream: bool,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub max_tokens: Option<u32>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub temperature: Option<f64>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub top_p: Option<f64>,
  pub input_tokens: u64,
  pub output_tokens: u64,
  pub cache_read_tokens: u64,
  pub cost_usd: f64,
  pub cached: bool,
  pub attempts: u32,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub ttft_ms: Option<f64>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub error_code: Option<&'static str>,
  /// Host and port of the last upstream request.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub server_address: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub server_port: Option<u16>,
  pub attempt_spans: Vec<AttemptSpan>,
  /// False until the call has ended.
  pub finished: bool,
}

/// One upstream attempt. Times are milliseconds since the trace was made (when the call
/// was handed to the gateway).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptSpan {
  pub provider: String,
  pub provider_kind: &'static str,
  pub model: String,
  pub start_ms: f64,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub end_ms: Option<f64>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub error_code: Option<&'static str>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub server_address: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub server_port: Option<u16>,
}

impl CallTrace {
  /// A trace continuing `traceparent` (W3C Trace Context, version 00); `None` for a value
  /// that is not one, which is then neither trusted nor forwarded.
  pub fn continuing(traceparent: &str) -> Option<Arc<CallTrace>> {
    let traceparent = traceparent.trim();
    valid_traceparent(traceparent).then(|| {
      Arc::new(CallTrace {
        traceparent: traceparent.to_string(),
        started: Instant::now(),
        report: Mutex::new(Report::default()),
      })
    })
  }

  /// The trace a request's `traceparent` header starts, if it has a valid one.
  pub fn from_headers(headers: &[(String, String)]) -> Option<Arc<CallTrace>> {
    headers
      .iter()
      .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
      .and_then(|(_, value)| CallTrace::continuing(value))
  }

  pub fn traceparent(&self) -> &str {
    &self.traceparent
  }

  fn report(&self) -> MutexGuard<'_, Report> {
    // Every change is a few field writes: a poisoned report is still readable.
    self
      .report
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  fn since_start(&self, at: Instant) -> f64 {
    at.saturating_duration_since(self.started).as_secs_f64() * 1000.0
  }

  /// The request's parameters, as the call starts.
  pub(crate) fn request(&self, req: &ChatRequest, stream: bool) {
    let mut report = self.report();
    report.stream = stream;
    report.max_tokens = req.max_tokens;
    report.temperature = req.temperature;
    report.top_p = req.top_p;
  }

  /// Copy of the report: complete once `finished`.
  pub fn snapshot(&self) -> Report {
    self.report().clone()
  }

  /// Fills in the call's end from what the pipeline learned.
  pub(crate) fn finish(&self, trace: &Trace, result: &Result<ChatResponse>) {
    let now = Instant::now();
    let mut guard = self.report();
    let report = &mut *guard;
    report.operation = Some(trace.operation.as_str());
    report.request_id = Some(trace.request_id.clone());
    report.model = Some(trace.model.clone());
    report.route.clone_from(&trace.route);
    report.provider = trace.provider().map(str::to_string);
    report.response_model = trace.vendor_model().map(str::to_string);
    report.attempts = trace.attempts.load(std::sync::atomic::Ordering::SeqCst);
    match result {
      Ok(response) => {
        report
          .provider
          .get_or_insert_with(|| response.provider.clone());
        report.response_model = Some(response.model.clone());
        // An embeddings answer has no id of the vendor's, nor a finish reason.
        if response.embeddings.is_none() {
          if !response.id.is_empty() {
            report.response_id = Some(response.id.clone());
          }
          report.finish_reason = Some(response.finish_reason.as_str());
        }
        report.input_tokens = response.usage.prompt_tokens;
        report.output_tokens = response.usage.completion_tokens;
        report.cache_read_tokens = response.usage.cached_prompt_tokens;
        report.cost_usd = response.cost_usd;
        report.cached = response.cached;
        report.ttft_ms = response.ttft_ms;
        report.attempts = response.attempts;
      }
      Err(error) => {
        report.error_code = Some(error.code.as_str());
        let billed = trace.billed_usage();
        report.input_tokens = billed.prompt_tokens;
        report.output_tokens = billed.completion_tokens;
        report.cache_read_tokens = billed.cached_prompt_tokens;
        report.ttft_ms = trace
          .progress
          .first_event_at()
          .map(|at| at.saturating_duration_since(trace.started).as_secs_f64() * 1000.0);
        if report.provider.is_none() {
          report.provider.clone_from(&error.provider);
        }
      }
    }
    // An attempt the call's end cut short (abort, deadline) ends with the call.
    let end = self.since_start(now);
    let call_error = report.error_code;
    for attempt in report.attempt_spans.iter_mut() {
      if attempt.end_ms.is_none() {
        attempt.end_ms = Some(end);
        attempt.error_code = attempt.error_code.or(call_error);
      }
    }
    if let Some(last) = report.attempt_spans.last() {
      report.provider_kind = Some(last.provider_kind);
      report.server_address.clone_from(&last.server_address);
      report.server_port = last.server_port;
    }
    report.finished = true;
  }
}

/// `work` (the pipeline of one call) with `trace` as its current trace. One future type for
/// both cases, so the call's (large) future is not laid out twice.
pub(crate) fn scoped<F: Future>(
  trace: Option<Arc<CallTrace>>,
  work: F,
) -> impl Future<Output = F::Output> {
  CURRENT.scope(trace, work)
}

/// The current call's trace, when it has one.
fn with_current<R>(then: impl FnOnce(&CallTrace) -> R) -> Option<R> {
  CURRENT
    .try_with(|trace| trace.as_deref().map(then))
    .ok()
    .flatten()
}

/// The `traceparent` header an upstream request to `url` carries, when the call is traced;
/// notes the server for the attempt under way.
pub(crate) fn upstream_traceparent(url: &reqwest::Url) -> Option<String> {
  with_current(|trace| {
    let mut report = trace.report();
    if let Some(attempt) = report.attempt_spans.last_mut() {
      attempt.server_address = url.host_str().map(str::to_string);
      attempt.server_port = url.port_or_known_default();
    }
    trace.traceparent.clone()
  })
}

/// An attempt at `provider`'s `model` starts (a no-op for an untraced call).
pub(crate) fn attempt_started(provider: &str, kind: super::Kind, model: &str) {
  with_current(|trace| {
    let start_ms = trace.since_start(Instant::now());
    trace.report().attempt_spans.push(AttemptSpan {
      provider: provider.to_string(),
      provider_kind: kind.as_str(),
      model: model.to_string(),
      start_ms,
      end_ms: None,
      error_code: None,
      server_address: None,
      server_port: None,
    });
  });
}

/// The attempt under way ended, failed with `error` or not.
pub(crate) fn attempt_ended(error: Option<&GatewayError>) {
  with_current(|trace| {
    let end_ms = trace.since_start(Instant::now());
    if let Some(attempt) = trace.report().attempt_spans.last_mut() {
      attempt.end_ms = Some(end_ms);
      attempt.error_code = error.map(|error| error.code.as_str());
    }
  });
}

/// `00-{32 hex trace id}-{16 hex parent id}-{2 hex flags}`, ids not all zero.
fn valid_traceparent(value: &str) -> bool {
  let bytes = value.as_bytes();
  // Lower-case only: the specification has a value with upper-case hex ignored.
  let hex = |range: std::ops::Range<usize>| {
    bytes[range]
      .iter()
      .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
  };
  let zero = |range: std::ops::Range<usize>| bytes[range].iter().all(|b| *b == b'0');
  bytes.len() == 55
    && value.starts_with("00-")
    && bytes[35] == b'-'
    && bytes[52] == b'-'
    && hex(3..35)
    && hex(36..52)
    && hex(53..55)
    && !zero(3..35)
    && !zero(36..52)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::ErrorCode;

  const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  #[test]
  fn only_a_well_formed_traceparent_is_continued() {
    let trace = CallTrace::continuing(PARENT).expect("valid");
    assert_eq!(trace.traceparent(), PARENT);
    for bad in [
      "",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
      "00-4bf92f3577b34da6a3ce929d0e0e4736x00f067aa0ba902b7-01",
    ] {
      assert!(CallTrace::continuing(bad).is_none(), "{bad}");
    }
    let headers = vec![("TraceParent".to_string(), format!(" {PARENT} "))];
    assert!(CallTrace::from_headers(&headers).is_some());
    assert!(CallTrace::from_headers(&[]).is_none());
  }

  #[tokio::test]
  async fn attempts_are_noted_only_inside_a_traced_call() {
    attempt_started("p", crate::pipeline::Kind::Mock, "m");
    let trace = CallTrace::continuing(PARENT).expect("valid");
    let url = reqwest::Url::parse("http://127.0.0.1:8123/v1/chat").expect("url");
    let sent = scoped(Some(trace.clone()), async {
      attempt_started("east", crate::pipeline::Kind::OpenAi, "gpt-4o");
      let sent = upstream_traceparent(&url);
      attempt_ended(Some(&GatewayError::new(ErrorCode::ProviderError, "boom")));
      attempt_started("west", crate::pipeline::Kind::Anthropic, "claude");
      sent
    })
    .await;
    let untraced = scoped(None, async { upstream_traceparent(&url) }).await;
    assert_eq!(untraced, None);
    assert_eq!(sent.as_deref(), Some(PARENT));
    assert_eq!(upstream_traceparent(&url), None);
    let report = trace.snapshot();
    assert_eq!(report.attempt_spans.len(), 2);
    let first = &report.attempt_spans[0];
    assert_eq!(first.error_code, Some("PROVIDER_ERROR"));
    assert_eq!(first.server_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(first.server_port, Some(8123));
    assert!(first.end_ms.is_some_and(|end| end >= first.start_ms));
    assert!(report.attempt_spans[1].end_ms.is_none());
  }
}
