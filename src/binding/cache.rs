//! `ResponseCache` for JS: a thin shim over [`crate::cache::ResponseCache`].

use std::sync::Arc;

use napi_derive::napi;

use super::types::{ChatRequest, ToolCall};
use super::{coded, convert, invalid_arg};
use crate::backend::memory_cache::MemoryCacheLimits;
use crate::backend::redis_cache::{TieredCacheOptions, TieredCacheStore, DEFAULT_MAX_VALUE_BYTES};
use crate::backend::shared::{connect_redis_lazy, ping};
use crate::cache::{key_for, ResponseCache};
use crate::error::GatewayError;
use crate::types::{self as core, FinishReason, Usage};

#[napi(object, object_to_js = false)]
pub struct ResponseCacheOptions {
  /// Most answers kept (default 10000 when `maxBytes` is not set either).
  pub max_entries: Option<f64>,
  /// Most bytes of answers kept (text, tool calls, key and a fixed overhead per entry).
  pub max_bytes: Option<f64>,
  /// Default time to live; entries never expire without it.
  pub ttl_seconds: Option<f64>,
  /// Prefixed to every key, so tenants sharing a store never share answers.
  pub namespace: Option<String>,
  /// Adds Redis as a second tier shared by every process using the same URL and prefix;
  /// `get`/`set`/`delete`/`clear` then return Promises. The constructor returns at once and connects in the background
  /// (`await open()` waits for the connection).
  pub redis_url: Option<String>,
  /// With `redisUrl`: prepended to every Redis key (default "ferrogate:").
  pub prefix: Option<String>,
  /// With `redisUrl`: answers whose stored form is larger stay in this process only
  /// (default 1 MiB).
  pub max_value_bytes: Option<f64>,
}

#[napi(object)]
pub struct ResponseCacheStats {
  pub hits: f64,
  pub misses: f64,
  /// In this process (the local tier when `redisUrl` is set).
  pub entries: f64,
  pub bytes: f64,
  /// With `redisUrl` only: lookups answered by Redis.
  pub shared_hits: Option<f64>,
  /// With `redisUrl` only: Redis operations that failed or read an unreadable value.
  pub shared_errors: Option<f64>,
  /// With `redisUrl` only: answers larger than `maxValueBytes`, kept in this process only.
  pub shared_skipped: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct CachedUsage {
  pub prompt_tokens: Option<f64>,
  pub completion_tokens: Option<f64>,
  pub total_tokens: Option<f64>,
  pub estimated: Option<bool>,
  pub cached_prompt_tokens: Option<f64>,
  pub cache_write_prompt_tokens: Option<f64>,
  pub reasoning_tokens: Option<f64>,
}

/// What `set()` takes: a `ChatResponse`, or any object with at least `content`.
#[napi(object, object_to_js = false)]
pub struct CachedAnswer {
  pub content: String,
  pub id: Option<String>,
  pub provider: Option<String>,
  pub model: Option<String>,
  pub refusal: Option<String>,
  pub tool_calls: Option<Vec<ToolCall>>,
  #[napi(ts_type = "'stop' | 'length' | 'tool_calls' | 'content_filter'")]
  pub finish_reason: Option<String>,
  pub usage: Option<CachedUsage>,
}

/// The native response cache. Use `ResponseCache` from the package.
#[napi]
pub struct NativeResponseCache {
  pub(crate) inner: Arc<ResponseCache>,
  redis: Option<RedisLink>,
}

/// The default namespace of every Redis key ferrogate writes.
pub(crate) const DEFAULT_REDIS_PREFIX: &str = "ferrogate:";

/// A Redis connection for a constructor, on the JS thread, that connects in the background:
/// it returns at once (the future below is ready at once; it only runs on the addon's
/// runtime, where the connection's tasks live). Calls made before the connection is up wait
/// for it, then follow the store's fault policy; `open()` waits for it on purpose.
pub(crate) fn connect_in_background(
  what: &str,
  url: &str,
) -> Result<crate::backend::shared::RedisConnection, GatewayError> {
  napi::bindgen_prelude::block_on(async { connect_redis_lazy(what, url) })
}

/// What `open()` waits for: the Redis connection of a shared store, with its URL.
pub(crate) struct RedisLink {
  what: &'static str,
  url: String,
  connection: crate::backend::shared::RedisConnection,
}

impl RedisLink {
  pub(crate) fn new(
    what: &'static str,
    url: &str,
    connection: &crate::backend::shared::RedisConnection,
  ) -> Self {
    RedisLink {
      what,
      url: url.to_string(),
      connection: connection.clone(),
    }
  }

  pub(crate) async fn open(link: Option<&RedisLink>) -> napi::Result<()> {
    match link {
      None => Ok(()),
      Some(link) => ping(link.what, &link.url, &link.connection)
        .await
        .map_err(coded),
    }
  }
}

/// A count from JS: a whole number ≥ `min`.
pub(crate) fn whole(name: &str, value: f64, min: f64) -> Result<u64, GatewayError> {
  if value.is_finite() && value >= min && value.fract() == 0.0 && value <= 2f64.powi(53) {
    Ok(value as u64)
  } else {
    Err(GatewayError::config(format!(
      "{name} must be a whole number >= {min}, not {value}"
    )))
  }
}

fn seconds(name: &str, value: Option<f64>) -> Result<Option<std::time::Duration>, GatewayError> {
  match value {
    None => Ok(None),
    Some(seconds) => crate::retry::seconds(seconds)
      .filter(|d| !d.is_zero())
      .map(Some)
      .ok_or_else(|| GatewayError::config(format!("{name} must be a positive number of seconds"))),
  }
}

#[napi]
impl NativeResponseCache {
  #[napi(constructor, catch_unwind)]
  pub fn new(options: Option<ResponseCacheOptions>) -> napi::Result<Self> {
    let options = options.unwrap_or(ResponseCacheOptions {
      max_entries: None,
      max_bytes: None,
      ttl_seconds: None,
      namespace: None,
      redis_url: None,
      prefix: None,
      max_value_bytes: None,
    });
    let limits = MemoryCacheLimits {
      max_entries: options
        .max_entries
        .map(|n| whole("maxEntries", n, 1.0))
        .transpose()
        .map_err(invalid_arg)?,
      max_bytes: options
        .max_bytes
        .map(|n| whole("maxBytes", n, 1.0))
        .transpose()
        .map_err(invalid_arg)?,
      ttl: seconds("ttlSeconds", options.ttl_seconds).map_err(invalid_arg)?,
    };
    let namespace = options.namespace.as_deref();
    let Some(url) = options.redis_url else {
      // Options that only mean something on Redis are a mistake without it, not a no-op.
      if options.prefix.is_some() || options.max_value_bytes.is_some() {
        return Err(invalid_arg(GatewayError::config(
          "prefix and maxValueBytes need redisUrl (they apply to the Redis tier only)",
        )));
      }
      return Ok(NativeResponseCache {
        inner: Arc::new(ResponseCache::in_memory(limits, namespace)),
        redis: None,
      });
    };
    let max_value_bytes = match options.max_value_bytes {
      None => DEFAULT_MAX_VALUE_BYTES,
      Some(n) => whole("maxValueBytes", n, 1.0)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .map_err(invalid_arg)?,
    };
    let connection = connect_in_background("ResponseCache", &url).map_err(coded)?;
    let link = RedisLink::new("ResponseCache", &url, &connection);
    let store = TieredCacheStore::new(
      connection,
      &url,
      TieredCacheOptions {
        limits,
        prefix: options
          .prefix
          .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string()),
        max_value_bytes,
      },
    );
    Ok(NativeResponseCache {
      inner: Arc::new(ResponseCache::shared(Arc::new(store), namespace)),
      redis: Some(link),
    })
  }

  /// Resolves once the Redis tier answers (at once without `redisUrl`); rejects with
  /// UPSTREAM_UNAVAILABLE naming the server (never its password) when it cannot be reached
  /// within the connect timeout.
  #[napi]
  pub async fn open(&self) -> napi::Result<()> {
    RedisLink::open(self.redis.as_ref()).await
  }

  /// False when Redis is a tier (`redisUrl`): then only the `*Async` methods work.
  #[napi(getter)]
  pub fn synchronous(&self) -> bool {
    self.inner.is_synchronous()
  }

  fn sync_only(&self) -> napi::Result<()> {
    if self.inner.is_synchronous() {
      return Ok(());
    }
    Err(coded(GatewayError::config(
      "this ResponseCache has a Redis tier: get/set/delete/clear return Promises",
    )))
  }

  /// The stored answer as JSON text (a `ChatResponse`), or null. One string crosses
  /// into JS instead of a property write per field, which is what a hit costs from JS.
  #[napi]
  pub fn get_json(&self, key: String) -> napi::Result<Option<String>> {
    self.sync_only()?;
    let found = ResponseCache::now(self.inner.get(&key)).map_err(invalid_arg)?;
    Ok(found.map(|answer| response_json(&answer)))
  }

  /// `getJson` through the Redis tier. A Redis that cannot answer is a miss.
  #[napi]
  pub async fn get_json_async(&self, key: String) -> napi::Result<Option<String>> {
    let found = self.inner.get(&key).await.map_err(coded)?;
    Ok(found.map(|answer| response_json(&answer)))
  }

  /// `ttlSeconds` overrides the cache's default for this entry.
  #[napi]
  pub fn set(
    &self,
    key: String,
    value: CachedAnswer,
    ttl_seconds: Option<f64>,
  ) -> napi::Result<()> {
    self.sync_only()?;
    let ttl = seconds("ttlSeconds", ttl_seconds).map_err(invalid_arg)?;
    let answer = cached_answer(value).map_err(invalid_arg)?;
    ResponseCache::now(self.inner.set(&key, Arc::new(answer), ttl)).map_err(invalid_arg)
  }

  /// `set` through the Redis tier. A Redis that cannot answer leaves the entry local.
  #[napi]
  pub async fn set_async(
    &self,
    key: String,
    value: CachedAnswer,
    ttl_seconds: Option<f64>,
  ) -> napi::Result<()> {
    let ttl = seconds("ttlSeconds", ttl_seconds).map_err(invalid_arg)?;
    let answer = cached_answer(value).map_err(invalid_arg)?;
    self
      .inner
      .set(&key, Arc::new(answer), ttl)
      .await
      .map_err(coded)
  }

  /// True when an entry was removed.
  #[napi]
  pub fn delete(&self, key: String) -> napi::Result<bool> {
    self.sync_only()?;
    ResponseCache::now(self.inner.delete(&key)).map_err(invalid_arg)
  }

  /// `delete` in both tiers; UPSTREAM_UNAVAILABLE when Redis cannot answer.
  #[napi]
  pub async fn delete_async(&self, key: String) -> napi::Result<bool> {
    self.inner.delete(&key).await.map_err(coded)
  }

  #[napi]
  pub fn clear(&self) -> napi::Result<()> {
    self.sync_only()?;
    ResponseCache::now(self.inner.clear()).map_err(invalid_arg)
  }

  /// `clear` in both tiers; UPSTREAM_UNAVAILABLE when Redis cannot answer.
  #[napi]
  pub async fn clear_async(&self) -> napi::Result<()> {
    self.inner.clear().await.map_err(coded)
  }

  /// Finishes the writes to Redis still under way and releases the connection; the cache
  /// then works from this process only.
  #[napi]
  pub async fn close(&self) -> napi::Result<()> {
    self.inner.close().await;
    Ok(())
  }

  #[napi]
  pub fn stats(&self) -> ResponseCacheStats {
    let stats = self.inner.stats();
    let shared = !self.inner.is_synchronous();
    ResponseCacheStats {
      hits: stats.hits as f64,
      misses: stats.misses as f64,
      entries: stats.entries as f64,
      bytes: stats.bytes as f64,
      shared_hits: shared.then_some(stats.shared_hits as f64),
      shared_errors: shared.then_some(stats.shared_errors as f64),
      shared_skipped: shared.then_some(stats.shared_skipped as f64),
    }
  }

  /// The key the gateway uses for `request`: a BLAKE3 hash of everything that changes the
  /// answer (model, messages, sampling, max tokens, stop, tools, tool choice, response
  /// format) and nothing that does not (user, metadata, signal, timeouts, retries).
  #[napi(catch_unwind)]
  pub fn key_for(request: ChatRequest) -> napi::Result<String> {
    let (model, request, _) = convert::chat_request(request).map_err(invalid_arg)?;
    Ok(key_for(&model, &request))
  }
}

/// The `ChatResponse` shape of `convert::response`, as JSON text.
fn response_json(answer: &core::ChatResponse) -> String {
  let usage = &answer.usage;
  let mut value = serde_json::json!({
    "id": answer.id,
    "provider": answer.provider,
    "model": answer.model,
    "content": answer.content,
    "toolCalls": answer.tool_calls.iter().map(|call| serde_json::json!({
      "id": call.id, "name": call.name, "arguments": call.arguments,
    })).collect::<Vec<_>>(),
    "finishReason": answer.finish_reason.as_str(),
    "usage": {
      "promptTokens": usage.prompt_tokens,
      "completionTokens": usage.completion_tokens,
      "totalTokens": usage.total_tokens,
      "estimated": usage.estimated,
      "cachedPromptTokens": usage.cached_prompt_tokens,
      "cacheWritePromptTokens": usage.cache_write_prompt_tokens,
      "reasoningTokens": usage.reasoning_tokens,
    },
    "costUsd": answer.cost_usd,
    "cached": answer.cached,
    "latencyMs": answer.latency_ms,
    "attempts": answer.attempts,
    "requestId": answer.request_id,
  });
  if let Some(object) = value.as_object_mut() {
    if let Some(refusal) = &answer.refusal {
      object.insert("refusal".into(), refusal.clone().into());
    }
    if let Some(ttft) = answer.ttft_ms {
      object.insert("ttftMs".into(), ttft.into());
    }
  }
  value.to_string()
}

fn count(name: &str, value: Option<f64>) -> Result<u64, GatewayError> {
  value.map_or(Ok(0), |n| {
    whole(name, n, 0.0).map_err(|e| GatewayError::invalid_request(e.message))
  })
}

fn cached_answer(value: CachedAnswer) -> Result<core::ChatResponse, GatewayError> {
  let finish_reason = match value.finish_reason.as_deref() {
    None | Some("stop") => FinishReason::Stop,
    Some("length") => FinishReason::Length,
    Some("tool_calls") => FinishReason::ToolCalls,
    Some("content_filter") => FinishReason::ContentFilter,
    Some(other) => {
      return Err(GatewayError::invalid_request(format!(
        "finishReason must be 'stop', 'length', 'tool_calls' or 'content_filter', not '{other}'"
      )))
    }
  };
  let usage = match value.usage {
    None => Usage::default(),
    Some(usage) => {
      let mut out = Usage::new(
        count("usage.promptTokens", usage.prompt_tokens)?,
        count("usage.completionTokens", usage.completion_tokens)?,
      );
      if usage.total_tokens.is_some() {
        out.total_tokens = count("usage.totalTokens", usage.total_tokens)?;
      }
      out.estimated = usage.estimated.unwrap_or(false);
      out.cached_prompt_tokens = count("usage.cachedPromptTokens", usage.cached_prompt_tokens)?;
      out.cache_write_prompt_tokens = count(
        "usage.cacheWritePromptTokens",
        usage.cache_write_prompt_tokens,
      )?;
      out.reasoning_tokens = count("usage.reasoningTokens", usage.reasoning_tokens)?;
      out
    }
  };
  Ok(core::ChatResponse {
    id: value.id.unwrap_or_default(),
    provider: value.provider.unwrap_or_default(),
    model: value.model.unwrap_or_default(),
    content: value.content,
    refusal: value.refusal,
    tool_calls: value
      .tool_calls
      .unwrap_or_default()
      .into_iter()
      .map(|call| core::ToolCall {
        id: call.id,
        name: call.name,
        arguments: call.arguments,
        thought_signature: None,
      })
      .collect(),
    finish_reason,
    usage,
    cost_usd: 0.0,
    cached: false,
    latency_ms: 0.0,
    ttft_ms: None,
    attempts: 0,
    request_id: String::new(),
    embeddings: None,
    cache_similarity: None,
  })
}
