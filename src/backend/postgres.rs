//! The shared ledger: PostgreSQL, so every process's calls land in one table and
//! `summary()`, alerts and budgets see the spend of all of them.
//!
//! Writing: `append` queues the row (with a 128-bit random id of its own) and returns. One
//! writer task sends what is queued as one multi-row `INSERT … SELECT FROM UNNEST(…)` per
//! batch, at most [`LINGER`] after the first row of a batch was queued or as soon as
//! [`BATCH_ROWS`] are waiting. The insert is `ON CONFLICT (id) DO NOTHING`, so a batch sent
//! again after a commit whose outcome was lost (the connection broke mid-answer) never
//! duplicates a row.
//!
//! While the database is away, rows stay queued up to `buffer_rows`; rows appended beyond
//! that are dropped and counted (`stats().dropped`). The writer reconnects with a backoff
//! (100 ms doubling to 2 s) and drains the queue when the database answers again.
//!
//! What a crash loses: the rows queued and not yet committed — those of the last batch
//! window (≤ [`LINGER`] plus one round trip, under 100 ms on a LAN) and whatever was
//! buffered while the database was away. `close()` waits for the queue to drain (up to its
//! timeout, then counts what is left as dropped).
//!
//! Connections are unencrypted (`NoTls`): run it on loopback, a private network or through a
//! TLS-terminating proxy; a server that requires TLS refuses the connection.
//!
//! Reads (`totals`, `daily_costs`, `user_days`) first wait until every row appended before
//! them is written, so a process always sees its own calls, then query the table.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::ledger::{
  DayTotal, LedgerBackend, LedgerRow, LedgerStats, LedgerTotals, ModelTotal, UserDay,
};
use super::shared::{display_url, unavailable, CONNECT_TIMEOUT};
use crate::costs::clock::MS_PER_DAY;
use crate::costs::money::Nanos;
use crate::error::{GatewayError, Result};

/// The most rows one INSERT carries.
pub const BATCH_ROWS: usize = 1000;
/// How long the writer waits for more rows after the first of a batch before sending it.
pub const LINGER: Duration = Duration::from_millis(50);
/// Default bound on rows kept while the database is away.
pub const DEFAULT_BUFFER_ROWS: usize = 100_000;
/// Default wait of `close()` for the queue to drain.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// One statement (an insert of a batch, a summary query) may take this long.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The layout version this code writes; a newer one in the database is refused.
const SCHEMA_VERSION: i32 = 1;
const WHAT: &str = "CostTracker ledger (PostgreSQL)";

#[derive(Debug, Clone)]
pub struct PostgresOptions {
  pub url: String,
  /// The schema holding `ferrogate_ledger` (created if missing).
  pub schema: String,
  pub buffer_rows: usize,
  pub close_timeout: Duration,
}

impl PostgresOptions {
  pub fn new(url: impl Into<String>) -> PostgresOptions {
    PostgresOptions {
      url: url.into(),
      schema: "public".into(),
      buffer_rows: DEFAULT_BUFFER_ROWS,
      close_timeout: DEFAULT_CLOSE_TIMEOUT,
    }
  }
}

struct Pending {
  seq: u64,
  id: String,
  row: LedgerRow,
}

#[derive(Default)]
struct Buffer {
  rows: VecDeque<Pending>,
  next_seq: u64,
  /// A flush or read waits: send without lingering.
  hurry: bool,
  closing: bool,
}

/// A live connection with the insert prepared on it.
struct Connected {
  client: Client,
  insert: Statement,
}

struct Inner {
  config: Config,
  url: String,
  schema: String,
  buffer: Mutex<Buffer>,
  wake: Notify,
  /// Every row with a smaller sequence number is written, refused or dropped.
  done: watch::Sender<u64>,
  connection: Mutex<Option<Arc<Connected>>>,
  /// Serializes reconnecting, so the writer and a read do not both dial.
  dialing: tokio::sync::Mutex<()>,
  buffer_rows: usize,
  written: AtomicU64,
  failed: AtomicU64,
  dropped: AtomicU64,
  /// Failed write attempts: a flush gives up when one happens while it waits.
  write_failures: AtomicU64,
  last_error: Mutex<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct PostgresLedger {
  inner: Arc<Inner>,
  opened_empty: bool,
  closed: AtomicBool,
  close_timeout: Duration,
}

/// A schema name as given, checked to be a plain identifier (it is quoted as well).
fn checked_schema(schema: &str) -> Result<String> {
  let valid = !schema.is_empty()
    && schema.len() <= 63
    && schema
      .chars()
      .next()
      .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    && schema
      .chars()
      .all(|c| c.is_ascii_alphanumeric() || c == '_');
  if valid {
    Ok(schema.to_string())
  } else {
    Err(GatewayError::config(format!(
      "postgresSchema must be a plain identifier (letters, digits, _; at most 63), not '{schema}'"
    )))
  }
}

fn insert_sql(schema: &str) -> String {
  format!(
    "INSERT INTO \"{schema}\".ferrogate_ledger (id, at_ms, user_id, model, provider, outcome,
       error_code, prompt_tokens, completion_tokens, cached_prompt_tokens,
       cache_write_prompt_tokens, reasoning_tokens, estimated, cost_nanos, priced, cached,
       latency_ms, request_id, operation)
     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
       $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
       $12::bigint[], $13::bool[], $14::bigint[], $15::bool[], $16::bool[], $17::float8[],
       $18::text[], $19::text[])
     ON CONFLICT (id) DO NOTHING"
  )
}

fn create_sql(schema: &str) -> String {
  // The advisory lock makes processes starting together create the tables one at a time
  // (concurrent CREATE … IF NOT EXISTS can still collide in the catalog).
  format!(
    "BEGIN;
     SELECT pg_advisory_xact_lock(hashtext('ferrogate_ledger_create'));
     CREATE SCHEMA IF NOT EXISTS \"{schema}\";
     CREATE TABLE IF NOT EXISTS \"{schema}\".ferrogate_schema_version (
       component text PRIMARY KEY,
       version integer NOT NULL
     );
     INSERT INTO \"{schema}\".ferrogate_schema_version VALUES ('ledger', {SCHEMA_VERSION})
       ON CONFLICT (component) DO NOTHING;
     CREATE TABLE IF NOT EXISTS \"{schema}\".ferrogate_ledger (
       id text PRIMARY KEY,
       at_ms bigint NOT NULL,
       user_id text NOT NULL,
       model text NOT NULL,
       provider text,
       outcome text NOT NULL,
       error_code text,
       prompt_tokens bigint NOT NULL,
       completion_tokens bigint NOT NULL,
       cached_prompt_tokens bigint NOT NULL,
       cache_write_prompt_tokens bigint NOT NULL,
       reasoning_tokens bigint NOT NULL,
       estimated boolean NOT NULL,
       cost_nanos bigint NOT NULL,
       priced boolean NOT NULL,
       cached boolean NOT NULL,
       latency_ms double precision,
       request_id text,
       operation text
     );
     ALTER TABLE \"{schema}\".ferrogate_ledger ADD COLUMN IF NOT EXISTS operation text;
     CREATE INDEX IF NOT EXISTS ferrogate_ledger_user_time
       ON \"{schema}\".ferrogate_ledger (user_id, at_ms);
     CREATE INDEX IF NOT EXISTS ferrogate_ledger_time ON \"{schema}\".ferrogate_ledger (at_ms);
     COMMIT;"
  )
}

/// A row id: 128 random bits as hex, made when the row is queued so a resent batch keeps it.
fn row_id() -> String {
  format!("{:032x}", fastrand::u128(..))
}

/// PostgreSQL text cannot hold NUL; a user id or model name with one must not fail a batch.
fn text(value: &str) -> String {
  value.replace('\0', "\u{fffd}")
}

fn big(value: u64) -> i64 {
  i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
  u64::try_from(value).unwrap_or(0)
}

impl Inner {
  fn statement_error(&self, context: &str, error: impl std::fmt::Display) -> GatewayError {
    unavailable(WHAT, &self.url, format!("{context}: {error}"))
  }

  /// The live connection, dialing a new one when there is none.
  async fn connected(&self) -> Result<Arc<Connected>> {
    if let Some(live) = self.live() {
      return Ok(live);
    }
    let _dialing = self.dialing.lock().await;
    if let Some(live) = self.live() {
      return Ok(live);
    }
    let client = dial(&self.config, &self.url).await?;
    let insert = tokio::time::timeout(STATEMENT_TIMEOUT, client.prepare(&insert_sql(&self.schema)))
      .await
      .map_err(|_| self.statement_error("preparing the insert", "no answer"))?
      .map_err(|e| self.statement_error("preparing the insert", e))?;
    let live = Arc::new(Connected { client, insert });
    *lock(&self.connection) = Some(live.clone());
    Ok(live)
  }

  fn live(&self) -> Option<Arc<Connected>> {
    let mut slot = lock(&self.connection);
    if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
      *slot = None;
    }
    slot.clone()
  }

  fn forget_connection(&self) {
    *lock(&self.connection) = None;
  }

  fn resolve_front(&self, buffer: &Buffer) {
    let done = buffer.rows.front().map_or(buffer.next_seq, |p| p.seq);
    self.done.send_replace(done);
  }

  /// Waits until every row queued before the call is resolved. Fails when a write fails
  /// meanwhile (the database is away) or after `patience`.
  async fn drained(&self, patience: Duration) -> Result<()> {
    let target = {
      let mut buffer = lock(&self.buffer);
      if buffer.rows.is_empty() {
        return Ok(());
      }
      buffer.hurry = true;
      buffer.next_seq
    };
    self.wake.notify_one();
    let failures = self.write_failures.load(Ordering::Acquire);
    let mut done = self.done.subscribe();
    let waiting = async {
      loop {
        if *done.borrow_and_update() >= target {
          return Ok(());
        }
        tokio::select! {
          changed = done.changed() => {
            if changed.is_err() {
              return Err(());
            }
          }
          () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if self.write_failures.load(Ordering::Acquire) != failures && *done.borrow() < target {
          return Err(());
        }
      }
    };
    match tokio::time::timeout(patience, waiting).await {
      Ok(Ok(())) => Ok(()),
      _ => {
        let buffered = lock(&self.buffer).rows.len();
        let cause = lock(&self.last_error).clone();
        Err(unavailable(
          WHAT,
          &self.url,
          format!("{buffered} rows still buffered (kept and retried): {cause}"),
        ))
      }
    }
  }
}

async fn dial(config: &Config, url: &str) -> Result<Client> {
  match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await {
    Ok(Ok((client, connection))) => {
      // The connection task ends when the server goes away; the client then reports
      // `is_closed` and the next user dials again.
      tokio::spawn(async move {
        let _ = connection.await;
      });
      Ok(client)
    }
    Ok(Err(error)) => Err(unavailable(WHAT, url, error)),
    Err(_) => Err(unavailable(
      WHAT,
      url,
      format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis()),
    )),
  }
}

impl PostgresLedger {
  /// Connects, creates the schema and tables if missing and starts the writer. An
  /// unreachable server is UPSTREAM_UNAVAILABLE naming it (never its password); a bad URL or
  /// schema, or a table of a newer layout, is CONFIG.
  pub async fn open(options: PostgresOptions) -> Result<PostgresLedger> {
    let schema = checked_schema(&options.schema)?;
    if options.buffer_rows == 0 {
      return Err(GatewayError::config("ledgerBufferRows must be at least 1"));
    }
    let mut config: Config = options.url.parse().map_err(|_| {
      GatewayError::config(format!(
        "postgresUrl {} is not a PostgreSQL URL (postgres://user@host:5432/db)",
        display_url(&options.url)
      ))
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("ferrogate");
    let client = dial(&config, &options.url).await?;
    let setup_error = |context: &str, error: tokio_postgres::Error| {
      if error.as_db_error().is_some() {
        GatewayError::config(format!(
          "{WHAT} at {}: {context} in schema '{schema}': {}",
          display_url(&options.url),
          error
            .as_db_error()
            .map_or_else(String::new, |db| db.message().to_string())
        ))
      } else {
        unavailable(WHAT, &options.url, format!("{context}: {error}"))
      }
    };
    client
      .batch_execute(&create_sql(&schema))
      .await
      .map_err(|e| setup_error("could not create the ledger table", e))?;
    let version: i32 = client
      .query_one(
        &format!(
          "SELECT version FROM \"{schema}\".ferrogate_schema_version WHERE component = 'ledger'"
        ),
        &[],
      )
      .await
      .map_err(|e| setup_error("could not read the schema version", e))?
      .get(0);
    if version > SCHEMA_VERSION {
      return Err(GatewayError::config(format!(
        "{WHAT}: the table in schema '{schema}' has layout version {version}, newer than this ferrogate writes ({SCHEMA_VERSION}); upgrade ferrogate"
      )));
    }
    let opened_empty = client
      .query_opt(
        &format!("SELECT 1 FROM \"{schema}\".ferrogate_ledger LIMIT 1"),
        &[],
      )
      .await
      .map_err(|e| setup_error("could not read the ledger", e))?
      .is_none();
    let insert = client
      .prepare(&insert_sql(&schema))
      .await
      .map_err(|e| setup_error("could not prepare the insert", e))?;
    let (done, _) = watch::channel(0);
    let inner = Arc::new(Inner {
      config,
      url: options.url,
      schema,
      buffer: Mutex::new(Buffer::default()),
      wake: Notify::new(),
      done,
      connection: Mutex::new(Some(Arc::new(Connected { client, insert }))),
      dialing: tokio::sync::Mutex::new(()),
      buffer_rows: options.buffer_rows,
      written: AtomicU64::new(0),
      failed: AtomicU64::new(0),
      dropped: AtomicU64::new(0),
      write_failures: AtomicU64::new(0),
      last_error: Mutex::new(String::new()),
    });
    tokio::spawn(write_loop(inner.clone()));
    Ok(PostgresLedger {
      inner,
      opened_empty,
      closed: AtomicBool::new(false),
      close_timeout: options.close_timeout,
    })
  }

  /// The schema holding the ledger table.
  pub fn schema(&self) -> &str {
    &self.inner.schema
  }

  async fn query(
    &self,
    context: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
  ) -> Result<Vec<tokio_postgres::Row>> {
    if self.closed.load(Ordering::Acquire) {
      return Err(GatewayError::config("the cost ledger is closed"));
    }
    self.inner.drained(STATEMENT_TIMEOUT).await?;
    let connected = self.inner.connected().await?;
    match tokio::time::timeout(STATEMENT_TIMEOUT, connected.client.query(sql, params)).await {
      Ok(Ok(rows)) => Ok(rows),
      Ok(Err(error)) => {
        if error.is_closed() {
          self.inner.forget_connection();
        }
        Err(self.inner.statement_error(context, error))
      }
      Err(_) => Err(self.inner.statement_error(context, "no answer")),
    }
  }

  async fn totals_of(&self, user: Option<&str>, from_ms: i64) -> Result<LedgerTotals> {
    let schema = &self.inner.schema;
    let filter = "($1::text IS NULL OR user_id = $1) AND at_ms >= $2";
    let by_day = format!(
      "SELECT at_ms / 86400000 AS day, SUM(cost_nanos)::bigint, COUNT(*)
       FROM \"{schema}\".ferrogate_ledger WHERE {filter} GROUP BY day ORDER BY day"
    );
    let by_model = format!(
      "SELECT model, SUM(cost_nanos)::bigint, COUNT(*)
       FROM \"{schema}\".ferrogate_ledger WHERE {filter} GROUP BY model ORDER BY model"
    );
    let unpriced =
      format!("SELECT COUNT(*) FROM \"{schema}\".ferrogate_ledger WHERE {filter} AND NOT priced");
    let params: [&(dyn ToSql + Sync); 2] = [&user, &from_ms];
    let days = self
      .query("summary by day", &by_day, &params)
      .await?
      .iter()
      .map(|row| DayTotal {
        day: row.get(0),
        cost: Nanos::from_i64(row.get(1)),
        requests: unsigned(row.get(2)),
      })
      .collect();
    let models = self
      .query("summary by model", &by_model, &params)
      .await?
      .iter()
      .map(|row| ModelTotal {
        model: row.get(0),
        cost: Nanos::from_i64(row.get(1)),
        requests: unsigned(row.get(2)),
      })
      .collect();
    let unpriced_requests = self
      .query("unpriced count", &unpriced, &params)
      .await?
      .first()
      .map_or(0, |row| unsigned(row.get(0)));
    Ok(LedgerTotals {
      days,
      models,
      unpriced_requests,
    })
  }

  async fn close_inner(&self) -> Result<()> {
    if self.closed.swap(true, Ordering::AcqRel) {
      return Ok(());
    }
    let target = {
      let mut buffer = lock(&self.inner.buffer);
      buffer.closing = true;
      buffer.hurry = true;
      buffer.next_seq
    };
    self.inner.wake.notify_one();
    let mut done = self.inner.done.subscribe();
    let drained = tokio::time::timeout(self.close_timeout, done.wait_for(|d| *d >= target)).await;
    if drained.is_err() {
      let mut buffer = lock(&self.inner.buffer);
      let left = buffer.rows.len() as u64;
      buffer.rows.clear();
      self.inner.dropped.fetch_add(left, Ordering::Relaxed);
      self.inner.resolve_front(&buffer);
    }
    self.inner.wake.notify_one();
    self.inner.forget_connection();
    Ok(())
  }
}

impl LedgerBackend for PostgresLedger {
  fn append(&self, row: LedgerRow) {
    let inner = &self.inner;
    let mut buffer = lock(&inner.buffer);
    if buffer.closing || buffer.rows.len() >= inner.buffer_rows {
      drop(buffer);
      inner.dropped.fetch_add(1, Ordering::Relaxed);
      return;
    }
    let seq = buffer.next_seq;
    buffer.next_seq += 1;
    buffer.rows.push_back(Pending {
      seq,
      id: row_id(),
      row,
    });
    let len = buffer.rows.len();
    drop(buffer);
    // Only the first row of a batch (the writer may be idle) or a full batch wakes the
    // writer; the rows between ride along without a wake-up each.
    if len == 1 || len == BATCH_ROWS {
      inner.wake.notify_one();
    }
  }

  fn answers_at_once(&self) -> bool {
    false
  }

  fn flush(&self) -> BoxFuture<'_, Result<()>> {
    self.inner.drained(STATEMENT_TIMEOUT).boxed()
  }

  fn daily_costs<'a>(
    &'a self,
    user: &'a str,
    from_day: i64,
  ) -> BoxFuture<'a, Result<Vec<(i64, Nanos)>>> {
    async move {
      let sql = format!(
        "SELECT at_ms / 86400000 AS day, SUM(cost_nanos)::bigint
         FROM \"{}\".ferrogate_ledger WHERE user_id = $1 AND at_ms >= $2
         GROUP BY day ORDER BY day",
        self.inner.schema
      );
      let from_ms = from_day.saturating_mul(MS_PER_DAY);
      let rows = self.query("daily costs", &sql, &[&user, &from_ms]).await?;
      Ok(
        rows
          .iter()
          .map(|row| (row.get::<_, i64>(0), Nanos::from_i64(row.get(1))))
          .collect(),
      )
    }
    .boxed()
  }

  fn user_days(&self, from_day: i64) -> BoxFuture<'_, Result<Vec<UserDay>>> {
    async move {
      let sql = format!(
        "SELECT user_id, at_ms / 86400000 AS day, SUM(cost_nanos)::bigint
         FROM \"{}\".ferrogate_ledger WHERE at_ms >= $1 GROUP BY user_id, day",
        self.inner.schema
      );
      let from_ms = from_day.saturating_mul(MS_PER_DAY);
      let rows = self.query("history", &sql, &[&from_ms]).await?;
      Ok(
        rows
          .iter()
          .map(|row| UserDay {
            user: row.get(0),
            day: row.get(1),
            cost: Nanos::from_i64(row.get(2)),
          })
          .collect(),
      )
    }
    .boxed()
  }

  fn totals<'a>(
    &'a self,
    user: Option<&'a str>,
    from_ms: i64,
  ) -> BoxFuture<'a, Result<LedgerTotals>> {
    self.totals_of(user, from_ms).boxed()
  }

  fn opened_empty(&self) -> bool {
    self.opened_empty
  }

  fn stats(&self) -> LedgerStats {
    let inner = &self.inner;
    LedgerStats {
      written: inner.written.load(Ordering::Relaxed),
      failed: inner.failed.load(Ordering::Relaxed),
      dropped: inner.dropped.load(Ordering::Relaxed),
      buffered: lock(&inner.buffer).rows.len() as u64,
    }
  }

  fn close(&self) -> BoxFuture<'_, Result<()>> {
    self.close_inner().boxed()
  }
}

impl Drop for PostgresLedger {
  fn drop(&mut self) {
    // Dropped without close(): the writer still drains what it can, then exits (see
    // `write_loop`).
    lock(&self.inner.buffer).closing = true;
    self.inner.wake.notify_one();
  }
}

/// Sends the queued rows, batch by batch, until the ledger closes and its queue is empty.
async fn write_loop(inner: Arc<Inner>) {
  let mut backoff = MIN_BACKOFF;
  loop {
    let (queued, hurry, closing) = {
      let buffer = lock(&inner.buffer);
      (buffer.rows.len(), buffer.hurry, buffer.closing)
    };
    if queued == 0 {
      if closing {
        inner.forget_connection();
        return;
      }
      inner.wake.notified().await;
      continue;
    }
    if queued < BATCH_ROWS && !hurry && !closing {
      // Let the batch fill; a flush or a full batch cuts the wait short.
      tokio::select! {
        () = tokio::time::sleep(LINGER) => {}
        () = inner.wake.notified() => {}
      }
    }
    let outcome = match inner.connected().await {
      Ok(connected) => write_batch(&inner, &connected).await,
      Err(error) => Err(error.message),
    };
    match outcome {
      Ok(()) => backoff = MIN_BACKOFF,
      Err(cause) => {
        *lock(&inner.last_error) = cause;
        inner.write_failures.fetch_add(1, Ordering::AcqRel);
        // Nobody left to close the ledger: give up on what is queued rather than retry
        // forever in the background.
        if closing && Arc::strong_count(&inner) == 1 {
          let mut buffer = lock(&inner.buffer);
          let left = buffer.rows.len() as u64;
          buffer.rows.clear();
          inner.dropped.fetch_add(left, Ordering::Relaxed);
          inner.resolve_front(&buffer);
          continue;
        }
        tokio::select! {
          () = tokio::time::sleep(backoff) => {}
          // A flush or close retries at once.
          () = inner.wake.notified() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
      }
    }
  }
}

/// Writes the first batch of the queue. Rows stay queued until their batch is committed (or
/// refused by the database), so a failure leaves them to be sent again.
async fn write_batch(inner: &Inner, connected: &Connected) -> std::result::Result<(), String> {
  let (last_seq, columns) = {
    let buffer = lock(&inner.buffer);
    let batch: Vec<&Pending> = buffer.rows.iter().take(BATCH_ROWS).collect();
    let Some(last) = batch.last() else {
      return Ok(());
    };
    (last.seq, Columns::of(&batch))
  };
  let sent = tokio::time::timeout(
    STATEMENT_TIMEOUT,
    connected
      .client
      .execute(&connected.insert, &columns.params()),
  )
  .await;
  let refused = match sent {
    Ok(Ok(_)) => false,
    Ok(Err(error)) if error.as_db_error().is_some() => {
      // The database refused the rows themselves (not the connection): sending them again
      // would fail again and hold up every row behind them.
      *lock(&inner.last_error) = format!("rows refused: {error}");
      true
    }
    Ok(Err(error)) => {
      inner.forget_connection();
      return Err(display_error(inner, &error));
    }
    Err(_) => {
      inner.forget_connection();
      return Err("the insert got no answer".into());
    }
  };
  let mut buffer = lock(&inner.buffer);
  let mut resolved = 0u64;
  // close() may have dropped rows meanwhile: remove by sequence number, not by count.
  while buffer.rows.front().is_some_and(|p| p.seq <= last_seq) {
    buffer.rows.pop_front();
    resolved += 1;
  }
  let counter = if refused {
    &inner.failed
  } else {
    &inner.written
  };
  counter.fetch_add(resolved, Ordering::Relaxed);
  if buffer.rows.is_empty() {
    buffer.hurry = false;
  }
  inner.resolve_front(&buffer);
  Ok(())
}

fn display_error(inner: &Inner, error: &tokio_postgres::Error) -> String {
  unavailable(WHAT, &inner.url, error).message
}

/// A batch as one array per column, for the UNNEST insert.
struct Columns {
  id: Vec<String>,
  at_ms: Vec<i64>,
  user: Vec<String>,
  model: Vec<String>,
  provider: Vec<Option<String>>,
  outcome: Vec<String>,
  error_code: Vec<Option<String>>,
  prompt: Vec<i64>,
  completion: Vec<i64>,
  cached_prompt: Vec<i64>,
  cache_write_prompt: Vec<i64>,
  reasoning: Vec<i64>,
  estimated: Vec<bool>,
  cost: Vec<i64>,
  priced: Vec<bool>,
  cached: Vec<bool>,
  latency_ms: Vec<Option<f64>>,
  request_id: Vec<Option<String>>,
  operation: Vec<&'static str>,
}

impl Columns {
  fn of(batch: &[&Pending]) -> Columns {
    let rows = || batch.iter().map(|p| &p.row);
    Columns {
      id: batch.iter().map(|p| p.id.clone()).collect(),
      at_ms: rows().map(|r| r.at_ms).collect(),
      user: rows().map(|r| text(&r.user)).collect(),
      model: rows().map(|r| text(&r.model)).collect(),
      provider: rows().map(|r| r.provider.as_deref().map(text)).collect(),
      outcome: rows().map(|r| r.outcome.as_str().to_string()).collect(),
      error_code: rows().map(|r| r.error_code.as_deref().map(text)).collect(),
      prompt: rows().map(|r| big(r.usage.prompt_tokens)).collect(),
      completion: rows().map(|r| big(r.usage.completion_tokens)).collect(),
      cached_prompt: rows().map(|r| big(r.usage.cached_prompt_tokens)).collect(),
      cache_write_prompt: rows()
        .map(|r| big(r.usage.cache_write_prompt_tokens))
        .collect(),
      reasoning: rows().map(|r| big(r.usage.reasoning_tokens)).collect(),
      estimated: rows().map(|r| r.usage.estimated).collect(),
      cost: rows().map(|r| r.cost.as_i64()).collect(),
      priced: rows().map(|r| r.priced).collect(),
      cached: rows().map(|r| r.cached).collect(),
      latency_ms: rows().map(|r| r.latency_ms).collect(),
      request_id: rows().map(|r| r.request_id.as_deref().map(text)).collect(),
      operation: rows().map(|r| r.operation.as_str()).collect(),
    }
  }

  fn params(&self) -> [&(dyn ToSql + Sync); 19] {
    [
      &self.id,
      &self.at_ms,
      &self.user,
      &self.model,
      &self.provider,
      &self.outcome,
      &self.error_code,
      &self.prompt,
      &self.completion,
      &self.cached_prompt,
      &self.cache_write_prompt,
      &self.reasoning,
      &self.estimated,
      &self.cost,
      &self.priced,
      &self.cached,
      &self.latency_ms,
      &self.request_id,
      &self.operation,
    ]
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

  fn row(user: &str, at_ms: i64, cost: u64, request_id: &str) -> LedgerRow {
    LedgerRow {
      request_id: Some(request_id.into()),
      ..crate::backend::sqlite::tests::row(user, at_ms, cost)
    }
  }

  fn unique_schema(tag: &str) -> String {
    format!(
      "fg_test_{tag}_{}_{:08x}",
      std::process::id(),
      fastrand::u32(..)
    )
  }

  async fn drop_schema(schema: &str) {
    if let Ok(client) = dial(&URL.parse().expect("url"), URL).await {
      let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
    }
  }

  async fn count_rows(schema: &str) -> (i64, i64) {
    let client = dial(&URL.parse().expect("url"), URL).await.expect("dial");
    let row = client
      .query_one(
        &format!("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM \"{schema}\".ferrogate_ledger"),
        &[],
      )
      .await
      .expect("count");
    (row.get(0), row.get(1))
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn rows_are_batched_read_back_and_reopened_with_their_history() {
    let schema = unique_schema("ledger");
    let mut options = PostgresOptions::new(URL);
    options.schema = schema.clone();
    let ledger = PostgresLedger::open(options.clone()).await.expect("open");
    assert!(ledger.opened_empty());
    for i in 0..2500 {
      ledger.append(row("ann", MS_PER_DAY + i, 100, &format!("fg_{i}")));
    }
    let mut unpriced = row("bob", 0, 0, "fg_bob");
    unpriced.priced = false;
    unpriced.model = "x/unknown\0nul".into();
    unpriced.operation = crate::types::Operation::Embeddings;
    ledger.append(unpriced);
    let totals = ledger.totals(Some("ann"), 0).await.expect("totals");
    assert_eq!(
      totals.days,
      vec![DayTotal {
        day: 1,
        cost: Nanos(250_000),
        requests: 2500
      }]
    );
    let everyone = ledger.totals(None, 0).await.expect("totals");
    assert_eq!(everyone.models.len(), 2);
    assert_eq!(everyone.unpriced_requests, 1);
    assert_eq!(
      ledger.daily_costs("ann", 0).await.expect("daily"),
      vec![(1, Nanos(250_000))]
    );
    let stats = ledger.stats();
    assert_eq!((stats.written, stats.buffered, stats.failed), (2501, 0, 0));
    assert_eq!(count_rows(&schema).await, (2501, 2501));
    let client = dial(&URL.parse().expect("url"), URL).await.expect("dial");
    let operations = client
      .query_one(
        &format!("SELECT COUNT(*) FILTER (WHERE operation = 'chat'), COUNT(*) FILTER (WHERE operation = 'embeddings') FROM \"{schema}\".ferrogate_ledger"),
        &[],
      )
      .await
      .expect("operations");
    assert_eq!(
      (operations.get::<_, i64>(0), operations.get::<_, i64>(1)),
      (2500, 1)
    );
    ledger.close().await.expect("close");
    ledger.append(row("ann", 0, 1, "late"));
    assert_eq!(ledger.stats().dropped, 1);

    let reopened = PostgresLedger::open(options).await.expect("reopen");
    assert!(!reopened.opened_empty());
    let days = reopened.user_days(0).await.expect("user days");
    assert_eq!(days.len(), 2);
    reopened.close().await.expect("close");
    drop_schema(&schema).await;
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn a_batch_sent_twice_lands_once() {
    let schema = unique_schema("dedupe");
    let mut options = PostgresOptions::new(URL);
    options.schema = schema.clone();
    let ledger = PostgresLedger::open(options).await.expect("open");
    ledger.append(row("ann", 0, 1, "a"));
    ledger.append(row("ann", 0, 1, "b"));
    // The same batch again, as after a commit whose answer was lost.
    let (pending, connected) = {
      let buffer = lock(&ledger.inner.buffer);
      let pending: Vec<Pending> = buffer
        .rows
        .iter()
        .map(|p| Pending {
          seq: p.seq,
          id: p.id.clone(),
          row: p.row.clone(),
        })
        .collect();
      (pending, ledger.inner.live().expect("connected"))
    };
    ledger.flush().await.expect("flush");
    let batch: Vec<&Pending> = pending.iter().collect();
    let columns = Columns::of(&batch);
    let inserted = connected
      .client
      .execute(&connected.insert, &columns.params())
      .await
      .expect("resend");
    assert_eq!(inserted, 0);
    assert_eq!(count_rows(&schema).await, (2, 2));
    ledger.close().await.expect("close");
    drop_schema(&schema).await;
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn unreachable_server_and_bad_options_are_clear_errors() {
    let error = PostgresLedger::open(PostgresOptions::new(
      "postgres://app:s3cret@127.0.0.1:1/ledger",
    ))
    .await
    .err()
    .expect("unreachable");
    assert_eq!(error.code, crate::error::ErrorCode::UpstreamUnavailable);
    assert!(
      error
        .message
        .contains("postgres://127.0.0.1:1/ledger is unavailable"),
      "{}",
      error.message
    );
    assert!(!error.message.contains("s3cret"), "{}", error.message);
    let bad_url = PostgresLedger::open(PostgresOptions::new("http://nope"))
      .await
      .err()
      .expect("bad url");
    assert_eq!(bad_url.code, crate::error::ErrorCode::Config);
    let mut bad_schema = PostgresOptions::new(URL);
    bad_schema.schema = "x\"; DROP TABLE y; --".into();
    let error = PostgresLedger::open(bad_schema)
      .await
      .err()
      .expect("schema");
    assert_eq!(error.code, crate::error::ErrorCode::Config);
  }
}
