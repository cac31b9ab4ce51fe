//! Hard budgets shared by every process: spend counters and reservations in Redis.
//!
//! One hash per user and budget period, `{prefix}budget:{{user}}:{period}` (period `day:YYYY-MM-DD`
//! or `month:YYYY-MM`, UTC), holds `spent` (integer nanodollars) and one field per
//! reservation in flight, `h:{id}` = `{amount}:{deadline ms}`. Scripts run atomically on the
//! server:
//! - reserve: drops reservations past their deadline (a crashed process's holds expire),
//!   then grants the new one only if spent + live reservations + amount ≤ limit;
//! - seed: the first time a period's hash is needed, `spent` is set from the ledger if no
//!   process set it first (HSETNX), and the hash expires a day after the period ends;
//! - settle: removes the call's reservation and adds its real cost to the day and month
//!   hashes of the call's user that exist (a hash that does not exist yet is seeded from
//!   the ledger later, which then holds the call).
//!
//! Deadlines use the Redis server's clock (`TIME`), so hosts with skewed clocks agree.
//!
//! Faults: a reservation needs Redis; while it is unreachable `reserve` fails (the tracker
//! refuses hard-budget calls: budgets fail closed). Settlements are queued in memory and
//! retried with a backoff (100 ms doubling to 2 s) until Redis answers, so no spend is lost
//! while it is away (up to a bound, beyond which they are dropped and counted). A retried
//! settlement adds its cost only if its reservation is still there, so a settlement whose
//! first answer was lost is not counted twice; a settlement without reservation (spend of
//! users this process holds no hard budget for) may be, which errs on the side of the budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Script;
use tokio::sync::Notify;

use super::redis_retry::once_more_if_reconnecting;
use super::shared::{connect_redis, hash_tag, unavailable, RedisConnection};
use crate::costs::money::Nanos;
use crate::error::{GatewayError, Result};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "ferrogate:";
/// How long a reservation holds without being settled; then it is dropped as a crashed
/// process's. Longer than any call should take (the gateway's timeouts are shorter).
pub const DEFAULT_HOLD_TTL: Duration = Duration::from_secs(15 * 60);
/// Settlements kept while Redis is away.
pub const SETTLE_QUEUE_BOUND: usize = 100_000;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const WHAT: &str = "CostTracker budget store (Redis)";

const RESERVE: &str = r"
if redis.call('HEXISTS', KEYS[1], 'spent') == 0 then return {-1, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent'))
local held = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local field = fields[i]
  if string.sub(field, 1, 2) == 'h:' then
    local value = fields[i + 1]
    local sep = string.find(value, ':', 1, true)
    local amount = tonumber(string.sub(value, 1, sep - 1))
    local deadline = tonumber(string.sub(value, sep + 1))
    if deadline <= now then
      redis.call('HDEL', KEYS[1], field)
    else
      held = held + amount
    end
  end
end
local amount = tonumber(ARGV[2])
if spent + held + amount > tonumber(ARGV[3]) then return {0, spent, held} end
redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], ARGV[2] .. ':' .. string.format('%d', now + tonumber(ARGV[4])))
return {1, spent, held + amount}
";

const SEED: &str = r"
redis.call('HSETNX', KEYS[1], 'spent', ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'spent'))
";

const SETTLE: &str = r"
local add = true
local first = 1
if ARGV[1] ~= '' then
  local removed = redis.call('HDEL', KEYS[1], 'h:' .. ARGV[1])
  if removed == 0 and ARGV[3] == '1' then add = false end
  first = 2
end
if add and ARGV[2] ~= '0' then
  for i = first, #KEYS do
    if redis.call('HEXISTS', KEYS[i], 'spent') == 1 then
      redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2])
    end
  end
end
return 1
";

#[derive(Debug, Clone)]
pub struct RedisBudgetOptions {
  pub url: String,
  pub prefix: String,
  pub hold_ttl: Duration,
}

impl RedisBudgetOptions {
  pub fn new(url: impl Into<String>) -> RedisBudgetOptions {
    RedisBudgetOptions {
      url: url.into(),
      prefix: DEFAULT_PREFIX.into(),
      hold_ttl: DEFAULT_HOLD_TTL,
    }
  }
}

/// A reservation held in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
  pub key: String,
  pub id: String,
}

/// What a reservation attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveReply {
  /// The reservation, when granted.
  pub hold: Option<Hold>,
  /// Spent in the period across every process, before this call.
  pub spent: Nanos,
  /// Held by calls in flight across every process (this one included when granted).
  pub held: Nanos,
}

/// Spend to apply: a reservation to drop (and whose real cost this is), and the period
/// hashes the cost counts towards.
#[derive(Debug, Clone)]
pub struct Settlement {
  pub hold: Option<Hold>,
  pub spend_keys: Vec<String>,
  pub cost: Nanos,
}

#[derive(Default)]
struct Queue {
  /// (sequence number, settlement, retried)
  items: VecDeque<(u64, Settlement, bool)>,
  next_seq: u64,
  /// The worker is applying the front item.
  busy: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStoreStats {
  /// Settlements waiting for Redis.
  pub pending: u64,
  /// Settlements lost beyond the queue bound.
  pub dropped: u64,
}

struct Inner {
  connection: RedisConnection,
  url: String,
  queue: Mutex<Queue>,
  wake: Notify,
  dropped: AtomicU64,
  settle: Script,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct RedisBudgets {
  inner: Arc<Inner>,
  prefix: String,
  hold_ttl_ms: u64,
  reserve: Script,
  seed: Script,
}

impl std::fmt::Debug for RedisBudgets {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("RedisBudgets")
      .field("prefix", &self.prefix)
      .finish()
  }
}

fn fail_closed(url: &str, cause: impl std::fmt::Display) -> GatewayError {
  unavailable(
    WHAT,
    url,
    format!("budget store unreachable; hard budgets fail closed ({cause})"),
  )
}

impl RedisBudgets {
  /// Connects (an unreachable server is UPSTREAM_UNAVAILABLE, a bad URL CONFIG) and starts
  /// the settlement worker on the current tokio runtime.
  pub async fn open(options: RedisBudgetOptions) -> Result<RedisBudgets> {
    let connection = connect_redis(WHAT, &options.url).await?;
    let inner = Arc::new(Inner {
      connection,
      url: options.url,
      queue: Mutex::new(Queue::default()),
      wake: Notify::new(),
      dropped: AtomicU64::new(0),
      settle: Script::new(SETTLE),
    });
    tokio::spawn(settle_loop(Arc::downgrade(&inner)));
    Ok(RedisBudgets {
      inner,
      prefix: options.prefix,
      hold_ttl_ms: u64::try_from(options.hold_ttl.as_millis()).unwrap_or(u64::MAX),
      reserve: Script::new(RESERVE),
      seed: Script::new(SEED),
    })
  }

  /// The hash of `user`'s spend in `period` ("day:2025-11-15", "month:2025-11"). The user
  /// is the hash tag: a settlement touches one user's period hashes in one script, which a
  /// Redis Cluster runs only when they share a slot.
  pub fn key(&self, user: &str, period: &str) -> String {
    format!("{}budget:{}:{period}", self.prefix, hash_tag(user))
  }

  /// Reserves `amount` against `limit` in the period hash `key`. The first time the hash
  /// is needed, `seed` gives the period's spend so far (from the ledger) and the hash is set
  /// to expire at `expire_at_s` (Unix seconds).
  pub async fn reserve<F>(
    &self,
    key: &str,
    amount: Nanos,
    limit: Nanos,
    expire_at_s: i64,
    seed: F,
  ) -> Result<ReserveReply>
  where
    F: std::future::Future<Output = Result<Nanos>>,
  {
    let id = format!("{:032x}", fastrand::u128(..));
    let mut seed = Some(seed);
    loop {
      let mut reserve = self.reserve.key(key);
      reserve
        .arg(&id)
        .arg(amount.as_i64())
        .arg(limit.as_i64())
        .arg(self.hold_ttl_ms);
      let reserve = &reserve;
      // Holding the same id twice is one hold, so a second try after a dead connection is safe.
      let reply: Vec<i64> = once_more_if_reconnecting(|| {
        let mut connection = self.inner.connection.clone();
        async move { reserve.invoke_async(&mut connection).await }
      })
      .await
      .map_err(|e| fail_closed(&self.inner.url, e))?;
      let (status, spent, held) = match reply.as_slice() {
        [status, spent, held] => (*status, Nanos::from_i64(*spent), Nanos::from_i64(*held)),
        _ => return Err(fail_closed(&self.inner.url, "unexpected script reply")),
      };
      match status {
        1 => {
          return Ok(ReserveReply {
            hold: Some(Hold {
              key: key.to_string(),
              id,
            }),
            spent,
            held,
          })
        }
        0 => {
          return Ok(ReserveReply {
            hold: None,
            spent,
            held,
          })
        }
        _ => {
          let Some(seed) = seed.take() else {
            return Err(fail_closed(&self.inner.url, "the period key vanished"));
          };
          let spent = seed.await?;
          let mut seeding = self.seed.key(key);
          seeding.arg(spent.as_i64()).arg(expire_at_s);
          let seeding = &seeding;
          // Seeding only fills a missing `spent`, so trying it twice changes nothing.
          let _: i64 = once_more_if_reconnecting(|| {
            let mut connection = self.inner.connection.clone();
            async move { seeding.invoke_async(&mut connection).await }
          })
          .await
          .map_err(|e| fail_closed(&self.inner.url, e))?;
        }
      }
    }
  }

  /// Queues a settlement; applied in the background, retried while Redis is away.
  pub fn settle(&self, settlement: Settlement) {
    let mut queue = lock(&self.inner.queue);
    if queue.items.len() >= SETTLE_QUEUE_BOUND {
      drop(queue);
      self.inner.dropped.fetch_add(1, Ordering::Relaxed);
      return;
    }
    let seq = queue.next_seq;
    queue.next_seq += 1;
    queue.items.push_back((seq, settlement, false));
    let first = queue.items.len() == 1;
    drop(queue);
    if first {
      self.inner.wake.notify_one();
    }
  }

  pub fn stats(&self) -> BudgetStoreStats {
    let queue = lock(&self.inner.queue);
    BudgetStoreStats {
      pending: queue.items.len() as u64,
      dropped: self.inner.dropped.load(Ordering::Relaxed),
    }
  }

  /// Waits until every settlement queued before the call is applied; after `patience`
  /// fails with UPSTREAM_UNAVAILABLE (the settlements stay queued).
  pub async fn drain(&self, patience: Duration) -> Result<()> {
    self.inner.wake.notify_one();
    let waiting = async {
      loop {
        {
          let queue = lock(&self.inner.queue);
          if queue.items.is_empty() && !queue.busy {
            return;
          }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
      }
    };
    tokio::time::timeout(patience, waiting).await.map_err(|_| {
      let pending = lock(&self.inner.queue).items.len();
      unavailable(
        WHAT,
        &self.inner.url,
        format!("{pending} budget settlements still queued (kept and retried)"),
      )
    })
  }

  /// Drops what is still queued (after a close gave up waiting), counting it as dropped.
  pub fn abandon(&self) {
    let mut queue = lock(&self.inner.queue);
    let left = queue.items.len() as u64;
    queue.items.clear();
    self.inner.dropped.fetch_add(left, Ordering::Relaxed);
  }
}

/// Applies queued settlements in order while the budget store lives.
async fn settle_loop(inner: std::sync::Weak<Inner>) {
  let mut backoff = MIN_BACKOFF;
  loop {
    let Some(inner) = inner.upgrade() else {
      return;
    };
    let front = take_front(&inner);
    let Some((seq, settlement, retried)) = front else {
      let wake = inner.clone();
      drop(inner);
      // Wakes at least every second to notice the store was dropped.
      let _ = tokio::time::timeout(Duration::from_secs(1), wake.wake.notified()).await;
      continue;
    };
    let mut invocation = inner.settle.prepare_invoke();
    match &settlement.hold {
      Some(hold) => {
        invocation.key(&hold.key).arg(&hold.id);
      }
      None => {
        invocation.arg("");
      }
    }
    for key in &settlement.spend_keys {
      invocation.key(key);
    }
    invocation
      .arg(settlement.cost.as_i64())
      .arg(if retried { "1" } else { "0" });
    let mut connection = inner.connection.clone();
    let applied = invocation
      .invoke_async::<i64>(&mut connection)
      .await
      .is_ok();
    settled_front(&inner, seq, applied);
    if applied {
      backoff = MIN_BACKOFF;
      continue;
    }
    let wake = inner.clone();
    drop(inner);
    tokio::select! {
      () = tokio::time::sleep(backoff) => {}
      () = wake.wake.notified() => {}
    }
    backoff = (backoff * 2).min(MAX_BACKOFF);
  }
}

/// The settlement to apply next (left queued until applied).
fn take_front(inner: &Inner) -> Option<(u64, Settlement, bool)> {
  let mut queue = lock(&inner.queue);
  let front = queue.items.front().cloned();
  queue.busy = front.is_some();
  front
}

/// Pops the front settlement once applied, or marks it retried. By sequence number: a
/// close that gave up may have emptied the queue meanwhile.
fn settled_front(inner: &Inner, seq: u64, applied: bool) {
  let mut queue = lock(&inner.queue);
  queue.busy = false;
  let Some(front) = queue.items.front_mut().filter(|front| front.0 == seq) else {
    return;
  };
  if applied {
    queue.items.pop_front();
  } else {
    front.2 = true;
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const URL: &str = "redis://127.0.0.1:6379/";

  fn options() -> RedisBudgetOptions {
    let mut options = RedisBudgetOptions::new(URL);
    options.prefix = format!(
      "fg_test_budget_{}_{:08x}:",
      std::process::id(),
      fastrand::u32(..)
    );
    options
  }

  async fn cleanup(budgets: &RedisBudgets) {
    let mut connection = budgets.inner.connection.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
      .arg(format!("{}*", budgets.prefix))
      .query_async(&mut connection)
      .await
      .unwrap_or_default();
    for key in keys {
      let _: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(key)
        .query_async(&mut connection)
        .await;
    }
  }

  async fn spent(budgets: &RedisBudgets, key: &str) -> i64 {
    let mut connection = budgets.inner.connection.clone();
    redis::cmd("HGET")
      .arg(key)
      .arg("spent")
      .query_async::<Option<i64>>(&mut connection)
      .await
      .expect("hget")
      .unwrap_or(-1)
  }

  fn far_future() -> i64 {
    4_000_000_000
  }

  /// A settlement's script gets the hold's hash and the user's day and month hashes at once:
  /// on a Redis Cluster they must share a slot, whatever the user and the prefix.
  #[tokio::test]
  async fn the_keys_of_one_settlement_share_a_cluster_slot() {
    use redis::cluster_routing::Slot;
    for prefix in ["ferrogate:", "", "app{x}:", "a}b:"] {
      let mut options = options();
      options.prefix = prefix.to_string();
      let budgets = RedisBudgets::open(options).await.expect("open");
      for user in ["alice", "", "}", "{", "{}", "a}b{c", "%"] {
        let day = budgets.key(user, "day:2025-11-15");
        let month = budgets.key(user, "month:2025-11");
        assert_ne!(day, month);
        assert_eq!(
          Slot::for_key(&day),
          Slot::for_key(&month),
          "{day} / {month}"
        );
      }
      assert_ne!(budgets.key("", "day:x"), budgets.key("%00", "day:x"));
    }
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn reservations_never_pass_the_limit_and_settle_into_spent() {
    let budgets = Arc::new(RedisBudgets::open(options()).await.expect("open"));
    let key = budgets.key("ann", "day:2025-11-15");
    let month = budgets.key("ann", "month:2025-11");
    // Seeded from the "ledger": 100 already spent.
    let first = budgets
      .reserve(&key, Nanos(300), Nanos(1000), far_future(), async {
        Ok(Nanos(100))
      })
      .await
      .expect("reserve");
    assert!(first.hold.is_some());
    assert_eq!((first.spent, first.held), (Nanos(100), Nanos(300)));
    // 50 concurrent tries of 300 against 1000 - 100 - 300 = 600 left: exactly 2 fit.
    let mut tries = Vec::new();
    for _ in 0..50 {
      let budgets = budgets.clone();
      let key = key.clone();
      tries.push(tokio::spawn(async move {
        budgets
          .reserve(&key, Nanos(300), Nanos(1000), far_future(), async {
            Ok(Nanos(999_999))
          })
          .await
          .expect("reserve")
          .hold
      }));
    }
    let mut holds = Vec::new();
    for handle in tries {
      if let Some(hold) = handle.await.expect("join") {
        holds.push(hold);
      }
    }
    assert_eq!(holds.len(), 2);
    // Settle all three at a real cost of 120 each; the month hash does not exist: untouched.
    for hold in holds.into_iter().chain(first.hold) {
      budgets.settle(Settlement {
        hold: Some(hold),
        spend_keys: vec![key.clone(), month.clone()],
        cost: Nanos(120),
      });
    }
    budgets.drain(Duration::from_secs(5)).await.expect("drain");
    assert_eq!(spent(&budgets, &key).await, 100 + 3 * 120);
    assert_eq!(spent(&budgets, &month).await, -1);
    // 460 spent, nothing held: 540 left.
    let refused = budgets
      .reserve(&key, Nanos(541), Nanos(1000), far_future(), async {
        Ok(Nanos(0))
      })
      .await
      .expect("reserve");
    assert_eq!(
      (refused.hold, refused.spent, refused.held),
      (None, Nanos(460), Nanos(0))
    );
    cleanup(&budgets).await;
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn an_expired_hold_is_dropped_and_a_retried_settlement_counts_once() {
    let mut options = options();
    options.hold_ttl = Duration::from_millis(50);
    let budgets = RedisBudgets::open(options).await.expect("open");
    let key = budgets.key("bob", "month:2025-11");
    let held = budgets
      .reserve(&key, Nanos(900), Nanos(1000), far_future(), async {
        Ok(Nanos(0))
      })
      .await
      .expect("reserve");
    let hold = held.hold.expect("granted");
    tokio::time::sleep(Duration::from_millis(120)).await;
    // The crashed caller's 900 is gone: 900 fits again.
    let again = budgets
      .reserve(&key, Nanos(900), Nanos(1000), far_future(), async {
        Ok(Nanos(0))
      })
      .await
      .expect("reserve");
    assert_eq!(again.held, Nanos(900));
    // A retry of a settlement whose hold is gone (already applied) adds nothing.
    let mut connection = budgets.inner.connection.clone();
    let _: i64 = budgets
      .inner
      .settle
      .key(&key)
      .arg(&hold.id)
      .key(&key)
      .arg(77)
      .arg("1")
      .invoke_async(&mut connection)
      .await
      .expect("settle");
    assert_eq!(spent(&budgets, &key).await, 0);
    cleanup(&budgets).await;
  }

  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn an_unreachable_server_fails_closed_and_a_bad_url_is_config() {
    let error = RedisBudgets::open(RedisBudgetOptions::new("redis://:pw@127.0.0.1:1/"))
      .await
      .expect_err("unreachable");
    assert_eq!(error.code, crate::error::ErrorCode::UpstreamUnavailable);
    assert!(!error.message.contains("pw@"), "{}", error.message);
    let error = RedisBudgets::open(RedisBudgetOptions::new("http://x"))
      .await
      .expect_err("bad url");
    assert_eq!(error.code, crate::error::ErrorCode::Config);
  }
}
