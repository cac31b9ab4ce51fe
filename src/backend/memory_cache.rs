//! The embedded cache store: moka, bounded by entries and by bytes (a weigher sized by
//! each answer), with a default and a per-entry time to live.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{self, BoxFuture, FutureExt};
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;

use super::{CacheStore, StoreUsage};
use crate::error::Result;
use crate::types::ChatResponse;

/// Bookkeeping per entry beyond the strings themselves (struct, map node, usage).
const ENTRY_OVERHEAD_BYTES: u64 = 256;
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

#[derive(Clone)]
struct Entry {
  response: Arc<ChatResponse>,
  bytes: u64,
  ttl: Option<Duration>,
}

struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
  fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
    entry.ttl
  }

  fn expire_after_update(
    &self,
    _key: &String,
    entry: &Entry,
    _at: Instant,
    _left: Option<Duration>,
  ) -> Option<Duration> {
    entry.ttl
  }
}

/// Bounds of a memory store; `None` means unbounded on that axis.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryCacheLimits {
  pub max_entries: Option<u64>,
  pub max_bytes: Option<u64>,
  pub ttl: Option<Duration>,
}

pub struct MemoryCacheStore {
  entries: Cache<String, Entry>,
  bytes: Arc<AtomicU64>,
  default_ttl: Option<Duration>,
}

impl MemoryCacheStore {
  /// moka has one capacity. With both bounds, each entry weighs at least
  /// `max_bytes / max_entries`, so the capacity in bytes also caps the count.
  pub fn new(limits: MemoryCacheLimits) -> Self {
    let (capacity, unit) = match (limits.max_entries, limits.max_bytes) {
      (Some(entries), Some(bytes)) => (bytes, (bytes / entries.max(1)).max(1)),
      (None, Some(bytes)) => (bytes, 1),
      (Some(entries), None) => (entries, 0),
      (None, None) => (DEFAULT_MAX_ENTRIES, 0),
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let removed = bytes.clone();
    // LRU rather than moka's default TinyLFU admission: a fresh answer is always kept and
    // the least recently used ones make room, which is what callers expect of a cache.
    let entries = Cache::builder()
      .max_capacity(capacity)
      .eviction_policy(EvictionPolicy::lru())
      .weigher(move |_key: &String, entry: &Entry| {
        let weight = if unit == 0 { 1 } else { entry.bytes.max(unit) };
        u32::try_from(weight).unwrap_or(u32::MAX)
      })
      .expire_after(EntryTtl)
      .eviction_listener(move |_key, entry: Entry, _cause: RemovalCause| {
        removed.fetch_sub(entry.bytes, Ordering::Relaxed);
      })
      .build();
    MemoryCacheStore {
      entries,
      bytes,
      default_ttl: limits.ttl,
    }
  }

  /// Reads without the boxed future, for the synchronous JS path.
  pub fn get_now(&self, key: &str) -> Option<Arc<ChatResponse>> {
    self.entries.get(key).map(|entry| entry.response)
  }

  /// Writes without the boxed future. `ttl` overrides the store's default.
  pub fn insert(&self, key: String, value: Arc<ChatResponse>, ttl: Option<Duration>) {
    let bytes = entry_bytes(&key, &value);
    self.bytes.fetch_add(bytes, Ordering::Relaxed);
    let entry = Entry {
      response: value,
      bytes,
      ttl: ttl.or(self.default_ttl),
    };
    self.entries.insert(key, entry);
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
    future::ready(Ok(self.entries.remove(key).is_some())).boxed()
  }

  /// A memory store belongs to one `ResponseCache`, hence to one namespace: clearing
  /// that namespace empties it.
  fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>> {
    if prefix.is_empty() {
      self.entries.invalidate_all();
    } else {
      // Only this namespace: several caches (namespaces) may share one store.
      for (key, _) in self.entries.iter() {
        if key.starts_with(prefix) {
          self.entries.invalidate(key.as_str());
        }
      }
    }
    self.entries.run_pending_tasks();
    future::ready(Ok(())).boxed()
  }

  fn usage(&self) -> StoreUsage {
    self.entries.run_pending_tasks();
    StoreUsage {
      entries: self.entries.entry_count(),
      bytes: self.bytes.load(Ordering::Relaxed),
      ..StoreUsage::default()
    }
  }
}
