//! API keys never leave through Debug, error messages or logs.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
  pub fn new(value: String) -> Self {
    Secret(value)
  }

  pub fn expose(&self) -> &str {
    &self.0
  }
}

impl fmt::Debug for Secret {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("Secret([REDACTED])")
  }
}

/// Secrets at least this long are redacted wherever they appear. Shorter ones (a local
/// server's "x", a 4-letter token) are redacted only as whole tokens: replacing every
/// substring would shred ordinary words, and a short secret inside a longer word is not
/// that secret being echoed.
const MIN_SUBSTRING_SECRET: usize = 8;

/// Replaces every configured key, and anything shaped like a vendor key, with
/// `[REDACTED]`. Vendors echo keys back in error text (OpenAI masks most of it, proxies
/// in front of them often do not), so every message is passed through this.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
  let mut out = text.to_string();
  for secret in secrets {
    let secret = secret.0.as_str();
    if secret.is_empty() || !out.contains(secret) {
      continue;
    }
    out = if secret.len() >= MIN_SUBSTRING_SECRET {
      out.replace(secret, REDACTED)
    } else {
      replace_whole_tokens(&out, secret)
    };
  }
  redact_key_shapes(&out)
}

const REDACTED: &str = "[REDACTED]";

/// Characters that continue a key-like token: a match next to one is part of a longer word.
fn is_token_char(c: char) -> bool {
  c.is_alphanumeric() || c == '-' || c == '_'
}

fn replace_whole_tokens(text: &str, secret: &str) -> String {
  let mut out = String::with_capacity(text.len());
  let mut rest = text;
  while let Some(at) = rest.find(secret) {
    let before = rest[..at].chars().last().or_else(|| out.chars().last());
    let after = rest[at + secret.len()..].chars().next();
    out.push_str(&rest[..at]);
    if before.is_some_and(is_token_char) || after.is_some_and(is_token_char) {
      out.push_str(secret);
    } else {
      out.push_str(REDACTED);
    }
    rest = &rest[at + secret.len()..];
  }
  out.push_str(rest);
  out
}

/// The secrets a configured header carries. A header is a credential when its name is
/// `authorization` or `cookie` or contains key, secret, token or auth (any case); its value
/// is a secret, and so are the credentials after an auth scheme (`Bearer`, `Basic`, any
/// case) and each cookie's value.
pub fn header_secrets(name: &str, value: &str) -> Vec<Secret> {
  let name = name.to_ascii_lowercase();
  let is_credential = name.contains("cookie")
    || ["key", "secret", "token", "auth"]
      .iter()
      .any(|part| name.contains(part));
  if !is_credential {
    return Vec::new();
  }
  let mut found = vec![value.trim().to_string()];
  if let Some((scheme, credentials)) = value.trim().split_once(char::is_whitespace) {
    if !scheme.contains('=') {
      found.push(credentials.trim().to_string());
    }
  }
  if name.contains("cookie") {
    for pair in value.split(';') {
      if let Some((_, cookie)) = pair.split_once('=') {
        found.push(cookie.trim().to_string());
      }
    }
  }
  found
    .into_iter()
    .filter(|secret| !secret.is_empty())
    .map(Secret::new)
    .collect()
}

const KEY_PREFIXES: [&str; 3] = ["sk-", "AIza", "sk_"];

fn redact_key_shapes(text: &str) -> String {
  let mut out = String::with_capacity(text.len());
  let mut rest = text;
  'scan: while !rest.is_empty() {
    for prefix in KEY_PREFIXES {
      if let Some(tail) = rest.strip_prefix(prefix) {
        let key_len = tail
          .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
          .unwrap_or(tail.len());
        let at_word_start = out
          .chars()
          .last()
          .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if key_len >= 16 && at_word_start {
          out.push_str(REDACTED);
          rest = &tail[key_len..];
          continue 'scan;
        }
      }
    }
    let mut chars = rest.chars();
    if let Some(c) = chars.next() {
      out.push(c);
    }
    rest = chars.as_str();
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn short_secrets_are_redacted_as_whole_tokens() {
    let secrets = vec![Secret::new("k7x".into()), Secret::new("x".into())];
    assert_eq!(
      redact("Incorrect API key provided: k7x. Check your key", &secrets),
      "Incorrect API key provided: [REDACTED]. Check your key"
    );
    assert_eq!(
      redact("x-api-key is x; k7xy stays", &secrets),
      "x-api-key is [REDACTED]; k7xy stays"
    );
    assert_eq!(redact("empty", &[Secret::new(String::new())]), "empty");
  }

  #[test]
  fn credential_headers_are_recognized_by_name_and_scheme() {
    let found = |name: &str, value: &str| -> Vec<String> {
      header_secrets(name, value)
        .iter()
        .map(|s| s.expose().to_string())
        .collect()
    };
    assert!(found("Authorization", "bearer abc").contains(&"abc".to_string()));
    assert!(found("proxy-authorization", "BASIC dXNlcg==").contains(&"dXNlcg==".to_string()));
    assert!(found("X-Client-Secret", "v").contains(&"v".to_string()));
    assert!(found("X-Access-TOKEN", "t").contains(&"t".to_string()));
    assert!(found("api-key", "k").contains(&"k".to_string()));
    let cookies = found("Cookie", "sid=1234; theme=dark");
    assert!(cookies.contains(&"1234".to_string()) && cookies.contains(&"dark".to_string()));
    assert!(found("Content-Type", "application/json").is_empty());
    assert!(found("X-Title", "my app").is_empty());
  }

  #[test]
  fn configured_keys_and_key_shapes_are_redacted() {
    let secrets = vec![Secret::new("my-very-secret-key".into())];
    let text = "bad key my-very-secret-key and sk-proj-abcdefghijklmnop1234 and AIzaSyA1234567890abcdefgh, ask-me";
    let redacted = redact(text, &secrets);
    assert_eq!(
      redacted,
      "bad key [REDACTED] and [REDACTED] and [REDACTED], ask-me"
    );
    assert_eq!(format!("{:?}", secrets[0]), "Secret([REDACTED])");
  }
}
