//! Route behaviour under a hand-driven clock and a seeded random source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::error::{ErrorCode, GatewayError};
use crate::pipeline::providers::{build_provider, Provider};
use crate::pipeline::ProviderConfig;

struct ManualEnvironment {
  start: Instant,
  elapsed: Mutex<Duration>,
  rng: Mutex<fastrand::Rng>,
}

impl ManualEnvironment {
  fn new() -> Arc<ManualEnvironment> {
    Arc::new(ManualEnvironment {
      start: Instant::now(),
      elapsed: Mutex::new(Duration::ZERO),
      rng: Mutex::new(fastrand::Rng::with_seed(42)),
    })
  }

  fn advance(&self, by: Duration) {
    *self.elapsed.lock().expect("clock") += by;
  }
}

impl Environment for ManualEnvironment {
  fn now(&self) -> Instant {
    self.start + *self.elapsed.lock().expect("clock")
  }

  fn unit(&self) -> f64 {
    self.rng.lock().expect("rng").f64()
  }
}

fn providers(names: &[&str]) -> HashMap<String, Arc<Provider>> {
  names
    .iter()
    .map(|name| {
      let config = ProviderConfig {
        name: name.to_string(),
        kind: "mock".into(),
        ..ProviderConfig::default()
      };
      let provider = build_provider(
        &config,
        &mut Vec::new(),
        &mut crate::pipeline::http::Clients::new(),
      )
      .expect("provider");
      (name.to_string(), Arc::new(provider))
    })
    .collect()
}

fn target(provider: &str, weight: f64, max_concurrent: Option<u32>) -> RouteTargetConfig {
  RouteTargetConfig {
    provider: provider.into(),
    model: format!("{provider}-model"),
    weight,
    max_concurrent,
    health_check: true,
  }
}

fn router_with(
  targets: Vec<RouteTargetConfig>,
  config: RoutingConfig,
  env: &Arc<ManualEnvironment>,
) -> Router {
  let route = RouteConfig {
    alias: "smart".into(),
    targets,
  };
  let env: Arc<dyn Environment> = env.clone();
  Router::with_environment(vec![route], config, &providers(&["a", "b", "c"]), env).expect("router")
}

fn call(router: &Router) -> CallTargets {
  call_with_priority(router, 0)
}

fn call_with_priority(router: &Router, priority: i32) -> CallTargets {
  router
    .targets_for("smart", false, priority, &CancellationToken::new())
    .expect("a route")
}

async fn lease(router: &Router) -> Lease {
  call(router).acquire().await.expect("a target")
}

fn server_error() -> GatewayError {
  GatewayError::protocol("500").retryable(true)
}

fn states(router: &Router) -> Vec<&'static str> {
  router.health().iter().map(|h| h.state).collect()
}

/// Fails calls on provider `name` until it is ejected; successes elsewhere.
async fn eject(router: &Router, name: &str) {
  for _ in 0..1000 {
    let lease = lease(router).await;
    if lease.provider.name == name {
      lease.failed(&server_error());
    } else {
      lease.succeeded(Duration::from_millis(10), None);
    }
    if router
      .health()
      .iter()
      .any(|h| h.provider == name && h.state == "ejected")
    {
      return;
    }
  }
  panic!("{name} was never ejected");
}

#[tokio::test]
async fn shares_follow_weights_with_no_load() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 3.0, None), target("b", 1.0, None)],
    RoutingConfig::default(),
    &env,
  );
  let mut on_a = 0;
  for _ in 0..4000 {
    let lease = lease(&router).await;
    if lease.provider.name == "a" {
      on_a += 1;
    }
    lease.succeeded(Duration::from_millis(5), None);
  }
  let share = f64::from(on_a) / 4000.0;
  assert!((share - 0.75).abs() < 0.03, "share of a: {share}");
}

#[tokio::test]
async fn a_busy_target_gets_less() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 1.0, None), target("b", 1.0, None)],
    RoutingConfig::default(),
    &env,
  );
  // Hold three calls on whichever targets they land on, then count new picks.
  let mut held = Vec::new();
  while held.len() < 3 || !held.iter().all(|l: &Lease| l.provider.name == "a") {
    let lease = lease(&router).await;
    if lease.provider.name == "a" {
      held.push(lease);
    } else {
      lease.succeeded(Duration::from_millis(5), None);
    }
  }
  let mut on_a = 0;
  for _ in 0..2000 {
    let lease = lease(&router).await;
    if lease.provider.name == "a" {
      on_a += 1;
    }
    drop(lease); // not armed: no verdict, the place is freed
  }
  // a with 3 in flight scores 1/4 against b's 1: a fifth of the picks.
  let share = f64::from(on_a) / 2000.0;
  assert!((share - 0.2).abs() < 0.04, "share of a: {share}");
}

#[tokio::test]
async fn a_slow_target_gets_less() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 1.0, None), target("b", 1.0, None)],
    RoutingConfig::default(),
    &env,
  );
  let mut on_a = 0;
  for _ in 0..2000 {
    let lease = lease(&router).await;
    let slow = lease.provider.name == "a";
    if slow {
      on_a += 1;
    }
    let latency = Duration::from_millis(if slow { 700 } else { 100 });
    lease.succeeded(latency, None);
  }
  let share = f64::from(on_a) / 2000.0;
  assert!(
    (share - 0.2).abs() < 0.04,
    "share of the slow target: {share}"
  );
}

/// Targets "a" then "b", ejected for 30 s at a time.
fn two_targets_cooling_for_30s() -> (Arc<ManualEnvironment>, Router) {
  let env = ManualEnvironment::new();
  let config = RoutingConfig {
    cooldown: Duration::from_secs(30),
    ..RoutingConfig::default()
  };
  let router = router_with(
    vec![target("a", 1.0, None), target("b", 1.0, None)],
    config,
    &env,
  );
  (env, router)
}

#[tokio::test]
async fn an_ejected_target_is_never_chosen_then_probed_once() {
  let (env, router) = two_targets_cooling_for_30s();
  eject(&router, "a").await;
  let health = router.health();
  assert!(health[0].ejected_until.is_some());
  for _ in 0..1000 {
    let lease = lease(&router).await;
    assert_eq!(lease.provider.name, "b");
    lease.succeeded(Duration::from_millis(10), None);
  }
  env.advance(Duration::from_secs(31));
  assert_eq!(states(&router), ["half_open", "healthy"]);
  // The next call is the probe; while it runs nobody else goes to a.
  let probe = lease(&router).await;
  assert_eq!(probe.provider.name, "a");
  for _ in 0..100 {
    let other = lease(&router).await;
    assert_eq!(other.provider.name, "b");
    other.succeeded(Duration::from_millis(10), None);
  }
  probe.failed(&server_error());
  assert_eq!(states(&router), ["ejected", "healthy"]);
  env.advance(Duration::from_secs(31));
  let probe = lease(&router).await;
  assert_eq!(probe.provider.name, "a");
  probe.succeeded(Duration::from_millis(10), None);
  assert_eq!(states(&router), ["healthy", "healthy"]);
}

#[tokio::test]
async fn an_abandoned_probe_lets_the_next_call_probe() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 1.0, None), target("b", 1.0, None)],
    RoutingConfig::default(),
    &env,
  );
  eject(&router, "a").await;
  env.advance(DEFAULT_COOLDOWN);
  let probe = lease(&router).await;
  assert_eq!(probe.provider.name, "a");
  drop(probe); // never began: no verdict
  assert_eq!(lease(&router).await.provider.name, "a");
}

#[tokio::test]
async fn a_high_error_rate_ejects_without_failures_in_a_row() {
  let env = ManualEnvironment::new();
  let config = RoutingConfig {
    consecutive_failures: 1000,
    error_rate: 0.5,
    error_rate_window: 10,
    ..RoutingConfig::default()
  };
  let router = router_with(vec![target("a", 1.0, None)], config, &env);
  // fail, ok, fail, ok, ...: never two in a row, but 60% of the window.
  for i in 0..10 {
    let lease = lease(&router).await;
    if i % 5 == 4 || i % 2 == 0 {
      lease.failed(&server_error());
    } else {
      lease.succeeded(Duration::from_millis(1), None);
    }
  }
  assert_eq!(states(&router), ["ejected"]);
  let error = call(&router).acquire().await.map(|_| ()).expect_err("none");
  assert_eq!(error.code, ErrorCode::UpstreamUnavailable);
  assert!(error.retry_after.is_some());
}

#[tokio::test]
async fn invalid_requests_and_aborts_never_count_toward_ejection() {
  let env = ManualEnvironment::new();
  let router = router_with(vec![target("a", 1.0, None)], RoutingConfig::default(), &env);
  for _ in 0..50 {
    let mut lease = lease(&router).await;
    lease.begin();
    lease.failed(&GatewayError::invalid_request("bad"));
    let mut lease = self::lease(&router).await;
    lease.begin();
    lease.failed(&GatewayError::aborted());
  }
  assert_eq!(states(&router), ["healthy"]);
  assert_eq!(router.health()[0].error_rate, 0.0);
}

#[tokio::test]
async fn an_attempt_cut_off_mid_way_counts_as_a_failure_unless_cancelled() {
  let env = ManualEnvironment::new();
  let config = RoutingConfig {
    consecutive_failures: 2,
    ..RoutingConfig::default()
  };
  let router = router_with(vec![target("a", 1.0, None)], config, &env);
  let cancel = CancellationToken::new();
  cancel.cancel();
  for _ in 0..5 {
    let mut cancelled = router
      .targets_for("smart", false, 0, &cancel)
      .expect("route");
    let mut lease = cancelled.acquire().await.expect("lease");
    lease.begin();
    drop(lease);
  }
  assert_eq!(states(&router), ["healthy"]);
  for _ in 0..2 {
    let mut lease = lease(&router).await;
    lease.begin();
    drop(lease); // the deadline dropped the attempt
  }
  assert_eq!(states(&router), ["ejected"]);
}

#[tokio::test]
async fn a_429_hint_cools_the_target_for_the_hinted_time() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 1.0, None), target("b", 1.0, None)],
    RoutingConfig::default(),
    &env,
  );
  let limited = GatewayError::new(ErrorCode::RateLimited, "slow down")
    .retryable(true)
    .with_retry_after(Some(Duration::from_secs(2)));
  loop {
    let lease = lease(&router).await;
    if lease.provider.name == "a" {
      lease.failed(&limited);
      break;
    }
    lease.succeeded(Duration::from_millis(1), None);
  }
  assert_eq!(states(&router), ["ejected", "healthy"]);
  for _ in 0..200 {
    let lease = lease(&router).await;
    assert_eq!(lease.provider.name, "b");
    lease.succeeded(Duration::from_millis(1), None);
  }
  env.advance(Duration::from_secs(2));
  assert_eq!(states(&router), ["healthy", "healthy"]);
  let mut seen_a = false;
  for _ in 0..200 {
    let lease = lease(&router).await;
    seen_a |= lease.provider.name == "a";
    lease.succeeded(Duration::from_millis(1), None);
  }
  assert!(seen_a);
}

#[tokio::test]
async fn after_a_failure_the_call_moves_to_an_untried_target() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![
      target("a", 1.0, None),
      target("b", 1.0, None),
      target("c", 1.0, None),
    ],
    RoutingConfig::default(),
    &env,
  );
  for _ in 0..50 {
    let mut targets = call(&router);
    let mut seen = Vec::new();
    let mut lease = targets.acquire().await.expect("first");
    loop {
      seen.push(lease.provider.name.clone());
      lease.succeeded(Duration::from_millis(1), None);
      match targets.alternative().await {
        Some(next) => lease = next,
        None => break,
      }
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);
  }
}

#[tokio::test]
async fn full_targets_queue_calls_by_priority_then_arrival() {
  let env = ManualEnvironment::new();
  let router = Arc::new(router_with(
    vec![target("a", 1.0, Some(1))],
    RoutingConfig::default(),
    &env,
  ));
  let holder = lease(&router).await;
  let (served, mut order) = mpsc::unbounded_channel();
  let mut tasks = Vec::new();
  for (label, priority) in [
    ("low-1", 0),
    ("high-1", 5),
    ("low-2", 0),
    ("high-2", 5),
    ("mid", 1),
  ] {
    let shared = router.clone();
    let served = served.clone();
    tasks.push(tokio::spawn(async move {
      let lease = call_with_priority(&shared, priority)
        .acquire()
        .await
        .expect("admitted");
      served.send(label).expect("order");
      tokio::task::yield_now().await;
      drop(lease);
    }));
    // Let each waiter reach the queue before the next arrives.
    while router.routes["smart"].lock().queue.len() < tasks.len() {
      tokio::task::yield_now().await;
    }
  }
  drop(holder);
  for task in tasks {
    task.await.expect("task");
  }
  let mut labels = Vec::new();
  while let Ok(label) = order.try_recv() {
    labels.push(label);
  }
  assert_eq!(labels, ["high-1", "high-2", "mid", "low-1", "low-2"]);
}

#[tokio::test]
async fn the_queue_is_bounded_and_a_waiter_that_leaves_frees_its_place() {
  let env = ManualEnvironment::new();
  let config = RoutingConfig {
    queue_limit: 1,
    ..RoutingConfig::default()
  };
  let router = router_with(vec![target("a", 1.0, Some(1))], config, &env);
  let holder = lease(&router).await;
  let mut first = call(&router);
  let waiting = tokio::time::timeout(Duration::from_millis(20), first.acquire()).await;
  assert!(waiting.is_err(), "the full target made the call wait");
  assert_eq!(router.routes["smart"].lock().queue.len(), 0);

  let mut queued = call(&router);
  let mut queued_acquire = Box::pin(queued.acquire());
  assert!(futures_util::poll!(&mut queued_acquire).is_pending());
  let full = call(&router).acquire().await.map(|_| ()).expect_err("full");
  assert_eq!(full.code, ErrorCode::UpstreamUnavailable);
  assert!(full.retry_after.is_some());
  drop(holder);
  let granted = queued_acquire.await.expect("granted");
  assert_eq!(granted.provider.name, "a");
  assert_eq!(router.health()[0].in_flight, 1);
  drop(granted);
  assert_eq!(router.health()[0].in_flight, 0);
}

#[tokio::test]
async fn a_slot_granted_to_a_departed_waiter_goes_back() {
  let env = ManualEnvironment::new();
  let router = router_with(
    vec![target("a", 1.0, Some(1))],
    RoutingConfig::default(),
    &env,
  );
  let holder = lease(&router).await;
  let mut waiter = call(&router);
  {
    let mut acquire = Box::pin(waiter.acquire());
    assert!(futures_util::poll!(&mut acquire).is_pending());
    drop(holder); // grants the slot to the waiter, which never looks at it
  }
  assert_eq!(router.health()[0].in_flight, 0);
  assert_eq!(lease(&router).await.provider.name, "a");
}

#[test]
fn bad_routes_are_config_errors() {
  let env = ManualEnvironment::new();
  let cases = [
    vec![target("nope", 1.0, None)],
    vec![target("a", 0.0, None)],
    vec![target("a", -1.0, None)],
    vec![target("a", f64::NAN, None)],
    vec![target("a", f64::INFINITY, None)],
    vec![target("a", 1.0, Some(0))],
    vec![],
  ];
  for targets in cases {
    let route = RouteConfig {
      alias: "smart".into(),
      targets: targets.clone(),
    };
    let env: Arc<dyn Environment> = env.clone();
    let error = Router::with_environment(
      vec![route],
      RoutingConfig::default(),
      &providers(&["a"]),
      env,
    )
    .map(|_| ())
    .expect_err("invalid");
    assert_eq!(error.code, ErrorCode::Config, "{targets:?}");
  }
}

#[tokio::test]
async fn the_first_usable_target_is_the_first_in_order_not_ejected() {
  let (env, router) = two_targets_cooling_for_30s();
  let first = |router: &Router| {
    let (provider, model) = router
      .first_usable_target("smart")
      .expect("an alias")
      .expect("a usable target");
    (provider.name.clone(), model)
  };
  assert_eq!(first(&router), ("a".to_string(), "a-model".to_string()));
  assert!(router.first_usable_target("a/a-model").is_none());
  eject(&router, "a").await;
  assert_eq!(first(&router), ("b".to_string(), "b-model".to_string()));
  eject(&router, "b").await;
  let none = router
    .first_usable_target("smart")
    .expect("an alias")
    .err()
    .expect("no usable target");
  assert_eq!(none.code, crate::error::ErrorCode::UpstreamUnavailable);
  env.advance(Duration::from_secs(31));
  assert_eq!(first(&router).0, "a");
}
