//! The cost tracker: prices calls, keeps the ledger, enforces budgets by reservation and
//! raises alerts.
//!
//! Per user it keeps, in memory, the cost of each of the last 35 UTC days (loaded once
//! from the ledger when the user is first seen, then kept up to date by every record).
//! That is all a budget period (a day or a month) and the unusual-spending rule (7 days
//! against the 28 before) need, so the call path never reads the ledger twice for a user.
//! One mutex per user guards that history together with the budget and its reservations,
//! which is what makes a reservation atomic.
//!
//! Shared by several processes (`CostTracker::open` with PostgreSQL and/or Redis):
//! - with a PostgreSQL ledger, every user's history is loaded from it at start, and a hard
//!   budget re-reads its period's spend from it when a period begins (the spend of every
//!   process), so budgets and alerts start from the shared spend; `summary()` queries it;
//! - with Redis, hard budgets reserve and settle in Redis (`backend::redis_budget`), so a
//!   budget holds across processes; each reply also refreshes this process's view of the
//!   period's spend (for `budget()` and the budget alerts).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::alerts::{self, Alert, AlertKind, Severity};
use super::clock::{day_of, iso_date, month_start, Clock, SystemClock, MS_PER_DAY};
use super::money::{Nanos, TokenPrice};
use super::pricing::{ModelPrice, Pricing};
use crate::backend::ledger::{at_once, CallOutcome, LedgerBackend, LedgerRow, LedgerStats};
use crate::backend::memory_ledger::MemoryLedger;
use crate::backend::postgres::{PostgresLedger, PostgresOptions};
use crate::backend::redis_budget::{
  BudgetStoreStats, Hold, RedisBudgetOptions, RedisBudgets, Settlement,
};
use crate::backend::sqlite::SqliteLedger;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::types::Usage;

/// Days of per-user history kept in memory: this week plus the four before it.
const HISTORY_DAYS: i64 = 35;
/// With a shared ledger and no budget store, how old this process's figure of every
/// process's spend in a budget period may get before a call of that user reads it again:
/// one query per active user with a budget every few seconds, and alerts and budgets that
/// lag other processes by no more than that.
const LEDGER_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A call is reserved at its prompt's bound (no tokenizer pass) only while the budget has
/// room for this many more calls at that bound; nearer the limit every call is counted
/// exactly, so the calls that fit there are the ones an exact reservation lets through.
const BOUND_HEADROOM_CALLS: u64 = 100;
/// Alerts kept per user for `alerts(user)`; older ones are dropped.
const MAX_ALERTS_PER_USER: usize = 100;
/// Default high-cost threshold: output at or above $20 per million tokens.
pub const DEFAULT_HIGH_COST_OUTPUT_PER_MILLION: f64 = 20.0;
/// The user calls without a `user` are accounted to.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
  Day,
  Month,
}

impl Period {
  pub fn as_str(self) -> &'static str {
    match self {
      Period::Day => "day",
      Period::Month => "month",
    }
  }

  /// The first day of the period holding `day`.
  fn start(self, day: i64) -> i64 {
    match self {
      Period::Day => day,
      Period::Month => month_start(day),
    }
  }

  /// The first day after the period starting on `start`.
  fn end(self, start: i64) -> i64 {
    match self {
      Period::Day => start + 1,
      // The 1st plus 31 days always lands in the next month.
      Period::Month => month_start(start + 31),
    }
  }

  /// The period's name in shared keys: "day:2025-11-15", "month:2025-11".
  fn id(self, start: i64) -> String {
    let date = iso_date(start);
    match self {
      Period::Day => format!("day:{date}"),
      Period::Month => format!("month:{}", date.get(..7).unwrap_or(&date)),
    }
  }

  fn adjective(self) -> &'static str {
    match self {
      Period::Day => "daily",
      Period::Month => "monthly",
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
  pub limit: Nanos,
  pub period: Period,
  /// Refuse calls that could pass the budget (BUDGET_EXCEEDED) instead of only alerting.
  pub hard: bool,
}

/// A budget with where it stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
  pub budget: Budget,
  pub spent: Nanos,
  pub reserved: Nanos,
  /// First day of the current period (days since the epoch, UTC).
  pub period_start: i64,
}

/// One call to record.
#[derive(Debug, Clone, Default)]
pub struct CallEntry {
  pub user: Option<String>,
  /// What to price: "provider/model" or a bare model name.
  pub model: String,
  pub provider: Option<String>,
  pub outcome: Option<CallOutcome>,
  pub error_code: Option<String>,
  pub usage: Usage,
  pub latency_ms: Option<f64>,
  /// A response-cache hit: recorded at zero cost.
  pub cached: bool,
  pub request_id: Option<String>,
  /// When the call happened; now when absent (imports and tests set it).
  pub at_ms: Option<i64>,
  /// Chat (the default) or embeddings.
  pub operation: crate::types::Operation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
  pub cost: Nanos,
  /// False when the model has no price (it then costs 0 and counts as unpriced).
  pub priced: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
  pub recorded: u64,
  pub unpriced: u64,
  pub budget_refusals: u64,
  pub alerts: u64,
  pub ledger: LedgerStats,
  /// Shared budgets (Redis): settlements waiting for the store, and lost beyond its bound.
  pub budget_store: BudgetStoreStats,
  /// Hard-budget calls refused because the budget store was unreachable.
  pub budget_store_refusals: u64,
}

/// Where a tracker shared by several processes keeps its state.
#[derive(Debug, Clone, Default)]
pub struct SharedOptions {
  /// The ledger in PostgreSQL instead of SQLite.
  pub postgres: Option<PostgresOptions>,
  /// Hard budgets reserved and settled in Redis.
  pub redis: Option<RedisBudgetOptions>,
}

pub struct TrackerOptions {
  pub pricing: Pricing,
  /// `None`: an in-memory ledger.
  pub ledger_path: Option<String>,
  pub high_cost_output_per_million: f64,
  pub clock: Arc<dyn Clock>,
}

impl Default for TrackerOptions {
  fn default() -> Self {
    TrackerOptions {
      pricing: Pricing::default(),
      ledger_path: None,
      high_cost_output_per_million: DEFAULT_HIGH_COST_OUTPUT_PER_MILLION,
      clock: Arc::new(SystemClock),
    }
  }
}

pub type AlertListener = Arc<dyn Fn(&Alert) + Send + Sync>;

/// A call's prompt tokens for a reservation: `bound`, an upper bound known without a
/// tokenizer pass (see `tokens::PromptTokens::bound`), and the exact count, asked for
/// only when a reservation at the bound would not fit.
pub struct PromptSize<'a> {
  pub bound: u64,
  /// Counts the prompt exactly; `None` when `bound` is the exact count.
  pub count: Option<&'a (dyn Fn() -> u64 + Send + Sync)>,
}

impl PromptSize<'_> {
  /// A size known exactly.
  pub fn known(tokens: u64) -> PromptSize<'static> {
    PromptSize {
      bound: tokens,
      count: None,
    }
  }

  fn exact(&self) -> u64 {
    self.count.map_or(self.bound, |count| count())
  }
}

/// The spend of a budget period as another source (the shared ledger, Redis) last told it,
/// with this process's own spend in the period at that moment: the period's spend is then
/// that figure plus what this process recorded since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Baseline {
  period_start: i64,
  spent: Nanos,
  local_then: Nanos,
  /// Held across processes (Redis), when known.
  held: Option<Nanos>,
  /// When the figure was read, so a view of other processes' spend read from a shared
  /// ledger is read again once it is [`LEDGER_SYNC_INTERVAL`] old.
  taken_at: std::time::Instant,
}

#[derive(Default)]
struct UserBook {
  loaded: bool,
  /// Cost per UTC day, the last HISTORY_DAYS days.
  days: BTreeMap<i64, Nanos>,
  budget: Option<Budget>,
  reserved: Nanos,
  shared: Option<Baseline>,
  /// The period start for which each budget alert last fired.
  warned_for: Option<i64>,
  exceeded_for: Option<i64>,
  unusual_active: bool,
  /// Model → the day a high-cost alert last fired for it.
  high_cost_alerted: HashMap<String, i64>,
  alerts: VecDeque<Alert>,
}

impl UserBook {
  fn spent_since(&self, first_day: i64) -> Nanos {
    self.days.range(first_day..).map(|(_, cost)| *cost).sum()
  }

  fn spent_between(&self, first_day: i64, last_day: i64) -> Nanos {
    self
      .days
      .range(first_day..=last_day)
      .map(|(_, cost)| *cost)
      .sum()
  }

  fn status(&self, today: i64) -> Option<BudgetStatus> {
    let budget = self.budget?;
    let period_start = budget.period.start(today);
    let local = self.spent_between(period_start, today);
    let mut spent = local;
    let mut reserved = self.reserved;
    if let Some(shared) = self.shared.filter(|s| s.period_start == period_start) {
      spent = spent.max(shared.spent + local.saturating_sub(shared.local_then));
      if let Some(held) = shared.held {
        reserved = held;
      }
    }
    Some(BudgetStatus {
      budget,
      spent,
      reserved,
      period_start,
    })
  }

  /// Takes the period's spend (and holds) as another source gives it.
  fn set_shared(&mut self, period_start: i64, spent: Nanos, held: Option<Nanos>, today: i64) {
    self.shared = Some(Baseline {
      period_start,
      spent,
      local_then: self.spent_between(period_start, today),
      held,
      taken_at: std::time::Instant::now(),
    });
  }
}

/// A hard budget's hold on a call's maximum cost. Recording the call replaces it with the
/// real cost; dropping it unrecorded (the call never reached the vendor) releases it.
pub struct Reservation {
  book: Arc<Mutex<UserBook>>,
  /// Held in this process's book (a budget of this process only).
  amount: Nanos,
  /// Held in the shared budget store instead.
  remote: Option<RemoteHold>,
}

struct RemoteHold {
  store: Arc<RedisBudgets>,
  hold: Hold,
  amount: Nanos,
}

impl Reservation {
  pub fn amount(&self) -> Nanos {
    self
      .remote
      .as_ref()
      .map_or(self.amount, |remote| remote.amount)
  }

  /// Hands the hold to whoever settles it under the book's lock; the reservation is then
  /// spent and its drop does nothing.
  fn take(mut self) -> (Arc<Mutex<UserBook>>, Nanos, Option<RemoteHold>) {
    let amount = std::mem::take(&mut self.amount);
    (self.book.clone(), amount, self.remote.take())
  }
}

impl Drop for Reservation {
  fn drop(&mut self) {
    if let Some(remote) = self.remote.take() {
      // Never settled (the call did not reach the vendor): release the shared hold.
      remote.store.settle(Settlement {
        hold: Some(remote.hold),
        spend_keys: Vec::new(),
        cost: Nanos::ZERO,
      });
    }
    if self.amount == Nanos::ZERO {
      return;
    }
    let mut book = lock(&self.book);
    book.reserved = book.reserved.saturating_sub(self.amount);
    self.amount = Nanos::ZERO;
  }
}

impl std::fmt::Debug for Reservation {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Reservation")
      .field("amount", &self.amount)
      .finish()
  }
}

/// A poisoned lock only means another thread panicked mid-update of plain numbers; the
/// numbers are still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct CostTracker {
  pricing: Pricing,
  ledger: Arc<dyn LedgerBackend>,
  /// Hard budgets shared through Redis.
  budget_store: Option<Arc<RedisBudgets>>,
  /// Each user's recent history from a networked ledger, read once at start and taken by
  /// the user's book when it is first needed.
  preloaded: Mutex<HashMap<String, Vec<(i64, Nanos)>>>,
  budget_store_refusals: AtomicU64,
  clock: Arc<dyn Clock>,
  high_cost_output: TokenPrice,
  users: Mutex<HashMap<String, Arc<Mutex<UserBook>>>>,
  listeners: RwLock<Vec<AlertListener>>,
  recorded: AtomicU64,
  unpriced: AtomicU64,
  budget_refusals: AtomicU64,
  alerts_fired: AtomicU64,
  closed: AtomicBool,
}

impl std::fmt::Debug for CostTracker {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("CostTracker")
      .field("overrides", &self.pricing.override_count())
      .field("stats", &self.stats())
      .finish()
  }
}

impl CostTracker {
  pub fn new(options: TrackerOptions) -> Result<CostTracker> {
    let ledger = embedded_ledger(options.ledger_path.as_deref())?;
    CostTracker::with_ledger(options, ledger)
  }

  pub fn with_ledger(
    options: TrackerOptions,
    ledger: Arc<dyn LedgerBackend>,
  ) -> Result<CostTracker> {
    let high_cost_output =
      TokenPrice::from_usd_per_token(options.high_cost_output_per_million / 1e6).ok_or_else(
        || GatewayError::config("highCostOutputPerMillion must be a non-negative number of USD"),
      )?;
    Ok(CostTracker {
      pricing: options.pricing,
      ledger,
      budget_store: None,
      preloaded: Mutex::new(HashMap::new()),
      budget_store_refusals: AtomicU64::new(0),
      clock: options.clock,
      high_cost_output,
      users: Mutex::new(HashMap::new()),
      listeners: RwLock::new(Vec::new()),
      recorded: AtomicU64::new(0),
      unpriced: AtomicU64::new(0),
      budget_refusals: AtomicU64::new(0),
      alerts_fired: AtomicU64::new(0),
      closed: AtomicBool::new(false),
    })
  }

  /// A tracker whose ledger and/or hard budgets are shared with other processes. Connects
  /// to each server now: an unreachable one is UPSTREAM_UNAVAILABLE naming it (never its
  /// password), a bad URL CONFIG. Runs on a tokio runtime, which the background writers use.
  pub async fn open(options: TrackerOptions, shared: SharedOptions) -> Result<CostTracker> {
    let ledger: Arc<dyn LedgerBackend> = match shared.postgres {
      Some(postgres) => Arc::new(PostgresLedger::open(postgres).await?),
      None => embedded_ledger(options.ledger_path.as_deref())?,
    };
    let budget_store = match shared.redis {
      Some(redis) => Some(Arc::new(RedisBudgets::open(redis).await?)),
      None => None,
    };
    let today = day_of(options.clock.now_ms());
    let mut tracker = CostTracker::with_ledger(options, ledger.clone())?;
    tracker.budget_store = budget_store;
    if !ledger.answers_at_once() && !ledger.opened_empty() {
      let mut preloaded: HashMap<String, Vec<(i64, Nanos)>> = HashMap::new();
      for row in ledger.user_days(today - (HISTORY_DAYS - 1)).await? {
        preloaded
          .entry(row.user)
          .or_default()
          .push((row.day, row.cost));
      }
      tracker.preloaded = Mutex::new(preloaded);
    }
    Ok(tracker)
  }

  /// True when queries go over the network (`summary_async`, `flush_async`, `close_async`
  /// are then the forms to use).
  pub fn is_networked(&self) -> bool {
    !self.ledger.answers_at_once() || self.budget_store.is_some()
  }

  /// True when `summary()` can answer at once.
  pub fn summary_at_once(&self) -> bool {
    self.ledger.answers_at_once()
  }

  pub fn pricing(&self) -> &Pricing {
    &self.pricing
  }

  pub fn price_of(&self, model: &str) -> Option<ModelPrice> {
    self.pricing.lookup(model)
  }

  fn today(&self) -> i64 {
    day_of(self.clock.now_ms())
  }

  /// The user's book, its history loaded from the ledger on first use.
  fn book(&self, user: &str) -> Arc<Mutex<UserBook>> {
    let book = {
      let mut users = lock(&self.users);
      match users.get(user) {
        Some(book) => book.clone(),
        None => {
          let book = Arc::new(Mutex::new(UserBook::default()));
          users.insert(user.to_string(), book.clone());
          book
        }
      }
    };
    {
      let mut guard = lock(&book);
      if !guard.loaded {
        guard.loaded = true;
        let days = if self.ledger.opened_empty() {
          Vec::new()
        } else if self.ledger.answers_at_once() {
          let from = self.today() - (HISTORY_DAYS - 1);
          // A ledger that cannot be read leaves the history empty; records still land.
          at_once(self.ledger.daily_costs(user, from)).unwrap_or_default()
        } else {
          lock(&self.preloaded).remove(user).unwrap_or_default()
        };
        for (day, cost) in days {
          *guard.days.entry(day).or_default() += cost;
        }
      }
    }
    book
  }

  /// Sets (or with `None` removes) a user's budget. Its alerts may fire again.
  pub fn set_budget(&self, user: &str, budget: Option<Budget>) {
    let book = self.book(user);
    let mut book = lock(&book);
    book.budget = budget;
    book.warned_for = None;
    book.exceeded_for = None;
  }

  pub fn budget(&self, user: &str) -> Option<BudgetStatus> {
    let today = self.today();
    let users = lock(&self.users);
    let book = users.get(user)?.clone();
    drop(users);
    let book = lock(&book);
    book.status(today)
  }

  /// Whether calls of `user` need a reservation: cheap, so the gateway can skip counting
  /// prompt tokens for everyone else.
  pub fn has_hard_budget(&self, user: &str) -> bool {
    let book = lock(&self.users).get(user).cloned();
    book.is_some_and(|book| lock(&book).budget.is_some_and(|b| b.hard))
  }

  /// Reserves the most a call can cost against the user's hard budget: `prompt_tokens`
  /// plus `max_tokens` (else the model's longest answer) at the prices of the dearest of
  /// `models` (the deployments that may serve the call). Refused with BUDGET_EXCEEDED when
  /// spent + reserved + this call would pass the budget. `None` when nothing needs
  /// reserving: no hard budget, or no model with a price.
  pub fn reserve(
    &self,
    user: &str,
    models: &[&str],
    prompt_tokens: u64,
    max_tokens: Option<u32>,
  ) -> Result<Option<Reservation>> {
    self.reserve_sized(user, models, &PromptSize::known(prompt_tokens), max_tokens)
  }

  /// `reserve` with the prompt's size as a cheap upper bound: while the budget has room for
  /// [`BOUND_HEADROOM_CALLS`] calls at the bound the call is held at it, uncounted; nearer
  /// the limit the exact count is asked for. Both are upper bounds of what the call can
  /// cost, so the budget can never be passed; and a call is refused only when its exact
  /// reservation does not fit, as with `reserve`.
  pub fn reserve_sized(
    &self,
    user: &str,
    models: &[&str],
    prompt: &PromptSize<'_>,
    max_tokens: Option<u32>,
  ) -> Result<Option<Reservation>> {
    let Some((bound_amount, _, _)) = self.dearest(models, prompt.bound, max_tokens) else {
      return Ok(None);
    };
    let shared = self.book(user);
    {
      let mut book = lock(&shared);
      let Some(status) = book.status(self.today()) else {
        return Ok(None);
      };
      if !status.budget.hard {
        return Ok(None);
      }
      if has_headroom(&status, bound_amount) {
        book.reserved += bound_amount;
        return Ok(Some(Reservation {
          book: shared.clone(),
          amount: bound_amount,
          remote: None,
        }));
      }
    }
    // Counted unlocked: a long prompt takes a while, and other calls of the user go on.
    let prompt_tokens = prompt.exact();
    let Some((amount, model, price)) = self.dearest(models, prompt_tokens, max_tokens) else {
      return Ok(None);
    };
    let mut book = lock(&shared);
    let Some(status) = book.status(self.today()).filter(|s| s.budget.hard) else {
      return Ok(None);
    };
    if status.spent + status.reserved + amount <= status.budget.limit {
      book.reserved += amount;
      return Ok(Some(Reservation {
        book: shared.clone(),
        amount,
        remote: None,
      }));
    }
    Err(self.refuse(book, user, status, model, &price, amount, prompt_tokens))
  }

  /// The most a call can cost at the dearest of `models` that has a price.
  fn dearest<'m>(
    &self,
    models: &[&'m str],
    prompt_tokens: u64,
    max_tokens: Option<u32>,
  ) -> Option<(Nanos, &'m str, ModelPrice)> {
    models
      .iter()
      .filter_map(|model| {
        let price = self.pricing.lookup(model)?;
        Some((price.max_cost(prompt_tokens, max_tokens), *model, price))
      })
      .max_by_key(|(amount, _, _)| *amount)
  }

  /// `reserve` for every kind of tracker: with a shared budget store the reservation is
  /// made there (UPSTREAM_UNAVAILABLE when the store is unreachable: hard budgets fail
  /// closed); with a shared ledger only, the budget's period spend is first read from the
  /// ledger when the period is new to this process.
  pub async fn reserve_async(
    &self,
    user: &str,
    models: &[&str],
    prompt_tokens: u64,
    max_tokens: Option<u32>,
  ) -> Result<Option<Reservation>> {
    self
      .reserve_sized_async(user, models, &PromptSize::known(prompt_tokens), max_tokens)
      .await
  }

  /// `reserve_async` with the prompt's size as a bound first (see `reserve_sized`): with a
  /// shared budget store, a second round trip only for a call that does not fit at its bound.
  pub async fn reserve_sized_async(
    &self,
    user: &str,
    models: &[&str],
    prompt: &PromptSize<'_>,
    max_tokens: Option<u32>,
  ) -> Result<Option<Reservation>> {
    let Some(store) = &self.budget_store else {
      self.sync_period(user).await;
      return self.reserve_sized(user, models, prompt, max_tokens);
    };
    let Some((bound_amount, bound_model, bound_price)) =
      self.dearest(models, prompt.bound, max_tokens)
    else {
      return Ok(None);
    };
    let shared = self.book(user);
    let today = self.today();
    let Some(budget) = lock(&shared).budget.filter(|b| b.hard) else {
      return Ok(None);
    };
    let period_start = budget.period.start(today);
    let key = store.key(user, &budget.period.id(period_start));
    // The hash outlives its period by a day, for calls settling just after midnight.
    let expire_at_s = (budget.period.end(period_start) + 1).saturating_mul(MS_PER_DAY / 1000);
    let seed = || async {
      let days = self.ledger.daily_costs(user, period_start).await?;
      Ok(days.iter().map(|(_, cost)| *cost).sum::<Nanos>())
    };
    // (amount, and once it is the exact one: what a refusal names). Near the limit (as
    // this process last heard it) the prompt is counted before the first round trip.
    let near_limit = prompt.count.is_some()
      && !lock(&shared)
        .status(today)
        .is_some_and(|status| has_headroom(&status, bound_amount));
    let mut attempt = if near_limit {
      let prompt_tokens = prompt.exact();
      let Some((amount, model, price)) = self.dearest(models, prompt_tokens, max_tokens) else {
        return Ok(None);
      };
      (amount, Some((model, price, prompt_tokens)))
    } else {
      (
        bound_amount,
        prompt
          .count
          .is_none()
          .then_some((bound_model, bound_price, prompt.bound)),
      )
    };
    loop {
      let (amount, exact) = attempt;
      let reply = match store
        .reserve(&key, amount, budget.limit, expire_at_s, seed())
        .await
      {
        Ok(reply) => reply,
        Err(error) => {
          self.budget_store_refusals.fetch_add(1, Ordering::Relaxed);
          return Err(error);
        }
      };
      let mut book = lock(&shared);
      let today = self.today();
      let held = reply.held;
      book.set_shared(period_start, reply.spent, Some(held), today);
      if let Some(hold) = reply.hold {
        return Ok(Some(Reservation {
          book: shared.clone(),
          amount: Nanos::ZERO,
          remote: Some(RemoteHold {
            store: store.clone(),
            hold,
            amount,
          }),
        }));
      }
      match exact {
        None => {
          drop(book);
          let prompt_tokens = prompt.exact();
          let Some((amount, model, price)) = self.dearest(models, prompt_tokens, max_tokens) else {
            return Ok(None);
          };
          attempt = (amount, Some((model, price, prompt_tokens)));
        }
        Some((model, price, prompt_tokens)) => {
          let status = BudgetStatus {
            budget,
            spent: reply.spent,
            reserved: held,
            period_start,
          };
          return Err(self.refuse(book, user, status, model, &price, amount, prompt_tokens));
        }
      }
    }
  }

  /// True when budgets and alerts learn other processes' spend from a shared ledger
  /// (PostgreSQL without a Redis budget store): see [`CostTracker::sync_period`].
  pub fn syncs_from_ledger(&self) -> bool {
    self.budget_store.is_none() && !self.ledger.answers_at_once()
  }

  /// With a shared ledger and no budget store: reads the period's spend of every process
  /// from the ledger when the user's budget period is new to this book (first call,
  /// rollover) or the last reading is [`LEDGER_SYNC_INTERVAL`] old, for hard and soft
  /// budgets alike (so the budget alerts see every process's spend). A ledger that cannot
  /// be read leaves this process's own view.
  pub async fn sync_period(&self, user: &str) {
    if !self.syncs_from_ledger() {
      return;
    }
    let shared = self.book(user);
    let today = self.today();
    let period_start = {
      let book = lock(&shared);
      let Some(budget) = book.budget else {
        return;
      };
      let period_start = budget.period.start(today);
      let fresh = |s: &Baseline| {
        s.period_start == period_start && s.taken_at.elapsed() < LEDGER_SYNC_INTERVAL
      };
      if book.shared.as_ref().is_some_and(fresh) {
        return;
      }
      period_start
    };
    if let Ok(days) = self.ledger.daily_costs(user, period_start).await {
      let spent = days.iter().map(|(_, cost)| *cost).sum();
      lock(&shared).set_shared(period_start, spent, None, today);
    }
  }

  /// Counts a refusal, raises its alert and words its error.
  #[allow(clippy::too_many_arguments)]
  fn refuse(
    &self,
    mut book: MutexGuard<'_, UserBook>,
    user: &str,
    status: BudgetStatus,
    model: &str,
    price: &ModelPrice,
    amount: Nanos,
    prompt_tokens: u64,
  ) -> GatewayError {
    self.budget_refusals.fetch_add(1, Ordering::Relaxed);
    let message = format!(
      "the {} budget of {} for user '{user}' would be passed: {} spent, {} reserved by calls in flight, and this call to {model} may cost up to {}",
      status.budget.period.adjective(),
      alerts::usd(status.budget.limit),
      alerts::usd(status.spent),
      alerts::usd(status.reserved),
      alerts::usd(amount),
    );
    let mut fired = Vec::new();
    if book.exceeded_for != Some(status.period_start) {
      book.exceeded_for = Some(status.period_start);
      book.warned_for = Some(status.period_start);
      let alert = Alert {
        kind: AlertKind::BudgetExceeded,
        severity: Severity::Critical,
        user: user.to_string(),
        message: format!("Budget reached: {message}."),
        recommendations: alerts::recommendations(
          &self.pricing,
          Some(model),
          Some(price),
          prompt_tokens,
        ),
        at_ms: self.clock.now_ms(),
        model: Some(model.to_string()),
        amount: Some(status.spent),
        threshold: Some(status.budget.limit),
      };
      fired.push(alert);
    }
    self.keep(&mut book, &fired);
    drop(book);
    self.notify(&fired);
    GatewayError::new(ErrorCode::BudgetExceeded, message)
  }

  /// Records a call: prices it, books its cost (replacing `reservation`), appends it to
  /// the ledger and raises the alerts it triggers. Never fails: an unknown model costs 0
  /// and counts as unpriced.
  pub fn record(&self, entry: CallEntry, reservation: Option<Reservation>) -> Recorded {
    let price = self.pricing.lookup(&entry.model);
    self.record_priced(entry, reservation, price)
  }

  /// `record` for a call of a mock provider: priced by `pricing` alone, else free (and
  /// counted as priced: its cost of zero is known).
  pub fn record_by_overrides(
    &self,
    entry: CallEntry,
    reservation: Option<Reservation>,
  ) -> Recorded {
    let price = self
      .pricing
      .lookup_overrides(&entry.model)
      .unwrap_or_else(ModelPrice::free);
    self.record_priced(entry, reservation, Some(price))
  }

  fn record_priced(
    &self,
    entry: CallEntry,
    reservation: Option<Reservation>,
    price: Option<ModelPrice>,
  ) -> Recorded {
    let (cost, priced) = match (&price, entry.cached) {
      (_, true) => (Nanos::ZERO, true),
      (Some(price), false) => (price.cost(&entry.usage), true),
      (None, false) => (Nanos::ZERO, false),
    };
    self.recorded.fetch_add(1, Ordering::Relaxed);
    if !priced {
      self.unpriced.fetch_add(1, Ordering::Relaxed);
    }
    let now = self.clock.now_ms();
    let at_ms = entry.at_ms.unwrap_or(now);
    let user = entry.user.unwrap_or_else(|| ANONYMOUS.to_string());
    let shared = self.book(&user);
    let mut held = Nanos::ZERO;
    let mut remote_hold = None;
    if let Some((book, amount, remote)) = reservation.map(Reservation::take) {
      if Arc::ptr_eq(&book, &shared) {
        held = amount;
        remote_hold = remote.map(|r| r.hold);
      } else {
        // Reserved under another user's budget: give it back there.
        let mut other = lock(&book);
        other.reserved = other.reserved.saturating_sub(amount);
        if let Some(remote) = remote {
          remote.store.settle(Settlement {
            hold: Some(remote.hold),
            spend_keys: Vec::new(),
            cost: Nanos::ZERO,
          });
        }
      }
    }
    let mut book = lock(&shared);
    // Same lock as the spend below: the real cost replaces the hold in one step.
    book.reserved = book.reserved.saturating_sub(held);
    let today = day_of(now);
    let day = day_of(at_ms);
    if day > today - HISTORY_DAYS && day <= today {
      *book.days.entry(day).or_default() += cost;
    }
    let oldest = today - (HISTORY_DAYS - 1);
    while book
      .days
      .first_key_value()
      .is_some_and(|(d, _)| *d < oldest)
    {
      book.days.pop_first();
    }
    let context = AlertContext {
      user: &user,
      model: &entry.model,
      price: price.as_ref(),
      prompt_tokens: entry.usage.prompt_tokens,
      cached: entry.cached,
      now,
    };
    let fired = self.evaluate(&mut book, &context);
    self.keep(&mut book, &fired);
    drop(book);
    if let Some(store) = &self.budget_store {
      if remote_hold.is_some() || cost > Nanos::ZERO {
        // The cost counts towards the user's day and month wherever a budget is kept.
        let month = Period::Month.start(day);
        store.settle(Settlement {
          hold: remote_hold,
          spend_keys: vec![
            store.key(&user, &Period::Day.id(day)),
            store.key(&user, &Period::Month.id(month)),
          ],
          cost,
        });
      }
    }
    self.ledger.append(LedgerRow {
      at_ms,
      user,
      model: entry.model,
      provider: entry.provider,
      outcome: entry.outcome.unwrap_or(CallOutcome::Ok),
      error_code: entry.error_code,
      usage: entry.usage,
      cost,
      priced,
      cached: entry.cached,
      latency_ms: entry.latency_ms,
      request_id: entry.request_id,
      operation: entry.operation,
    });
    self.notify(&fired);
    Recorded { cost, priced }
  }

  fn evaluate(&self, book: &mut UserBook, call: &AlertContext<'_>) -> Vec<Alert> {
    let today = day_of(call.now);
    let mut fired = Vec::new();
    let advice = || {
      alerts::recommendations(
        &self.pricing,
        Some(call.model),
        call.price,
        call.prompt_tokens,
      )
    };
    if let Some(status) = book.status(today) {
      let BudgetStatus {
        budget,
        spent,
        period_start,
        ..
      } = status;
      let limit = budget.limit;
      let reached = spent >= limit && (spent > Nanos::ZERO || limit > Nanos::ZERO);
      // 90%: spent × 10 ≥ limit × 9, in integers.
      let near = u128::from(spent.0) * 10 >= u128::from(limit.0) * 9 && spent > Nanos::ZERO;
      // Worded only when an alert fires: this runs on every call.
      let budget_alert = |severity: Severity, headline: &str| Alert {
        kind: AlertKind::BudgetExceeded,
        severity,
        user: call.user.to_string(),
        message: format!(
          "{headline}: user '{}' has spent {} of a {} budget of {} ({}).",
          call.user,
          alerts::usd(spent),
          budget.period.adjective(),
          alerts::usd(limit),
          percent(spent, limit)
        ),
        recommendations: advice(),
        at_ms: call.now,
        model: Some(call.model.to_string()),
        amount: Some(spent),
        threshold: Some(limit),
      };
      if reached && book.exceeded_for != Some(period_start) {
        book.exceeded_for = Some(period_start);
        book.warned_for = Some(period_start);
        fired.push(budget_alert(Severity::Critical, "Budget reached"));
      } else if near && !reached && book.warned_for != Some(period_start) {
        book.warned_for = Some(period_start);
        fired.push(budget_alert(Severity::Warning, "Budget nearly used"));
      }
    }

    let this_week = book.spent_since(today - 6);
    let previous_four = book.spent_between(today - 34, today - 7);
    // Over twice the weekly average of the four weeks before: week > 2 × prev / 4.
    let unusual =
      previous_four > Nanos::ZERO && u128::from(this_week.0) * 2 > u128::from(previous_four.0);
    if unusual && !book.unusual_active {
      let average = Nanos(previous_four.0 / 4);
      fired.push(Alert {
        kind: AlertKind::UnusualSpending,
        severity: Severity::Warning,
        user: call.user.to_string(),
        message: format!(
          "Unusual spending: user '{}' spent {} in the last 7 days, over twice the weekly average of the 4 weeks before ({}).",
          call.user,
          alerts::usd(this_week),
          alerts::usd(average)
        ),
        recommendations: advice(),
        at_ms: call.now,
        model: Some(call.model.to_string()),
        amount: Some(this_week),
        threshold: Some(average),
      });
    }
    book.unusual_active = unusual;

    if let Some(price) = call
      .price
      .filter(|p| !call.cached && p.output >= self.high_cost_output)
    {
      if book.high_cost_alerted.get(call.model) != Some(&today) {
        book.high_cost_alerted.insert(call.model.to_string(), today);
        fired.push(Alert {
          kind: AlertKind::HighCostModel,
          severity: Severity::Warning,
          user: call.user.to_string(),
          message: format!(
            "High-cost model: user '{}' called {} ({}).",
            call.user,
            call.model,
            alerts::per_million(price)
          ),
          recommendations: advice(),
          at_ms: call.now,
          model: Some(call.model.to_string()),
          amount: None,
          threshold: None,
        });
      }
    }
    fired
  }

  fn keep(&self, book: &mut UserBook, fired: &[Alert]) {
    for alert in fired {
      if book.alerts.len() == MAX_ALERTS_PER_USER {
        book.alerts.pop_front();
      }
      book.alerts.push_back(alert.clone());
    }
    self
      .alerts_fired
      .fetch_add(fired.len() as u64, Ordering::Relaxed);
  }

  fn notify(&self, fired: &[Alert]) {
    if fired.is_empty() {
      return;
    }
    let listeners = self
      .listeners
      .read()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .clone();
    for alert in fired {
      for listener in &listeners {
        listener(alert);
      }
    }
  }

  /// Alerts raised for a user, oldest first (the last 100).
  pub fn alerts(&self, user: &str) -> Vec<Alert> {
    let users = lock(&self.users);
    let Some(book) = users.get(user).cloned() else {
      return Vec::new();
    };
    drop(users);
    let book = lock(&book);
    book.alerts.iter().cloned().collect()
  }

  /// `listener` runs for every alert, on the thread that raised it; keep it quick.
  pub fn on_alert(&self, listener: AlertListener) {
    self
      .listeners
      .write()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .push(listener);
  }

  /// Spend of one user (or everyone) over the last `days` UTC days, today included. An
  /// embedded ledger answers at once; a networked one needs `summary_async`.
  pub fn summary(&self, user: Option<&str>, days: u32) -> Result<Summary> {
    let (first, today) = self.window(days);
    let totals = at_once(self.ledger.totals(user, first.saturating_mul(MS_PER_DAY)))?;
    Ok(summarize(totals, first, today))
  }

  /// Spend of one user (or everyone) over the last `days` UTC days, from any ledger (with
  /// a shared one: every process's calls).
  pub async fn summary_async(&self, user: Option<&str>, days: u32) -> Result<Summary> {
    let (first, today) = self.window(days);
    let totals = self
      .ledger
      .totals(user, first.saturating_mul(MS_PER_DAY))
      .await?;
    Ok(summarize(totals, first, today))
  }

  fn window(&self, days: u32) -> (i64, i64) {
    let days = i64::from(days.max(1));
    let today = self.today();
    (today - (days - 1), today)
  }

  pub fn stats(&self) -> TrackerStats {
    TrackerStats {
      recorded: self.recorded.load(Ordering::Relaxed),
      unpriced: self.unpriced.load(Ordering::Relaxed),
      budget_refusals: self.budget_refusals.load(Ordering::Relaxed),
      alerts: self.alerts_fired.load(Ordering::Relaxed),
      ledger: self.ledger.stats(),
      budget_store: self
        .budget_store
        .as_ref()
        .map(|store| store.stats())
        .unwrap_or_default(),
      budget_store_refusals: self.budget_store_refusals.load(Ordering::Relaxed),
    }
  }

  /// Returns once every recorded call is durable in an embedded ledger.
  pub fn flush(&self) -> Result<()> {
    at_once(self.ledger.flush())
  }

  /// Resolves once every recorded call is durable in the ledger and every budget
  /// settlement is applied (UPSTREAM_UNAVAILABLE when a server stays away meanwhile; what
  /// is queued stays queued).
  pub async fn flush_async(&self) -> Result<()> {
    self.ledger.flush().await?;
    if let Some(store) = &self.budget_store {
      store.drain(SETTLE_PATIENCE).await?;
    }
    Ok(())
  }

  pub fn close(&self) -> Result<()> {
    self.closed.store(true, Ordering::Release);
    at_once(self.ledger.close())
  }

  /// Flushes (each store within its close timeout, then what is left is counted as
  /// dropped) and closes.
  pub async fn close_async(&self) -> Result<()> {
    self.closed.store(true, Ordering::Release);
    let closed = self.ledger.close().await;
    if let Some(store) = &self.budget_store {
      if store.drain(SETTLE_PATIENCE).await.is_err() {
        store.abandon();
      }
    }
    closed
  }

  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }
}

/// The ledger of a tracker without a shared one: SQLite at `path`, else totals in memory
/// (flat however many calls it records; see `backend::memory_ledger`).
fn embedded_ledger(path: Option<&str>) -> Result<Arc<dyn LedgerBackend>> {
  Ok(match path {
    Some(path) => Arc::new(SqliteLedger::open(Some(path))?),
    None => Arc::new(MemoryLedger::new()),
  })
}

/// Whether a reservation at a prompt's bound may be taken: the budget has room for
/// [`BOUND_HEADROOM_CALLS`] such calls.
fn has_headroom(status: &BudgetStatus, bound_amount: Nanos) -> bool {
  let room = status
    .budget
    .limit
    .saturating_sub(status.spent + status.reserved);
  u128::from(bound_amount.0) * u128::from(BOUND_HEADROOM_CALLS) <= u128::from(room.0)
}

/// How long a flush or close waits for budget settlements to reach the store.
const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

fn summarize(totals: crate::backend::ledger::LedgerTotals, first: i64, today: i64) -> Summary {
  let by_day: HashMap<i64, (Nanos, u64)> = totals
    .days
    .iter()
    .map(|d| (d.day, (d.cost, d.requests)))
    .collect();
  let trend: Vec<TrendPoint> = (first..=today)
    .map(|day| {
      let (cost, requests) = by_day.get(&day).copied().unwrap_or_default();
      TrendPoint {
        date: iso_date(day),
        cost,
        requests,
      }
    })
    .collect();
  let total_cost = totals.days.iter().map(|d| d.cost).sum();
  let total_requests = totals.days.iter().map(|d| d.requests).sum();
  Summary {
    total_cost,
    total_requests,
    by_model: totals
      .models
      .into_iter()
      .map(|m| (m.model, m.cost, m.requests))
      .collect(),
    trend,
    unpriced_requests: totals.unpriced_requests,
  }
}

struct AlertContext<'a> {
  user: &'a str,
  model: &'a str,
  price: Option<&'a ModelPrice>,
  prompt_tokens: u64,
  cached: bool,
  now: i64,
}

fn percent(spent: Nanos, limit: Nanos) -> String {
  if limit == Nanos::ZERO {
    return "over a zero budget".to_string();
  }
  format!("{:.0}%", spent.0 as f64 * 100.0 / limit.0 as f64)
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
  /// "YYYY-MM-DD", UTC.
  pub date: String,
  pub cost: Nanos,
  pub requests: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
  pub total_cost: Nanos,
  pub total_requests: u64,
  /// (model, cost, requests), by model name.
  pub by_model: Vec<(String, Nanos, u64)>,
  /// One point per day of the window, oldest first, zero on days without calls.
  pub trend: Vec<TrendPoint>,
  pub unpriced_requests: u64,
}
