//! API keys never leave through Debug, error messages or logs.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

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
  redact_shapes(&out)
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

/// One rule of the secret-shape set: what it finds and what replaces it (`$n` refers to
/// the rule's groups, kept so the reader still sees which field or scheme held a secret).
struct Rule {
  pattern: Regex,
  replacement: &'static str,
}

/// Roots of absolute paths worth hiding: they name the host's layout and users.
const ABSOLUTE_PATH_ROOTS: &str =
  "home|root|usr|var|tmp|etc|opt|srv|mnt|media|Users|work|app|private|proc|dev|lib|snap|data|run";

/// The secret shapes redacted from every message, in the order they apply: whole blocks and
/// URLs first (they contain shorter shapes), vendor tokens, then `name=value` pairs and
/// paths. The families follow gitleaks' common rules (AWS, GitHub, Slack, Stripe, JWT, URL
/// credentials, private keys, OpenAI / Anthropic / Google keys). The one rule set for Rust
/// and JS (`redactSecrets` in the binding).
/// Compiles the redaction rules now rather than on first use.
pub fn compile_rules() {
  LazyLock::force(&RULES);
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
  let paths = format!(r#"(^|[^\w:/.])/(?:{ABSOLUTE_PATH_ROOTS})(?:/[^\s"'`<>()\[\]{{}},;:]*)?"#);
  let rules: [(&str, &'static str); 22] = [
    // A private key block, or its start when the message was cut before its END line.
    (
      r"(?s)-----BEGIN[ A-Z0-9]*PRIVATE KEY[ A-Z0-9]*-----.*?(?:-----END[ A-Z0-9]*PRIVATE KEY[ A-Z0-9]*-----|\z)",
      REDACTED,
    ),
    // scheme://user:password@host and scheme://:password@host (the password may hold '@').
    (
      r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s:@/]*):[^\s/]+@",
      "${1}${2}:[REDACTED]@",
    ),
    (
      r"\bhttps?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_+-]+",
      REDACTED,
    ),
    // JWTs, with or without a Bearer in front.
    (
      r"\bey[A-Za-z0-9_-]{10,}\.ey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
      REDACTED,
    ),
    // AWS access key ids.
    (
      r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}\b",
      REDACTED,
    ),
    // An AWS secret access key near the words that name it.
    (
      r"(?i)(aws[\w .-]{0,20}?secret[\w .-]{0,20}?[\s=:\x22']+)[A-Za-z0-9/+=]{40}\b",
      "${1}[REDACTED]",
    ),
    (r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}", REDACTED),
    (r"\bgithub_pat_[A-Za-z0-9_]{20,}", REDACTED),
    (r"\bglpat-[A-Za-z0-9_-]{20,}", REDACTED),
    (r"\bxox[abposr]-[A-Za-z0-9-]{10,}", REDACTED),
    (r"\bxapp-[A-Za-z0-9-]{10,}", REDACTED),
    (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}", REDACTED),
    (r"\bwhsec_[A-Za-z0-9]{20,}", REDACTED),
    // Other underscore keys of the Stripe shape.
    (r"\bsk_[A-Za-z0-9_-]{16,}", REDACTED),
    // OpenAI (sk-, sk-proj-), Anthropic (sk-ant-) and the other dash-prefixed key shapes.
    (r"\b(?:sk|pk|rk|fg|sess|key)-[A-Za-z0-9_-]{8,}", REDACTED),
    (r"\bAIza[0-9A-Za-z_-]{20,}", REDACTED),
    (r"\bfgv1\.[A-Za-z0-9_-]{16,}", REDACTED),
    (
      r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+",
      "${1} [REDACTED]",
    ),
    // key=…, "password": "…", X-Api-Token: … — the value of any field named like a secret.
    (
      r#"(?i)\b([\w-]*(?:key|token|secret|password|passwd|pwd|signature|credential)[\w-]*)(["']?\s*[=:]\s*["']?)([^&\s"',;)}]+)"#,
      "${1}${2}[REDACTED]",
    ),
    (r#"\bfile:///[^\s"'`<>()\[\]{},;]*"#, "[PATH]"),
    (&paths, "${1}[PATH]"),
    (r#"\b[A-Za-z]:\\[^\s"'`<>]*"#, "[PATH]"),
  ];
  rules
    .into_iter()
    .filter_map(|(pattern, replacement)| match Regex::new(pattern) {
      Ok(pattern) => Some(Rule {
        pattern,
        replacement,
      }),
      // The patterns are constants checked by the tests; a bad one must not take the process down.
      Err(_) => None,
    })
    .collect()
});

/// Replaces every secret shape in `text` (see RULES); configured keys are `redact`'s job.
pub fn redact_shapes(text: &str) -> String {
  let mut out = text.to_string();
  for rule in RULES.iter() {
    if let Cow::Owned(replaced) = rule.pattern.replace_all(&out, rule.replacement) {
      out = replaced;
    }
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

  /// Each family: the secret is gone, the words around it stay.
  #[test]
  fn every_secret_family_is_redacted() {
    let cases = [
      ("db postgres://app:hunter2@db.internal:5432/shop down", "hunter2"),
      ("cache redis://:s3cr3tpw@cache:6379 refused", "s3cr3tpw"),
      ("amqp://guest:p@ss@mq:5672/ failed", "p@ss"),
      ("key AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
      ("temp ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
      (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI",
      ),
      (
        "AWS secret key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY leaked",
        "wJalrXUtnFEMI",
      ),
      ("token ghp_16C7e42F292c6912E7710c838347Ae178B4a", "ghp_16C7"),
      ("gho_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F"),
      ("ghu_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F"),
      ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F"),
      ("ghr_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F"),
      ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG"),
      ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "AbCdEfGh"),
      ("xoxp-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "AbCdEfGh"),
      ("xoxa-2-123456789012-AbCdEfGhIjKlMnOp", "AbCdEfGh"),
      ("xapp-1-A0123456789-1234567890123-abcdef0123456789", "abcdef0123"),
      (
        "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now",
        "T00000000",
      ),
      ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLy"),
      ("rk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLy"),
      ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLy"),
      (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
        "dozjgNryP4J3",
      ),
      ("sk-proj-abcdefghijklmnop1234", "abcdefghij"),
      ("sk-ant-api03-abcdefghijklmnop", "abcdefghij"),
      ("mailgun key-3ax6xnjp29jd6fds4gc373sgvjxteol0", "3ax6xnjp29"),
      ("AIzaSyA1234567890abcdefghijklmnop", "SyA123456"),
      ("at file:///home/app/server.js:10:5", "/home/app"),
      ("at handler (/srv/app/routes/pay.js:41:7)", "/srv/app"),
      ("C:\\Users\\ann\\app.js failed", "ann"),
      ("api_key=abc123def&x=1", "abc123def"),
      ("{\"password\": \"letmein\"}", "letmein"),
      ("Authorization: Bearer abc.def.ghi", "abc.def"),
    ];
    for (text, secret) in cases {
      let redacted = redact(text, &[]);
      assert!(
        !redacted.contains(secret),
        "{text:?} kept {secret:?}: {redacted:?}"
      );
      assert!(
        redacted.contains("[REDACTED]") || redacted.contains("[PATH]"),
        "{redacted:?}"
      );
      assert_eq!(redact(&redacted, &[]), redacted, "redacting twice");
    }
    assert_eq!(
      redact("db postgres://app:hunter2@db:5432/shop down", &[]),
      "db postgres://app:[REDACTED]@db:5432/shop down"
    );
    assert_eq!(
      redact("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc refused", &[]),
      "stripe [REDACTED] refused"
    );
  }

  #[test]
  fn every_rule_compiles() {
    assert_eq!(RULES.len(), 22);
  }

  #[test]
  fn private_key_blocks_are_redacted_whole_even_when_cut() {
    let block = "cert -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1\nabc==\n-----END RSA PRIVATE KEY----- end";
    assert_eq!(redact(block, &[]), "cert [REDACTED] end");
    let cut = "key -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA";
    assert_eq!(redact(cut, &[]), "key [REDACTED]");
  }

  #[test]
  fn ordinary_text_is_left_alone() {
    for text in [
      "model gpt-4o-mini is not available; ask-me later",
      "rate limited: retry in 3s (tier basic)",
      "https://api.openai.com/v1/chat/completions answered 500",
      "Unknown request URL: GET /v1/nothing.",
      "user 42 not found in orders",
    ] {
      assert_eq!(redact(text, &[]), text);
    }
  }
}
