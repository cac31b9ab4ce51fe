//! The shared semantic cache store, on plain Redis (no modules).
//!
//! Each entry is a hash `{…}e:<id>` holding its answer, with a PX time to live, and a record
//! in one stream `{…}stream` (id, scope, vector, expiry) trimmed to about `maxEntries`. Both
//! are written by one script, and every key of a cache shares one hash tag, so the script
//! touches one Redis Cluster slot. Every process tails the stream with `XREAD BLOCK` on a
//! connection of its own and adds what it reads to its index: an entry saved by one process
//! is found by all of them as soon as the read returns (milliseconds; [`TAIL_BLOCK`] bounds
//! it while the stream is idle). A new process reads the stream from its start, skipping
//! expired entries, and so starts with every live entry.
//!
//! A Redis that cannot answer costs misses, never a failed call: a hit needs the answer from
//! Redis, saves that fail wait in a bounded queue, and when the tail reconnects it writes them
//! and reads the stream again from its start (a restarted Redis numbers its stream anew), so
//! every index catches up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::AsyncConnectionConfig;
use tokio_util::sync::CancellationToken;

use super::redis_cache::{decode, encode, DEFAULT_SHARED_TTL};
use super::redis_retry::once_more_if_reconnecting;
use super::shared::{
  cluster_seeds, connect_redis_lazy, redis_client, RedisConnection, CONNECT_TIMEOUT,
};
use super::{SemanticEntry, SemanticStore};
use crate::error::{GatewayError, Result};
use crate::semantic::index::{ScopeKey, VectorIndex};
use crate::semantic::unix_millis;
use crate::types::ChatResponse;

/// How long one `XREAD` waits for new entries before asking again.
pub const TAIL_BLOCK: Duration = Duration::from_millis(500);
/// Entries per `XREAD`.
const TAIL_BATCH: usize = 512;
/// The wait before reconnecting to a Redis that went away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// Saves kept while Redis is away, written when it returns.
const PENDING_SAVES: usize = 1024;

const SAVE_SCRIPT: &str = r"
redis.call('HSET', KEYS[1], 'answer', ARGV[5], 'exp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'id', ARGV[1], 'scope', ARGV[2], 'vec', ARGV[3], 'exp', ARGV[4])
return 1
";

pub struct RedisSemanticOptions {
  pub url: String,
  /// Prepended to every key (default "ferrogate:").
  pub prefix: String,
  /// The cache's namespace: caches with different ones never share entries.
  pub namespace: String,
  /// The stream's length (and so what a new process loads) is kept about this.
  pub max_entries: usize,
}

pub struct RedisSemanticStore {
  inner: Arc<Inner>,
}

struct Inner {
  connection: RedisConnection,
  /// `{<prefix>semantic:<len>:<namespace>}:`: one hash tag for every key of the cache.
  keys: String,
  max_entries: usize,
  index: Arc<VectorIndex>,
  errors: AtomicU64,
  pending: Mutex<VecDeque<SemanticEntry>>,
  stop: CancellationToken,
  script: redis::Script,
  /// True once the tail has read the stream to its end (what a new process loads).
  caught_up: tokio::sync::watch::Sender<bool>,
}

impl RedisSemanticStore {
  /// Connects in the background and starts tailing the stream into `index`. Must run inside
  /// the tokio runtime; only a bad URL fails here.
  pub fn start(options: RedisSemanticOptions, index: Arc<VectorIndex>) -> Result<Self> {
    const WHAT: &str = "SemanticCache";
    // Each process tails one stream with XREAD BLOCK on a connection of its own to the node
    // that holds it; following a cluster's slot moves is not built yet.
    if cluster_seeds(&options.url).is_some() {
      return Err(GatewayError::config(
        "SemanticCache: redisUrl names a Redis Cluster, which the semantic cache does not support yet; give it one Redis",
      ));
    }
    let connection = connect_redis_lazy(WHAT, &options.url)?;
    let client = redis_client(WHAT, &options.url)?;
    let inner = Arc::new(Inner {
      connection,
      keys: format!(
        "{{{}semantic:{}:{}}}:",
        options.prefix,
        options.namespace.len(),
        options.namespace
      ),
      max_entries: options.max_entries,
      index,
      errors: AtomicU64::new(0),
      pending: Mutex::new(VecDeque::new()),
      stop: CancellationToken::new(),
      script: redis::Script::new(SAVE_SCRIPT),
      caught_up: tokio::sync::watch::channel(false).0,
    });
    tokio::spawn(tail(Arc::downgrade(&inner), client, inner.stop.clone()));
    Ok(RedisSemanticStore { inner })
  }

  /// Where the cache's entries are (for tests and tools).
  pub fn stream_key(&self) -> String {
    self.inner.stream_key()
  }
}

impl Inner {
  fn stream_key(&self) -> String {
    format!("{}stream", self.keys)
  }

  fn entry_key(&self, entry: u64) -> String {
    format!("{}e:{entry}", self.keys)
  }

  fn failed(&self) {
    self.errors.fetch_add(1, Ordering::Relaxed);
  }

  async fn write(&self, entry: &SemanticEntry) -> redis::RedisResult<()> {
    let now = unix_millis();
    let ttl = entry
      .expires_at
      .map_or(DEFAULT_SHARED_TTL.as_millis() as u64, |at| {
        at.saturating_sub(now).max(1)
      });
    let expires_at = entry.expires_at.unwrap_or(now + ttl);
    let vector: Vec<u8> = entry.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let answer = encode(&entry.answer);
    let mut invocation = self.script.key(self.entry_key(entry.id));
    invocation
      .key(self.stream_key())
      .arg(entry.id)
      .arg(hex(&entry.scope))
      .arg(vector)
      .arg(expires_at)
      .arg(answer)
      .arg(ttl)
      .arg(self.max_entries.max(1));
    let invocation = &invocation;
    once_more_if_reconnecting(|| {
      let mut connection = self.connection.clone();
      async move { invocation.invoke_async::<()>(&mut connection).await }
    })
    .await
  }

  /// Writes the saves that failed while Redis was away (the oldest are dropped first
  /// when too many wait).
  async fn write_pending(&self) {
    loop {
      let next = self
        .pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop_front();
      let Some(entry) = next else { return };
      if entry.expires_at.is_some_and(|at| at <= unix_millis()) {
        continue;
      }
      if self.write(&entry).await.is_err() {
        self.failed();
        self.keep_for_later(entry);
        return;
      }
    }
  }

  fn has_pending(&self) -> bool {
    !self
      .pending
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .is_empty()
  }

  fn keep_for_later(&self, entry: SemanticEntry) {
    let mut pending = self
      .pending
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if pending.len() >= PENDING_SAVES {
      pending.pop_front();
    }
    pending.push_back(entry);
  }

  /// Adds a batch read from the stream to the index; the last id read and how many
  /// records the batch had.
  fn follow(&self, reply: StreamReadReply) -> (Option<String>, usize) {
    let now = unix_millis();
    let mut last = None;
    let mut read = 0;
    for key in reply.keys {
      for record in key.ids {
        read += 1;
        if let Some((entry, scope, vector, expires_at)) = parse_record(&record) {
          if expires_at > now {
            self.index.insert(scope, entry, &vector, Some(expires_at));
          }
        }
        last = Some(record.id);
      }
    }
    self.index.trim(self.max_entries);
    (last, read)
  }
}

fn parse_record(record: &redis::streams::StreamId) -> Option<(u64, ScopeKey, Vec<f32>, u64)> {
  let entry: u64 = record.get::<String>("id")?.parse().ok()?;
  let scope = unhex(&record.get::<String>("scope")?)?;
  let bytes: Vec<u8> = record.get("vec")?;
  if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
    return None;
  }
  let vector: Vec<f32> = bytes
    .chunks_exact(4)
    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    .collect();
  let vector = crate::semantic::index::normalised(vector)?;
  let expires_at: u64 = record.get::<String>("exp")?.parse().ok()?;
  Some((entry, scope, vector, expires_at))
}

fn hex(bytes: &[u8]) -> String {
  bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<ScopeKey> {
  let mut scope = [0u8; 32];
  if text.len() != 64 {
    return None;
  }
  for (at, byte) in scope.iter_mut().enumerate() {
    *byte = u8::from_str_radix(text.get(at * 2..at * 2 + 2)?, 16).ok()?;
  }
  Some(scope)
}

/// Follows the stream until the store is closed or dropped: on its own connection, since
/// `XREAD BLOCK` holds a connection for as long as it waits.
async fn tail(inner: std::sync::Weak<Inner>, client: redis::Client, stop: CancellationToken) {
  let config = AsyncConnectionConfig::new()
    .set_connection_timeout(Some(CONNECT_TIMEOUT))
    .set_response_timeout(Some(TAIL_BLOCK + Duration::from_secs(2)));
  let mut connection: Option<MultiplexedConnection> = None;
  let mut last = String::from("0-0");
  // Reading what the stream already holds: no waiting until the end is reached.
  let mut behind = true;
  while !stop.is_cancelled() {
    let Some(store) = inner.upgrade() else { return };
    let mut reading = match connection.take() {
      Some(connection) => connection,
      None => {
        let connecting = client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
          Ok(Ok(connection)) => {
            // Everything again from the start: what was written while this process could not
            // read, also into a Redis that restarted empty and numbers its stream anew.
            last = String::from("0-0");
            behind = true;
            store.write_pending().await;
            connection
          }
          _ => {
            store.failed();
            drop(store);
            pause(&stop).await;
            continue;
          }
        }
      }
    };
    let mut read = redis::cmd("XREAD");
    read.arg("COUNT").arg(TAIL_BATCH);
    if !behind {
      read.arg("BLOCK").arg(TAIL_BLOCK.as_millis() as u64);
    }
    read.arg("STREAMS").arg(store.stream_key()).arg(&last);
    // Not holding the store while blocked: a dropped cache ends its tail.
    drop(store);
    let answer = tokio::select! {
      _ = stop.cancelled() => return,
      answer = read.query_async::<Option<StreamReadReply>>(&mut reading) => answer,
    };
    let Some(store) = inner.upgrade() else { return };
    match answer {
      Ok(reply) => {
        let (read_to, records) = reply.map_or((None, 0), |reply| store.follow(reply));
        if let Some(read_to) = read_to {
          last = read_to;
        }
        if behind && records < TAIL_BATCH {
          behind = false;
          store.caught_up.send_replace(true);
        }
        // The command connection may come back later than this one.
        if store.has_pending() {
          store.write_pending().await;
        }
        connection = Some(reading);
      }
      Err(_) => {
        store.failed();
        drop(store);
        pause(&stop).await;
      }
    }
  }
}

async fn pause(stop: &CancellationToken) {
  tokio::select! {
    _ = stop.cancelled() => {}
    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
  }
}

impl SemanticStore for RedisSemanticStore {
  fn answer(&self, entry: u64) -> BoxFuture<'_, Result<Option<Arc<ChatResponse>>>> {
    async move {
      let inner = &self.inner;
      let key = inner.entry_key(entry);
      let key = &key;
      let read: redis::RedisResult<Option<Vec<u8>>> = once_more_if_reconnecting(|| {
        let mut connection = inner.connection.clone();
        async move {
          redis::cmd("HGET")
            .arg(key)
            .arg("answer")
            .query_async(&mut connection)
            .await
        }
      })
      .await;
      match read {
        Ok(Some(bytes)) => Ok(decode(&bytes).map(Arc::new)),
        Ok(None) => Ok(None),
        Err(error) => {
          inner.failed();
          Err(GatewayError::new(
            crate::error::ErrorCode::UpstreamUnavailable,
            format!(
              "the semantic cache's Redis could not answer: {:?}",
              error.kind()
            ),
          ))
        }
      }
    }
    .boxed()
  }

  fn save(&self, entry: SemanticEntry) -> BoxFuture<'_, Result<()>> {
    async move {
      match self.inner.write(&entry).await {
        Ok(()) => Ok(()),
        Err(error) => {
          self.inner.failed();
          self.inner.keep_for_later(entry);
          Err(GatewayError::new(
            crate::error::ErrorCode::UpstreamUnavailable,
            format!(
              "the semantic cache's Redis could not store an entry: {:?}",
              error.kind()
            ),
          ))
        }
      }
    }
    .boxed()
  }

  fn ready(&self) -> BoxFuture<'_, ()> {
    let mut caught_up = self.inner.caught_up.subscribe();
    async move {
      let _ = caught_up.wait_for(|caught_up| *caught_up).await;
    }
    .boxed()
  }

  /// Redis expires the answers itself and trims the stream; nothing to do.
  fn forget(&self, _entries: &[u64]) {}

  fn errors(&self) -> u64 {
    self.inner.errors.load(Ordering::Relaxed)
  }

  fn close(&self) -> BoxFuture<'_, ()> {
    self.inner.stop.cancel();
    futures_util::future::ready(()).boxed()
  }
}

impl Drop for RedisSemanticStore {
  fn drop(&mut self) {
    self.inner.stop.cancel();
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn scopes_survive_their_hex_form() {
    let scope: ScopeKey = std::array::from_fn(|i| (i * 7) as u8);
    assert_eq!(unhex(&hex(&scope)), Some(scope));
    assert_eq!(unhex("zz"), None);
  }
}
