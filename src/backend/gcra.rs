//! GCRA (the generic cell rate algorithm): a token bucket kept as one number per key,
//! the theoretical arrival time (TAT). A bucket of `burst` cells refills one cell every
//! `interval`; a request costing `n` cells moves the TAT `n` intervals on and is admitted
//! while the TAT stays within `burst` intervals of now. Pure functions over nanoseconds so
//! every store (memory now, a Redis script later) applies the same math.

use std::time::Duration;

/// Rounding slack, in nanoseconds, for intervals that are not whole numbers.
const SLACK_NS: f64 = 1.0;

/// One bucket: `per_minute` cells per minute, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
  pub per_minute: f64,
  pub burst: f64,
}

impl Rate {
  pub fn interval_ns(&self) -> f64 {
    60e9 / self.per_minute
  }

  fn window_ns(&self) -> f64 {
    self.burst * self.interval_ns()
  }
}

/// Both limits of a `RateLimiter`; either may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quota {
  pub requests: Option<Rate>,
  pub tokens: Option<Rate>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
  pub allowed: bool,
  /// How long until the same request would be admitted (zero when it was).
  pub retry_after: Duration,
  /// Requests (tokens) still admissible right now; `u64::MAX` when that limit is off.
  pub remaining_requests: u64,
  pub remaining_tokens: u64,
}

/// What one bucket says about a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
  /// Admitted: the new TAT and the cells left.
  Admit { tat: f64, remaining: u64 },
  /// Refused: wait this long, `remaining` cells are available now.
  Refuse { retry_after_ns: f64, remaining: u64 },
}

/// One bucket's step for a request costing `cost` cells at `now` (all times in ns).
/// A request larger than the whole bucket could never pass, so it is admitted when the
/// bucket is full and then holds the key off for as long as it overdrew.
pub fn step(tat: f64, now: f64, cost: f64, rate: &Rate) -> Step {
  let interval = rate.interval_ns();
  let base = tat.max(now);
  let new_tat = base + cost * interval;
  let limit = now + rate.window_ns();
  let available = ((limit - base + SLACK_NS) / interval).floor().max(0.0) as u64;
  if new_tat <= limit + SLACK_NS {
    let remaining = ((limit - new_tat + SLACK_NS) / interval).floor().max(0.0) as u64;
    return Step::Admit {
      tat: new_tat,
      remaining,
    };
  }
  if cost > rate.burst && base <= now {
    return Step::Admit {
      tat: new_tat,
      remaining: 0,
    };
  }
  let retry_after_ns = if cost > rate.burst {
    base - now
  } else {
    new_tat - limit
  };
  Step::Refuse {
    retry_after_ns,
    remaining: available,
  }
}

/// A key's state: one TAT per bucket (0 = never used).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KeyState {
  pub requests_tat: f64,
  pub tokens_tat: f64,
}

impl KeyState {
  /// The moment after which this key is as good as new.
  pub fn idle_after(&self) -> f64 {
    self.requests_tat.max(self.tokens_tat)
  }
}

/// Applies both buckets: admitted only when both admit; a refusal consumes nothing.
pub fn acquire(state: &mut KeyState, now: f64, tokens: u64, quota: &Quota) -> Decision {
  let requests = quota
    .requests
    .map(|rate| step(state.requests_tat, now, 1.0, &rate));
  let token_step = quota
    .tokens
    .map(|rate| step(state.tokens_tat, now, tokens as f64, &rate));
  let remaining = |s: Option<Step>| match s {
    None => u64::MAX,
    Some(Step::Admit { remaining, .. } | Step::Refuse { remaining, .. }) => remaining,
  };
  let wait = |s: Option<Step>| match s {
    Some(Step::Refuse { retry_after_ns, .. }) => retry_after_ns,
    _ => 0.0,
  };
  let refused = matches!(requests, Some(Step::Refuse { .. }))
    || matches!(token_step, Some(Step::Refuse { .. }));
  if refused {
    let wait_ns = wait(requests).max(wait(token_step)).max(0.0);
    // A request refused by one bucket leaves the other untouched, so the other's
    // "remaining" is what it had before this request.
    let before = |s: Option<Step>, cost: u64| match s {
      Some(Step::Admit { remaining, .. }) => remaining.saturating_add(cost),
      other => remaining(other),
    };
    return Decision {
      allowed: false,
      retry_after: Duration::from_nanos(wait_ns.ceil() as u64),
      remaining_requests: before(requests, 1),
      remaining_tokens: before(token_step, tokens),
    };
  }
  if let Some(Step::Admit { tat, .. }) = requests {
    state.requests_tat = tat;
  }
  if let Some(Step::Admit { tat, .. }) = token_step {
    state.tokens_tat = tat;
  }
  Decision {
    allowed: true,
    retry_after: Duration::ZERO,
    remaining_requests: remaining(requests),
    remaining_tokens: remaining(token_step),
  }
}

/// Moves the token bucket by `delta` cells (negative refunds); a refund never fills it
/// past full.
pub fn adjust_tokens(state: &mut KeyState, now: f64, delta: i64, quota: &Quota) {
  if let Some(rate) = quota.tokens {
    let moved = state.tokens_tat.max(now) + delta as f64 * rate.interval_ns();
    state.tokens_tat = moved.max(now);
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const SECOND: f64 = 1e9;

  fn per_minute(per_minute: f64, burst: f64) -> Rate {
    Rate { per_minute, burst }
  }

  fn requests(per_minute: f64, burst: f64) -> Quota {
    Quota {
      requests: Some(Rate { per_minute, burst }),
      tokens: None,
    }
  }

  #[test]
  fn a_full_bucket_admits_exactly_its_burst_then_refuses() {
    let quota = requests(60.0, 10.0);
    let mut state = KeyState::default();
    let now = 1000.0 * SECOND;
    let admitted = (0..100)
      .filter(|_| acquire(&mut state, now, 0, &quota).allowed)
      .count();
    assert_eq!(admitted, 10);
    // 60 per minute: the next cell comes one second later.
    let refused = acquire(&mut state, now, 0, &quota);
    assert_eq!(refused.retry_after, Duration::from_secs(1));
    assert_eq!(refused.remaining_requests, 0);
    assert!(acquire(&mut state, now + SECOND, 0, &quota).allowed);
    assert!(!acquire(&mut state, now + SECOND, 0, &quota).allowed);
  }

  #[test]
  fn remaining_counts_down_and_refills_with_time() {
    let quota = requests(120.0, 4.0);
    let mut state = KeyState::default();
    let now = 50.0 * SECOND;
    let left: Vec<u64> = (0..4)
      .map(|_| acquire(&mut state, now, 0, &quota).remaining_requests)
      .collect();
    assert_eq!(left, vec![3, 2, 1, 0]);
    // 120 per minute = one every 500 ms; after 1 s two cells are back.
    let later = acquire(&mut state, now + SECOND, 0, &quota);
    assert!(later.allowed);
    assert_eq!(later.remaining_requests, 1);
  }

  #[test]
  fn retry_after_for_tokens_is_the_time_to_refill_the_missing_cells() {
    let quota = Quota {
      requests: None,
      tokens: Some(per_minute(6000.0, 1000.0)),
    };
    let mut state = KeyState::default();
    let now = 10.0 * SECOND;
    assert!(acquire(&mut state, now, 900, &quota).allowed);
    let refused = acquire(&mut state, now, 300, &quota);
    assert!(!refused.allowed);
    assert_eq!(refused.remaining_tokens, 100);
    // 200 tokens missing at 100 tokens per second.
    assert_eq!(refused.retry_after, Duration::from_secs(2));
  }

  #[test]
  fn a_refusal_by_one_bucket_consumes_nothing_from_the_other() {
    let quota = Quota {
      requests: Some(per_minute(60.0, 5.0)),
      tokens: Some(per_minute(600.0, 100.0)),
    };
    let mut state = KeyState::default();
    let now = SECOND;
    assert!(acquire(&mut state, now, 90, &quota).allowed);
    let refused = acquire(&mut state, now, 50, &quota);
    assert!(!refused.allowed);
    assert_eq!(refused.remaining_requests, 4);
    assert_eq!(refused.remaining_tokens, 10);
    assert!(acquire(&mut state, now, 10, &quota).allowed);
  }

  #[test]
  fn settling_moves_the_token_bucket_both_ways() {
    let quota = Quota {
      requests: None,
      tokens: Some(per_minute(600.0, 100.0)),
    };
    let mut state = KeyState::default();
    let now = SECOND;
    assert!(acquire(&mut state, now, 80, &quota).allowed);
    // The call used 20, not 80: 60 come back.
    adjust_tokens(&mut state, now, -60, &quota);
    assert_eq!(acquire(&mut state, now, 0, &quota).remaining_tokens, 80);
    // Another used 50 more than estimated.
    assert!(acquire(&mut state, now, 10, &quota).allowed);
    adjust_tokens(&mut state, now, 50, &quota);
    assert_eq!(acquire(&mut state, now, 0, &quota).remaining_tokens, 20);
    // A refund never leaves more than a full bucket.
    adjust_tokens(&mut state, now, -10_000, &quota);
    assert_eq!(acquire(&mut state, now, 0, &quota).remaining_tokens, 100);
  }

  #[test]
  fn a_request_larger_than_the_bucket_passes_only_on_a_full_bucket() {
    let quota = Quota {
      requests: None,
      tokens: Some(per_minute(60.0, 10.0)),
    };
    let mut state = KeyState::default();
    let now = SECOND;
    assert!(acquire(&mut state, now, 25, &quota).allowed);
    let refused = acquire(&mut state, now, 25, &quota);
    assert!(!refused.allowed);
    // Overdrawn by 25 cells at one per second: full again after 25 s.
    assert_eq!(refused.retry_after, Duration::from_secs(25));
    assert!(acquire(&mut state, now + 25.0 * SECOND, 25, &quota).allowed);
  }

  #[test]
  fn fractional_intervals_do_not_lose_a_cell_to_rounding() {
    let quota = requests(7.0, 7.0);
    let mut state = KeyState::default();
    let admitted = (0..20)
      .filter(|_| acquire(&mut state, 3.0 * SECOND, 0, &quota).allowed)
      .count();
    assert_eq!(admitted, 7);
  }
}
