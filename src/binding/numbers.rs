//! Counts and durations from JS numbers. JS has one number type, so -1, 1.5, NaN and
//! Infinity all arrive where a count or a duration belongs: each is refused with a message
//! naming the field, never wrapped around (napi's u32 makes -1 into 4294967295), clamped
//! or silently replaced by a default. The caller picks the error code (CONFIG in options,
//! INVALID_REQUEST in a request).

use std::time::Duration;

/// A whole number >= 0 (that fits a u32).
pub fn count(field: &str, value: Option<f64>) -> Result<Option<u32>, String> {
  let Some(value) = value else {
    return Ok(None);
  };
  if !value.is_finite() || value < 0.0 || value.fract() != 0.0 {
    return Err(format!("{field} must be a whole number >= 0, not {value}"));
  }
  if value > f64::from(u32::MAX) {
    return Err(format!("{field} must be at most {}, not {value}", u32::MAX));
  }
  Ok(Some(value as u32))
}

/// Milliseconds, > 0 (a deadline of 0 would fail every call at once) or, with
/// `zero_allowed`, >= 0 (a delay). A value too large for a Duration is no practical limit.
pub fn millis(
  field: &str,
  value: Option<f64>,
  zero_allowed: bool,
) -> Result<Option<Duration>, String> {
  let Some(value) = value else {
    return Ok(None);
  };
  let in_range = if zero_allowed {
    value >= 0.0
  } else {
    value > 0.0
  };
  if !value.is_finite() || !in_range {
    let bound = if zero_allowed { ">= 0" } else { "> 0" };
    return Err(format!(
      "{field} must be a finite number of milliseconds {bound}, not {value}"
    ));
  }
  Ok(Some(
    Duration::try_from_secs_f64(value / 1000.0).unwrap_or(Duration::MAX),
  ))
}

/// A finite number (sampling parameters: NaN would be sent as `null`).
pub fn finite(field: &str, value: Option<f64>) -> Result<Option<f64>, String> {
  match value {
    Some(value) if !value.is_finite() => {
      Err(format!("{field} must be a finite number, not {value}"))
    }
    other => Ok(other),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn counts_are_whole_and_in_range() {
    assert_eq!(count("n", Some(3.0)), Ok(Some(3)));
    assert_eq!(count("n", None), Ok(None));
    for bad in [-1.0, 1.5, f64::NAN, f64::INFINITY, 2f64.powi(40)] {
      let message = count("maxRetries", Some(bad)).expect_err("refused");
      assert!(message.starts_with("maxRetries must"), "{message}");
    }
  }

  #[test]
  fn durations_are_positive_finite_and_may_be_huge() {
    assert_eq!(
      millis("t", Some(1500.0), false),
      Ok(Some(Duration::from_millis(1500)))
    );
    assert_eq!(millis("t", Some(1e300), false), Ok(Some(Duration::MAX)));
    assert_eq!(millis("d", Some(0.0), true), Ok(Some(Duration::ZERO)));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
      assert!(millis("timeoutMs", Some(bad), false).is_err(), "{bad}");
    }
    assert!(millis("d", Some(-1.0), true).is_err());
  }
}
