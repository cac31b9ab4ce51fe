//! Access tokens for a service account: fetched from its `token_uri` with a signed JWT,
//! kept until shortly before they expire, and shared. Concurrent calls that find no fresh
//! token wait for one fetch (single flight) and share its token or its failure; a token the
//! vendor refused (401) is dropped once, however many calls saw it refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::service_account::ServiceAccount;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::providers::auth::{AuthFuture, Authorizer, Credential, OutgoingRequest, Rejection};
use crate::providers::classify_status;
use crate::secret::Secret;

/// A token is refetched this long before it expires (at most a quarter of its lifetime),
/// so that no call sets out with one that runs out on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Token endpoint answers are small; more than this is not one.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

pub struct AccessToken {
  pub value: Secret,
  pub fresh_until: Instant,
  /// Which fetch produced it: a 401 drops the token only if it is still this one.
  pub generation: u64,
}

pub struct ServiceAccountTokens {
  provider: String,
  account: ServiceAccount,
  current: Mutex<Option<Arc<AccessToken>>>,
  /// Held for the whole of a fetch: the single flight.
  fetching: tokio::sync::Mutex<FetchLog>,
  /// Fetches that have ended (well or not); the next one is number `ended_fetches + 1`.
  ended_fetches: AtomicU64,
}

/// The outcome of the latest fetch, for the calls that waited on it.
#[derive(Default)]
struct FetchLog {
  last_failure: Option<(u64, GatewayError)>,
}

#[derive(Deserialize)]
struct TokenResponse {
  access_token: Option<String>,
  expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct TokenError {
  error: Option<String>,
  error_description: Option<String>,
}

impl ServiceAccountTokens {
  pub fn new(provider: &str, account: ServiceAccount) -> ServiceAccountTokens {
    ServiceAccountTokens {
      provider: provider.to_string(),
      account,
      current: Mutex::new(None),
      fetching: tokio::sync::Mutex::new(FetchLog::default()),
      ended_fetches: AtomicU64::new(0),
    }
  }

  pub fn account(&self) -> &ServiceAccount {
    &self.account
  }

  /// The token in use, fresh or not (to redact it from an echoed error).
  pub fn current(&self) -> Option<Arc<AccessToken>> {
    self.current.lock().ok().and_then(|current| current.clone())
  }

  fn fresh(&self) -> Option<Arc<AccessToken>> {
    self
      .current()
      .filter(|token| Instant::now() < token.fresh_until)
  }

  /// A fresh token: the one held, or one fetched now (with `http`, the provider's client)
  /// by this call or a concurrent one.
  pub async fn token(&self, http: &reqwest::Client) -> Result<Arc<AccessToken>> {
    if let Some(token) = self.fresh() {
      return Ok(token);
    }
    // Counted on arrival: a fetch in flight now ends after this call asked.
    let ended_before = self.ended_fetches.load(Ordering::SeqCst);
    let mut log = self.fetching.lock().await;
    if let Some(token) = self.fresh() {
      return Ok(token);
    }
    // A fetch that ended while this call waited failed: that failure is this call's too,
    // rather than one more request to an endpoint that just refused.
    if let Some((generation, error)) = &log.last_failure {
      if *generation > ended_before {
        return Err(error.clone());
      }
    }
    // Under the lock this is the only fetch in flight.
    let generation = self.ended_fetches.load(Ordering::SeqCst) + 1;
    let outcome = self.fetch(http, generation).await;
    self.ended_fetches.store(generation, Ordering::SeqCst);
    match outcome {
      Ok(token) => {
        let token = Arc::new(token);
        if let Ok(mut current) = self.current.lock() {
          *current = Some(token.clone());
        }
        log.last_failure = None;
        Ok(token)
      }
      Err(error) => {
        log.last_failure = Some((generation, error.clone()));
        Err(error)
      }
    }
  }

  /// The vendor refused the token of `generation`: drop it unless a newer one replaced it.
  pub fn refused(&self, generation: u64) {
    if let Ok(mut current) = self.current.lock() {
      if current.as_ref().is_some_and(|t| t.generation == generation) {
        *current = None;
      }
    }
  }

  async fn fetch(&self, http: &reqwest::Client, generation: u64) -> Result<AccessToken> {
    let assertion = self.account.assertion()?;
    let form = url::form_urlencoded::Serializer::new(String::new())
      .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
      .append_pair("assertion", &assertion)
      .finish();
    let asked_at = Instant::now();
    let response = http
      .post(&self.account.token_uri)
      .header("content-type", "application/x-www-form-urlencoded")
      .header("accept", "application/json")
      .body(form)
      .send()
      .await
      .map_err(|e| self.unreachable(&e))?;
    let status = response.status().as_u16();
    let body = read_limited(response)
      .await
      .map_err(|e| self.unreachable(&e))?;
    if !(200..300).contains(&status) {
      return Err(self.refused_error(status, &body));
    }
    let answer: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
      self.error(
        ErrorCode::ProviderError,
        "answered with something other than a token response",
      )
    })?;
    let value = answer
      .access_token
      .filter(|t| !t.is_empty())
      .ok_or_else(|| self.error(ErrorCode::ProviderError, "answered without an access_token"))?;
    // Google always says; a token of unknown lifetime is used for one call's worth of time.
    let lifetime = answer
      .expires_in
      .filter(|s| s.is_finite() && *s > 0.0)
      .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
      .unwrap_or(Duration::ZERO);
    let margin = REFRESH_MARGIN.min(lifetime / 4);
    Ok(AccessToken {
      value: Secret::new(value),
      fresh_until: asked_at + lifetime - margin,
      generation,
    })
  }

  fn error(&self, code: ErrorCode, what: &str) -> GatewayError {
    let host = url::Url::parse(&self.account.token_uri)
      .ok()
      .and_then(|u| u.host_str().map(str::to_string))
      .unwrap_or_default();
    GatewayError::new(
      code,
      format!(
        "provider '{}' could not get an access token for {}: the token endpoint at {host} {what}",
        self.provider, self.account.client_email
      ),
    )
    .with_provider(&self.provider)
  }

  fn unreachable(&self, e: &reqwest::Error) -> GatewayError {
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
      causes.push(cause.to_string());
      source = cause.source();
    }
    self
      .error(ErrorCode::UpstreamUnavailable, "could not be reached")
      .retryable(true)
      .with_cause(causes.join(": "))
  }

  /// The endpoint's OAuth error (`invalid_grant: Invalid JWT Signature.`) is safe to show:
  /// it describes the assertion, never contains it.
  fn refused_error(&self, status: u16, body: &[u8]) -> GatewayError {
    let (code, retryable) = match status {
      // OAuth says 400 for a refused grant (bad signature, unknown account, disabled key).
      400 | 401 | 403 => (ErrorCode::Authentication, false),
      other => classify_status(other),
    };
    let reason = serde_json::from_slice::<TokenError>(body)
      .ok()
      .and_then(|e| match (e.error, e.error_description) {
        (Some(error), Some(description)) => Some(format!("{error}: {description}")),
        (Some(error), None) => Some(error),
        (None, description) => description,
      })
      .map(|reason| reason.chars().take(300).collect::<String>())
      .unwrap_or_else(|| "no reason given".into());
    self
      .error(code, &format!("answered HTTP {status} ({reason})"))
      .retryable(retryable)
  }
}

async fn read_limited(response: reqwest::Response) -> std::result::Result<Vec<u8>, reqwest::Error> {
  use futures_util::StreamExt;
  let mut body = Vec::new();
  let mut chunks = response.bytes_stream();
  while let Some(chunk) = chunks.next().await {
    let chunk = chunk?;
    let room = MAX_TOKEN_RESPONSE_BYTES.saturating_sub(body.len());
    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    if room <= chunk.len() {
      break;
    }
  }
  Ok(body)
}

impl Authorizer for ServiceAccountTokens {
  fn authorize<'a>(&'a self, request: OutgoingRequest<'a>) -> AuthFuture<'a> {
    Box::pin(async move {
      let token = self.token(request.http).await?;
      request.headers.push((
        "authorization".into(),
        format!("Bearer {}", token.value.expose()),
      ));
      Ok(Credential(token.generation))
    })
  }

  /// A 401 drops the token and sends the request once more with a fresh one; a second
  /// 401, a 403 (no permission: another token has none either) or a 429 end the request.
  fn rejected(&self, credential: Credential, rejection: Rejection) -> bool {
    if rejection.status != 401 || rejection.resends > 0 {
      return false;
    }
    self.refused(credential.0);
    true
  }
}
