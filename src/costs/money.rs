//! Money as integers, so totals never drift: prices are picodollars per token (the
//! cheapest list price, $0.01 per million tokens, is 10 000 of them) and costs are
//! nanodollars. Floats appear only at the JS boundary.

use std::ops::{Add, AddAssign, Sub};

const PICOS_PER_USD: f64 = 1e12;
const NANOS_PER_USD: f64 = 1e9;
const PICOS_PER_NANO: u128 = 1_000;

/// A per-token price in picodollars (1e-12 USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct TokenPrice(pub u64);

impl TokenPrice {
  /// From USD per token, as LiteLLM's files write it (`2.5e-06`). `None` for a negative,
  /// non-finite or absurd (over $1000 per token) value.
  pub fn from_usd_per_token(usd: f64) -> Option<TokenPrice> {
    if !usd.is_finite() || !(0.0..=1000.0).contains(&usd) {
      return None;
    }
    Some(TokenPrice((usd * PICOS_PER_USD).round() as u64))
  }

  /// From USD per million tokens, as vendors publish prices.
  pub const fn per_million_micros(micro_usd_per_million: u64) -> TokenPrice {
    // $1 per million tokens = 1e-6 $/token = 1e6 picodollars per token, so one
    // micro-USD per million is exactly one picodollar per token.
    TokenPrice(micro_usd_per_million)
  }

  pub fn usd_per_million(self) -> f64 {
    self.0 as f64 / 1e6
  }

  /// The exact cost of `tokens` at this price, in picodollars.
  fn picos(self, tokens: u64) -> u128 {
    u128::from(self.0) * u128::from(tokens)
  }
}

/// An amount in nanodollars (1e-9 USD). Billions of dollars fit; arithmetic saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
  pub const ZERO: Nanos = Nanos(0);

  /// From a USD amount given by a caller; `None` for negative or non-finite values.
  pub fn from_usd(usd: f64) -> Option<Nanos> {
    if !usd.is_finite() || usd < 0.0 || usd * NANOS_PER_USD > u64::MAX as f64 {
      return None;
    }
    Some(Nanos((usd * NANOS_PER_USD).round() as u64))
  }

  pub fn usd(self) -> f64 {
    self.0 as f64 / NANOS_PER_USD
  }

  /// SQLite integers are signed; no real total comes near the limit.
  pub fn as_i64(self) -> i64 {
    i64::try_from(self.0).unwrap_or(i64::MAX)
  }

  pub fn from_i64(value: i64) -> Nanos {
    Nanos(u64::try_from(value).unwrap_or(0))
  }

  pub fn saturating_sub(self, other: Nanos) -> Nanos {
    Nanos(self.0.saturating_sub(other.0))
  }
}

impl Add for Nanos {
  type Output = Nanos;
  fn add(self, other: Nanos) -> Nanos {
    Nanos(self.0.saturating_add(other.0))
  }
}

impl AddAssign for Nanos {
  fn add_assign(&mut self, other: Nanos) {
    *self = *self + other;
  }
}

impl Sub for Nanos {
  type Output = Nanos;
  fn sub(self, other: Nanos) -> Nanos {
    self.saturating_sub(other)
  }
}

impl std::iter::Sum for Nanos {
  fn sum<I: Iterator<Item = Nanos>>(iter: I) -> Nanos {
    iter.fold(Nanos::ZERO, Add::add)
  }
}

/// Sums token counts at their prices exactly, rounding once at the end (half up).
#[derive(Default)]
pub struct CostSum {
  picos: u128,
}

impl CostSum {
  pub fn add(&mut self, tokens: u64, price: TokenPrice) {
    self.picos = self.picos.saturating_add(price.picos(tokens));
  }

  pub fn nanos(&self) -> Nanos {
    let rounded = (self.picos + PICOS_PER_NANO / 2) / PICOS_PER_NANO;
    Nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn per_token_prices_round_trip_through_litellm_floats() {
    let price = TokenPrice::from_usd_per_token(2.5e-6).expect("price");
    assert_eq!(price, TokenPrice::per_million_micros(2_500_000));
    assert_eq!(price.usd_per_million(), 2.5);
    let tiny = TokenPrice::from_usd_per_token(1.25e-8).expect("price");
    assert_eq!(tiny.0, 12_500);
    assert!(TokenPrice::from_usd_per_token(-1e-6).is_none());
    assert!(TokenPrice::from_usd_per_token(f64::NAN).is_none());
  }

  #[test]
  fn a_million_small_costs_add_up_exactly() {
    // gpt-4o-mini: $0.15 per million input tokens; 7 tokens = 1.05 microdollars.
    let price = TokenPrice::per_million_micros(150_000);
    let mut total = Nanos::ZERO;
    for _ in 0..1_000_000 {
      let mut sum = CostSum::default();
      sum.add(7, price);
      total += sum.nanos();
    }
    assert_eq!(total, Nanos(1_050_000_000));
    assert_eq!(total.usd(), 1.05);
  }

  #[test]
  fn usd_amounts_from_callers_are_checked() {
    assert_eq!(Nanos::from_usd(0.5), Some(Nanos(500_000_000)));
    assert_eq!(Nanos::from_usd(-0.01), None);
    assert_eq!(Nanos::from_usd(f64::INFINITY), None);
  }
}
