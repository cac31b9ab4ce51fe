//! Google Vertex AI: Gemini and Claude models behind one service account.
//!
//! - Gemini (`publishers/google`): `POST {baseUrl}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`
//!   and `:streamGenerateContent?alt=sse`, the Gemini wire format (the `gemini` adapter's
//!   request body, response parser and stream decoder).
//! - Claude (`publishers/anthropic`, any model whose name starts with `claude`): `:rawPredict` and
//!   `:streamRawPredict`, the Anthropic Messages format (the `anthropic` adapter's) with
//!   `anthropic_version: 'vertex-2023-10-16'` in the body and the model only in the URL.
//! - Embeddings (Gemini only): `:predict` with one `instances` entry per text.
//!
//! Auth is a service account's access token ([`token::ServiceAccountTokens`]), added by the
//! attempt stage through [`Adapter::authorizer`].

pub mod embeddings;
pub mod service_account;
pub mod token;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::anthropic::{self, Anthropic};
use super::auth::Authorizer;
use super::gemini::{self, Gemini};
use super::{
  http_error, url_with_segments, Adapter, EmbedAnswer, EmbedBatch, HttpCall, StreamDecoder,
};
use crate::error::{GatewayError, Result};
use crate::pipeline::ProviderConfig;
use crate::secret::{redact, Secret};
use crate::types::{ChatRequest, Completion};
use service_account::ServiceAccount;
use token::ServiceAccountTokens;

/// The Anthropic API version Vertex's Claude endpoints take, in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";

/// The default endpoint root for a location: regional hosts, and one global host.
pub fn default_base_url(location: &str) -> String {
  if location == "global" {
    "https://aiplatform.googleapis.com/v1".to_string()
  } else {
    format!("https://{location}-aiplatform.googleapis.com/v1")
  }
}

/// Which publisher serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
  Google,
  Anthropic,
}

impl Publisher {
  pub fn of(model: &str) -> Publisher {
    if model.starts_with("claude") {
      Publisher::Anthropic
    } else {
      Publisher::Google
    }
  }
}

pub struct Vertex {
  base_url: String,
  project: String,
  location: String,
  headers: Vec<(String, String)>,
  auth: Arc<ServiceAccountTokens>,
}

/// The wire formats, for decoding answers; they never build a request here.
static GEMINI_WIRE: Gemini = Gemini {
  base_url: String::new(),
  api_key: None,
  headers: Vec::new(),
};
static CLAUDE_WIRE: Anthropic = Anthropic {
  base_url: String::new(),
  api_key: None,
  headers: Vec::new(),
};

/// The adapter whose decoders read `model`'s answers (and the recorded fixtures').
pub fn wire(model: &str) -> &'static dyn Adapter {
  match Publisher::of(model) {
    Publisher::Google => &GEMINI_WIRE,
    Publisher::Anthropic => &CLAUDE_WIRE,
  }
}

/// A `vertex` provider: the key file read and checked now (CONFIG naming what is wrong),
/// the token fetched at the first call. `api_key` is always `None` (Vertex takes a token).
/// The private key joins `secrets`, to be redacted wherever it might be echoed.
pub fn build(
  config: &ProviderConfig,
  _api_key: Option<Secret>,
  secrets: &mut Vec<Secret>,
) -> Result<Box<dyn Adapter>> {
  let provider = config.name.as_str();
  let from_env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
  let credentials_path = config
    .credentials_path
    .clone()
    .filter(|p| !p.is_empty())
    .or_else(|| from_env("GOOGLE_APPLICATION_CREDENTIALS"))
    .ok_or_else(|| {
      GatewayError::config(format!(
        "provider '{provider}' (kind vertex) has no credentialsPath and GOOGLE_APPLICATION_CREDENTIALS is not set"
      ))
    })?;
  let account = ServiceAccount::from_file(provider, &credentials_path)?;
  secrets.push(account.private_key_secret());
  let project = config
    .project
    .clone()
    .filter(|p| !p.is_empty())
    .or_else(|| from_env("GOOGLE_CLOUD_PROJECT"))
    .or_else(|| account.project_id.clone())
    .ok_or_else(|| {
      GatewayError::config(format!(
        "provider '{provider}' (kind vertex) has no project, GOOGLE_CLOUD_PROJECT is not set and the key file names no project_id"
      ))
    })?;
  let location = config
    .location
    .clone()
    .filter(|l| !l.is_empty())
    .or_else(|| from_env("GOOGLE_CLOUD_LOCATION"))
    .ok_or_else(|| {
      GatewayError::config(format!(
        "provider '{provider}' (kind vertex) has no location (e.g. 'us-central1' or 'global') and GOOGLE_CLOUD_LOCATION is not set"
      ))
    })?;
  // It becomes part of a host name.
  if !location
    .bytes()
    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
  {
    return Err(GatewayError::config(format!(
      "provider '{provider}' location '{location}' is not a Google Cloud location (lowercase letters, digits and '-')"
    )));
  }
  let base_url = config
    .base_url
    .clone()
    .unwrap_or_else(|| default_base_url(&location));
  // The same check every request's URL gets, made now.
  url_with_segments(&base_url, &["projects", &project], None)?;
  Ok(Box::new(Vertex {
    base_url,
    project,
    location,
    headers: config.headers.clone(),
    auth: Arc::new(ServiceAccountTokens::new(provider, account)),
  }))
}

impl Vertex {
  /// `{baseUrl}/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:{method}`
  fn model_url(&self, model: &str, method: &str, query: Option<&str>) -> Result<String> {
    let publisher = match Publisher::of(model) {
      Publisher::Google => "google",
      Publisher::Anthropic => "anthropic",
    };
    let resource = format!("{model}:{method}");
    url_with_segments(
      &self.base_url,
      &[
        "projects",
        &self.project,
        "locations",
        &self.location,
        "publishers",
        publisher,
        "models",
        &resource,
      ],
      query,
    )
  }
}

/// The Messages body as Vertex takes it: the version in the body, the model in the URL.
pub fn claude_body(req: &ChatRequest, stream: bool) -> Result<Value> {
  let mut body = anthropic::request_body(req, stream)?;
  if let Some(fields) = body.as_object_mut() {
    fields.remove("model");
    fields.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
  }
  Ok(body)
}

impl Adapter for Vertex {
  fn vendor(&self) -> &'static str {
    "vertex"
  }

  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall> {
    let model = req.model.as_str();
    let (url, body) = match (Publisher::of(model), stream) {
      (Publisher::Google, false) => (
        self.model_url(model, "generateContent", None)?,
        gemini::request_body(req)?,
      ),
      (Publisher::Google, true) => (
        self.model_url(model, "streamGenerateContent", Some("alt=sse"))?,
        gemini::request_body(req)?,
      ),
      (Publisher::Anthropic, false) => (
        self.model_url(model, "rawPredict", None)?,
        claude_body(req, false)?,
      ),
      (Publisher::Anthropic, true) => (
        self.model_url(model, "streamRawPredict", None)?,
        claude_body(req, true)?,
      ),
    };
    Ok(HttpCall {
      url,
      headers: self.headers.clone(),
      body,
    })
  }

  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion> {
    wire(&req.model).parse_response(req, body)
  }

  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder> {
    wire(&req.model).stream_decoder(req)
  }

  /// An echoed access token never reaches an error message.
  fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    let mut error = http_error(self.vendor(), status, headers, body);
    if let Some(token) = self.auth.current() {
      let secrets = [token.value.clone()];
      error.message = redact(&error.message, &secrets);
      error.cause = error.cause.map(|cause| redact(&cause, &secrets));
    }
    error
  }

  fn authorizer(&self) -> Option<&dyn Authorizer> {
    Some(self.auth.as_ref())
  }

  fn embed_batch_limit(&self) -> usize {
    embeddings::BATCH_LIMIT
  }

  fn build_embed(&self, batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    if Publisher::of(batch.model) == Publisher::Anthropic {
      return Err(super::no_embeddings("vertex (claude)"));
    }
    Ok(HttpCall {
      url: self.model_url(batch.model, "predict", None)?,
      headers: self.headers.clone(),
      body: embeddings::request_body(batch.input, batch.dimensions),
    })
  }

  fn parse_embed(&self, body: &[u8], expected: usize) -> Result<EmbedAnswer> {
    embeddings::parse_response(body, expected)
  }
}
