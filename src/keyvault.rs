//! Provider keys encrypted at rest, virtual API keys stored as hashes, daily token quotas.
//!
//! Encryption: AES-256-GCM with a fresh random 96-bit nonce per token. The AES key is
//! derived from the caller's secret with HKDF-SHA256 (fixed salt and info, see below): HKDF
//! is not a password hash, so the secret should be high-entropy (e.g. 32 random bytes in an
//! environment variable), not a memorable password. A token is
//! `fgv1.` + base64url(nonce ‖ ciphertext ‖ tag), so a later format can change the version.
//! No message produced here contains key material, plain text or the secret.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const TOKEN_PREFIX: &str = "fgv1.";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"ferrogate-keyvault-v1";
const HKDF_INFO: &[u8] = b"aes-256-gcm key";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
  EmptySecret,
  /// Not a token this version wrote (prefix, base64 or length).
  Malformed,
  /// The tag did not verify: the token was altered, or the secret is not the one used to encrypt.
  Tampered,
  NotUtf8,
  UnknownId(String),
  Encrypt,
}

impl std::fmt::Display for VaultError {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      VaultError::EmptySecret => write!(f, "KeyVault: the secret must not be empty"),
      VaultError::Malformed => write!(
        f,
        "KeyVault: not a KeyVault token (expected 'fgv1.' followed by base64url data)"
      ),
      VaultError::Tampered => write!(
        f,
        "KeyVault: decryption failed: the token was altered or the secret is wrong"
      ),
      VaultError::NotUtf8 => write!(f, "KeyVault: the decrypted value is not UTF-8 text"),
      VaultError::UnknownId(id) => write!(f, "KeyVault: no entry with id '{id}'"),
      VaultError::Encrypt => write!(f, "KeyVault: encryption failed"),
    }
  }
}

impl std::error::Error for VaultError {}

fn cipher(secret: &str) -> Result<Aes256Gcm, VaultError> {
  if secret.is_empty() {
    return Err(VaultError::EmptySecret);
  }
  let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret.as_bytes());
  let mut key = [0u8; 32];
  hkdf
    .expand(HKDF_INFO, &mut key)
    .map_err(|_| VaultError::Encrypt)?;
  Ok(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key)))
}

pub fn encrypt(plain: &str, secret: &str) -> Result<String, VaultError> {
  let cipher = cipher(secret)?;
  let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
  let sealed = cipher
    .encrypt(&nonce, plain.as_bytes())
    .map_err(|_| VaultError::Encrypt)?;
  let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
  raw.extend_from_slice(&nonce);
  raw.extend_from_slice(&sealed);
  Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
}

pub fn decrypt(token: &str, secret: &str) -> Result<String, VaultError> {
  let cipher = cipher(secret)?;
  let data = token
    .strip_prefix(TOKEN_PREFIX)
    .ok_or(VaultError::Malformed)?;
  let raw = URL_SAFE_NO_PAD
    .decode(data.trim())
    .map_err(|_| VaultError::Malformed)?;
  if raw.len() < NONCE_LEN + TAG_LEN {
    return Err(VaultError::Malformed);
  }
  let (nonce, sealed) = raw.split_at(NONCE_LEN);
  let plain = cipher
    .decrypt(Nonce::from_slice(nonce), sealed)
    .map_err(|_| VaultError::Tampered)?;
  String::from_utf8(plain).map_err(|_| VaultError::NotUtf8)
}

pub fn sha256(text: &str) -> [u8; 32] {
  Sha256::digest(text.as_bytes()).into()
}

/// The UTC day number of a Unix time in milliseconds.
fn utc_day(now_ms: i64) -> i64 {
  now_ms.div_euclid(DAY_MS)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaStatus {
  pub allowed: bool,
  /// `None` when the entry has no quota.
  pub remaining_tokens: Option<u64>,
  pub used_tokens: u64,
  /// Next UTC midnight, Unix ms.
  pub resets_at_ms: i64,
}

struct Entry {
  provider: String,
  sealed_key: Option<String>,
  daily_token_quota: Option<u64>,
  used_tokens: u64,
  /// Held by calls in flight (`reserve_quota`) until they settle with what they used.
  reserved_tokens: u64,
  day: i64,
}

/// Provider keys by id, each sealed with the vault's secret, and virtual keys (SHA-256
/// hashes) that map a caller's bearer token to an id.
pub struct KeyVault {
  secret: String,
  entries: HashMap<String, Entry>,
  virtual_keys: Vec<([u8; 32], String)>,
}

impl KeyVault {
  /// An empty secret is refused by every encryption (`add` with a key).
  pub fn new(secret: &str) -> KeyVault {
    KeyVault {
      secret: secret.to_string(),
      entries: HashMap::new(),
      virtual_keys: Vec::new(),
    }
  }

  pub fn add(
    &mut self,
    id: &str,
    provider: &str,
    key: Option<&str>,
    daily_token_quota: Option<u64>,
  ) -> Result<(), VaultError> {
    let sealed_key = key.map(|k| encrypt(k, &self.secret)).transpose()?;
    // Adding an existing id replaces its provider, key and quota (a key rotation, a new
    // quota) but keeps what it has used today: re-adding must not hand out a fresh quota.
    let (used_tokens, reserved_tokens, day) =
      self.entries.get(id).map_or((0, 0, i64::MIN), |old| {
        (old.used_tokens, old.reserved_tokens, old.day)
      });
    self.entries.insert(
      id.to_string(),
      Entry {
        provider: provider.to_string(),
        sealed_key,
        daily_token_quota,
        used_tokens,
        reserved_tokens,
        day,
      },
    );
    Ok(())
  }

  pub fn provider(&self, id: &str) -> Result<&str, VaultError> {
    self.entry(id).map(|e| e.provider.as_str())
  }

  /// The provider key in clear, for building a provider.
  pub fn key(&self, id: &str) -> Result<Option<String>, VaultError> {
    match &self.entry(id)?.sealed_key {
      Some(sealed) => decrypt(sealed, &self.secret).map(Some),
      None => Ok(None),
    }
  }

  /// Registers a virtual API key for `id`; only its SHA-256 hash is kept.
  pub fn add_virtual_key(&mut self, virtual_key: &str, id: &str) -> Result<(), VaultError> {
    self.entry(id)?;
    let hash = sha256(virtual_key);
    self
      .virtual_keys
      .retain(|(h, _)| h.ct_eq(&hash).unwrap_u8() == 0);
    self.virtual_keys.push((hash, id.to_string()));
    Ok(())
  }

  /// Issues a new random virtual key for `id` and returns it (the only time it is seen).
  pub fn issue_virtual_key(&mut self, id: &str) -> Result<String, VaultError> {
    let random = Aes256Gcm::generate_key(&mut OsRng);
    let key = format!("fg-{}", URL_SAFE_NO_PAD.encode(random));
    self.add_virtual_key(&key, id)?;
    Ok(key)
  }

  /// The id a virtual key belongs to. Every stored hash is compared in constant time, so
  /// the answer's timing does not depend on which hash (if any) matched, or where.
  pub fn verify(&self, virtual_key: &str) -> Option<&str> {
    let hash = sha256(virtual_key);
    let mut found: Option<&str> = None;
    for (stored, id) in &self.virtual_keys {
      let equal: bool = stored.ct_eq(&hash).into();
      if equal && found.is_none() {
        found = Some(id.as_str());
      }
    }
    found
  }

  pub fn check_quota(&mut self, id: &str, now_ms: i64) -> Result<QuotaStatus, VaultError> {
    let entry = self.entry_mut(id)?;
    Ok(Self::status(entry, now_ms))
  }

  pub fn record_usage(
    &mut self,
    id: &str,
    tokens: u64,
    now_ms: i64,
  ) -> Result<QuotaStatus, VaultError> {
    let entry = self.entry_mut(id)?;
    Self::roll_day(entry, now_ms);
    entry.used_tokens = entry.used_tokens.saturating_add(tokens);
    Ok(Self::status(entry, now_ms))
  }

  /// Holds up to `wanted` tokens of `id`'s quota for a call about to start, so calls in
  /// flight together cannot pass the quota together: refused (`Err` with the status) when
  /// used and held tokens already reach it. Holds at most what is left, so a call whose
  /// output is unbounded holds the rest of the day's quota until it settles. `Ok(0)` when
  /// the id has no quota.
  pub fn reserve_quota(
    &mut self,
    id: &str,
    wanted: u64,
    now_ms: i64,
  ) -> Result<Result<u64, QuotaStatus>, VaultError> {
    let entry = self.entry_mut(id)?;
    Self::roll_day(entry, now_ms);
    let Some(quota) = entry.daily_token_quota else {
      return Ok(Ok(0));
    };
    let left = quota.saturating_sub(entry.used_tokens.saturating_add(entry.reserved_tokens));
    if left == 0 {
      let mut status = Self::status(entry, now_ms);
      status.allowed = false;
      return Ok(Err(status));
    }
    let held = wanted.clamp(1, left);
    entry.reserved_tokens += held;
    Ok(Ok(held))
  }

  /// A call that held `reserved` tokens ended having used `used` (0 for one that never
  /// reached the vendor): the hold is released and the use counted.
  pub fn settle_quota(
    &mut self,
    id: &str,
    reserved: u64,
    used: u64,
    now_ms: i64,
  ) -> Result<QuotaStatus, VaultError> {
    let entry = self.entry_mut(id)?;
    entry.reserved_tokens = entry.reserved_tokens.saturating_sub(reserved);
    Self::roll_day(entry, now_ms);
    entry.used_tokens = entry.used_tokens.saturating_add(used);
    Ok(Self::status(entry, now_ms))
  }

  fn roll_day(entry: &mut Entry, now_ms: i64) {
    let today = utc_day(now_ms);
    if entry.day != today {
      entry.day = today;
      entry.used_tokens = 0;
    }
  }

  fn status(entry: &mut Entry, now_ms: i64) -> QuotaStatus {
    Self::roll_day(entry, now_ms);
    let remaining = entry
      .daily_token_quota
      .map(|quota| quota.saturating_sub(entry.used_tokens));
    QuotaStatus {
      allowed: remaining.is_none_or(|r| r > 0),
      remaining_tokens: remaining,
      used_tokens: entry.used_tokens,
      resets_at_ms: (utc_day(now_ms) + 1).saturating_mul(DAY_MS),
    }
  }

  fn entry(&self, id: &str) -> Result<&Entry, VaultError> {
    self
      .entries
      .get(id)
      .ok_or_else(|| VaultError::UnknownId(id.to_string()))
  }

  fn entry_mut(&mut self, id: &str) -> Result<&mut Entry, VaultError> {
    self
      .entries
      .get_mut(id)
      .ok_or_else(|| VaultError::UnknownId(id.to_string()))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const SECRET: &str = "0123456789abcdef0123456789abcdef";
  const KEY: &str = "sk-live-abcdefghijklmnop";

  #[test]
  fn round_trip_with_a_fresh_nonce_each_time() {
    let a = encrypt(KEY, SECRET).expect("a");
    let b = encrypt(KEY, SECRET).expect("b");
    assert_ne!(a, b);
    assert!(a.starts_with("fgv1."));
    assert_eq!(decrypt(&a, SECRET).expect("decrypt"), KEY);
  }

  #[test]
  fn tampering_and_a_wrong_secret_are_detected_without_leaking() {
    let token = encrypt(KEY, SECRET).expect("token");
    let mut bytes = URL_SAFE_NO_PAD.decode(&token[5..]).expect("b64");
    for i in [0, NONCE_LEN, bytes.len() - 1] {
      bytes[i] ^= 1;
      let altered = format!("fgv1.{}", URL_SAFE_NO_PAD.encode(&bytes));
      assert_eq!(decrypt(&altered, SECRET), Err(VaultError::Tampered));
      bytes[i] ^= 1;
    }
    let wrong = decrypt(&token, "another secret").expect_err("wrong secret");
    assert_eq!(wrong, VaultError::Tampered);
    for message in [wrong.to_string(), VaultError::Malformed.to_string()] {
      assert!(!message.contains(KEY) && !message.contains(SECRET));
    }
    assert_eq!(decrypt("fgv1.AAAA", SECRET), Err(VaultError::Malformed));
    assert_eq!(decrypt(KEY, SECRET), Err(VaultError::Malformed));
    assert_eq!(encrypt(KEY, ""), Err(VaultError::EmptySecret));
  }

  #[test]
  fn virtual_keys_resolve_to_their_id() {
    let mut vault = KeyVault::new(SECRET);
    vault.add("team-a", "openai", Some(KEY), None).expect("add");
    vault.add("team-b", "openai", None, None).expect("add");
    let issued = vault.issue_virtual_key("team-a").expect("issue");
    vault.add_virtual_key("vk-b", "team-b").expect("vk");
    assert_eq!(vault.verify(&issued), Some("team-a"));
    assert_eq!(vault.verify("vk-b"), Some("team-b"));
    assert_eq!(vault.verify("vk-c"), None);
    assert_eq!(vault.key("team-a").expect("key").as_deref(), Some(KEY));
    assert!(vault.add_virtual_key("x", "nobody").is_err());
  }

  #[test]
  fn quota_reservations_keep_concurrent_calls_under_the_quota() {
    let mut vault = KeyVault::new("s");
    vault.add("t", "p", None, Some(10)).expect("add");
    let now = 1_000;
    // An unbounded call holds the rest of the quota: the next one is refused at once.
    assert_eq!(vault.reserve_quota("t", u64::MAX, now).expect("ok"), Ok(10));
    assert!(vault.reserve_quota("t", 5, now).expect("ok").is_err());
    vault.settle_quota("t", 10, 4, now).expect("settle");
    assert_eq!(vault.reserve_quota("t", 3, now).expect("ok"), Ok(3));
    assert_eq!(vault.reserve_quota("t", 50, now).expect("ok"), Ok(3));
    assert!(vault.reserve_quota("t", 1, now).expect("ok").is_err());
    vault.add("free", "p", None, None).expect("add");
    assert_eq!(vault.reserve_quota("free", 50, now).expect("ok"), Ok(0));
  }

  #[test]
  fn quotas_reset_at_utc_midnight() {
    let mut vault = KeyVault::new(SECRET);
    vault.add("t", "openai", None, Some(100)).expect("add");
    let day = 20_000 * DAY_MS;
    let late = day + DAY_MS - 1;
    assert_eq!(
      vault
        .record_usage("t", 60, day)
        .expect("use")
        .remaining_tokens,
      Some(40)
    );
    let spent = vault.record_usage("t", 60, late).expect("use");
    assert!(!spent.allowed);
    assert_eq!(spent.resets_at_ms, day + DAY_MS);
    let next = vault.check_quota("t", day + DAY_MS).expect("check");
    assert!(next.allowed);
    assert_eq!(next.remaining_tokens, Some(100));
  }
}
