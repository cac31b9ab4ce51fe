//! Building the caller's `ChatResponse` from a provider's completion, and counting the
//! tokens a vendor did not report.

use std::time::{Duration, Instant};

use crate::tokens::encoding_for;
use crate::types::{ChatRequest, ChatResponse, Completion, Usage};

/// How the call went, for the response.
pub(crate) struct CallTiming {
  pub started: Instant,
  pub ttft: Option<Duration>,
  pub attempts: u32,
}

pub(crate) fn response(
  provider: &str,
  req: &ChatRequest,
  completion: Completion,
  timing: CallTiming,
  request_id: &str,
) -> ChatResponse {
  let usage = completion
    .usage
    .unwrap_or_else(|| estimate_usage(req, &completion));
  ChatResponse {
    id: if completion.id.is_empty() {
      request_id.to_string()
    } else {
      completion.id
    },
    provider: provider.to_string(),
    model: if completion.model.is_empty() {
      req.model.clone()
    } else {
      completion.model
    },
    content: completion.content,
    refusal: completion.refusal,
    tool_calls: completion.tool_calls,
    finish_reason: completion.finish_reason,
    usage,
    // Pricing arrives with the cost tracker; until then no call is priced.
    cost_usd: 0.0,
    cached: false,
    latency_ms: millis(timing.started.elapsed()),
    ttft_ms: timing.ttft.map(millis),
    attempts: timing.attempts,
    request_id: request_id.to_string(),
    embeddings: completion.embeddings.map(std::sync::Arc::new),
    cache_similarity: None,
  }
}

pub(crate) fn millis(duration: Duration) -> f64 {
  duration.as_secs_f64() * 1000.0
}

/// Counts a call the vendor did not count: prompt framing per OpenAI's cookbook, the
/// answer's text and tool calls.
pub fn estimate_usage(req: &ChatRequest, completion: &Completion) -> Usage {
  let encoding = encoding_for(&req.model);
  let mut completion_tokens = encoding.count_text(&completion.content);
  for call in &completion.tool_calls {
    completion_tokens += encoding.count_text(&call.name) + encoding.count_text(&call.arguments);
  }
  let mut usage = Usage::new(
    encoding.count_messages(&req.messages) as u64,
    completion_tokens as u64,
  );
  usage.estimated = true;
  usage
}
