//! Provider configuration and construction: which adapter, which key, which base URL.
//! Everything a bad option can break is checked here, once, as CONFIG.

use std::time::Duration;

use crate::error::{GatewayError, Result};
use crate::providers::anthropic::{self, Anthropic};
use crate::providers::gemini::{self, Gemini};
use crate::providers::mock::{self, MockConfig};
use crate::providers::openai::{self, OpenAi};
use crate::providers::Adapter;
use crate::secret::Secret;

#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
  pub name: String,
  pub kind: String,
  pub api_key: Option<String>,
  pub base_url: Option<String>,
  pub models: Vec<String>,
  pub headers: Vec<(String, String)>,
  pub organization: Option<String>,
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  pub mock_chunk_delay: Option<Duration>,
}

pub(crate) enum Backend {
  Http(Box<dyn Adapter>),
  Mock(MockConfig),
}

pub(crate) struct Provider {
  pub name: String,
  pub backend: Backend,
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  pub models: Vec<String>,
}

pub(crate) fn build_provider(
  config: &ProviderConfig,
  secrets: &mut Vec<Secret>,
) -> Result<Provider> {
  let name = &config.name;
  let env_names: &[&str] = match config.kind.as_str() {
    "openai" => &["OPENAI_API_KEY"],
    "anthropic" => &["ANTHROPIC_API_KEY"],
    "gemini" => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    "mock" => &[],
    other => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has unknown kind '{other}' (expected openai, anthropic, gemini or mock)"
      )))
    }
  };
  let api_key = config
    .api_key
    .clone()
    .filter(|k| !k.is_empty())
    .or_else(|| {
      env_names
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|k| !k.is_empty()))
    })
    .map(Secret::new);
  if let Some(key) = &api_key {
    secrets.push(key.clone());
  }
  let default_base = match config.kind.as_str() {
    "openai" => openai::DEFAULT_BASE_URL,
    "anthropic" => anthropic::DEFAULT_BASE_URL,
    "gemini" => gemini::DEFAULT_BASE_URL,
    _ => "",
  };
  let base_url = config
    .base_url
    .clone()
    .unwrap_or_else(|| default_base.to_string());
  if config.kind != "mock" {
    let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
      GatewayError::config(format!("provider '{name}' has an invalid baseUrl: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
      return Err(GatewayError::config(format!(
        "provider '{name}' baseUrl must be http or https"
      )));
    }
    // The vendors' own endpoints always need a key; a self-hosted server may not.
    if api_key.is_none() && config.base_url.is_none() {
      return Err(GatewayError::config(format!(
        "provider '{name}' has no apiKey and {} is not set",
        env_names.join(" / ")
      )));
    }
  }
  for (header, value) in &config.headers {
    let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
      && reqwest::header::HeaderValue::from_str(value).is_ok();
    if !valid {
      return Err(GatewayError::config(format!(
        "provider '{name}' has an invalid header '{header}'"
      )));
    }
  }
  if let Some(key) = &api_key {
    if reqwest::header::HeaderValue::from_str(key.expose()).is_err() {
      return Err(GatewayError::config(format!(
        "provider '{name}' apiKey contains characters not allowed in an HTTP header"
      )));
    }
  }
  // Credentials given as plain headers (Azure's `api-key`, a proxy's bearer token) are
  // secrets too: they must not come back in an echoed error.
  for (header, value) in &config.headers {
    let header = header.to_ascii_lowercase();
    if header.contains("key") || header.contains("auth") || header.contains("token") {
      let token = value.strip_prefix("Bearer ").unwrap_or(value);
      secrets.push(Secret::new(token.to_string()));
    }
  }
  let headers = config.headers.clone();
  let backend = match config.kind.as_str() {
    "openai" => Backend::Http(Box::new(OpenAi {
      base_url,
      api_key,
      organization: config.organization.clone(),
      headers,
    })),
    "anthropic" => Backend::Http(Box::new(Anthropic {
      base_url,
      api_key,
      headers,
    })),
    "gemini" => Backend::Http(Box::new(Gemini {
      base_url,
      api_key,
      headers,
    })),
    _ => Backend::Mock(MockConfig {
      chunk_delay: config.mock_chunk_delay.unwrap_or(mock::DEFAULT_CHUNK_DELAY),
    }),
  };
  Ok(Provider {
    name: name.clone(),
    backend,
    timeout: config.timeout,
    max_retries: config.max_retries,
    models: config.models.clone(),
  })
}
