//! Spending alerts: the seed's three kinds, each with a severity, a message and concrete
//! recommendations. The tracker decides when one fires (once per crossing); this file
//! decides what it says.

use super::money::Nanos;
use super::pricing::{ModelPrice, Pricing};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
  /// A budget reached 90% (warning) or 100% (critical; for a hard budget, also a refused call).
  BudgetExceeded,
  /// The last 7 days cost over twice the weekly average of the 28 days before them.
  UnusualSpending,
  /// A call to a model whose output price is at or above the high-cost threshold.
  HighCostModel,
}

impl AlertKind {
  pub fn as_str(self) -> &'static str {
    match self {
      AlertKind::BudgetExceeded => "budget_exceeded",
      AlertKind::UnusualSpending => "unusual_spending",
      AlertKind::HighCostModel => "high_cost_model",
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
  Info,
  Warning,
  Critical,
}

impl Severity {
  pub fn as_str(self) -> &'static str {
    match self {
      Severity::Info => "info",
      Severity::Warning => "warning",
      Severity::Critical => "critical",
    }
  }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
  pub kind: AlertKind,
  pub severity: Severity,
  pub user: String,
  pub message: String,
  pub recommendations: Vec<String>,
  pub at_ms: i64,
  /// The model of the call that raised the alert.
  pub model: Option<String>,
  /// Budget: spent this period; unusual spending: the last 7 days.
  pub amount: Option<Nanos>,
  /// Budget: the budget; unusual spending: the previous weekly average.
  pub threshold: Option<Nanos>,
}

/// "$0.0042", "$12.50": enough digits to see a small cost.
pub fn usd(amount: Nanos) -> String {
  let value = amount.usd();
  if value >= 1.0 || value == 0.0 {
    format!("${value:.2}")
  } else {
    let text = format!("{value:.6}");
    let trimmed = text.trim_end_matches('0');
    format!("${}", trimmed.trim_end_matches('.'))
  }
}

pub fn per_million(price: &ModelPrice) -> String {
  format!(
    "${}/${} per million input/output tokens",
    trim(price.input.usd_per_million()),
    trim(price.output.usd_per_million())
  )
}

fn trim(value: f64) -> String {
  let text = format!("{value:.4}");
  text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A cheaper model with its price, prompt trimming, caching.
pub fn recommendations(
  pricing: &Pricing,
  model: Option<&str>,
  price: Option<&ModelPrice>,
  prompt_tokens: u64,
) -> Vec<String> {
  let mut out = Vec::new();
  let alternative = price.and_then(|price| {
    let cheaper = price.cheaper?;
    let cheaper_price = pricing.lookup(cheaper)?;
    (cheaper_price.output < price.output || cheaper_price.input < price.input).then_some((
      cheaper,
      cheaper_price,
      price,
    ))
  });
  match (model, alternative) {
    (Some(model), Some((cheaper, cheaper_price, price))) => out.push(format!(
      "Switch routine requests from {model} ({}) to {cheaper} ({}).",
      per_million(price),
      per_million(&cheaper_price)
    )),
    _ => {
      out.push("Route routine requests to a smaller, cheaper model of the same vendor.".to_string())
    }
  }
  if prompt_tokens > 0 {
    out.push(format!(
      "Trim prompts: this call sent {prompt_tokens} prompt tokens; shorten system prompts and send only the recent conversation history."
    ));
  } else {
    out.push(
      "Trim prompts: shorten system prompts and send only the recent conversation history."
        .to_string(),
    );
  }
  out.push(
    "Cache responses (ResponseCache) so repeated prompts cost nothing, and keep prompt prefixes stable so the vendor's prompt cache bills them at the cached rate."
      .to_string(),
  );
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn amounts_show_enough_digits() {
    assert_eq!(usd(Nanos(12_500_000_000)), "$12.50");
    assert_eq!(usd(Nanos(4_200_000)), "$0.0042");
    assert_eq!(usd(Nanos::ZERO), "$0.00");
  }

  #[test]
  fn recommendations_name_a_cheaper_model_with_its_price() {
    let pricing = Pricing::builtin();
    let price = pricing.lookup("gpt-4o").expect("gpt-4o");
    let advice = recommendations(pricing, Some("openai/gpt-4o"), Some(&price), 1200);
    assert_eq!(advice.len(), 3);
    assert!(
      advice[0].contains("gpt-4o-mini ($0.15/$0.6 per million"),
      "{}",
      advice[0]
    );
    assert!(advice[1].contains("1200 prompt tokens"));
    assert!(advice[2].contains("ResponseCache"));
    let generic = recommendations(pricing, Some("x/unknown"), None, 0);
    assert!(generic[0].contains("smaller, cheaper model"));
  }
}
