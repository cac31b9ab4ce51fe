//! Budget stage: before the call, reserve its maximum cost against the user's hard budget.
//! The ledger stage settles the reservation with the real cost; a reservation dropped
//! unsettled (the call never reached the vendor) is released.

use super::ledger::Accounting;
use super::route::CallTargets;
use crate::costs::{PromptSize, Reservation, ANONYMOUS};
use crate::error::Result;
use crate::tokens::{encoding_for, is_exact, PromptTokens};
use crate::types::ChatRequest;

/// Reserves when the request's user has a hard budget, at the dearest deployment the
/// call may be served by (a route's targets can differ in price); BUDGET_EXCEEDED (402)
/// when the call could pass the budget, UPSTREAM_UNAVAILABLE (503) when the tracker's
/// shared budget store is unreachable (hard budgets fail closed).
pub(crate) async fn reserve(
  accounting: &Accounting,
  targets: &CallTargets,
  req: &ChatRequest,
  prompt: &PromptTokens<'_>,
) -> Result<Option<Reservation>> {
  let Some(tracker) = accounting.tracker() else {
    return Ok(None);
  };
  let user = req.user.as_deref().unwrap_or(ANONYMOUS);
  // Counting the prompt costs a tokenizer pass: only for users a reservation protects.
  if !tracker.has_hard_budget(user) {
    // A soft budget only alerts; with a shared ledger its alerts need every process's spend.
    tracker.sync_period(user).await;
    return Ok(None);
  }
  // A mock deployment reserves nothing unless `pricing` names its model (it is free otherwise).
  let deployments: Vec<(String, String)> = targets
    .deployments()
    .into_iter()
    .filter(|(name, vendor_model)| {
      let provider = name
        .strip_suffix(vendor_model.as_str())
        .and_then(|p| p.strip_suffix('/'))
        .unwrap_or(name);
      !accounting.is_mock(provider) || tracker.pricing().lookup_overrides(name).is_some()
    })
    .collect();
  if deployments.is_empty() {
    return Ok(None);
  }
  let models: Vec<&str> = deployments.iter().map(|(name, _)| name.as_str()).collect();
  // The tokenizer runs only for a call that does not fit at the bound (near the budget).
  let exact = || {
    deployments
      .iter()
      .map(|(_, vendor_model)| prompt_tokens_bound(vendor_model, req, prompt))
      .max()
      .unwrap_or(0)
  };
  let size = PromptSize {
    bound: deployments
      .iter()
      .map(|(_, vendor_model)| prompt_size_bound(vendor_model, req, prompt))
      .max()
      .unwrap_or(0),
    count: Some(&exact),
  };
  // A refusal is counted by its error code (`stats().budgetRefusals`).
  tracker
    .reserve_sized_async(user, &models, &size, req.max_tokens)
    .await
}

/// An upper estimate of what the vendor will bill as prompt tokens: messages and tool
/// definitions, exact for OpenAI models; for vendors whose tokenizers are not public the
/// o200k_base count is raised by a quarter so the reservation stays an upper bound.
fn prompt_tokens_bound(vendor_model: &str, req: &ChatRequest, prompt: &PromptTokens<'_>) -> u64 {
  let encoding = encoding_for(vendor_model);
  let mut tokens = prompt.count(&encoding);
  for tool in &req.tools {
    tokens += encoding.count_text(&tool.name)
      + encoding.count_text(tool.description.as_deref().unwrap_or_default())
      + encoding.count_text(&tool.parameters.to_string());
  }
  raise_if_estimated(tokens as u64, encoding.exact)
}

/// `prompt_tokens_bound` without a tokenizer pass: bytes stand for tokens (a token is at
/// least a byte), so it is at least `prompt_tokens_bound` for every model.
fn prompt_size_bound(vendor_model: &str, req: &ChatRequest, prompt: &PromptTokens<'_>) -> u64 {
  let mut bytes = prompt.bound();
  for tool in &req.tools {
    bytes += tool.name.len()
      + tool.description.as_deref().map_or(0, str::len)
      + json_len(&tool.parameters);
  }
  raise_if_estimated(bytes as u64, is_exact(vendor_model))
}

fn raise_if_estimated(tokens: u64, exact: bool) -> u64 {
  if exact {
    tokens
  } else {
    tokens + tokens.div_ceil(4)
  }
}

/// The length of a value's compact JSON, without building it.
fn json_len(value: &serde_json::Value) -> usize {
  struct Counter(usize);
  impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
      self.0 += bytes.len();
      Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
      Ok(())
    }
  }
  let mut counter = Counter(0);
  let _ = serde_json::to_writer(&mut counter, value);
  counter.0
}
