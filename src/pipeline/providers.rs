//! Provider configuration and construction: which adapter, which key, which base URL.
//! Everything a bad option can break is checked here, once, as CONFIG.

use std::time::Duration;

use crate::error::{GatewayError, Result};
use crate::providers::anthropic::{self, Anthropic};
use crate::providers::gemini::{self, Gemini};
use crate::providers::mock::{self, MockConfig};
use crate::providers::openai::responses::OpenAiResponses;
use crate::providers::openai::{self, OpenAi};
use crate::providers::Adapter;
use crate::secret::{header_secrets, Secret};

use super::http::Clients;

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
  /// A PEM file of CA certificates this provider's server may be signed by.
  pub ca_cert_path: Option<String>,
  /// kind openai: 'chat' (default) or 'responses', the upstream wire API.
  pub api: Option<String>,
}

impl ProviderConfig {
  /// The offline `mock` provider named "mock", streaming a chunk every `chunk_delay`:
  /// what the pipeline's own tests run against.
  #[cfg(test)]
  pub(crate) fn mock(chunk_delay: Duration) -> ProviderConfig {
    ProviderConfig {
      name: "mock".into(),
      kind: "mock".into(),
      mock_chunk_delay: Some(chunk_delay),
      ..ProviderConfig::default()
    }
  }
}

pub(crate) enum Backend {
  Http {
    adapter: Box<dyn Adapter>,
    http: reqwest::Client,
  },
  Mock(MockConfig),
}

pub(crate) struct Provider {
  pub name: String,
  /// `ProviderConfig.kind` ('openai', 'anthropic', 'gemini', 'mock').
  pub kind: String,
  /// `ProviderConfig.api` when it is not the kind's default ('responses' for an `openai`
  /// provider that speaks the Responses API upstream); `None` otherwise.
  pub api: Option<&'static str>,
  pub backend: Backend,
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  pub models: Vec<String>,
}

pub(crate) fn build_provider(
  config: &ProviderConfig,
  secrets: &mut Vec<Secret>,
  clients: &mut Clients,
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
  // Checked here so that a bad value is a CONFIG error now, not a failed (and retried)
  // request later.
  for (header, value) in &config.headers {
    check_header(name, header, value, &format!("header '{header}'"))?;
    // Credentials given as plain headers (Azure's `api-key`, a proxy's bearer token) are
    // secrets too: they must not come back in an echoed error.
    secrets.extend(header_secrets(header, value));
  }
  if let Some(key) = &api_key {
    check_header(name, "x-api-key", key.expose(), "apiKey")?;
  }
  if let Some(organization) = &config.organization {
    check_header(name, "openai-organization", organization, "organization")?;
  }
  let headers = config.headers.clone();
  let responses_api = match (config.kind.as_str(), config.api.as_deref()) {
    (_, None) | (_, Some("chat")) => false,
    ("openai", Some("responses")) => true,
    (_, Some("responses")) => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has api 'responses', which only kind 'openai' speaks"
      )))
    }
    (_, Some(other)) => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has unknown api '{other}' (expected chat or responses)"
      )))
    }
  };
  let adapter: Option<Box<dyn Adapter>> = match config.kind.as_str() {
    "openai" if responses_api => Some(Box::new(OpenAiResponses(OpenAi {
      base_url,
      api_key,
      organization: config.organization.clone(),
      headers,
    }))),
    "openai" => Some(Box::new(OpenAi {
      base_url,
      api_key,
      organization: config.organization.clone(),
      headers,
    })),
    "anthropic" => Some(Box::new(Anthropic {
      base_url,
      api_key,
      headers,
    })),
    "gemini" => Some(Box::new(Gemini {
      base_url,
      api_key,
      headers,
    })),
    _ => None,
  };
  let backend = match adapter {
    Some(adapter) => Backend::Http {
      adapter,
      http: clients.for_provider(name, config.ca_cert_path.as_deref())?,
    },
    None => Backend::Mock(MockConfig {
      chunk_delay: config.mock_chunk_delay.unwrap_or(mock::DEFAULT_CHUNK_DELAY),
    }),
  };
  Ok(Provider {
    name: name.clone(),
    kind: config.kind.clone(),
    api: responses_api.then_some("responses"),
    backend,
    timeout: config.timeout,
    max_retries: config.max_retries,
    models: config.models.clone(),
  })
}

/// A header name and value reqwest will accept, else CONFIG naming the option.
fn check_header(provider: &str, name: &str, value: &str, option: &str) -> Result<()> {
  let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
    && reqwest::header::HeaderValue::from_str(value).is_ok();
  if valid {
    Ok(())
  } else {
    Err(GatewayError::config(format!(
      "provider '{provider}' {option} is not a valid HTTP header (no control characters such as newlines)"
    )))
  }
}
