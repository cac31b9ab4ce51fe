//! `SemanticCache`: answers to a paraphrase of an earlier question. An entry is the vector
//! of a conversation's last user message, in the scope of everything else that changes the
//! answer (model, system prompt, earlier turns, tools, response format, sampling; see
//! [`crate::cache::scope_for`]). A lookup is a hit only in the same scope, at a cosine
//! similarity of at least the threshold. The vectors are in this process's
//! [`index::VectorIndex`]; the answers in a [`SemanticStore`] (this process, or Redis shared
//! by every process). The pipeline's use of it is `pipeline/semantic.rs`.

mod binary;
pub mod index;
mod partitions;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::memory_semantic::MemorySemanticStore;
use crate::backend::{SemanticEntry, SemanticStore};
use crate::error::{GatewayError, Result};
use crate::types::{ChatRequest, ChatResponse, ContentPart, Role};
use index::{normalised, ScopeKey, VectorIndex};

pub const DEFAULT_THRESHOLD: f32 = 0.95;
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
pub const DEFAULT_MAX_MESSAGES: usize = 4;
/// Similarities of recent hits kept for `p50SimilarityOfHits`.
const SIMILARITIES_KEPT: usize = 1024;
/// How often expired entries are dropped from the index.
const SWEEP_EVERY_MS: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct SemanticConfig {
  /// A route alias or "provider/model" that `gateway.embed()` accepts.
  pub embedding_model: String,
  pub threshold: f32,
  pub max_entries: usize,
  pub ttl: Option<Duration>,
  pub namespace: String,
  /// Conversations with more messages skip the cache.
  pub max_messages: usize,
}

impl SemanticConfig {
  pub fn check(&self) -> Result<()> {
    if self.embedding_model.trim().is_empty() {
      return Err(GatewayError::config(
        "SemanticCache needs an embeddingModel (a route alias or \"provider/model\")",
      ));
    }
    if !(self.threshold > 0.0 && self.threshold <= 1.0) {
      return Err(GatewayError::config(format!(
        "SemanticCache threshold must be a cosine similarity in (0, 1], not {}",
        self.threshold
      )));
    }
    if self.max_entries == 0 || self.max_messages == 0 {
      return Err(GatewayError::config(
        "SemanticCache maxEntries and scope.maxMessages must be at least 1",
      ));
    }
    Ok(())
  }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SemanticStats {
  pub hits: u64,
  pub misses: u64,
  /// In this process's index.
  pub entries: u64,
  pub lookups: u64,
  /// Embedding calls that failed (each a miss).
  pub embed_errors: u64,
  /// The median similarity of the last hits; `None` before the first.
  pub p50_similarity_of_hits: Option<f64>,
  /// Operations on the shared store (Redis) that failed.
  pub store_errors: u64,
}

/// What the cache is asked for one call: the text to embed, in its scope.
#[derive(Debug, Clone)]
pub struct Question {
  pub scope: ScopeKey,
  pub text: String,
}

pub struct SemanticCache {
  config: SemanticConfig,
  index: Arc<VectorIndex>,
  store: Arc<dyn SemanticStore>,
  hits: AtomicU64,
  misses: AtomicU64,
  embed_errors: AtomicU64,
  similarities: Mutex<VecDeque<f32>>,
  next_sweep: AtomicU64,
}

impl std::fmt::Debug for SemanticCache {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("SemanticCache")
      .field("config", &self.config)
      .finish_non_exhaustive()
  }
}

/// Milliseconds since the Unix epoch: entry expiries are shared between processes.
pub fn unix_millis() -> u64 {
  std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |since| since.as_millis() as u64)
}

impl SemanticCache {
  pub fn in_memory(config: SemanticConfig) -> Result<Self> {
    let index = Arc::new(VectorIndex::default());
    Self::with_store(config, index, Arc::new(MemorySemanticStore::default()))
  }

  /// Over `store`, which feeds `index` with other processes' entries when it is shared.
  pub fn with_store(
    config: SemanticConfig,
    index: Arc<VectorIndex>,
    store: Arc<dyn SemanticStore>,
  ) -> Result<Self> {
    config.check()?;
    Ok(SemanticCache {
      config,
      index,
      store,
      hits: AtomicU64::new(0),
      misses: AtomicU64::new(0),
      embed_errors: AtomicU64::new(0),
      similarities: Mutex::new(VecDeque::new()),
      next_sweep: AtomicU64::new(0),
    })
  }

  pub fn config(&self) -> &SemanticConfig {
    &self.config
  }

  /// The question a request asks, or `None` when it skips the cache: more messages than
  /// `scope.maxMessages`, a last message that is not the user's, or one with more than text
  /// (an image the embedding would not see).
  pub fn question(&self, model: &str, req: &ChatRequest) -> Option<Question> {
    if req.messages.len() > self.config.max_messages {
      return None;
    }
    let last = req.messages.last().filter(|m| m.role == Role::User)?;
    let mut text = String::new();
    for part in &last.content {
      match part {
        ContentPart::Text(piece) => text.push_str(piece),
        _ => return None,
      }
    }
    if text.trim().is_empty() {
      return None;
    }
    Some(Question {
      scope: crate::cache::scope_for(model, req),
      text,
    })
  }

  /// The embedding call failed or returned an unusable vector: a miss.
  pub fn embedding_failed(&self) {
    self.embed_errors.fetch_add(1, Ordering::Relaxed);
    self.misses.fetch_add(1, Ordering::Relaxed);
  }

  /// The stored answer closest to `vector` in `scope`, at the threshold or above, with its
  /// similarity. Counted as a hit or a miss; a store that cannot answer is a miss.
  pub async fn find(&self, scope: &ScopeKey, vector: &[f32]) -> Option<(Arc<ChatResponse>, f64)> {
    let now = unix_millis();
    self.sweep(now);
    let found = self
      .index
      .nearest(scope, vector, now)
      .filter(|nearest| nearest.similarity >= self.config.threshold);
    let answer = match found {
      Some(nearest) => match self.store.answer(nearest.entry).await {
        Ok(Some(answer)) => Some((answer, nearest.similarity)),
        // Gone from the store (expired there, or evicted): gone from the index too.
        Ok(None) => {
          if self.index.remove(nearest.entry) {
            self.store.forget(&[nearest.entry]);
          }
          None
        }
        Err(_) => None,
      },
      None => None,
    };
    match &answer {
      Some((_, similarity)) => {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let mut kept = self
          .similarities
          .lock()
          .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() == SIMILARITIES_KEPT {
          kept.pop_front();
        }
        kept.push_back(*similarity);
      }
      None => {
        self.misses.fetch_add(1, Ordering::Relaxed);
      }
    }
    answer.map(|(answer, similarity)| (answer, f64::from(similarity)))
  }

  /// Keeps `answer` for `vector` in `scope`. A store that cannot take it costs later misses
  /// only.
  pub async fn remember(&self, scope: ScopeKey, vector: Vec<f32>, answer: Arc<ChatResponse>) {
    let now = unix_millis();
    let entry = SemanticEntry {
      id: fastrand::u64(1..),
      scope,
      expires_at: self.config.ttl.map(|ttl| now + ttl.as_millis() as u64),
      vector,
      answer,
    };
    if !self
      .index
      .insert(entry.scope, entry.id, &entry.vector, entry.expires_at)
    {
      return;
    }
    let evicted = self.index.trim(self.config.max_entries);
    self.store.forget(&evicted);
    let _ = self.store.save(entry).await;
  }

  /// Adds an entry to the index and the store as given (tools, benches and tests).
  pub async fn insert(&self, entry: SemanticEntry) -> Result<()> {
    if !self
      .index
      .insert(entry.scope, entry.id, &entry.vector, entry.expires_at)
    {
      return Err(GatewayError::invalid_request(
        "the vector's size differs from the other vectors of its scope",
      ));
    }
    let evicted = self.index.trim(self.config.max_entries);
    self.store.forget(&evicted);
    self.store.save(entry).await
  }

  pub fn index(&self) -> &VectorIndex {
    &self.index
  }

  /// A vector from the embedding call, fit for the index.
  pub fn usable_vector(vector: &[f32]) -> Option<Vec<f32>> {
    normalised(vector.to_vec())
  }

  fn sweep(&self, now: u64) {
    let due = self.next_sweep.load(Ordering::Relaxed);
    if now < due
      || self
        .next_sweep
        .compare_exchange(
          due,
          now + SWEEP_EVERY_MS,
          Ordering::Relaxed,
          Ordering::Relaxed,
        )
        .is_err()
    {
      return;
    }
    let expired = self.index.expire(now);
    self.store.forget(&expired);
  }

  pub fn stats(&self) -> SemanticStats {
    let mut similarities: Vec<f32> = self
      .similarities
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .iter()
      .copied()
      .collect();
    similarities.sort_by(f32::total_cmp);
    let hits = self.hits.load(Ordering::Relaxed);
    let misses = self.misses.load(Ordering::Relaxed);
    SemanticStats {
      hits,
      misses,
      entries: self.index.len() as u64,
      lookups: hits + misses,
      embed_errors: self.embed_errors.load(Ordering::Relaxed),
      p50_similarity_of_hits: similarities
        .get(similarities.len() / 2)
        .map(|s| f64::from(*s)),
      store_errors: self.store.errors(),
    }
  }

  /// Ends once a shared store's live entries are in this process's index.
  pub async fn ready(&self) {
    self.store.ready().await;
  }

  /// Stops following a shared store and releases its connections.
  pub async fn close(&self) {
    self.store.close().await;
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::types::Message;

  fn cache(max_messages: usize) -> SemanticCache {
    SemanticCache::in_memory(SemanticConfig {
      embedding_model: "mock/embed".into(),
      threshold: 0.95,
      max_entries: 3,
      ttl: None,
      namespace: String::new(),
      max_messages,
    })
    .expect("cache")
  }

  fn asking(system: &str, text: &str) -> ChatRequest {
    ChatRequest {
      messages: vec![
        Message::text(Role::System, system),
        Message::text(Role::User, text),
      ],
      ..ChatRequest::default()
    }
  }

  #[test]
  fn the_scope_is_everything_but_the_last_message() {
    let short = cache(1);
    let cache = cache(4);
    let a = cache
      .question("m", &asking("be brief", "hi"))
      .expect("asked");
    let b = cache
      .question("m", &asking("be brief", "hello"))
      .expect("asked");
    assert_eq!(a.scope, b.scope);
    assert_eq!(b.text, "hello");
    let other_system = cache
      .question("m", &asking("be long", "hi"))
      .expect("asked");
    let other_model = cache
      .question("n", &asking("be brief", "hi"))
      .expect("asked");
    assert_ne!(a.scope, other_system.scope);
    assert_ne!(a.scope, other_model.scope);
    let mut sampled = asking("be brief", "hi");
    sampled.temperature = Some(0.2);
    assert_ne!(cache.question("m", &sampled).expect("asked").scope, a.scope);
    assert!(short.question("m", &asking("s", "hi")).is_none());
  }

  #[tokio::test]
  async fn hits_need_the_threshold_and_eviction_keeps_max_entries() {
    let cache = cache(4);
    let scope = [9; 32];
    let answer = Arc::new(ChatResponse {
      id: "a".into(),
      provider: "mock".into(),
      model: "m".into(),
      content: "stored".into(),
      refusal: None,
      tool_calls: Vec::new(),
      finish_reason: crate::types::FinishReason::Stop,
      usage: crate::types::Usage::default(),
      cost_usd: 0.0,
      cached: false,
      latency_ms: 1.0,
      ttft_ms: None,
      attempts: 1,
      request_id: "r".into(),
      embeddings: None,
      cache_similarity: None,
    });
    for i in 0..4u8 {
      let mut vector = vec![0.0; 4];
      vector[usize::from(i)] = 1.0;
      cache.remember(scope, vector, answer.clone()).await;
    }
    // Four entries, at most three kept: the first went.
    assert_eq!(cache.stats().entries, 3);
    assert!(cache.find(&scope, &[1.0, 0.0, 0.0, 0.0]).await.is_none());
    let found = cache.find(&scope, &[0.0, 1.0, 0.0, 0.0]).await;
    assert_eq!(
      found.map(|(a, s)| (a.content.clone(), s)),
      Some(("stored".into(), 1.0))
    );
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.lookups), (1, 1, 2));
    assert_eq!(stats.p50_similarity_of_hits, Some(1.0));
  }
}
