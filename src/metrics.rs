//! The gateway's metrics registry (Prometheus text exposition) and the latency anomaly
//! detector (EWMA mean and variance per provider/model, z-score of each new call).
//!
//! Everything is updated once per call, when it ends, from `Gateway::execute`; the stages
//! that own the other facts (cache, limiter, budget, circuit breaker) call the small
//! `record_*` / `set_*` methods here.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{ErrorCode, GatewayError};
use crate::guardrails::GuardrailFinding;
use crate::types::ChatResponse;

const LATENCY_BUCKETS: [f64; 14] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone, Default)]
struct Histogram {
  counts: [u64; LATENCY_BUCKETS.len()],
  count: u64,
  sum: f64,
}

impl Histogram {
  fn observe(&mut self, seconds: f64) {
    for (bound, count) in LATENCY_BUCKETS.iter().zip(self.counts.iter_mut()) {
      if seconds <= *bound {
        *count += 1;
      }
    }
    self.count += 1;
    self.sum += seconds;
  }
}

type Labels = (String, String);

#[derive(Default)]
struct Registry {
  requests: BTreeMap<(String, String, &'static str, &'static str), u64>,
  latency: BTreeMap<Labels, Histogram>,
  ttft: BTreeMap<Labels, Histogram>,
  tokens: BTreeMap<(String, String, &'static str), u64>,
  cost: BTreeMap<Labels, f64>,
  cache_hits: u64,
  cache_misses: u64,
  limiter_refusals: u64,
  budget_refusals: u64,
  /// (route, provider, model) → 0 healthy, 1 half open, 2 ejected.
  circuit: BTreeMap<(String, String, String), u8>,
  /// (provider, key id) → 0 active, 1 resting, 2 revoked (`apiKeys` pools).
  key_state: BTreeMap<(String, String), u8>,
  anomalies: BTreeMap<(String, String, &'static str), u64>,
  /// (guardrail, entity, action) → findings. Guardrail names come from the configuration
  /// and entities from a fixed list, so the series are bounded.
  guardrail_findings: BTreeMap<(String, String, &'static str), u64>,
  models: ModelLabels,
}

/// Model labels for models nobody configured (a client's choice passed through a
/// `defaultProvider`): the first [`MAX_UNCONFIGURED_MODELS`] keep their names, later ones
/// share the label `other`, so a client cannot grow the series without bound.
pub const MAX_UNCONFIGURED_MODELS: usize = 32;
const OTHER_MODEL: &str = "other";

#[derive(Default)]
struct ModelLabels {
  /// "provider/model" of every configured model and route target: always their own label.
  configured: HashSet<String>,
  /// (provider, model) of the unconfigured models given their own label so far.
  admitted: HashSet<(String, String)>,
  /// Calls counted under `other`.
  overflow: u64,
}

impl ModelLabels {
  fn label<'a>(&mut self, provider: &str, model: &'a str) -> &'a str {
    if provider.is_empty() || self.configured.contains(&format!("{provider}/{model}")) {
      return model;
    }
    let key = (provider.to_string(), model.to_string());
    if self.admitted.contains(&key) {
      return model;
    }
    if self.admitted.len() < MAX_UNCONFIGURED_MODELS {
      self.admitted.insert(key);
      return model;
    }
    self.overflow += 1;
    OTHER_MODEL
  }
}

/// One call whose latency stood out from its provider/model's recent history.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
  pub provider: String,
  pub model: String,
  pub latency_ms: f64,
  /// The EWMA latency before this call.
  pub expected_ms: f64,
  pub z_score: f64,
  /// "warning" (z ≥ 3) or "critical" (z ≥ 6).
  pub severity: &'static str,
  pub at_ms: f64,
}

#[derive(Default, Clone, Copy)]
struct LatencyStats {
  samples: u64,
  mean: f64,
  variance: f64,
}

/// Weight of a new sample in the moving mean and variance.
const EWMA_ALPHA: f64 = 0.1;
/// Calls seen before a provider/model is judged at all.
const WARMUP_SAMPLES: u64 = 10;
const WARNING_Z: f64 = 3.0;
const CRITICAL_Z: f64 = 6.0;
/// Spread floor, so a perfectly steady series does not flag a 1 ms wobble: 1 ms or 10% of the mean.
const MIN_STD_MS: f64 = 1.0;
const MIN_STD_FRACTION: f64 = 0.1;
const MAX_PENDING_ANOMALIES: usize = 256;

#[derive(Default)]
struct Detector {
  stats: BTreeMap<Labels, LatencyStats>,
  pending: VecDeque<Anomaly>,
}

impl Detector {
  fn observe(&mut self, provider: &str, model: &str, latency_ms: f64) -> Option<Anomaly> {
    let stats = self
      .stats
      .entry((provider.to_string(), model.to_string()))
      .or_default();
    let mut anomaly = None;
    if stats.samples >= WARMUP_SAMPLES {
      let std = stats
        .variance
        .sqrt()
        .max(MIN_STD_MS)
        .max(stats.mean * MIN_STD_FRACTION);
      let z = (latency_ms - stats.mean) / std;
      if z >= WARNING_Z {
        anomaly = Some(Anomaly {
          provider: provider.to_string(),
          model: model.to_string(),
          latency_ms,
          expected_ms: stats.mean,
          z_score: z,
          severity: if z >= CRITICAL_Z {
            "critical"
          } else {
            "warning"
          },
          at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0),
        });
      }
    }
    if stats.samples == 0 {
      stats.mean = latency_ms;
    } else {
      let delta = latency_ms - stats.mean;
      stats.mean += EWMA_ALPHA * delta;
      stats.variance = (1.0 - EWMA_ALPHA) * (stats.variance + EWMA_ALPHA * delta * delta);
    }
    stats.samples += 1;
    if let Some(found) = &anomaly {
      if self.pending.len() == MAX_PENDING_ANOMALIES {
        self.pending.pop_front();
      }
      self.pending.push_back(found.clone());
    }
    anomaly
  }
}

#[derive(Default)]
pub struct Metrics {
  registry: Mutex<Registry>,
  detector: Mutex<Detector>,
}

/// Model label for calls that never resolved to a provider (unknown names would
/// otherwise add one series each).
const UNRESOLVED: &str = "unresolved";

impl Metrics {
  /// The configured models ("provider/model"), which keep their own label whatever the
  /// number of other models seen.
  pub fn set_configured_models(&self, models: impl IntoIterator<Item = String>) {
    if let Ok(mut registry) = self.registry.lock() {
      registry.models.configured = models.into_iter().collect();
    }
  }

  /// Calls whose model was counted under `other` (see [`MAX_UNCONFIGURED_MODELS`]).
  pub fn model_label_overflow(&self) -> u64 {
    self
      .registry
      .lock()
      .map(|registry| registry.models.overflow)
      .unwrap_or(0)
  }

  /// Records one finished call. `provider`/`model` are the resolved names when known.
  pub fn record_call(
    &self,
    provider: Option<&str>,
    model: &str,
    result: &Result<ChatResponse, GatewayError>,
  ) {
    let (provider, model) = match provider {
      Some(p) => (p, model),
      None => ("", UNRESOLVED),
    };
    let mut anomaly_latency = None;
    let mut model = model;
    if let Ok(mut registry) = self.registry.lock() {
      model = registry.models.label(provider, model);
      let labels = (provider.to_string(), model.to_string());
      let (outcome, code) = match result {
        Ok(_) => ("ok", ""),
        Err(e) if e.code == ErrorCode::Aborted => ("aborted", e.code.as_str()),
        Err(e) => ("error", e.code.as_str()),
      };
      *registry
        .requests
        .entry((labels.0.clone(), labels.1.clone(), outcome, code))
        .or_default() += 1;
      match result {
        Ok(response) => {
          let seconds = response.latency_ms / 1000.0;
          registry
            .latency
            .entry(labels.clone())
            .or_default()
            .observe(seconds);
          if let Some(ttft) = response.ttft_ms {
            registry
              .ttft
              .entry(labels.clone())
              .or_default()
              .observe(ttft / 1000.0);
          }
          let usage = &response.usage;
          for (kind, count) in [
            ("prompt", usage.prompt_tokens),
            ("completion", usage.completion_tokens),
          ] {
            *registry
              .tokens
              .entry((labels.0.clone(), labels.1.clone(), kind))
              .or_default() += count;
          }
          *registry.cost.entry(labels.clone()).or_default() += response.cost_usd;
          if response.cached {
            registry.cache_hits += 1;
          } else {
            anomaly_latency = Some(response.latency_ms);
          }
        }
        Err(e) if e.code == ErrorCode::BudgetExceeded => registry.budget_refusals += 1,
        // Our own limiter refuses before any provider is involved; a vendor's 429 names it.
        Err(e) if e.code == ErrorCode::RateLimited && e.provider.is_none() => {
          registry.limiter_refusals += 1
        }
        Err(_) => {}
      }
    }
    if let Some(latency_ms) = anomaly_latency {
      let found = self
        .detector
        .lock()
        .ok()
        .and_then(|mut d| d.observe(provider, model, latency_ms));
      if let (Some(found), Ok(mut registry)) = (found, self.registry.lock()) {
        *registry
          .anomalies
          .entry((found.provider, found.model, found.severity))
          .or_default() += 1;
      }
    }
  }

  /// For the cache stage: one lookup that missed (hits are counted from `cached` responses).
  pub fn record_cache_miss(&self) {
    if let Ok(mut registry) = self.registry.lock() {
      registry.cache_misses += 1;
    }
  }

  /// The cache / limiter / budget stages' own counters (`Gateway::stats`), copied in at scrape time.
  /// A call's guardrail findings.
  pub fn record_guardrail_findings(&self, findings: &[GuardrailFinding]) {
    if findings.is_empty() {
      return;
    }
    let Ok(mut registry) = self.registry.lock() else {
      return;
    };
    for finding in findings {
      *registry
        .guardrail_findings
        .entry((
          finding.guardrail.clone(),
          finding.entity.clone(),
          finding.action,
        ))
        .or_default() += finding.count;
    }
  }

  pub fn set_stage_counters(&self, cache_hits: u64, cache_misses: u64, limiter: u64, budget: u64) {
    if let Ok(mut registry) = self.registry.lock() {
      registry.cache_hits = cache_hits;
      registry.cache_misses = cache_misses;
      registry.limiter_refusals = limiter;
      registry.budget_refusals = budget;
    }
  }

  /// For the routing stage: 0 healthy, 1 half open, 2 ejected.
  pub fn set_circuit_state(&self, route: &str, provider: &str, model: &str, state: u8) {
    if let Ok(mut registry) = self.registry.lock() {
      registry
        .circuit
        .insert((route.into(), provider.into(), model.into()), state);
    }
  }

  /// For key pools: 0 active, 1 resting, 2 revoked; `key` is the key's short hash.
  pub fn set_key_state(&self, provider: &str, key: &str, state: u8) {
    if let Ok(mut registry) = self.registry.lock() {
      registry
        .key_state
        .insert((provider.into(), key.into()), state);
    }
  }

  /// Anomalies found since the last call, oldest first.
  pub fn take_anomalies(&self) -> Vec<Anomaly> {
    self
      .detector
      .lock()
      .map(|mut d| d.pending.drain(..).collect())
      .unwrap_or_default()
  }

  pub fn render(&self) -> String {
    let Ok(registry) = self.registry.lock() else {
      return String::new();
    };
    let mut out = String::with_capacity(4096);
    header(
      &mut out,
      "ferrogate_requests_total",
      "counter",
      "Calls by provider, model and outcome (ok, error, aborted) with the error code.",
    );
    for ((provider, model, outcome, code), count) in &registry.requests {
      let _ = writeln!(
        out,
        "ferrogate_requests_total{{provider=\"{}\",model=\"{}\",outcome=\"{outcome}\",code=\"{code}\"}} {count}",
        escape(provider),
        escape(model)
      );
    }
    histogram(
      &mut out,
      "ferrogate_request_duration_seconds",
      "Latency of successful calls, retries included.",
      &registry.latency,
    );
    histogram(
      &mut out,
      "ferrogate_time_to_first_token_seconds",
      "Time from the call's start to its first streamed event.",
      &registry.ttft,
    );
    header(
      &mut out,
      "ferrogate_tokens_total",
      "counter",
      "Tokens billed, by type (prompt, completion).",
    );
    for ((provider, model, kind), count) in &registry.tokens {
      let _ = writeln!(
        out,
        "ferrogate_tokens_total{{provider=\"{}\",model=\"{}\",type=\"{kind}\"}} {count}",
        escape(provider),
        escape(model)
      );
    }
    header(
      &mut out,
      "ferrogate_cost_usd_total",
      "counter",
      "Cost of successful calls in US dollars.",
    );
    for ((provider, model), cost) in &registry.cost {
      let _ = writeln!(
        out,
        "ferrogate_cost_usd_total{{provider=\"{}\",model=\"{}\"}} {}",
        escape(provider),
        escape(model),
        number(*cost)
      );
    }
    let overflow_help = format!(
      "Calls of unconfigured models counted under model=\"other\" (past the first {MAX_UNCONFIGURED_MODELS} such models)."
    );
    for (name, help, value) in [
      (
        "ferrogate_model_label_overflow_total",
        overflow_help.as_str(),
        registry.models.overflow,
      ),
      (
        "ferrogate_cache_hits_total",
        "Calls answered from the response cache.",
        registry.cache_hits,
      ),
      (
        "ferrogate_cache_misses_total",
        "Cache lookups that found nothing.",
        registry.cache_misses,
      ),
      (
        "ferrogate_rate_limit_refusals_total",
        "Calls refused by the gateway's rate limiter.",
        registry.limiter_refusals,
      ),
      (
        "ferrogate_budget_refusals_total",
        "Calls refused because a hard budget would be passed.",
        registry.budget_refusals,
      ),
    ] {
      header(&mut out, name, "counter", help);
      let _ = writeln!(out, "{name} {value}");
    }
    header(
      &mut out,
      "ferrogate_circuit_state",
      "gauge",
      "Circuit breaker state per route target: 0 healthy, 1 half open, 2 ejected.",
    );
    for ((route, provider, model), state) in &registry.circuit {
      let _ = writeln!(
        out,
        "ferrogate_circuit_state{{route=\"{}\",provider=\"{}\",model=\"{}\"}} {state}",
        escape(route),
        escape(provider),
        escape(model)
      );
    }
    if !registry.key_state.is_empty() {
      header(
        &mut out,
        "ferrogate_provider_key_state",
        "gauge",
        "Key pool keys by a short hash of the key: 0 active, 1 resting after a 429, 2 refused (401/403) until restart.",
      );
      for ((provider, key), state) in &registry.key_state {
        let _ = writeln!(
          out,
          "ferrogate_provider_key_state{{provider=\"{}\",key=\"{}\"}} {state}",
          escape(provider),
          escape(key)
        );
      }
    }
    header(
      &mut out,
      "ferrogate_latency_anomalies_total",
      "counter",
      "Calls whose latency was an outlier (EWMA z-score) for their provider/model.",
    );
    for ((provider, model, severity), count) in &registry.anomalies {
      let _ = writeln!(
        out,
        "ferrogate_latency_anomalies_total{{provider=\"{}\",model=\"{}\",severity=\"{severity}\"}} {count}",
        escape(provider),
        escape(model)
      );
    }
    header(
      &mut out,
      "ferrogate_guardrail_findings_total",
      "counter",
      "Guardrail findings by guardrail, entity and action (redact, block, flag).",
    );
    for ((guardrail, entity, action), count) in &registry.guardrail_findings {
      let _ = writeln!(
        out,
        "ferrogate_guardrail_findings_total{{guardrail=\"{}\",entity=\"{}\",action=\"{action}\"}} {count}",
        escape(guardrail),
        escape(entity)
      );
    }
    out
  }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
  let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, series: &BTreeMap<Labels, Histogram>) {
  header(out, name, "histogram", help);
  for ((provider, model), h) in series {
    let labels = format!(
      "provider=\"{}\",model=\"{}\"",
      escape(provider),
      escape(model)
    );
    for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts.iter()) {
      let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", number(h.sum));
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
  }
}

fn number(value: f64) -> String {
  if value.is_finite() {
    format!("{value}")
  } else if value.is_nan() {
    "NaN".into()
  } else if value > 0.0 {
    "+Inf".into()
  } else {
    "-Inf".into()
  }
}

/// Label values escape backslash, double quote and newline (the exposition format's rule).
fn escape(value: &str) -> String {
  let mut out = String::with_capacity(value.len());
  for c in value.chars() {
    match c {
      '\\' => out.push_str("\\\\"),
      '"' => out.push_str("\\\""),
      '\n' => out.push_str("\\n"),
      c => out.push(c),
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::types::{FinishReason, Usage};

  #[test]
  fn unconfigured_models_past_the_limit_share_one_label_and_are_counted() {
    let metrics = Metrics::default();
    metrics.set_configured_models(["openai/gpt-4o".to_string()]);
    for i in 0..MAX_UNCONFIGURED_MODELS + 10 {
      metrics.record_call(Some("openai"), &format!("invented-{i}"), &ok(5.0));
    }
    metrics.record_call(Some("openai"), "gpt-4o", &ok(5.0));
    metrics.record_call(Some("openai"), "invented-0", &ok(5.0));
    let text = metrics.render();
    assert!(text.contains("model=\"gpt-4o\""), "{text}");
    assert!(
      text.contains("model=\"invented-0\",outcome=\"ok\",code=\"\"} 2"),
      "{text}"
    );
    assert!(
      text.contains("model=\"other\",outcome=\"ok\",code=\"\"} 10"),
      "{text}"
    );
    assert!(
      !text.contains(&format!("invented-{MAX_UNCONFIGURED_MODELS}\"")),
      "{text}"
    );
    assert!(
      text.contains("ferrogate_model_label_overflow_total 10"),
      "{text}"
    );
    assert_eq!(metrics.model_label_overflow(), 10);
  }

  fn ok(latency_ms: f64) -> Result<ChatResponse, GatewayError> {
    Ok(ChatResponse {
      id: "id".into(),
      provider: "p".into(),
      model: "m".into(),
      content: String::new(),
      refusal: None,
      tool_calls: Vec::new(),
      finish_reason: FinishReason::Stop,
      usage: Usage {
        prompt_tokens: 10,
        completion_tokens: 5,
        total_tokens: 15,
        ..Usage::default()
      },
      cost_usd: 0.001,
      cached: false,
      latency_ms,
      ttft_ms: Some(latency_ms / 2.0),
      attempts: 1,
      request_id: "r".into(),
      embeddings: None,
      cache_similarity: None,
    })
  }

  #[test]
  fn exposition_has_every_series_and_escapes_labels() {
    let metrics = Metrics::default();
    metrics.record_call(Some("p"), "m\"1", &ok(12.0));
    metrics.record_call(
      Some("p"),
      "m\"1",
      &Err(GatewayError::new(ErrorCode::ProviderError, "x")),
    );
    metrics.record_call(
      None,
      "??",
      &Err(GatewayError::new(ErrorCode::NotFound, "x")),
    );
    let text = metrics.render();
    assert!(text.contains(
      "ferrogate_requests_total{provider=\"p\",model=\"m\\\"1\",outcome=\"ok\",code=\"\"} 1"
    ));
    assert!(text.contains("outcome=\"error\",code=\"PROVIDER_ERROR\"} 1"));
    assert!(text.contains("model=\"unresolved\""));
    assert!(text.contains(
      "ferrogate_request_duration_seconds_bucket{provider=\"p\",model=\"m\\\"1\",le=\"0.025\"} 1"
    ));
    assert!(text.contains("type=\"completion\"} 5"));
    assert!(text.contains("ferrogate_cache_misses_total 0"));
  }

  #[test]
  fn a_slow_call_after_a_steady_series_is_an_anomaly() {
    let metrics = Metrics::default();
    for i in 0..20 {
      metrics.record_call(Some("p"), "m", &ok(10.0 + f64::from(i % 3)));
    }
    assert!(metrics.take_anomalies().is_empty());
    metrics.record_call(Some("p"), "m", &ok(500.0));
    let found = metrics.take_anomalies();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].severity, "critical");
    assert!(found[0].expected_ms < 20.0);
    assert!(metrics.render().contains(
      "ferrogate_latency_anomalies_total{provider=\"p\",model=\"m\",severity=\"critical\"} 1"
    ));
  }
}
