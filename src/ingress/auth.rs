//! Who is calling: the caller's key (from `Authorization: Bearer`, `x-api-key` or `api-key`),
//! the identity the pipeline's limits, budgets and ledger key on, and the key's daily token
//! quota, held by reservation before the call and settled with what it used after it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Headers;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::keyvault::{self, KeyVault};

/// A virtual key of `ferrogate serve`'s config.
pub struct ServeKey {
  pub key: String,
  /// The caller's identity; default `key-N`.
  pub user: Option<String>,
  pub daily_token_quota: Option<u64>,
}

/// What the front door checks keys against.
#[derive(Clone)]
pub enum Keys {
  /// No keys: every caller is let in, and the body's `user` is the identity.
  Open,
  /// Virtual keys in a KeyVault (serve's config, or a JS `KeyVault`): verified and
  /// quota-checked here. `users` maps a vault id to the identity it stands for (serve's
  /// keys each have their own quota entry; several may share one `user`).
  Vault {
    vault: Arc<Mutex<KeyVault>>,
    users: Arc<HashMap<String, String>>,
  },
  /// A JS key function decides (`gatewayRouter(gw, { keys: (key) => … })`); its verdict
  /// arrives with the request.
  Function,
}

/// A key function's answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyVerdict {
  Refused,
  /// `true`: the caller's identity is a hash of the key.
  Allowed,
  /// A string: the caller's identity.
  User(String),
}

/// An authenticated caller.
pub struct Caller {
  /// The identity the pipeline keys on (`request.user`); never the body's `user` when keys
  /// are configured.
  pub user: String,
  /// The KeyVault entry whose quota the call is held against.
  quota: Option<(Arc<Mutex<KeyVault>>, String)>,
}

impl Keys {
  /// serve's keys: each key its own vault entry (so each key's own quota counts), with the
  /// `user` it stands for. Only hashes of the keys are kept.
  pub fn from_serve_keys(keys: Vec<ServeKey>) -> Result<Keys> {
    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let mut vault = KeyVault::new(&secret);
    let mut users = HashMap::new();
    for (i, entry) in keys.into_iter().enumerate() {
      if entry.key.is_empty() {
        return Err(GatewayError::config(format!(
          "keys[{i}].key must be a non-empty string"
        )));
      }
      let id = format!("key-{}", i + 1);
      vault
        .add(&id, "", None, entry.daily_token_quota)
        .and_then(|()| vault.add_virtual_key(&entry.key, &id))
        .map_err(|e| GatewayError::config(e.to_string()))?;
      users.insert(id.clone(), entry.user.unwrap_or(id));
    }
    Ok(Keys::Vault {
      vault: Arc::new(Mutex::new(vault)),
      users: Arc::new(users),
    })
  }

  pub fn is_open(&self) -> bool {
    matches!(self, Keys::Open)
  }

  /// The caller, `None` without keys; AUTHENTICATION (401) for a missing or wrong key.
  /// `verdict` is the key function's answer (`Keys::Function` only).
  pub fn authenticate(
    &self,
    headers: Headers<'_>,
    verdict: Option<&KeyVerdict>,
  ) -> Result<Option<Caller>> {
    if self.is_open() {
      return Ok(None);
    }
    let Some(key) = caller_key(headers) else {
      return Err(GatewayError::new(
        ErrorCode::Authentication,
        "You didn't provide an API key. Send it as Authorization: Bearer <key> (or x-api-key).",
      ));
    };
    let wrong = || GatewayError::new(ErrorCode::Authentication, "Incorrect API key provided.");
    match self {
      Keys::Open => Ok(None),
      Keys::Vault { vault, users } => {
        let vault_ref = vault.clone();
        let guard = vault.lock().map_err(|_| key_store_unavailable())?;
        let id = guard.verify(key).ok_or_else(wrong)?.to_string();
        let user = users.get(&id).cloned().unwrap_or_else(|| id.clone());
        Ok(Some(Caller {
          user,
          quota: Some((vault_ref, id)),
        }))
      }
      Keys::Function => match verdict {
        Some(KeyVerdict::Allowed) => Ok(Some(Caller {
          user: key_identity(key),
          quota: None,
        })),
        Some(KeyVerdict::User(user)) => Ok(Some(Caller {
          user: user.clone(),
          quota: None,
        })),
        Some(KeyVerdict::Refused) | None => Err(wrong()),
      },
    }
  }
}

/// The caller's key: `Authorization: Bearer <key>`, else `x-api-key` (Anthropic's clients),
/// else `api-key` (Azure OpenAI's).
pub fn caller_key<'a>(headers: Headers<'a>) -> Option<&'a str> {
  let bearer = headers.get("authorization").and_then(|value| {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
  });
  bearer
    .or_else(|| headers.get("x-api-key").map(str::trim))
    .or_else(|| headers.get("api-key").map(str::trim))
    .filter(|key| !key.is_empty())
}

/// The identity of a caller a key function let in without naming it: a hash of the key,
/// so that no caller can choose (or learn) another's.
pub fn key_identity(key: &str) -> String {
  let hash = keyvault::sha256(key);
  let mut out = String::from("key:");
  for byte in &hash[..12] {
    let _ = write!(out, "{byte:02x}");
  }
  out
}

fn key_store_unavailable() -> GatewayError {
  // Fails closed: a quota that cannot be read is not a quota that passes.
  GatewayError::new(
    ErrorCode::UpstreamUnavailable,
    "the key store is unavailable; try again",
  )
}

pub(crate) fn now_ms() -> i64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    .unwrap_or(0)
}

/// Tokens of a key's quota held by one call in flight; released (nothing used) when dropped
/// unsettled, e.g. when the call never reached the vendor.
pub struct QuotaHold {
  vault: Arc<Mutex<KeyVault>>,
  id: String,
  held: u64,
  settled: bool,
}

impl Caller {
  /// Holds up to `wanted` tokens of the caller's key quota (prompt plus the most the answer
  /// may use). RATE_LIMITED (429, with the time to the quota's
  /// reset) when the quota is used up or held by calls in flight.
  pub fn reserve(&self, wanted: u64) -> Result<Option<QuotaHold>> {
    let Some((vault, id)) = &self.quota else {
      return Ok(None);
    };
    let now = now_ms();
    let reserved = vault
      .lock()
      .map_err(|_| key_store_unavailable())?
      .reserve_quota(id, wanted, now)
      .map_err(|e| GatewayError::new(ErrorCode::NotFound, e.to_string()))?;
    match reserved {
      Ok(held) => Ok(Some(QuotaHold {
        vault: vault.clone(),
        id: id.clone(),
        held,
        settled: false,
      })),
      Err(status) => {
        let mut error = GatewayError::new(
          ErrorCode::RateLimited,
          "this API key has used its daily token quota",
        );
        error.retry_after = Some(Duration::from_millis(
          u64::try_from(status.resets_at_ms - now).unwrap_or(0),
        ));
        Err(error)
      }
    }
  }
}

impl QuotaHold {
  /// The call ended having used `tokens` (billed usage: a stream cut off is charged its
  /// prompt and delivered output).
  pub fn settle(mut self, tokens: u64) {
    self.release(tokens);
  }

  fn release(&mut self, tokens: u64) {
    if std::mem::replace(&mut self.settled, true) {
      return;
    }
    // A poisoned lock still holds intact counters (each change is one statement).
    let mut vault = self
      .vault
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = vault.settle_quota(&self.id, self.held, tokens, now_ms());
  }
}

impl Drop for QuotaHold {
  fn drop(&mut self) {
    self.release(0);
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
      .iter()
      .map(|(k, v)| (k.to_string(), v.to_string()))
      .collect()
  }

  #[test]
  fn keys_come_from_bearer_x_api_key_or_api_key() {
    for pairs in [
      headers(&[("authorization", "Bearer k1")]),
      headers(&[("x-api-key", "k1")]),
      headers(&[("api-key", "k1")]),
    ] {
      assert_eq!(caller_key(Headers::new(&pairs)), Some("k1"));
    }
    assert_eq!(
      caller_key(Headers::new(&headers(&[("authorization", "Basic x")]))),
      None
    );
  }

  #[test]
  fn each_key_counts_its_own_quota_and_identity_is_never_chosen_by_the_caller() {
    let keys = Keys::from_serve_keys(vec![
      ServeKey {
        key: "a".into(),
        user: Some("alice".into()),
        daily_token_quota: Some(5),
      },
      ServeKey {
        key: "b".into(),
        user: Some("alice".into()),
        daily_token_quota: Some(100),
      },
    ])
    .expect("keys");
    let auth = |key: &str| {
      let pairs = headers(&[("authorization", &format!("Bearer {key}"))]);
      keys.authenticate(Headers::new(&pairs), None)
    };
    let a = auth("a").expect("a").expect("caller");
    let b = auth("b").expect("b").expect("caller");
    assert_eq!((a.user.as_str(), b.user.as_str()), ("alice", "alice"));
    let hold = a.reserve(u64::MAX).expect("held").expect("hold");
    assert_eq!(
      a.reserve(1).map(|_| ()).expect_err("quota").code,
      ErrorCode::RateLimited
    );
    assert!(b.reserve(50).expect("b's own quota").is_some());
    hold.settle(2);
    assert!(a.reserve(1).expect("released").is_some());
    assert_eq!(
      auth("c").map(|_| ()).expect_err("wrong").code,
      ErrorCode::Authentication
    );

    let pairs = headers(&[("x-api-key", "secret")]);
    let caller = Keys::Function
      .authenticate(Headers::new(&pairs), Some(&KeyVerdict::Allowed))
      .expect("ok")
      .expect("caller");
    assert_eq!(caller.user, key_identity("secret"));
    assert!(!caller.user.contains("secret"));
  }

  #[test]
  fn a_poisoned_key_store_fails_closed() {
    let keys = Keys::from_serve_keys(vec![ServeKey {
      key: "a".into(),
      user: None,
      daily_token_quota: Some(5),
    }])
    .expect("keys");
    let pairs = headers(&[("authorization", "Bearer a")]);
    let caller = keys
      .authenticate(Headers::new(&pairs), None)
      .expect("ok")
      .expect("caller");
    if let Keys::Vault { vault, .. } = &keys {
      let vault = vault.clone();
      let _ = std::thread::spawn(move || {
        let _guard = vault.lock();
        panic!("poison the lock");
      })
      .join();
    }
    let error = caller.reserve(1).map(|_| ()).expect_err("closed");
    assert_eq!(error.code, ErrorCode::UpstreamUnavailable);
  }
}
