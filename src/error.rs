//! One error type for the whole core, mapped once at the binding boundary to the
//! JS error codes of API.md.

use std::time::Duration;

/// The stable codes JS callers branch on (`err.code`). Each carries the HTTP status a
/// server built on ferrogate should answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
  RateLimited,
  BudgetExceeded,
  Authentication,
  InvalidRequest,
  NotFound,
  ProviderError,
  UpstreamUnavailable,
  Timeout,
  Aborted,
  Config,
  CallbackError,
  GuardrailBlocked,
}

impl ErrorCode {
  /// Every code, in a fixed order (`index()` is the position here).
  pub const ALL: [ErrorCode; 12] = [
    ErrorCode::RateLimited,
    ErrorCode::BudgetExceeded,
    ErrorCode::Authentication,
    ErrorCode::InvalidRequest,
    ErrorCode::NotFound,
    ErrorCode::ProviderError,
    ErrorCode::UpstreamUnavailable,
    ErrorCode::Timeout,
    ErrorCode::Aborted,
    ErrorCode::Config,
    ErrorCode::CallbackError,
    ErrorCode::GuardrailBlocked,
  ];

  pub fn index(self) -> usize {
    self as usize
  }

  pub fn as_str(self) -> &'static str {
    match self {
      ErrorCode::RateLimited => "RATE_LIMITED",
      ErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
      ErrorCode::Authentication => "AUTHENTICATION",
      ErrorCode::InvalidRequest => "INVALID_REQUEST",
      ErrorCode::NotFound => "NOT_FOUND",
      ErrorCode::ProviderError => "PROVIDER_ERROR",
      ErrorCode::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
      ErrorCode::Timeout => "TIMEOUT",
      ErrorCode::Aborted => "ABORTED",
      ErrorCode::Config => "CONFIG",
      ErrorCode::CallbackError => "CALLBACK_ERROR",
      ErrorCode::GuardrailBlocked => "GUARDRAIL_BLOCKED",
    }
  }

  /// Default HTTP status for the code; AUTHENTICATION keeps the vendor's 401 or 403.
  pub fn default_status(self) -> u16 {
    match self {
      ErrorCode::RateLimited => 429,
      ErrorCode::BudgetExceeded => 402,
      ErrorCode::Authentication => 401,
      ErrorCode::InvalidRequest | ErrorCode::GuardrailBlocked => 400,
      ErrorCode::NotFound => 404,
      ErrorCode::ProviderError => 502,
      ErrorCode::UpstreamUnavailable => 503,
      ErrorCode::Timeout => 504,
      ErrorCode::Aborted => 499,
      ErrorCode::Config | ErrorCode::CallbackError => 500,
    }
  }
}

/// Everything that can go wrong in a gateway call. `message` is always safe to show:
/// it has been through [`crate::redact`] before it reaches JS.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
  pub code: ErrorCode,
  pub status: u16,
  pub message: String,
  /// Configured provider name (the key in `providers`), when a provider was involved.
  pub provider: Option<String>,
  /// How long the vendor asked us to wait (Retry-After, retry-after-ms, RetryInfo).
  pub retry_after: Option<Duration>,
  /// The vendor's own request id (`x-request-id`, `request-id`, Anthropic's body `request_id`).
  /// A `Box<str>` rather than a `String`: it keeps the error under clippy's large-error size.
  pub upstream_request_id: Option<Box<str>>,
  /// Whether another attempt may succeed (decided by the vendor's status and error type).
  pub retryable: bool,
  /// A lower-level description (transport error, vendor error type) kept for `cause`.
  pub cause: Option<String>,
  /// GUARDRAIL_BLOCKED: the guardrail that blocked the call and what it found (never the text).
  pub guardrail: Option<Box<GuardrailHit>>,
}

/// Which guardrail blocked a call, and the entity it found ('credit_card', 'regex', …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailHit {
  pub guardrail: String,
  pub entity: String,
}

pub type Result<T> = std::result::Result<T, GatewayError>;

impl GatewayError {
  pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
    GatewayError {
      code,
      status: code.default_status(),
      message: message.into(),
      provider: None,
      retry_after: None,
      upstream_request_id: None,
      retryable: false,
      cause: None,
      guardrail: None,
    }
  }

  pub fn config(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::Config, message)
  }

  pub fn invalid_request(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::InvalidRequest, message)
  }

  pub fn not_found(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::NotFound, message)
  }

  /// The vendor sent something we cannot make sense of, or a stream broke off.
  pub fn protocol(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::ProviderError, message)
  }

  pub fn timeout(after: Duration) -> Self {
    Self::new(
      ErrorCode::Timeout,
      format!("request timed out after {} ms", after.as_millis()),
    )
  }

  pub fn aborted() -> Self {
    Self::new(ErrorCode::Aborted, "request aborted by the caller's signal")
  }

  pub fn with_status(mut self, status: u16) -> Self {
    self.status = status;
    self
  }

  pub fn with_provider(mut self, provider: &str) -> Self {
    self.provider = Some(provider.to_string());
    self
  }

  pub fn retryable(mut self, retryable: bool) -> Self {
    self.retryable = retryable;
    self
  }

  pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
    if after.is_some() {
      self.retry_after = after;
    }
    self
  }

  pub fn with_cause(mut self, cause: impl Into<String>) -> Self {
    self.cause = Some(cause.into());
    self
  }

  /// GUARDRAIL_BLOCKED naming the guardrail and the entity it found.
  pub fn guardrail_blocked(guardrail: &str, entity: &str, message: impl Into<String>) -> Self {
    let mut error = Self::new(ErrorCode::GuardrailBlocked, message);
    error.guardrail = Some(Box::new(GuardrailHit {
      guardrail: guardrail.to_string(),
      entity: entity.to_string(),
    }));
    error
  }

  pub fn with_upstream_request_id(mut self, id: Option<String>) -> Self {
    if let Some(id) = id {
      self.upstream_request_id = Some(id.into_boxed_str());
    }
    self
  }
}
