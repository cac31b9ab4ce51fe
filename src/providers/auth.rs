//! Credentials that cannot be one fixed header: a token fetched and refreshed (Vertex's
//! service account, an Entra ID token function) or a signature over the exact bytes sent
//! (SigV4). The attempt stage asks the adapter's [`Authorizer`] for them just before each
//! send, after the body is serialized.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;
use crate::secret::Secret;

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Credential>> + Send + 'a>>;

/// Which credentials [`Authorizer::authorize`] put on a request (a pool's key index, a
/// token's generation), handed back to [`Authorizer::rejected`] so it knows what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credential(pub u64);

/// A request about to be sent, as the authorizer sees it.
pub struct OutgoingRequest<'a> {
  pub url: &'a str,
  /// The adapter's headers; the authorizer adds its own.
  pub headers: &'a mut Vec<(String, String)>,
  /// The exact body bytes that will be sent.
  pub body: &'a [u8],
  /// The provider's HTTP client, for a token exchange.
  pub http: &'a reqwest::Client,
}

/// How the vendor refused a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
  /// 401, 403 or 429.
  pub status: u16,
  /// The vendor's retry delay (429), when it gave one.
  pub retry_after: Option<std::time::Duration>,
  /// How many times this request was already sent again after a rejection.
  pub resends: u32,
}

pub trait Authorizer: Send + Sync {
  /// Adds the credential headers to a request about to be sent.
  fn authorize<'a>(&'a self, request: OutgoingRequest<'a>) -> AuthFuture<'a>;

  /// The vendor answered 401, 403 or 429 to `credential`: forget or rest it. `true` when
  /// other credentials may succeed, so the same request is sent again at once (not counted
  /// as a retry); `false` ends it with the vendor's error.
  fn rejected(&self, _credential: Credential, _rejection: Rejection) -> bool {
    false
  }
}

pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String>> + Send>>;

/// A bearer token: fixed, or asked of the caller's function before every request (it
/// caches and refreshes as it sees fit; nothing is kept here).
#[derive(Clone)]
pub enum TokenSource {
  Fixed(Secret),
  Fetch(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl fmt::Debug for TokenSource {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      TokenSource::Fixed(_) => f.write_str("TokenSource::Fixed([REDACTED])"),
      TokenSource::Fetch(_) => f.write_str("TokenSource::Fetch(..)"),
    }
  }
}

/// AWS credentials given in the options instead of the environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsCredentials {
  pub access_key_id: String,
  pub secret_access_key: String,
  pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("AwsCredentials")
      .field("access_key_id", &self.access_key_id)
      .field("secret_access_key", &"[REDACTED]")
      .field(
        "session_token",
        &self.session_token.as_ref().map(|_| "[REDACTED]"),
      )
      .finish()
  }
}
