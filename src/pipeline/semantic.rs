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
