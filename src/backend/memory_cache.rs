//! The embedded cache store: one least-recently-used map (hashlink's `LinkedHashMap`) behind
//! a mutex, bounded by entries and by bytes (each answer's strings plus a fixed overhead),
//! with a default and a per-entry time to live.
//!
//! Why not moka: every moka write goes through its write-op channel, frequency sketch and
//! housekeeping, which cost a call with a cache miss about as much as the rest of the
//! gateway's stages together (`bench/cpu-per-call.mjs ferrogate-chat+cache`). Here a lookup
//! or a store is a hash, a list splice and, when full, an eviction, all under one lock held
//! for well under a microsecond: a lock that short is never where concurrent calls wait.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use hashlink::LinkedHashMap;

use super::{CacheStore, StoreUsage};
use crate::error::Result;
use crate::types::ChatResponse;

/// Bookkeeping per entry beyond the strings themselves (struct, map node, usage).
const ENTRY_OVERHEAD_BYTES: u64 = 256;
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Entries at the least-recently-used end looked at for expiry on each store: an expired
/// answer nobody asks for again leaves without waiting for the bounds to push it out.
const EXPIRED_CHECKED_PER_STORE: usize = 2;

struct Entry {
  response: Arc<ChatResponse>,
  bytes: u64,
  expires_at: Option<Instant>,
}

impl Entry {
  fn expired(&self, now: Instant) -> bool {
    self.expires_at.is_some_and(|at| at <= now)
  }
}

/// Bounds of a memory store; `None` means unbounded on that axis.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryCacheLimits {
  pub max_entries: Option<u64>,
  pub max_bytes: Option<u64>,
  pub ttl: Option<Duration>,
}

/// Least recently used at the front.
#[derive(Default)]
struct Entries {
  map: LinkedHashMap<String, Entry>,
  bytes: u64,
}

impl Entries {
  fn remove(&mut self, key: &str) -> Option<Entry> {
    let entry = self.map.remove(key)?;
    self.bytes -= entry.bytes;
    Some(entry)
  }

  fn pop_least_recent(&mut self) -> bool {
    match self.map.pop_front() {
      Some((_, entry)) => {
        self.bytes -= entry.bytes;
        true
      }
      None => false,
    }
  }

  fn drop_expired(&mut self, now: Instant) {
    self.retain(|_, entry| !entry.expired(now));
  }

  /// Keeps the entries `keep` accepts, the byte count following.
  fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
    let mut freed = 0;
    self.map.retain(|key, entry| {
      let kept = keep(key, entry);
      if !kept {
        freed += entry.bytes;
      }
      kept
    });
    self.bytes -= freed;
  }
}

pub struct MemoryCacheStore {
  entries: Mutex<Entries>,
  max_entries: u64,
  max_bytes: Option<u64>,
  default_ttl: Option<Duration>,
}

impl MemoryCacheStore {
  pub fn new(limits: MemoryCacheLimits) -> Self {
    // Bounded by bytes alone, the count is not capped; with neither, the default count is.
    let max_entries = match (limits.max_entries, limits.max_bytes) {
      (Some(entries), _) => entries,
      (None, Some(_)) => u64::MAX,
      (None, None) => DEFAULT_MAX_ENTRIES,
    };
    MemoryCacheStore {
      entries: Mutex::new(Entries::default()),
      max_entries,
      max_bytes: limits.max_bytes,
      default_ttl: limits.ttl,
    }
  }

  fn lock(&self) -> MutexGuard<'_, Entries> {
    // The map is consistent between statements: a panic elsewhere leaves nothing half-done.
    self
      .entries
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }

  /// Reads without the boxed future, for the synchronous JS path; a read makes the entry the
  /// most recently used.
  pub fn get_now(&self, key: &str) -> Option<Arc<ChatResponse>> {
    let mut entries = self.lock();
    let entry = entries.map.to_back(key)?;
    if entry.expired(Instant::now()) {
      entries.remove(key);
      return None;
    }
    Some(entry.response.clone())
  }

  /// Writes without the boxed future. `ttl` overrides the store's default. An answer larger
  /// than the whole byte bound is not kept (it would push out everything else and then
  /// itself).
  pub fn insert(&self, key: String, value: Arc<ChatResponse>, ttl: Option<Duration>) {
    let bytes = entry_bytes(&key, &value);
    let now = Instant::now();
    let entry = Entry {
      response: value,
      bytes,
      expires_at: ttl.or(self.default_ttl).map(|ttl| now + ttl),
    };
    let mut entries = self.lock();
    entries.remove(&key);
    if self.max_bytes.is_some_and(|max| bytes > max) || self.max_entries == 0 {
      return;
    }
    for _ in 0..EXPIRED_CHECKED_PER_STORE {
      match entries.map.front() {
        Some((_, oldest)) if oldest.expired(now) => entries.pop_least_recent(),
        _ => break,
      };
    }
    while entries.map.len() as u64 >= self.max_entries
      || self
        .max_bytes
        .is_some_and(|max| entries.bytes + bytes > max)
    {
      if !entries.pop_least_recent() {
        break;
      }
    }
    entries.bytes += bytes;
    entries.map.insert(key, entry);
  }
}

/// What an answer costs to keep: its strings plus a fixed overhead.
pub fn entry_bytes(key: &str, response: &ChatResponse) -> u64 {
  let calls: usize = response
    .tool_calls
    .iter()
    .map(|call| call.id.len() + call.name.len() + call.arguments.len())
    .sum();
  let strings = key.len()
    + response.id.len()
    + response.provider.len()
    + response.model.len()
    + response.content.len()
    + response.refusal.as_ref().map_or(0, String::len)
    + calls
    + response.embeddings.as_ref().map_or(0, |vectors| {
      vectors
        .iter()
        .map(|v| v.len() * std::mem::size_of::<f32>())
        .sum()
    });
  strings as u64 + ENTRY_OVERHEAD_BYTES
}

impl CacheStore for MemoryCacheStore {
  fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<ChatResponse>>>> {
    future::ready(Ok(self.get_now(key))).boxed()
  }

  fn set(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> BoxFuture<'_, Result<()>> {
    self.insert(key, value, ttl);
    future::ready(Ok(())).boxed()
  }

  fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
    let mut entries = self.lock();
    let found = entries
      .remove(key)
      .is_some_and(|entry| !entry.expired(Instant::now()));
    future::ready(Ok(found)).boxed()
  }

  /// A memory store belongs to one `ResponseCache`, hence to one namespace: clearing
  /// that namespace empties it.
  fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>> {
    let mut entries = self.lock();
    if prefix.is_empty() {
      *entries = Entries::default();
    } else {
      // Only this namespace: several caches (namespaces) may share one store.
      entries.retain(|key, _| !key.starts_with(prefix));
    }
    future::ready(Ok(())).boxed()
  }

  /// Expired entries are dropped first, so the figures are what a lookup could still find.
  fn usage(&self) -> StoreUsage {
    let mut entries = self.lock();
    entries.drop_expired(Instant::now());
    StoreUsage {
      entries: entries.map.len() as u64,
      bytes: entries.bytes,
      ..StoreUsage::default()
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::cache::tests::answer;

  fn store(max_entries: Option<u64>, max_bytes: Option<u64>) -> MemoryCacheStore {
    MemoryCacheStore::new(MemoryCacheLimits {
      max_entries,
      max_bytes,
      ttl: None,
    })
  }

  #[test]
  fn the_least_recently_used_entry_makes_room() {
    let cache = store(Some(3), None);
    for key in ["a", "b", "c"] {
      cache.insert(key.into(), answer(key), None);
    }
    assert!(
      cache.get_now("a").is_some(),
      "a read makes `a` the most recent"
    );
    cache.insert("d".into(), answer("d"), None);
    assert!(
      cache.get_now("b").is_none(),
      "b was the least recently used"
    );
    for key in ["a", "c", "d"] {
      assert!(cache.get_now(key).is_some(), "{key} is kept");
    }
    assert_eq!(cache.usage().entries, 3);
  }

  #[test]
  fn the_byte_count_follows_every_insert_replace_and_removal() {
    let cache = store(None, Some(2_000));
    let size = entry_bytes("k", &answer(&"x".repeat(300)));
    cache.insert("k".into(), answer(&"x".repeat(300)), None);
    cache.insert("k".into(), answer(&"x".repeat(300)), None);
    assert_eq!(
      cache.usage().bytes,
      size,
      "a replaced entry is counted once"
    );
    for i in 0..20 {
      cache.insert(format!("k{i}"), answer(&"x".repeat(300)), None);
    }
    let usage = cache.usage();
    assert!(usage.bytes <= 2_000, "{usage:?}");
    assert!(usage.entries >= 3, "{usage:?}");
    assert!(cache.get_now("k19").is_some(), "the newest is kept");
    cache.insert("huge".into(), answer(&"x".repeat(5_000)), None);
    assert!(
      cache.get_now("huge").is_none(),
      "larger than the bound: not kept"
    );
    assert!(
      cache.get_now("k19").is_some(),
      "and nothing was pushed out for it"
    );
    let cleared = cache.clear("").now_or_never();
    assert!(matches!(cleared, Some(Ok(()))));
    assert_eq!(cache.usage(), StoreUsage::default());
  }

  #[test]
  fn expired_entries_are_not_found_nor_counted() {
    let cache = store(None, None);
    cache.insert("gone".into(), answer("g"), Some(Duration::ZERO));
    cache.insert("kept".into(), answer("k"), Some(Duration::from_secs(3600)));
    cache.insert("gone-too".into(), answer("g"), Some(Duration::ZERO));
    assert!(cache.get_now("gone").is_none());
    let usage = cache.usage();
    assert_eq!(usage.entries, 1, "{usage:?}");
    assert_eq!(usage.bytes, entry_bytes("kept", &answer("k")));
  }
}
