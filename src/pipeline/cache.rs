//! Stage: the response cache. A hit answers at once (replayed as events to a stream);
//! identical concurrent misses share one upstream call, and every caller gets its answer
//! or its error. Only successes are stored.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use super::attempt::{embed_inputs, Work};
use super::forward::{forward_tool_calls, send, EventSink, Progress};
use super::record::{bump, GatewayStats};
use super::response::millis;
use super::CallOptions;
use crate::cache::{embeddings_key_for, key_for, InFlight, ResponseCache};
use crate::error::{ErrorCode, Result};
use crate::types::{ChatRequest, ChatResponse, StreamEvent};

/// A call that goes through the cache: which cache, under which key.
pub(crate) struct Lookup<'a> {
  cache: &'a ResponseCache,
  key: String,
  /// The store's answer, when it was asked ahead of this stage.
  prefetched: Option<Result<Option<Arc<ChatResponse>>>>,
}

impl Lookup<'_> {
  /// True when a lookup is a round trip to another server (the Redis tier).
  pub(crate) fn is_remote(&self) -> bool {
    !self.cache.is_synchronous()
  }

  /// Asks the store now, so that its round trip overlaps an earlier stage's; the answer
  /// is counted as a hit or miss only if the call gets as far as this stage.
  pub(crate) async fn prefetch(&mut self) {
    self.prefetched = Some(self.cache.fetch(&self.key).await);
  }
}

/// `model` as the caller asked: "provider/model", or a route alias, whose targets then
/// share one answer.
pub(crate) fn lookup<'a>(
  cache: Option<&'a ResponseCache>,
  model: &str,
  req: &ChatRequest,
  options: &CallOptions,
  work: Work,
) -> Option<Lookup<'a>> {
  let cache = cache.filter(|_| !options.bypass_cache)?;
  let key = match work {
    Work::Chat => key_for(model, req),
    Work::Embed { dimensions } => embeddings_key_for(model, &embed_inputs(req), dimensions),
  };
  Some(Lookup {
    cache,
    key,
    prefetched: None,
  })
}

/// Who is asking, for the response a hit builds.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
  pub started: Instant,
  pub request_id: &'a str,
  pub sink: &'a EventSink,
  pub progress: &'a Progress,
  /// Told which cache answered, before the first event (the front door's header).
  pub served: &'a std::sync::OnceLock<Served>,
}

/// Which cache answered a call: the front door's `x-ferrogate-cache` header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Served {
  Exact,
  Semantic { similarity: f64 },
}

impl Served {
  pub fn header_value(self) -> String {
    match self {
      Served::Exact => "exact".to_string(),
      Served::Semantic { similarity } => format!("semantic; similarity={similarity:.2}"),
    }
  }
}

pub(crate) async fn through<Upstream, Call>(
  lookup: Option<Lookup<'_>>,
  caller: Caller<'_>,
  stats: &GatewayStats,
  upstream: Upstream,
) -> Result<ChatResponse>
where
  Upstream: FnOnce() -> Call,
  Call: Future<Output = Result<ChatResponse>>,
{
  let Some(Lookup {
    cache,
    key,
    mut prefetched,
  }) = lookup
  else {
    return upstream().await;
  };
  let mut upstream = Some(upstream);
  loop {
    let found = match prefetched.take() {
      Some(Ok(found)) => {
        cache.count_lookup(found.is_some());
        Ok(found)
      }
      Some(Err(error)) => Err(error),
      None => cache.get(&key).await,
    };
    // A store that cannot answer is a miss, never a failed call.
    if let Ok(Some(hit)) = found {
      bump(&stats.cache_hits);
      return serve(&hit, &caller, None).await;
    }
    let leader = match cache.join_or_lead(&key) {
      InFlight::Leader(leader) => leader,
      InFlight::Follower(mut follower) => {
        let shared = follower
          .wait_for(Option::is_some)
          .await
          .ok()
          .and_then(|v| v.clone());
        match shared {
          Some(Ok(answer)) => {
            bump(&stats.cache_coalesced);
            return serve(&answer, &caller, None).await;
          }
          Some(Err(error)) => {
            bump(&stats.cache_coalesced);
            return Err(error);
          }
          // The leader's caller went away before an answer: ask again.
          None => continue,
        }
      }
    };
    // The previous leader may have stored its answer between our lookup and now.
    if let Ok(Some(hit)) = cache.peek(&key).await {
      leader.finish(&Ok(hit.clone())).await;
      bump(&stats.cache_hits);
      return serve(&hit, &caller, None).await;
    }
    bump(&stats.cache_misses);
    let Some(upstream) = upstream.take() else {
      continue;
    };
    let result = upstream().await;
    match &result {
      // The leader's own caller left; its followers did not, so they ask again.
      Err(error) if error.code == ErrorCode::Aborted => drop(leader),
      Ok(response) => leader.finish(&Ok(Arc::new(response.clone()))).await,
      Err(error) => leader.finish(&Err(error.clone())).await,
    }
    return result;
  }
}

/// A stored answer as this caller's response, replayed as events when it streams;
/// `similarity` for an answer of the semantic cache.
pub(crate) async fn serve(
  answer: &ChatResponse,
  caller: &Caller<'_>,
  similarity: Option<f64>,
) -> Result<ChatResponse> {
  let _ = caller.served.set(match similarity {
    Some(similarity) => Served::Semantic { similarity },
    None => Served::Exact,
  });
  if let Some(sink) = caller.sink {
    if !answer.content.is_empty() {
      send(
        sink,
        StreamEvent::Text(answer.content.clone()),
        caller.progress,
      )
      .await?;
    }
    forward_tool_calls(&answer.tool_calls, sink, caller.progress).await?;
  }
  let mut response = answer.clone();
  response.cached = true;
  response.cache_similarity = similarity;
  response.cost_usd = 0.0;
  response.attempts = 0;
  response.request_id = caller.request_id.to_string();
  response.latency_ms = millis(caller.started.elapsed());
  response.ttft_ms = caller
    .progress
    .first_event_at()
    .map(|at| millis(at - caller.started));
  Ok(response)
}
