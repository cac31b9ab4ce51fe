//! napi shim over `crate::serve`: the native HTTP server behind `ferrogate serve`.

use napi_derive::napi;

use super::NativeGateway;
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
    let keys = options.keys.map(serve_keys);
    let host = options.host.unwrap_or_else(|| "127.0.0.1".into());
    let server = serve::start(gateway, &host, port, keys)
      .await
      .map_err(|e| napi::Error::from_reason(e.message))?;
    Ok(NativeServer { server })
  }
}
