//! The ledger seam: where recorded calls are kept. The embedded SQLite ledger and the
//! PostgreSQL ledger shared by several processes implement it.
//!
//! Reads return boxed futures, as the other stores do (see `backend/mod.rs`): the embedded
//! ledger's are ready at once (which keeps `CostTracker.summary()` synchronous in JS), a
//! networked ledger's are awaited so the JS thread never waits on the network.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::costs::money::Nanos;
use crate::error::{GatewayError, Result};
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
  /// Chat or embeddings.
  pub operation: crate::types::Operation,
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
  /// Rows a failed write lost (the database refused them).
  pub failed: u64,
  /// Rows appended after `close()`, or beyond the buffer bound while the database was away,
  /// or still buffered when `close()` gave up waiting.
  pub dropped: u64,
  /// Rows waiting to be written.
  pub buffered: u64,
}

/// One user's cost on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDay {
  pub user: String,
  pub day: i64,
  pub cost: Nanos,
}

pub trait LedgerBackend: Send + Sync {
  /// Queues a row without waiting; it is written within the ledger's batch window.
  fn append(&self, row: LedgerRow);
  /// True when the futures below are ready at the first poll (the embedded ledger), so a
  /// synchronous caller may take their answer with [`at_once`].
  fn answers_at_once(&self) -> bool;
  /// Resolves once every row appended before the call is durable.
  fn flush(&self) -> BoxFuture<'_, Result<()>>;
  /// Cost per UTC day of one user's calls, from `from_day` on. Sees every earlier append.
  fn daily_costs<'a>(
    &'a self,
    user: &'a str,
    from_day: i64,
  ) -> BoxFuture<'a, Result<Vec<(i64, Nanos)>>>;
  /// Cost per user and UTC day from `from_day` on, for loading every user's history at
  /// once (a networked ledger, which `daily_costs` per user would make slow to start).
  fn user_days(&self, from_day: i64) -> BoxFuture<'_, Result<Vec<UserDay>>>;
  /// Totals by day and by model since `from_ms`, for one user or everyone. Sees every
  /// earlier append.
  fn totals<'a>(
    &'a self,
    user: Option<&'a str>,
    from_ms: i64,
  ) -> BoxFuture<'a, Result<LedgerTotals>>;
  /// True when the ledger held no rows when it was opened (nothing to load per user).
  fn opened_empty(&self) -> bool;
  fn stats(&self) -> LedgerStats;
  /// Flushes and releases the ledger; later appends are dropped and counted.
  fn close(&self) -> BoxFuture<'_, Result<()>>;
}

/// The answer of a ledger future that must be ready now: an embedded ledger's always is; a
/// networked ledger's is a CONFIG error telling the caller to await it.
pub fn at_once<T>(future: BoxFuture<'_, Result<T>>) -> Result<T> {
  future.now_or_never().unwrap_or_else(|| {
    Err(GatewayError::config(
      "this ledger is networked: use the asynchronous form (await it)",
    ))
  })
}
