//! Azure OpenAI: OpenAI's wire format at Azure's URLs, with Azure's credentials.
//!
//! Two URL shapes. The v1 API: `baseUrl` is `https://{resource}.openai.azure.com/openai/v1`
//! and the request's model is the deployment name, exactly as OpenAI's (`/chat/completions`,
//! `/responses`, `/embeddings`). The classic API: `baseUrl` is the resource root and
//! `deployment` + `apiVersion` give `/openai/deployments/{deployment}/chat/completions
//! ?api-version=…` (the deployment is one escaped path segment; Responses live at
//! `/openai/responses?api-version=…`). The key goes in `api-key`; an Entra ID token, fixed
//! or asked of the caller's function before every send, in `Authorization: Bearer`.

use reqwest::header::HeaderMap;

use super::auth::{AuthFuture, Authorizer, Credential, OutgoingRequest, TokenSource};
use super::openai::responses::OpenAiResponses;
use super::openai::OpenAi;
use super::{url_with_segments, Adapter, EmbedAnswer, EmbedBatch, HttpCall, StreamDecoder};
use crate::error::{GatewayError, Result};
use crate::pipeline::{ProviderConfig, WireApi};
use crate::secret::Secret;
use crate::types::{ChatRequest, Completion};

/// Read when `baseUrl` is not given, as the `openai` package's `AzureOpenAI` does.
pub const ENDPOINT_ENV: &str = "AZURE_OPENAI_ENDPOINT";

pub struct Azure {
  /// The OpenAI adapter at Azure's URL, with the fixed credential headers.
  inner: Box<dyn Adapter>,
  /// Classic URLs have no free model list under a deployment: health is checked by a call.
  classic: bool,
  /// An Entra ID token function, asked before every send.
  token: Option<TokenAuthorizer>,
}

/// The adapter of an `azure` provider; `api_key` is `apiKey` / `AZURE_OPENAI_API_KEY`.
pub fn build(
  config: &ProviderConfig,
  api: WireApi,
  api_key: Option<Secret>,
  secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  let name = &config.name;
  let config_error = |what: String| GatewayError::config(format!("provider '{name}' {what}"));
  let base_url = config
    .base_url
    .clone()
    .or_else(|| std::env::var(ENDPOINT_ENV).ok().filter(|url| !url.is_empty()))
    .ok_or_else(|| {
      config_error(format!(
        "(kind azure) has no baseUrl and {ENDPOINT_ENV} is not set: give https://{{resource}}.openai.azure.com/openai/v1, or https://{{resource}}.openai.azure.com with deployment and apiVersion"
      ))
    })?;
  let classic = match (config.deployment.as_deref(), config.api_version.as_deref()) {
    (None, None) => None,
    (None, Some(_)) => {
      return Err(config_error(
        "(kind azure) has apiVersion but no deployment: classic deployment URLs need both (or leave both out and use the v1 baseUrl)".into(),
      ))
    }
    (Some(_), None) => {
      return Err(config_error(
        "(kind azure) has deployment but no apiVersion: classic deployment URLs need both (or leave both out and use the v1 baseUrl)".into(),
      ))
    }
    (Some(deployment), Some(version)) => {
      if deployment.is_empty() || version.is_empty() {
        return Err(config_error(
          "(kind azure) has an empty deployment or apiVersion".into(),
        ));
      }
      Some((deployment, version))
    }
  };
  let url = match classic {
    None => base_url,
    Some((deployment, version)) => {
      let version = format!("api-version={}", urlencoding(version));
      let segments: &[&str] = match api {
        WireApi::Chat => &["openai", "deployments", deployment],
        WireApi::Responses => &["openai"],
      };
      url_with_segments(&base_url, segments, Some(&version))
        .map_err(|e| config_error(format!("(kind azure): {}", e.message)))?
    }
  };
  let mut headers = config.headers.clone();
  if config.azure_ad_token.is_some() && !config.api_keys.is_empty() {
    return Err(config_error(
      "(kind azure) has both apiKeys and azureAdToken: give one".into(),
    ));
  }
  let token = match (&config.azure_ad_token, config.api_key.as_deref()) {
    (Some(_), Some(key)) if !key.is_empty() => {
      return Err(config_error(
        "(kind azure) has both apiKey and azureAdToken: give one".into(),
      ))
    }
    (Some(TokenSource::Fixed(token)), _) => {
      secrets.push(token.clone());
      headers.push(("authorization".into(), format!("Bearer {}", token.expose())));
      None
    }
    (Some(TokenSource::Fetch(fetch)), _) => {
      Some(TokenAuthorizer(TokenSource::Fetch(fetch.clone())))
    }
    (None, _) => {
      match &api_key {
        Some(key) => headers.push(("api-key".into(), key.expose().to_string())),
        None if !config.api_keys.is_empty() => {}
        None => {
          return Err(config_error(
            "(kind azure) has no apiKey or azureAdToken, and AZURE_OPENAI_API_KEY is not set"
              .into(),
          ))
        }
      }
      None
    }
  };
  let openai = OpenAi {
    base_url: url,
    api_key: None,
    organization: None,
    headers,
  };
  let inner: Box<dyn Adapter> = match api {
    WireApi::Chat => Box::new(openai),
    WireApi::Responses => Box::new(OpenAiResponses(openai)),
  };
  Ok(Box::new(Azure {
    inner,
    classic: classic.is_some(),
    token,
  }))
}

/// Percent-encodes a query value (an `api-version` is plain, but it is the caller's text).
fn urlencoding(value: &str) -> String {
  url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The caller's token function, asked before every send; nothing is cached here (the
/// function caches and refreshes as it sees fit).
struct TokenAuthorizer(TokenSource);

impl Authorizer for TokenAuthorizer {
  fn authorize<'a>(&'a self, request: OutgoingRequest<'a>) -> AuthFuture<'a> {
    Box::pin(async move {
      let token = match &self.0 {
        TokenSource::Fixed(token) => token.expose().to_string(),
        TokenSource::Fetch(fetch) => fetch().await?,
      };
      if token.is_empty() || reqwest::header::HeaderValue::from_str(&token).is_err() {
        return Err(GatewayError::new(
          crate::error::ErrorCode::Authentication,
          "azureAdToken returned no usable token (an empty string, or one with characters a header cannot carry)",
        ));
      }
      request
        .headers
        .push(("authorization".into(), format!("Bearer {token}")));
      Ok(Credential::default())
    })
  }
}

impl Adapter for Azure {
  fn vendor(&self) -> &'static str {
    "azure"
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    self.inner.build(req, stream)
  }

  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    self.inner.parse_response(req, body)
  }

  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
    self.inner.stream_decoder(req)
  }

  fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    super::http_error(self.vendor(), status, headers, body)
  }

  fn key_header(&self, key: &str) -> Option<(String, String)> {
    Some(("api-key".into(), key.to_string()))
  }

  fn authorizer(&self) -> Option<&dyn Authorizer> {
    self.token.as_ref().map(|token| token as &dyn Authorizer)
  }

  /// The free GET goes out without the authorizer: with a token function, or at classic
  /// URLs (no model list under a deployment), health is checked by a 1-token call.
  fn health_check(&self) -> Option<HttpCall> {
    if self.classic || self.token.is_some() {
      None
    } else {
      self.inner.health_check()
    }
  }

  fn embed_batch_limit(&self) -> usize {
    self.inner.embed_batch_limit()
  }

  fn build_embed(&self, batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    self.inner.build_embed(batch)
  }

  fn parse_embed(&self, body: &[u8], expected: usize) -> Result<EmbedAnswer> {
    self.inner.parse_embed(body, expected)
  }
}
