//! The seam for shared state. Each stateful piece talks to a small store trait; the
//! embedded stores here (an LRU map, in-memory GCRA, the SQLite cost ledger) are the defaults, and shared backends
//! (Redis, PostgreSQL: issue 10) implement the same traits.
//!
//! Store methods return boxed futures so a networked store fits the same trait. The
//! embedded stores answer at once (their futures are ready on the first poll), which is
//! what lets `RateLimiter.check()` and `ResponseCache.get()` stay synchronous in JS.

pub mod gcra;
pub mod ledger;
pub mod memory_cache;
pub mod memory_ledger;
pub mod memory_limiter;
pub mod memory_semantic;
pub mod postgres;
pub mod redis_budget;
pub mod redis_cache;
pub mod redis_limiter;
pub mod redis_retry;
pub mod redis_semantic;
pub mod responses;
pub mod shared;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};

use crate::error::Result;
use crate::types::ChatResponse;

pub use memory_cache::MemoryCacheStore;
pub use memory_limiter::MemoryLimiterStore;

/// What a cache store holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreUsage {
  pub entries: u64,
  /// The approximate size of the stored answers (text, tool calls, key).
  pub bytes: u64,
  /// A tiered store's shared tier (Redis): reads it answered, operations that failed
  /// (or read an unreadable value), answers too large for it (kept locally only).
  pub shared_hits: u64,
  pub shared_errors: u64,
  pub shared_skipped: u64,
}

/// Cached answers by key. Keys arrive already namespaced.
pub trait CacheStore: Send + Sync {
  fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<ChatResponse>>>>;
  /// `ttl` overrides the store's default time to live for this entry.
  fn set(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> BoxFuture<'_, Result<()>>;
  /// A lookup that may skip a slow tier: what the gateway uses to see whether a caller of
  /// this process stored the answer a moment ago (the answer is in the local tier then).
  fn peek<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<ChatResponse>>>> {
    self.get(key)
  }
  /// `set` for a caller that need not wait for a slow tier: the entry is readable in this
  /// process when the future ends, and may reach a shared tier a moment later.
  fn set_behind(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> BoxFuture<'_, Result<()>> {
    self.set(key, value, ttl)
  }
  /// True when an entry was removed.
  fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;
  /// Removes every entry whose key starts with `prefix` (the namespace).
  fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>>;
  fn usage(&self) -> StoreUsage;
  /// Finishes the writes still under way (a shared store); the store stays open.
  fn flush(&self) -> BoxFuture<'_, ()> {
    futures_util::future::ready(()).boxed()
  }
  /// Finishes the writes still under way and releases the store's connections (a shared
  /// store); later operations use the local tier only, or fail.
  fn close(&self) -> BoxFuture<'_, ()> {
    futures_util::future::ready(()).boxed()
  }
}

/// Per-key counters for the rate limiter, applied atomically by the store.
pub trait LimiterStore: Send + Sync {
  /// Admits one request costing `tokens` under `quota`, or refuses it and consumes
  /// nothing.
  fn acquire<'a>(
    &'a self,
    key: &'a str,
    tokens: u64,
    quota: &'a gcra::Quota,
  ) -> BoxFuture<'a, Result<gcra::Decision>>;
  /// Corrects an admitted request's token charge once its real usage is known:
  /// `delta` = real - estimated (negative gives tokens back).
  fn adjust_tokens<'a>(
    &'a self,
    key: &'a str,
    delta: i64,
    quota: &'a gcra::Quota,
  ) -> BoxFuture<'a, Result<()>>;
  /// Releases the store's connections (a shared store); later operations fail.
  fn close(&self) {}
}

/// One answer of the semantic cache: the vector of the message it answered, in its scope.
#[derive(Debug, Clone)]
pub struct SemanticEntry {
  pub id: u64,
  pub scope: crate::semantic::index::ScopeKey,
  /// Normalised.
  pub vector: Vec<f32>,
  /// Milliseconds since the Unix epoch.
  pub expires_at: Option<u64>,
  pub answer: Arc<ChatResponse>,
}

/// The semantic cache's answers by entry. The vectors live in the cache's index; a shared
/// store also feeds every process's index with the entries any process saves.
pub trait SemanticStore: Send + Sync {
  /// The answer of an entry the index found; `None` when it is gone (expired, evicted).
  fn answer(&self, entry: u64) -> BoxFuture<'_, Result<Option<Arc<ChatResponse>>>>;
  /// Keeps an entry (already in this process's index).
  fn save(&self, entry: SemanticEntry) -> BoxFuture<'_, Result<()>>;
  /// The index let go of these entries (expired, or evicted by `maxEntries`).
  fn forget(&self, entries: &[u64]);
  /// Ends once a shared store's entries are in the index (at once for an embedded store).
  fn ready(&self) -> BoxFuture<'_, ()> {
    futures_util::future::ready(()).boxed()
  }
  /// Operations on a shared store that failed.
  fn errors(&self) -> u64 {
    0
  }
  /// Stops following the shared store and releases its connections.
  fn close(&self) -> BoxFuture<'_, ()> {
    futures_util::future::ready(()).boxed()
  }
}
