//! The HTTP clients vendors are called with, and what trusting a server means: the bundled
//! web roots, the system store (corporate proxies, private endpoints), the PEM files named
//! by `NODE_EXTRA_CA_CERTS` (as Node trusts them) and a provider's own `caCertPath`.
//! Redirects are never followed: reqwest would re-send `x-api-key` / `x-goog-api-key` /
//! `api-key` to whatever host a 307 names.

use std::time::Duration;

use reqwest::Certificate;

use crate::error::{GatewayError, Result};

/// A client trusting the default roots plus `extra_roots`.
pub(crate) fn client(extra_roots: &[Certificate]) -> Result<reqwest::Client> {
  let mut builder = reqwest::Client::builder()
    .redirect(reqwest::redirect::Policy::none())
    .tcp_nodelay(true)
    .pool_idle_timeout(Duration::from_secs(90))
    .connect_timeout(Duration::from_secs(10));
  for root in extra_roots {
    builder = builder.add_root_certificate(root.clone());
  }
  builder
    .build()
    .map_err(|e| GatewayError::config(format!("could not create the HTTP client: {e}")))
}

/// The certificates of `NODE_EXTRA_CA_CERTS`. Node reads the file once at startup and only
/// warns when it is missing or unreadable; so does this (the warning is Node's).
pub(crate) fn node_extra_ca_certs() -> Vec<Certificate> {
  std::env::var_os("NODE_EXTRA_CA_CERTS")
    .and_then(|path| std::fs::read(path).ok())
    .and_then(|pem| Certificate::from_pem_bundle(&pem).ok())
    .unwrap_or_default()
}

/// The certificates of a provider's `caCertPath`: a PEM file with at least one certificate.
pub(crate) fn ca_cert_file(provider: &str, path: &str) -> Result<Vec<Certificate>> {
  let bad =
    |why: String| GatewayError::config(format!("provider '{provider}' caCertPath '{path}' {why}"));
  let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
  let certificates = Certificate::from_pem_bundle(&pem)
    .map_err(|e| bad(format!("is not a PEM certificate file: {e}")))?;
  if certificates.is_empty() {
    return Err(bad("holds no PEM certificate".to_string()));
  }
  Ok(certificates)
}

/// Whether a transport error is the TLS handshake rejecting the server (an unknown CA, a
/// name mismatch, an expired certificate): no retry will change that.
pub(crate) fn is_tls_failure(error: &reqwest::Error) -> bool {
  let mut source = std::error::Error::source(error);
  while let Some(cause) = source {
    if is_rustls_error(cause) {
      return true;
    }
    source = cause.source();
  }
  false
}

/// io::Error hides the error it wraps from `source()`, and hyper-rustls wraps tokio-rustls'
/// io::Error in another one, so the wrapped errors are unwrapped here.
fn is_rustls_error(error: &(dyn std::error::Error + 'static)) -> bool {
  if error.is::<rustls::Error>() {
    return true;
  }
  match error
    .downcast_ref::<std::io::Error>()
    .and_then(|io| io.get_ref())
  {
    Some(inner) => is_rustls_error(inner),
    None => false,
  }
}

/// Hands each provider its client: one shared by every provider, or a provider's own when
/// it trusts a CA of its own (reqwest's roots are per client).
pub(crate) struct Clients {
  node_roots: Vec<Certificate>,
  shared: Option<reqwest::Client>,
}

impl Clients {
  pub fn new() -> Self {
    Clients {
      node_roots: node_extra_ca_certs(),
      shared: None,
    }
  }

  pub fn for_provider(
    &mut self,
    provider: &str,
    ca_cert_path: Option<&str>,
  ) -> Result<reqwest::Client> {
    if let Some(path) = ca_cert_path {
      let mut roots = self.node_roots.clone();
      roots.extend(ca_cert_file(provider, path)?);
      return client(&roots);
    }
    if let Some(shared) = &self.shared {
      return Ok(shared.clone());
    }
    let shared = client(&self.node_roots)?;
    self.shared = Some(shared.clone());
    Ok(shared)
  }
}
