//! Reaching the shared engines (Redis, PostgreSQL) that the shared stores live on.
//!
//! Every shared store connects the same way: the URL is parsed and checked first (a bad URL
//! is a CONFIG error), the first connection must succeed within [`CONNECT_TIMEOUT`] (an
//! unreachable server at start is an UPSTREAM_UNAVAILABLE error naming the server), and the
//! URL shown in any message never carries its password.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{ErrorCode, GatewayError, Result};

/// How long a store waits for its server when it is created.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may take before it counts as a failure of the server. Commands are
/// single round trips on loopback or a LAN; anything slower means the server is in trouble,
/// and each piece's fault policy (fail open, miss, fail closed) should apply quickly.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// The URL as it may appear in a message: scheme, host, port and path, without user or
/// password. An unparseable URL shows as its scheme only.
pub fn display_url(raw: &str) -> String {
  match url::Url::parse(raw) {
    Ok(mut parsed) => {
      let _ = parsed.set_password(None);
      let _ = parsed.set_username("");
      parsed.set_query(None);
      parsed.to_string()
    }
    Err(_) => raw.split_once("://").map_or_else(
      || "(unparseable URL)".to_string(),
      |(scheme, _)| format!("{scheme}://…"),
    ),
  }
}

/// An error of the server behind `url`, safe to show: the underlying error's text is
/// scrubbed of the URL (a driver may echo it, password included).
pub fn unavailable(what: &str, url: &str, cause: impl std::fmt::Display) -> GatewayError {
  let shown = display_url(url);
  let mut detail = cause.to_string();
  if !url.is_empty() {
    detail = detail.replace(url, &shown);
  }
  if let Ok(parsed) = url::Url::parse(url) {
    if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
      detail = detail.replace(password, "***");
    }
  }
  let mut error = GatewayError::new(
    ErrorCode::UpstreamUnavailable,
    format!("{what} at {shown} is unavailable: {detail}"),
  );
  error.retryable = true;
  error
}

pub(crate) fn redis_client(what: &str, url: &str) -> Result<redis::Client> {
  redis::Client::open(url).map_err(|error| {
    GatewayError::config(format!(
      "{what}: redisUrl {} is not a Redis URL ({:?})",
      display_url(url),
      error.kind()
    ))
  })
}

fn manager_config() -> ConnectionManagerConfig {
  ConnectionManagerConfig::new()
    .set_connection_timeout(Some(CONNECT_TIMEOUT))
    .set_response_timeout(Some(COMMAND_TIMEOUT))
    .set_number_of_retries(1)
    .set_max_delay(Duration::from_millis(500))
}

/// A reconnecting Redis connection that connects in the background: it returns at once
/// (only a bad URL fails, with CONFIG), and the first command waits for the connection
/// (at most [`CONNECT_TIMEOUT`]), then fails like any command while the server is away.
/// Must run inside the tokio runtime. [`ping`] waits for the connection on purpose.
pub fn connect_redis_lazy(what: &str, url: &str) -> Result<ConnectionManager> {
  let client = redis_client(what, url)?;
  ConnectionManager::new_lazy_with_config(client, manager_config())
    .map_err(|error| unavailable(what, url, error))
}

/// Waits until `connection` answers (at most [`CONNECT_TIMEOUT`] for the connection plus
/// one command): an unreachable server is UPSTREAM_UNAVAILABLE naming it without its
/// password.
pub async fn ping(what: &str, url: &str, connection: &ConnectionManager) -> Result<()> {
  let mut connection = connection.clone();
  let answered = tokio::time::timeout(
    CONNECT_TIMEOUT + COMMAND_TIMEOUT,
    redis::cmd("PING").query_async::<()>(&mut connection),
  )
  .await;
  match answered {
    Ok(Ok(())) => Ok(()),
    Ok(Err(error)) => Err(unavailable(what, url, error)),
    Err(_) => Err(unavailable(
      what,
      url,
      format!(
        "no answer within {} ms",
        (CONNECT_TIMEOUT + COMMAND_TIMEOUT).as_millis()
      ),
    )),
  }
}

/// Opens a reconnecting Redis connection. The first connection is made here, so a server
/// that is down at start fails now rather than on the first command; after that the
/// manager reconnects in the background and each command fails fast while the server is
/// away.
pub async fn connect_redis(what: &str, url: &str) -> Result<ConnectionManager> {
  let client = redis_client(what, url)?;
  let connecting = ConnectionManager::new_with_config(client, manager_config());
  match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
    Ok(Ok(manager)) => Ok(manager),
    Ok(Err(error)) => Err(unavailable(what, url, error)),
    Err(_) => Err(unavailable(
      what,
      url,
      format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis()),
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn display_url_drops_credentials() {
    assert_eq!(
      display_url("redis://user:s3cret@127.0.0.1:6379/2"),
      "redis://127.0.0.1:6379/2"
    );
    assert_eq!(
      display_url("postgres://app:pw@db:5432/ledger?sslmode=disable"),
      "postgres://db:5432/ledger"
    );
    assert_eq!(display_url("not a url"), "(unparseable URL)");
  }

  #[test]
  fn unavailable_never_shows_the_password() {
    let url = "redis://:hunter2@127.0.0.1:1/";
    let error = unavailable(
      "RateLimiter",
      url,
      format!("failed to reach {url}: hunter2 refused"),
    );
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    assert_eq!(error.code, ErrorCode::UpstreamUnavailable);
  }

  #[tokio::test]
  async fn unreachable_redis_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let error = connect_redis("RateLimiter", "redis://127.0.0.1:1/")
      .await
      .err()
      .map(|e| e.message);
    let message = error.unwrap_or_default();
    assert!(
      message.starts_with("RateLimiter at redis://127.0.0.1:1/ is unavailable"),
      "{message}"
    );
  }

  #[test]
  fn bad_url_is_config() {
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build();
    let Ok(runtime) = runtime else { return };
    let result = runtime.block_on(connect_redis("ResponseCache", "http://example"));
    assert_eq!(result.err().map(|e| e.code), Some(ErrorCode::Config));
  }
}
