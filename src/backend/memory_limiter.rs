//! The embedded limiter store: GCRA state per key in sharded maps. Keys whose buckets are
//! full again are dropped now and then, so memory follows the active keys only.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use futures_util::future::{self, BoxFuture, FutureExt};

use super::gcra::{self, Decision, KeyState, Quota};
use super::LimiterStore;
use crate::error::Result;

const SHARDS: usize = 16;
/// Inserts into a shard between two sweeps of its idle keys.
const SWEEP_EVERY: u32 = 1024;

#[derive(Default)]
struct Shard {
  keys: HashMap<String, KeyState>,
  inserts_since_sweep: u32,
}

pub struct MemoryLimiterStore {
  shards: Vec<Mutex<Shard>>,
  hasher: RandomState,
  /// quanta reads the CPU's time-stamp counter: no system call per check, which matters
  /// where `clock_gettime` is not served by the vDSO (sandboxes, some VMs).
  clock: quanta::Clock,
  origin: quanta::Instant,
}

impl Default for MemoryLimiterStore {
  fn default() -> Self {
    let clock = quanta::Clock::new();
    MemoryLimiterStore {
      shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
      hasher: RandomState::new(),
      origin: clock.now(),
      clock,
    }
  }
}

impl MemoryLimiterStore {
  /// Nanoseconds on this store's clock; starts above zero so a fresh key (TAT 0) is full.
  fn now_ns(&self) -> f64 {
    self.clock.now().duration_since(self.origin).as_nanos() as f64 + 1.0
  }

  fn with_key<T>(&self, key: &str, now: f64, apply: impl FnOnce(&mut KeyState) -> T) -> T {
    let index = (self.hasher.hash_one(key) as usize) % SHARDS;
    // A poisoned shard only means another thread panicked mid-update of plain numbers.
    let mut shard = self.shards[index]
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(state) = shard.keys.get_mut(key) {
      return apply(state);
    }
    shard.inserts_since_sweep += 1;
    if shard.inserts_since_sweep >= SWEEP_EVERY {
      shard.inserts_since_sweep = 0;
      shard.keys.retain(|_, state| state.idle_after() > now);
    }
    let state = shard.keys.entry(key.to_string()).or_default();
    apply(state)
  }

  /// `acquire` at a given time, for tests of the store itself.
  pub fn acquire_at(&self, key: &str, tokens: u64, quota: &Quota, now_ns: f64) -> Decision {
    self.with_key(key, now_ns, |state| {
      gcra::acquire(state, now_ns, tokens, quota)
    })
  }

  pub fn keys(&self) -> usize {
    self
      .shards
      .iter()
      .map(|shard| shard.lock().map(|s| s.keys.len()).unwrap_or(0))
      .sum()
  }
}

impl LimiterStore for MemoryLimiterStore {
  fn acquire<'a>(
    &'a self,
    key: &'a str,
    tokens: u64,
    quota: &'a Quota,
  ) -> BoxFuture<'a, Result<Decision>> {
    let decision = self.acquire_at(key, tokens, quota, self.now_ns());
    future::ready(Ok(decision)).boxed()
  }

  fn adjust_tokens<'a>(
    &'a self,
    key: &'a str,
    delta: i64,
    quota: &'a Quota,
  ) -> BoxFuture<'a, Result<()>> {
    let now = self.now_ns();
    self.with_key(key, now, |state| {
      gcra::adjust_tokens(state, now, delta, quota)
    });
    future::ready(Ok(())).boxed()
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::backend::gcra::Rate;

  #[test]
  fn keys_are_independent_and_idle_keys_are_swept() {
    let store = MemoryLimiterStore::default();
    let quota = Quota {
      requests: Some(Rate {
        per_minute: 60.0,
        burst: 1.0,
      }),
      tokens: None,
    };
    assert!(store.acquire_at("a", 0, &quota, 1.0).allowed);
    assert!(!store.acquire_at("a", 0, &quota, 1.0).allowed);
    assert!(store.acquire_at("b", 0, &quota, 1.0).allowed);
    // Long after, every key is full again and gets dropped as new keys arrive.
    let later = 3600e9;
    for i in 0..(SWEEP_EVERY as usize * SHARDS * 2) {
      store.acquire_at(&format!("k{i}"), 0, &quota, later + i as f64 * 2e9);
    }
    assert!(store.keys() < SWEEP_EVERY as usize * SHARDS * 2);
  }
}
