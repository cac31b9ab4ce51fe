//! `RateLimiter` for JS: a thin shim over [`crate::limiter::RateLimiter`].

use std::sync::Arc;

use napi_derive::napi;

use super::cache::{connect_in_background, whole, RedisLink, DEFAULT_REDIS_PREFIX};
use super::{coded, invalid_arg};
use crate::backend::redis_limiter::RedisLimiterStore;
use crate::error::GatewayError;
use crate::limiter::{Backend, Decision, LimiterOptions, RateLimiter};

#[napi(object, object_to_js = false)]
pub struct RateLimiterOptions {
  pub requests_per_minute: Option<f64>,
  pub tokens_per_minute: Option<f64>,
  /// How much of a minute a key may spend at once (default: all of it). In requests when
  /// `requestsPerMinute` is set (the token bucket then holds the same share of its
  /// minute), else in tokens.
  pub burst: Option<f64>,
  /// Keeps the buckets in Redis, shared by every process using the same URL and prefix;
  /// `check()` then throws (use `acquire()`). The constructor returns at once and connects in the background
  /// (`await open()` waits for the connection).
  pub redis_url: Option<String>,
  /// With `redisUrl`: while Redis cannot answer, admit calls (true) or refuse them with
  /// UPSTREAM_UNAVAILABLE (false, the default).
  pub fail_open: Option<bool>,
  /// With `redisUrl`: prepended to every Redis key (default "ferrogate:").
  pub prefix: Option<String>,
}

#[napi(object)]
pub struct RateLimiterStats {
  /// "memory" or "redis".
  pub backend: String,
  /// Redis operations that failed (admissions and token settlements).
  pub store_errors: f64,
  /// Requests admitted unchecked because Redis failed and `failOpen` is set.
  pub fail_open_admissions: f64,
}

#[napi(object)]
pub struct RateLimitDecision {
  pub allowed: bool,
  /// 0 when allowed; else how long until the same request would be.
  pub retry_after_ms: f64,
  /// Infinity when there is no request limit.
  pub remaining_requests: f64,
  /// Infinity when there is no token limit.
  pub remaining_tokens: f64,
}

/// The native rate limiter. Use `RateLimiter` from the package.
#[napi]
pub struct NativeRateLimiter {
  pub(crate) inner: Arc<RateLimiter>,
  redis: Option<RedisLink>,
}

fn parse_tokens(value: Option<f64>) -> napi::Result<u64> {
  value.map_or(Ok(0), |n| whole("tokens", n, 0.0).map_err(invalid_arg))
}

fn decision(decision: Decision) -> RateLimitDecision {
  let remaining = |n: u64| {
    if n == u64::MAX {
      f64::INFINITY
    } else {
      n as f64
    }
  };
  RateLimitDecision {
    allowed: decision.allowed,
    retry_after_ms: (decision.retry_after.as_secs_f64() * 1000.0).ceil(),
    remaining_requests: remaining(decision.remaining_requests),
    remaining_tokens: remaining(decision.remaining_tokens),
  }
}

#[napi]
impl NativeRateLimiter {
  #[napi(constructor, catch_unwind)]
  pub fn new(options: RateLimiterOptions) -> napi::Result<Self> {
    let limits = LimiterOptions {
      requests_per_minute: options.requests_per_minute,
      tokens_per_minute: options.tokens_per_minute,
      burst: options.burst,
    };
    let Some(url) = options.redis_url else {
      // Options that only mean something on Redis are a mistake without it, not a no-op.
      if options.prefix.is_some() || options.fail_open.is_some() {
        return Err(invalid_arg(GatewayError::config(
          "prefix and failOpen need redisUrl (they apply to the shared store only)",
        )));
      }
      let limiter = RateLimiter::in_memory(limits).map_err(invalid_arg)?;
      return Ok(NativeRateLimiter {
        inner: Arc::new(limiter),
        redis: None,
      });
    };
    // Wrong options are reported before a connection is tried.
    limits.quota().map_err(invalid_arg)?;
    let connection = connect_in_background("RateLimiter", &url).map_err(coded)?;
    let link = RedisLink::new("RateLimiter", &url, &connection);
    let prefix = options.prefix.as_deref().unwrap_or(DEFAULT_REDIS_PREFIX);
    let store = RedisLimiterStore::new(connection, &url, prefix);
    let backend = Backend::Shared {
      fail_open: options.fail_open.unwrap_or(false),
    };
    let limiter = RateLimiter::with_store(limits, Arc::new(store), backend).map_err(invalid_arg)?;
    Ok(NativeRateLimiter {
      inner: Arc::new(limiter),
      redis: Some(link),
    })
  }

  /// Resolves once Redis answers (at once without `redisUrl`); rejects with
  /// UPSTREAM_UNAVAILABLE naming the server (never its password) when it cannot be reached
  /// within the connect timeout.
  #[napi]
  pub async fn open(&self) -> napi::Result<()> {
    RedisLink::open(self.redis.as_ref()).await
  }

  /// Admits one request costing `tokens` for `key`, or refuses it (consuming nothing).
  #[napi]
  pub fn check(&self, key: String, tokens: Option<f64>) -> napi::Result<RateLimitDecision> {
    let tokens = parse_tokens(tokens)?;
    self.inner.check(&key, tokens).map(decision).map_err(coded)
  }

  /// `check` for every backend, local or shared.
  #[napi]
  pub async fn acquire(&self, key: String, tokens: Option<f64>) -> napi::Result<RateLimitDecision> {
    let tokens = parse_tokens(tokens)?;
    self
      .inner
      .acquire(&key, tokens)
      .await
      .map(decision)
      .map_err(coded)
  }

  #[napi]
  pub fn stats(&self) -> RateLimiterStats {
    let stats = self.inner.stats();
    RateLimiterStats {
      backend: match self.inner.backend() {
        Backend::Embedded => "memory".into(),
        Backend::Shared { .. } => "redis".into(),
      },
      store_errors: stats.store_errors as f64,
      fail_open_admissions: stats.fail_open_admissions as f64,
    }
  }

  /// Releases the Redis connection; later calls fail with CONFIG.
  #[napi]
  pub fn close(&self) {
    self.inner.close();
  }
}
