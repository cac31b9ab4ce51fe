//! Reaching the shared engines (Redis, PostgreSQL) that the shared stores live on.
//!
//! Every shared store connects the same way: the URL is parsed and checked first (a bad URL
//! is a CONFIG error), the first connection must succeed within [`CONNECT_TIMEOUT`] (an
//! unreachable server at start is an UPSTREAM_UNAVAILABLE error naming the server), and the
//! URL shown in any message never carries its password.
//!
//! A `redisUrl` names one Redis, or a Redis Cluster (or Valkey cluster): several seed node
//! URLs separated by commas, or one seed URL with the scheme `redis+cluster://` /
//! `rediss+cluster://`. [`RedisConnection`] is either kind behind one interface; in cluster
//! mode every command and script is routed by its key, so every key a store writes carries
//! a hash tag ([`hash_tag`]) and the keys one script touches share it.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::error::{ErrorCode, GatewayError, Result};

/// How long a store waits for its server when it is created.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may take before it counts as a failure of the server. Commands are
/// single round trips on loopback or a LAN; anything slower means the server is in trouble,
/// and each piece's fault policy (fail open, miss, fail closed) should apply quickly.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// Cluster commands (MOVED/ASK redirections, reconnections after a failover included) get
/// this long in all before they count as a failure: a failover moves slots within a second
/// or two, and each store's fault policy must still apply soon after.
pub const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries of one cluster command (redirections, a dead node, a refreshed slot map).
const CLUSTER_RETRIES: u32 = 6;

/// The URL as it may appear in a message: scheme, host, port and path, without user or
/// password. An unparseable URL shows as its scheme only; a cluster's seed list shows
/// each seed so.
pub fn display_url(raw: &str) -> String {
  if raw.contains(',') {
    return raw
      .split(',')
      .map(|seed| display_one_url(seed.trim()))
      .collect::<Vec<_>>()
      .join(",");
  }
  display_one_url(raw)
}

fn display_one_url(raw: &str) -> String {
  match url::Url::parse(raw) {
    Ok(mut parsed) => {
      let _ = parsed.set_password(None);
      let _ = parsed.set_username("");
      parsed.set_query(None);
      parsed.to_string()
    }
    Err(_) => raw.split_once("://").map_or_else(
      || "(unparseable URL)".to_string(),
      |(scheme, _)| format!("{scheme}://…"),
    ),
  }
}

/// An error of the server behind `url`, safe to show: the underlying error's text is
/// scrubbed of the URL (a driver may echo it, password included).
pub fn unavailable(what: &str, url: &str, cause: impl std::fmt::Display) -> GatewayError {
  let shown = display_url(url);
  let detail = scrubbed(url, &cause.to_string());
  let mut error = GatewayError::new(
    ErrorCode::UpstreamUnavailable,
    format!("{what} at {shown} is unavailable: {detail}"),
  );
  error.retryable = true;
  error
}

/// `{text}`: a Redis Cluster hash tag. Keys carrying the same tag live in one slot, so one
/// script may touch them all. The tag is never empty (Redis hashes a whole key whose first
/// `{…}` is empty) and never ends early: `%` and `}` in `text` are written `%25` and `%7D`,
/// and an empty text is `%00`, which no other text gives. Different texts give different
/// tags, so keys stay distinct.
pub fn hash_tag(text: &str) -> String {
  if text.is_empty() {
    return "{%00}".to_string();
  }
  format!("{{{}}}", tag_chars(text))
}

fn tag_chars(text: &str) -> String {
  let mut escaped = String::with_capacity(text.len() + 2);
  for c in text.chars() {
    match c {
      '%' => escaped.push_str("%25"),
      '}' => escaped.push_str("%7D"),
      _ => escaped.push(c),
    }
  }
  escaped
}

/// The seed nodes of a cluster URL (`None`: one Redis). Several comma-separated URLs, or one
/// URL whose scheme is `redis+cluster` / `rediss+cluster` (the seed is that URL as
/// `redis://` / `rediss://`).
pub(crate) fn cluster_seeds(url: &str) -> Option<Vec<String>> {
  let seeds: Vec<String> = url
    .split(',')
    .map(|seed| {
      let seed = seed.trim();
      for (cluster, plain) in [
        ("redis+cluster://", "redis://"),
        ("rediss+cluster://", "rediss://"),
      ] {
        if let Some(rest) = seed.strip_prefix(cluster) {
          return format!("{plain}{rest}");
        }
      }
      seed.to_string()
    })
    .collect();
  let cluster_scheme = url.trim_start().contains("+cluster://");
  (seeds.len() > 1 || cluster_scheme).then_some(seeds)
}

/// `text` without `url` (shown as [`display_url`]) or any seed's password in it.
fn scrubbed(url: &str, text: &str) -> String {
  let mut text = text.to_string();
  if !url.is_empty() {
    text = text.replace(url, &display_url(url));
  }
  for seed in url.split(',') {
    if let Ok(parsed) = url::Url::parse(seed.trim()) {
      if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
        text = text.replace(password, "***");
      }
    }
  }
  text
}

fn not_a_redis_url(what: &str, url: &str, error: &redis::RedisError) -> GatewayError {
  GatewayError::config(format!(
    "{what}: redisUrl {} is not a Redis URL ({:?})",
    display_url(url),
    error.kind()
  ))
}

pub(crate) fn redis_client(what: &str, url: &str) -> Result<redis::Client> {
  redis::Client::open(url).map_err(|error| not_a_redis_url(what, url, &error))
}

fn cluster_client(
  what: &str,
  url: &str,
  seeds: &[String],
) -> Result<redis::cluster::ClusterClient> {
  redis::cluster::ClusterClient::builder(seeds.iter().map(String::as_str))
    .connection_timeout(CONNECT_TIMEOUT)
    .response_timeout(COMMAND_TIMEOUT)
    .overall_response_timeout(Some(CLUSTER_REQUEST_TIMEOUT))
    .retries(CLUSTER_RETRIES)
    .min_retry_wait(20)
    .max_retry_wait(500)
    .build()
    // Why the seeds do not make one cluster (different passwords, a Unix socket, …).
    .map_err(|error| {
      GatewayError::config(format!(
        "{what}: redisUrl {} is not a usable cluster seed list ({})",
        display_url(url),
        scrubbed(url, &error.to_string())
      ))
    })
}

/// Checks that `url` is a Redis (or Redis Cluster) URL without connecting: CONFIG if not.
pub fn check_redis_url(what: &str, url: &str) -> Result<()> {
  match cluster_seeds(url) {
    Some(seeds) => cluster_client(what, url, &seeds).map(drop),
    None => redis_client(what, url).map(drop),
  }
}

fn manager_config() -> ConnectionManagerConfig {
  ConnectionManagerConfig::new()
    .set_connection_timeout(Some(CONNECT_TIMEOUT))
    .set_response_timeout(Some(COMMAND_TIMEOUT))
    .set_number_of_retries(1)
    .set_max_delay(Duration::from_millis(500))
}

/// A connection to one Redis (a reconnecting manager) or to a Redis Cluster (which routes
/// each command by its key, follows MOVED/ASK and refreshes its slot map after a failover).
/// Clones share the underlying connections.
#[derive(Clone)]
pub enum RedisConnection {
  Single(ConnectionManager),
  Cluster(ClusterConnection),
}

/// Where a command that is not about one key (SCAN) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisNode {
  /// The one Redis.
  Single,
  /// A cluster primary.
  Primary { host: String, port: u16 },
}

impl ConnectionLike for RedisConnection {
  fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    match self {
      RedisConnection::Single(connection) => connection.req_packed_command(cmd),
      RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
    }
  }

  fn req_packed_commands<'a>(
    &'a mut self,
    cmd: &'a Pipeline,
    offset: usize,
    count: usize,
  ) -> RedisFuture<'a, Vec<Value>> {
    match self {
      RedisConnection::Single(connection) => connection.req_packed_commands(cmd, offset, count),
      RedisConnection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
    }
  }

  fn get_db(&self) -> i64 {
    match self {
      RedisConnection::Single(connection) => connection.get_db(),
      RedisConnection::Cluster(connection) => connection.get_db(),
    }
  }
}

impl RedisConnection {
  /// Every node that holds keys: the one Redis, or each cluster primary (from CLUSTER
  /// SLOTS, asked of any node), for commands such as SCAN that see one node's keys only.
  pub async fn primaries(&self) -> RedisResult<Vec<RedisNode>> {
    let RedisConnection::Cluster(connection) = self else {
      return Ok(vec![RedisNode::Single]);
    };
    let mut connection = connection.clone();
    let slots = connection
      .route_command(
        redis::cmd("CLUSTER").arg("SLOTS").clone(),
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
      )
      .await?;
    let mut nodes = Vec::new();
    if let Value::Array(ranges) = slots {
      for range in ranges {
        // [start, end, [host, port, id, …], replicas…]
        let Value::Array(fields) = range else {
          continue;
        };
        let Some(Value::Array(primary)) = fields.get(2) else {
          continue;
        };
        let host = match primary.first() {
          Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
          Some(Value::SimpleString(text)) => text.clone(),
          _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
          continue;
        };
        let Ok(port) = u16::try_from(*port) else {
          continue;
        };
        let node = RedisNode::Primary { host, port };
        if !nodes.contains(&node) {
          nodes.push(node);
        }
      }
    }
    Ok(nodes)
  }

  /// Runs `cmd` on `node` (see [`RedisConnection::primaries`]).
  pub async fn query_on<T: redis::FromRedisValue>(
    &self,
    node: &RedisNode,
    cmd: &Cmd,
  ) -> RedisResult<T> {
    match (self, node) {
      (RedisConnection::Cluster(connection), RedisNode::Primary { host, port }) => {
        let reply = connection
          .clone()
          .route_command(
            cmd.clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
              host: host.clone(),
              port: *port,
            }),
          )
          .await?;
        Ok(redis::from_redis_value(reply)?)
      }
      _ => cmd.query_async(&mut self.clone()).await,
    }
  }
}

/// A reconnecting Redis connection that connects in the background: it returns at once
/// (only a bad URL fails, with CONFIG), and the first command waits for the connection
/// (at most [`CONNECT_TIMEOUT`]), then fails like any command while the server is away.
/// Must run inside the tokio runtime. [`ping`] waits for the connection on purpose.
pub fn connect_redis_lazy(what: &str, url: &str) -> Result<RedisConnection> {
  if let Some(seeds) = cluster_seeds(url) {
    let client = cluster_client(what, url, &seeds)?;
    return Ok(RedisConnection::Cluster(
      client.get_pending_async_connection_with_config(
        // The config replaces the client's per-node timeouts: the same ones again.
        redis::cluster::ClusterConfig::new()
          .set_connection_timeout(CONNECT_TIMEOUT)
          .set_response_timeout(COMMAND_TIMEOUT),
      ),
    ));
  }
  let client = redis_client(what, url)?;
  ConnectionManager::new_lazy_with_config(client, manager_config())
    .map(RedisConnection::Single)
    .map_err(|error| unavailable(what, url, error))
}

/// Waits until `connection` answers (at most [`CONNECT_TIMEOUT`] for the connection plus
/// one command): an unreachable server is UPSTREAM_UNAVAILABLE naming it without its
/// password.
pub async fn ping(what: &str, url: &str, connection: &RedisConnection) -> Result<()> {
  let mut connection = connection.clone();
  let answered = tokio::time::timeout(
    CONNECT_TIMEOUT + COMMAND_TIMEOUT,
    redis::cmd("PING").query_async::<()>(&mut connection),
  )
  .await;
  match answered {
    Ok(Ok(())) => Ok(()),
    Ok(Err(error)) => Err(unavailable(what, url, error)),
    Err(_) => Err(unavailable(
      what,
      url,
      format!(
        "no answer within {} ms",
        (CONNECT_TIMEOUT + COMMAND_TIMEOUT).as_millis()
      ),
    )),
  }
}

/// Opens a reconnecting Redis connection. The first connection is made here, so a server
/// that is down at start fails now rather than on the first command; after that the
/// manager reconnects in the background and each command fails fast while the server is
/// away.
pub async fn connect_redis(what: &str, url: &str) -> Result<RedisConnection> {
  let connecting = async {
    match cluster_seeds(url) {
      Some(seeds) => {
        let client = cluster_client(what, url, &seeds)?;
        client
          .get_async_connection()
          .await
          .map(RedisConnection::Cluster)
          .map_err(|error| unavailable(what, url, error))
      }
      None => {
        let client = redis_client(what, url)?;
        ConnectionManager::new_with_config(client, manager_config())
          .await
          .map(RedisConnection::Single)
          .map_err(|error| unavailable(what, url, error))
      }
    }
  };
  match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
    Ok(result) => result,
    Err(_) => Err(unavailable(
      what,
      url,
      format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis()),
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn display_url_drops_credentials() {
    assert_eq!(
      display_url("redis://user:s3cret@127.0.0.1:6379/2"),
      "redis://127.0.0.1:6379/2"
    );
    assert_eq!(
      display_url("postgres://app:pw@db:5432/ledger?sslmode=disable"),
      "postgres://db:5432/ledger"
    );
    assert_eq!(display_url("not a url"), "(unparseable URL)");
  }

  use redis::cluster_routing::Slot;

  #[test]
  fn hash_tags_are_never_empty_never_cut_short_and_distinct() {
    assert_eq!(hash_tag("alice"), "{alice}");
    assert_eq!(hash_tag(""), "{%00}");
    assert_eq!(hash_tag("a}b"), "{a%7Db}");
    assert_eq!(hash_tag("50%"), "{50%25}");
    let texts = ["", "%00", "%", "}", "%7D", "a}b", "a%7Db", "{", "{}", "x"];
    let tags: std::collections::HashSet<String> = texts.iter().map(|t| hash_tag(t)).collect();
    assert_eq!(tags.len(), texts.len());
  }

  /// What the cluster hashes: the tag when there is a non-empty `{…}`, else the whole key.
  fn slot(key: &str) -> Slot {
    Slot::for_key(key.as_bytes())
  }

  #[test]
  fn keys_with_one_tag_share_a_slot_whatever_follows_and_whatever_the_user() {
    for user in ["alice", "", "}", "{", "{}", "a}b{c", "%", "ünï"] {
      for prefix in ["ferrogate:", "", "app{x}:", "app{:", "a}b:"] {
        let day = format!("{prefix}budget:{}:day:2025-11-15", hash_tag(user));
        let month = format!("{prefix}budget:{}:month:2025-11", hash_tag(user));
        assert_eq!(slot(&day), slot(&month), "{day} / {month}");
      }
    }
    // And different tags spread: 200 users land on many slots.
    let slots: std::collections::HashSet<Slot> = (0..200)
      .map(|i| {
        slot(&format!(
          "ferrogate:budget:{}:day:x",
          hash_tag(&format!("user{i}"))
        ))
      })
      .collect();
    assert!(slots.len() > 150, "{} slots", slots.len());
  }

  #[test]
  fn cluster_urls_are_seed_lists_or_the_cluster_scheme() {
    assert_eq!(cluster_seeds("redis://127.0.0.1:6379/"), None);
    assert_eq!(
      cluster_seeds("redis://:pw@10.0.0.1:7000, redis://10.0.0.2:7000"),
      Some(vec![
        "redis://:pw@10.0.0.1:7000".to_string(),
        "redis://10.0.0.2:7000".to_string()
      ])
    );
    assert_eq!(
      cluster_seeds("rediss+cluster://u:pw@cache:7000"),
      Some(vec!["rediss://u:pw@cache:7000".to_string()])
    );
    assert_eq!(
      display_url("redis+cluster://u:hunter2@a:7000,redis://:hunter2@b:7001/"),
      "redis+cluster://a:7000,redis://b:7001/"
    );
    assert!(check_redis_url("RateLimiter", "redis://a:1,http://b:2").is_err());
    assert!(check_redis_url("RateLimiter", "redis+cluster://a:1").is_ok());
  }

  #[test]
  fn a_cluster_error_never_shows_a_seed_password() {
    let url = "redis://:hunter2@127.0.0.1:1,redis://:swordfish@127.0.0.1:2";
    let error = unavailable(
      "RateLimiter",
      url,
      "no node at redis://:swordfish@127.0.0.1:2",
    );
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    assert!(!error.message.contains("swordfish"), "{}", error.message);
  }

  #[tokio::test]
  async fn an_unreachable_cluster_is_a_clear_error() {
    let mixed = check_redis_url(
      "ResponseCache",
      "redis://:hunter2@127.0.0.1:1,redis://127.0.0.1:2",
    )
    .err()
    .map(|e| (e.code, e.message));
    assert!(
      matches!(&mixed, Some((ErrorCode::Config, m)) if m.contains("different password") && !m.contains("hunter2")),
      "{mixed:?}"
    );
    let message = connect_redis(
      "ResponseCache",
      "redis://:hunter2@127.0.0.1:1,redis://:hunter2@127.0.0.1:2",
    )
    .await
    .err()
    .map(|e| e.message)
    .unwrap_or_default();
    assert!(
      message
        .starts_with("ResponseCache at redis://127.0.0.1:1,redis://127.0.0.1:2 is unavailable"),
      "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
  }

  #[test]
  fn unavailable_never_shows_the_password() {
    let url = "redis://:hunter2@127.0.0.1:1/";
    let error = unavailable(
      "RateLimiter",
      url,
      format!("failed to reach {url}: hunter2 refused"),
    );
    assert!(!error.message.contains("hunter2"), "{}", error.message);
    assert_eq!(error.code, ErrorCode::UpstreamUnavailable);
  }

  #[tokio::test]
  async fn unreachable_redis_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let error = connect_redis("RateLimiter", "redis://127.0.0.1:1/")
      .await
      .err()
      .map(|e| e.message);
    let message = error.unwrap_or_default();
    assert!(
      message.starts_with("RateLimiter at redis://127.0.0.1:1/ is unavailable"),
      "{message}"
    );
  }

  #[test]
  fn bad_url_is_config() {
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build();
    let Ok(runtime) = runtime else { return };
    let result = runtime.block_on(connect_redis("ResponseCache", "http://example"));
    assert_eq!(result.err().map(|e| e.code), Some(ErrorCode::Config));
  }
}
