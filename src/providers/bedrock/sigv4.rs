//! AWS Signature Version 4 for one POST with a body, in a header (`Authorization`), as the
//! AWS SDKs sign Bedrock Runtime calls. The secret and the signature only ever go into the
//! headers returned; nothing here formats them into an error.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result};
use crate::providers::auth::{AuthFuture, Authorizer, Credential, OutgoingRequest};
use crate::providers::JSON_CONTENT_TYPE;
use crate::secret::Secret;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// RFC 3986 unreserved characters stay; every other byte is `%XX` (AWS's UriEncode).
pub const URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
  .remove(b'-')
  .remove(b'_')
  .remove(b'.')
  .remove(b'~');

#[derive(Clone, Debug)]
pub struct Credentials {
  pub access_key_id: String,
  pub secret_access_key: Secret,
  pub session_token: Option<Secret>,
}

/// Who signs, where.
#[derive(Clone, Debug)]
pub struct Signer {
  pub credentials: Credentials,
  pub region: String,
  pub service: &'static str,
}

impl Signer {
  /// The headers that sign a POST of `body` to `url` sent with `content_type`:
  /// `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (with a session token)
  /// and `authorization`.
  pub fn sign(
    &self,
    url: &str,
    content_type: &str,
    body: &[u8],
    now: SystemTime,
  ) -> Result<Vec<(String, String)>> {
    let url = url::Url::parse(url)
      .map_err(|e| GatewayError::config(format!("cannot sign a request to a bad URL: {e}")))?;
    let host = match (url.host_str(), url.port()) {
      (Some(host), Some(port)) => format!("{host}:{port}"),
      (Some(host), None) => host.to_string(),
      (None, _) => return Err(GatewayError::config("cannot sign a request without a host")),
    };
    let (date_time, date) = amz_dates(now);
    let payload_hash = hex(&Sha256::digest(body));
    let mut headers: Vec<(&str, String)> = vec![
      ("content-type", content_type.to_string()),
      ("host", host),
      ("x-amz-content-sha256", payload_hash.clone()),
      ("x-amz-date", date_time.clone()),
    ];
    if let Some(token) = &self.credentials.session_token {
      headers.push(("x-amz-security-token", token.expose().to_string()));
    }
    headers.sort_by(|a, b| a.0.cmp(b.0));
    let signed_headers = headers
      .iter()
      .map(|(name, _)| *name)
      .collect::<Vec<_>>()
      .join(";");
    let canonical_headers: String = headers
      .iter()
      .map(|(name, value)| format!("{name}:{}\n", collapse_spaces(value)))
      .collect();
    let canonical_request = format!(
      "POST\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
      canonical_path(url.path()),
      canonical_query(&url),
    );
    let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
    let string_to_sign = format!(
      "{ALGORITHM}\n{date_time}\n{scope}\n{}",
      hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let signing_key = [
      date.as_str(),
      self.region.as_str(),
      self.service,
      "aws4_request",
    ]
    .iter()
    .fold(
      format!("AWS4{}", self.credentials.secret_access_key.expose()).into_bytes(),
      |key, part| hmac(&key, part.as_bytes()),
    );
    let signature = hex(&hmac(&signing_key, string_to_sign.as_bytes()));
    let authorization = format!(
      "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
      self.credentials.access_key_id
    );
    let mut out: Vec<(String, String)> = headers
      .into_iter()
      .filter(|(name, _)| !matches!(*name, "content-type" | "host"))
      .map(|(name, value)| (name.to_string(), value))
      .collect();
    out.push(("authorization".to_string(), authorization));
    Ok(out)
  }
}

/// Signs every send just before it leaves, over the exact body bytes (a resend is signed
/// anew, with its own time).
impl Authorizer for Signer {
  fn authorize<'a>(&'a self, request: OutgoingRequest<'a>) -> AuthFuture<'a> {
    Box::pin(async move {
      let signed = self.sign(
        request.url,
        JSON_CONTENT_TYPE,
        request.body,
        SystemTime::now(),
      )?;
      request.headers.extend(signed);
      Ok(Credential::default())
    })
  }
}

/// Every service but S3 encodes the already-encoded path once more, keeping the slashes
/// (`%3A` in a model ARN is signed as `%253A`).
fn canonical_path(path: &str) -> String {
  if path.is_empty() {
    return "/".to_string();
  }
  path
    .split('/')
    .map(|segment| utf8_percent_encode(segment, URI_ENCODE).to_string())
    .collect::<Vec<_>>()
    .join("/")
}

/// Parameters sorted by name, then value, each encoded with AWS's UriEncode.
fn canonical_query(url: &url::Url) -> String {
  let mut pairs: Vec<(String, String)> = url
    .query_pairs()
    .map(|(name, value)| {
      (
        utf8_percent_encode(&name, URI_ENCODE).to_string(),
        utf8_percent_encode(&value, URI_ENCODE).to_string(),
      )
    })
    .collect();
  pairs.sort();
  pairs
    .iter()
    .map(|(name, value)| format!("{name}={value}"))
    .collect::<Vec<_>>()
    .join("&")
}

/// A header value as signed: trimmed, inner runs of whitespace made one space.
fn collapse_spaces(value: &str) -> String {
  value.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
  // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
  let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
    Ok(mac) => mac,
    Err(_) => unreachable!("HMAC accepts keys of every length"),
  };
  mac.update(data);
  mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
  use std::fmt::Write;
  bytes.iter().fold(String::new(), |mut out, byte| {
    let _ = write!(out, "{byte:02x}");
    out
  })
}

/// `20150830T123600Z` and `20150830` for `now`, in UTC.
fn amz_dates(now: SystemTime) -> (String, String) {
  let seconds = now
    .duration_since(SystemTime::UNIX_EPOCH)
    .map(|d| d.as_secs())
    .unwrap_or(0);
  let days = (seconds / 86_400) as i64;
  let of_day = seconds % 86_400;
  let (year, month, day) = civil_from_days(days);
  let date = format!("{year:04}{month:02}{day:02}");
  let date_time = format!(
    "{date}T{:02}{:02}{:02}Z",
    of_day / 3600,
    of_day % 3600 / 60,
    of_day % 60
  );
  (date_time, date)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
  let z = days + 719_468;
  let era = z.div_euclid(146_097);
  let day_of_era = z.rem_euclid(146_097);
  let year_of_era =
    (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
  let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  let mp = (5 * day_of_year + 2) / 153;
  let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
  let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
  let year = year_of_era + era * 400 + i64::from(month <= 2);
  (year, month, day)
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  fn signer(session_token: Option<&str>) -> Signer {
    Signer {
      credentials: Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        session_token: session_token.map(|t| Secret::new(t.into())),
      },
      region: "us-east-1".into(),
      service: "bedrock",
    }
  }

  #[test]
  fn dates_are_utc_calendar_dates() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    assert_eq!(
      amz_dates(at),
      ("20150830T123600Z".to_string(), "20150830".to_string())
    );
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
  }

  /// Expected headers computed by `@smithy/signature-v4` 5.7 (what the AWS JS SDK signs with)
  /// for the same request: an ARN model id, with and without a session token.
  #[test]
  fn signatures_match_the_aws_sdk_signer() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse";
    let authorization = |token: Option<&str>| {
      let headers = signer(token)
        .sign(url, "application/json", br#"{"messages":[]}"#, at)
        .expect("signs");
      headers
        .into_iter()
        .find(|(name, _)| name == "authorization")
        .expect("authorization")
        .1
    };
    assert_eq!(
      authorization(None),
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, Signature=05bdb5978e00058fdf5d06adda4a3ddd029862f9aad28a2e7e861333c7084695"
    );
    assert_eq!(
      authorization(Some("TOKEN")),
      "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=f650a9e4441bced1bd6b298eeeac30d80d1733e6ce8d0d939a20f8a8329031db"
    );
  }

  #[test]
  fn paths_are_encoded_twice_keeping_slashes() {
    assert_eq!(
      canonical_path(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse"
      ),
      "/model/arn%253Aaws%253Abedrock%253Aus-east-1%253A1%253Ainference-profile%252Fus.x/converse"
    );
  }
}
