use std::sync::{Arc, Mutex};

use serde_json::json;

use super::clock::{day_from_civil, ManualClock, MS_PER_DAY};
use super::*;
use crate::backend::ledger::CallOutcome;
use crate::error::ErrorCode;
use crate::types::Usage;

/// 2026-03-10 12:00 UTC.
fn noon() -> i64 {
  day_from_civil(2026, 3, 10) * MS_PER_DAY + MS_PER_DAY / 2
}

/// "t/cheap": $1 per million input and output tokens, so 1000 tokens cost $0.001.
fn pricing() -> Pricing {
  Pricing::from_litellm(&json!({
    "t/cheap": { "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6, "max_output_tokens": 1000 },
  }))
  .expect("pricing")
}

fn tracker_at(clock: Arc<ManualClock>) -> CostTracker {
  CostTracker::new(TrackerOptions {
    pricing: pricing(),
    clock,
    ..TrackerOptions::default()
  })
  .expect("tracker")
}

fn call(user: &str, model: &str, prompt: u64, completion: u64) -> CallEntry {
  CallEntry {
    user: Some(user.into()),
    model: model.into(),
    usage: Usage::new(prompt, completion),
    ..CallEntry::default()
  }
}

fn usd(amount: f64) -> Nanos {
  Nanos::from_usd(amount).expect("usd")
}

fn budget(limit: f64, period: Period, hard: bool) -> Option<Budget> {
  Some(Budget {
    limit: usd(limit),
    period,
    hard,
  })
}

#[test]
fn unknown_models_cost_nothing_and_are_counted() {
  let tracker = tracker_at(Arc::new(ManualClock::at(noon())));
  let recorded = tracker.record(call("ann", "x/mystery-model", 1000, 1000), None);
  assert_eq!(
    recorded,
    Recorded {
      cost: Nanos::ZERO,
      priced: false
    }
  );
  let priced = tracker.record(call("ann", "openai/gpt-4o-mini", 1_000_000, 0), None);
  assert_eq!(priced.cost.usd(), 0.15);
  let cached = tracker.record(
    CallEntry {
      cached: true,
      ..call("ann", "openai/gpt-4o-mini", 1_000_000, 0)
    },
    None,
  );
  assert_eq!(
    cached,
    Recorded {
      cost: Nanos::ZERO,
      priced: true
    }
  );
  let stats = tracker.stats();
  assert_eq!((stats.recorded, stats.unpriced), (3, 1));
  let summary = tracker.summary(Some("ann"), 1).expect("summary");
  assert_eq!(summary.total_requests, 3);
  assert_eq!(summary.unpriced_requests, 1);
  assert_eq!(summary.total_cost.usd(), 0.15);
}

#[test]
fn a_reservation_is_held_at_the_prompts_bound_far_from_the_limit_and_counted_near_it() {
  use std::sync::atomic::{AtomicU32, Ordering};
  let tracker = tracker_at(Arc::new(ManualClock::at(noon())));
  let counted = AtomicU32::new(0);
  let exact = || {
    counted.fetch_add(1, Ordering::Relaxed);
    100
  };
  let size = PromptSize {
    bound: 400,
    count: Some(&exact),
  };
  // $0.2 has room for 100 calls of 400 + 900 tokens at $1/M: held at the bound, uncounted.
  tracker.set_budget("ann", budget(0.2, Period::Day, true));
  let first = tracker
    .reserve_sized("ann", &["t/cheap"], &size, Some(900))
    .expect("fits")
    .expect("held");
  assert_eq!(first.amount().usd(), 0.0013);
  assert_eq!(counted.load(Ordering::Relaxed), 0);
  // $0.0025 leaves $0.0012: near the limit the prompt is counted, and 100 + 900 fits.
  tracker.set_budget("ann", budget(0.0025, Period::Day, true));
  let second = tracker
    .reserve_sized("ann", &["t/cheap"], &size, Some(900))
    .expect("fits when counted")
    .expect("held");
  assert_eq!(second.amount().usd(), 0.001);
  assert_eq!(counted.load(Ordering::Relaxed), 1);
  // Nothing fits now: refused at the exact amount, and counted as one refusal.
  let refused = tracker
    .reserve_sized("ann", &["t/cheap"], &size, Some(900))
    .expect_err("full");
  assert_eq!(refused.code, ErrorCode::BudgetExceeded);
  assert!(
    refused.message.contains("may cost up to $0.001"),
    "{}",
    refused.message
  );
  assert_eq!(tracker.stats().budget_refusals, 1);
  // The real cost replaces the hold, bound or exact.
  tracker.record(call("ann", "t/cheap", 100, 50), Some(first));
  tracker.record(call("ann", "t/cheap", 100, 50), Some(second));
  let status = tracker.budget("ann").expect("status");
  assert_eq!((status.spent.usd(), status.reserved), (0.0003, Nanos::ZERO));
}

#[test]
fn a_hard_budget_refuses_what_could_pass_it_and_releases_unused_holds() {
  let tracker = tracker_at(Arc::new(ManualClock::at(noon())));
  // Each call may cost up to (100 + 900) tokens × $1/M = $0.001.
  tracker.set_budget("ann", budget(0.0025, Period::Day, true));
  let first = tracker
    .reserve("ann", &["t/cheap"], 100, Some(900))
    .expect("first");
  let second = tracker
    .reserve("ann", &["t/cheap"], 100, Some(900))
    .expect("second");
  let refused = tracker
    .reserve("ann", &["t/cheap"], 100, Some(900))
    .expect_err("third would pass $0.0025");
  assert_eq!(refused.code, ErrorCode::BudgetExceeded);
  assert_eq!(refused.status, 402);
  // The real cost (200 tokens) replaces the first hold; dropping the second releases it.
  tracker.record(call("ann", "t/cheap", 100, 100), first);
  drop(second);
  let status = tracker.budget("ann").expect("status");
  assert_eq!((status.spent.usd(), status.reserved), (0.0002, Nanos::ZERO));
  assert!(tracker
    .reserve("ann", &["t/cheap"], 100, Some(900))
    .expect("room again")
    .is_some());
  // Without maxTokens the model's longest answer (1000 tokens) is reserved.
  let held = tracker
    .reserve("bob", &["t/cheap"], 0, None)
    .expect("no budget");
  assert!(held.is_none());
  tracker.set_budget("bob", budget(1.0, Period::Day, true));
  let held = tracker
    .reserve("bob", &["t/cheap"], 0, None)
    .expect("held")
    .expect("some");
  assert_eq!(held.amount().usd(), 0.001);
  // Soft budgets and unpriced models reserve nothing.
  tracker.set_budget("cat", budget(0.0, Period::Day, false));
  assert!(tracker
    .reserve("cat", &["t/cheap"], 100, None)
    .expect("soft")
    .is_none());
  tracker.set_budget("dan", budget(0.0, Period::Day, true));
  assert!(tracker
    .reserve("dan", &["x/unpriced"], 100, None)
    .expect("unpriced")
    .is_none());
  assert_eq!(tracker.stats().budget_refusals, 1);
}

#[test]
fn concurrent_reservations_never_pass_the_budget() {
  let tracker = Arc::new(tracker_at(Arc::new(ManualClock::at(noon()))));
  // Ten calls' worth, plus change.
  tracker.set_budget("ann", budget(0.0105, Period::Day, true));
  let admitted = Arc::new(Mutex::new(0));
  let threads: Vec<_> = (0..100)
    .map(|_| {
      let tracker = tracker.clone();
      let admitted = admitted.clone();
      std::thread::spawn(
        move || match tracker.reserve("ann", &["t/cheap"], 100, Some(900)) {
          Ok(hold) => {
            *admitted.lock().expect("lock") += 1;
            tracker.record(call("ann", "t/cheap", 100, 900), hold);
            true
          }
          Err(error) => {
            assert_eq!(error.code, ErrorCode::BudgetExceeded);
            false
          }
        },
      )
    })
    .collect();
  let outcomes: Vec<bool> = threads
    .into_iter()
    .map(|t| t.join().expect("thread"))
    .collect();
  assert_eq!(*admitted.lock().expect("lock"), 10);
  assert_eq!(outcomes.iter().filter(|ok| !**ok).count(), 90);
  let status = tracker.budget("ann").expect("status");
  assert!(status.spent <= status.budget.limit);
  assert_eq!(status.spent.usd(), 0.01);
}

#[test]
fn budgets_reset_at_the_start_of_each_utc_day_and_month() {
  let clock = Arc::new(ManualClock::at(noon()));
  let tracker = tracker_at(clock.clone());
  tracker.set_budget("day", budget(0.0015, Period::Day, true));
  tracker.set_budget("month", budget(0.0015, Period::Month, true));
  for user in ["day", "month"] {
    let hold = tracker
      .reserve(user, &["t/cheap"], 0, Some(1000))
      .expect("first");
    tracker.record(call(user, "t/cheap", 0, 1000), hold);
    assert!(tracker.reserve(user, &["t/cheap"], 0, Some(1000)).is_err());
  }
  // 2026-03-11 00:00: a new day, the same month.
  clock.set(day_from_civil(2026, 3, 11) * MS_PER_DAY);
  assert!(tracker.reserve("day", &["t/cheap"], 0, Some(1000)).is_ok());
  assert!(tracker
    .reserve("month", &["t/cheap"], 0, Some(1000))
    .is_err());
  assert_eq!(tracker.budget("month").expect("month").spent.usd(), 0.001);
  // 2026-04-01 00:00: a new month.
  clock.set(day_from_civil(2026, 4, 1) * MS_PER_DAY);
  assert!(tracker
    .reserve("month", &["t/cheap"], 0, Some(1000))
    .is_ok());
  assert_eq!(tracker.budget("month").expect("month").spent, Nanos::ZERO);
}

fn kinds(alerts: &[Alert]) -> Vec<(&'static str, &'static str)> {
  alerts
    .iter()
    .map(|a| (a.kind.as_str(), a.severity.as_str()))
    .collect()
}

#[test]
fn budget_alerts_fire_once_at_90_and_once_at_100_percent_per_period() {
  let clock = Arc::new(ManualClock::at(noon()));
  let tracker = tracker_at(clock.clone());
  let heard = Arc::new(Mutex::new(Vec::new()));
  let sink = heard.clone();
  tracker.on_alert(Arc::new(move |alert: &Alert| {
    sink.lock().expect("lock").push(alert.clone())
  }));
  tracker.set_budget("ann", budget(0.01, Period::Day, false));
  // $0.001 per call: the 9th call reaches 90%, the 10th 100%.
  for _ in 0..8 {
    tracker.record(call("ann", "t/cheap", 500, 500), None);
  }
  assert!(tracker.alerts("ann").is_empty());
  tracker.record(call("ann", "t/cheap", 500, 500), None);
  assert_eq!(
    kinds(&tracker.alerts("ann")),
    vec![("budget_exceeded", "warning")]
  );
  for _ in 0..3 {
    tracker.record(call("ann", "t/cheap", 500, 500), None);
  }
  let alerts = tracker.alerts("ann");
  assert_eq!(
    kinds(&alerts),
    vec![
      ("budget_exceeded", "warning"),
      ("budget_exceeded", "critical")
    ]
  );
  assert!(alerts[1].message.contains("$0.01"), "{}", alerts[1].message);
  assert_eq!(alerts[1].recommendations.len(), 3);
  assert_eq!(heard.lock().expect("lock").len(), 2);
  // The next day is a new period: the crossing can happen again.
  clock.advance(MS_PER_DAY);
  for _ in 0..10 {
    tracker.record(call("ann", "t/cheap", 500, 500), None);
  }
  assert_eq!(tracker.alerts("ann").len(), 4);
}

#[test]
fn a_refused_hard_budget_call_raises_the_critical_alert_once() {
  let tracker = tracker_at(Arc::new(ManualClock::at(noon())));
  tracker.set_budget("ann", budget(0.0005, Period::Day, true));
  for _ in 0..3 {
    assert!(tracker.reserve("ann", &["t/cheap"], 0, Some(1000)).is_err());
  }
  assert_eq!(
    kinds(&tracker.alerts("ann")),
    vec![("budget_exceeded", "critical")]
  );
}

#[test]
fn unusual_spending_fires_once_per_crossing() {
  let clock = Arc::new(ManualClock::at(noon()));
  let tracker = tracker_at(clock.clone());
  let now = noon();
  // Four previous weeks at $0.001 per week (one call each, 8 to 29 days ago).
  for week in 1..=4 {
    let at = now - (week * 7 + 1) * MS_PER_DAY;
    tracker.record(
      CallEntry {
        at_ms: Some(at),
        ..call("ann", "t/cheap", 500, 500)
      },
      None,
    );
  }
  // This week: $0.002 is exactly twice the average, not over it.
  tracker.record(call("ann", "t/cheap", 1000, 1000), None);
  assert!(tracker.alerts("ann").is_empty());
  tracker.record(call("ann", "t/cheap", 1, 0), None);
  tracker.record(call("ann", "t/cheap", 1000, 0), None);
  let alerts = tracker.alerts("ann");
  assert_eq!(kinds(&alerts), vec![("unusual_spending", "warning")]);
  assert!(alerts[0].message.contains("last 7 days"));
  // A week later the spike has left the window; a new one alerts again.
  clock.advance(7 * MS_PER_DAY);
  tracker.record(call("ann", "t/cheap", 1, 0), None);
  assert_eq!(tracker.alerts("ann").len(), 1);
  tracker.record(call("ann", "t/cheap", 4000, 0), None);
  assert_eq!(tracker.alerts("ann").len(), 2);
}

#[test]
fn high_cost_models_alert_once_per_model_per_day() {
  let clock = Arc::new(ManualClock::at(noon()));
  let tracker = tracker_at(clock.clone());
  tracker.record(call("ann", "openai/gpt-4o-mini", 10, 10), None);
  assert!(tracker.alerts("ann").is_empty());
  for _ in 0..3 {
    tracker.record(call("ann", "anthropic/claude-opus-4-1", 10, 10), None);
  }
  let alerts = tracker.alerts("ann");
  assert_eq!(kinds(&alerts), vec![("high_cost_model", "warning")]);
  assert!(
    alerts[0].recommendations[0].contains("claude-sonnet-4-5 ($3/$15 per million"),
    "{:?}",
    alerts[0].recommendations
  );
  clock.advance(MS_PER_DAY);
  tracker.record(call("ann", "anthropic/claude-opus-4-1", 10, 10), None);
  assert_eq!(tracker.alerts("ann").len(), 2);
}

#[test]
fn a_new_tracker_reads_the_same_totals_and_budget_spend_from_the_ledger_file() {
  let dir = std::env::temp_dir().join(format!("ferrogate-tracker-{}", std::process::id()));
  std::fs::create_dir_all(&dir).expect("dir");
  let path = dir.join("ledger.db").to_string_lossy().to_string();
  let _ = std::fs::remove_file(&path);
  let clock = Arc::new(ManualClock::at(noon()));
  let open = || {
    CostTracker::new(TrackerOptions {
      pricing: pricing(),
      ledger_path: Some(path.clone()),
      clock: clock.clone(),
      ..TrackerOptions::default()
    })
    .expect("tracker")
  };
  let before = {
    let tracker = open();
    for i in 0..25 {
      let mut entry = call("ann", "t/cheap", 100 + i, 50);
      entry.outcome = Some(if i % 5 == 0 {
        CallOutcome::Aborted
      } else {
        CallOutcome::Ok
      });
      tracker.record(entry, None);
    }
    tracker.summary(Some("ann"), 7).expect("summary")
  };
  let tracker = open();
  assert_eq!(tracker.summary(Some("ann"), 7).expect("summary"), before);
  assert_eq!(before.total_requests, 25);
  tracker.set_budget("ann", budget(1.0, Period::Day, true));
  assert_eq!(
    tracker.budget("ann").expect("status").spent,
    before.total_cost
  );
  tracker.close().expect("close");
  std::fs::remove_dir_all(dir).ok();
}

#[test]
fn summaries_fill_every_day_and_split_by_model() {
  let clock = Arc::new(ManualClock::at(noon()));
  let tracker = tracker_at(clock.clone());
  tracker.record(
    CallEntry {
      at_ms: Some(noon() - 2 * MS_PER_DAY),
      ..call("ann", "t/cheap", 1000, 0)
    },
    None,
  );
  tracker.record(call("ann", "openai/gpt-4o-mini", 1_000_000, 0), None);
  tracker.record(call("bob", "t/cheap", 1000, 0), None);
  let summary = tracker.summary(Some("ann"), 3).expect("summary");
  let dates: Vec<&str> = summary.trend.iter().map(|p| p.date.as_str()).collect();
  assert_eq!(dates, vec!["2026-03-08", "2026-03-09", "2026-03-10"]);
  assert_eq!(
    summary.trend.iter().map(|p| p.requests).collect::<Vec<_>>(),
    vec![1, 0, 1]
  );
  assert_eq!(summary.total_cost.usd(), 0.151);
  assert_eq!(summary.by_model.len(), 2);
  assert_eq!(tracker.summary(None, 1).expect("all").total_requests, 2);
  assert_eq!(
    tracker
      .summary(Some("ann"), 1)
      .expect("today")
      .total_requests,
    1
  );
}

#[test]
fn a_call_that_may_go_to_several_deployments_reserves_at_the_dearest() {
  let tracker = tracker_at(Arc::new(ManualClock::at(noon())));
  tracker.set_budget("ann", budget(1.0, Period::Day, true));
  let held = tracker
    .reserve(
      "ann",
      &["x/unpriced", "t/cheap", "openai/gpt-4o"],
      0,
      Some(1000),
    )
    .expect("reserved")
    .expect("held");
  // gpt-4o: 1000 output tokens at $10 per million.
  assert_eq!(held.amount().usd(), 0.01);
  assert!(tracker
    .reserve("ann", &["x/unpriced"], 0, None)
    .expect("unpriced")
    .is_none());
}
