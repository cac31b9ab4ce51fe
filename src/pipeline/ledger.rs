//! Ledger stage: after the call, price it, fill `costUsd`, and record every call that
//! reached the vendor — completed, failed or aborted — with the tracker, whose record
//! replaces the budget reservation with the real cost.
//!
//! Billing rules: a completed call is billed from the vendor's usage (counted here when
//! the vendor sent none); a response-cache hit (`response.cached`) is recorded at zero
//! cost; a call that failed or was aborted after delivering text is billed for its prompt
//! plus the delivered text, counted with the model's tokenizer (`usage.estimated`); one that
//! failed before delivering anything is recorded at zero cost. Without a tracker the
//! built-in price table still prices `costUsd`.

use std::sync::Arc;
use std::time::Instant;

use super::forward::Progress;
use super::record::{bump, GatewayStats};
use super::response::millis;
use crate::backend::ledger::CallOutcome;
use crate::costs::{CallEntry, CostTracker, Nanos, Pricing, Reservation};
use crate::error::{ErrorCode, Result};
use crate::tokens::encoding_for;
use crate::types::{ChatRequest, ChatResponse, Usage};

/// The gateway's cost accounting: its tracker, if any, and which of its providers are mock
/// providers. A mock call costs nothing unless the tracker's `pricing` names its model: the
/// built-in table prices real vendors' models, and "mock/gpt-4o" is not a call to OpenAI.
#[derive(Debug, Default)]
pub(crate) struct Accounting {
  tracker: Option<Arc<CostTracker>>,
  mock_providers: Vec<String>,
}

impl Accounting {
  pub fn new(tracker: Option<Arc<CostTracker>>, mock_providers: Vec<String>) -> Accounting {
    Accounting {
      tracker,
      mock_providers,
    }
  }

  pub fn tracker(&self) -> Option<&CostTracker> {
    self.tracker.as_deref()
  }

  /// Whether a "provider/model" deployment is served by one of this gateway's mock providers.
  pub fn is_mock(&self, provider: &str) -> bool {
    self.mock_providers.iter().any(|name| name == provider)
  }
}

/// The call being settled.
pub(crate) struct Call<'a> {
  /// The deployment that served it, "provider/model": what is priced.
  pub model: &'a str,
  pub provider: &'a str,
  pub request_id: &'a str,
  pub started: Instant,
  /// Upstream tries; 0 means the vendor was never reached.
  pub attempts: u32,
  pub progress: &'a Progress,
  pub operation: crate::types::Operation,
}

/// A settled call: the caller's result, and what was billed (for the call hook).
pub(crate) struct Settled {
  pub result: Result<ChatResponse>,
  pub usage: Usage,
  pub cost: Nanos,
}

/// Unpriced calls are counted in `stats`.
pub(crate) fn settle(
  accounting: &Accounting,
  stats: &GatewayStats,
  call: &Call<'_>,
  req: &ChatRequest,
  reservation: Option<Reservation>,
  result: Result<ChatResponse>,
) -> Settled {
  let (outcome, usage, cached, error_code) = match &result {
    Ok(response) => (CallOutcome::Ok, response.usage, response.cached, None),
    Err(error) => {
      let outcome = if error.code == ErrorCode::Aborted {
        CallOutcome::Aborted
      } else {
        CallOutcome::Error
      };
      (
        outcome,
        delivered_usage(req, call.progress),
        false,
        Some(error.code.as_str().to_string()),
      )
    }
  };
  let mut settled = Settled {
    result,
    usage,
    cost: Nanos::ZERO,
  };
  if settled.result.is_err() && call.attempts == 0 {
    // Never reached the vendor: nothing to bill, the reservation is released on drop.
    return settled;
  }
  let (cost, priced) = match accounting.tracker() {
    Some(tracker) => {
      let entry = CallEntry {
        user: req.user.clone(),
        model: call.model.to_string(),
        provider: Some(call.provider.to_string()),
        outcome: Some(outcome),
        error_code,
        usage,
        latency_ms: Some(millis(call.started.elapsed())),
        cached,
        request_id: Some(call.request_id.to_string()),
        at_ms: None,
        operation: call.operation,
      };
      let recorded = if accounting.is_mock(call.provider) {
        tracker.record_by_overrides(entry, reservation)
      } else {
        tracker.record(entry, reservation)
      };
      (recorded.cost, recorded.priced)
    }
    None if cached || accounting.is_mock(call.provider) => (Nanos::ZERO, true),
    None => match Pricing::builtin().lookup(call.model) {
      Some(price) => (price.cost(&usage), true),
      None => (Nanos::ZERO, false),
    },
  };
  if !priced {
    bump(&stats.unpriced_calls);
  }
  settled.cost = cost;
  if let Ok(response) = &mut settled.result {
    response.cost_usd = cost.usd();
  }
  settled
}

/// What a call that ended early consumed: its prompt, once anything was delivered (the
/// vendor had read it), and the delivered text.
fn delivered_usage(req: &ChatRequest, progress: &Progress) -> Usage {
  if !progress.delivered() {
    return Usage::default();
  }
  let encoding = encoding_for(&req.model);
  let mut usage = Usage::new(
    encoding.count_messages(&req.messages) as u64,
    encoding.count_text(&progress.delivered_text()) as u64,
  );
  usage.estimated = true;
  usage
}

#[cfg(test)]
mod tests {
  use std::time::Duration;

  use serde_json::json;
  use tokio::sync::mpsc;
  use tokio_util::sync::CancellationToken;

  use crate::costs::TrackerOptions;
  use crate::pipeline::{CallOptions, Gateway, GatewayConfig, ProviderConfig};
  use crate::types::{Message, Role};

  use super::*;

  fn gateway(costs: Option<Arc<CostTracker>>) -> Gateway {
    Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(1))],
      costs,
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  fn tracker() -> Arc<CostTracker> {
    let pricing = Pricing::from_litellm(&json!({
      "mock/demo": { "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6 },
    }))
    .expect("pricing");
    Arc::new(
      CostTracker::new(TrackerOptions {
        pricing,
        ..TrackerOptions::default()
      })
      .expect("tracker"),
    )
  }

  fn request(user: &str) -> ChatRequest {
    ChatRequest {
      messages: vec![Message::text(Role::User, "hello there")],
      user: Some(user.into()),
      ..ChatRequest::default()
    }
  }

  async fn run(gateway: &Gateway, model: &str, cancel: CancellationToken) -> Result<ChatResponse> {
    gateway
      .execute(
        model,
        request("ann"),
        CallOptions::default(),
        None,
        cancel,
        "fg_t",
      )
      .await
  }

  #[tokio::test]
  async fn completed_calls_are_priced_recorded_and_counted() {
    let tracker = tracker();
    let gateway = gateway(Some(tracker.clone()));
    let response = run(&gateway, "mock/demo", CancellationToken::new())
      .await
      .expect("response");
    let usage = response.usage;
    let expected = (usage.prompt_tokens as f64 * 1.0 + usage.completion_tokens as f64 * 2.0) / 1e6;
    assert!((response.cost_usd - expected).abs() < 1e-12);
    let summary = tracker.summary(Some("ann"), 1).expect("summary");
    assert_eq!(summary.total_requests, 1);
    assert_eq!(summary.total_cost.usd(), response.cost_usd);
    // A mock model `pricing` does not name is free, not unpriced, even when the built-in
    // table knows a vendor's model of that name.
    for model in ["mock/other", "mock/gpt-4o"] {
      let free = run(&gateway, model, CancellationToken::new())
        .await
        .expect("response");
      assert_eq!(free.cost_usd, 0.0, "{model}");
    }
    assert_eq!(gateway.stats().unpriced_calls, 0);
    assert_eq!(tracker.stats().unpriced, 0);
    assert_eq!(
      tracker
        .summary(Some("ann"), 1)
        .expect("summary")
        .total_requests,
      3
    );
  }

  #[tokio::test]
  async fn without_a_tracker_a_mock_call_costs_nothing() {
    let gateway = gateway(None);
    assert!(Pricing::builtin().lookup("gpt-4o-mini").is_some());
    let response = run(&gateway, "mock/gpt-4o-mini", CancellationToken::new())
      .await
      .expect("response");
    assert_eq!(response.cost_usd, 0.0);
    assert_eq!(gateway.stats().unpriced_calls, 0);
  }

  #[tokio::test]
  async fn a_call_cancelled_before_reaching_the_vendor_is_not_recorded_and_frees_its_reservation() {
    let tracker = tracker();
    tracker.set_budget(
      "ann",
      Some(crate::costs::Budget {
        limit: Nanos::from_usd(1.0).expect("usd"),
        period: crate::costs::Period::Day,
        hard: true,
      }),
    );
    let gateway = gateway(Some(tracker.clone()));
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = run(&gateway, "mock/demo", cancel)
      .await
      .expect_err("aborted");
    assert_eq!(error.code, ErrorCode::Aborted);
    assert_eq!(
      tracker
        .summary(Some("ann"), 1)
        .expect("summary")
        .total_requests,
      0
    );
    assert_eq!(tracker.budget("ann").expect("budget").reserved, Nanos::ZERO);
  }

  #[tokio::test]
  async fn a_stream_cut_short_is_billed_for_its_prompt_and_delivered_text() {
    let tracker = tracker();
    let gateway = gateway(Some(tracker.clone()));
    let (sender, mut receiver) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let call = gateway.execute(
      "mock/demo",
      request("cut"),
      CallOptions::default(),
      Some(sender.into()),
      cancel.clone(),
      "fg_t",
    );
    let reader = async {
      let mut text = String::new();
      for _ in 0..3 {
        if let Some(Ok(crate::types::StreamEvent::Text(piece))) = receiver.recv().await {
          text.push_str(&piece);
        }
      }
      cancel.cancel();
      text
    };
    let (result, text) = tokio::join!(call, reader);
    assert_eq!(result.expect_err("aborted").code, ErrorCode::Aborted);
    let encoding = encoding_for("demo");
    let prompt = encoding.count_messages(&request("cut").messages) as f64;
    // The fourth chunk may have been sent into the channel before the cancel.
    let summary = tracker.summary(Some("cut"), 1).expect("summary");
    assert_eq!(summary.total_requests, 1);
    let billed = summary.total_cost.usd();
    let at_least = (prompt + 2.0 * encoding.count_text(&text) as f64) / 1e6;
    assert!(billed >= at_least - 1e-12, "{billed} >= {at_least}");
    assert!(billed > prompt / 1e6);
  }

  use crate::pipeline::RecordedCalls as Records;

  fn observed_gateway(tracker: Arc<CostTracker>, records: Arc<Records>, cached: bool) -> Gateway {
    let cache = cached.then(|| {
      Arc::new(crate::cache::ResponseCache::in_memory(
        crate::backend::memory_cache::MemoryCacheLimits::default(),
        None,
      ))
    });
    Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(1))],
      costs: Some(tracker),
      cache,
      on_call: Some(crate::pipeline::CallHook(records)),
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  #[tokio::test]
  async fn a_cache_hit_is_recorded_at_zero_cost_and_the_hook_gets_what_was_billed() {
    let tracker = tracker();
    let records = Arc::new(Records::default());
    let gateway = observed_gateway(tracker.clone(), records.clone(), true);
    let first = run(&gateway, "mock/demo", CancellationToken::new())
      .await
      .expect("first");
    let hit = run(&gateway, "mock/demo", CancellationToken::new())
      .await
      .expect("hit");
    assert!(!first.cached && first.cost_usd > 0.0);
    assert!(hit.cached);
    assert_eq!(hit.cost_usd, 0.0);
    let summary = tracker.summary(Some("ann"), 1).expect("summary");
    assert_eq!(summary.total_requests, 2);
    assert_eq!(summary.total_cost.usd(), first.cost_usd);
    let billed: Vec<(f64, bool)> = records
      .take()
      .iter()
      .map(|record| (record.cost_usd, record.cached))
      .collect();
    assert_eq!(billed, [(first.cost_usd, false), (0.0, true)]);
    assert_eq!(gateway.stats().cache_hits, 1);
  }

  #[tokio::test]
  async fn an_aborted_stream_s_record_carries_its_delivered_usage_and_cost() {
    let tracker = tracker();
    let records = Arc::new(Records::default());
    let gateway = observed_gateway(tracker.clone(), records.clone(), false);
    let (sender, mut receiver) = mpsc::channel(1);
    let cancel = CancellationToken::new();
    let call = gateway.execute(
      "mock/demo",
      request("cut"),
      CallOptions::default(),
      Some(sender.into()),
      cancel.clone(),
      "fg_t",
    );
    let reader = async {
      for _ in 0..3 {
        receiver.recv().await;
      }
      cancel.cancel();
    };
    let (result, ()) = tokio::join!(call, reader);
    assert_eq!(result.expect_err("aborted").code, ErrorCode::Aborted);
    let billed = tracker
      .summary(Some("cut"), 1)
      .expect("summary")
      .total_cost
      .usd();
    let [record] = records.take().try_into().expect("one record");
    assert_eq!(record.outcome, crate::pipeline::Outcome::Aborted);
    assert!(record.usage.estimated && record.usage.completion_tokens > 0);
    assert!(billed > 0.0);
    assert_eq!(record.cost_usd, billed);
    assert_eq!(
      (record.provider.as_deref(), record.vendor_model.as_deref()),
      (Some("mock"), Some("demo"))
    );
  }

  #[tokio::test]
  async fn a_budget_refusal_is_counted_by_its_code_and_bills_nothing() {
    let tracker = tracker();
    tracker.set_budget(
      "ann",
      Some(crate::costs::Budget {
        limit: Nanos::from_usd(0.000_001).expect("usd"),
        period: crate::costs::Period::Day,
        hard: true,
      }),
    );
    let records = Arc::new(Records::default());
    let gateway = observed_gateway(tracker.clone(), records.clone(), true);
    let refused = run(&gateway, "mock/demo", CancellationToken::new())
      .await
      .expect_err("refused");
    assert_eq!(refused.code, ErrorCode::BudgetExceeded);
    let stats = gateway.stats();
    assert_eq!((stats.budget_refusals, stats.cache_misses), (1, 0));
    let [record] = records.take().try_into().expect("one record");
    assert_eq!(record.error_code, Some(ErrorCode::BudgetExceeded));
    assert_eq!((record.cost_usd, record.attempts), (0.0, 0));
    assert_eq!(
      tracker
        .summary(Some("ann"), 1)
        .expect("summary")
        .total_requests,
      0
    );
  }
}
