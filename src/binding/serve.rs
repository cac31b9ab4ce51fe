//! napi shim over `crate::serve`: the native HTTP server behind `ferrogate serve`.

use std::time::Duration;

use napi_derive::napi;

use super::NativeGateway;
use crate::serve::connection::ConnectionLimits;
use crate::serve::{self, ServeKey};

#[napi(object, object_to_js = false)]
pub struct ServeKeyOptions {
  pub key: String,
  /// The caller's identity (request.user); default `key-N`.
  pub user: Option<String>,
  pub daily_token_quota: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct ServeOptions {
  /// Default 127.0.0.1.
  pub host: Option<String>,
  /// 0 picks a free port.
  pub port: u32,
  /// Virtual keys; without them, no authentication.
  pub keys: Option<Vec<ServeKeyOptions>>,
  /// A request's headers must arrive within this; default 30 s.
  pub headers_timeout_ms: Option<f64>,
  /// A request's body must arrive within this after its headers; default 60 s.
  pub body_timeout_ms: Option<f64>,
  /// A connection with no request in progress is closed after this; default 30 s.
  pub keep_alive_timeout_ms: Option<f64>,
  /// Connections open at once; one more is closed at once. Default 1024.
  pub max_connections: Option<f64>,
}

fn millis(name: &str, value: Option<f64>, default: Duration) -> napi::Result<Duration> {
  match value {
    None => Ok(default),
    Some(ms) if (1.0..=86_400_000.0).contains(&ms) => Ok(Duration::from_millis(ms as u64)),
    Some(_) => Err(napi::Error::from_reason(format!(
      "{name} must be a number of milliseconds between 1 and 86400000"
    ))),
  }
}

fn limits(options: &ServeOptions) -> napi::Result<ConnectionLimits> {
  let defaults = ConnectionLimits::default();
  let max_connections = match options.max_connections {
    None => defaults.max_connections,
    Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 1_000_000.0 => n as usize,
    Some(_) => {
      return Err(napi::Error::from_reason(
        "maxConnections must be a whole number between 1 and 1000000",
      ))
    }
  };
  Ok(ConnectionLimits {
    headers_timeout: millis(
      "headersTimeoutMs",
      options.headers_timeout_ms,
      defaults.headers_timeout,
    )?,
    body_timeout: millis(
      "bodyTimeoutMs",
      options.body_timeout_ms,
      defaults.body_timeout,
    )?,
    keep_alive_timeout: millis(
      "keepAliveTimeoutMs",
      options.keep_alive_timeout_ms,
      defaults.keep_alive_timeout,
    )?,
    max_connections,
  })
}

/// A running native server; `close()` stops accepting and ends idle connections.
#[napi]
pub struct NativeServer {
  server: serve::Server,
}

#[napi]
impl NativeServer {
  #[napi(getter)]
  pub fn port(&self) -> u32 {
    u32::from(self.server.address.port())
  }

  #[napi(getter)]
  pub fn host(&self) -> String {
    self.server.address.ip().to_string()
  }

  #[napi]
  pub fn close(&self) {
    self.server.close();
  }

  /// Stops accepting, lets requests in progress (streams included) finish for up to
  /// `graceMs`, then drops the connections still open; resolves when they are all gone.
  #[napi]
  pub async fn shutdown(&self, grace_ms: f64) {
    let grace = Duration::from_millis(grace_ms.clamp(0.0, 3_600_000.0) as u64);
    self.server.shutdown(grace).await;
  }

  /// Connections closed at once because `maxConnections` were open.
  #[napi(getter)]
  pub fn refused_connections(&self) -> f64 {
    self.server.refused_connections() as f64
  }
}

/// The config's keys; a quota that is not a whole number >= 0 was refused by lib/serve.js.
pub(crate) fn serve_keys(keys: Vec<ServeKeyOptions>) -> Vec<ServeKey> {
  keys
    .into_iter()
    .map(|k| ServeKey {
      key: k.key,
      user: k.user,
      daily_token_quota: k
        .daily_token_quota
        .filter(|q| q.is_finite() && *q >= 0.0)
        .map(|q| q as u64),
    })
    .collect()
}

#[napi]
impl NativeGateway {
  /// Serves the OpenAI-compatible endpoint (`POST /v1/chat/completions`, `GET /v1/models`,
  /// `GET /health`) natively; rejects with a CONFIG message when it cannot listen.
  #[napi]
  pub async fn serve(&self, options: ServeOptions) -> napi::Result<NativeServer> {
    let gateway = self
      .gateway()
      .map_err(|e| napi::Error::from_reason(e.message))?;
    let port = u16::try_from(options.port)
      .map_err(|_| napi::Error::from_reason("port must be between 0 and 65535"))?;
    let limits = limits(&options)?;
    let keys = options.keys.map(serve_keys);
    let host = options.host.unwrap_or_else(|| "127.0.0.1".into());
    let server = serve::start(gateway, &host, port, keys, limits)
      .await
      .map_err(|e| napi::Error::from_reason(e.message))?;
    Ok(NativeServer { server })
  }
}
