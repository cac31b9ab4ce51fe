//! The shared cache store: the embedded LRU store in front, Redis behind it as a second
//! tier every process reads and writes.
//!
//! A read asks the local store, then Redis (one round trip: the value and its remaining time to
//! live), and a Redis hit fills the local store for the rest of that time. A write goes to both; an
//! answer whose encoding is larger than `max_value_bytes` stays in this process only.
//! Redis entries are `{prefix}cache:{namespaced key}` (see `cache::namespace_prefix`, whose
//! namespace is the hash tag) holding the answer as versioned JSON,
//! always with a PX time to live. A Redis that cannot answer costs misses only: failed
//! reads and writes are counted and otherwise ignored. `delete` and `clear` are explicit
//! invalidations, so they report a Redis failure (after doing their local part).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{self, BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use super::memory_cache::{MemoryCacheLimits, MemoryCacheStore};
use super::redis_retry::once_more_if_reconnecting;
use super::shared::{unavailable, RedisConnection, COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use super::{CacheStore, StoreUsage};
use crate::error::{GatewayError, Result};
use crate::providers::openai::embeddings::{decode_base64, encode_base64};
use crate::types::{ChatResponse, FinishReason, ToolCall, Usage};

/// The encoding's version, the first field of every value: a value of another version is
/// a miss, never a misread answer.
const FORMAT_VERSION: u32 = 1;
/// Default largest encoded answer kept in Redis.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Time to live in Redis of an answer that has none (neither per entry nor the cache's
/// `ttlSeconds`): Redis memory is shared, so nothing stays there forever.
pub const DEFAULT_SHARED_TTL: Duration = Duration::from_secs(24 * 3600);
/// Keys per SCAN step of `clear`.
const SCAN_COUNT: usize = 500;

#[derive(Debug, Clone)]
pub struct TieredCacheOptions {
  pub limits: MemoryCacheLimits,
  /// Prepended to every Redis key (before `cache:`).
  pub prefix: String,
  pub max_value_bytes: usize,
}

pub struct TieredCacheStore {
  local: MemoryCacheStore,
  /// `None` once closed: the store then works as the local tier alone.
  connection: Mutex<Option<RedisConnection>>,
  key_prefix: String,
  url: String,
  default_ttl: Option<Duration>,
  max_value_bytes: usize,
  /// Shared with the writes that finish in the background.
  counters: Arc<Counters>,
  /// Writes under way in the background, which `close` waits for.
  pending: TaskTracker,
}

#[derive(Default)]
struct Counters {
  shared_hits: AtomicU64,
  shared_errors: AtomicU64,
  shared_skipped: AtomicU64,
}

/// One SET with its time to live, on its own so it can also run in the background.
async fn write(
  connection: RedisConnection,
  redis_key: String,
  encoded: Vec<u8>,
  ttl: Duration,
  counters: Arc<Counters>,
) {
  let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
  let mut set = redis::cmd("SET");
  set.arg(redis_key).arg(encoded).arg("PX").arg(millis);
  let set = &set;
  let written: redis::RedisResult<()> = once_more_if_reconnecting(|| {
    let mut connection = connection.clone();
    async move { set.query_async(&mut connection).await }
  })
  .await;
  if written.is_err() {
    counters.shared_errors.fetch_add(1, Ordering::Relaxed);
  }
}

#[derive(Serialize, Deserialize)]
struct StoredCall<'a> {
  #[serde(borrow)]
  id: Cow<'a, str>,
  #[serde(borrow)]
  name: Cow<'a, str>,
  #[serde(borrow)]
  arguments: Cow<'a, str>,
  #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
  thought_signature: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct StoredUsage {
  prompt: u64,
  completion: u64,
  total: u64,
  cached_prompt: u64,
  cache_write_prompt: u64,
  reasoning: u64,
  estimated: bool,
}

/// A `ChatResponse` as stored in Redis.
#[derive(Serialize, Deserialize)]
struct StoredAnswer<'a> {
  v: u32,
  #[serde(borrow)]
  id: Cow<'a, str>,
  #[serde(borrow)]
  provider: Cow<'a, str>,
  #[serde(borrow)]
  model: Cow<'a, str>,
  #[serde(borrow)]
  content: Cow<'a, str>,
  #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
  refusal: Option<Cow<'a, str>>,
  #[serde(borrow)]
  tool_calls: Vec<StoredCall<'a>>,
  finish_reason: Cow<'a, str>,
  usage: StoredUsage,
  cost_usd: f64,
  cached: bool,
  latency_ms: f64,
  #[serde(default, skip_serializing_if = "Option::is_none")]
  ttft_ms: Option<f64>,
  attempts: u32,
  #[serde(borrow)]
  request_id: Cow<'a, str>,
  /// An embeddings answer's vectors, each as OpenAI's base64 of little-endian f32s.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  embeddings: Option<Vec<String>>,
}

pub fn encode(answer: &ChatResponse) -> Vec<u8> {
  let usage = &answer.usage;
  let stored = StoredAnswer {
    v: FORMAT_VERSION,
    id: Cow::Borrowed(&answer.id),
    provider: Cow::Borrowed(&answer.provider),
    model: Cow::Borrowed(&answer.model),
    content: Cow::Borrowed(&answer.content),
    refusal: answer.refusal.as_deref().map(Cow::Borrowed),
    tool_calls: answer
      .tool_calls
      .iter()
      .map(|call| StoredCall {
        id: Cow::Borrowed(&call.id),
        name: Cow::Borrowed(&call.name),
        arguments: Cow::Borrowed(&call.arguments),
        thought_signature: call.thought_signature.as_deref().map(Cow::Borrowed),
      })
      .collect(),
    finish_reason: Cow::Borrowed(answer.finish_reason.as_str()),
    usage: StoredUsage {
      prompt: usage.prompt_tokens,
      completion: usage.completion_tokens,
      total: usage.total_tokens,
      cached_prompt: usage.cached_prompt_tokens,
      cache_write_prompt: usage.cache_write_prompt_tokens,
      reasoning: usage.reasoning_tokens,
      estimated: usage.estimated,
    },
    cost_usd: answer.cost_usd,
    cached: answer.cached,
    latency_ms: answer.latency_ms,
    ttft_ms: answer.ttft_ms,
    attempts: answer.attempts,
    request_id: Cow::Borrowed(&answer.request_id),
    embeddings: answer
      .embeddings
      .as_ref()
      .map(|vectors| vectors.iter().map(|vector| encode_base64(vector)).collect()),
  };
  // Strings, numbers and booleans only: serializing cannot fail.
  serde_json::to_vec(&stored).unwrap_or_default()
}

/// `None` for a value of another format version or one that is not an answer.
pub fn decode(bytes: &[u8]) -> Option<ChatResponse> {
  let stored: StoredAnswer = serde_json::from_slice(bytes).ok()?;
  if stored.v != FORMAT_VERSION {
    return None;
  }
  let finish_reason = match &*stored.finish_reason {
    "stop" => FinishReason::Stop,
    "length" => FinishReason::Length,
    "tool_calls" => FinishReason::ToolCalls,
    "content_filter" => FinishReason::ContentFilter,
    _ => return None,
  };
  let usage = stored.usage;
  let embeddings = match stored.embeddings {
    None => None,
    Some(encoded) => Some(Arc::new(
      encoded
        .iter()
        .map(|text| decode_base64(text))
        .collect::<Option<Vec<_>>>()?,
    )),
  };
  Some(ChatResponse {
    id: stored.id.into_owned(),
    provider: stored.provider.into_owned(),
    model: stored.model.into_owned(),
    content: stored.content.into_owned(),
    refusal: stored.refusal.map(Cow::into_owned),
    tool_calls: stored
      .tool_calls
      .into_iter()
      .map(|call| ToolCall {
        id: call.id.into_owned(),
        name: call.name.into_owned(),
        arguments: call.arguments.into_owned(),
        thought_signature: call.thought_signature.map(Cow::into_owned),
      })
      .collect(),
    finish_reason,
    usage: Usage {
      prompt_tokens: usage.prompt,
      completion_tokens: usage.completion,
      total_tokens: usage.total,
      cached_prompt_tokens: usage.cached_prompt,
      cache_write_prompt_tokens: usage.cache_write_prompt,
      reasoning_tokens: usage.reasoning,
      estimated: usage.estimated,
    },
    cost_usd: stored.cost_usd,
    cached: stored.cached,
    latency_ms: stored.latency_ms,
    ttft_ms: stored.ttft_ms,
    attempts: stored.attempts,
    request_id: stored.request_id.into_owned(),
    embeddings,
    cache_similarity: None,
  })
}

/// `text` with the glob characters of SCAN MATCH escaped, so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len() + 8);
  for c in text.chars() {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
      escaped.push('\\');
    }
    escaped.push(c);
  }
  escaped
}

impl TieredCacheStore {
  /// `connection` comes from [`super::shared::connect_redis`].
  pub fn new(connection: RedisConnection, url: &str, options: TieredCacheOptions) -> Self {
    TieredCacheStore {
      local: MemoryCacheStore::new(options.limits),
      connection: Mutex::new(Some(connection)),
      key_prefix: format!("{}cache:", options.prefix),
      url: url.to_string(),
      default_ttl: options.limits.ttl,
      max_value_bytes: options.max_value_bytes,
      counters: Arc::default(),
      pending: TaskTracker::new(),
    }
  }

  fn connection(&self) -> Option<RedisConnection> {
    self
      .connection
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .clone()
  }

  pub fn redis_key(&self, key: &str) -> String {
    format!("{}{key}", self.key_prefix)
  }

  fn failed(&self, error: impl std::fmt::Display) -> GatewayError {
    self.counters.shared_errors.fetch_add(1, Ordering::Relaxed);
    unavailable("the ResponseCache's Redis tier", &self.url, error)
  }

  fn closed() -> GatewayError {
    GatewayError::config("the ResponseCache is closed")
  }

  async fn get_shared(&self, key: &str) -> Option<Arc<ChatResponse>> {
    let connection = self.connection()?;
    let redis_key = self.redis_key(key);
    let mut read_both = redis::pipe();
    read_both.get(&redis_key).pttl(&redis_key);
    let read_both = &read_both;
    let read: redis::RedisResult<(Option<Vec<u8>>, i64)> = once_more_if_reconnecting(|| {
      let mut connection = connection.clone();
      async move { read_both.query_async(&mut connection).await }
    })
    .await;
    let (bytes, ttl_ms) = match read {
      Ok(reply) => reply,
      Err(error) => {
        self.failed(error);
        return None;
      }
    };
    let Some(answer) = decode(&bytes?) else {
      self.counters.shared_errors.fetch_add(1, Ordering::Relaxed);
      return None;
    };
    self.counters.shared_hits.fetch_add(1, Ordering::Relaxed);
    let answer = Arc::new(answer);
    // Here for as long as it lives there (-1: no expiry; -2: it expired in between).
    let ttl = u64::try_from(ttl_ms).ok().map(Duration::from_millis);
    if ttl_ms != -2 {
      self.local.insert(key.to_string(), answer.clone(), ttl);
    }
    Some(answer)
  }

  /// Writes to the local store now; returns the Redis write still to do (`None`: nothing to write).
  fn set_local(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
    let redis_key = self.redis_key(&key);
    let encoded = encode(&value);
    self.local.insert(key, value, ttl);
    if encoded.len() > self.max_value_bytes {
      self.counters.shared_skipped.fetch_add(1, Ordering::Relaxed);
      return None;
    }
    let connection = self.connection()?;
    let ttl = ttl.or(self.default_ttl).unwrap_or(DEFAULT_SHARED_TTL);
    Some(write(
      connection,
      redis_key,
      encoded,
      ttl,
      self.counters.clone(),
    ))
  }

  async fn delete_both(&self, key: &str) -> Result<bool> {
    let local = self.local.delete(key).await?;
    let connection = self.connection().ok_or_else(Self::closed)?;
    let mut unlink = redis::cmd("UNLINK");
    unlink.arg(self.redis_key(key));
    let unlink = &unlink;
    let removed: i64 = once_more_if_reconnecting(|| {
      let mut connection = connection.clone();
      async move { unlink.query_async(&mut connection).await }
    })
    .await
    .map_err(|error| self.failed(error))?;
    Ok(local || removed > 0)
  }

  /// Drops the namespace here and in Redis: a SCAN on every node that holds keys (each
  /// cluster primary), UNLINKing what it finds (the cluster connection splits an UNLINK
  /// of keys in several slots by slot).
  async fn clear_both(&self, prefix: &str) -> Result<()> {
    self.local.clear(prefix).await?;
    let connection = self.connection().ok_or_else(Self::closed)?;
    let pattern = format!("{}*", glob_escape(&self.redis_key(prefix)));
    let nodes = once_more_if_reconnecting(|| connection.primaries())
      .await
      .map_err(|error| self.failed(error))?;
    for node in &nodes {
      let mut cursor: u64 = 0;
      loop {
        let mut scan = redis::cmd("SCAN");
        scan
          .arg(cursor)
          .arg("MATCH")
          .arg(&pattern)
          .arg("COUNT")
          .arg(SCAN_COUNT);
        let scan = &scan;
        let (next, keys): (u64, Vec<Vec<u8>>) =
          once_more_if_reconnecting(|| connection.query_on(node, scan))
            .await
            .map_err(|error| self.failed(error))?;
        if !keys.is_empty() {
          let _: i64 = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut connection.clone())
            .await
            .map_err(|error| self.failed(error))?;
        }
        if next == 0 {
          break;
        }
        cursor = next;
      }
    }
    Ok(())
  }
}

impl CacheStore for TieredCacheStore {
  fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<ChatResponse>>>> {
    async move {
      if let Some(hit) = self.local.get_now(key) {
        return Ok(Some(hit));
      }
      Ok(self.get_shared(key).await)
    }
    .boxed()
  }

  fn set(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> BoxFuture<'_, Result<()>> {
    let pending = self.set_local(key, value, ttl);
    async move {
      if let Some(write) = pending {
        write.await;
      }
      Ok(())
    }
    .boxed()
  }

  /// Only this process's tier: an answer stored a moment ago by a caller of this process
  /// is there, and the gateway's second look must not cost another round trip.
  fn peek<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Arc<ChatResponse>>>> {
    future::ready(Ok(self.local.get_now(key))).boxed()
  }

  fn set_behind(
    &self,
    key: String,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> BoxFuture<'_, Result<()>> {
    let pending = self.set_local(key, value, ttl);
    async move {
      match (pending, tokio::runtime::Handle::try_current()) {
        (Some(write), Ok(runtime)) => drop(self.pending.spawn_on(write, &runtime)),
        (Some(write), Err(_)) => write.await,
        (None, _) => {}
      }
      Ok(())
    }
    .boxed()
  }

  fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
    self.delete_both(key).boxed()
  }

  fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<()>> {
    self.clear_both(prefix).boxed()
  }

  fn usage(&self) -> StoreUsage {
    StoreUsage {
      shared_hits: self.counters.shared_hits.load(Ordering::Relaxed),
      shared_errors: self.counters.shared_errors.load(Ordering::Relaxed),
      shared_skipped: self.counters.shared_skipped.load(Ordering::Relaxed),
      ..self.local.usage()
    }
  }

  fn flush(&self) -> BoxFuture<'_, ()> {
    async move {
      // `wait` needs a closed tracker; reopened at once, so later writes are tracked again.
      self.pending.close();
      let _ = tokio::time::timeout(CONNECT_TIMEOUT + COMMAND_TIMEOUT, self.pending.wait()).await;
      self.pending.reopen();
    }
    .boxed()
  }

  fn close(&self) -> BoxFuture<'_, ()> {
    self
      .connection
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .take();
    self.pending.close();
    async move {
      // Each write ends within the command timeout; the bound covers a reconnect too.
      let _ = tokio::time::timeout(CONNECT_TIMEOUT + COMMAND_TIMEOUT, self.pending.wait()).await;
    }
    .boxed()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::shared::connect_redis;

  const URL: &str = "redis://127.0.0.1:6379/";

  fn answer(content: &str) -> Arc<ChatResponse> {
    Arc::new(ChatResponse {
      id: "r1".into(),
      provider: "openai".into(),
      model: "gpt-4o-mini".into(),
      content: content.into(),
      refusal: Some("no \"quotes\" lost".into()),
      tool_calls: vec![ToolCall {
        id: "c1".into(),
        name: "lookup".into(),
        arguments: r#"{"q":"ü\n"}"#.into(),
        thought_signature: Some("sig".into()),
      }],
      finish_reason: FinishReason::ToolCalls,
      usage: Usage {
        cached_prompt_tokens: 3,
        reasoning_tokens: 2,
        ..Usage::new(10, 5)
      },
      cost_usd: 0.25,
      cached: false,
      latency_ms: 12.5,
      ttft_ms: Some(3.0),
      attempts: 2,
      request_id: "fg_1".into(),
      embeddings: None,
      cache_similarity: None,
    })
  }

  /// Two stores on one Redis under one fresh prefix: two processes' views.
  async fn pair(max_value_bytes: usize) -> (TieredCacheStore, TieredCacheStore) {
    let prefix = format!("fgtest:{}:{:x}:", std::process::id(), fastrand::u64(..));
    let options = TieredCacheOptions {
      limits: MemoryCacheLimits::default(),
      prefix,
      max_value_bytes,
    };
    let connect = || async {
      connect_redis("test", URL)
        .await
        .expect("a Redis on 127.0.0.1:6379 (the tests need it)")
    };
    (
      TieredCacheStore::new(connect().await, URL, options.clone()),
      TieredCacheStore::new(connect().await, URL, options),
    )
  }

  #[test]
  fn the_encoding_round_trips_and_is_versioned() {
    let original = answer("héllo");
    let bytes = encode(&original);
    assert_eq!(decode(&bytes).as_ref(), Some(&*original));
    let other_version = String::from_utf8_lossy(&bytes).replacen("\"v\":1", "\"v\":2", 1);
    assert!(decode(other_version.as_bytes()).is_none());
    assert!(decode(b"not json").is_none());
  }

  #[test]
  fn an_embeddings_answer_keeps_its_vectors_bit_for_bit() {
    let mut vectors = (*answer("")).clone();
    vectors.embeddings = Some(Arc::new(vec![vec![0.1, -3.5e-8, f32::MAX], vec![]]));
    assert_eq!(decode(&encode(&vectors)), Some(vectors));
  }

  #[tokio::test]
  async fn an_answer_set_by_one_store_is_a_hit_in_another_and_fills_its_local_tier() {
    let (a, b) = pair(DEFAULT_MAX_VALUE_BYTES).await;
    a.set(
      "ns:k".into(),
      answer("shared"),
      Some(Duration::from_secs(30)),
    )
    .await
    .expect("set");
    assert!(b.local.get_now("ns:k").is_none());
    let hit = b.get("ns:k").await.expect("get").expect("hit");
    assert_eq!(*hit, *answer("shared"));
    assert_eq!(b.usage().shared_hits, 1);
    assert!(
      b.local.get_now("ns:k").is_some(),
      "the hit fills the local store"
    );
    let mut connection = a.connection().expect("open");
    let ttl: i64 = redis::cmd("PTTL")
      .arg(a.redis_key("ns:k"))
      .query_async(&mut connection)
      .await
      .expect("pttl");
    assert!((25_000..=30_000).contains(&ttl), "{ttl}");
    // Deleting in one removes it from Redis; the other's local copy is its own.
    assert!(a.delete("ns:k").await.expect("delete"));
    assert!(!a.delete("ns:k").await.expect("delete"));
    b.local.clear("").await.expect("clear");
    assert!(b.get("ns:k").await.expect("get").is_none());
  }

  #[tokio::test]
  async fn clear_removes_the_namespace_only_and_without_ttl_entries_get_a_default() {
    let (a, b) = pair(DEFAULT_MAX_VALUE_BYTES).await;
    for i in 0..1_200 {
      a.set(format!("one:{i}"), answer("x"), None)
        .await
        .expect("set");
    }
    a.set("two:kept".into(), answer("y"), None)
      .await
      .expect("set");
    let mut connection = a.connection().expect("open");
    let ttl: i64 = redis::cmd("PTTL")
      .arg(a.redis_key("one:0"))
      .query_async(&mut connection)
      .await
      .expect("pttl");
    assert!(ttl > 23 * 3600 * 1000, "{ttl}");
    // Globs in a namespace match only themselves.
    a.set("o*e:x".into(), answer("z"), None).await.expect("set");
    a.clear("one:").await.expect("clear");
    assert!(b.get("one:7").await.expect("get").is_none());
    assert!(b.get("o*e:x").await.expect("get").is_some());
    assert!(b.get("two:kept").await.expect("get").is_some());
    a.clear("").await.expect("clear");
    b.local.clear("").await.expect("clear");
    assert!(b.get("two:kept").await.expect("get").is_none());
  }

  #[tokio::test]
  async fn answers_larger_than_the_cap_stay_local() {
    let (a, b) = pair(2_000).await;
    a.set("big".into(), answer(&"x".repeat(5_000)), None)
      .await
      .expect("set");
    a.set("small".into(), answer("x"), None).await.expect("set");
    assert!(a.get("big").await.expect("get").is_some(), "kept locally");
    assert!(b.get("big").await.expect("get").is_none(), "not in Redis");
    assert!(b.get("small").await.expect("get").is_some());
    assert_eq!(a.usage().shared_skipped, 1);
    a.clear("").await.expect("clear");
  }

  #[tokio::test]
  async fn a_write_behind_is_local_at_once_and_in_redis_by_close() {
    let (a, b) = pair(DEFAULT_MAX_VALUE_BYTES).await;
    a.set_behind("later".into(), answer("x"), None)
      .await
      .expect("set");
    assert!(a.peek("later").await.expect("peek").is_some());
    // The other store's peek never reaches Redis.
    a.close().await;
    assert!(b.peek("later").await.expect("peek").is_none());
    assert!(b.get("later").await.expect("get").is_some());
    b.clear("").await.expect("clear");
  }

  #[tokio::test]
  async fn a_closed_store_is_its_local_tier() {
    let (a, _) = pair(DEFAULT_MAX_VALUE_BYTES).await;
    a.close().await;
    a.set("k".into(), answer("x"), None).await.expect("set");
    assert!(a.get("k").await.expect("get").is_some());
    assert!(a.delete("k").await.is_err());
  }
}
