//! Provider configuration and construction: which adapter, which key, which base URL.
//! Everything a bad option can break is checked here, once, as CONFIG.

use std::sync::Arc;
use std::time::Duration;

use super::http::Clients;
use super::kind::{KeyRequirement, KeySource, Kind, KindSpec, WireApi};
use crate::error::{GatewayError, Result};
use crate::providers::anthropic::Anthropic;
use crate::providers::auth::{AwsCredentials, TokenSource};
use crate::providers::gemini::Gemini;
use crate::providers::key_pool::{KeyPool, Pooled};
use crate::providers::mock::{self, MockConfig};
use crate::providers::openai::responses::OpenAiResponses;
use crate::providers::openai::OpenAi;
use crate::providers::{azure, bedrock, vertex, Adapter};
use crate::secret::{header_secrets, Secret};

#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
  pub name: String,
  /// A kind or a preset ('openai', 'azure', 'groq', …), parsed by [`KindSpec::parse`].
  pub kind: String,
  pub api_key: Option<String>,
  /// A key pool, used in order as keys rest (instead of `api_key`).
  pub api_keys: Vec<String>,
  pub base_url: Option<String>,
  pub models: Vec<String>,
  pub headers: Vec<(String, String)>,
  pub organization: Option<String>,
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  pub mock_chunk_delay: Option<Duration>,
  /// A PEM file of CA certificates this provider's server may be signed by.
  pub ca_cert_path: Option<String>,
  /// kind openai / azure: 'chat' (default) or 'responses', the upstream wire API.
  pub api: Option<String>,
  /// azure, classic URLs: the deployment name and its `api-version`.
  pub deployment: Option<String>,
  pub api_version: Option<String>,
  /// azure: an Entra ID token, sent as Bearer instead of `api-key`.
  pub azure_ad_token: Option<TokenSource>,
  /// bedrock: the AWS region (else AWS_REGION / AWS_DEFAULT_REGION).
  pub region: Option<String>,
  /// bedrock: credentials instead of the AWS environment variables.
  pub credentials: Option<AwsCredentials>,
  /// vertex: the Google Cloud project and location.
  pub project: Option<String>,
  pub location: Option<String>,
  /// vertex: a service-account key file (else GOOGLE_APPLICATION_CREDENTIALS).
  pub credentials_path: Option<String>,
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
    http: super::http::Lanes,
  },
  Mock(MockConfig),
}

pub(crate) struct Provider {
  pub name: String,
  /// The kind (a preset is kind `openai`).
  pub kind: Kind,
  /// The wire API used upstream (`ProviderConfig.api`; Chat Completions unless 'responses').
  pub api: WireApi,
  /// `apiKeys`: the pool the adapter takes its key from, for `health()` and the metrics.
  pub key_pool: Option<Arc<KeyPool>>,
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
  let spec = KindSpec::parse(&config.kind).ok_or_else(|| {
    GatewayError::config(format!(
      "provider '{name}' has unknown kind '{}' (expected one of {})",
      config.kind,
      KindSpec::names().join(", ")
    ))
  })?;
  let kind = spec.kind;
  let env_names: &[&str] = match spec.key_source() {
    KeySource::Env(names) => names,
    KeySource::None => &[],
  };
  let pooled = !config.api_keys.is_empty();
  if pooled && config.api_key.as_ref().is_some_and(|k| !k.is_empty()) {
    return Err(GatewayError::config(format!(
      "provider '{name}' has both apiKey and apiKeys: give one"
    )));
  }
  for key in &config.api_keys {
    secrets.push(Secret::new(key.clone()));
  }
  // With a pool, no key from the environment: the pool adds its own per send.
  let api_key = config
    .api_key
    .clone()
    .filter(|k| !k.is_empty() && !pooled)
    .or_else(|| {
      if pooled {
        return None;
      }
      env_names
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|k| !k.is_empty()))
    })
    .map(Secret::new);
  if let Some(key) = &api_key {
    secrets.push(key.clone());
  }
  let base_url = config
    .base_url
    .clone()
    .or_else(|| spec.default_base_url().map(str::to_string));
  if let Some(base_url) = &base_url {
    let parsed = reqwest::Url::parse(base_url).map_err(|e| {
      GatewayError::config(format!("provider '{name}' has an invalid baseUrl: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
      return Err(GatewayError::config(format!(
        "provider '{name}' baseUrl must be http or https"
      )));
    }
  }
  match spec.key_requirement() {
    // The vendors' own endpoints always need a key; a self-hosted server may not.
    KeyRequirement::UnlessBaseUrl if api_key.is_none() && !pooled && config.base_url.is_none() => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has no apiKey and {} is not set",
        env_names.join(" / ")
      )));
    }
    KeyRequirement::UnlessBaseUrl | KeyRequirement::CheckedByBuilder | KeyRequirement::Never => {}
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
  let api = match config.api.as_deref() {
    None => WireApi::Chat,
    Some(text) => WireApi::parse(text).ok_or_else(|| {
      GatewayError::config(format!(
        "provider '{name}' has unknown api '{text}' (expected chat or responses)"
      ))
    })?,
  };
  if !kind.takes_wire_api(api) {
    return Err(GatewayError::config(format!(
      "provider '{name}' has api '{}', which kind '{}' does not speak (only openai and azure do)",
      api.as_str(),
      kind.as_str()
    )));
  }
  // Kinds whose base URL has a fixed default always have one here.
  let vendor_base = || base_url.clone().unwrap_or_default();
  let adapter: Option<Box<dyn Adapter>> = match kind {
    Kind::OpenAi => {
      let openai = OpenAi {
        base_url: vendor_base(),
        api_key,
        organization: config.organization.clone(),
        headers,
      };
      Some(match api {
        WireApi::Chat => Box::new(openai),
        WireApi::Responses => Box::new(OpenAiResponses(openai)),
      })
    }
    Kind::Anthropic => Some(Box::new(Anthropic {
      base_url: vendor_base(),
      api_key,
      headers,
    })),
    Kind::Gemini => Some(Box::new(Gemini {
      base_url: vendor_base(),
      api_key,
      headers,
    })),
    Kind::Azure => Some(azure::build(config, api, api_key, secrets)?),
    Kind::Bedrock => Some(bedrock::build(config, api_key, secrets)?),
    Kind::Vertex => Some(vertex::build(config, api_key, secrets)?),
    Kind::Mock => None,
  };
  let (adapter, key_pool) = match adapter {
    Some(adapter) if pooled => {
      if adapter.authorizer().is_some() {
        return Err(GatewayError::config(format!(
          "provider '{name}' has apiKeys, but kind '{}' authenticates with its own credentials here",
          kind.as_str()
        )));
      }
      let pool = Arc::new(KeyPool::new(name, &config.api_keys, adapter.as_ref())?);
      let pooled: Box<dyn Adapter> = Box::new(Pooled {
        inner: adapter,
        pool: pool.clone(),
      });
      (Some(pooled), Some(pool))
    }
    None if pooled => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has apiKeys, but kind 'mock' takes no key"
      )))
    }
    other => (other, None),
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
    kind,
    api,
    key_pool,
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

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::ErrorCode;
  use crate::pipeline::Preset;
  use crate::types::ChatRequest;

  fn build(config: ProviderConfig) -> Result<Provider> {
    build_provider(&config, &mut Vec::new(), &mut Clients::new())
  }

  fn url_of(provider: &Provider) -> String {
    let Backend::Http { adapter, .. } = &provider.backend else {
      panic!("not an HTTP provider");
    };
    adapter
      .build(&ChatRequest::default(), false)
      .expect("build")
      .url
  }

  #[test]
  fn a_preset_is_the_openai_kind_at_the_vendors_base_url_and_an_explicit_base_url_wins() {
    for preset in Preset::ALL {
      let provider = build(ProviderConfig {
        name: "p".into(),
        kind: preset.as_str().into(),
        api_key: Some("k".into()),
        ..ProviderConfig::default()
      })
      .expect("preset");
      assert_eq!(provider.kind, Kind::OpenAi);
      assert_eq!(
        url_of(&provider),
        format!("{}/chat/completions", preset.base_url())
      );
    }
    let local = build(ProviderConfig {
      name: "p".into(),
      kind: "groq".into(),
      api_key: Some("k".into()),
      base_url: Some("http://127.0.0.1:9/v1".into()),
      ..ProviderConfig::default()
    })
    .expect("override");
    assert_eq!(url_of(&local), "http://127.0.0.1:9/v1/chat/completions");
  }

  #[test]
  fn a_preset_needs_its_own_key_variable_except_the_local_one() {
    let error = build(ProviderConfig {
      name: "p".into(),
      kind: "cerebras".into(),
      ..ProviderConfig::default()
    })
    .map(|_| ())
    .expect_err("no key");
    assert_eq!(error.code, ErrorCode::Config);
    assert!(
      error.message.contains("CEREBRAS_API_KEY"),
      "{}",
      error.message
    );
    build(ProviderConfig {
      name: "p".into(),
      kind: "ollama".into(),
      ..ProviderConfig::default()
    })
    .expect("ollama takes no key");
  }

  #[test]
  fn an_unknown_kind_is_config_naming_it_and_the_known_ones() {
    let error = build(ProviderConfig {
      name: "p".into(),
      kind: "groqq".into(),
      ..ProviderConfig::default()
    })
    .map(|_| ())
    .expect_err("unknown");
    assert_eq!(error.code, ErrorCode::Config);
    assert!(error.message.contains("unknown kind 'groqq'"));
    assert!(error.message.contains("openrouter") && error.message.contains("azure"));
  }
}
