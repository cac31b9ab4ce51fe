//! One more try for a Redis command whose connection turned out to be dead.
//!
//! The connection manager learns that the server went away (restart, failover, a cut
//! connection) only from a command that fails on the dead connection; that error starts the
//! reconnection. Without a second try, every idle process would spend one call on that
//! discovery after each outage: a refused call under `failOpen: false`, a miss in the cache.
//! The second try waits for the new connection, so once the server is back the first call
//! already succeeds. While it is still down the second try fails as fast as the first.

use std::future::Future;

use redis::RedisResult;

pub async fn once_more_if_reconnecting<T, Attempt, Reply>(mut attempt: Attempt) -> RedisResult<T>
where
  Attempt: FnMut() -> Reply,
  Reply: Future<Output = RedisResult<T>>,
{
  match attempt().await {
    // A timeout may have reached the server: running a command twice is for connections
    // that were dead before it was sent.
    Err(error) if error.is_unrecoverable_error() && !error.is_timeout() => attempt().await,
    done => done,
  }
}
