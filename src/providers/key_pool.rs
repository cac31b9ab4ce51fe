//! Key pools (`apiKeys`): a provider with several keys uses the first that is not resting. A
//! key answered 429 rests for the vendor's retry delay, one answered 401/403 until restart;
//! the request moves to the next key at once, inside the same attempt (the attempt stage
//! sends it again when [`Authorizer::rejected`] says another key may pass), so moving is not
//! a retry. Keys are named outside by a short hash of the key, never by the key.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use super::auth::{AuthFuture, Authorizer, Credential, OutgoingRequest, Rejection};
use super::{Adapter, EmbedAnswer, EmbedBatch, HttpCall, StreamDecoder};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::{ChatRequest, Completion};

/// How long a key answered 429 rests when the vendor named no delay.
pub const DEFAULT_REST: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
  Active,
  Resting {
    until: Instant,
  },
  /// Answered 401/403: not used again until restart.
  Revoked,
}

struct PooledKey {
  id: String,
  /// The header that carries the key, as the provider's adapter sends it.
  header: (String, String),
  state: Mutex<KeyState>,
}

pub struct KeyPool {
  provider: String,
  keys: Vec<PooledKey>,
}

/// A key as `health()` and the metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHealth {
  /// A short hash of the key ("k-1a2b3c4d"), never the key.
  pub id: String,
  /// "active", "resting" or "revoked".
  pub state: &'static str,
  /// Until when a resting key rests (wall clock).
  pub resting_until: Option<SystemTime>,
}

/// The name a key goes by outside: the first 8 hex digits of its SHA-256.
pub fn key_id(key: &str) -> String {
  let digest = Sha256::digest(key.as_bytes());
  let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
  format!("k-{hex}")
}

impl KeyPool {
  /// A pool of `keys` in order, each sent in the header `adapter` puts a key in; CONFIG when
  /// the adapter takes no key that way or a key cannot be a header.
  pub fn new(provider: &str, keys: &[String], adapter: &dyn Adapter) -> Result<KeyPool> {
    let config = |what: String| GatewayError::config(format!("provider '{provider}' {what}"));
    let keys = keys
      .iter()
      .enumerate()
      .map(|(i, key)| {
        if key.is_empty() {
          return Err(config(format!("apiKeys[{i}] is empty")));
        }
        let header = adapter.key_header(key).ok_or_else(|| {
          config(format!(
            "has apiKeys, but {} takes no key pool",
            adapter.vendor()
          ))
        })?;
        let valid = reqwest::header::HeaderName::from_bytes(header.0.as_bytes()).is_ok()
          && reqwest::header::HeaderValue::from_str(&header.1).is_ok();
        if !valid {
          return Err(config(format!(
            "apiKeys[{i}] is not a valid HTTP header value (no control characters such as newlines)"
          )));
        }
        Ok(PooledKey {
          id: key_id(key),
          header,
          state: Mutex::new(KeyState::Active),
        })
      })
      .collect::<Result<Vec<_>>>()?;
    Ok(KeyPool {
      provider: provider.to_string(),
      keys,
    })
  }

  fn state(&self, index: usize) -> KeyState {
    *self.keys[index]
      .state
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  fn set_state(&self, index: usize, state: KeyState) {
    *self.keys[index]
      .state
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
  }

  /// The first key not resting (a rest that is over makes the key active again).
  fn usable(&self, now: Instant) -> Option<usize> {
    (0..self.keys.len()).find(|&index| match self.state(index) {
      KeyState::Active => true,
      KeyState::Resting { until } if until <= now => {
        self.set_state(index, KeyState::Active);
        true
      }
      KeyState::Resting { .. } | KeyState::Revoked => false,
    })
  }

  /// Why no key can be used: RATE_LIMITED until the first rest ends, or AUTHENTICATION when
  /// every key was refused.
  fn exhausted(&self, now: Instant) -> GatewayError {
    let next = (0..self.keys.len())
      .filter_map(|index| match self.state(index) {
        KeyState::Resting { until } => Some(until.saturating_duration_since(now)),
        KeyState::Active | KeyState::Revoked => None,
      })
      .min();
    match next {
      Some(wait) => GatewayError::new(
        ErrorCode::RateLimited,
        format!(
          "every key of provider '{}' is resting after a 429",
          self.provider
        ),
      )
      .with_retry_after(Some(wait))
      .retryable(true),
      None => GatewayError::new(
        ErrorCode::Authentication,
        format!(
          "every key of provider '{}' was refused (401/403); they rest until restart",
          self.provider
        ),
      ),
    }
  }

  pub fn health(&self) -> Vec<KeyHealth> {
    let now = Instant::now();
    let wall = SystemTime::now();
    self
      .keys
      .iter()
      .enumerate()
      .map(|(index, key)| {
        let (state, resting_until) = match self.state(index) {
          KeyState::Resting { until } if until > now => {
            ("resting", Some(wall + until.saturating_duration_since(now)))
          }
          KeyState::Active | KeyState::Resting { .. } => ("active", None),
          KeyState::Revoked => ("revoked", None),
        };
        KeyHealth {
          id: key.id.clone(),
          state,
          resting_until,
        }
      })
      .collect()
  }
}

impl Authorizer for KeyPool {
  fn authorize<'a>(&'a self, request: OutgoingRequest<'a>) -> AuthFuture<'a> {
    Box::pin(async move {
      let now = Instant::now();
      let index = self.usable(now).ok_or_else(|| self.exhausted(now))?;
      request.headers.push(self.keys[index].header.clone());
      Ok(Credential(index as u64))
    })
  }

  fn rejected(&self, credential: Credential, rejection: Rejection) -> bool {
    let Some(index) = usize::try_from(credential.0)
      .ok()
      .filter(|&i| i < self.keys.len())
    else {
      return false;
    };
    let now = Instant::now();
    let state = match rejection.status {
      429 => KeyState::Resting {
        until: now + rejection.retry_after.unwrap_or(DEFAULT_REST),
      },
      401 | 403 => KeyState::Revoked,
      _ => return false,
    };
    self.set_state(index, state);
    self.usable(now).is_some()
  }
}

/// An adapter whose key comes from a pool, per send.
pub struct Pooled {
  pub inner: Box<dyn Adapter>,
  pub pool: std::sync::Arc<KeyPool>,
}

impl Adapter for Pooled {
  fn vendor(&self) -> &'static str {
    self.inner.vendor()
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    self.inner.build(req, stream)
  }

  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    self.inner.parse_response(req, body)
  }

  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
    self.inner.stream_decoder(req)
  }

  fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    self.inner.parse_error(status, headers, body)
  }

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    self.inner.key_header(key)
  }

  fn authorizer(&self) -> Option<&dyn Authorizer> {
    Some(self.pool.as_ref())
  }

  fn health_check(&self) -> Option<HttpCall> {
    // The check's request carries no key of its own: a real call checks with the pool's.
    None
  }

  fn embed_batch_limit(&self) -> usize {
    self.inner.embed_batch_limit()
  }

  fn build_embed(&self, batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    self.inner.build_embed(batch)
  }

  fn parse_embed(&self, body: &[u8], expected: usize) -> Result<EmbedAnswer> {
    self.inner.parse_embed(body, expected)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::providers::openai::OpenAi;

  fn pool(keys: &[&str]) -> KeyPool {
    let adapter = OpenAi {
      base_url: "http://127.0.0.1:9".into(),
      api_key: None,
      organization: None,
      headers: vec![],
    };
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    KeyPool::new("p", &keys, &adapter).expect("pool")
  }

  fn rejection(status: u16, retry_after: Option<Duration>) -> Rejection {
    Rejection {
      status,
      retry_after,
      resends: 0,
    }
  }

  #[test]
  fn the_first_key_serves_until_it_rests_then_the_next() {
    let pool = pool(&["key-a", "key-b", "key-c"]);
    let now = Instant::now();
    assert_eq!(pool.usable(now), Some(0));
    assert!(pool.rejected(Credential(0), rejection(429, Some(Duration::from_secs(30)))));
    assert_eq!(pool.usable(now), Some(1));
    assert!(pool.rejected(Credential(1), rejection(401, None)));
    assert_eq!(pool.usable(now), Some(2));
    // The first key is back once its rest is over; the revoked one never.
    assert_eq!(pool.usable(now + Duration::from_secs(31)), Some(0));
    let states: Vec<&str> = pool.health().iter().map(|k| k.state).collect();
    assert_eq!(states, ["active", "revoked", "active"]);
  }

  #[test]
  fn a_pool_with_no_usable_key_says_why_and_when() {
    let pool = pool(&["key-a", "key-b"]);
    assert!(pool.rejected(Credential(0), rejection(429, Some(Duration::from_secs(5)))));
    assert!(!pool.rejected(Credential(1), rejection(403, None)));
    let error = pool.exhausted(Instant::now());
    assert_eq!(error.code, ErrorCode::RateLimited);
    assert!(error
      .retry_after
      .is_some_and(|wait| wait <= Duration::from_secs(5)));
    let revoked = self::pool(&["key-a"]);
    assert!(!revoked.rejected(Credential(0), rejection(401, None)));
    assert_eq!(
      revoked.exhausted(Instant::now()).code,
      ErrorCode::Authentication
    );
  }

  #[test]
  fn keys_are_named_by_a_short_hash_never_the_key() {
    let pool = pool(&["sk-secret-key-number-one"]);
    let health = pool.health();
    assert_eq!(health[0].id, key_id("sk-secret-key-number-one"));
    assert_eq!(health[0].id.len(), 10);
    assert!(!health[0].id.contains("secret"));
  }
}
