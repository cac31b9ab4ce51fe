use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use super::service_account::{ServiceAccount, CLOUD_PLATFORM_SCOPE, DEFAULT_TOKEN_URI};
use super::*;
use crate::pipeline::ProviderConfig;
use crate::types::{Message, Role, ToolDefinition};

/// A throwaway RSA key made for these tests only; it signs nothing anywhere else.
const TEST_ONLY_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDL1ThbFyQsd+NF
VHIUb+vN1axjoMXAh3tnmDWfVJ75zRllRXGzHFheM2ZxzCWk9f/J/nFXQmCldRGD
XkherYKy9KzXjp6240RvDkn3dbJTTHav+OP3OODx9wEiot2tD3Oi11l3x5EPfNBa
XYsV/kurXTjBAQoIqNuZR//0QS2KZcTbkeSgut7A6C3Ke333VLNvUr8N0yAc+mSt
OU6cn2bj9c7bC4vWzWKgZsXpA3TPuT5DD/qEC6TtF9sY+6e5R0jjZT1FHQrg+bqh
pj926yGWXGxc/lye68tWIhnuHRH4UTYVHcjVqb9oI8/KlYo32wxujOpTJMobyoAh
zgp3b1SNAgMBAAECggEAAVeQjOz8lHxflzPEooTQISVQgsFqu+dIdTin1bo5Z7yl
d6i65GqB3HDrMkGdV9Y0znAp7+CkgUJhkKNcx57N1v7MaojqW5rodvC5pPL17x14
RJVXbufFd2JgdAlteze4U7CmSqcaOedg+c9W3Ji1h9XPy1mF5uOxunMiaMnLEnex
D4yfhVz5wmyqQaLiN5KHCgZpKywu+h4cpVK/p6W5vqS50hncWuzLilT7TuUH6y5a
6Pq+truOBjx2TDmdHZsGs1lzYuUFamWRkdPlAvUuPLcE7pzEJompv1x3Gyohegto
7EF8PZXKZBKyJao3Rl8vlRh0xe6D6JwFJUTaU51tIwKBgQDlVHwZ5LJzb8JN2MM0
MB3Omw+TocgiGw+9WUoIxN/3nNR7JwpCWF9BTLn4NzfBmsGusxIECfKJra3UztN8
44gwSilC6uDQQ88kWnPXXj/Abtei4LZd4uzucHCDX7aoA9g+rzmXNNqBlaVmdCEz
Mq5jIoGu45WHICRMll1N4DfUpwKBgQDjiaVS5nRSwVKPYEiKxLI60s8RkJ4JZdTX
t/b/mdIv3+rEO3YwaBfUIAvxEWi7rwUm8mJoskzdq7IWfmsBeNBqi3/EwKF+48aj
sDqC4a1XIW8LjtoVGUBAQdKI1XP5uJ5cwB/SEYOc0+ztbMifDTT+j/OUMpPOVGMC
bXsP9y2PqwKBgBNgFPAXG2CXY6IyGyPwoMQQ47sEYyVGhgjoX1HoWEfSTz1safh7
AOlCcz/eYm6QBacd5/rBYGVzcAlXxBR8IMh7q4rEz2OpJvoaTkk25En802kmdSHv
hzcJ9ueSkZsWYBHDuijlRUTHgObsDtYFhShJBQ3imoKFG6wA1Dc9J1pnAoGAPjIP
yLtJrJ0/bgWJjrT5au7YvxpiuHrnVRfqIi/vrjpst7rxMYYijU89NGXn1PWgWOcE
U035iNY31cI0ibB2d8kt4aAuBLtKPtAbDk+VzC1NZ0FjB0VhtK7JV7HRA7+dOgki
KY+0BBhBuRx1MlSv2a2LjUTN9iZG8hDvBIwyHgUCgYEAgYmfW5+NnXv2NrDAWRpZ
Ld9BgQyrEQv95UVAEBciXI5MaXD+eauNkTd/SeBVH8eD6fbFDkvzpkumzpGQ2XAC
kPuT2MYOLiRXZnbCpUwUKCYUsgDYibnJqnPv7ROcW4ghhL2SlQmOfTDgRluwe6mi
Fdh/1QnJxqTQ5gIbLFs9JOg=
-----END PRIVATE KEY-----";
/// A P-256 key: a valid PEM private key that is not RSA.
const TEST_ONLY_EC_KEY: &str = r"-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHMm6M8ufqiXvGZBd
7GbnwUozDsMUjfA0gCscs5Ktr86hRANCAARGpF6Guaf8th0reazFHQl9evtcmi8/
KnHHK+KlsB8feSgLII8zyarx9d5kCLG9Gz35GoNrpsJ0HUkmGAzS4uYf
-----END PRIVATE KEY-----";

fn key_file(overrides: Value) -> Vec<u8> {
  let mut file = json!({
    "type": "service_account",
    "project_id": "demo-project",
    "private_key_id": "kid-1",
    "private_key": TEST_ONLY_KEY,
    "client_email": "gateway@demo-project.iam.gserviceaccount.com",
    "token_uri": "http://127.0.0.1:9/token",
  });
  for (k, v) in overrides.as_object().expect("object").iter() {
    if v.is_null() {
      file.as_object_mut().expect("object").remove(k);
    } else {
      file[k] = v.clone();
    }
  }
  serde_json::to_vec(&file).expect("json")
}

fn account() -> ServiceAccount {
  ServiceAccount::from_json(&key_file(json!({}))).expect("account")
}

fn part(segment: &str) -> Value {
  serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

#[test]
fn the_assertion_is_an_rs256_jwt_for_the_token_uri_signed_by_the_key() {
  let account = account();
  let jwt = account.assertion_at(1_700_000_000).expect("jwt");
  let pieces: Vec<&str> = jwt.split('.').collect();
  assert_eq!(pieces.len(), 3);
  assert_eq!(
    part(pieces[0]),
    json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"})
  );
  assert_eq!(
    part(pieces[1]),
    json!({
      "iss": "gateway@demo-project.iam.gserviceaccount.com",
      "scope": CLOUD_PLATFORM_SCOPE,
      "aud": "http://127.0.0.1:9/token",
      "iat": 1_700_000_000u64,
      "exp": 1_700_003_600u64,
    })
  );
  let public = account.public_key_der();
  let signature = URL_SAFE_NO_PAD.decode(pieces[2]).expect("signature");
  let signed = format!("{}.{}", pieces[0], pieces[1]);
  UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
    .verify(signed.as_bytes(), &signature)
    .expect("the signature verifies with the account's public key");
  UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
    .verify(b"something else", &signature)
    .expect_err("and only for what was signed");
}

#[test]
fn a_malformed_key_file_says_what_is_wrong_and_never_shows_the_key() {
  let cases = [
    (b"not json".to_vec(), "is not a JSON key file"),
    (
      key_file(json!({"type": "authorized_user"})),
      "holds 'authorized_user' credentials",
    ),
    (key_file(json!({"type": null})), "has no 'type'"),
    (
      key_file(json!({"client_email": null})),
      "has no 'client_email'",
    ),
    (
      key_file(json!({"private_key": null})),
      "has no 'private_key'",
    ),
    (
      key_file(json!({"private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"})),
      "not a PEM private key",
    ),
    (
      key_file(json!({"private_key": TEST_ONLY_EC_KEY})),
      "not an RSA key",
    ),
    (
      key_file(json!({"token_uri": "file:///etc/passwd"})),
      "token_uri that is not an http(s) URL",
    ),
  ];
  for (file, expected) in cases {
    let why = ServiceAccount::from_json(&file).expect_err(expected);
    assert!(why.contains(expected), "{why} should say {expected}");
    assert!(!why.contains("MII"), "{why} shows key material");
  }
  let truncated = TEST_ONLY_KEY.replace("-----END PRIVATE KEY-----", "");
  let why =
    ServiceAccount::from_json(&key_file(json!({"private_key": truncated}))).expect_err("truncated");
  assert!(why.contains("private_key"), "{why}");
  let body = TEST_ONLY_KEY.lines().nth(3).expect("a line of the key");
  assert!(!why.contains(body), "{why}");
}

#[test]
fn a_key_file_without_token_uri_uses_googles() {
  let account = ServiceAccount::from_json(&key_file(json!({"token_uri": null}))).expect("account");
  assert_eq!(account.token_uri, DEFAULT_TOKEN_URI);
  assert_eq!(account.project_id.as_deref(), Some("demo-project"));
  assert!(!format!("{account:?}").contains("MII"));
}

fn vertex() -> Box<dyn Adapter> {
  let dir = std::env::temp_dir().join(format!("ferrogate-vertex-{}", std::process::id()));
  std::fs::create_dir_all(&dir).expect("dir");
  let path = dir.join("key.json");
  std::fs::write(&path, key_file(json!({}))).expect("write");
  let mut secrets = Vec::new();
  let vertex = build(
    &config(ProviderConfig {
      location: Some("us-east5".into()),
      credentials_path: Some(path.to_string_lossy().into_owned()),
      ..ProviderConfig::default()
    }),
    None,
    &mut secrets,
  )
  .expect("vertex");
  assert_eq!(
    secrets.len(),
    1,
    "the private key is redacted wherever echoed"
  );
  vertex
}

/// A `vertex` provider named "vx" with `options`.
fn config(options: ProviderConfig) -> ProviderConfig {
  ProviderConfig {
    name: "vx".into(),
    kind: "vertex".into(),
    ..options
  }
}

fn request(model: &str) -> ChatRequest {
  ChatRequest {
    model: model.into(),
    messages: vec![
      Message::text(Role::System, "be brief"),
      Message::text(Role::User, "hi"),
    ],
    tools: vec![ToolDefinition {
      name: "lookup".into(),
      description: None,
      parameters: json!({"type": "object"}),
    }],
    ..ChatRequest::default()
  }
}

#[test]
fn gemini_models_go_to_the_google_publisher_in_the_gemini_format() {
  let vertex = vertex();
  let call = vertex
    .build(&request("gemini-2.5-flash"), false)
    .expect("call");
  assert_eq!(
    call.url,
    "https://us-east5-aiplatform.googleapis.com/v1/projects/demo-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
  );
  assert_eq!(
    call.body,
    gemini::request_body(&request("gemini-2.5-flash")).expect("body")
  );
  let stream = vertex
    .build(&request("gemini-2.5-flash"), true)
    .expect("call");
  assert!(
    stream
      .url
      .ends_with("/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"),
    "{}",
    stream.url
  );
}

#[test]
fn claude_models_go_to_the_anthropic_publisher_with_the_version_in_the_body_and_no_model() {
  let vertex = vertex();
  let req = request("claude-sonnet-4@20250514");
  let call = vertex.build(&req, false).expect("call");
  assert!(call.url.ends_with("/projects/demo-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict"), "{}", call.url);
  let mut expected = anthropic::request_body(&req, false).expect("body");
  expected.as_object_mut().expect("object").remove("model");
  expected["anthropic_version"] = json!("vertex-2023-10-16");
  assert_eq!(call.body, expected);
  let stream = vertex.build(&req, true).expect("call");
  assert!(stream.url.ends_with(":streamRawPredict"), "{}", stream.url);
  assert_eq!(stream.body["stream"], json!(true));
  assert!(stream.body.get("model").is_none());
}

#[test]
fn a_model_name_stays_one_path_segment() {
  let call = vertex()
    .build(&request("gemini/../../x?y#z"), false)
    .expect("call");
  assert!(
    call
      .url
      .contains("/models/gemini%2F..%2F..%2Fx%3Fy%23z:generateContent"),
    "{}",
    call.url
  );
}

#[test]
fn the_global_location_has_its_own_host() {
  assert_eq!(
    default_base_url("global"),
    "https://aiplatform.googleapis.com/v1"
  );
  assert_eq!(
    default_base_url("europe-west4"),
    "https://europe-west4-aiplatform.googleapis.com/v1"
  );
}

#[test]
fn missing_settings_are_config_errors_naming_them() {
  let dir = std::env::temp_dir().join(format!("ferrogate-vertex-cfg-{}", std::process::id()));
  std::fs::create_dir_all(&dir).expect("dir");
  let no_project = dir.join("no-project.json");
  std::fs::write(&no_project, key_file(json!({"project_id": null}))).expect("write");
  let path = no_project.to_string_lossy().into_owned();
  let attempt = |options: ProviderConfig| {
    build(&config(options), None, &mut Vec::new())
      .err()
      .expect("a CONFIG error")
  };
  let missing_file = attempt(ProviderConfig {
    credentials_path: Some(dir.join("absent.json").to_string_lossy().into_owned()),
    location: Some("us-east5".into()),
    ..ProviderConfig::default()
  });
  assert_eq!(missing_file.code, crate::error::ErrorCode::Config);
  assert!(
    missing_file.message.contains("could not be read"),
    "{}",
    missing_file.message
  );
  if std::env::var_os("GOOGLE_CLOUD_PROJECT").is_none() {
    let no_project = attempt(ProviderConfig {
      credentials_path: Some(path.clone()),
      location: Some("us-east5".into()),
      ..ProviderConfig::default()
    });
    assert!(
      no_project.message.contains("has no project"),
      "{}",
      no_project.message
    );
  }
  if std::env::var_os("GOOGLE_CLOUD_LOCATION").is_none() {
    let no_location = attempt(ProviderConfig {
      credentials_path: Some(path.clone()),
      project: Some("p".into()),
      ..ProviderConfig::default()
    });
    assert!(
      no_location.message.contains("has no location"),
      "{}",
      no_location.message
    );
  }
  let bad_location = attempt(ProviderConfig {
    credentials_path: Some(path),
    project: Some("p".into()),
    location: Some("evil.com/x".into()),
    ..ProviderConfig::default()
  });
  assert!(
    bad_location
      .message
      .contains("is not a Google Cloud location"),
    "{}",
    bad_location.message
  );
}

#[test]
fn embeddings_are_one_predict_instance_per_text_with_token_counts() {
  let vertex = vertex();
  let input = ["hello"];
  let call = vertex
    .build_embed(&EmbedBatch {
      model: "gemini-embedding-001",
      input: &input,
      dimensions: Some(8),
      user: None,
    })
    .expect("call");
  assert!(
    call
      .url
      .ends_with("/publishers/google/models/gemini-embedding-001:predict"),
    "{}",
    call.url
  );
  assert_eq!(
    call.body,
    json!({"instances": [{"content": "hello"}], "parameters": {"outputDimensionality": 8}})
  );
  let answer = vertex
    .parse_embed(br#"{"predictions":[{"embeddings":{"values":[0.5,-1],"statistics":{"truncated":false,"token_count":3}}}]}"#, 1)
    .expect("answer");
  assert_eq!(answer.vectors, vec![vec![0.5, -1.0]]);
  assert_eq!(answer.usage.map(|u| u.prompt_tokens), Some(3));
  assert!(vertex
    .build_embed(&EmbedBatch {
      model: "claude-sonnet-4",
      input: &input,
      dimensions: None,
      user: None
    })
    .is_err());
}

/// A token endpoint on loopback answering every request with `status` and `body` after
/// `delay`; the count of requests it got.
async fn token_endpoint(
  status: u16,
  body: &'static str,
  delay: std::time::Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
  use std::sync::atomic::{AtomicUsize, Ordering};
  use tokio::io::{AsyncReadExt, AsyncWriteExt};
  let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
    .await
    .expect("bind");
  let url = format!("http://{}/token", listener.local_addr().expect("addr"));
  let count = std::sync::Arc::new(AtomicUsize::new(0));
  let seen = count.clone();
  tokio::spawn(async move {
    while let Ok((mut socket, _)) = listener.accept().await {
      seen.fetch_add(1, Ordering::SeqCst);
      tokio::spawn(async move {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then the form body (its length from Content-Length).
        while let Ok(n) = socket.read(&mut buf).await {
          if n == 0 {
            break;
          }
          request.extend_from_slice(&buf[..n]);
          let text = String::from_utf8_lossy(&request);
          if let Some(end) = text.find("\r\n\r\n") {
            let length = text
              .lines()
              .find_map(|l| {
                l.to_ascii_lowercase()
                  .strip_prefix("content-length: ")
                  .map(|v| v.trim().parse::<usize>().unwrap_or(0))
              })
              .unwrap_or(0);
            if request.len() >= end + 4 + length {
              break;
            }
          }
        }
        tokio::time::sleep(delay).await;
        let reply = format!(
          "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
          body.len()
        );
        let _ = socket.write_all(reply.as_bytes()).await;
      });
    }
  });
  (url, count)
}

fn tokens_from(token_uri: &str) -> std::sync::Arc<token::ServiceAccountTokens> {
  let account =
    ServiceAccount::from_json(&key_file(json!({ "token_uri": token_uri }))).expect("account");
  std::sync::Arc::new(token::ServiceAccountTokens::new("vx", account))
}

#[tokio::test]
async fn concurrent_callers_share_one_fetch_and_its_failure() {
  use std::sync::atomic::Ordering;
  let http = reqwest::Client::new();
  let delay = std::time::Duration::from_millis(150);
  let (url, count) = token_endpoint(
    200,
    r#"{"access_token":"ya29.shared","expires_in":3599,"token_type":"Bearer"}"#,
    delay,
  )
  .await;
  let tokens = tokens_from(&url);
  // Polled together: every call asks before the first fetch can end.
  let calls = (0..10).map(|_| tokens.token(&http));
  for call in futures_util::future::join_all(calls).await {
    assert_eq!(call.expect("token").value.expose(), "ya29.shared");
  }
  assert_eq!(
    count.load(Ordering::SeqCst),
    1,
    "one token request for ten callers"
  );
  tokens.token(&http).await.expect("cached");
  assert_eq!(
    count.load(Ordering::SeqCst),
    1,
    "kept until shortly before it expires"
  );

  let (url, count) = token_endpoint(
    400,
    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
    delay,
  )
  .await;
  let tokens = tokens_from(&url);
  // Polled together: every call asks before the first fetch can end.
  let calls = (0..10).map(|_| tokens.token(&http));
  for call in futures_util::future::join_all(calls).await {
    let error = call.map(|_| ()).expect_err("refused");
    assert_eq!(error.code, crate::error::ErrorCode::Authentication);
    assert!(
      error
        .message
        .contains("invalid_grant: Invalid JWT Signature."),
      "{}",
      error.message
    );
    assert!(
      !error.message.contains("eyJ"),
      "no JWT in {}",
      error.message
    );
  }
  assert_eq!(
    count.load(Ordering::SeqCst),
    1,
    "the callers that waited share the failure"
  );
  assert!(tokens.token(&http).await.is_err());
  assert_eq!(count.load(Ordering::SeqCst), 2, "a later call asks again");
}

#[tokio::test]
async fn a_401_drops_the_token_once_and_asks_for_one_resend() {
  use crate::providers::auth::{Authorizer, Credential, Rejection};
  let http = reqwest::Client::new();
  let (url, count) = token_endpoint(
    200,
    r#"{"access_token":"ya29.t","expires_in":3599}"#,
    std::time::Duration::ZERO,
  )
  .await;
  let tokens = tokens_from(&url);
  let first = tokens.token(&http).await.expect("token");
  let refused = |resends| Rejection {
    status: 401,
    retry_after: None,
    resends,
  };
  assert!(
    !tokens.rejected(
      Credential(first.generation),
      Rejection {
        status: 403,
        ..refused(0)
      }
    ),
    "403: no other token helps"
  );
  assert!(!tokens.rejected(
    Credential(first.generation),
    Rejection {
      status: 429,
      ..refused(0)
    }
  ));
  assert!(
    !tokens.rejected(Credential(first.generation), refused(1)),
    "one resend only"
  );
  assert!(
    tokens.current().is_some(),
    "kept: none of those was a first 401"
  );
  assert!(tokens.rejected(Credential(first.generation), refused(0)));
  assert!(tokens.current().is_none(), "dropped");
  let second = tokens.token(&http).await.expect("token");
  assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
  // A late 401 for the old token does not drop the new one.
  assert!(tokens.rejected(Credential(first.generation), refused(0)));
  assert_eq!(
    tokens.current().map(|t| t.generation),
    Some(second.generation)
  );
}
