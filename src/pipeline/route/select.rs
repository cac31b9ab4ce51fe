//! Choosing a target: a weighted random draw over the targets that may take the call,
//! each weighted by
//!
//!   score = weight × loadFactor × timeFactor
//!   loadFactor = 1 / (1 + inFlight)
//!   timeFactor = (bestLatency + 100 ms) / (latency + 100 ms)
//!
//! `latency` is the target's EWMA of time to first token for a streamed call (its EWMA of
//! whole-call latency until it has streamed), and its EWMA of whole-call latency for a
//! plain one: what the caller waits for. `bestLatency` is the lowest among the
//! candidates; a target with no sample yet counts as the best (it gets its fair share
//! until it has one). The 100 ms keeps loopback-scale jitter from mattering. The load
//! factor is Envoy's least-request weighting: with no calls in flight shares follow the
//! weights exactly; a target holding more calls than its share gets fewer new ones.

/// What selection needs to know about a target that may take the call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
  pub index: usize,
  pub weight: f64,
  pub in_flight: u32,
  pub latency_ms: Option<f64>,
}

/// Smoothing for the time factor, so that 1 ms against 3 ms is not a 3× preference.
pub(crate) const LATENCY_FLOOR_MS: f64 = 100.0;

pub(crate) fn score(candidate: &Candidate, best_latency_ms: Option<f64>) -> f64 {
  let load_factor = 1.0 / (1.0 + f64::from(candidate.in_flight));
  let time_factor = match (candidate.latency_ms, best_latency_ms) {
    (Some(latency), Some(best)) => (best + LATENCY_FLOOR_MS) / (latency + LATENCY_FLOOR_MS),
    _ => 1.0,
  };
  candidate.weight * load_factor * time_factor
}

/// A weighted draw; `unit` is a uniform random number in [0, 1). `None` only for an empty
/// slice.
pub(crate) fn choose(candidates: &[Candidate], unit: f64) -> Option<usize> {
  let best_latency = candidates
    .iter()
    .filter_map(|c| c.latency_ms)
    .min_by(f64::total_cmp);
  let scores: Vec<f64> = candidates.iter().map(|c| score(c, best_latency)).collect();
  let total: f64 = scores.iter().sum();
  if !(total.is_finite() && total > 0.0) {
    return candidates.first().map(|c| c.index);
  }
  let mut threshold = unit.clamp(0.0, 1.0) * total;
  for (candidate, score) in candidates.iter().zip(&scores) {
    if threshold < *score {
      return Some(candidate.index);
    }
    threshold -= score;
  }
  candidates.last().map(|c| c.index)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn idle(index: usize, weight: f64) -> Candidate {
    Candidate {
      index,
      weight,
      in_flight: 0,
      latency_ms: None,
    }
  }

  /// Shares of `draws` seeded draws.
  fn shares(candidates: &[Candidate], draws: usize) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts = vec![0usize; candidates.len()];
    for _ in 0..draws {
      let index = choose(candidates, rng.f64()).expect("a candidate");
      counts[index] += 1;
    }
    counts.iter().map(|&n| n as f64 / draws as f64).collect()
  }

  #[test]
  fn with_no_load_shares_follow_the_weights() {
    let shares = shares(&[idle(0, 3.0), idle(1, 1.0), idle(2, 6.0)], 20_000);
    for (share, expected) in shares.iter().zip([0.3, 0.1, 0.6]) {
      assert!((share - expected).abs() < 0.02, "{shares:?}");
    }
  }

  #[test]
  fn a_busy_target_gets_less() {
    let mut busy = idle(0, 1.0);
    busy.in_flight = 3;
    assert!(score(&busy, None) < score(&idle(1, 1.0), None));
    let shares = shares(&[busy, idle(1, 1.0)], 10_000);
    assert!((shares[0] - 0.2).abs() < 0.02, "{shares:?}");
  }

  #[test]
  fn a_slow_target_gets_less() {
    let mut slow = idle(0, 1.0);
    slow.latency_ms = Some(700.0);
    let mut fast = idle(1, 1.0);
    fast.latency_ms = Some(100.0);
    // timeFactor = (100 + 100) / (700 + 100) = 1/4, so the slow one gets 1/5.
    let shares = shares(&[slow, fast], 10_000);
    assert!((shares[0] - 0.2).abs() < 0.02, "{shares:?}");
    // Loopback-scale differences barely matter.
    let mut a = idle(0, 1.0);
    a.latency_ms = Some(1.0);
    let mut b = idle(1, 1.0);
    b.latency_ms = Some(3.0);
    assert!(score(&b, Some(1.0)) > 0.98 * score(&a, Some(1.0)));
  }

  #[test]
  fn a_target_without_samples_counts_as_the_fastest() {
    let mut measured = idle(0, 1.0);
    measured.latency_ms = Some(50.0);
    let fresh = idle(1, 1.0);
    assert_eq!(score(&measured, Some(50.0)), score(&fresh, Some(50.0)));
  }

  #[test]
  fn draws_cover_the_whole_unit_interval() {
    let candidates = [idle(4, 1.0), idle(9, 1.0)];
    assert_eq!(choose(&candidates, 0.0), Some(4));
    assert_eq!(choose(&candidates, 0.999_999), Some(9));
    assert_eq!(choose(&candidates, 1.0), Some(9));
    assert_eq!(choose(&[], 0.5), None);
  }
}
