//! The shared limiter store: the GCRA of [`super::gcra`] run by Redis itself, in one Lua
//! script, so every process and host sharing a key sees and moves the same buckets.
//!
//! Each key is a hash `{prefix}rl:{{key}}` (the key as its hash tag, see
//! [`super::shared::hash_tag`]) of `e` (an epoch second, from Redis `TIME`) and
//! the two TATs `r` (requests) and `t` (tokens) in nanoseconds after `e`. Times after a
//! per-key epoch rather than after 1970 keep the numbers small enough for the doubles Lua
//! computes with to stay exact to a fraction of a nanosecond (at 1.7e18 ns a double is off
//! by up to 256 ns, more than the algorithm's 1 ns rounding slack); the epoch moves forward
//! once it is a day old. A key expires when its buckets are full again, so Redis holds only
//! the keys in use. The clock is Redis's: every process agrees on it whatever its own.

use std::sync::{LazyLock, Mutex};

use futures_util::future::{BoxFuture, FutureExt};
use redis::Script;

use super::gcra::{Decision, Quota};
use super::redis_retry::once_more_if_reconnecting;
use super::shared::{hash_tag, unavailable, RedisConnection};
use super::LimiterStore;
use crate::error::{GatewayError, Result};

/// The script mirrors `gcra::step`, `gcra::acquire` and `gcra::adjust_tokens` operation
/// for operation (same order of floating point operations, same slack), so that it
/// decides exactly as the embedded store does; a test replays one trace through both.
const GCRA_LUA: &str = r#"
-- KEYS[1]: the key's hash. ARGV: op ('acquire' | 'adjust'), amount (the request's tokens, or
-- the token delta), requests per minute, requests burst, tokens per minute, tokens burst
-- ('' where that limit is off), then optionally the clock as seconds, microseconds (tests).
local key = KEYS[1]
local op = ARGV[1]
local amount = tonumber(ARGV[2])
local rpm, rburst = tonumber(ARGV[3]), tonumber(ARGV[4])
local tpm, tburst = tonumber(ARGV[5]), tonumber(ARGV[6])
local sec, usec
if ARGV[7] then
  sec, usec = tonumber(ARGV[7]), tonumber(ARGV[8])
else
  local time = redis.call('TIME')
  sec, usec = tonumber(time[1]), tonumber(time[2])
end

local SLACK = 1
local REBASE_AFTER_SECONDS = 86400
local state = redis.call('HMGET', key, 'e', 'r', 't')
local epoch = tonumber(state[1]) or sec
local rtat = tonumber(state[2]) or 0
local ttat = tonumber(state[3]) or 0
if sec - epoch > REBASE_AFTER_SECONDS then
  local shift = (sec - epoch) * 1e9
  rtat = math.max(rtat - shift, 0)
  ttat = math.max(ttat - shift, 0)
  epoch = sec
end
local now = (sec - epoch) * 1e9 + usec * 1000

local function save()
  local idle_after = math.max(rtat, ttat)
  if idle_after <= now then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'e', string.format('%.17g', epoch),
    'r', string.format('%.17g', rtat), 't', string.format('%.17g', ttat))
  redis.call('PEXPIRE', key, math.ceil((idle_after - now) / 1e6) + 1)
end

-- gcra::step: admitted, then the new TAT (admitted) or the wait (refused), then the cells left.
local function step(tat, cost, per_minute, burst)
  local interval = 60e9 / per_minute
  local base = math.max(tat, now)
  local new_tat = base + cost * interval
  local limit = now + burst * interval
  local available = math.max(math.floor((limit - base + SLACK) / interval), 0)
  if new_tat <= limit + SLACK then
    return true, new_tat, math.max(math.floor((limit - new_tat + SLACK) / interval), 0)
  end
  if cost > burst and base <= now then
    return true, new_tat, 0
  end
  if cost > burst then
    return false, base - now, available
  end
  return false, new_tat - limit, available
end

if op == 'adjust' then
  if tpm then
    local moved = math.max(ttat, now) + amount * (60e9 / tpm)
    ttat = math.max(moved, now)
  end
  save()
  return 1
end

-- -1 stands for "no such limit" (unbounded).
local r_ok, r_value, r_left = true, 0, -1
if rpm then r_ok, r_value, r_left = step(rtat, 1, rpm, rburst) end
local t_ok, t_value, t_left = true, 0, -1
if tpm then t_ok, t_value, t_left = step(ttat, amount, tpm, tburst) end
if not (r_ok and t_ok) then
  local wait = 0
  if not r_ok then wait = math.max(wait, r_value) end
  if not t_ok then wait = math.max(wait, t_value) end
  -- The bucket that would have admitted is untouched: report what it had before.
  if rpm and r_ok then r_left = r_left + 1 end
  if tpm and t_ok then t_left = t_left + amount end
  return {0, math.ceil(wait), r_left, t_left}
end
if rpm then rtat = r_value end
if tpm then ttat = t_value end
save()
return {1, 0, r_left, t_left}
"#;

static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA_LUA));

/// A clock reading as Redis `TIME` gives it: whole seconds and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTime {
  pub seconds: u64,
  pub micros: u32,
}

pub struct RedisLimiterStore {
  /// `None` once closed. Each command clones the manager: clones share one multiplexed
  /// connection.
  connection: Mutex<Option<RedisConnection>>,
  /// `{prefix}rl:` before every key.
  key_prefix: String,
  /// For messages only (shown without its password).
  url: String,
}

impl RedisLimiterStore {
  /// `connection` comes from [`super::shared::connect_redis`].
  pub fn new(connection: RedisConnection, url: &str, prefix: &str) -> Self {
    RedisLimiterStore {
      connection: Mutex::new(Some(connection)),
      key_prefix: format!("{prefix}rl:"),
      url: url.to_string(),
    }
  }

  fn connection(&self) -> Result<RedisConnection> {
    self
      .connection
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .clone()
      .ok_or_else(|| GatewayError::config("the RateLimiter is closed"))
  }

  /// `{prefix}rl:{key}`, the key as the hash tag (one key per script).
  pub fn redis_key(&self, key: &str) -> String {
    format!("{}{}", self.key_prefix, hash_tag(key))
  }

  async fn run(
    &self,
    op: &str,
    key: &str,
    amount: i128,
    quota: &Quota,
    clock: Option<RedisTime>,
  ) -> Result<redis::Value> {
    let mut invocation = GCRA_SCRIPT.key(self.redis_key(key));
    invocation.arg(op).arg(amount.to_string());
    for rate in [quota.requests, quota.tokens] {
      let (per_minute, burst) = rate.as_ref().map_or((String::new(), String::new()), |r| {
        (r.per_minute.to_string(), r.burst.to_string())
      });
      invocation.arg(per_minute).arg(burst);
    }
    if let Some(time) = clock {
      invocation.arg(time.seconds).arg(time.micros);
    }
    let connection = self.connection()?;
    let invocation = &invocation;
    once_more_if_reconnecting(|| {
      let mut connection = connection.clone();
      async move { invocation.invoke_async(&mut connection).await }
    })
    .await
    .map_err(|error| unavailable("the RateLimiter's Redis store", &self.url, error))
  }

  /// `acquire` on a given clock instead of Redis's, so a test can replay a trace.
  pub async fn acquire_at(
    &self,
    key: &str,
    tokens: u64,
    quota: &Quota,
    clock: Option<RedisTime>,
  ) -> Result<Decision> {
    let reply = self
      .run("acquire", key, i128::from(tokens), quota, clock)
      .await?;
    decision(&reply).ok_or_else(|| {
      unavailable(
        "the RateLimiter's Redis store",
        &self.url,
        format!("unexpected script reply {reply:?}"),
      )
    })
  }

  pub async fn adjust_tokens_at(
    &self,
    key: &str,
    delta: i64,
    quota: &Quota,
    clock: Option<RedisTime>,
  ) -> Result<()> {
    if quota.tokens.is_none() {
      return Ok(());
    }
    self
      .run("adjust", key, i128::from(delta), quota, clock)
      .await
      .map(drop)
  }
}

/// `{allowed, retry_after_ns, remaining_requests, remaining_tokens}`, -1 = no such limit.
fn decision(reply: &redis::Value) -> Option<Decision> {
  let redis::Value::Array(items) = reply else {
    return None;
  };
  let numbers: Vec<i64> = items
    .iter()
    .map(|item| match item {
      redis::Value::Int(n) => Some(*n),
      _ => None,
    })
    .collect::<Option<_>>()?;
  let [allowed, wait_ns, requests, tokens] = numbers[..] else {
    return None;
  };
  let remaining = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
  Some(Decision {
    allowed: allowed == 1,
    retry_after: std::time::Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(0)),
    remaining_requests: remaining(requests),
    remaining_tokens: remaining(tokens),
  })
}

impl LimiterStore for RedisLimiterStore {
  fn acquire<'a>(
    &'a self,
    key: &'a str,
    tokens: u64,
    quota: &'a Quota,
  ) -> BoxFuture<'a, Result<Decision>> {
    self.acquire_at(key, tokens, quota, None).boxed()
  }

  fn adjust_tokens<'a>(
    &'a self,
    key: &'a str,
    delta: i64,
    quota: &'a Quota,
  ) -> BoxFuture<'a, Result<()>> {
    self.adjust_tokens_at(key, delta, quota, None).boxed()
  }

  fn close(&self) {
    self
      .connection
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .take();
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::gcra::{self, KeyState, Rate};
  use crate::backend::shared::connect_redis;

  const URL: &str = "redis://127.0.0.1:6379/";

  fn unique_prefix() -> String {
    format!("fgtest:{}:{:x}:", std::process::id(), fastrand::u64(..))
  }

  async fn store() -> RedisLimiterStore {
    let connection = connect_redis("test", URL)
      .await
      .expect("a Redis on 127.0.0.1:6379 (the tests need it)");
    RedisLimiterStore::new(connection, URL, &unique_prefix())
  }

  async fn drop_keys(store: &RedisLimiterStore) {
    let mut connection = store.connection().expect("open");
    let keys: Vec<String> = redis::cmd("KEYS")
      .arg(format!("{}*", store.key_prefix))
      .query_async(&mut connection)
      .await
      .unwrap_or_default();
    if !keys.is_empty() {
      let _: redis::RedisResult<i64> = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut connection)
        .await;
    }
  }

  fn rate(per_minute: f64, burst: f64) -> Rate {
    Rate { per_minute, burst }
  }

  const START: u64 = 1_700_000_000;

  /// A clock `offset_ns` after a fixed second, as Redis `TIME` gives it.
  fn at(offset_ns: u64) -> RedisTime {
    RedisTime {
      seconds: START + offset_ns / 1_000_000_000,
      micros: ((offset_ns % 1_000_000_000) / 1000) as u32,
    }
  }

  /// gcra.rs with the script's bookkeeping around it: times count from the key's epoch
  /// (the second of its first write), and a key whose buckets are full again is deleted,
  /// so the next write starts a new epoch.
  #[derive(Default)]
  struct Reference {
    state: KeyState,
    epoch: Option<u64>,
  }

  impl Reference {
    fn now(&self, time: RedisTime) -> (u64, f64) {
      let epoch = self.epoch.unwrap_or(time.seconds);
      let now = (time.seconds - epoch) as f64 * 1e9 + f64::from(time.micros) * 1000.0;
      (epoch, now)
    }

    fn wrote(&mut self, epoch: u64, now: f64) {
      if self.state.idle_after() <= now {
        *self = Reference::default();
      } else {
        self.epoch = Some(epoch);
      }
    }

    fn acquire(&mut self, time: RedisTime, tokens: u64, quota: &Quota) -> Decision {
      let (epoch, now) = self.now(time);
      let decision = gcra::acquire(&mut self.state, now, tokens, quota);
      if decision.allowed {
        self.wrote(epoch, now);
      }
      decision
    }

    fn adjust(&mut self, time: RedisTime, delta: i64, quota: &Quota) {
      let (epoch, now) = self.now(time);
      gcra::adjust_tokens(&mut self.state, now, delta, quota);
      self.wrote(epoch, now);
    }
  }

  #[tokio::test]
  async fn the_script_decides_as_gcra_rs_on_one_trace() {
    let store = store().await;
    let quotas = [
      Quota {
        requests: Some(rate(600.0, 600.0)),
        tokens: None,
      },
      Quota {
        requests: Some(rate(60.0, 5.0)),
        tokens: Some(rate(6000.0, 500.0)),
      },
      Quota {
        requests: None,
        tokens: Some(rate(7.0, 7.0)),
      },
      Quota {
        requests: Some(rate(7.0, 3.0)),
        tokens: Some(rate(700.0, 30.0)),
      },
    ];
    let mut random = fastrand::Rng::with_seed(10);
    for (index, quota) in quotas.iter().enumerate() {
      let key = format!("trace{index}");
      let mut reference = Reference::default();
      let mut offset_ns = 0u64;
      let mut admitted = 0;
      for call in 0..400 {
        // Bursts at one instant, then gaps from a microsecond to a few seconds.
        if random.u8(..4) == 0 {
          offset_ns += random.u64(1..4_000_000) * 1000;
        }
        let tokens = match random.u8(..10) {
          0 => random.u64(0..2_000),
          1..=3 => 0,
          _ => random.u64(1..60),
        };
        let time = at(offset_ns);
        if random.u8(..8) == 0 && call > 0 {
          let delta = random.i64(-100..100);
          reference.adjust(time, delta, quota);
          store
            .adjust_tokens_at(&key, delta, quota, Some(time))
            .await
            .expect("adjust");
          continue;
        }
        let expected = reference.acquire(time, tokens, quota);
        let got = store
          .acquire_at(&key, tokens, quota, Some(time))
          .await
          .expect("acquire");
        assert_eq!(
          got, expected,
          "quota {index}, call {call}, {tokens} tokens at {time:?}"
        );
        admitted += usize::from(got.allowed);
      }
      // The trace must exercise both outcomes to say anything.
      assert!(
        admitted > 10 && admitted < 390,
        "quota {index}: {admitted} admitted"
      );
    }
    drop_keys(&store).await;
  }

  #[tokio::test]
  async fn a_refusal_consumes_nothing_and_adjust_tokens_moves_the_bucket() {
    let store = store().await;
    let quota = Quota {
      requests: Some(rate(60.0, 5.0)),
      tokens: Some(rate(600.0, 100.0)),
    };
    let time = at(1_000_000_000);
    let first = store
      .acquire_at("k", 90, &quota, Some(time))
      .await
      .expect("a");
    assert!(first.allowed);
    assert_eq!((first.remaining_requests, first.remaining_tokens), (4, 10));
    let refused = store
      .acquire_at("k", 50, &quota, Some(time))
      .await
      .expect("a");
    assert!(!refused.allowed);
    assert_eq!(
      (refused.remaining_requests, refused.remaining_tokens),
      (4, 10)
    );
    // 40 tokens missing at 10 per second.
    assert_eq!(refused.retry_after, std::time::Duration::from_secs(4));
    // The call used 30 tokens, not 90: 60 come back.
    store
      .adjust_tokens_at("k", -60, &quota, Some(time))
      .await
      .expect("adjust");
    let after = store
      .acquire_at("k", 0, &quota, Some(time))
      .await
      .expect("a");
    assert_eq!(after.remaining_tokens, 70);
    drop_keys(&store).await;
  }

  #[tokio::test]
  async fn keys_expire_when_their_buckets_are_full_again() {
    let store = store().await;
    let quota = Quota {
      requests: Some(rate(60.0, 10.0)),
      tokens: None,
    };
    // Redis's own clock: three requests hold the key for three seconds.
    for _ in 0..3 {
      assert!(store.acquire("ttl", 0, &quota).await.expect("a").allowed);
    }
    let mut connection = store.connection().expect("open");
    let ttl_ms: i64 = redis::cmd("PTTL")
      .arg(store.redis_key("ttl"))
      .query_async(&mut connection)
      .await
      .expect("pttl");
    assert!((2_000..=3_001).contains(&ttl_ms), "{ttl_ms}");
    // A request that leaves the bucket full keeps no key at all.
    let quota_tokens = Quota {
      requests: None,
      tokens: Some(rate(600.0, 100.0)),
    };
    assert!(
      store
        .acquire("empty", 0, &quota_tokens)
        .await
        .expect("a")
        .allowed
    );
    let exists: i64 = redis::cmd("EXISTS")
      .arg(store.redis_key("empty"))
      .query_async(&mut connection)
      .await
      .expect("exists");
    assert_eq!(exists, 0);
    drop_keys(&store).await;
  }

  #[tokio::test]
  async fn the_epoch_moves_on_without_changing_decisions() {
    let store = store().await;
    let quota = Quota {
      requests: Some(rate(1.0, 1.0)),
      tokens: None,
    };
    let start = at(0);
    assert!(
      store
        .acquire_at("old", 0, &quota, Some(start))
        .await
        .expect("a")
        .allowed
    );
    // Two days on (a bucket of one request per minute is long full): admitted, and the
    // next request in the same second is refused for a minute, as with a fresh epoch.
    let later = at(2 * 86_400 * 1_000_000_000);
    assert!(
      store
        .acquire_at("old", 0, &quota, Some(later))
        .await
        .expect("a")
        .allowed
    );
    let refused = store
      .acquire_at("old", 0, &quota, Some(later))
      .await
      .expect("a");
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, std::time::Duration::from_secs(60));
    drop_keys(&store).await;
  }
}
