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

/// Replaces every configured key, and anything shaped like a vendor key, with
/// `[REDACTED]`. Vendors echo keys back in error text (OpenAI masks most of it, proxies
/// in front of them often do not), so every message is passed through this.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
  let mut out = text.to_string();
  for secret in secrets {
    // Very short "keys" (e.g. "x" for a local server) would shred ordinary words.
    if secret.0.len() >= 8 && out.contains(&secret.0) {
      out = out.replace(&secret.0, "[REDACTED]");
    }
  }
  redact_key_shapes(&out)
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
          out.push_str("[REDACTED]");
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
