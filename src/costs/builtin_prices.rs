//! The built-in price list: standard (non-batch) list prices in USD per million tokens.
//!
//! Table date: 2025-11-15. Sources, as published on that date:
//! - OpenAI: https://openai.com/api/pricing and the model pages of
//!   https://platform.openai.com/docs/models (cached input = "Cached input").
//! - Anthropic: https://docs.anthropic.com/en/docs/about-claude/pricing (cache read = 0.1x input,
//!   cache write = the 5-minute write, 1.25x input).
//! - Google: https://ai.google.dev/gemini-api/docs/pricing (paid tier, prompts up to 200k tokens;
//!   the dearer long-prompt tier of 2.5 Pro is not modelled; cached = "Context caching price").
//!
//! - Claude on AWS Bedrock ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", inference-profile ARNs) and
//!   on Google Vertex AI ("claude-sonnet-4-5@20250929") is priced by these entries, cache rates included
//!   (pricing.rs `cloud_model_id`): both clouds list Anthropic's per-token prices. Where a cloud charges
//!   more (a regional endpoint, a provisioned throughput), give its price in `pricing`.
//!
//! `max_output` is the model's largest completion, used to reserve a hard budget when a request
//! sets no `maxTokens`. `cheaper` names the model an alert recommends instead.
//! A `pricing` file or object overrides any of these; prices change, so keep the date honest.

pub const TABLE_DATE: &str = "2025-11-15";

pub struct BuiltinPrice {
  pub model: &'static str,
  /// USD per million tokens.
  pub input: f64,
  pub output: f64,
  pub cached_input: Option<f64>,
  pub cache_write: Option<f64>,
  pub max_output: u32,
  pub cheaper: Option<&'static str>,
}

const fn price(
  model: &'static str,
  input: f64,
  output: f64,
  cached_input: Option<f64>,
  max_output: u32,
  cheaper: Option<&'static str>,
) -> BuiltinPrice {
  BuiltinPrice {
    model,
    input,
    output,
    cached_input,
    cache_write: None,
    max_output,
    cheaper,
  }
}

/// Anthropic: cache reads at 0.1x input, 5-minute cache writes at 1.25x input.
const fn claude(
  model: &'static str,
  input: f64,
  output: f64,
  max_output: u32,
  cheaper: Option<&'static str>,
) -> BuiltinPrice {
  BuiltinPrice {
    model,
    input,
    output,
    cached_input: Some(input * 0.1),
    cache_write: Some(input * 1.25),
    max_output,
    cheaper,
  }
}

pub const BUILTIN_PRICES: &[BuiltinPrice] = &[
  // OpenAI
  price(
    "gpt-5.1",
    1.25,
    10.0,
    Some(0.125),
    128_000,
    Some("gpt-5-mini"),
  ),
  price(
    "gpt-5",
    1.25,
    10.0,
    Some(0.125),
    128_000,
    Some("gpt-5-mini"),
  ),
  price(
    "gpt-5-mini",
    0.25,
    2.0,
    Some(0.025),
    128_000,
    Some("gpt-5-nano"),
  ),
  price("gpt-5-nano", 0.05, 0.40, Some(0.005), 128_000, None),
  price("gpt-5-pro", 15.0, 120.0, None, 272_000, Some("gpt-5")),
  price(
    "gpt-4.1",
    2.0,
    8.0,
    Some(0.50),
    32_768,
    Some("gpt-4.1-mini"),
  ),
  price(
    "gpt-4.1-mini",
    0.40,
    1.60,
    Some(0.10),
    32_768,
    Some("gpt-4.1-nano"),
  ),
  price("gpt-4.1-nano", 0.10, 0.40, Some(0.025), 32_768, None),
  price(
    "gpt-4o",
    2.50,
    10.0,
    Some(1.25),
    16_384,
    Some("gpt-4o-mini"),
  ),
  price("gpt-4o-mini", 0.15, 0.60, Some(0.075), 16_384, None),
  price("o1", 15.0, 60.0, Some(7.50), 100_000, Some("o4-mini")),
  price("o1-pro", 150.0, 600.0, None, 100_000, Some("o3")),
  price("o3-pro", 20.0, 80.0, None, 100_000, Some("o3")),
  price("o3", 2.0, 8.0, Some(0.50), 100_000, Some("o4-mini")),
  price("o3-mini", 1.10, 4.40, Some(0.55), 100_000, None),
  price("o4-mini", 1.10, 4.40, Some(0.275), 100_000, None),
  price("gpt-4-turbo", 10.0, 30.0, None, 4_096, Some("gpt-4o")),
  price("gpt-4", 30.0, 60.0, None, 8_192, Some("gpt-4o")),
  price(
    "gpt-3.5-turbo",
    0.50,
    1.50,
    None,
    4_096,
    Some("gpt-4o-mini"),
  ),
  // Anthropic (dated ids such as claude-sonnet-4-5-20250929 resolve to these by their prefix)
  claude(
    "claude-opus-4-5",
    5.0,
    25.0,
    64_000,
    Some("claude-sonnet-4-5"),
  ),
  claude(
    "claude-opus-4-1",
    15.0,
    75.0,
    32_000,
    Some("claude-sonnet-4-5"),
  ),
  claude(
    "claude-opus-4-0",
    15.0,
    75.0,
    32_000,
    Some("claude-sonnet-4-5"),
  ),
  claude(
    "claude-opus-4",
    15.0,
    75.0,
    32_000,
    Some("claude-sonnet-4-5"),
  ),
  claude(
    "claude-sonnet-4-5",
    3.0,
    15.0,
    64_000,
    Some("claude-haiku-4-5"),
  ),
  claude(
    "claude-sonnet-4-0",
    3.0,
    15.0,
    64_000,
    Some("claude-haiku-4-5"),
  ),
  claude(
    "claude-sonnet-4",
    3.0,
    15.0,
    64_000,
    Some("claude-haiku-4-5"),
  ),
  claude(
    "claude-3-7-sonnet",
    3.0,
    15.0,
    64_000,
    Some("claude-haiku-4-5"),
  ),
  claude(
    "claude-3-5-sonnet",
    3.0,
    15.0,
    8_192,
    Some("claude-3-5-haiku"),
  ),
  claude("claude-haiku-4-5", 1.0, 5.0, 64_000, None),
  claude("claude-3-5-haiku", 0.80, 4.0, 8_192, None),
  claude("claude-3-haiku", 0.25, 1.25, 4_096, None),
  claude(
    "claude-3-opus",
    15.0,
    75.0,
    4_096,
    Some("claude-sonnet-4-5"),
  ),
  // Google Gemini
  price(
    "gemini-3-pro-preview",
    2.0,
    12.0,
    Some(0.20),
    65_536,
    Some("gemini-2.5-flash"),
  ),
  price(
    "gemini-2.5-pro",
    1.25,
    10.0,
    Some(0.125),
    65_536,
    Some("gemini-2.5-flash"),
  ),
  price(
    "gemini-2.5-flash",
    0.30,
    2.50,
    Some(0.03),
    65_536,
    Some("gemini-2.5-flash-lite"),
  ),
  price(
    "gemini-2.5-flash-lite",
    0.10,
    0.40,
    Some(0.01),
    65_536,
    None,
  ),
  price(
    "gemini-2.0-flash",
    0.10,
    0.40,
    Some(0.025),
    8_192,
    Some("gemini-2.0-flash-lite"),
  ),
  price("gemini-2.0-flash-lite", 0.075, 0.30, None, 8_192, None),
  // Embedding models bill input tokens only (same sources and date).
  price("text-embedding-3-small", 0.02, 0.0, None, 0, None),
  price(
    "text-embedding-3-large",
    0.13,
    0.0,
    None,
    0,
    Some("text-embedding-3-small"),
  ),
  price(
    "text-embedding-ada-002",
    0.10,
    0.0,
    None,
    0,
    Some("text-embedding-3-small"),
  ),
  price("gemini-embedding-001", 0.15, 0.0, None, 0, None),
  // Listed free of charge on the Gemini API.
  price("text-embedding-004", 0.0, 0.0, None, 0, None),
];
