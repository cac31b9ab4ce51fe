//! Stage: the semantic cache, after the exact cache missed. The last user message is
//! embedded through the gateway's own `embed()` (so its routes, retries, prices, ledger and
//! records apply, with `operation: 'embeddings'`), and the closest earlier question of the
//! same scope answers when it is similar enough. An embedding that fails is a miss, never a
//! failed call. A miss goes upstream, and its answer is kept for the next paraphrase.

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::attempt::Work;
use super::cache::{serve, Caller};
use super::{CallOptions, Gateway};
use crate::error::Result;
use crate::semantic::{Question, SemanticCache};
use crate::types::{ChatResponse, EmbedRequest};

/// A call the semantic cache answers, or sees through and learns from.
pub(crate) struct Asked<'a> {
  cache: &'a SemanticCache,
  question: Question,
  user: Option<String>,
}

/// `None` when the call skips the cache (`cache: false`, an embeddings call, too many
/// messages, a last message that is not plain user text).
pub(crate) fn lookup<'a>(
  cache: Option<&'a SemanticCache>,
  model: &str,
  req: &crate::types::ChatRequest,
  options: &CallOptions,
  work: Work,
) -> Option<Asked<'a>> {
  let cache = cache.filter(|_| !options.bypass_cache && matches!(work, Work::Chat))?;
  Some(Asked {
    cache,
    question: cache.question(model, req)?,
    user: req.user.clone(),
  })
}

pub(crate) async fn through<Upstream, Call>(
  gateway: &Gateway,
  asked: Option<Asked<'_>>,
  caller: Caller<'_>,
  cancel: &CancellationToken,
  upstream: Upstream,
) -> Result<ChatResponse>
where
  Upstream: FnOnce() -> Call,
  Call: Future<Output = Result<ChatResponse>>,
{
  let Some(asked) = asked else {
    return upstream().await;
  };
  let cache = asked.cache;
  let request = EmbedRequest {
    input: vec![asked.question.text],
    user: asked.user,
    ..EmbedRequest::default()
  };
  let request_id = crate::ingress::new_request_id();
  let embedded = gateway
    .embed_boxed(
      &cache.config().embedding_model,
      request,
      CallOptions::default(),
      cancel.child_token(),
      &request_id,
    )
    .await;
  let vector = embedded.ok().and_then(|embedded| {
    embedded
      .embeddings
      .first()
      .and_then(|vector| SemanticCache::usable_vector(vector))
  });
  let Some(vector) = vector else {
    cache.embedding_failed();
    return upstream().await;
  };
  let scope = asked.question.scope;
  if let Some((answer, similarity)) = cache.find(&scope, &vector).await {
    return serve(&answer, &caller, Some(similarity)).await;
  }
  let result = upstream().await;
  if let Ok(response) = &result {
    cache
      .remember(scope, vector, Arc::new(response.clone()))
      .await;
  }
  result
}

#[cfg(test)]
mod tests {
  use std::time::Duration;

  use super::*;
  use crate::pipeline::{CallHook, GatewayConfig, Operation, ProviderConfig};
  use crate::semantic::SemanticConfig;
  use crate::types::{ChatRequest, Message, Role};

  use crate::pipeline::RecordedCalls as Records;

  fn asking(text: &str) -> ChatRequest {
    ChatRequest {
      messages: vec![Message::text(Role::User, text)],
      ..ChatRequest::default()
    }
  }

  #[tokio::test]
  async fn a_question_asked_again_is_answered_by_the_semantic_cache_after_an_embedding_call() {
    let records = Arc::new(Records::default());
    let cache = SemanticCache::in_memory(SemanticConfig {
      embedding_model: "mock/embed".into(),
      threshold: 0.95,
      max_entries: 100,
      ttl: None,
      namespace: String::new(),
      max_messages: 4,
    })
    .expect("cache");
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::ZERO)],
      semantic_cache: Some(Arc::new(cache)),
      on_call: Some(CallHook(records.clone())),
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let ask = |options: CallOptions| {
      gateway.execute(
        "mock/demo",
        asking("what is the capital of France?"),
        options,
        None,
        CancellationToken::new(),
        "r",
      )
    };
    let first = ask(CallOptions::default()).await.expect("first");
    assert!(!first.cached);
    let options = CallOptions::default();
    let served = options.served.clone();
    let again = ask(options).await.expect("again");
    assert!(again.cached);
    assert_eq!(again.attempts, 0);
    assert_eq!(again.content, first.content);
    let similarity = again.cache_similarity.expect("a similarity");
    assert!(similarity > 0.999, "{similarity}");
    assert_eq!(
      served.get().copied(),
      Some(super::super::Served::Semantic { similarity })
    );
    let skipped = ask(CallOptions {
      bypass_cache: true,
      ..CallOptions::default()
    })
    .await
    .expect("skipped");
    assert!(!skipped.cached);
    let records = records.0.lock().expect("records");
    let embeddings = records
      .iter()
      .filter(|r| r.operation == Operation::Embeddings)
      .count();
    assert_eq!(embeddings, 2, "no embedding for cache: false");
    let hit = records
      .iter()
      .find(|r| r.operation == Operation::Chat && r.cached)
      .expect("the hit's record");
    assert_eq!(hit.cache_similarity, Some(similarity));
  }
}
