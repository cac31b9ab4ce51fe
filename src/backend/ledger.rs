//! The ledger seam: where recorded calls are kept. The embedded SQLite ledger implements it
//! now; a PostgreSQL ledger shared by several processes slots in behind the same trait.

use crate::costs::money::Nanos;
use crate::error::Result;
use crate::types::Usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
  Ok,
  Error,
  Aborted,
}

impl CallOutcome {
  pub fn as_str(self) -> &'static str {
    match self {
      CallOutcome::Ok => "ok",
      CallOutcome::Error => "error",
      CallOutcome::Aborted => "aborted",
    }
  }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
  /// Milliseconds since the Unix epoch.
  pub at_ms: i64,
  pub user: String,
  /// As priced: "provider/model" for gateway calls, as given for `record()`.
  pub model: String,
  pub provider: Option<String>,
  pub outcome: CallOutcome,
  pub error_code: Option<String>,
  pub usage: Usage,
  pub cost: Nanos,
  /// False when no price was known for the model (its cost is then 0).
  pub priced: bool,
  /// Answered from the response cache: no upstream call, zero cost.
  pub cached: bool,
  pub latency_ms: Option<f64>,
  pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotal {
  /// Days since 1970-01-01, UTC.
  pub day: i64,
  pub cost: Nanos,
  pub requests: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelTotal {
  pub model: String,
  pub cost: Nanos,
  pub requests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerTotals {
  /// Only days with rows, oldest first.
  pub days: Vec<DayTotal>,
  pub models: Vec<ModelTotal>,
  pub unpriced_requests: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
  pub written: u64,
  /// Rows a failed write lost.
  pub failed: u64,
  /// Rows appended after `close()`.
  pub dropped: u64,
}

pub trait LedgerBackend: Send + Sync {
  /// Queues a row without waiting; it is durable within 100 ms.
  fn append(&self, row: LedgerRow);
  /// Returns once every row appended before the call is durable.
  fn flush(&self) -> Result<()>;
  /// Cost per UTC day of one user's calls, from `from_day` on.
  fn daily_costs(&self, user: &str, from_day: i64) -> Result<Vec<(i64, Nanos)>>;
  /// Totals by day and by model since `from_ms`, for one user or everyone.
  fn totals(&self, user: Option<&str>, from_ms: i64) -> Result<LedgerTotals>;
  /// True when the ledger held no rows when it was opened (nothing to load per user).
  fn opened_empty(&self) -> bool;
  fn stats(&self) -> LedgerStats;
  /// Flushes and releases the ledger; later appends are dropped and counted.
  fn close(&self) -> Result<()>;
}
