//! The end of the line: what every call leaves behind, whatever its outcome — the
//! gateway's counters (`stats()`) and the record handed to the `onCall` hook.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::forward::Progress;
use super::response::millis;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::guardrails::GuardrailFinding;
use crate::types::{ChatResponse, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
  Ok,
  Error,
  Aborted,
}

impl Outcome {
  pub fn as_str(self) -> &'static str {
    match self {
      Outcome::Ok => "ok",
      Outcome::Error => "error",
      Outcome::Aborted => "aborted",
    }
  }
}

pub use crate::types::Operation;

/// One finished call, as `onCall` receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
  pub operation: Operation,
  pub request_id: String,
  /// The model as the caller asked for it.
  pub model: String,
  /// Absent when the model did not resolve to a provider.
  pub provider: Option<String>,
  pub vendor_model: Option<String>,
  pub route: Option<String>,
  pub user: Option<String>,
  pub metadata: Vec<(String, String)>,
  pub outcome: Outcome,
  pub error_code: Option<ErrorCode>,
  pub usage: Usage,
  pub cost_usd: f64,
  pub cached: bool,
  /// A semantic cache hit's cosine similarity.
  pub cache_similarity: Option<f64>,
  pub latency_ms: f64,
  pub ttft_ms: Option<f64>,
  pub attempts: u32,
  /// The client protocol the call arrived in through the front door ('chat', 'messages', …);
  /// `None` for calls made through the library API.
  pub ingress: Option<&'static str>,
  /// What a protocol translation left out (a tool the target cannot run, …).
  pub warnings: Vec<String>,
  /// What the guardrails found, by guardrail, entity and action (never the text).
  pub guardrails: Vec<GuardrailFinding>,
}

/// Receives every call's record. Called on the call's own task: an implementation must
/// hand the record off and return at once. Returns false when it had to drop it.
pub trait CallObserver: Send + Sync {
  fn on_call(&self, record: CallRecord) -> bool;
}

#[derive(Clone)]
pub struct CallHook(pub Arc<dyn CallObserver>);

/// Keeps every record a gateway hands its hook, for the tests that check them.
#[cfg(test)]
#[derive(Default)]
pub struct RecordedCalls(pub std::sync::Mutex<Vec<CallRecord>>);

#[cfg(test)]
impl CallObserver for RecordedCalls {
  fn on_call(&self, record: CallRecord) -> bool {
    self.0.lock().expect("records").push(record);
    true
  }
}

#[cfg(test)]
impl RecordedCalls {
  pub fn take(&self) -> Vec<CallRecord> {
    std::mem::take(&mut *self.0.lock().expect("records"))
  }
}

impl std::fmt::Debug for CallHook {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("CallHook")
  }
}

/// What the call has learned so far, filled in by the stages as it runs.
pub(crate) struct Trace {
  pub operation: Operation,
  pub started: Instant,
  pub request_id: String,
  pub model: String,
  pub user: Option<String>,
  pub metadata: Vec<(String, String)>,
  /// The route alias, when the model asked for is one.
  pub route: Option<String>,
  /// Where the upstream call went (its last attempt), once known.
  provider: OnceLock<String>,
  vendor_model: OnceLock<String>,
  pub attempts: AtomicU32,
  pub progress: Progress,
  /// What the settle stage billed (usage, USD): a failed call's record carries it.
  billed: OnceLock<(Usage, f64)>,
  pub ingress: Option<&'static str>,
  pub warnings: Vec<String>,
  pub guardrails: Vec<GuardrailFinding>,
  /// The call's trace context, when it has one: its report is filled in as the call ends.
  pub telemetry: Option<Arc<super::telemetry::CallTrace>>,
}

impl Trace {
  pub fn start(
    model: &str,
    user: Option<&String>,
    metadata: Vec<(String, String)>,
    request_id: &str,
  ) -> Trace {
    Trace {
      operation: Operation::Chat,
      started: Instant::now(),
      request_id: request_id.to_string(),
      model: model.to_string(),
      user: user.cloned(),
      metadata,
      route: None,
      provider: OnceLock::new(),
      vendor_model: OnceLock::new(),
      attempts: AtomicU32::new(0),
      progress: Progress::default(),
      billed: OnceLock::new(),
      ingress: None,
      warnings: Vec::new(),
      guardrails: Vec::new(),
      telemetry: None,
    }
  }

  /// What the settle stage billed so far (nothing before it ran).
  pub fn billed_usage(&self) -> Usage {
    self
      .billed
      .get()
      .map(|(usage, _)| *usage)
      .unwrap_or_default()
  }
}

impl Trace {
  pub fn resolved(&self, provider: &str, vendor_model: &str) {
    let _ = self.provider.set(provider.to_string());
    let _ = self.vendor_model.set(vendor_model.to_string());
  }

  pub fn provider(&self) -> Option<&str> {
    self.provider.get().map(String::as_str)
  }

  pub fn vendor_model(&self) -> Option<&str> {
    self.vendor_model.get().map(String::as_str)
  }

  pub fn billed(&self, usage: Usage, cost_usd: f64) {
    let _ = self.billed.set((usage, cost_usd));
  }
}

/// Counters behind `gateway.stats()`.
#[derive(Debug, Default)]
pub struct GatewayStats {
  ok: AtomicU64,
  errors: AtomicU64,
  aborted: AtomicU64,
  by_code: [AtomicU64; ErrorCode::ALL.len()],
  pub(crate) cache_hits: AtomicU64,
  pub(crate) cache_misses: AtomicU64,
  pub(crate) cache_coalesced: AtomicU64,
  pub(crate) limiter_refusals: AtomicU64,
  /// Calls priced 0 because their model is in no price table (bumped by the settle stage).
  pub(crate) unpriced_calls: AtomicU64,
  hook_errors: AtomicU64,
  hook_dropped: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsSnapshot {
  pub ok: u64,
  pub errors: u64,
  pub aborted: u64,
  /// Only codes seen at least once.
  pub by_error_code: Vec<(ErrorCode, u64)>,
  pub cache_hits: u64,
  pub cache_misses: u64,
  pub cache_coalesced: u64,
  pub limiter_refusals: u64,
  pub budget_refusals: u64,
  pub unpriced_calls: u64,
  pub hook_errors: u64,
  pub hook_dropped: u64,
  /// Calls whose model the metrics counted under `other` (too many unconfigured models).
  pub model_label_overflow: u64,
}

pub(crate) fn bump(counter: &AtomicU64) {
  counter.fetch_add(1, Ordering::Relaxed);
}

impl GatewayStats {
  /// The caller's hook threw (or its promise rejected): counted, never rethrown.
  pub fn hook_error(&self) {
    bump(&self.hook_errors);
  }

  pub fn snapshot(&self) -> StatsSnapshot {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let by_error_code: Vec<(ErrorCode, u64)> = ErrorCode::ALL
      .iter()
      .map(|code| (*code, load(&self.by_code[code.index()])))
      .filter(|(_, count)| *count > 0)
      .collect();
    StatsSnapshot {
      ok: load(&self.ok),
      errors: load(&self.errors),
      aborted: load(&self.aborted),
      budget_refusals: load(&self.by_code[ErrorCode::BudgetExceeded.index()]),
      by_error_code,
      cache_hits: load(&self.cache_hits),
      cache_misses: load(&self.cache_misses),
      cache_coalesced: load(&self.cache_coalesced),
      limiter_refusals: load(&self.limiter_refusals),
      unpriced_calls: load(&self.unpriced_calls),
      hook_errors: load(&self.hook_errors),
      hook_dropped: load(&self.hook_dropped),
      model_label_overflow: 0,
    }
  }
}

/// Counts the call and hands its record to the hook.
pub(crate) fn finish(
  stats: &GatewayStats,
  hook: Option<&CallHook>,
  trace: Trace,
  result: &Result<ChatResponse>,
) {
  let outcome = match result {
    Ok(_) => Outcome::Ok,
    Err(GatewayError {
      code: ErrorCode::Aborted,
      ..
    }) => Outcome::Aborted,
    Err(_) => Outcome::Error,
  };
  match outcome {
    Outcome::Ok => bump(&stats.ok),
    Outcome::Aborted => bump(&stats.aborted),
    Outcome::Error => bump(&stats.errors),
  }
  if let Err(error) = result {
    bump(&stats.by_code[error.code.index()]);
  }
  if let Some(telemetry) = &trace.telemetry {
    telemetry.finish(&trace, result);
  }
  let Some(CallHook(observer)) = hook else {
    return;
  };
  let Trace {
    operation,
    started,
    request_id,
    model,
    user,
    metadata,
    route,
    provider,
    vendor_model,
    attempts,
    progress,
    billed,
    ingress,
    warnings,
    guardrails,
    telemetry: _,
  } = trace;
  let (provider, vendor_model) = (provider.into_inner(), vendor_model.into_inner());
  let record = match result {
    // A cached answer names where it came from.
    Ok(response) => CallRecord {
      usage: response.usage,
      cost_usd: response.cost_usd,
      cached: response.cached,
      cache_similarity: response.cache_similarity,
      latency_ms: response.latency_ms,
      ttft_ms: response.ttft_ms,
      attempts: response.attempts,
      outcome,
      error_code: None,
      operation,
      request_id,
      model,
      provider: provider.or_else(|| Some(response.provider.clone())),
      vendor_model: vendor_model.or_else(|| Some(response.model.clone())),
      route,
      user,
      metadata,
      ingress,
      warnings,
      guardrails,
    },
    Err(error) => {
      // What a call cut short delivered is billed; one that never reached the vendor is not.
      let (usage, cost_usd) = billed.into_inner().unwrap_or_default();
      CallRecord {
        usage,
        cost_usd,
        cached: false,
        cache_similarity: None,
        latency_ms: millis(started.elapsed()),
        ttft_ms: progress.first_event_at().map(|at| millis(at - started)),
        attempts: attempts.load(Ordering::SeqCst),
        outcome,
        error_code: Some(error.code),
        operation,
        request_id,
        model,
        provider,
        vendor_model,
        route,
        user,
        metadata,
        ingress,
        warnings,
        guardrails,
      }
    }
  };
  if !observer.on_call(record) {
    bump(&stats.hook_dropped);
  }
}
