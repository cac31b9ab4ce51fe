//! `SemanticCache` for JS: a thin shim over [`crate::semantic::SemanticCache`].

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::Float32Array;
use napi_derive::napi;

use super::cache::{connect_in_background, whole, RedisLink, DEFAULT_REDIS_PREFIX};
use super::{coded, invalid_arg};
use crate::backend::redis_semantic::{RedisSemanticOptions, RedisSemanticStore};
use crate::error::GatewayError;
use crate::semantic::index::VectorIndex;
use crate::semantic::{
  SemanticCache, SemanticConfig, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_MESSAGES, DEFAULT_THRESHOLD,
};

#[napi(object, object_to_js = false)]
pub struct SemanticCacheScope {
  /// Conversations with more messages skip the cache (default 4).
  pub max_messages: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct SemanticCacheOptions {
  /// The model that embeds the last user message: a route alias or "provider/model", called
  /// through the gateway's own `embed()`.
  pub embedding_model: String,
  /// Least cosine similarity of a hit (default 0.95).
  pub threshold: Option<f64>,
  /// Most entries kept (default 10000); the oldest go first.
  pub max_entries: Option<f64>,
  /// Entries expire after this long (default: never in memory, 24 h in Redis).
  pub ttl_seconds: Option<f64>,
  /// Caches with different namespaces never share entries.
  pub namespace: Option<String>,
  pub scope: Option<SemanticCacheScope>,
  /// Entries in Redis, followed by every process's index.
  pub redis_url: Option<String>,
  /// With `redisUrl`: prepended to every Redis key (default "ferrogate:").
  pub prefix: Option<String>,
}

#[napi(object)]
pub struct SemanticCacheStats {
  pub hits: f64,
  pub misses: f64,
  /// In this process's index.
  pub entries: f64,
  pub lookups: f64,
  pub embed_errors: f64,
  /// The median similarity of the last 1024 hits; null before the first.
  pub p50_similarity_of_hits: Option<f64>,
  /// With `redisUrl`: Redis operations that failed.
  pub store_errors: f64,
}

#[napi(object)]
pub struct NearestEntry {
  pub entry: f64,
  pub similarity: f64,
}

/// The native semantic cache. Use `SemanticCache` from the package.
#[napi]
pub struct NativeSemanticCache {
  pub(crate) inner: Arc<SemanticCache>,
  redis: Option<RedisLink>,
}

/// How long `open()` waits for the entries already in Redis to be loaded.
const LOAD_PATIENCE: Duration = Duration::from_secs(10);

fn scope_key(scope: &str) -> [u8; 32] {
  *blake3::hash(scope.as_bytes()).as_bytes()
}

#[napi]
impl NativeSemanticCache {
  #[napi(constructor, catch_unwind)]
  pub fn new(options: SemanticCacheOptions) -> napi::Result<Self> {
    let max_entries = match options.max_entries {
      Some(n) => whole("maxEntries", n, 1.0).map_err(invalid_arg)? as usize,
      None => DEFAULT_MAX_ENTRIES,
    };
    let max_messages = match options.scope.and_then(|scope| scope.max_messages) {
      Some(n) => whole("scope.maxMessages", n, 1.0).map_err(invalid_arg)? as usize,
      None => DEFAULT_MAX_MESSAGES,
    };
    let ttl = match options.ttl_seconds {
      Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
        Some(Duration::from_secs_f64(seconds))
      }
      Some(other) => {
        return Err(invalid_arg(GatewayError::config(format!(
          "ttlSeconds must be a positive number of seconds, not {other}"
        ))))
      }
      None => None,
    };
    let config = SemanticConfig {
      embedding_model: options.embedding_model,
      threshold: options.threshold.map_or(DEFAULT_THRESHOLD, |t| t as f32),
      max_entries,
      ttl,
      namespace: options.namespace.unwrap_or_default(),
      max_messages,
    };
    config.check().map_err(invalid_arg)?;
    let Some(url) = options.redis_url else {
      if options.prefix.is_some() {
        return Err(invalid_arg(GatewayError::config(
          "prefix needs redisUrl (it applies to Redis keys only)",
        )));
      }
      let inner = SemanticCache::in_memory(config).map_err(invalid_arg)?;
      return Ok(NativeSemanticCache {
        inner: Arc::new(inner),
        redis: None,
      });
    };
    let connection = connect_in_background("SemanticCache", &url).map_err(coded)?;
    let link = RedisLink::new("SemanticCache", &url, &connection);
    drop(connection);
    let index = Arc::new(VectorIndex::default());
    let store_options = RedisSemanticOptions {
      url: url.clone(),
      prefix: options
        .prefix
        .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_string()),
      namespace: config.namespace.clone(),
      max_entries,
    };
    let follower = index.clone();
    // Inside the runtime: the store's tail is a task on it.
    let store =
      napi::bindgen_prelude::block_on(
        async move { RedisSemanticStore::start(store_options, follower) },
      )
      .map_err(coded)?;
    let inner = SemanticCache::with_store(config, index, Arc::new(store)).map_err(invalid_arg)?;
    Ok(NativeSemanticCache {
      inner: Arc::new(inner),
      redis: Some(link),
    })
  }

  /// Resolves once Redis answers and this process's index holds the live entries (at once
  /// without `redisUrl`).
  #[napi]
  pub async fn open(&self) -> napi::Result<()> {
    RedisLink::open(self.redis.as_ref()).await?;
    let loading = tokio::time::timeout(LOAD_PATIENCE, self.inner.ready()).await;
    loading.map_err(|_| {
      coded(GatewayError::new(
        crate::error::ErrorCode::UpstreamUnavailable,
        format!(
          "SemanticCache: the entries in Redis were not loaded within {} s",
          LOAD_PATIENCE.as_secs()
        ),
      ))
    })
  }

  #[napi]
  pub fn stats(&self) -> SemanticCacheStats {
    let stats = self.inner.stats();
    SemanticCacheStats {
      hits: stats.hits as f64,
      misses: stats.misses as f64,
      entries: stats.entries as f64,
      lookups: stats.lookups as f64,
      embed_errors: stats.embed_errors as f64,
      p50_similarity_of_hits: stats.p50_similarity_of_hits,
      store_errors: stats.store_errors as f64,
    }
  }

  /// Adds a vector to the index under `scope` (any string; hashed), without an answer:
  /// what `bench/semantic-cache.mjs` measures the index with. Returns the entry's id.
  #[napi]
  pub fn add_vector(&self, scope: String, vector: Float32Array) -> napi::Result<f64> {
    let usable = SemanticCache::usable_vector(&vector).ok_or_else(|| {
      invalid_arg(GatewayError::invalid_request(
        "the vector must be finite and not all zeros",
      ))
    })?;
    // Ids JS can hold exactly.
    let entry = fastrand::u64(1..(1 << 53));
    if !self
      .inner
      .index()
      .insert(scope_key(&scope), entry, &usable, None)
    {
      return Err(invalid_arg(GatewayError::invalid_request(
        "the vector's size differs from the other vectors of its scope",
      )));
    }
    Ok(entry as f64)
  }

  /// Returns once no scope's partitions are being learnt (they are learnt on a thread of
  /// their own): what `bench/semantic-cache.mjs` waits for before it measures lookups.
  #[napi]
  pub fn wait_for_index(&self) {
    self.inner.index().wait_for_builds();
  }

  /// The closest entry of `scope` to `vector` and its cosine similarity, whatever the
  /// threshold; null when the scope is empty.
  #[napi]
  pub fn nearest(&self, scope: String, vector: Float32Array) -> Option<NearestEntry> {
    let usable = SemanticCache::usable_vector(&vector)?;
    let now = crate::semantic::unix_millis();
    self
      .inner
      .index()
      .nearest(&scope_key(&scope), &usable, now)
      .map(|found| NearestEntry {
        entry: found.entry as f64,
        similarity: f64::from(found.similarity),
      })
  }

  /// Stops following Redis and releases the connection (resolves at once without
  /// `redisUrl`); lookups then use what this process's index holds.
  #[napi]
  pub async fn close(&self) -> napi::Result<()> {
    self.inner.close().await;
    Ok(())
  }
}
