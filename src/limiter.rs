//! `RateLimiter`: requests and tokens per minute per key, GCRA in a store behind
//! [`crate::backend::LimiterStore`]. The pipeline's use of it is `pipeline/limits.rs`.

use std::sync::Arc;

use futures_util::FutureExt;

pub use crate::backend::gcra::Decision;
use crate::backend::gcra::{Quota, Rate};
use crate::backend::{LimiterStore, MemoryLimiterStore};
use crate::error::{GatewayError, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimiterOptions {
  pub requests_per_minute: Option<f64>,
  pub tokens_per_minute: Option<f64>,
  /// In requests when `requests_per_minute` is set (the token bucket then holds the same
  /// share of its minute), else in tokens. Default: the whole minute.
  pub burst: Option<f64>,
}

pub struct RateLimiter {
  quota: Quota,
  store: Arc<dyn LimiterStore>,
}

impl std::fmt::Debug for RateLimiter {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("RateLimiter")
      .field("quota", &self.quota)
      .finish_non_exhaustive()
  }
}

fn positive(name: &str, value: Option<f64>) -> Result<Option<f64>> {
  match value {
    Some(v) if !(v.is_finite() && v > 0.0) => Err(GatewayError::config(format!(
      "{name} must be a positive finite number, not {v}"
    ))),
    other => Ok(other),
  }
}

impl RateLimiter {
  pub fn in_memory(options: LimiterOptions) -> Result<Self> {
    Self::with_store(options, Arc::new(MemoryLimiterStore::default()))
  }

  pub fn with_store(options: LimiterOptions, store: Arc<dyn LimiterStore>) -> Result<Self> {
    let requests = positive("requestsPerMinute", options.requests_per_minute)?;
    let tokens = positive("tokensPerMinute", options.tokens_per_minute)?;
    let burst = positive("burst", options.burst)?;
    if requests.is_none() && tokens.is_none() {
      return Err(GatewayError::config(
        "a RateLimiter needs requestsPerMinute, tokensPerMinute or both",
      ));
    }
    // The share of a minute one burst may spend at once.
    let share = match (burst, requests, tokens) {
      (None, _, _) => 1.0,
      (Some(burst), Some(rpm), _) => burst / rpm,
      (Some(burst), None, Some(tpm)) => burst / tpm,
      (Some(_), None, None) => 1.0,
    };
    let rate = |per_minute: f64| Rate {
      per_minute,
      burst: (per_minute * share).max(1.0),
    };
    Ok(RateLimiter {
      quota: Quota {
        requests: requests.map(rate),
        tokens: tokens.map(rate),
      },
      store,
    })
  }

  /// Whether calls must be charged in tokens (a token limit is set).
  pub fn counts_tokens(&self) -> bool {
    self.quota.tokens.is_some()
  }

  pub async fn acquire(&self, key: &str, tokens: u64) -> Result<Decision> {
    self.store.acquire(key, tokens, &self.quota).await
  }

  /// `acquire` for a store that answers at once (the embedded one): `check()` in JS.
  pub fn check(&self, key: &str, tokens: u64) -> Result<Decision> {
    self.acquire(key, tokens).now_or_never().unwrap_or_else(|| {
      Err(GatewayError::config(
        "this limiter backend answers asynchronously; use acquire()",
      ))
    })
  }

  /// Replaces an admitted call's estimated token charge with what it really used.
  pub async fn settle(&self, key: &str, estimated: u64, actual: u64) -> Result<()> {
    if !self.counts_tokens() || estimated == actual {
      return Ok(());
    }
    let delta = i64::try_from(actual)
      .unwrap_or(i64::MAX)
      .saturating_sub(i64::try_from(estimated).unwrap_or(i64::MAX));
    self.store.adjust_tokens(key, delta, &self.quota).await
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn burst_is_in_requests_and_scales_the_token_bucket() {
    let limiter = RateLimiter::in_memory(LimiterOptions {
      requests_per_minute: Some(600.0),
      tokens_per_minute: Some(60_000.0),
      burst: Some(60.0),
    })
    .expect("limiter");
    let rate = limiter.quota.tokens.expect("tokens");
    assert_eq!(rate.burst, 6_000.0);
    assert_eq!(limiter.quota.requests.expect("requests").burst, 60.0);
    let admitted = (0..1000)
      .filter(|_| limiter.check("k", 0).expect("check").allowed)
      .count();
    // 600 per minute refills one every 100 ms: a slow machine may see one more.
    assert!((60..=61).contains(&admitted), "{admitted}");
  }

  #[test]
  fn bad_options_are_config_errors() {
    for options in [
      LimiterOptions::default(),
      LimiterOptions {
        requests_per_minute: Some(-1.0),
        ..LimiterOptions::default()
      },
      LimiterOptions {
        tokens_per_minute: Some(f64::NAN),
        ..LimiterOptions::default()
      },
      LimiterOptions {
        requests_per_minute: Some(10.0),
        burst: Some(0.0),
        ..LimiterOptions::default()
      },
    ] {
      let error = RateLimiter::in_memory(options).expect_err("refused");
      assert_eq!(error.code, crate::error::ErrorCode::Config);
    }
  }
}
