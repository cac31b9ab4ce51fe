//! The in-memory ledger (a `CostTracker` without `ledgerPath` or `postgresUrl`): totals per
//! user, UTC day and model instead of rows.
//!
//! Nothing reads a row back: budgets, alerts and `summary()` only ever ask for cost and
//! request counts per user, day and model. Keeping those sums answers every query the
//! SQLite ledger answers, exactly, while memory grows with the number of distinct
//! (user, day, model) triples a process sees rather than with its calls: a server that
//! runs for a month stays flat. Appending is one mutex and a map update on the caller's
//! thread (no writer thread to wake), so a row is "durable" the moment `append` returns,
//! for as long as the process lives.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::{ready, BoxFuture};
use futures_util::FutureExt;

use super::ledger::{
  DayTotal, LedgerBackend, LedgerRow, LedgerStats, LedgerTotals, ModelTotal, UserDay,
};
use crate::costs::clock::day_of;
use crate::costs::money::Nanos;
use crate::error::{GatewayError, Result};

/// Cost and call counts of one model on one day for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
  cost: Nanos,
  requests: u64,
  unpriced: u64,
}

impl Tally {
  fn add(&mut self, other: &Tally) {
    self.cost += other.cost;
    self.requests += other.requests;
    self.unpriced += other.unpriced;
  }
}

/// One user's calls: day → model → tally.
type UserDays = BTreeMap<i64, HashMap<String, Tally>>;

#[derive(Default)]
pub struct MemoryLedger {
  users: Mutex<HashMap<String, UserDays>>,
  written: AtomicU64,
  dropped: AtomicU64,
  closed: AtomicBool,
}

impl MemoryLedger {
  pub fn new() -> MemoryLedger {
    MemoryLedger::default()
  }

  fn users(&self) -> MutexGuard<'_, HashMap<String, UserDays>> {
    self.users.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn check_open(&self) -> Result<()> {
    if self.closed.load(Ordering::Acquire) {
      return Err(GatewayError::config("the cost ledger is closed"));
    }
    Ok(())
  }

  /// The (user, day) tallies from `from_day` on, for one user or everyone.
  fn visit(
    &self,
    user: Option<&str>,
    from_day: i64,
    mut each: impl FnMut(&str, i64, &HashMap<String, Tally>),
  ) {
    let users = self.users();
    let mut walk = |name: &str, days: &UserDays| {
      for (day, models) in days.range(from_day..) {
        each(name, *day, models);
      }
    };
    match user {
      Some(name) => {
        if let Some(days) = users.get(name) {
          walk(name, days);
        }
      }
      None => users.iter().for_each(|(name, days)| walk(name, days)),
    }
  }

  pub fn totals_now(&self, user: Option<&str>, from_day: i64) -> LedgerTotals {
    let mut days: BTreeMap<i64, Tally> = BTreeMap::new();
    let mut models: BTreeMap<String, Tally> = BTreeMap::new();
    self.visit(user, from_day, |_, day, by_model| {
      let day_tally = days.entry(day).or_default();
      for (model, tally) in by_model {
        day_tally.add(tally);
        match models.get_mut(model) {
          Some(sum) => sum.add(tally),
          None => {
            models.insert(model.clone(), *tally);
          }
        }
      }
    });
    LedgerTotals {
      unpriced_requests: days.values().map(|t| t.unpriced).sum(),
      days: days
        .into_iter()
        .map(|(day, t)| DayTotal {
          day,
          cost: t.cost,
          requests: t.requests,
        })
        .collect(),
      models: models
        .into_iter()
        .map(|(model, t)| ModelTotal {
          model,
          cost: t.cost,
          requests: t.requests,
        })
        .collect(),
    }
  }

  pub fn daily_costs_now(&self, user: &str, from_day: i64) -> Vec<(i64, Nanos)> {
    let mut costs = Vec::new();
    self.visit(Some(user), from_day, |_, day, by_model| {
      costs.push((day, by_model.values().map(|t| t.cost).sum()));
    });
    costs
  }

  fn user_days_now(&self, from_day: i64) -> Vec<UserDay> {
    let mut rows = Vec::new();
    self.visit(None, from_day, |user, day, by_model| {
      rows.push(UserDay {
        user: user.to_string(),
        day,
        cost: by_model.values().map(|t| t.cost).sum(),
      });
    });
    rows
  }
}

impl LedgerBackend for MemoryLedger {
  fn append(&self, row: LedgerRow) {
    if self.closed.load(Ordering::Acquire) {
      self.dropped.fetch_add(1, Ordering::Relaxed);
      return;
    }
    let tally = Tally {
      cost: row.cost,
      requests: 1,
      unpriced: u64::from(!row.priced),
    };
    let day = day_of(row.at_ms);
    let mut users = self.users();
    // The row owns its strings already: a new user or model moves them in, a known one
    // allocates nothing.
    let days = match users.get_mut(&row.user) {
      Some(days) => days,
      None => users.entry(row.user).or_default(),
    };
    let models = days.entry(day).or_default();
    match models.get_mut(&row.model) {
      Some(sum) => sum.add(&tally),
      None => {
        models.insert(row.model, tally);
      }
    }
    drop(users);
    self.written.fetch_add(1, Ordering::Relaxed);
  }

  fn answers_at_once(&self) -> bool {
    true
  }

  fn flush(&self) -> BoxFuture<'_, Result<()>> {
    ready(self.check_open()).boxed()
  }

  fn daily_costs<'a>(
    &'a self,
    user: &'a str,
    from_day: i64,
  ) -> BoxFuture<'a, Result<Vec<(i64, Nanos)>>> {
    ready(
      self
        .check_open()
        .map(|()| self.daily_costs_now(user, from_day)),
    )
    .boxed()
  }

  fn user_days(&self, from_day: i64) -> BoxFuture<'_, Result<Vec<UserDay>>> {
    ready(self.check_open().map(|()| self.user_days_now(from_day))).boxed()
  }

  fn totals<'a>(
    &'a self,
    user: Option<&'a str>,
    from_ms: i64,
  ) -> BoxFuture<'a, Result<LedgerTotals>> {
    // Rows are kept per day: a query from the start of a day (all the tracker asks) is exact.
    let from_day = from_ms.div_euclid(crate::costs::clock::MS_PER_DAY)
      + i64::from(from_ms.rem_euclid(crate::costs::clock::MS_PER_DAY) != 0);
    ready(self.check_open().map(|()| self.totals_now(user, from_day))).boxed()
  }

  fn opened_empty(&self) -> bool {
    // A new process starts with nothing: no history to load per user.
    true
  }

  fn stats(&self) -> LedgerStats {
    LedgerStats {
      written: self.written.load(Ordering::Relaxed),
      failed: 0,
      dropped: self.dropped.load(Ordering::Relaxed),
      buffered: 0,
    }
  }

  fn close(&self) -> BoxFuture<'_, Result<()>> {
    self.closed.store(true, Ordering::Release);
    ready(Ok(())).boxed()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::sqlite::tests::row;
  use crate::backend::sqlite::SqliteLedger;
  use crate::costs::clock::MS_PER_DAY;

  fn rows() -> Vec<LedgerRow> {
    let mut rows = Vec::new();
    for i in 0..200_i64 {
      let mut r = row(
        ["ann", "bob", "cy"][(i % 3) as usize],
        i * MS_PER_DAY / 7,
        10 + i as u64,
      );
      r.model = [
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku-4-5",
        "x/unknown",
      ][(i % 5 % 3) as usize]
        .into();
      r.priced = !r.model.starts_with("x/");
      if !r.priced {
        r.cost = Nanos::ZERO;
      }
      rows.push(r);
    }
    rows
  }

  #[test]
  fn answers_every_query_as_the_sqlite_ledger_does() {
    let memory = MemoryLedger::new();
    let sqlite = SqliteLedger::open(None).expect("sqlite");
    for r in rows() {
      memory.append(r.clone());
      sqlite.append(r);
    }
    for user in [None, Some("ann"), Some("bob"), Some("nobody")] {
      for from_day in [0, 3, 17, 40] {
        let from_ms = from_day * MS_PER_DAY;
        assert_eq!(
          crate::backend::ledger::at_once(memory.totals(user, from_ms)).expect("memory"),
          sqlite.totals_now(user, from_ms).expect("sqlite"),
          "totals of {user:?} from day {from_day}"
        );
        if let Some(user) = user {
          assert_eq!(
            memory.daily_costs_now(user, from_day),
            sqlite.daily_costs_now(user, from_day).expect("sqlite"),
          );
        }
      }
    }
    let sorted = |mut days: Vec<UserDay>| {
      days.sort_by(|a, b| (&a.user, a.day).cmp(&(&b.user, b.day)));
      days
    };
    assert_eq!(
      sorted(memory.user_days_now(5)),
      sorted(crate::backend::ledger::at_once(sqlite.user_days(5)).expect("sqlite"))
    );
    assert_eq!(memory.stats().written, 200);
  }

  #[test]
  fn memory_holds_one_tally_per_user_day_and_model_whatever_the_calls() {
    let ledger = MemoryLedger::new();
    for i in 0..10_000 {
      ledger.append(row("ann", 1_000 + i, 3));
    }
    let users = ledger.users();
    let days = users.get("ann").expect("ann");
    assert_eq!(days.len(), 1);
    assert_eq!(days.values().map(HashMap::len).sum::<usize>(), 1);
    assert_eq!(
      days
        .values()
        .next()
        .and_then(|m| m.values().next())
        .copied(),
      Some(Tally {
        cost: Nanos(30_000),
        requests: 10_000,
        unpriced: 0
      })
    );
  }

  #[test]
  fn a_closed_ledger_drops_and_counts_appends_and_refuses_reads() {
    let ledger = MemoryLedger::new();
    ledger.append(row("ann", 0, 1));
    crate::backend::ledger::at_once(ledger.close()).expect("close");
    ledger.append(row("ann", 0, 1));
    assert_eq!(ledger.stats().written, 1);
    assert_eq!(ledger.stats().dropped, 1);
    assert!(crate::backend::ledger::at_once(ledger.flush()).is_err());
  }
}
