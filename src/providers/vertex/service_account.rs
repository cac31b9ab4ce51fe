//! A Google service-account key file, and the RS256-signed JWT it trades for an access
//! token (OAuth 2.0 JWT bearer grant, RFC 7523). The private key never leaves this module:
//! no error, log or Debug output shows it, the JWT or any token.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use serde::Deserialize;
use serde_json::json;

use crate::error::{GatewayError, Result};
use crate::secret::Secret;

/// The scope every Vertex AI call needs.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Where Google's own libraries send the assertion when a key file names no `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Google accepts assertions that live at most an hour.
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;

pub struct ServiceAccount {
  pub client_email: String,
  pub token_uri: String,
  /// The key file's `project_id`, the default `project`.
  pub project_id: Option<String>,
  private_key_id: Option<String>,
  /// The PEM text, only to be redacted should anything ever echo it.
  private_key_pem: Secret,
  key: RsaKeyPair,
  rng: SystemRandom,
}

impl fmt::Debug for ServiceAccount {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("ServiceAccount")
      .field("client_email", &self.client_email)
      .field("token_uri", &self.token_uri)
      .finish_non_exhaustive()
  }
}

#[derive(Deserialize)]
struct KeyFile {
  #[serde(rename = "type")]
  kind: Option<String>,
  client_email: Option<String>,
  private_key: Option<String>,
  private_key_id: Option<String>,
  token_uri: Option<String>,
  project_id: Option<String>,
}

impl ServiceAccount {
  /// Reads and checks the key file at `path`; every defect is CONFIG naming the file and
  /// what is wrong with it, never the key.
  pub fn from_file(provider: &str, path: &str) -> Result<ServiceAccount> {
    let text = std::fs::read(path).map_err(|e| {
      GatewayError::config(format!(
        "provider '{provider}' credentials file '{path}' could not be read: {e}"
      ))
    })?;
    Self::from_json(&text).map_err(|why| {
      GatewayError::config(format!(
        "provider '{provider}' credentials file '{path}' {why}"
      ))
    })
  }

  /// The key file's JSON; the error says what is wrong, for [`Self::from_file`] to place.
  pub fn from_json(text: &[u8]) -> std::result::Result<ServiceAccount, String> {
    // serde_json's messages name a line and column, never the text around them.
    let file: KeyFile =
      serde_json::from_slice(text).map_err(|e| format!("is not a JSON key file: {e}"))?;
    match file.kind.as_deref() {
      Some("service_account") => {}
      Some(other) => {
        return Err(format!(
          "holds '{other}' credentials; kind vertex takes a service-account key file (type 'service_account')"
        ))
      }
      None => return Err("has no 'type' (expected 'service_account')".into()),
    }
    let required = |value: Option<String>, field: &str| {
      value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("has no '{field}'"))
    };
    let client_email = required(file.client_email, "client_email")?;
    let private_key = required(file.private_key, "private_key")?;
    let token_uri = file
      .token_uri
      .filter(|uri| !uri.trim().is_empty())
      .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
    match url::Url::parse(&token_uri) {
      Ok(url) if matches!(url.scheme(), "http" | "https") => {}
      _ => {
        return Err(format!(
          "has a token_uri that is not an http(s) URL: '{token_uri}'"
        ))
      }
    }
    Ok(ServiceAccount {
      client_email,
      token_uri,
      project_id: file.project_id.filter(|p| !p.is_empty()),
      private_key_id: file.private_key_id.filter(|id| !id.is_empty()),
      key: rsa_key(&private_key)?,
      private_key_pem: Secret::new(private_key),
      rng: SystemRandom::new(),
    })
  }

  pub fn private_key_secret(&self) -> Secret {
    self.private_key_pem.clone()
  }

  /// The public half (DER RSAPublicKey), to check a signature in tests.
  #[cfg(test)]
  pub fn public_key_der(&self) -> Vec<u8> {
    use ring::signature::KeyPair;
    self.key.public_key().as_ref().to_vec()
  }

  /// The signed assertion for the token endpoint, issued now.
  pub fn assertion(&self) -> Result<String> {
    let issued_at = SystemTime::now()
      .duration_since(UNIX_EPOCH)
      .map(|d| d.as_secs())
      .unwrap_or(0);
    self.assertion_at(issued_at)
  }

  pub fn assertion_at(&self, issued_at: u64) -> Result<String> {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(id) = &self.private_key_id {
      header["kid"] = json!(id);
    }
    let claims = json!({
      "iss": self.client_email,
      "scope": CLOUD_PLATFORM_SCOPE,
      "aud": self.token_uri,
      "iat": issued_at,
      "exp": issued_at + ASSERTION_LIFETIME_SECS,
    });
    let signing_input = format!(
      "{}.{}",
      URL_SAFE_NO_PAD.encode(header.to_string()),
      URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; self.key.public().modulus_len()];
    self
      .key
      .sign(
        &RSA_PKCS1_SHA256,
        &self.rng,
        signing_input.as_bytes(),
        &mut signature,
      )
      .map_err(|_| GatewayError::config("could not sign the service account's JWT"))?;
    Ok(format!(
      "{signing_input}.{}",
      URL_SAFE_NO_PAD.encode(signature)
    ))
  }
}

/// The PEM private key of a key file: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or
/// PKCS#1 (`BEGIN RSA PRIVATE KEY`), RSA only.
fn rsa_key(pem: &str) -> std::result::Result<RsaKeyPair, String> {
  let not_pem = || "has a private_key that is not a PEM private key".to_string();
  let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| not_pem())?;
  let parsed = match &der {
    PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
    PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
    _ => return Err("has a private_key that is not an RSA key (an EC key?)".into()),
  };
  // ring's reason ("InvalidEncoding", "TooSmall", …) describes the key, never shows it.
  parsed.map_err(|why| match why.to_string().as_str() {
    "WrongAlgorithm" => "has a private_key that is not an RSA key (an EC key?)".to_string(),
    reason => format!("has a private_key that is not a usable RSA key ({reason})"),
  })
}
