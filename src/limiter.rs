//! `RateLimiter`: requests and tokens per minute per key, GCRA in a store behind
//! [`crate::backend::LimiterStore`]. The pipeline's use of it is `pipeline/limits.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;

pub use crate::backend::gcra::Decision;
use crate::backend::gcra::{Quota, Rate};
use crate::backend::{LimiterStore, MemoryLimiterStore};
use crate::error::{ErrorCode, GatewayError, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimiterOptions {
  pub requests_per_minute: Option<f64>,
  pub tokens_per_minute: Option<f64>,
  /// In requests when `requests_per_minute` is set (the token bucket then holds the same
  /// share of its minute), else in tokens. Default: the whole minute.
  pub burst: Option<f64>,
}

/// Where a limiter keeps its buckets, and what it does when that place cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
  /// In this process: answers at once, never fails.
  Embedded,
  /// On a server shared by processes (Redis). `fail_open`: admit while the server cannot
  /// answer (true) or refuse with UPSTREAM_UNAVAILABLE (false).
  Shared { fail_open: bool },
}

/// Counters of a shared backend's faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterStats {
  /// Store operations that failed (acquire and settle).
  pub store_errors: u64,
  /// Requests admitted unchecked because the store failed and `failOpen` is set.
  pub fail_open_admissions: u64,
}

pub struct RateLimiter {
  quota: Quota,
  store: Arc<dyn LimiterStore>,
  backend: Backend,
  store_errors: AtomicU64,
  fail_open_admissions: AtomicU64,
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

impl LimiterOptions {
  /// The buckets these options describe; CONFIG when they are wrong.
  pub fn quota(&self) -> Result<Quota> {
    let requests = positive("requestsPerMinute", self.requests_per_minute)?;
    let tokens = positive("tokensPerMinute", self.tokens_per_minute)?;
    let burst = positive("burst", self.burst)?;
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
    Ok(Quota {
      requests: requests.map(rate),
      tokens: tokens.map(rate),
    })
  }
}

impl RateLimiter {
  pub fn in_memory(options: LimiterOptions) -> Result<Self> {
    Self::with_store(
      options,
      Arc::new(MemoryLimiterStore::default()),
      Backend::Embedded,
    )
  }

  pub fn with_store(
    options: LimiterOptions,
    store: Arc<dyn LimiterStore>,
    backend: Backend,
  ) -> Result<Self> {
    let quota = options.quota()?;
    Ok(RateLimiter {
      quota,
      store,
      backend,
      store_errors: AtomicU64::new(0),
      fail_open_admissions: AtomicU64::new(0),
    })
  }

  /// Whether calls must be charged in tokens (a token limit is set).
  pub fn counts_tokens(&self) -> bool {
    self.quota.tokens.is_some()
  }

  pub fn backend(&self) -> Backend {
    self.backend
  }

  pub fn stats(&self) -> LimiterStats {
    LimiterStats {
      store_errors: self.store_errors.load(Ordering::Relaxed),
      fail_open_admissions: self.fail_open_admissions.load(Ordering::Relaxed),
    }
  }

  /// Admits one request costing `tokens` for `key`, or refuses it (consuming nothing). A
  /// store that cannot answer is handled by the backend's fault policy.
  pub async fn acquire(&self, key: &str, tokens: u64) -> Result<Decision> {
    match self.store.acquire(key, tokens, &self.quota).await {
      Ok(decision) => Ok(decision),
      Err(error) => {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        let unreachable = error.code == ErrorCode::UpstreamUnavailable;
        match self.backend {
          Backend::Shared { fail_open: true } if unreachable => {
            self.fail_open_admissions.fetch_add(1, Ordering::Relaxed);
            // Nothing is known about the buckets: report them as unbounded.
            Ok(Decision {
              allowed: true,
              retry_after: std::time::Duration::ZERO,
              remaining_requests: u64::MAX,
              remaining_tokens: u64::MAX,
            })
          }
          Backend::Shared { fail_open: false } if unreachable => Err(GatewayError {
            message: format!("{} (the limiter's store is unreachable and failOpen is false, so the call is refused)", error.message),
            ..error
          }),
          _ => Err(error),
        }
      }
    }
  }

  /// `acquire` for the embedded store, which answers at once: `check()` in JS. A shared
  /// store is never polled here, where there is no runtime to finish its round trip.
  pub fn check(&self, key: &str, tokens: u64) -> Result<Decision> {
    if self.backend != Backend::Embedded {
      return Err(GatewayError::config(
        "RateLimiter.check() is synchronous and only works with the in-process limiter; \
         this one keeps its buckets in Redis (redisUrl): use `await limiter.acquire(key, tokens)`",
      ));
    }
    self.acquire(key, tokens).now_or_never().unwrap_or_else(|| {
      Err(GatewayError::config(
        "this limiter backend answers asynchronously; use acquire()",
      ))
    })
  }

  /// Releases a shared store's connection; later calls fail with CONFIG.
  pub fn close(&self) {
    self.store.close();
  }

  /// Replaces an admitted call's estimated token charge with what it really used.
  pub async fn settle(&self, key: &str, estimated: u64, actual: u64) -> Result<()> {
    if !self.counts_tokens() || estimated == actual {
      return Ok(());
    }
    let delta = i64::try_from(actual)
      .unwrap_or(i64::MAX)
      .saturating_sub(i64::try_from(estimated).unwrap_or(i64::MAX));
    let settled = self.store.adjust_tokens(key, delta, &self.quota).await;
    if settled.is_err() {
      self.store_errors.fetch_add(1, Ordering::Relaxed);
    }
    settled
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
