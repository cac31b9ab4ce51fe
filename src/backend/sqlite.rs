//! The embedded ledger: SQLite in WAL mode, on disk at `ledgerPath` or in memory.
//!
//! One writer thread owns the connection. `append` only pushes the row onto a queue under
//! a mutex, waking the writer only when it sleeps; the writer commits everything queued in
//! one transaction each time round (group commit). Woken by a row, it first lets rows
//! gather for up to `GROUP_WAIT` (unless `GROUP_ROWS` are already waiting): a commit costs
//! far more than a row (WAL frames for the table and both indexes, write syscalls), and
//! without the wait a busy gateway commits every row or two. A row is thus committed within
//! about `GROUP_WAIT` of `append` as long as the writer keeps up (it inserts a few hundred
//! thousand rows a second), well inside the 100 ms the API promises. In WAL mode with
//! `synchronous = NORMAL` a commit is a write into the WAL file: it survives the process
//! being killed (SIGKILL) though not a power cut, which would need an fsync per commit.
//! Reads and `close()` cut the wait short; a read runs on the writer thread after
//! committing every row queued before it, so it sees every earlier append.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::future::{ready, BoxFuture};
use futures_util::FutureExt;
use rusqlite::{params, Connection, OptionalExtension};

use super::ledger::{
  DayTotal, LedgerBackend, LedgerRow, LedgerStats, LedgerTotals, ModelTotal, UserDay,
};
use crate::costs::clock::MS_PER_DAY;
use crate::costs::money::Nanos;
use crate::error::{GatewayError, Result};

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// How long rows may gather before a commit (see the module docs).
const GROUP_WAIT: Duration = Duration::from_millis(10);
/// Rows that make a commit worth doing at once.
const GROUP_ROWS: usize = 256;

/// Work waiting for the writer.
#[derive(Default)]
struct Queue {
  rows: Vec<LedgerRow>,
  jobs: VecDeque<Job>,
  /// Set by `close()`: the writer commits, checkpoints and answers here.
  closing: Option<mpsc::SyncSender<()>>,
  /// The writer is blocked waiting for work: the next push must wake it.
  writer_waiting: bool,
  /// The writer lets rows gather before committing: only a read, `close()` or a full
  /// group wakes it early.
  writer_gathering: bool,
  /// The writer has exited; nothing queued now would ever run.
  writer_gone: bool,
}

#[derive(Default)]
struct Shared {
  queue: Mutex<Queue>,
  wake: Condvar,
  written: AtomicU64,
  failed: AtomicU64,
  dropped: AtomicU64,
}

impl Shared {
  fn queue(&self) -> MutexGuard<'_, Queue> {
    self.queue.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Wakes the writer if it sleeps or gathers rows; called with the queue locked, after
  /// queueing a read or a close.
  fn wake_writer(&self, queue: &mut Queue) {
    if queue.writer_waiting || queue.writer_gathering {
      queue.writer_waiting = false;
      queue.writer_gathering = false;
      self.wake.notify_one();
    }
  }

  /// After queueing a row: wakes a sleeping writer, or a gathering one once a group is full.
  fn wake_writer_for_row(&self, queue: &mut Queue) {
    if queue.writer_waiting || (queue.writer_gathering && queue.rows.len() >= GROUP_ROWS) {
      queue.writer_waiting = false;
      queue.writer_gathering = false;
      self.wake.notify_one();
    }
  }
}

pub struct SqliteLedger {
  shared: Arc<Shared>,
  writer: Mutex<Option<JoinHandle<()>>>,
  closed: AtomicBool,
  opened_empty: bool,
}

const SCHEMA: &str = "
  CREATE TABLE IF NOT EXISTS ferrogate_ledger (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    user TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT,
    outcome TEXT NOT NULL,
    error_code TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_prompt_tokens INTEGER NOT NULL,
    cache_write_prompt_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL,
    priced INTEGER NOT NULL,
    cached INTEGER NOT NULL,
    latency_ms REAL,
    request_id TEXT,
    operation TEXT
  );
  CREATE INDEX IF NOT EXISTS ferrogate_ledger_user_time ON ferrogate_ledger (user, at_ms);
  CREATE INDEX IF NOT EXISTS ferrogate_ledger_time ON ferrogate_ledger (at_ms);
";

const INSERT: &str = "INSERT INTO ferrogate_ledger (at_ms, user, model, provider, outcome,
  error_code, prompt_tokens, completion_tokens, cached_prompt_tokens, cache_write_prompt_tokens,
  reasoning_tokens, estimated, cost_nanos, priced, cached, latency_ms, request_id, operation)
  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// A ledger file written before the `operation` column existed gets it (its rows read as chat).
fn add_operation_column(connection: &Connection) -> rusqlite::Result<()> {
  let has_it = connection
    .prepare("SELECT 1 FROM pragma_table_info('ferrogate_ledger') WHERE name = 'operation'")?
    .exists([])?;
  if !has_it {
    connection.execute_batch("ALTER TABLE ferrogate_ledger ADD COLUMN operation TEXT")?;
  }
  Ok(())
}

fn sql_error(context: &str, error: rusqlite::Error) -> GatewayError {
  GatewayError::config(format!("cost ledger: {context}: {error}"))
}

fn count(value: u64) -> i64 {
  i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
  u64::try_from(value).unwrap_or(0)
}

impl SqliteLedger {
  /// Opens (or creates) the ledger at `path`; in memory when `path` is `None`.
  pub fn open(path: Option<&str>) -> Result<SqliteLedger> {
    let connection = match path {
      Some(path) => {
        Connection::open(path).map_err(|e| sql_error(&format!("could not open '{path}'"), e))?
      }
      None => Connection::open_in_memory().map_err(|e| sql_error("could not open", e))?,
    };
    if path.is_some() {
      connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| {
          row.get::<_, String>(0)
        })
        .map_err(|e| sql_error("could not switch to WAL mode", e))?;
    }
    connection
      .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
      .and_then(|()| connection.execute_batch(SCHEMA))
      .and_then(|()| add_operation_column(&connection))
      .map_err(|e| sql_error("could not create the ledger table", e))?;
    let opened_empty = connection
      .query_row("SELECT 1 FROM ferrogate_ledger LIMIT 1", [], |_| Ok(()))
      .optional()
      .map_err(|e| sql_error("could not read", e))?
      .is_none();
    let shared = Arc::new(Shared::default());
    let writer_shared = shared.clone();
    let writer = std::thread::Builder::new()
      .name("ferrogate-ledger".into())
      .spawn(move || write_loop(connection, &writer_shared))
      .map_err(|e| GatewayError::config(format!("cost ledger: could not start its writer: {e}")))?;
    Ok(SqliteLedger {
      shared,
      writer: Mutex::new(Some(writer)),
      closed: AtomicBool::new(false),
      opened_empty,
    })
  }

  /// Runs `read` on the writer thread, after every row queued before it.
  fn read<T: Send + 'static>(
    &self,
    read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
  ) -> Result<T> {
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |connection| {
      let _ = reply.send(read(connection));
    });
    {
      let mut queue = self.shared.queue();
      if queue.writer_gone || queue.closing.is_some() {
        return Err(closed_error());
      }
      queue.jobs.push_back(job);
      self.shared.wake_writer(&mut queue);
    }
    // A job the writer drops unrun (it exited) drops `reply`, which ends this wait.
    answer
      .recv()
      .map_err(|_| closed_error())?
      .map_err(|e| sql_error("read failed", e))
  }
}

fn closed_error() -> GatewayError {
  GatewayError::config("the cost ledger is closed")
}

impl SqliteLedger {
  fn push(&self, row: LedgerRow) {
    if self.closed.load(Ordering::Acquire) {
      self.shared.dropped.fetch_add(1, Ordering::Relaxed);
      return;
    }
    let mut queue = self.shared.queue();
    if queue.writer_gone {
      drop(queue);
      self.shared.dropped.fetch_add(1, Ordering::Relaxed);
      return;
    }
    queue.rows.push(row);
    self.shared.wake_writer_for_row(&mut queue);
  }

  pub fn flush_now(&self) -> Result<()> {
    self.read(|_| Ok(()))
  }

  pub fn daily_costs_now(&self, user: &str, from_day: i64) -> Result<Vec<(i64, Nanos)>> {
    let user = user.to_string();
    let from_ms = from_day.saturating_mul(MS_PER_DAY);
    self.read(move |connection| {
      let mut statement = connection.prepare_cached(
        "SELECT at_ms / 86400000 AS day, SUM(cost_nanos) FROM ferrogate_ledger
         WHERE user = ?1 AND at_ms >= ?2 GROUP BY day ORDER BY day",
      )?;
      let rows = statement.query_map(params![user, from_ms], |row| {
        Ok((row.get::<_, i64>(0)?, Nanos::from_i64(row.get(1)?)))
      })?;
      rows.collect()
    })
  }

  pub fn totals_now(&self, user: Option<&str>, from_ms: i64) -> Result<LedgerTotals> {
    let user = user.map(str::to_string);
    self.read(move |connection| {
      // `?1 IS NULL` lets one statement serve one user or everyone.
      let filter = "(?1 IS NULL OR user = ?1) AND at_ms >= ?2";
      let mut by_day = connection.prepare_cached(&format!(
        "SELECT at_ms / 86400000 AS day, SUM(cost_nanos), COUNT(*) FROM ferrogate_ledger
         WHERE {filter} GROUP BY day ORDER BY day"
      ))?;
      let days = by_day
        .query_map(params![user, from_ms], |row| {
          Ok(DayTotal {
            day: row.get(0)?,
            cost: Nanos::from_i64(row.get(1)?),
            requests: unsigned(row.get(2)?),
          })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
      let mut by_model = connection.prepare_cached(&format!(
        "SELECT model, SUM(cost_nanos), COUNT(*) FROM ferrogate_ledger
         WHERE {filter} GROUP BY model ORDER BY model"
      ))?;
      let models = by_model
        .query_map(params![user, from_ms], |row| {
          Ok(ModelTotal {
            model: row.get(0)?,
            cost: Nanos::from_i64(row.get(1)?),
            requests: unsigned(row.get(2)?),
          })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
      let unpriced: i64 = connection
        .prepare_cached(&format!(
          "SELECT COUNT(*) FROM ferrogate_ledger WHERE {filter} AND priced = 0"
        ))?
        .query_row(params![user, from_ms], |row| row.get(0))?;
      Ok(LedgerTotals {
        days,
        models,
        unpriced_requests: unsigned(unpriced),
      })
    })
  }

  fn user_days_now(&self, from_day: i64) -> Result<Vec<UserDay>> {
    let from_ms = from_day.saturating_mul(MS_PER_DAY);
    self.read(move |connection| {
      let mut statement = connection.prepare_cached(
        "SELECT user, at_ms / 86400000 AS day, SUM(cost_nanos) FROM ferrogate_ledger
         WHERE at_ms >= ?1 GROUP BY user, day",
      )?;
      let rows = statement.query_map(params![from_ms], |row| {
        Ok(UserDay {
          user: row.get(0)?,
          day: row.get(1)?,
          cost: Nanos::from_i64(row.get(2)?),
        })
      })?;
      rows.collect()
    })
  }

  pub fn close_now(&self) -> Result<()> {
    if self.closed.swap(true, Ordering::AcqRel) {
      return Ok(());
    }
    let (reply, done) = mpsc::sync_channel(1);
    {
      let mut queue = self.shared.queue();
      if !queue.writer_gone {
        queue.closing = Some(reply);
        self.shared.wake_writer(&mut queue);
      }
    }
    let _ = done.recv();
    let writer = self.writer.lock().ok().and_then(|mut slot| slot.take());
    if let Some(writer) = writer {
      let _ = writer.join();
    }
    Ok(())
  }
}

impl LedgerBackend for SqliteLedger {
  fn append(&self, row: LedgerRow) {
    self.push(row);
  }

  fn answers_at_once(&self) -> bool {
    true
  }

  // Each read runs on the writer thread and is answered before the future is returned,
  // so the futures are ready at once.
  fn flush(&self) -> BoxFuture<'_, Result<()>> {
    ready(self.flush_now()).boxed()
  }

  fn daily_costs<'a>(
    &'a self,
    user: &'a str,
    from_day: i64,
  ) -> BoxFuture<'a, Result<Vec<(i64, Nanos)>>> {
    ready(self.daily_costs_now(user, from_day)).boxed()
  }

  fn user_days(&self, from_day: i64) -> BoxFuture<'_, Result<Vec<UserDay>>> {
    ready(self.user_days_now(from_day)).boxed()
  }

  fn totals<'a>(
    &'a self,
    user: Option<&'a str>,
    from_ms: i64,
  ) -> BoxFuture<'a, Result<LedgerTotals>> {
    ready(self.totals_now(user, from_ms)).boxed()
  }

  fn opened_empty(&self) -> bool {
    self.opened_empty
  }

  fn stats(&self) -> LedgerStats {
    LedgerStats {
      written: self.shared.written.load(Ordering::Relaxed),
      failed: self.shared.failed.load(Ordering::Relaxed),
      dropped: self.shared.dropped.load(Ordering::Relaxed),
      buffered: self.shared.queue().rows.len() as u64,
    }
  }

  fn close(&self) -> BoxFuture<'_, Result<()>> {
    ready(self.close_now()).boxed()
  }
}

impl Drop for SqliteLedger {
  fn drop(&mut self) {
    let _ = self.close_now();
  }
}

fn write_loop(mut connection: Connection, shared: &Shared) {
  loop {
    let (mut rows, jobs, closing) = {
      let mut queue = shared.queue();
      while queue.rows.is_empty() && queue.jobs.is_empty() && queue.closing.is_none() {
        queue.writer_waiting = true;
        queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
      }
      queue.writer_waiting = false;
      // Only rows to write: let more join this commit.
      let deadline = Instant::now() + GROUP_WAIT;
      while queue.jobs.is_empty() && queue.closing.is_none() && queue.rows.len() < GROUP_ROWS {
        let Some(left) = deadline
          .checked_duration_since(Instant::now())
          .filter(|left| !left.is_zero())
        else {
          break;
        };
        queue.writer_gathering = true;
        queue = shared
          .wake
          .wait_timeout(queue, left)
          .map(|(queue, _)| queue)
          .unwrap_or_else(|e| e.into_inner().0);
      }
      queue.writer_gathering = false;
      (
        std::mem::take(&mut queue.rows),
        std::mem::take(&mut queue.jobs),
        queue.closing.take(),
      )
    };
    // Rows first: a job (a read) queued after a row must see it.
    commit(&mut connection, &mut rows, shared);
    for job in jobs {
      job(&connection);
    }
    if let Some(reply) = closing {
      // Work queued while this round ran: it came before close() returned, so it runs.
      let (mut rows, jobs) = {
        let mut queue = shared.queue();
        queue.writer_gone = true;
        (
          std::mem::take(&mut queue.rows),
          std::mem::take(&mut queue.jobs),
        )
      };
      commit(&mut connection, &mut rows, shared);
      for job in jobs {
        job(&connection);
      }
      // Folds the WAL back into the database file so it is self-contained.
      let _ = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
      drop(connection);
      let _ = reply.send(());
      return;
    }
  }
}

fn commit(connection: &mut Connection, rows: &mut Vec<LedgerRow>, shared: &Shared) {
  if rows.is_empty() {
    return;
  }
  let count = rows.len() as u64;
  match insert_all(connection, rows) {
    Ok(()) => shared.written.fetch_add(count, Ordering::Relaxed),
    Err(_) => shared.failed.fetch_add(count, Ordering::Relaxed),
  };
  rows.clear();
}

fn insert_all(connection: &mut Connection, rows: &[LedgerRow]) -> rusqlite::Result<()> {
  let transaction = connection.transaction()?;
  {
    let mut insert = transaction.prepare_cached(INSERT)?;
    for row in rows {
      let usage = &row.usage;
      insert.execute(params![
        row.at_ms,
        row.user,
        row.model,
        row.provider,
        row.outcome.as_str(),
        row.error_code,
        count(usage.prompt_tokens),
        count(usage.completion_tokens),
        count(usage.cached_prompt_tokens),
        count(usage.cache_write_prompt_tokens),
        count(usage.reasoning_tokens),
        usage.estimated,
        row.cost.as_i64(),
        row.priced,
        row.cached,
        row.latency_ms,
        row.request_id,
        row.operation.as_str(),
      ])?;
    }
  }
  transaction.commit()
}

#[cfg(test)]
pub(crate) mod tests {
  use super::*;
  use crate::backend::ledger::CallOutcome;
  use crate::types::Usage;

  pub(crate) fn row(user: &str, at_ms: i64, cost: u64) -> LedgerRow {
    LedgerRow {
      at_ms,
      user: user.into(),
      model: "openai/gpt-4o-mini".into(),
      provider: Some("openai".into()),
      outcome: CallOutcome::Ok,
      error_code: None,
      usage: Usage::new(10, 5),
      cost: Nanos(cost),
      priced: true,
      cached: false,
      latency_ms: Some(12.5),
      request_id: Some("fg_1".into()),
      operation: crate::types::Operation::Chat,
    }
  }

  #[test]
  fn a_ledger_file_from_before_the_operation_column_gets_it() {
    let dir = std::env::temp_dir().join(format!("ferrogate-ledger-old-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ledger.db");
    let _ = std::fs::remove_file(&path);
    let old_schema = SCHEMA.replace(",\n    operation TEXT", "");
    assert!(!old_schema.contains("operation"));
    Connection::open(&path)
      .and_then(|c| c.execute_batch(&old_schema))
      .expect("old ledger");
    let path = path.to_str().expect("utf-8");
    let ledger = SqliteLedger::open(Some(path)).expect("opened");
    ledger.append(LedgerRow {
      operation: crate::types::Operation::Embeddings,
      ..row("ann", 1_000, 5)
    });
    ledger.flush_now().expect("flush");
    let operation: String = Connection::open(path)
      .and_then(|c| c.query_row("SELECT operation FROM ferrogate_ledger", [], |r| r.get(0)))
      .expect("row");
    assert_eq!(operation, "embeddings");
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[test]
  fn rows_read_back_by_day_and_model_and_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("ferrogate-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ledger.db");
    let path = path.to_str().expect("utf-8");
    let _ = std::fs::remove_file(path);
    {
      let ledger = SqliteLedger::open(Some(path)).expect("open");
      assert!(ledger.opened_empty());
      ledger.push(row("ann", 0, 100));
      ledger.push(row("ann", MS_PER_DAY + 5, 250));
      let mut unpriced = row("bob", MS_PER_DAY, 0);
      unpriced.priced = false;
      unpriced.model = "x/unknown".into();
      ledger.push(unpriced);
      let totals = ledger.totals_now(Some("ann"), 0).expect("totals");
      assert_eq!(
        totals.days,
        vec![
          DayTotal {
            day: 0,
            cost: Nanos(100),
            requests: 1
          },
          DayTotal {
            day: 1,
            cost: Nanos(250),
            requests: 1
          },
        ]
      );
      let everyone = ledger.totals_now(None, MS_PER_DAY).expect("totals");
      assert_eq!(everyone.models.len(), 2);
      assert_eq!(everyone.unpriced_requests, 1);
      assert_eq!(ledger.stats().written, 3);
      // Dropped without close(): rows are already committed.
    }
    let reopened = SqliteLedger::open(Some(path)).expect("reopen");
    assert!(!reopened.opened_empty());
    assert_eq!(
      reopened.daily_costs_now("ann", 1).expect("daily"),
      vec![(1, Nanos(250))]
    );
    reopened.close_now().expect("close");
    reopened.push(row("ann", 0, 1));
    assert_eq!(reopened.stats().dropped, 1);
    assert!(reopened.flush_now().is_err());
    std::fs::remove_dir_all(dir).ok();
  }

  #[test]
  fn an_unwritable_path_is_a_config_error() {
    let error = SqliteLedger::open(Some("/nonexistent-dir/ledger.db"))
      .map(|_| ())
      .expect_err("unwritable");
    assert_eq!(error.code, crate::error::ErrorCode::Config);
  }
}
