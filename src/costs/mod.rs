//! Cost tracking: prices (a dated built-in table under LiteLLM-format overrides), the
//! ledger of every call, budgets enforced by reservation, and spending alerts. Plain Rust;
//! the napi class is `binding::costs`, the gateway stages are `pipeline::{budget, ledger}`.

pub mod alerts;
pub mod builtin_prices;
pub mod clock;
pub mod money;
pub mod pricing;
mod tracker;

#[cfg(test)]
mod tests;

pub use alerts::{Alert, AlertKind, Severity};
pub use money::Nanos;
pub use pricing::{ModelPrice, PriceSource, Pricing};
pub use tracker::*;
