//! The route stage: a route alias spreads calls over its targets (deployments), moves a
//! failed call to another target, ejects failing targets for a cooldown (circuit
//! breaker), and holds calls in a priority queue while every target is at its
//! `maxConcurrent`. A plain "provider/model" is a single implicit target with none of
//! this bookkeeping.
//!
//! State is per route target: the same provider/model in two routes is two deployments.

mod admission;
mod breaker;
mod health;
mod select;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::providers::Provider;
use crate::error::{ErrorCode, GatewayError, Result};
use admission::AdmissionQueue;
use breaker::{Circuit, TargetStats};
use select::{choose, Candidate};

pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
pub const DEFAULT_ERROR_RATE: f64 = 0.5;
pub const DEFAULT_ERROR_RATE_WINDOW: usize = 20;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
pub const DEFAULT_QUEUE_LIMIT: usize = 1024;
/// A queued call that timed out is told to come back after about one call's time.
const DEFAULT_QUEUE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One deployment of a route alias, as configured.
#[derive(Debug, Clone)]
pub struct RouteTargetConfig {
  pub provider: String,
  pub model: String,
  pub weight: f64,
  pub max_concurrent: Option<u32>,
  /// Whether active health checks may call this target (when they are on).
  pub health_check: bool,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
  pub alias: String,
  pub targets: Vec<RouteTargetConfig>,
}

/// Circuit breaker, health check and admission parameters, shared by every route.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
  /// Ejected after this many failures in a row.
  pub consecutive_failures: u32,
  /// ...or when more than this share of the last `error_rate_window` calls failed
  /// (judged once the window holds at least min(window, 10) calls).
  pub error_rate: f64,
  pub error_rate_window: usize,
  /// How long an ejected target sits out before a single probe call.
  pub cooldown: Duration,
  /// Active health checks (a 1-token request per target) every interval; off when `None`.
  pub health_check_interval: Option<Duration>,
  /// Calls that may wait for a slot per route; beyond it, UPSTREAM_UNAVAILABLE at once.
  pub queue_limit: usize,
}

impl Default for RoutingConfig {
  fn default() -> Self {
    RoutingConfig {
      consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
      error_rate: DEFAULT_ERROR_RATE,
      error_rate_window: DEFAULT_ERROR_RATE_WINDOW,
      cooldown: DEFAULT_COOLDOWN,
      health_check_interval: None,
      queue_limit: DEFAULT_QUEUE_LIMIT,
    }
  }
}

/// Time and randomness, injectable so tests can drive cooldowns and draws.
pub(crate) trait Environment: Send + Sync {
  fn now(&self) -> Instant;
  /// Uniform in [0, 1).
  fn unit(&self) -> f64;
}

struct SystemEnvironment;

impl Environment for SystemEnvironment {
  fn now(&self) -> Instant {
    Instant::now()
  }

  fn unit(&self) -> f64 {
    fastrand::f64()
  }
}

/// One target's state, for `health()`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentHealth {
  pub route: String,
  pub provider: String,
  pub model: String,
  /// "healthy", "ejected" or "half_open".
  pub state: &'static str,
  pub in_flight: u32,
  /// Calls waiting in the route's admission queue (the same for every target of a route).
  pub queued: usize,
  pub ewma_latency_ms: Option<f64>,
  pub ewma_ttft_ms: Option<f64>,
  pub error_rate: f64,
  /// Until when the target is ejected or cooling down after a 429 (wall clock).
  pub ejected_until: Option<SystemTime>,
  /// The provider's key pool (`apiKeys`), each key by a short hash; empty without one.
  pub keys: Vec<crate::providers::key_pool::KeyHealth>,
}

struct Target {
  provider: Arc<Provider>,
  model: String,
  weight: f64,
  max_concurrent: Option<u32>,
  health_check: bool,
}

struct RouteState {
  stats: Vec<TargetStats>,
  queue: AdmissionQueue,
}

pub(crate) struct Route {
  alias: String,
  targets: Vec<Target>,
  config: Arc<RoutingConfig>,
  env: Arc<dyn Environment>,
  state: Mutex<RouteState>,
}

enum Take {
  Slot(Slot),
  /// Every usable target is at its limit: wait for a slot.
  Saturated,
  /// Every target is ejected, cooling down or excluded.
  Unavailable {
    retry_after: Option<Duration>,
  },
}

enum Outcome {
  Success {
    latency: Duration,
    ttft: Option<Duration>,
  },
  Failure {
    cool_for: Option<Duration>,
  },
  /// Says nothing about the target: the caller's own fault, or the caller left.
  Neutral,
}

impl Route {
  fn lock(&self) -> MutexGuard<'_, RouteState> {
    self.state.lock().unwrap_or_else(PoisonError::into_inner)
  }

  /// A slot on the best target not in `excluded`, if one is free. Runs under the lock.
  fn take(
    self: &Arc<Self>,
    state: &mut RouteState,
    excluded: &[bool],
    stream: bool,
    cancel: &CancellationToken,
  ) -> Take {
    let now = self.env.now();
    let mut candidates = Vec::with_capacity(self.targets.len());
    let mut saturated = false;
    let mut earliest: Option<Instant> = None;
    for (index, target) in self.targets.iter().enumerate() {
      let stats = &mut state.stats[index];
      stats.refresh(now);
      if excluded.get(index).copied().unwrap_or(false) {
        continue;
      }
      if let Some(until) = stats.unavailable_until() {
        earliest = Some(earliest.map_or(until, |e| e.min(until)));
        continue;
      }
      let at_limit = target.max_concurrent.is_some_and(|m| stats.in_flight >= m);
      // A probe in flight holds the target until its verdict, like a full target.
      if at_limit || stats.circuit == (Circuit::HalfOpen { probing: true }) {
        saturated = true;
        continue;
      }
      if stats.circuit == (Circuit::HalfOpen { probing: false }) {
        // The probe goes first, so a recovered target is found out by the next call.
        stats.circuit = Circuit::HalfOpen { probing: true };
        stats.in_flight += 1;
        return Take::Slot(Slot::new(self, index, true, cancel));
      }
      let latency_ms = if stream {
        stats.ewma_ttft_ms.or(stats.ewma_latency_ms)
      } else {
        stats.ewma_latency_ms
      };
      candidates.push(Candidate {
        index,
        weight: target.weight,
        in_flight: stats.in_flight,
        latency_ms,
      });
    }
    match choose(&candidates, self.env.unit()) {
      Some(index) => {
        state.stats[index].in_flight += 1;
        Take::Slot(Slot::new(self, index, false, cancel))
      }
      None if saturated => Take::Saturated,
      None => Take::Unavailable {
        retry_after: earliest.map(|until| until.saturating_duration_since(now)),
      },
    }
  }

  /// A slot for one attempt: at once when a target is free, else after waiting in the
  /// admission queue (the caller's deadline bounds the wait).
  async fn admit(
    self: &Arc<Self>,
    excluded: &[bool],
    stream: bool,
    priority: i32,
    cancel: &CancellationToken,
    queued: &AtomicBool,
  ) -> Result<Slot> {
    let (seq, receiver) = {
      let mut state = self.lock();
      // Nobody passes the queue: a free slot would already have gone to its head.
      if state.queue.is_empty() {
        match self.take(&mut state, excluded, stream, cancel) {
          Take::Slot(slot) => return Ok(slot),
          Take::Unavailable { retry_after } => return Err(self.no_target(retry_after)),
          Take::Saturated => {}
        }
      }
      if state.queue.len() >= self.config.queue_limit {
        return Err(
          GatewayError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
              "route '{}': every target is at maxConcurrent and the admission queue is full",
              self.alias
            ),
          )
          .with_retry_after(Some(self.queue_retry_after(&state))),
        );
      }
      state
        .queue
        .push(priority, excluded.to_vec(), stream, cancel.clone())
    };
    queued.store(true, Ordering::SeqCst);
    let mut waiting = QueuedCall {
      route: self,
      seq,
      receiver,
      settled: false,
    };
    let granted = (&mut waiting.receiver).await;
    waiting.settled = true;
    queued.store(false, Ordering::SeqCst);
    granted.unwrap_or_else(|_| Err(GatewayError::protocol("internal: admission queue closed")))
  }

  /// Hands freed slots to the queue's head, as long as it can use one. Runs under the lock.
  fn dispatch(self: &Arc<Self>, state: &mut RouteState) {
    while let Some(head) = state.queue.peek() {
      let excluded = head.excluded.clone();
      let (stream, cancel) = (head.stream, head.cancel.clone());
      let taken = self.take(state, &excluded, stream, &cancel);
      let granted = match taken {
        Take::Saturated => return,
        Take::Slot(slot) => Ok(slot),
        Take::Unavailable { retry_after } => Err(self.no_target(retry_after)),
      };
      let Some(waiter) = state.queue.pop() else {
        return;
      };
      // The waiter left between its timeout and our lock: the slot is free again.
      if let Err(Ok(mut slot)) = waiter.grant.send(granted) {
        slot.defused = true;
        Self::undo(state, &slot);
      }
    }
  }

  fn undo(state: &mut RouteState, slot: &Slot) {
    let stats = &mut state.stats[slot.index];
    stats.in_flight = stats.in_flight.saturating_sub(1);
    if slot.probe {
      stats.abandon_probe();
    }
  }

  fn finish(self: &Arc<Self>, slot: &Slot, outcome: Outcome) {
    let mut state = self.lock();
    let now = self.env.now();
    Self::undo(&mut state, slot);
    let stats = &mut state.stats[slot.index];
    match outcome {
      Outcome::Success { latency, ttft } => {
        stats.record_success(latency, ttft, slot.probe, &self.config)
      }
      Outcome::Failure { cool_for } => {
        stats.record_failure(now, slot.probe, &self.config);
        if let Some(until) = cool_for.and_then(|wait| now.checked_add(wait)) {
          stats.cool_down(until);
        }
      }
      Outcome::Neutral => {}
    }
    self.dispatch(&mut state);
  }

  /// The first target, in configured order, that is neither ejected nor cooling down: where
  /// a request that takes no slot (count_tokens) goes.
  fn first_usable(&self) -> Result<(Arc<Provider>, String)> {
    let now = self.env.now();
    let mut state = self.lock();
    let mut earliest: Option<Instant> = None;
    for (target, stats) in self.targets.iter().zip(state.stats.iter_mut()) {
      stats.refresh(now);
      match stats.unavailable_until() {
        Some(until) => earliest = Some(earliest.map_or(until, |e| e.min(until))),
        None => return Ok((target.provider.clone(), target.model.clone())),
      }
    }
    Err(self.no_target(earliest.map(|until| until.saturating_duration_since(now))))
  }

  fn no_target(&self, retry_after: Option<Duration>) -> GatewayError {
    GatewayError::new(
      ErrorCode::UpstreamUnavailable,
      format!(
        "route '{}' has no healthy target: every target is ejected or cooling down",
        self.alias
      ),
    )
    .with_retry_after(retry_after)
  }

  /// About when a slot frees up: the fastest target's recent latency.
  fn queue_retry_after(&self, state: &RouteState) -> Duration {
    state
      .stats
      .iter()
      .filter_map(|s| s.ewma_latency_ms)
      .min_by(f64::total_cmp)
      .and_then(|ms| crate::retry::seconds(ms / 1000.0))
      .filter(|d| !d.is_zero())
      .unwrap_or(DEFAULT_QUEUE_RETRY_AFTER)
  }

  pub(crate) fn queue_timeout_error(&self, waited: Duration) -> GatewayError {
    let retry_after = self.queue_retry_after(&self.lock());
    GatewayError::new(
      ErrorCode::UpstreamUnavailable,
      format!(
        "route '{}': every target stayed at maxConcurrent for {} ms (admission queue timeout)",
        self.alias,
        waited.as_millis()
      ),
    )
    .with_retry_after(Some(retry_after))
  }

  fn health(&self) -> Vec<DeploymentHealth> {
    let mut state = self.lock();
    let now = self.env.now();
    let wall = SystemTime::now();
    let queued = state.queue.len();
    self
      .targets
      .iter()
      .zip(state.stats.iter_mut())
      .map(|(target, stats)| {
        stats.refresh(now);
        let ejected_until = stats
          .unavailable_until()
          .map(|until| wall + until.saturating_duration_since(now));
        DeploymentHealth {
          route: self.alias.clone(),
          provider: target.provider.name.clone(),
          model: target.model.clone(),
          state: match stats.circuit {
            Circuit::Closed if ejected_until.is_some() => "ejected",
            Circuit::Closed => "healthy",
            Circuit::Open { .. } => "ejected",
            Circuit::HalfOpen { .. } => "half_open",
          },
          in_flight: stats.in_flight,
          queued,
          ewma_latency_ms: stats.ewma_latency_ms,
          ewma_ttft_ms: stats.ewma_ttft_ms,
          error_rate: stats.error_rate(),
          ejected_until,
          keys: target
            .provider
            .key_pool
            .as_ref()
            .map(|pool| pool.health())
            .unwrap_or_default(),
        }
      })
      .collect()
  }

  fn lease(self: &Arc<Self>, slot: Slot) -> Lease {
    let target = &self.targets[slot.index];
    Lease {
      provider: target.provider.clone(),
      model: target.model.clone(),
      attempt_timeout: target.provider.timeout,
      slot: Some(slot),
    }
  }
}

/// A place in the admission queue; leaving it early (deadline, abort) gives back any
/// slot that was granted in the meantime.
struct QueuedCall<'a> {
  route: &'a Arc<Route>,
  seq: u64,
  receiver: tokio::sync::oneshot::Receiver<Result<Slot>>,
  settled: bool,
}

impl Drop for QueuedCall<'_> {
  fn drop(&mut self) {
    if self.settled {
      return;
    }
    self.route.lock().queue.remove(self.seq);
    self.receiver.close();
    // Dropped outside the lock: a slot's drop takes it.
    let _granted = self.receiver.try_recv();
  }
}

/// One call in flight on one target. Dropping it frees the target's place; an attempt
/// that began and ended without a verdict (cut by the call's deadline) counts as a
/// failure unless the caller cancelled.
pub(crate) struct Slot {
  route: Arc<Route>,
  index: usize,
  probe: bool,
  armed: bool,
  outcome: Option<Outcome>,
  cancel: CancellationToken,
  /// Already given back under the lock.
  defused: bool,
}

impl Slot {
  fn new(route: &Arc<Route>, index: usize, probe: bool, cancel: &CancellationToken) -> Slot {
    Slot {
      route: route.clone(),
      index,
      probe,
      armed: false,
      outcome: None,
      cancel: cancel.clone(),
      defused: false,
    }
  }
}

impl Drop for Slot {
  fn drop(&mut self) {
    if self.defused {
      return;
    }
    let outcome = self.outcome.take().unwrap_or_else(|| {
      if self.armed && !self.cancel.is_cancelled() {
        Outcome::Failure { cool_for: None }
      } else {
        Outcome::Neutral
      }
    });
    let route = self.route.clone();
    route.finish(self, outcome);
  }
}

/// Where one attempt goes.
pub(crate) struct Lease {
  pub provider: Arc<Provider>,
  pub model: String,
  /// A route target gives up after its provider's `timeoutMs`, so the call can move on
  /// within its own deadline.
  pub attempt_timeout: Option<Duration>,
  slot: Option<Slot>,
}

impl Lease {
  /// The attempt is under way: from here an unexplained end is the target's failure.
  pub fn begin(&mut self) {
    if let Some(slot) = &mut self.slot {
      slot.armed = true;
    }
  }

  pub fn succeeded(mut self, latency: Duration, ttft: Option<Duration>) {
    if let Some(slot) = &mut self.slot {
      slot.outcome = Some(Outcome::Success { latency, ttft });
    }
  }

  pub fn failed(mut self, error: &GatewayError) {
    if let Some(slot) = &mut self.slot {
      slot.outcome = Some(match error.code {
        // The caller's fault or the caller's choice: nothing learned about the target.
        ErrorCode::InvalidRequest
        | ErrorCode::Aborted
        | ErrorCode::CallbackError
        | ErrorCode::Config => Outcome::Neutral,
        ErrorCode::RateLimited => Outcome::Failure {
          cool_for: error.retry_after,
        },
        _ => Outcome::Failure { cool_for: None },
      });
    }
  }
}

/// The targets one call may use: a route's, or the single provider of "provider/model".
pub(crate) enum CallTargets {
  Single {
    provider: Arc<Provider>,
    model: String,
  },
  Route(RouteCall),
}

pub(crate) struct RouteCall {
  route: Arc<Route>,
  tried: Vec<bool>,
  stream: bool,
  priority: i32,
  cancel: CancellationToken,
  queued: Arc<AtomicBool>,
  last_provider: Option<String>,
}

impl CallTargets {
  /// A target for the next attempt, waiting for a slot if every target is full.
  pub async fn acquire(&mut self) -> Result<Lease> {
    match self {
      CallTargets::Single { provider, model } => Ok(Lease {
        provider: provider.clone(),
        model: model.clone(),
        attempt_timeout: None,
        slot: None,
      }),
      CallTargets::Route(call) => {
        let none_excluded = vec![false; call.tried.len()];
        let slot = call
          .route
          .admit(
            &none_excluded,
            call.stream,
            call.priority,
            &call.cancel,
            &call.queued,
          )
          .await?;
        Ok(call.leased(slot))
      }
    }
  }

  /// After a failure: a target this call has not tried yet, if any can take it.
  pub async fn alternative(&mut self) -> Option<Lease> {
    let CallTargets::Route(call) = self else {
      return None;
    };
    let slot = call
      .route
      .admit(
        &call.tried,
        call.stream,
        call.priority,
        &call.cancel,
        &call.queued,
      )
      .await
      .ok()?;
    Some(call.leased(slot))
  }

  /// The provider's own timeout and retry count apply to a direct call; a route's call
  /// uses the request's or the gateway's.
  pub fn provider_timeout(&self) -> Option<Duration> {
    match self {
      CallTargets::Single { provider, .. } => provider.timeout,
      CallTargets::Route(_) => None,
    }
  }

  pub fn provider_max_retries(&self) -> Option<u32> {
    match self {
      CallTargets::Single { provider, .. } => provider.max_retries,
      CallTargets::Route(_) => None,
    }
  }

  /// Every deployment this call may use: ("provider/model", the vendor's model name).
  pub fn deployments(&self) -> Vec<(String, String)> {
    let deployment =
      |provider: &Provider, model: &str| (format!("{}/{model}", provider.name), model.to_string());
    match self {
      CallTargets::Single { provider, model } => vec![deployment(provider, model)],
      CallTargets::Route(call) => call
        .route
        .targets
        .iter()
        .map(|target| deployment(&target.provider, &target.model))
        .collect(),
    }
  }

  /// The provider of the latest attempt.
  pub fn provider_name(&self) -> Option<&str> {
    match self {
      CallTargets::Single { provider, .. } => Some(&provider.name),
      CallTargets::Route(call) => call.last_provider.as_deref(),
    }
  }

  /// What a deadline means for this call: a call still queued for a slot gets
  /// UPSTREAM_UNAVAILABLE (its targets are full), any other a TIMEOUT.
  pub fn deadline_error(&self, timeout: Duration) -> GatewayError {
    match self {
      CallTargets::Route(call) if call.queued.load(Ordering::SeqCst) => {
        call.route.queue_timeout_error(timeout)
      }
      _ => GatewayError::timeout(timeout),
    }
  }
}

impl RouteCall {
  fn leased(&mut self, slot: Slot) -> Lease {
    self.tried[slot.index] = true;
    let lease = self.route.lease(slot);
    self.last_provider = Some(lease.provider.name.clone());
    lease
  }
}

/// Every route, by alias.
pub(crate) struct Router {
  routes: HashMap<String, Arc<Route>>,
  /// Aliases in configuration order.
  aliases: Vec<String>,
  config: Arc<RoutingConfig>,
  health_checks: health::HealthChecks,
}

impl Router {
  pub fn new(
    routes: Vec<RouteConfig>,
    config: RoutingConfig,
    providers: &HashMap<String, Arc<Provider>>,
  ) -> Result<Router> {
    Self::with_environment(routes, config, providers, Arc::new(SystemEnvironment))
  }

  pub(crate) fn with_environment(
    routes: Vec<RouteConfig>,
    config: RoutingConfig,
    providers: &HashMap<String, Arc<Provider>>,
    env: Arc<dyn Environment>,
  ) -> Result<Router> {
    validate_config(&config)?;
    let config = Arc::new(config);
    let mut built = HashMap::new();
    let mut aliases = Vec::new();
    for route in routes {
      let alias = route.alias;
      if alias.is_empty() {
        return Err(GatewayError::config("a route needs a non-empty alias"));
      }
      if route.targets.is_empty() {
        return Err(GatewayError::config(format!(
          "route '{alias}' needs at least one target"
        )));
      }
      let mut targets = Vec::new();
      for (i, target) in route.targets.into_iter().enumerate() {
        let at = format!("routes.{alias}[{i}]");
        let provider = providers.get(&target.provider).ok_or_else(|| {
          GatewayError::config(format!(
            "{at} names provider '{}', which is not in providers",
            target.provider
          ))
        })?;
        if target.model.is_empty() {
          return Err(GatewayError::config(format!("{at} needs a model")));
        }
        if !(target.weight.is_finite() && target.weight > 0.0) {
          return Err(GatewayError::config(format!(
            "{at}.weight must be a finite number > 0"
          )));
        }
        if target.max_concurrent == Some(0) {
          return Err(GatewayError::config(format!(
            "{at}.maxConcurrent must be at least 1"
          )));
        }
        targets.push(Target {
          provider: provider.clone(),
          model: target.model,
          weight: target.weight,
          max_concurrent: target.max_concurrent,
          health_check: target.health_check,
        });
      }
      let state = RouteState {
        stats: targets.iter().map(|_| TargetStats::default()).collect(),
        queue: AdmissionQueue::default(),
      };
      let route = Arc::new(Route {
        alias: alias.clone(),
        targets,
        config: config.clone(),
        env: env.clone(),
        state: Mutex::new(state),
      });
      if built.insert(alias.clone(), route).is_some() {
        return Err(GatewayError::config(format!(
          "route '{alias}' is defined twice"
        )));
      }
      aliases.push(alias);
    }
    Ok(Router {
      routes: built,
      aliases,
      config,
      health_checks: health::HealthChecks::default(),
    })
  }

  /// The route stage: an alias's targets, or `None` when `model` is not an alias.
  pub fn targets_for(
    &self,
    model: &str,
    stream: bool,
    priority: i32,
    cancel: &CancellationToken,
  ) -> Option<CallTargets> {
    let route = self.routes.get(model)?;
    Some(CallTargets::Route(RouteCall {
      route: route.clone(),
      tried: vec![false; route.targets.len()],
      stream,
      priority,
      cancel: cancel.clone(),
      queued: Arc::new(AtomicBool::new(false)),
      last_provider: None,
    }))
  }

  /// An alias's first usable target (see `Route::first_usable`), or `None` when `model` is
  /// not an alias.
  pub fn first_usable_target(&self, model: &str) -> Option<Result<(Arc<Provider>, String)>> {
    self.routes.get(model).map(|route| route.first_usable())
  }

  /// Starts the active health checks once, from inside the runtime.
  pub fn start_health_checks(&self) {
    if let Some(interval) = self.config.health_check_interval {
      if self.health_checks.started() {
        return;
      }
      let routes: Vec<Arc<Route>> = self.routes.values().cloned().collect();
      self.health_checks.start(routes, interval);
    }
  }

  pub fn stop(&self) {
    self.health_checks.stop();
  }

  /// Route aliases, then "provider/model" for every route target.
  pub fn aliases(&self) -> &[String] {
    &self.aliases
  }

  pub fn target_models(&self) -> Vec<String> {
    self
      .routes
      .values()
      .flat_map(|route| {
        route
          .targets
          .iter()
          .map(|t| format!("{}/{}", t.provider.name, t.model))
      })
      .collect()
  }

  pub fn health(&self) -> Vec<DeploymentHealth> {
    self
      .aliases
      .iter()
      .filter_map(|alias| self.routes.get(alias))
      .flat_map(|route| route.health())
      .collect()
  }
}

fn validate_config(config: &RoutingConfig) -> Result<()> {
  if config.consecutive_failures == 0 {
    return Err(GatewayError::config(
      "routing.consecutiveFailures must be at least 1",
    ));
  }
  if !(config.error_rate.is_finite() && config.error_rate > 0.0 && config.error_rate <= 1.0) {
    return Err(GatewayError::config(
      "routing.errorRate must be a number in (0, 1]",
    ));
  }
  if config.error_rate_window == 0 {
    return Err(GatewayError::config(
      "routing.errorRateWindow must be at least 1",
    ));
  }
  if config.health_check_interval.is_some_and(|d| d.is_zero()) {
    return Err(GatewayError::config(
      "routing.healthCheckIntervalMs must be a positive number",
    ));
  }
  Ok(())
}

#[cfg(test)]
mod tests;
