//! What the route remembers about one target: calls in flight, recent latency, recent
//! failures, and the circuit breaker that ejects a failing target for a cooldown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RoutingConfig;

/// Weight of the newest sample in the latency averages: about the last ten calls count.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Circuit {
  Closed,
  /// Ejected: not chosen before `until`.
  Open {
    until: Instant,
  },
  /// The cooldown is over: one probe call decides between Closed and Open.
  HalfOpen {
    probing: bool,
  },
}

#[derive(Debug)]
pub(crate) struct TargetStats {
  pub in_flight: u32,
  pub ewma_latency_ms: Option<f64>,
  pub ewma_ttft_ms: Option<f64>,
  pub consecutive_failures: u32,
  /// The last `errorRateWindow` outcomes, `true` for a failure.
  outcomes: VecDeque<bool>,
  failures_in_window: usize,
  pub circuit: Circuit,
  /// A 429 with a wait hint: the vendor asked for a pause, which is not an ejection.
  pub cooling_until: Option<Instant>,
}

impl Default for TargetStats {
  fn default() -> Self {
    TargetStats {
      in_flight: 0,
      ewma_latency_ms: None,
      ewma_ttft_ms: None,
      consecutive_failures: 0,
      outcomes: VecDeque::new(),
      failures_in_window: 0,
      circuit: Circuit::Closed,
      cooling_until: None,
    }
  }
}

fn ewma(previous: Option<f64>, sample: f64) -> f64 {
  match previous {
    Some(value) => value + EWMA_ALPHA * (sample - value),
    None => sample,
  }
}

impl TargetStats {
  /// Moves an expired ejection to half-open and forgets an expired cooldown.
  pub fn refresh(&mut self, now: Instant) {
    if let Circuit::Open { until } = self.circuit {
      if now >= until {
        self.circuit = Circuit::HalfOpen { probing: false };
      }
    }
    if self.cooling_until.is_some_and(|until| now >= until) {
      self.cooling_until = None;
    }
  }

  pub fn error_rate(&self) -> f64 {
    if self.outcomes.is_empty() {
      0.0
    } else {
      self.failures_in_window as f64 / self.outcomes.len() as f64
    }
  }

  /// When the target may be chosen again, if it is ejected or cooling down.
  pub fn unavailable_until(&self) -> Option<Instant> {
    let ejected = match self.circuit {
      Circuit::Open { until } => Some(until),
      _ => None,
    };
    match (ejected, self.cooling_until) {
      (Some(a), Some(b)) => Some(a.max(b)),
      (a, b) => a.or(b),
    }
  }

  fn push_outcome(&mut self, failed: bool, window: usize) {
    self.outcomes.push_back(failed);
    if failed {
      self.failures_in_window += 1;
    }
    while self.outcomes.len() > window.max(1) {
      if self.outcomes.pop_front() == Some(true) {
        self.failures_in_window -= 1;
      }
    }
  }

  fn close(&mut self) {
    self.circuit = Circuit::Closed;
    self.consecutive_failures = 0;
    self.outcomes.clear();
    self.failures_in_window = 0;
  }

  pub fn record_success(
    &mut self,
    latency: Duration,
    ttft: Option<Duration>,
    probe: bool,
    config: &RoutingConfig,
  ) {
    self.ewma_latency_ms = Some(ewma(self.ewma_latency_ms, millis(latency)));
    if let Some(ttft) = ttft {
      self.ewma_ttft_ms = Some(ewma(self.ewma_ttft_ms, millis(ttft)));
    }
    if probe {
      self.close();
      return;
    }
    self.consecutive_failures = 0;
    self.push_outcome(false, config.error_rate_window);
  }

  pub fn record_failure(&mut self, now: Instant, probe: bool, config: &RoutingConfig) {
    if probe {
      self.circuit = Circuit::Open {
        until: now + config.cooldown,
      };
      return;
    }
    self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    self.push_outcome(true, config.error_rate_window);
    if self.circuit != Circuit::Closed {
      return;
    }
    let window_full_enough = self.outcomes.len() >= config.error_rate_window.clamp(1, 10);
    let too_many_in_a_row = self.consecutive_failures >= config.consecutive_failures;
    let rate_too_high = window_full_enough && self.error_rate() > config.error_rate;
    if too_many_in_a_row || rate_too_high {
      self.circuit = Circuit::Open {
        until: now + config.cooldown,
      };
    }
  }

  /// An active health check answered: an ejected target comes back at once.
  pub fn record_health_check_success(&mut self) {
    if self.circuit != Circuit::Closed {
      self.close();
    }
  }

  pub fn cool_down(&mut self, until: Instant) {
    self.cooling_until = Some(
      self
        .cooling_until
        .map_or(until, |current| current.max(until)),
    );
  }

  /// A probe that ended without a verdict (the caller left): the next call probes again.
  pub fn abandon_probe(&mut self) {
    if let Circuit::HalfOpen { probing: true } = self.circuit {
      self.circuit = Circuit::HalfOpen { probing: false };
    }
  }
}

fn millis(duration: Duration) -> f64 {
  duration.as_secs_f64() * 1000.0
}
