//! `ResponseCache`: answers by a hash of everything that changes them, in a store behind
//! [`crate::backend::CacheStore`], plus the table of calls in flight that lets identical
//! concurrent misses share one upstream call. The pipeline's use of it is
//! `pipeline/cache.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::backend::memory_cache::MemoryCacheLimits;
use crate::backend::{CacheStore, MemoryCacheStore};
use crate::error::{GatewayError, Result};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, ToolChoice,
};

/// Bumped whenever the canonical form changes, so old keys never alias new ones.
const KEY_VERSION: &str = "fg1";

/// What a leader hands to the callers waiting on it: `None` until it is done.
pub(crate) type Shared = Option<Result<Arc<ChatResponse>>>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
  pub hits: u64,
  pub misses: u64,
  /// In this process (the local tier of a shared cache).
  pub entries: u64,
  pub bytes: u64,
  /// The shared tier's hits, failed operations and answers too large for it.
  pub shared_hits: u64,
  pub shared_errors: u64,
  pub shared_skipped: u64,
}

pub struct ResponseCache {
  store: Arc<dyn CacheStore>,
  /// Prepended to every key, so tenants sharing a store never see each other's answers.
  prefix: String,
  /// The store answers at once (the embedded one); a shared store needs a runtime.
  synchronous: bool,
  hits: AtomicU64,
  misses: AtomicU64,
  in_flight: Mutex<HashMap<String, watch::Receiver<Shared>>>,
}

impl std::fmt::Debug for ResponseCache {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("ResponseCache")
      .field("prefix", &self.prefix)
      .finish_non_exhaustive()
  }
}

/// The part of every stored key that names its namespace: `{<byte length>:<namespace>}:`.
/// The length makes it unambiguous (`acme` + `eu:k` and `acme:eu` + `k` are different keys,
/// and clearing `acme` cannot reach `acme:eu`); the braces are a Redis Cluster hash tag, so
/// one namespace's keys share one slot (a namespace containing `}` still gets one slot: its
/// tag is cut at the same place in every one of its keys).
pub(crate) fn namespace_prefix(namespace: &str) -> String {
  format!("{{{}:{namespace}}}:", namespace.len())
}

impl ResponseCache {
  pub fn in_memory(limits: MemoryCacheLimits, namespace: Option<&str>) -> Self {
    Self::with_store(Arc::new(MemoryCacheStore::new(limits)), namespace)
  }

  pub fn with_store(store: Arc<dyn CacheStore>, namespace: Option<&str>) -> Self {
    Self::build(store, namespace, true)
  }

  /// Over a store on a server (Redis): its operations must be awaited on a runtime.
  pub fn shared(store: Arc<dyn CacheStore>, namespace: Option<&str>) -> Self {
    Self::build(store, namespace, false)
  }

  fn build(store: Arc<dyn CacheStore>, namespace: Option<&str>, synchronous: bool) -> Self {
    ResponseCache {
      store,
      synchronous,
      prefix: namespace_prefix(namespace.unwrap_or("")),
      hits: AtomicU64::new(0),
      misses: AtomicU64::new(0),
      in_flight: Mutex::new(HashMap::new()),
    }
  }

  fn stored_key(&self, key: &str) -> String {
    format!("{}{key}", self.prefix)
  }

  pub async fn get(&self, key: &str) -> Result<Option<Arc<ChatResponse>>> {
    let found = self.fetch(key).await?;
    self.count_lookup(found.is_some());
    Ok(found)
  }

  /// A lookup counted later with [`ResponseCache::count_lookup`], once the caller knows it
  /// will use the answer (a lookup made beside the rate limiter's may be thrown away).
  pub(crate) async fn fetch(&self, key: &str) -> Result<Option<Arc<ChatResponse>>> {
    self.store.get(&self.stored_key(key)).await
  }

  pub(crate) fn count_lookup(&self, hit: bool) {
    let counter = if hit { &self.hits } else { &self.misses };
    counter.fetch_add(1, Ordering::Relaxed);
  }

  /// A read that is not a cache lookup (no hit or miss counted).
  pub(crate) async fn peek(&self, key: &str) -> Result<Option<Arc<ChatResponse>>> {
    self.store.peek(&self.stored_key(key)).await
  }

  pub async fn set(
    &self,
    key: &str,
    value: Arc<ChatResponse>,
    ttl: Option<Duration>,
  ) -> Result<()> {
    self.store.set(self.stored_key(key), value, ttl).await
  }

  pub async fn delete(&self, key: &str) -> Result<bool> {
    self.store.delete(&self.stored_key(key)).await
  }

  pub async fn clear(&self) -> Result<()> {
    self.store.clear(&self.prefix).await
  }

  pub fn stats(&self) -> CacheStats {
    let usage = self.store.usage();
    CacheStats {
      hits: self.hits.load(Ordering::Relaxed),
      misses: self.misses.load(Ordering::Relaxed),
      entries: usage.entries,
      bytes: usage.bytes,
      shared_hits: usage.shared_hits,
      shared_errors: usage.shared_errors,
      shared_skipped: usage.shared_skipped,
    }
  }

  /// Whether `get`/`set`/`delete`/`clear` answer at once (see [`ResponseCache::now`]).
  pub fn is_synchronous(&self) -> bool {
    self.synchronous
  }

  /// Finishes a shared store's pending writes; the cache stays usable.
  pub async fn flush(&self) {
    self.store.flush().await;
  }

  /// Finishes a shared store's pending writes and releases its connection; the cache then
  /// works from this process only.
  pub async fn close(&self) {
    self.store.close().await;
  }

  /// Runs an operation whose store answers at once (the embedded one) without a
  /// runtime: what keeps the JS methods synchronous.
  pub fn now<T>(operation: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    operation.now_or_never().unwrap_or_else(|| {
      Err(GatewayError::config(
        "this cache backend answers asynchronously; use it through the gateway",
      ))
    })
  }

  /// Joins the call already in flight for `key`, or registers the caller as its leader.
  pub(crate) fn join_or_lead(&self, key: &str) -> InFlight<'_> {
    let mut in_flight = self
      .in_flight
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(receiver) = in_flight.get(key) {
      return InFlight::Follower(receiver.clone());
    }
    let (sender, receiver) = watch::channel(None);
    in_flight.insert(key.to_string(), receiver);
    InFlight::Leader(Leader {
      cache: self,
      key: key.to_string(),
      sender: Some(sender),
    })
  }

  fn forget(&self, key: &str) {
    self
      .in_flight
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .remove(key);
  }
}

pub(crate) enum InFlight<'a> {
  Leader(Leader<'a>),
  Follower(watch::Receiver<Shared>),
}

/// The one caller that goes upstream for a key. Dropped without `finish` (its caller
/// went away), it leaves the table and its followers try again.
pub(crate) struct Leader<'a> {
  cache: &'a ResponseCache,
  key: String,
  sender: Option<watch::Sender<Shared>>,
}

impl Leader<'_> {
  /// Stores a success (errors are never cached), then hands the outcome to every
  /// follower. The answer is stored before the entry leaves the table, so a caller
  /// arriving in between finds one or the other.
  pub async fn finish(mut self, outcome: &Result<Arc<ChatResponse>>) {
    if let Ok(answer) = outcome {
      // A store that fails to write costs only a later miss.
      // Readable here before the followers are told; a shared tier gets it a moment later,
      // off this caller's path.
      let stored = self.cache.stored_key(&self.key);
      let _ = self
        .cache
        .store
        .set_behind(stored, answer.clone(), None)
        .await;
    }
    self.cache.forget(&self.key);
    if let Some(sender) = self.sender.take() {
      let _ = sender.send(Some(outcome.clone()));
    }
  }
}

impl Drop for Leader<'_> {
  fn drop(&mut self) {
    if self.sender.is_some() {
      self.cache.forget(&self.key);
    }
  }
}

/// `ResponseCache.keyFor`: a BLAKE3 hash of a canonical encoding of everything that
/// changes the answer. `model` is the resolved "provider/model". Left out on purpose:
/// user, metadata, signal, timeouts, retries, priority.
pub fn key_for(model: &str, req: &ChatRequest) -> String {
  format!(
    "{KEY_VERSION}:{}",
    canonical_hash(model, req, &req.messages).to_hex()
  )
}

/// The semantic cache's scope of a request: [`key_for`]'s hash of everything but the last
/// message (the one the semantic cache embeds). A distinct leading tag keeps it apart from
/// every exact key.
pub fn scope_for(model: &str, req: &ChatRequest) -> [u8; 32] {
  let earlier = &req.messages[..req.messages.len().saturating_sub(1)];
  let mut scope = blake3::Hasher::new();
  scope.update(b"semantic-scope");
  scope.update(canonical_hash(model, req, earlier).as_bytes());
  *scope.finalize().as_bytes()
}

fn canonical_hash(model: &str, req: &ChatRequest, messages: &[Message]) -> blake3::Hash {
  let mut key = CanonicalHasher::default();
  key.str("model", model);
  key.tag(b'M', messages.len() as u64);
  for message in messages {
    key.message(message);
  }
  key.float("temperature", req.temperature);
  key.float("top_p", req.top_p);
  key.optional_u64("max_tokens", req.max_tokens.map(u64::from));
  key.tag(b'S', req.stop.len() as u64);
  for stop in &req.stop {
    key.str("stop", stop);
  }
  key.tag(b'T', req.tools.len() as u64);
  for tool in &req.tools {
    key.str("tool", &tool.name);
    key.optional_str("description", tool.description.as_deref());
    key.json(&tool.parameters);
  }
  match &req.tool_choice {
    None => key.tag(b'c', 0),
    Some(ToolChoice::Auto) => key.tag(b'c', 1),
    Some(ToolChoice::None) => key.tag(b'c', 2),
    Some(ToolChoice::Required) => key.tag(b'c', 3),
    Some(ToolChoice::Named(name)) => {
      key.tag(b'c', 4);
      key.str("tool_choice", name);
    }
  }
  match &req.response_format {
    None => key.tag(b'f', 0),
    Some(ResponseFormat::Text) => key.tag(b'f', 1),
    Some(ResponseFormat::JsonObject) => key.tag(b'f', 2),
    Some(ResponseFormat::JsonSchema { name, schema }) => {
      key.tag(b'f', 3);
      key.str("schema_name", name);
      key.json(schema);
    }
  }
  key.finalize()
}

/// The cache key of an embeddings call: the inputs in order and the vector size. A distinct
/// leading tag keeps it apart from every chat key.
pub fn embeddings_key_for(model: &str, input: &[&str], dimensions: Option<u32>) -> String {
  let mut key = CanonicalHasher::default();
  key.tag(b'E', input.len() as u64);
  key.str("model", model);
  for text in input {
    key.str("input", text);
  }
  key.optional_u64("dimensions", dimensions.map(u64::from));
  format!("{KEY_VERSION}:{}", key.finalize().to_hex())
}

/// Encoded bytes gathered before they go into the hash: one hasher update per small field
/// costs more than the hashing of it.
const KEY_BUFFER_BYTES: usize = 1024;

/// Writes values into the hash with a type tag and a length before every variable part,
/// so no two different requests encode to the same bytes.
struct CanonicalHasher {
  hasher: blake3::Hasher,
  buffer: Vec<u8>,
}

impl Default for CanonicalHasher {
  fn default() -> Self {
    CanonicalHasher {
      hasher: blake3::Hasher::new(),
      buffer: Vec::with_capacity(KEY_BUFFER_BYTES),
    }
  }
}

impl CanonicalHasher {
  /// The hash of the bytes is the same however they were split between updates.
  fn write(&mut self, bytes: &[u8]) {
    if self.buffer.len() + bytes.len() > KEY_BUFFER_BYTES {
      self.hasher.update(&self.buffer);
      self.buffer.clear();
      if bytes.len() > KEY_BUFFER_BYTES {
        // A long text or an inline image goes straight in, uncopied.
        self.hasher.update(bytes);
        return;
      }
    }
    self.buffer.extend_from_slice(bytes);
  }

  fn finalize(mut self) -> blake3::Hash {
    self.hasher.update(&self.buffer);
    self.hasher.finalize()
  }

  fn tag(&mut self, tag: u8, value: u64) {
    let mut encoded = [0u8; 9];
    encoded[0] = tag;
    encoded[1..].copy_from_slice(&value.to_le_bytes());
    self.write(&encoded);
  }

  fn bytes(&mut self, tag: u8, bytes: &[u8]) {
    self.tag(tag, bytes.len() as u64);
    self.write(bytes);
  }

  fn str(&mut self, field: &str, value: &str) {
    self.bytes(b'n', field.as_bytes());
    self.bytes(b's', value.as_bytes());
  }

  fn optional_str(&mut self, field: &str, value: Option<&str>) {
    match value {
      Some(value) => self.str(field, value),
      None => self.bytes(b'-', field.as_bytes()),
    }
  }

  fn optional_u64(&mut self, field: &str, value: Option<u64>) {
    self.bytes(b'n', field.as_bytes());
    match value {
      Some(value) => self.tag(b'u', value),
      None => self.tag(b'-', 0),
    }
  }

  fn float(&mut self, field: &str, value: Option<f64>) {
    self.bytes(b'n', field.as_bytes());
    match value {
      // 0.0 and -0.0 sample the same way.
      Some(value) => self.tag(b'f', (value + 0.0).to_bits()),
      None => self.tag(b'-', 0),
    }
  }

  fn message(&mut self, message: &Message) {
    let role = match message.role {
      Role::System => 0,
      Role::User => 1,
      Role::Assistant => 2,
      Role::Tool => 3,
    };
    self.tag(b'r', role);
    self.tag(b'p', message.content.len() as u64);
    for part in &message.content {
      match part {
        ContentPart::Text(text) => self.bytes(b't', text.as_bytes()),
        ContentPart::Image { data, mime_type } => {
          self.bytes(b'i', mime_type.as_bytes());
          self.bytes(b'd', data.as_bytes());
        }
        ContentPart::ImageUrl(url) => self.bytes(b'l', url.as_bytes()),
      }
    }
    self.optional_str("tool_call_id", message.tool_call_id.as_deref());
    self.tag(b'k', message.tool_calls.len() as u64);
    for call in &message.tool_calls {
      self.str("id", &call.id);
      self.str("name", &call.name);
      self.str("arguments", &call.arguments);
    }
  }

  /// JSON with object keys in sorted order: the order a caller wrote them in is not part
  /// of the request's meaning.
  fn json(&mut self, value: &Value) {
    match value {
      Value::Null => self.tag(b'N', 0),
      Value::Bool(flag) => self.tag(b'B', u64::from(*flag)),
      Value::Number(number) => self.bytes(b'#', number.to_string().as_bytes()),
      Value::String(text) => self.bytes(b'"', text.as_bytes()),
      Value::Array(items) => {
        self.tag(b'[', items.len() as u64);
        for item in items {
          self.json(item);
        }
      }
      Value::Object(map) => {
        let mut fields: Vec<(&String, &Value)> = map.iter().collect();
        fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.tag(b'{', fields.len() as u64);
        for (name, field) in fields {
          self.bytes(b'n', name.as_bytes());
          self.json(field);
        }
      }
    }
  }
}

#[cfg(test)]
pub(crate) mod tests {
  use super::*;
  use crate::types::{ToolCall, ToolDefinition};
  use serde_json::json;

  fn base() -> ChatRequest {
    ChatRequest {
      model: "gpt-4o-mini".into(),
      messages: vec![
        Message::text(Role::System, "be brief"),
        Message::text(Role::User, "hello"),
      ],
      tools: vec![ToolDefinition {
        name: "lookup".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}),
      }],
      ..ChatRequest::default()
    }
  }

  const MODEL: &str = "openai/gpt-4o-mini";

  /// Keys are shared through Redis by processes of different versions: the encoding is
  /// pinned (change KEY_VERSION to change it).
  #[test]
  fn the_key_of_a_known_request_is_stable() {
    let mut req = base();
    req.temperature = Some(0.5);
    req.stop = vec!["end".into()];
    req.messages.push(Message {
      tool_calls: vec![ToolCall {
        id: "c1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
        ..ToolCall::default()
      }],
      ..Message::text(Role::Assistant, "x".repeat(3000))
    });
    assert_eq!(
      key_for(MODEL, &req),
      "fg1:b218c18d1e4701b2279c2e9bd2bc1bfd6a372c9c9d130b6d46a2246cab3f9bb1"
    );
  }

  #[test]
  fn json_key_order_and_ignored_fields_do_not_change_the_key() {
    let key = key_for(MODEL, &base());
    let mut reordered = base();
    reordered.tools[0].parameters = serde_json::from_str(
      r#"{"properties": {"n": {"type": "integer"}, "q": {"type": "string"}}, "type": "object"}"#,
    )
    .expect("json");
    assert_eq!(key_for(MODEL, &reordered), key);
    let mut with_user = base();
    with_user.user = Some("alice".into());
    assert_eq!(key_for(MODEL, &with_user), key);
    assert!(key.starts_with("fg1:") && key.len() == 4 + 64);
  }

  #[test]
  fn every_field_that_changes_the_answer_changes_the_key() {
    let key = key_for(MODEL, &base());
    type Change = Box<dyn Fn(&mut ChatRequest)>;
    let variants: Vec<(&str, Change)> = vec![
      (
        "text",
        Box::new(|r| r.messages[1] = Message::text(Role::User, "hello!")),
      ),
      ("role", Box::new(|r| r.messages[0].role = Role::User)),
      (
        "message added",
        Box::new(|r| r.messages.push(Message::text(Role::User, ""))),
      ),
      ("temperature", Box::new(|r| r.temperature = Some(0.5))),
      ("top_p", Box::new(|r| r.top_p = Some(0.9))),
      ("max_tokens", Box::new(|r| r.max_tokens = Some(10))),
      ("stop", Box::new(|r| r.stop = vec!["\n".into()])),
      ("tool name", Box::new(|r| r.tools[0].name = "find".into())),
      (
        "tool schema",
        Box::new(|r| r.tools[0].parameters = json!({"type": "object"})),
      ),
      (
        "tool choice",
        Box::new(|r| r.tool_choice = Some(ToolChoice::Required)),
      ),
      (
        "named tool choice",
        Box::new(|r| r.tool_choice = Some(ToolChoice::Named("lookup".into()))),
      ),
      (
        "response format",
        Box::new(|r| r.response_format = Some(ResponseFormat::JsonObject)),
      ),
      (
        "tool call",
        Box::new(|r| {
          r.messages[1].tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
            thought_signature: None,
          })
        }),
      ),
      (
        "image",
        Box::new(|r| {
          r.messages[1]
            .content
            .push(ContentPart::ImageUrl("https://x/y.png".into()))
        }),
      ),
    ];
    for (name, change) in variants {
      let mut changed = base();
      change(&mut changed);
      assert_ne!(key_for(MODEL, &changed), key, "{name} must change the key");
    }
    assert_ne!(key_for("anthropic/gpt-4o-mini", &base()), key, "provider");
  }

  #[test]
  fn text_boundaries_are_part_of_the_encoding() {
    let mut split = base();
    split.messages = vec![
      Message::text(Role::User, "ab"),
      Message::text(Role::User, "c"),
    ];
    let mut other = base();
    other.messages = vec![
      Message::text(Role::User, "a"),
      Message::text(Role::User, "bc"),
    ];
    assert_ne!(key_for(MODEL, &split), key_for(MODEL, &other));
  }

  /// A stored answer whose content is `content` (the memory store's tests use it too).
  pub(crate) fn answer(content: &str) -> Arc<ChatResponse> {
    Arc::new(ChatResponse {
      id: "r".into(),
      provider: "openai".into(),
      model: "m".into(),
      content: content.into(),
      refusal: None,
      tool_calls: Vec::new(),
      finish_reason: crate::types::FinishReason::Stop,
      usage: crate::types::Usage::new(1, 1),
      cost_usd: 0.0,
      cached: false,
      latency_ms: 1.0,
      ttft_ms: None,
      attempts: 1,
      request_id: "fg".into(),
      embeddings: None,
      cache_similarity: None,
    })
  }

  #[test]
  fn namespaces_sharing_a_store_do_not_see_each_other() {
    let store: Arc<dyn CacheStore> = Arc::new(MemoryCacheStore::new(MemoryCacheLimits::default()));
    let a = ResponseCache::with_store(store.clone(), Some("tenant-a"));
    let b = ResponseCache::with_store(store, Some("tenant-b"));
    ResponseCache::now(a.set("k", answer("for a"), None)).expect("set");
    assert!(ResponseCache::now(b.get("k")).expect("get").is_none());
    let found = ResponseCache::now(a.get("k")).expect("get").expect("hit");
    assert_eq!(found.content, "for a");
  }

  #[test]
  fn a_namespace_that_extends_another_with_a_colon_stays_apart() {
    let store: Arc<dyn CacheStore> = Arc::new(MemoryCacheStore::new(MemoryCacheLimits::default()));
    let acme = ResponseCache::with_store(store.clone(), Some("acme"));
    let acme_eu = ResponseCache::with_store(store, Some("acme:eu"));
    ResponseCache::now(acme_eu.set("k", answer("eu only"), None)).expect("set");
    assert!(ResponseCache::now(acme.get("eu:k")).expect("get").is_none());
    ResponseCache::now(acme.clear()).expect("clear");
    assert!(ResponseCache::now(acme_eu.get("k")).expect("get").is_some());
    assert_eq!(namespace_prefix("acme:eu"), "{7:acme:eu}:");
  }

  #[test]
  fn the_byte_bound_evicts_and_the_count_bound_holds() {
    let cache = ResponseCache::in_memory(
      MemoryCacheLimits {
        max_bytes: Some(10_000),
        ..MemoryCacheLimits::default()
      },
      None,
    );
    let big = "x".repeat(1_000);
    for i in 0..40 {
      ResponseCache::now(cache.set(&format!("k{i}"), answer(&big), None)).expect("set");
    }
    let stats = cache.stats();
    assert!(stats.bytes <= 10_000, "{stats:?}");
    assert!(stats.entries >= 1 && stats.entries < 40, "{stats:?}");

    let counted = ResponseCache::in_memory(
      MemoryCacheLimits {
        max_entries: Some(5),
        max_bytes: Some(1_000_000),
        ttl: None,
      },
      None,
    );
    for i in 0..40 {
      ResponseCache::now(counted.set(&format!("k{i}"), answer("small"), None)).expect("set");
    }
    assert!(counted.stats().entries <= 5);
  }

  #[tokio::test]
  async fn a_leader_dropped_early_lets_followers_retry() {
    let cache = ResponseCache::in_memory(MemoryCacheLimits::default(), None);
    let InFlight::Leader(leader) = cache.join_or_lead("k") else {
      panic!("first caller leads");
    };
    let InFlight::Follower(mut follower) = cache.join_or_lead("k") else {
      panic!("second caller follows");
    };
    drop(leader);
    assert!(follower.wait_for(Option::is_some).await.is_err());
    assert!(matches!(cache.join_or_lead("k"), InFlight::Leader(_)));
  }
}
