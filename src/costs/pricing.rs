//! Model prices: the built-in table, overrides in LiteLLM's
//! `model_prices_and_context_window.json` format, and pricing a call's usage.
//!
//! Lookup order for "provider/model": the `pricing` overrides by the full name, then by each
//! shorter suffix down to the bare model name; then the built-in table the same way; then,
//! for dated ids ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929", "…-latest"), the same
//! again without the date. So an override wins over the built-in table whichever name form
//! it uses, and a full name wins over a bare one.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::builtin_prices::{BuiltinPrice, BUILTIN_PRICES};
use super::money::{CostSum, Nanos, TokenPrice};
use crate::error::{GatewayError, Result};
use crate::types::Usage;

/// Completion tokens reserved for a hard budget when neither the request (`maxTokens`) nor
/// the price list says how long an answer can be.
pub const DEFAULT_RESERVED_OUTPUT_TOKENS: u32 = 32_768;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
  Builtin,
  Pricing,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelPrice {
  pub input: TokenPrice,
  pub output: TokenPrice,
  /// Prompt tokens read from the vendor's cache; `None` bills them as input.
  pub cached_input: Option<TokenPrice>,
  /// Prompt tokens written to the vendor's cache; `None` bills them as input.
  pub cache_write: Option<TokenPrice>,
  pub max_output_tokens: Option<u32>,
  pub source: PriceSource,
  /// The built-in model an alert recommends instead.
  pub cheaper: Option<&'static str>,
}

impl ModelPrice {
  /// What a mock model costs when `pricing` does not name it.
  pub fn free() -> ModelPrice {
    ModelPrice {
      input: TokenPrice(0),
      output: TokenPrice(0),
      cached_input: None,
      cache_write: None,
      max_output_tokens: None,
      source: PriceSource::Pricing,
      cheaper: None,
    }
  }

  /// What `usage` costs. Reasoning tokens are part of `completion_tokens` and so priced as
  /// output; cached and cache-write prompt tokens at their own rates.
  pub fn cost(&self, usage: &Usage) -> Nanos {
    let special = usage
      .cached_prompt_tokens
      .saturating_add(usage.cache_write_prompt_tokens);
    let mut sum = CostSum::default();
    sum.add(usage.prompt_tokens.saturating_sub(special), self.input);
    sum.add(
      usage.cached_prompt_tokens,
      self.cached_input.unwrap_or(self.input),
    );
    sum.add(
      usage.cache_write_prompt_tokens,
      self.cache_write.unwrap_or(self.input),
    );
    sum.add(usage.completion_tokens, self.output);
    sum.nanos()
  }

  /// The most a call can cost: every prompt token at the dearest prompt rate (a cache write
  /// costs more than plain input), and the longest answer allowed.
  pub fn max_cost(&self, prompt_tokens: u64, max_tokens: Option<u32>) -> Nanos {
    let prompt_rate = self.input.max(self.cache_write.unwrap_or(self.input));
    let output_tokens = max_tokens
      .or(self.max_output_tokens)
      .unwrap_or(DEFAULT_RESERVED_OUTPUT_TOKENS);
    let mut sum = CostSum::default();
    sum.add(prompt_tokens, prompt_rate);
    sum.add(u64::from(output_tokens), self.output);
    sum.nanos()
  }
}

/// The built-in table merged under the caller's overrides.
#[derive(Debug, Default)]
pub struct Pricing {
  overrides: HashMap<String, ModelPrice>,
}

impl Pricing {
  /// The built-in table alone.
  pub fn builtin() -> &'static Pricing {
    static EMPTY: OnceLock<Pricing> = OnceLock::new();
    EMPTY.get_or_init(Pricing::default)
  }

  /// Overrides from a LiteLLM-format object: `{ [model]: { input_cost_per_token, … } }`.
  pub fn from_litellm(document: &Value) -> Result<Pricing> {
    let Value::Object(entries) = document else {
      return Err(GatewayError::config(
        "pricing must be an object of { [model]: { input_cost_per_token, output_cost_per_token } }",
      ));
    };
    let mut overrides = HashMap::new();
    for (model, entry) in entries {
      // LiteLLM's file documents its own format in a first "sample_spec" entry.
      if model == "sample_spec" {
        continue;
      }
      let Value::Object(fields) = entry else {
        return Err(GatewayError::config(format!(
          "pricing['{model}'] must be an object"
        )));
      };
      if let Some(price) = litellm_entry(model, fields)? {
        overrides.insert(model.clone(), price);
      }
    }
    Ok(Pricing { overrides })
  }

  /// Overrides from a LiteLLM-format JSON file.
  pub fn from_file(path: &str) -> Result<Pricing> {
    let text = std::fs::read_to_string(path).map_err(|e| {
      GatewayError::config(format!("could not read the pricing file '{path}': {e}"))
    })?;
    let document: Value = serde_json::from_str(&text).map_err(|e| {
      GatewayError::config(format!("the pricing file '{path}' is not valid JSON: {e}"))
    })?;
    Pricing::from_litellm(&document)
  }

  /// The price of a bare or "provider/model" name; `None` when nothing matches.
  pub fn lookup(&self, model: &str) -> Option<ModelPrice> {
    self
      .find(model)
      .or_else(|| undated(bare(model)).and_then(|name| self.find(name)))
      .or_else(|| {
        let vendor_id = cloud_model_id(bare(model))?;
        self
          .find(vendor_id)
          .or_else(|| undated(vendor_id).and_then(|name| self.find(name)))
      })
  }

  /// The caller's `pricing` alone, without the built-in table (a mock model is priced only
  /// when `pricing` names it).
  pub fn lookup_overrides(&self, model: &str) -> Option<ModelPrice> {
    let find = |name: &str| suffixes(name).find_map(|n| self.overrides.get(n).cloned());
    find(model).or_else(|| undated(bare(model)).and_then(find))
  }

  fn find(&self, model: &str) -> Option<ModelPrice> {
    suffixes(model)
      .find_map(|name| self.overrides.get(name).cloned())
      .or_else(|| suffixes(model).find_map(|name| builtin_table().get(name).cloned()))
  }

  pub fn override_count(&self) -> usize {
    self.overrides.len()
  }
}

/// The name, then each part after a '/', down to the bare model: provider names and
/// vendor model ids may both contain slashes.
fn suffixes(model: &str) -> impl Iterator<Item = &str> {
  std::iter::once(model).chain(model.match_indices('/').map(|(i, _)| &model[i + 1..]))
}

fn bare(model: &str) -> &str {
  model.rsplit('/').next().unwrap_or(model)
}

/// A cloud's id for a vendor's model, as the vendor names it: Bedrock's
/// "us.anthropic.claude-sonnet-4-5-20250929-v1:0" (a cross-region inference profile; the ARN's
/// last part) and Vertex's "claude-sonnet-4-5@20250929" or "claude-3-5-sonnet-v2@20241022" →
/// "claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "claude-3-5-sonnet". `None` when the
/// name is not such an id.
fn cloud_model_id(model: &str) -> Option<&str> {
  if let Some((name, _date)) = model.split_once('@') {
    return Some(without_version(name));
  }
  let (_, rest) = model.split_once("anthropic.")?;
  // Whatever is before "anthropic." must be a region prefix ("us.", "eu.", "global." …).
  let prefix = &model[..model.len() - rest.len() - "anthropic.".len()];
  let region_prefix = prefix.is_empty()
    || prefix.strip_suffix('.').is_some_and(|region| {
      !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    });
  if !region_prefix {
    return None;
  }
  let rest = rest.split_once(':').map_or(rest, |(name, _)| name);
  Some(without_version(rest))
}

/// "…-v1" / "…-v2" (a cloud's revision of the model) removed.
fn without_version(name: &str) -> &str {
  match name.rsplit_once("-v") {
    Some((stem, version)) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => {
      stem
    }
    _ => name,
  }
}

/// A dated or `-latest` id without its suffix: "gpt-4o-2024-08-06" → "gpt-4o",
/// "claude-3-5-haiku-20241022" → "claude-3-5-haiku".
fn undated(model: &str) -> Option<&str> {
  if let Some(stem) = model.strip_suffix("-latest") {
    return Some(stem);
  }
  let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
  let (stem, last) = model.rsplit_once('-')?;
  if last.len() == 8 && is_digits(last) {
    return Some(stem);
  }
  // -YYYY-MM-DD
  let (stem2, month) = stem.rsplit_once('-')?;
  let (stem3, year) = stem2.rsplit_once('-')?;
  if year.len() == 4
    && month.len() == 2
    && last.len() == 2
    && [year, month, last].iter().all(|s| is_digits(s))
  {
    return Some(stem3);
  }
  None
}

fn builtin_table() -> &'static HashMap<&'static str, ModelPrice> {
  static TABLE: OnceLock<HashMap<&'static str, ModelPrice>> = OnceLock::new();
  TABLE.get_or_init(|| {
    BUILTIN_PRICES
      .iter()
      .map(|entry| (entry.model, builtin_price(entry)))
      .collect()
  })
}

fn per_million(usd: f64) -> TokenPrice {
  TokenPrice((usd * 1e6).round() as u64)
}

fn builtin_price(entry: &BuiltinPrice) -> ModelPrice {
  ModelPrice {
    input: per_million(entry.input),
    output: per_million(entry.output),
    cached_input: entry.cached_input.map(per_million),
    cache_write: entry.cache_write.map(per_million),
    max_output_tokens: Some(entry.max_output),
    source: PriceSource::Builtin,
    cheaper: entry.cheaper,
  }
}

/// One LiteLLM entry; `None` for entries with no per-token price (image models and the like).
fn litellm_entry(model: &str, fields: &Map<String, Value>) -> Result<Option<ModelPrice>> {
  let cost = |field: &str| -> Result<Option<TokenPrice>> {
    match fields.get(field) {
      None | Some(Value::Null) => Ok(None),
      Some(value) => value
        .as_f64()
        .and_then(TokenPrice::from_usd_per_token)
        .map(Some)
        .ok_or_else(|| {
          GatewayError::config(format!(
            "pricing['{model}'].{field} must be a non-negative number of USD per token, not {value}"
          ))
        }),
    }
  };
  let input = cost("input_cost_per_token")?;
  let output = cost("output_cost_per_token")?;
  if input.is_none() && output.is_none() {
    return Ok(None);
  }
  let max_output_tokens = match fields.get("max_output_tokens") {
    None | Some(Value::Null) => None,
    Some(value) => Some(
      value
        .as_u64()
        .filter(|n| *n > 0)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .ok_or_else(|| {
          GatewayError::config(format!(
            "pricing['{model}'].max_output_tokens must be a positive integer, not {value}"
          ))
        })?,
    ),
  };
  // Recommendations still work for an overridden built-in model.
  let cheaper = suffixes(model)
    .chain(undated(bare(model)))
    .find_map(|name| builtin_table().get(name))
    .and_then(|builtin| builtin.cheaper);
  Ok(Some(ModelPrice {
    input: input.unwrap_or_default(),
    output: output.unwrap_or_default(),
    cached_input: cost("cache_read_input_token_cost")?,
    cache_write: cost("cache_creation_input_token_cost")?,
    max_output_tokens,
    source: PriceSource::Pricing,
    cheaper,
  }))
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn usage(prompt: u64, completion: u64) -> Usage {
    Usage::new(prompt, completion)
  }

  #[test]
  fn bedrock_and_vertex_claude_ids_have_the_claude_prices_with_cache_rates() {
    let pricing = Pricing::builtin();
    let sonnet = pricing.lookup("claude-sonnet-4-5").expect("sonnet");
    for id in [
      "anthropic.claude-sonnet-4-5-20250929-v1:0",
      "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
      "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
      "bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
      "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
      "claude-sonnet-4-5@20250929",
      "vertex/claude-sonnet-4-5@20250929",
    ] {
      assert_eq!(pricing.lookup(id), Some(sonnet.clone()), "{id}");
    }
    assert!(sonnet.cached_input.is_some() && sonnet.cache_write.is_some());
    let v2 = pricing.lookup("claude-3-5-sonnet").expect("3.5 sonnet");
    assert_eq!(
      pricing.lookup("anthropic.claude-3-5-sonnet-20241022-v2:0"),
      Some(v2.clone())
    );
    assert_eq!(pricing.lookup("claude-3-5-sonnet-v2@20241022"), Some(v2));
    assert_eq!(pricing.lookup("notanthropic.claude-sonnet-4-5"), None);
    assert_eq!(pricing.lookup("meta.llama3-70b-instruct-v1:0"), None);
  }

  #[test]
  fn builtin_models_are_found_by_full_bare_and_dated_names() {
    let pricing = Pricing::builtin();
    let mini = pricing.lookup("gpt-4o-mini").expect("bare");
    assert_eq!(mini.input.usd_per_million(), 0.15);
    assert_eq!(pricing.lookup("openai/gpt-4o-mini"), Some(mini.clone()));
    assert_eq!(pricing.lookup("openai/gpt-4o-mini-2024-07-18"), Some(mini));
    let sonnet = pricing
      .lookup("anthropic/claude-sonnet-4-5-20250929")
      .expect("dated claude");
    assert_eq!(sonnet.output.usd_per_million(), 15.0);
    assert_eq!(sonnet.cache_write.map(|p| p.usd_per_million()), Some(3.75));
    assert!(pricing.lookup("claude-3-5-haiku-latest").is_some());
    assert!(pricing.lookup("gemini/gemini-2.5-flash").is_some());
    assert_eq!(pricing.lookup("mock/demo"), None);
    assert_eq!(pricing.lookup("gpt-4o-mini-2024"), None);
  }

  #[test]
  fn overrides_win_whichever_name_form_they_use() {
    let pricing = Pricing::from_litellm(&json!({
      "gpt-4o": { "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6 },
      "team/llama": { "input_cost_per_token": 3e-7, "output_cost_per_token": 6e-7 },
      "llama": { "input_cost_per_token": 9e-7, "output_cost_per_token": 9e-7 },
    }))
    .expect("pricing");
    // A bare override beats the built-in entry for the full name.
    let gpt = pricing.lookup("openai/gpt-4o").expect("gpt-4o");
    assert_eq!(gpt.input.usd_per_million(), 1.0);
    assert_eq!(gpt.source, PriceSource::Pricing);
    assert_eq!(gpt.cheaper, Some("gpt-4o-mini"));
    // The full name beats the bare one.
    assert_eq!(
      pricing
        .lookup("team/llama")
        .map(|p| p.input.usd_per_million()),
      Some(0.3)
    );
    assert_eq!(
      pricing
        .lookup("other/llama")
        .map(|p| p.input.usd_per_million()),
      Some(0.9)
    );
    // Models not overridden keep their built-in price.
    assert_eq!(
      pricing.lookup("gpt-4o-mini").map(|p| p.source),
      Some(PriceSource::Builtin)
    );
  }

  #[test]
  fn bad_pricing_entries_are_config_errors() {
    let cases = [
      json!([]),
      json!({ "m": 1 }),
      json!({ "m": { "input_cost_per_token": -1e-6 } }),
      json!({ "m": { "input_cost_per_token": "cheap" } }),
      json!({ "m": { "input_cost_per_token": 1e-6, "max_output_tokens": 1.5 } }),
    ];
    for case in cases {
      let error = Pricing::from_litellm(&case).expect_err("invalid");
      assert_eq!(error.code, crate::error::ErrorCode::Config, "{case}");
    }
    // Entries without token prices (image models) are skipped, as is LiteLLM's sample_spec.
    let pricing = Pricing::from_litellm(&json!({
      "sample_spec": { "input_cost_per_token": "the price" },
      "dall-e-3": { "output_cost_per_image": 0.04 },
    }))
    .expect("pricing");
    assert_eq!(pricing.override_count(), 0);
  }

  #[test]
  fn costs_price_each_kind_of_token_at_its_rate() {
    let pricing = Pricing::builtin();
    let sonnet = pricing.lookup("claude-sonnet-4-5").expect("sonnet");
    let mut used = usage(10_000, 1_000);
    used.cached_prompt_tokens = 6_000;
    used.cache_write_prompt_tokens = 2_000;
    used.reasoning_tokens = 400;
    // 2000 × $3 + 6000 × $0.30 + 2000 × $3.75 + 1000 × $15, per million.
    let expected = (2_000.0 * 3.0 + 6_000.0 * 0.30 + 2_000.0 * 3.75 + 1_000.0 * 15.0) / 1e6;
    assert_eq!(sonnet.cost(&used).usd(), expected);
    // Without a cached rate, cached tokens cost what input costs.
    let old = pricing.lookup("gpt-4").expect("gpt-4");
    let mut cached = usage(1_000, 0);
    cached.cached_prompt_tokens = 1_000;
    assert_eq!(old.cost(&cached), old.cost(&usage(1_000, 0)));
  }

  #[test]
  fn max_cost_uses_max_tokens_or_the_models_longest_answer() {
    let mini = Pricing::builtin().lookup("gpt-4o-mini").expect("mini");
    // 100 × $0.15 + 50 × $0.60 per million.
    assert_eq!(mini.max_cost(100, Some(50)).usd(), 45e-6);
    assert_eq!(mini.max_cost(0, None).usd(), 16_384.0 * 0.60 / 1e6);
    let sonnet = Pricing::builtin()
      .lookup("claude-sonnet-4-5")
      .expect("sonnet");
    // Prompt tokens are reserved at the cache-write rate, the dearest prompt rate.
    assert_eq!(sonnet.max_cost(1_000, Some(0)).usd(), 1_000.0 * 3.75 / 1e6);
  }

  #[test]
  fn a_pricing_file_loads_and_a_missing_one_is_a_config_error() {
    let dir = std::env::temp_dir().join(format!("ferrogate-pricing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("prices.json");
    std::fs::write(
      &path,
      r#"{ "my-model": { "input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6, "cache_read_input_token_cost": 1e-7, "max_output_tokens": 1000 } }"#,
    )
    .expect("write");
    let pricing = Pricing::from_file(path.to_str().expect("utf-8")).expect("file");
    let price = pricing.lookup("p/my-model").expect("my-model");
    assert_eq!(price.max_output_tokens, Some(1000));
    assert_eq!(price.cached_input.map(|p| p.usd_per_million()), Some(0.1));
    let missing = Pricing::from_file("/nonexistent/prices.json").expect_err("missing");
    assert_eq!(missing.code, crate::error::ErrorCode::Config);
    std::fs::remove_dir_all(dir).ok();
  }
}
