//! Stage: the rate limiter. A call is charged one request and, when a token limit is
//! set, its estimated tokens (the prompt's bound + maxTokens; the prompt counted exactly
//! only when that is refused) before it runs; afterwards the estimate is replaced by what
//! it really used.

use super::record::{bump, GatewayStats};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::limiter::RateLimiter;
use crate::tokens::{encoding_for, PromptTokens};
use crate::types::{ChatRequest, ChatResponse};

/// Callers without a `user` share one key.
pub const ANONYMOUS: &str = "anonymous";

/// An admitted call's charge, settled once the call is over.
pub(crate) struct Admission<'a> {
  limiter: &'a RateLimiter,
  key: String,
  estimated: u64,
}

/// `model` is the model as asked (the vendor's is not known before routing); it picks
/// the tokenizer for the estimate.
pub(crate) async fn admit<'a>(
  limiter: Option<&'a RateLimiter>,
  model: &str,
  req: &ChatRequest,
  prompt: &PromptTokens<'_>,
  stats: &GatewayStats,
) -> Result<Option<Admission<'a>>> {
  let Some(limiter) = limiter else {
    return Ok(None);
  };
  let key = req.user.as_deref().unwrap_or(ANONYMOUS);
  let max_tokens = u64::from(req.max_tokens.unwrap_or(0));
  // Charged at the prompt's bound (no tokenizer pass); only a call refused at the bound is
  // counted exactly and asked again (a refusal consumes nothing). Settling replaces the
  // charge with the vendor's usage either way.
  let mut estimated = if limiter.counts_tokens() {
    prompt.bound() as u64 + max_tokens
  } else {
    0
  };
  let mut decision = limiter.acquire(key, estimated).await?;
  if !decision.allowed && estimated > 0 {
    let counted = prompt.count(&encoding_for(model)) as u64 + max_tokens;
    if counted < estimated {
      estimated = counted;
      decision = limiter.acquire(key, estimated).await?;
    }
  }
  if !decision.allowed {
    bump(&stats.limiter_refusals);
    let wait_ms = decision.retry_after.as_millis();
    return Err(
      GatewayError::new(
        ErrorCode::RateLimited,
        format!("rate limit reached for '{key}': retry in {wait_ms} ms"),
      )
      .with_retry_after(Some(decision.retry_after)),
    );
  }
  Ok(Some(Admission {
    limiter,
    key: key.to_string(),
    estimated,
  }))
}

impl Admission<'_> {
  /// A cache hit or a failed call used no vendor tokens; a completed call used what the
  /// vendor billed.
  pub async fn settle(self, outcome: &Result<ChatResponse>) {
    let actual = match outcome {
      Ok(response) if !response.cached => response.usage.total_tokens,
      _ => 0,
    };
    // A store that cannot settle leaves the estimate in place: the safe side.
    let _ = self.limiter.settle(&self.key, self.estimated, actual).await;
  }
}
