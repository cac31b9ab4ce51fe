//! Time for the tracker: an injectable clock (tests move it across day and month ends)
//! and UTC calendar arithmetic on day numbers, without a date crate.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const MS_PER_DAY: i64 = 86_400_000;

pub trait Clock: Send + Sync {
  /// Milliseconds since the Unix epoch.
  fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
  fn now_ms(&self) -> i64 {
    SystemTime::now()
      .duration_since(UNIX_EPOCH)
      .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
      .unwrap_or(0)
  }
}

/// A clock that only moves when told to.
pub struct ManualClock(AtomicI64);

impl ManualClock {
  pub fn at(ms: i64) -> ManualClock {
    ManualClock(AtomicI64::new(ms))
  }

  pub fn set(&self, ms: i64) {
    self.0.store(ms, Ordering::SeqCst);
  }

  pub fn advance(&self, ms: i64) {
    self.0.fetch_add(ms, Ordering::SeqCst);
  }
}

impl Clock for ManualClock {
  fn now_ms(&self) -> i64 {
    self.0.load(Ordering::SeqCst)
  }
}

/// Days since 1970-01-01 (UTC) of a millisecond timestamp.
pub fn day_of(ms: i64) -> i64 {
  ms.div_euclid(MS_PER_DAY)
}

/// (year, month 1-12, day 1-31) of a day number (Howard Hinnant's civil_from_days).
pub fn civil(day: i64) -> (i64, u32, u32) {
  let z = day + 719_468;
  let era = z.div_euclid(146_097);
  let doe = z - era * 146_097;
  let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
  let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
  let y = yoe + era * 400 + i64::from(m <= 2);
  (y, m, d)
}

/// The day number of a calendar date (days_from_civil).
pub fn day_from_civil(year: i64, month: u32, day: u32) -> i64 {
  let y = if month <= 2 { year - 1 } else { year };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let m = i64::from(month);
  let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  era * 146_097 + doe - 719_468
}

/// The first day of the month holding `day`.
pub fn month_start(day: i64) -> i64 {
  let (y, m, _) = civil(day);
  day_from_civil(y, m, 1)
}

/// "YYYY-MM-DD".
pub fn iso_date(day: i64) -> String {
  let (y, m, d) = civil(day);
  format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn calendar_arithmetic_matches_known_dates() {
    assert_eq!(iso_date(0), "1970-01-01");
    // 2024-02-29 is day 19782.
    assert_eq!(day_from_civil(2024, 2, 29), 19_782);
    assert_eq!(iso_date(19_782), "2024-02-29");
    assert_eq!(iso_date(month_start(19_782)), "2024-02-01");
    assert_eq!(
      iso_date(month_start(day_from_civil(2026, 12, 31))),
      "2026-12-01"
    );
    for day in -1000..30_000 {
      let (y, m, d) = civil(day);
      assert_eq!(day_from_civil(y, m, d), day);
    }
    assert_eq!(day_of(-1), -1);
  }
}
