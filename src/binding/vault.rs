//! napi shim over `crate::keyvault`.

use std::sync::{Arc, Mutex, MutexGuard};

use napi_derive::napi;

use super::coded_as;
use crate::error::ErrorCode;
use crate::keyvault::{self, QuotaStatus, VaultError};

fn to_js(error: VaultError) -> napi::Error {
  let code = match error {
    VaultError::UnknownId(_) => ErrorCode::NotFound,
    VaultError::Malformed | VaultError::Tampered | VaultError::NotUtf8 => ErrorCode::InvalidRequest,
    VaultError::EmptySecret | VaultError::Encrypt => ErrorCode::Config,
  };
  coded_as(code, &error.to_string())
}

#[napi(object, object_to_js = false)]
pub struct KeyVaultOptions {
  /// High-entropy secret the AES-256-GCM key is derived from (HKDF-SHA256).
  pub secret: String,
}

#[napi(object, object_to_js = false)]
pub struct KeyVaultEntry {
  /// The provider this key belongs to (a name in `GatewayOptions.providers`).
  pub provider: String,
  /// The provider API key; kept encrypted in memory.
  pub key: Option<String>,
  /// Tokens this id may use per UTC day.
  pub daily_token_quota: Option<f64>,
}

#[napi(object)]
pub struct QuotaInfo {
  pub allowed: bool,
  /// Absent when the id has no quota.
  pub remaining_tokens: Option<f64>,
  pub used_tokens: f64,
  /// Next UTC midnight (Unix ms), when the day's usage resets.
  pub resets_at_ms: f64,
}

fn quota_info(status: QuotaStatus) -> QuotaInfo {
  QuotaInfo {
    allowed: status.allowed,
    remaining_tokens: status.remaining_tokens.map(|t| t as f64),
    used_tokens: status.used_tokens as f64,
    resets_at_ms: status.resets_at_ms as f64,
  }
}

fn now_ms(at: Option<f64>) -> i64 {
  match at {
    Some(ms) if ms.is_finite() => ms as i64,
    _ => std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map(|d| d.as_millis() as i64)
      .unwrap_or(0),
  }
}

fn token_count(tokens: f64) -> napi::Result<u64> {
  if !tokens.is_finite() || tokens < 0.0 || tokens.fract() != 0.0 {
    return Err(coded_as(
      ErrorCode::InvalidRequest,
      "KeyVault: tokens must be a whole number >= 0",
    ));
  }
  Ok(tokens as u64)
}

/// Provider keys sealed with AES-256-GCM, virtual API keys kept as SHA-256 hashes and
/// compared in constant time, per-id daily token quotas (UTC day).
#[napi]
pub struct NativeKeyVault {
  /// Shared with the front doors (`gatewayRouter`) that check keys and quotas against it.
  pub(crate) inner: Arc<Mutex<keyvault::KeyVault>>,
}

impl NativeKeyVault {
  fn vault(&self) -> napi::Result<MutexGuard<'_, keyvault::KeyVault>> {
    // Fails closed: a quota whose counters a panic may have left half-changed is refused.
    self.inner.lock().map_err(|_| {
      coded_as(
        ErrorCode::UpstreamUnavailable,
        "KeyVault: the key store is unavailable",
      )
    })
  }
}

#[napi]
impl NativeKeyVault {
  #[napi(constructor)]
  /// An empty secret is refused by the JS wrapper before this runs, and by every
  /// encryption here.
  pub fn new(options: KeyVaultOptions) -> Self {
    NativeKeyVault {
      inner: Arc::new(Mutex::new(keyvault::KeyVault::new(&options.secret))),
    }
  }

  /// AES-256-GCM with a key derived from `secret` (HKDF-SHA256) and a random 96-bit nonce;
  /// returns `fgv1.<base64url(nonce ‖ ciphertext ‖ tag)>`.
  #[napi]
  pub fn encrypt(plain: String, secret: String) -> napi::Result<String> {
    keyvault::encrypt(&plain, &secret).map_err(to_js)
  }

  /// Fails with INVALID_REQUEST when the token was altered or the secret is wrong.
  #[napi]
  pub fn decrypt(token: String, secret: String) -> napi::Result<String> {
    keyvault::decrypt(&token, &secret).map_err(to_js)
  }

  #[napi]
  pub fn add(&self, id: String, entry: KeyVaultEntry) -> napi::Result<()> {
    let quota = entry.daily_token_quota.map(token_count).transpose()?;
    self
      .vault()?
      .add(&id, &entry.provider, entry.key.as_deref(), quota)
      .map_err(to_js)
  }

  #[napi]
  pub fn provider(&self, id: String) -> napi::Result<String> {
    self
      .vault()?
      .provider(&id)
      .map(str::to_string)
      .map_err(to_js)
  }

  /// The provider key in clear, or null when the entry has none.
  #[napi]
  pub fn get_key(&self, id: String) -> napi::Result<Option<String>> {
    self.vault()?.key(&id).map_err(to_js)
  }

  /// Issues a new random virtual API key for `id`; only its hash is stored, so this is
  /// the only time it can be read.
  #[napi]
  pub fn issue_key(&self, id: String) -> napi::Result<String> {
    self.vault()?.issue_virtual_key(&id).map_err(to_js)
  }

  /// Registers an existing virtual API key for `id` (stored as its SHA-256 hash).
  #[napi]
  pub fn add_virtual_key(&self, key: String, id: String) -> napi::Result<()> {
    self.vault()?.add_virtual_key(&key, &id).map_err(to_js)
  }

  /// The id a virtual key belongs to, or null. Constant-time over every stored hash.
  #[napi]
  pub fn verify(&self, key: String) -> napi::Result<Option<String>> {
    Ok(self.vault()?.verify(&key).map(str::to_string))
  }

  #[napi]
  pub fn check_quota(&self, id: String, now_ms_at: Option<f64>) -> napi::Result<QuotaInfo> {
    self
      .vault()?
      .check_quota(&id, now_ms(now_ms_at))
      .map(quota_info)
      .map_err(to_js)
  }

  #[napi]
  pub fn record_usage(
    &self,
    id: String,
    tokens: f64,
    now_ms_at: Option<f64>,
  ) -> napi::Result<QuotaInfo> {
    let tokens = token_count(tokens)?;
    self
      .vault()?
      .record_usage(&id, tokens, now_ms(now_ms_at))
      .map(quota_info)
      .map_err(to_js)
  }
}
