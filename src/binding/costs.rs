//! napi shim over `costs::CostTracker`: converts, validates JS numbers, hands results back.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::Unknown;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

use super::coded;

use crate::backend::ledger::CallOutcome;
use crate::backend::postgres::PostgresOptions;
use crate::backend::redis_budget::RedisBudgetOptions;
use crate::costs::builtin_prices::TABLE_DATE;
use crate::costs::clock::iso_date;
use crate::costs::{
  Alert, Budget, CallEntry, CostTracker, ModelPrice, Nanos, Period, PriceSource, Pricing,
  SharedOptions, Summary, TrackerOptions, DEFAULT_HIGH_COST_OUTPUT_PER_MILLION,
};
use crate::error::GatewayError;
use crate::types::Usage;

#[napi(object, object_to_js = false)]
pub struct CostTrackerOptions {
  /// A path to, or an object in, LiteLLM's `model_prices_and_context_window.json` format,
  /// merged over the built-in table.
  #[napi(ts_type = "string | Record<string, LiteLlmModelPrice>")]
  pub pricing: Option<serde_json::Value>,
  /// SQLite ledger file; in memory when absent.
  pub ledger_path: Option<String>,
  /// A model whose output costs at least this (USD per million tokens) raises a
  /// `high_cost_model` alert (default 20).
  pub high_cost_output_per_million: Option<f64>,
  /// The ledger in PostgreSQL (shared by every process) instead of SQLite.
  pub postgres_url: Option<String>,
  /// The PostgreSQL schema of the ledger table (default 'public'; created if missing).
  pub postgres_schema: Option<String>,
  /// Rows kept while PostgreSQL is away (default 100000); beyond, dropped and counted.
  pub ledger_buffer_rows: Option<f64>,
  /// Hard budgets reserved and settled in Redis, so they hold across processes.
  pub redis_url: Option<String>,
  /// Prefix of the Redis keys (default 'ferrogate:').
  pub prefix: Option<String>,
}

/// One entry of a LiteLLM price file (USD per token).
#[napi(object, object_to_js = false)]
pub struct LiteLlmModelPrice {
  pub input_cost_per_token: Option<f64>,
  pub output_cost_per_token: Option<f64>,
  pub cache_read_input_token_cost: Option<f64>,
  pub cache_creation_input_token_cost: Option<f64>,
  pub max_output_tokens: Option<f64>,
}

#[napi(object)]
pub struct ModelPriceInfo {
  pub input_per_million: f64,
  pub output_per_million: f64,
  pub cached_input_per_million: Option<f64>,
  pub cache_write_per_million: Option<f64>,
  pub max_output_tokens: Option<u32>,
  /// 'pricing' (the caller's overrides) or 'builtin'.
  #[napi(ts_type = "'pricing' | 'builtin'")]
  pub source: String,
}

/// What `CostTracker.record()` takes.
#[napi(object, object_to_js = false)]
pub struct UsageRecord {
  /// Default 'anonymous'.
  pub user: Option<String>,
  /// "provider/model" or a bare model name.
  pub model: String,
  pub prompt_tokens: f64,
  pub completion_tokens: f64,
  /// Of promptTokens, read from the vendor's prompt cache.
  pub cached_prompt_tokens: Option<f64>,
  /// Of promptTokens, written to the vendor's prompt cache.
  pub cache_write_prompt_tokens: Option<f64>,
  /// Of completionTokens, spent on reasoning (priced as output).
  pub reasoning_tokens: Option<f64>,
  pub latency_ms: Option<f64>,
  /// false records the call as failed (default true).
  pub success: Option<bool>,
  pub provider: Option<String>,
  /// When the call happened (ms since the epoch; default now), for imports.
  pub timestamp: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct BudgetOptions {
  pub usd: f64,
  #[napi(ts_type = "'day' | 'month'")]
  pub period: String,
  /// Refuse calls that could pass the budget (BUDGET_EXCEEDED) instead of only alerting.
  pub hard: Option<bool>,
}

#[napi(object)]
pub struct BudgetInfo {
  pub usd: f64,
  #[napi(ts_type = "'day' | 'month'")]
  pub period: String,
  pub hard: bool,
  pub spent_usd: f64,
  /// Held by calls in flight.
  pub reserved_usd: f64,
  pub remaining_usd: f64,
  /// First day of the current period, "YYYY-MM-DD" (UTC).
  pub period_start: String,
}

#[napi(object, object_to_js = false)]
pub struct SummaryOptions {
  /// UTC days, today included (default 30).
  pub days: Option<f64>,
}

#[napi(object)]
pub struct CostTrendPoint {
  /// "YYYY-MM-DD" (UTC).
  pub date: String,
  pub cost: f64,
  pub requests: f64,
}

#[napi(object)]
pub struct CostSummary {
  pub total_cost: f64,
  pub total_requests: f64,
  pub average_cost_per_request: f64,
  pub cost_by_model: HashMap<String, f64>,
  pub requests_by_model: HashMap<String, f64>,
  /// One point per day of the window, oldest first.
  pub cost_trend: Vec<CostTrendPoint>,
  /// Calls whose model had no price (recorded at cost 0).
  pub unpriced_requests: f64,
}

#[napi(object)]
pub struct CostAlert {
  #[napi(ts_type = "'budget_exceeded' | 'unusual_spending' | 'high_cost_model'")]
  pub r#type: String,
  #[napi(ts_type = "'info' | 'warning' | 'critical'")]
  pub severity: String,
  pub user: String,
  pub message: String,
  pub recommendations: Vec<String>,
  /// ms since the epoch.
  pub timestamp: f64,
  pub model: Option<String>,
  /// Budget: spent this period; unusual spending: the last 7 days.
  pub amount_usd: Option<f64>,
  /// Budget: the budget; unusual spending: the weekly average of the 4 weeks before.
  pub threshold_usd: Option<f64>,
}

#[napi(object)]
pub struct CostTrackerStats {
  pub recorded: f64,
  pub unpriced: f64,
  pub budget_refusals: f64,
  pub alerts: f64,
  pub ledger_written: f64,
  /// Rows the database refused.
  pub ledger_failed: f64,
  /// Rows recorded after close(), beyond `ledgerBufferRows` while PostgreSQL was away, or
  /// left when close() gave up waiting.
  pub ledger_dropped: f64,
  /// Rows waiting to be written.
  pub ledger_buffered: f64,
  /// Budget settlements waiting for Redis.
  pub budget_settlements_pending: f64,
  /// Budget settlements lost beyond the queue bound (100000).
  pub budget_settlements_dropped: f64,
  /// Hard-budget calls refused because Redis was unreachable (fail closed).
  pub budget_store_refusals: f64,
}

type AlertCallback =
  ThreadsafeFunction<CostAlert, Unknown<'static>, CostAlert, Status, false, true>;

/// The JS wrapper turns "CODE|message" into a FerrogateError with that code.
fn summary_days(options: Option<SummaryOptions>) -> napi::Result<u32> {
  match options.and_then(|o| o.days) {
    None => Ok(30),
    Some(days) => {
      let days = count(days, "days")?;
      u32::try_from(days)
        .ok()
        .filter(|d| (1..=36_600).contains(d))
        .ok_or_else(|| invalid(format!("days must be between 1 and 36600, not {days}")))
    }
  }
}

fn summary_info(summary: Summary) -> CostSummary {
  let total_cost = summary.total_cost.usd();
  let total_requests = summary.total_requests as f64;
  CostSummary {
    total_cost,
    total_requests,
    average_cost_per_request: if summary.total_requests == 0 {
      0.0
    } else {
      total_cost / total_requests
    },
    cost_by_model: summary
      .by_model
      .iter()
      .map(|(model, cost, _)| (model.clone(), cost.usd()))
      .collect(),
    requests_by_model: summary
      .by_model
      .iter()
      .map(|(model, _, requests)| (model.clone(), *requests as f64))
      .collect(),
    cost_trend: summary
      .trend
      .into_iter()
      .map(|point| CostTrendPoint {
        date: point.date,
        cost: point.cost.usd(),
        requests: point.requests as f64,
      })
      .collect(),
    unpriced_requests: summary.unpriced_requests as f64,
  }
}

/// The shared backends asked for, checked.
fn shared_options(options: &CostTrackerOptions) -> napi::Result<SharedOptions> {
  let postgres = match &options.postgres_url {
    None => None,
    Some(url) => {
      let mut postgres = PostgresOptions::new(url.clone());
      if let Some(schema) = &options.postgres_schema {
        postgres.schema = schema.clone();
      }
      if let Some(rows) = options.ledger_buffer_rows {
        postgres.buffer_rows = usize::try_from(count(rows, "ledgerBufferRows")?)
          .ok()
          .filter(|rows| *rows >= 1)
          .ok_or_else(|| invalid("ledgerBufferRows must be at least 1".into()))?;
      }
      Some(postgres)
    }
  };
  if postgres.is_none()
    && (options.postgres_schema.is_some() || options.ledger_buffer_rows.is_some())
  {
    return Err(coded(GatewayError::config(
      "postgresSchema and ledgerBufferRows need postgresUrl",
    )));
  }
  if postgres.is_some() && options.ledger_path.is_some() {
    return Err(coded(GatewayError::config(
      "ledgerPath and postgresUrl are two ledgers: give one",
    )));
  }
  let redis = match &options.redis_url {
    None => None,
    Some(url) => {
      let mut redis = RedisBudgetOptions::new(url.clone());
      if let Some(prefix) = &options.prefix {
        redis.prefix = prefix.clone();
      }
      Some(redis)
    }
  };
  if redis.is_none() && options.prefix.is_some() {
    return Err(coded(GatewayError::config("prefix needs redisUrl")));
  }
  Ok(SharedOptions { postgres, redis })
}

fn invalid(message: String) -> napi::Error {
  napi::Error::new(Status::InvalidArg, message)
}

/// A token count from JS: a non-negative integer.
fn count(value: f64, field: &str) -> napi::Result<u64> {
  if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0 {
    Ok(value as u64)
  } else {
    Err(invalid(format!(
      "{field} must be a non-negative integer, not {value}"
    )))
  }
}

fn optional_count(value: Option<f64>, field: &str) -> napi::Result<u64> {
  value.map_or(Ok(0), |v| count(v, field))
}

fn price_info(price: ModelPrice) -> ModelPriceInfo {
  ModelPriceInfo {
    input_per_million: price.input.usd_per_million(),
    output_per_million: price.output.usd_per_million(),
    cached_input_per_million: price.cached_input.map(|p| p.usd_per_million()),
    cache_write_per_million: price.cache_write.map(|p| p.usd_per_million()),
    max_output_tokens: price.max_output_tokens,
    source: match price.source {
      PriceSource::Pricing => "pricing".into(),
      PriceSource::Builtin => "builtin".into(),
    },
  }
}

fn alert_info(alert: &Alert) -> CostAlert {
  CostAlert {
    r#type: alert.kind.as_str().into(),
    severity: alert.severity.as_str().into(),
    user: alert.user.clone(),
    message: alert.message.clone(),
    recommendations: alert.recommendations.clone(),
    timestamp: alert.at_ms as f64,
    model: alert.model.clone(),
    amount_usd: alert.amount.map(Nanos::usd),
    threshold_usd: alert.threshold.map(Nanos::usd),
  }
}

/// The tracker's options from JS, checked; and its shared backends, if any.
fn prepare_tracker(
  options: Option<CostTrackerOptions>,
) -> napi::Result<(TrackerOptions, SharedOptions)> {
  let options = options.unwrap_or(CostTrackerOptions {
    pricing: None,
    ledger_path: None,
    high_cost_output_per_million: None,
    postgres_url: None,
    postgres_schema: None,
    ledger_buffer_rows: None,
    redis_url: None,
    prefix: None,
  });
  let shared = shared_options(&options)?;
  let pricing = match &options.pricing {
    None | Some(serde_json::Value::Null) => Pricing::default(),
    Some(serde_json::Value::String(path)) => Pricing::from_file(path).map_err(coded)?,
    Some(document) => Pricing::from_litellm(document).map_err(coded)?,
  };
  if options.ledger_path.as_deref() == Some("") {
    return Err(coded(GatewayError::config(
      "ledgerPath must be a file path (omit it for an in-memory ledger)",
    )));
  }
  let tracker_options = TrackerOptions {
    pricing,
    ledger_path: options.ledger_path,
    high_cost_output_per_million: options
      .high_cost_output_per_million
      .unwrap_or(DEFAULT_HIGH_COST_OUTPUT_PER_MILLION),
    ..TrackerOptions::default()
  };
  Ok((tracker_options, shared))
}

/// `CostTracker.open(options)`: the tracker with its PostgreSQL and Redis connections made
/// (schema created, budgets loaded) on the addon's threads, so the event loop never waits.
#[napi(catch_unwind)]
pub async fn open_cost_tracker(
  options: Option<CostTrackerOptions>,
) -> napi::Result<NativeCostTracker> {
  let (tracker_options, shared) = prepare_tracker(options)?;
  let tracker = if shared.postgres.is_none() && shared.redis.is_none() {
    CostTracker::new(tracker_options)
  } else {
    CostTracker::open(tracker_options, shared).await
  }
  .map_err(coded)?;
  Ok(NativeCostTracker {
    inner: Arc::new(tracker),
  })
}

/// The native cost tracker. Use `CostTracker` from the package, which wraps this with
/// typed errors and safe alert callbacks.
#[napi]
pub struct NativeCostTracker {
  pub(crate) inner: Arc<CostTracker>,
}

#[napi]
impl NativeCostTracker {
  #[napi(constructor, catch_unwind)]
  pub fn new(options: Option<CostTrackerOptions>) -> napi::Result<Self> {
    let (tracker_options, shared) = prepare_tracker(options)?;
    let tracker = if shared.postgres.is_none() && shared.redis.is_none() {
      CostTracker::new(tracker_options)
    } else {
      // Connecting blocks the constructor (at most the 3 s connect timeout per server): an
      // unreachable server is reported here, where the tracker is made. `openCostTracker`
      // connects without blocking the event loop.
      napi::bindgen_prelude::block_on(CostTracker::open(tracker_options, shared))
    }
    .map_err(coded)?;
    Ok(NativeCostTracker {
      inner: Arc::new(tracker),
    })
  }

  /// The date of the built-in price table.
  #[napi(getter)]
  pub fn pricing_date(&self) -> String {
    TABLE_DATE.to_string()
  }

  #[napi]
  pub fn price_of(&self, model: String) -> Option<ModelPriceInfo> {
    self.inner.price_of(&model).map(price_info)
  }

  /// Records a call and returns its cost in USD. The fields of `UsageRecord` as arguments:
  /// reading them off an object costs a property lookup each, several times the work of
  /// recording.
  #[napi(catch_unwind)]
  #[allow(clippy::too_many_arguments)]
  pub fn record_call(
    &self,
    user: Option<String>,
    model: String,
    prompt_tokens: f64,
    completion_tokens: f64,
    cached_prompt_tokens: Option<f64>,
    cache_write_prompt_tokens: Option<f64>,
    reasoning_tokens: Option<f64>,
    latency_ms: Option<f64>,
    success: Option<bool>,
    provider: Option<String>,
    timestamp: Option<f64>,
  ) -> napi::Result<f64> {
    if self.inner.is_closed() {
      return Err(coded(GatewayError::config("the cost tracker is closed")));
    }
    let prompt = count(prompt_tokens, "promptTokens")?;
    let completion = count(completion_tokens, "completionTokens")?;
    let mut usage = Usage::new(prompt, completion);
    usage.cached_prompt_tokens = optional_count(cached_prompt_tokens, "cachedPromptTokens")?;
    usage.cache_write_prompt_tokens =
      optional_count(cache_write_prompt_tokens, "cacheWritePromptTokens")?;
    usage.reasoning_tokens = optional_count(reasoning_tokens, "reasoningTokens")?;
    if usage.cached_prompt_tokens + usage.cache_write_prompt_tokens > prompt {
      return Err(invalid(
        "cachedPromptTokens + cacheWritePromptTokens are part of promptTokens and cannot exceed it"
          .into(),
      ));
    }
    if usage.reasoning_tokens > completion {
      return Err(invalid(
        "reasoningTokens are part of completionTokens and cannot exceed it".into(),
      ));
    }
    if model.is_empty() {
      return Err(invalid("model must be a non-empty string".into()));
    }
    if let Some(ms) = latency_ms.filter(|ms| !ms.is_finite() || *ms < 0.0) {
      return Err(invalid(format!(
        "latencyMs must be a number >= 0, not {ms}"
      )));
    }
    let at_ms = timestamp
      .map(|ms| count(ms, "timestamp").map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)))
      .transpose()?;
    let entry = CallEntry {
      user,
      model,
      provider,
      outcome: Some(if success == Some(false) {
        CallOutcome::Error
      } else {
        CallOutcome::Ok
      }),
      usage,
      latency_ms,
      at_ms,
      ..CallEntry::default()
    };
    Ok(self.inner.record(entry, None).cost.usd())
  }

  /// Spend of one user over the last `days` UTC days; every user's with no `user`. The
  /// embedded ledger only (`summaryAsync` for every ledger).
  #[napi(catch_unwind)]
  pub fn summary(
    &self,
    user: Option<String>,
    options: Option<SummaryOptions>,
  ) -> napi::Result<CostSummary> {
    let days = summary_days(options)?;
    let summary = self.inner.summary(user.as_deref(), days).map_err(coded)?;
    Ok(summary_info(summary))
  }

  /// `summary` from any ledger, PostgreSQL included (every process's calls).
  #[napi]
  pub async fn summary_async(
    &self,
    user: Option<String>,
    options: Option<SummaryOptions>,
  ) -> napi::Result<CostSummary> {
    let days = summary_days(options)?;
    let summary = self
      .inner
      .summary_async(user.as_deref(), days)
      .await
      .map_err(coded)?;
    Ok(summary_info(summary))
  }

  /// True when the tracker talks to PostgreSQL or Redis: `summaryAsync`, `flushAsync` and
  /// `closeAsync` are then the methods to use.
  #[napi(getter)]
  pub fn networked(&self) -> bool {
    self.inner.is_networked()
  }

  /// Sets a user's budget; `null` removes it.
  #[napi(catch_unwind)]
  pub fn set_budget(&self, user: String, budget: Option<BudgetOptions>) -> napi::Result<()> {
    let budget = match budget {
      None => None,
      Some(options) => {
        let limit = Nanos::from_usd(options.usd).ok_or_else(|| {
          invalid(format!(
            "budget usd must be a number >= 0, not {}",
            options.usd
          ))
        })?;
        let period = match options.period.as_str() {
          "day" => Period::Day,
          "month" => Period::Month,
          other => {
            return Err(invalid(format!(
              "budget period must be 'day' or 'month', not '{other}'"
            )))
          }
        };
        Some(Budget {
          limit,
          period,
          hard: options.hard.unwrap_or(false),
        })
      }
    };
    self.inner.set_budget(&user, budget);
    Ok(())
  }

  /// A user's budget and where it stands; `null` without one.
  #[napi]
  pub fn budget(&self, user: String) -> Option<BudgetInfo> {
    self.inner.budget(&user).map(|status| BudgetInfo {
      usd: status.budget.limit.usd(),
      period: status.budget.period.as_str().into(),
      hard: status.budget.hard,
      spent_usd: status.spent.usd(),
      reserved_usd: status.reserved.usd(),
      remaining_usd: status
        .budget
        .limit
        .saturating_sub(status.spent + status.reserved)
        .usd(),
      period_start: iso_date(status.period_start),
    })
  }

  /// Alerts raised for a user, oldest first.
  #[napi]
  pub fn alerts(&self, user: String) -> Vec<CostAlert> {
    self.inner.alerts(&user).iter().map(alert_info).collect()
  }

  /// Calls `callback` with every alert, on the event loop, after the call that raised it.
  #[napi(ts_args_type = "callback: (alert: CostAlert) => void")]
  pub fn on_alert(&self, callback: AlertCallback) {
    let callback = Arc::new(callback);
    self.inner.on_alert(Arc::new(move |alert: &Alert| {
      // Queued, never blocking: the call that raised the alert does not wait for JS.
      callback.call(alert_info(alert), ThreadsafeFunctionCallMode::NonBlocking);
    }));
  }

  #[napi]
  pub fn stats(&self) -> CostTrackerStats {
    let stats = self.inner.stats();
    CostTrackerStats {
      recorded: stats.recorded as f64,
      unpriced: stats.unpriced as f64,
      budget_refusals: stats.budget_refusals as f64,
      alerts: stats.alerts as f64,
      ledger_written: stats.ledger.written as f64,
      ledger_failed: stats.ledger.failed as f64,
      ledger_dropped: stats.ledger.dropped as f64,
      ledger_buffered: stats.ledger.buffered as f64,
      budget_settlements_pending: stats.budget_store.pending as f64,
      budget_settlements_dropped: stats.budget_store.dropped as f64,
      budget_store_refusals: stats.budget_store_refusals as f64,
    }
  }

  /// Returns once every recorded call is durable in the ledger.
  #[napi(catch_unwind)]
  pub fn flush(&self) -> napi::Result<()> {
    self.inner.flush().map_err(coded)
  }

  /// Flushes and closes the ledger; later records are counted as dropped.
  #[napi(catch_unwind)]
  pub fn close(&self) -> napi::Result<()> {
    self.inner.close().map_err(coded)
  }

  /// `flush` for every ledger and the budget store: resolves once every recorded call is
  /// written and every budget settlement applied.
  #[napi]
  pub async fn flush_async(&self) -> napi::Result<()> {
    self.inner.flush_async().await.map_err(coded)
  }

  /// `close` for every ledger and the budget store: waits for what is queued (up to 5 s per
  /// store, then counts what is left as dropped).
  #[napi]
  pub async fn close_async(&self) -> napi::Result<()> {
    self.inner.close_async().await.map_err(coded)
  }

  /// For the process's 'exit' event, where nothing asynchronous runs any more: waits (at
  /// most `timeoutMs`) for queued rows and settlements to be written.
  #[napi(catch_unwind)]
  pub fn flush_before_exit(&self, timeout_ms: f64) -> bool {
    let timeout = std::time::Duration::from_millis(timeout_ms.clamp(0.0, 60_000.0) as u64);
    let inner = self.inner.clone();
    napi::bindgen_prelude::block_on(async move {
      matches!(
        tokio::time::timeout(timeout, inner.flush_async()).await,
        Ok(Ok(()))
      )
    })
  }
}
