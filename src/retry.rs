//! When to try again and how long to wait: the vendor's hint first (`retry-after-ms`,
//! `Retry-After` in seconds or as an HTTP date, Gemini's RetryInfo), else exponential
//! backoff with jitter.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Never wait longer than this between attempts, whatever the backoff says.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A count of seconds from the outside world (a header, a JS number) as a Duration:
/// `None` for negative, NaN, infinite or absurdly large values instead of a panic.
pub fn seconds(value: f64) -> Option<Duration> {
  Duration::try_from_secs_f64(value).ok()
}

/// The vendor's requested wait, from response headers.
pub fn retry_after_from_headers(headers: &HeaderMap) -> Option<Duration> {
  if let Some(wait) = header_str(headers, "retry-after-ms")
    .and_then(|v| v.trim().parse::<f64>().ok())
    .and_then(|ms| seconds(ms / 1000.0))
  {
    return Some(wait);
  }
  let value = header_str(headers, "retry-after")?.trim();
  if let Ok(count) = value.parse::<f64>() {
    return seconds(count);
  }
  let at = httpdate::parse_http_date(value).ok()?;
  Some(
    at.duration_since(SystemTime::now())
      .unwrap_or(Duration::ZERO),
  )
}

/// A protobuf Duration string as Gemini writes it: "34.4s", "2s", "0.5s".
pub fn parse_proto_duration(value: &str) -> Option<Duration> {
  seconds(value.trim().strip_suffix('s')?.parse().ok()?)
}

/// OpenAI puts the wait only in the message text: "Please try again in 18.642s" or "in 20ms".
pub fn retry_hint_in_message(message: &str) -> Option<Duration> {
  let rest = &message[message.find("try again in ")? + "try again in ".len()..];
  let number_end = rest
    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
    .unwrap_or(rest.len());
  let number: f64 = rest[..number_end].parse().ok()?;
  let unit = &rest[number_end..];
  if unit.starts_with("ms") {
    seconds(number / 1000.0)
  } else if unit.starts_with('s') {
    seconds(number)
  } else {
    None
  }
}

/// Exponential backoff with "equal jitter": the step base·2ⁿ (capped at 8 s), and a wait
/// drawn uniformly from [step/2, step], so clients that failed together do not retry
/// together, yet never retry sooner than half the step.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
  let ceiling = base
    .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
    .min(MAX_BACKOFF);
  let half = ceiling / 2;
  half + half.mul_f64(fastrand::f64())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
  headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
  use super::*;
  use reqwest::header::HeaderValue;

  #[test]
  fn retry_after_forms() {
    let mut headers = HeaderMap::new();
    headers.insert("retry-after", HeaderValue::from_static("2"));
    assert_eq!(
      retry_after_from_headers(&headers),
      Some(Duration::from_secs(2))
    );
    headers.insert("retry-after-ms", HeaderValue::from_static("150"));
    assert_eq!(
      retry_after_from_headers(&headers),
      Some(Duration::from_millis(150))
    );
    let mut dated = HeaderMap::new();
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    dated.insert(
      "retry-after",
      HeaderValue::from_str(&later).expect("header"),
    );
    let wait = retry_after_from_headers(&dated).expect("date");
    assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
  }

  #[test]
  fn hints_in_bodies() {
    assert_eq!(
      parse_proto_duration("34.4s"),
      Some(Duration::from_millis(34_400))
    );
    assert_eq!(
      retry_hint_in_message("Limit 30000. Please try again in 18.642s. Visit"),
      Some(Duration::from_millis(18_642))
    );
    assert_eq!(
      retry_hint_in_message("try again in 20ms."),
      Some(Duration::from_millis(20))
    );
    assert_eq!(retry_hint_in_message("no hint"), None);
    assert_eq!(parse_proto_duration("1e300s"), None);
    assert_eq!(parse_proto_duration("-1s"), None);
  }

  #[test]
  fn backoff_grows_and_is_capped() {
    let base = Duration::from_millis(100);
    for attempt in 0..20 {
      let wait = backoff(base, attempt);
      let ceiling = (base * 2u32.pow(attempt.min(10))).min(MAX_BACKOFF);
      assert!(
        wait >= ceiling / 2 && wait <= ceiling,
        "attempt {attempt}: {wait:?}"
      );
    }
  }
}
