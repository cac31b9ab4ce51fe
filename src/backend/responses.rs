//! Where stored Responses (`store: true`) live, so `previous_response_id`, `GET` and `DELETE`
//! find them: in this process by default (bounded in entries and bytes, each entry living
//! `ttl`), or in Redis so that every process of a deployment continues any conversation.
//!
//! A stored entry is one JSON text (the `response` object and the conversation's items),
//! written and read whole; the store does not look inside it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::OnceCell;

use super::shared::{check_redis_url, connect_redis, hash_tag, unavailable, RedisConnection};
use crate::error::{GatewayError, Result};

pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_PREFIX: &str = "ferrogate:responses:";

/// Stored responses by id (`resp_…`).
pub trait ResponseStore: Send + Sync {
  fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<str>>>>;
  fn put(&self, id: String, entry: String) -> BoxFuture<'_, Result<()>>;
  /// True when an entry was removed.
  fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>>;
}

/// `GatewayOptions.responses`, checked.
#[derive(Debug, Clone)]
pub struct ResponseStoreConfig {
  /// Redis instead of this process's memory.
  pub redis_url: Option<String>,
  /// Prepended to every Redis key.
  pub prefix: String,
  pub ttl: Duration,
  /// In memory: most entries kept; the oldest go first.
  pub max_entries: usize,
  /// In memory: most bytes kept in all; in Redis and in memory, no one entry may be larger.
  pub max_bytes: usize,
}

impl Default for ResponseStoreConfig {
  fn default() -> Self {
    ResponseStoreConfig {
      redis_url: None,
      prefix: DEFAULT_PREFIX.to_string(),
      ttl: DEFAULT_TTL,
      max_entries: DEFAULT_MAX_ENTRIES,
      max_bytes: DEFAULT_MAX_BYTES,
    }
  }
}

/// The store the options ask for. Redis is reached on first use (the gateway is built
/// synchronously); a URL that is not a Redis URL is CONFIG now.
pub fn build(config: &ResponseStoreConfig) -> Result<Arc<dyn ResponseStore>> {
  match &config.redis_url {
    None => Ok(Arc::new(MemoryResponseStore::new(
      config.max_entries,
      config.max_bytes,
      config.ttl,
    ))),
    Some(url) => {
      check_redis_url("responses", url)?;
      Ok(Arc::new(RedisResponseStore {
        url: url.clone(),
        prefix: config.prefix.clone(),
        ttl: config.ttl,
        max_entry_bytes: config.max_bytes,
        connection: OnceCell::new(),
      }))
    }
  }
}

// ----------------------------------------------------------------------------------- in memory

struct Entry {
  value: Arc<str>,
  expires: Instant,
}

#[derive(Default)]
struct Entries {
  by_id: HashMap<String, Entry>,
  /// Ids in insertion order; every entry has the same time to live, so this is also the
  /// order they expire in. Ids of deleted or replaced entries are skipped when reached.
  order: VecDeque<(String, Instant)>,
  bytes: usize,
}

pub struct MemoryResponseStore {
  entries: Mutex<Entries>,
  max_entries: usize,
  max_bytes: usize,
  ttl: Duration,
}

impl MemoryResponseStore {
  pub fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
    MemoryResponseStore {
      entries: Mutex::new(Entries::default()),
      max_entries: max_entries.max(1),
      max_bytes,
      ttl,
    }
  }

  fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>> {
    self
      .entries
      .lock()
      .map_err(|_| GatewayError::config("internal error: the response store is unavailable"))
  }

  /// (entries, bytes) held now, expired ones included until they are reached.
  pub fn usage(&self) -> (usize, usize) {
    self
      .lock()
      .map(|entries| (entries.by_id.len(), entries.bytes))
      .unwrap_or((0, 0))
  }

  fn put_now(&self, id: String, value: String, now: Instant) -> Result<()> {
    if value.len() > self.max_bytes {
      return Ok(());
    }
    let mut entries = self.lock()?;
    let entries = &mut *entries;
    if let Some(old) = entries.by_id.remove(&id) {
      entries.bytes -= old.value.len();
    }
    let expires = now + self.ttl;
    entries.bytes += value.len();
    entries.by_id.insert(
      id.clone(),
      Entry {
        value: Arc::from(value),
        expires,
      },
    );
    entries.order.push_back((id, expires));
    // Expired first, then the oldest while over a bound.
    while let Some((oldest, stamp)) = entries.order.front().cloned() {
      let over = entries.by_id.len() > self.max_entries || entries.bytes > self.max_bytes;
      let current = entries.by_id.get(&oldest).map(|e| e.expires) == Some(stamp);
      if current && !over && stamp > now {
        break;
      }
      entries.order.pop_front();
      if current {
        if let Some(removed) = entries.by_id.remove(&oldest) {
          entries.bytes -= removed.value.len();
        }
      }
    }
    Ok(())
  }

  fn get_now(&self, id: &str, now: Instant) -> Result<Option<Arc<str>>> {
    let mut entries = self.lock()?;
    match entries.by_id.get(id) {
      Some(entry) if entry.expires > now => Ok(Some(entry.value.clone())),
      Some(_) => {
        if let Some(removed) = entries.by_id.remove(id) {
          entries.bytes -= removed.value.len();
        }
        Ok(None)
      }
      None => Ok(None),
    }
  }
}

impl ResponseStore for MemoryResponseStore {
  fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<str>>>> {
    futures_util::future::ready(self.get_now(id, Instant::now())).boxed()
  }

  fn put(&self, id: String, entry: String) -> BoxFuture<'_, Result<()>> {
    futures_util::future::ready(self.put_now(id, entry, Instant::now())).boxed()
  }

  fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
    let removed = self
      .lock()
      .map(|mut entries| match entries.by_id.remove(id) {
        Some(removed) => {
          entries.bytes -= removed.value.len();
          true
        }
        None => false,
      });
    futures_util::future::ready(removed).boxed()
  }
}

// --------------------------------------------------------------------------------------- Redis

pub struct RedisResponseStore {
  url: String,
  prefix: String,
  ttl: Duration,
  max_entry_bytes: usize,
  connection: OnceCell<RedisConnection>,
}

impl RedisResponseStore {
  /// `<prefix>{<id>}`: the id is the hash tag, so a Redis Cluster places each response
  /// on one slot.
  fn key(&self, id: &str) -> String {
    format!("{}{}", self.prefix, hash_tag(id))
  }

  async fn connection(&self) -> Result<RedisConnection> {
    self
      .connection
      .get_or_try_init(|| connect_redis("the response store", &self.url))
      .await
      .cloned()
  }

  fn failed(&self, error: redis::RedisError) -> GatewayError {
    unavailable("the response store", &self.url, error)
  }
}

impl ResponseStore for RedisResponseStore {
  fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Arc<str>>>> {
    async move {
      let mut connection = self.connection().await?;
      let value: Option<String> = redis::cmd("GET")
        .arg(self.key(id))
        .query_async(&mut connection)
        .await
        .map_err(|e| self.failed(e))?;
      Ok(value.map(Arc::from))
    }
    .boxed()
  }

  fn put(&self, id: String, entry: String) -> BoxFuture<'_, Result<()>> {
    async move {
      if entry.len() > self.max_entry_bytes {
        return Ok(());
      }
      let mut connection = self.connection().await?;
      let millis = u64::try_from(self.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
      redis::cmd("SET")
        .arg(self.key(&id))
        .arg(entry)
        .arg("PX")
        .arg(millis)
        .query_async::<()>(&mut connection)
        .await
        .map_err(|e| self.failed(e))
    }
    .boxed()
  }

  fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
    async move {
      let mut connection = self.connection().await?;
      let removed: u64 = redis::cmd("DEL")
        .arg(self.key(id))
        .query_async(&mut connection)
        .await
        .map_err(|e| self.failed(e))?;
      Ok(removed > 0)
    }
    .boxed()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn memory_store_keeps_at_most_max_entries_dropping_the_oldest() {
    let store = MemoryResponseStore::new(2, 1_000, Duration::from_secs(60));
    let now = Instant::now();
    for id in ["a", "b", "c"] {
      store
        .put_now(id.into(), format!("{{\"{id}\":1}}"), now)
        .unwrap();
    }
    assert_eq!(store.get_now("a", now).unwrap(), None);
    assert!(store.get_now("b", now).unwrap().is_some());
    assert!(store.get_now("c", now).unwrap().is_some());
    assert_eq!(store.usage().0, 2);
  }

  #[test]
  fn memory_store_keeps_at_most_max_bytes_and_skips_an_entry_larger_than_all() {
    let store = MemoryResponseStore::new(100, 25, Duration::from_secs(60));
    let now = Instant::now();
    store.put_now("a".into(), "x".repeat(10), now).unwrap();
    store.put_now("b".into(), "y".repeat(10), now).unwrap();
    store.put_now("c".into(), "z".repeat(10), now).unwrap();
    assert_eq!(store.get_now("a", now).unwrap(), None);
    assert_eq!(store.usage(), (2, 20));
    store.put_now("huge".into(), "h".repeat(26), now).unwrap();
    assert_eq!(store.get_now("huge", now).unwrap(), None);
    assert_eq!(store.usage(), (2, 20));
  }

  #[test]
  fn memory_store_entries_expire_after_the_ttl() {
    let store = MemoryResponseStore::new(100, 1_000, Duration::from_secs(10));
    let start = Instant::now();
    store.put_now("old".into(), "1".into(), start).unwrap();
    assert!(store
      .get_now("old", start + Duration::from_secs(9))
      .unwrap()
      .is_some());
    assert_eq!(
      store
        .get_now("old", start + Duration::from_secs(10))
        .unwrap(),
      None
    );
    // A later write also drops what expired before it.
    store.put_now("x".into(), "2".into(), start).unwrap();
    store
      .put_now("new".into(), "3".into(), start + Duration::from_secs(11))
      .unwrap();
    assert_eq!(store.usage(), (1, 1));
  }

  #[test]
  fn memory_store_replaces_and_deletes() {
    let store = MemoryResponseStore::new(10, 1_000, Duration::from_secs(60));
    let now = Instant::now();
    store.put_now("a".into(), "first".into(), now).unwrap();
    store.put_now("a".into(), "second!".into(), now).unwrap();
    assert_eq!(store.get_now("a", now).unwrap().as_deref(), Some("second!"));
    assert_eq!(store.usage(), (1, 7));
    let removed = futures_util::FutureExt::now_or_never(store.delete("a"))
      .unwrap()
      .unwrap();
    assert!(removed);
    assert_eq!(store.usage(), (0, 0));
  }

  #[test]
  fn a_bad_redis_url_is_a_config_error() {
    let config = ResponseStoreConfig {
      redis_url: Some("http://:secret@127.0.0.1/".into()),
      ..ResponseStoreConfig::default()
    };
    let error = build(&config).err().expect("refused");
    assert_eq!(error.code, crate::error::ErrorCode::Config);
    assert!(!error.message.contains("secret"), "{}", error.message);
  }

  #[tokio::test]
  async fn redis_store_round_trips_with_hash_tagged_keys() {
    let prefix = format!("fgtest:responses:{:x}:", fastrand::u64(..));
    let config = ResponseStoreConfig {
      redis_url: Some("redis://127.0.0.1:6379/".into()),
      prefix: prefix.clone(),
      ..ResponseStoreConfig::default()
    };
    let store = build(&config).unwrap();
    if store.get("probe").await.is_err() {
      eprintln!("skipped: no Redis on 127.0.0.1:6379");
      return;
    }
    store
      .put("resp_1".into(), "{\"a\":1}".into())
      .await
      .unwrap();
    assert_eq!(
      store.get("resp_1").await.unwrap().as_deref(),
      Some("{\"a\":1}")
    );
    let mut connection = connect_redis("test", "redis://127.0.0.1:6379/")
      .await
      .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
      .arg(format!("{prefix}{{resp_1}}"))
      .query_async(&mut connection)
      .await
      .unwrap();
    assert!(ttl > 0 && ttl <= DEFAULT_TTL.as_millis() as i64, "{ttl}");
    assert!(store.delete("resp_1").await.unwrap());
    assert!(!store.delete("resp_1").await.unwrap());
    assert_eq!(store.get("resp_1").await.unwrap(), None);
  }
}
