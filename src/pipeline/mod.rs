//! The call pipeline. `Gateway::execute` runs the stages of one call in order:
//!
//!   guardrails (input) → route (the targets the call may use) → limits → budget → cache →
//!   attempt (a target chosen, retries, under one deadline) → response → settle (price,
//!   ledger) → guardrails (output; streamed events pass them as they go) → record
//!
//! Each stage lives in the file its name says; the provider layer knows none of them.

mod attempt;
mod budget;
mod cache;
mod count_tokens;
mod embed;
mod forward;
mod guardrails;
pub(crate) mod http;
mod kind;
mod ledger;
mod limits;
mod native;
mod providers;
mod record;
mod response;
mod route;
mod semantic;
mod telemetry;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::Either;
use tokio_util::sync::CancellationToken;

use crate::backend::responses::{ResponseStore, ResponseStoreConfig};
use crate::cache::ResponseCache;
use crate::costs::{CostTracker, Reservation};
use crate::error::{ErrorCode, GatewayError, Result};
use crate::guardrails::{Findings, Guardrails};
use crate::limiter::RateLimiter;
use crate::metrics::Metrics;
use crate::secret::{redact, Secret};
use crate::semantic::SemanticCache;
use crate::tokens::PromptTokens;
use crate::types::{ChatRequest, ChatResponse};

pub use attempt::MAX_RESPONSE_BYTES;
pub use cache::Served;
pub use forward::{Consumer, EventSender, EventSink, StreamItem};
pub use kind::{Kind, KindSpec, Preset, WireApi};
pub use limits::ANONYMOUS;
pub use native::NativeCall;
pub use providers::ProviderConfig;
pub use record::{
  CallHook, CallObserver, CallRecord, GatewayStats, Operation, Outcome, StatsSnapshot,
};
pub use response::estimate_usage;
pub use route::{DeploymentHealth, RouteConfig, RouteTargetConfig, RoutingConfig};
pub use telemetry::{AttemptSpan, CallTrace, Report as TraceReport};

use attempt::{RetryPolicy, Work};
use ledger::Accounting;
use providers::{build_provider, Backend, Provider};
#[cfg(test)]
pub(crate) use record::RecordedCalls;
use record::Trace;
use response::CallTiming;
use route::{CallTargets, Router};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct GatewayConfig {
  pub providers: Vec<ProviderConfig>,
  pub routes: Vec<RouteConfig>,
  pub routing: RoutingConfig,
  pub timeout: Duration,
  pub max_retries: u32,
  /// First backoff step; doubles per attempt.
  pub retry_base: Duration,
  /// Provider for models with no configured "provider/" prefix.
  pub default_provider: Option<String>,
  pub cache: Option<Arc<ResponseCache>>,
  /// Asked after `cache` misses.
  pub semantic_cache: Option<Arc<SemanticCache>>,
  pub rate_limiter: Option<Arc<RateLimiter>>,
  pub on_call: Option<CallHook>,
  /// Prices, records and budgets every call; without it `costUsd` uses the built-in prices.
  pub costs: Option<Arc<CostTracker>>,
  /// Where stored Responses live (`GatewayOptions.responses`); in memory by default.
  pub responses: ResponseStoreConfig,
  /// `GatewayOptions.guardrails`.
  pub guardrails: Option<Arc<Guardrails>>,
}

impl Default for GatewayConfig {
  fn default() -> Self {
    GatewayConfig {
      providers: Vec::new(),
      routes: Vec::new(),
      routing: RoutingConfig::default(),
      timeout: DEFAULT_TIMEOUT,
      max_retries: DEFAULT_MAX_RETRIES,
      retry_base: DEFAULT_RETRY_BASE,
      default_provider: None,
      cache: None,
      semantic_cache: None,
      rate_limiter: None,
      on_call: None,
      costs: None,
      responses: ResponseStoreConfig::default(),
      guardrails: None,
    }
  }
}

/// Per-call settings from the request that are not sent to the vendor.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  /// Admission order when a route's targets are all busy: higher first.
  pub priority: i32,
  /// `cache: false` on the request.
  pub bypass_cache: bool,
  /// Passed through to `onCall`.
  pub metadata: Vec<(String, String)>,
  /// The front door's protocol (`CallRecord.ingress`).
  pub ingress: Option<&'static str>,
  /// Passed through to `onCall` (`CallRecord.warnings`) when the call was translated.
  pub warnings: Vec<String>,
  /// The client's own request, for a target that speaks its protocol (the front door).
  pub native: Option<Arc<NativeCall>>,
  /// Set when a cache answers, before the first event is sent.
  pub served: Arc<std::sync::OnceLock<Served>>,
  /// The call's W3C trace context: sent upstream, its attempts noted (`pipeline::telemetry`).
  pub trace: Option<Arc<CallTrace>>,
}

/// A call's result and the usage it was billed, also when it failed or was cut off
/// (prompt plus delivered output of a stream that ended early): what key quotas settle with.
pub struct Executed {
  pub result: Result<ChatResponse>,
  pub billed: crate::types::Usage,
}

pub struct Gateway {
  providers: HashMap<String, Arc<Provider>>,
  router: Router,
  timeout: Duration,
  max_retries: u32,
  retry_base: Duration,
  secrets: Vec<Secret>,
  default_provider: Option<Arc<Provider>>,
  metrics: Metrics,
  cache: Option<Arc<ResponseCache>>,
  semantic_cache: Option<Arc<SemanticCache>>,
  rate_limiter: Option<Arc<RateLimiter>>,
  on_call: Option<CallHook>,
  accounting: Accounting,
  stats: GatewayStats,
  responses: Arc<dyn ResponseStore>,
  guardrails: Option<Arc<Guardrails>>,
}

/// Builds, once per process and on a thread of its own, what the first call would otherwise
/// build inside itself: the estimating tokenizer and the redaction rules (tens of milliseconds
/// in a release build, seconds in a debug one). Built inside a call, they hold a runtime
/// worker for that long, and that call's cancel and every call sharing the worker wait.
fn warm_up() {
  static STARTED: std::sync::Once = std::sync::Once::new();
  STARTED.call_once(|| {
    // Without a thread of its own, the first call builds them, as before.
    let _ = std::thread::Builder::new()
      .name("ferrogate-warm-up".into())
      .spawn(|| {
        crate::tokens::load_estimator();
        crate::secret::compile_rules();
      });
  });
}

impl Gateway {
  pub fn new(config: GatewayConfig) -> Result<Gateway> {
    warm_up();
    let mut providers = HashMap::new();
    let mut secrets = Vec::new();
    let mut clients = http::Clients::new();
    for provider in config.providers {
      if provider.name.is_empty() {
        return Err(GatewayError::config("a provider needs a non-empty name"));
      }
      let built = build_provider(&provider, &mut secrets, &mut clients)?;
      providers.insert(provider.name.clone(), Arc::new(built));
    }
    let default_provider = match &config.default_provider {
      None => None,
      Some(name) => Some(providers.get(name).cloned().ok_or_else(|| {
        GatewayError::config(format!(
          "defaultProvider '{name}' is not one of the configured providers"
        ))
      })?),
    };
    let router = Router::new(config.routes, config.routing, &providers)?;
    let mock_providers = providers
      .values()
      .filter(|p| matches!(p.backend, Backend::Mock(_)))
      .map(|p| p.name.clone())
      .collect();
    let responses = crate::backend::responses::build(&config.responses)?;
    let gateway = Gateway {
      providers,
      router,
      timeout: config.timeout,
      max_retries: config.max_retries,
      retry_base: config.retry_base,
      secrets,
      default_provider,
      metrics: Metrics::default(),
      cache: config.cache,
      semantic_cache: config.semantic_cache,
      rate_limiter: config.rate_limiter,
      on_call: config.on_call,
      accounting: Accounting::new(config.costs, mock_providers),
      stats: GatewayStats::default(),
      responses,
      guardrails: config.guardrails,
    };
    // Configured models and route targets keep their metric labels; the models clients
    // invent through a defaultProvider are bounded.
    gateway.metrics.set_configured_models(gateway.models());
    Ok(gateway)
  }

  /// The store of Responses kept with `store: true` (for `previous_response_id`, GET, DELETE).
  pub fn response_store(&self) -> &dyn ResponseStore {
    self.responses.as_ref()
  }

  /// Route aliases, then "provider/model" for every model named in a
  /// route or advertised by a provider, sorted.
  pub fn models(&self) -> Vec<String> {
    let mut models: Vec<String> = self
      .providers
      .values()
      .flat_map(|p| p.models.iter().map(move |m| format!("{}/{m}", p.name)))
      .chain(self.router.target_models())
      .collect();
    models.sort();
    models.dedup();
    let aliases = self.router.aliases();
    models.retain(|m| !aliases.contains(m));
    aliases.iter().cloned().chain(models).collect()
  }

  /// One entry per route target.
  pub fn health(&self) -> Vec<DeploymentHealth> {
    self.router.health()
  }

  /// Stops background work (active health checks).
  pub fn close(&self) {
    self.router.stop();
  }

  /// Writes what the calls so far left to the backends: the cost tracker's ledger rows and
  /// budget settlements, the response cache's shared-tier writes. The backends stay open
  /// (whoever made them may share them and closes them). Failures are counted by the
  /// backends themselves (e.g. the tracker's `ledgerFailed`), never raised: this runs at
  /// shutdown, where nobody could act on them.
  pub async fn flush_backends(&self) {
    // Each backend bounds its own wait; this bounds the whole, so a shutdown never hangs on
    // a server that went away (what is left stays queued, e.g. `ledgerBuffered`).
    const FLUSH_PATIENCE: Duration = Duration::from_secs(10);
    let flush = async {
      if let Some(tracker) = self.accounting.tracker() {
        let _ = tracker.flush_async().await;
      }
      if let Some(cache) = &self.cache {
        cache.flush().await;
      }
    };
    let _ = tokio::time::timeout(FLUSH_PATIENCE, flush).await;
  }

  /// The route stage: a route alias gives its targets; anything else is "provider/model".
  fn route(
    &self,
    model: &str,
    options: &CallOptions,
    stream: bool,
    cancel: &CancellationToken,
  ) -> Result<CallTargets> {
    self.router.start_health_checks();
    if let Some(targets) = self
      .router
      .targets_for(model, stream, options.priority, cancel)
    {
      return Ok(targets);
    }
    let (provider, model) = self.resolve(model)?;
    Ok(CallTargets::Single { provider, model })
  }

  /// "provider/model" → the provider and the vendor's model name. Provider names may
  /// themselves contain '/', so the longest configured prefix wins.
  fn resolve(&self, model: &str) -> Result<(Arc<Provider>, String)> {
    let best = self
      .providers
      .iter()
      .filter(|(name, _)| {
        model.len() > name.len() + 1
          && model.starts_with(name.as_str())
          && model.as_bytes()[name.len()] == b'/'
      })
      .max_by_key(|(name, _)| name.len());
    match best {
      Some((name, provider)) => Ok((provider.clone(), model[name.len() + 1..].to_string())),
      None => match &self.default_provider {
        Some(provider) if !model.is_empty() => Ok((provider.clone(), model.to_string())),
        _ => {
          let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
          names.sort();
          Err(GatewayError::not_found(format!(
            "no provider for model '{model}': use \"provider/model\" with one of [{}]",
            names.join(", ")
          )))
        }
      },
    }
  }

  /// Metrics and the latency anomaly detector see every call once, whatever its outcome.
  /// A failed call is labelled with the provider it resolved to, as its call record is,
  /// also when its error names none (an abort by the caller).
  fn observe(&self, model: &str, trace: &Trace, result: &Result<ChatResponse>) {
    let resolved = match result {
      Ok(response) => Some(response.provider.clone()),
      Err(error) => error
        .provider
        .clone()
        .or_else(|| trace.provider().map(str::to_string)),
    };
    let vendor_model = match &resolved {
      Some(provider) => model
        .strip_prefix(provider.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(model),
      None => model,
    };
    self
      .metrics
      .record_call(resolved.as_deref(), vendor_model, result);
  }

  pub fn metrics(&self) -> &Metrics {
    &self.metrics
  }

  /// Prometheus text; the circuit state of every route target is read at scrape time.
  pub fn render_metrics(&self) -> String {
    for target in self.health() {
      let state = match target.state {
        "healthy" => 0,
        "half_open" => 1,
        _ => 2,
      };
      self
        .metrics
        .set_circuit_state(&target.route, &target.provider, &target.model, state);
    }
    for provider in self.providers.values() {
      for key in provider.key_pool.iter().flat_map(|pool| pool.health()) {
        let state = match key.state {
          "active" => 0,
          "resting" => 1,
          _ => 2,
        };
        self.metrics.set_key_state(&provider.name, &key.id, state);
      }
    }
    // The cache, limiter and budget stages count into `stats`; the exposition shows the same numbers.
    let stats = self.stats();
    self.metrics.set_stage_counters(
      stats.cache_hits,
      stats.cache_misses,
      stats.limiter_refusals,
      stats.budget_refusals,
    );
    self.metrics.render()
  }

  /// Runs one call to completion. `model` is a route alias or "provider/model";
  /// `req.model` is ignored.
  pub async fn execute(
    &self,
    model: &str,
    req: ChatRequest,
    options: CallOptions,
    sink: EventSink,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Result<ChatResponse> {
    let (req, options) = (Box::new(req), Box::new(options));
    self
      .execute_billed(model, req, options, sink, cancel, request_id)
      .await
      .result
  }

  /// `execute`, also telling what the call was billed when it failed or was cut off.
  ///
  /// The request and its options come boxed, and stay so down the pipeline: every stage's
  /// future keeps room for its arguments for as long as the call is in flight, so values
  /// of this size would be held once per stage.
  pub async fn execute_billed(
    &self,
    model: &str,
    req: Box<ChatRequest>,
    mut options: Box<CallOptions>,
    sink: EventSink,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Executed {
    let metadata = std::mem::take(&mut options.metadata);
    let mut trace = Trace::start(model, req.user.as_ref(), metadata, request_id);
    trace.ingress = options.ingress;
    trace.warnings = std::mem::take(&mut options.warnings);
    if self.router.aliases().iter().any(|alias| alias == model) {
      trace.route = Some(model.to_string());
    }
    let native = options.native.clone();
    if let Some(telemetry) = &options.trace {
      telemetry.request(&req, sink.is_some());
    }
    trace.telemetry = options.trace.clone();
    let traced = options.trace.clone();
    let result = telemetry::scoped(traced, async {
      match self.guardrails.clone() {
        None => {
          self
            .run(model, req, options, sink, cancel, &trace, Work::Chat)
            .await
        }
        Some(guardrails) => {
          let mut findings = Findings::default();
          let result = self
            .run_guarded(
              &guardrails,
              model,
              req,
              options,
              sink,
              cancel,
              &trace,
              &mut findings,
            )
            .await;
          self.metrics.record_guardrail_findings(&findings.0);
          trace.guardrails = findings.0;
          result
        }
      }
    })
    .await;
    // Answered natively: nothing was left out in translation.
    if native.is_some_and(|native| native.answered_natively()) {
      trace.warnings.clear();
    }
    self.observe(model, &trace, &result);
    let billed = match &result {
      Ok(response) => response.usage,
      Err(_) => trace.billed_usage(),
    };
    record::finish(&self.stats, self.on_call.as_ref(), trace, &result);
    Executed { result, billed }
  }

  /// `run` between the input and the output guardrails.
  #[allow(clippy::too_many_arguments)]
  async fn run_guarded(
    &self,
    guardrails: &Guardrails,
    model: &str,
    mut req: Box<ChatRequest>,
    options: Box<CallOptions>,
    sink: EventSink,
    cancel: CancellationToken,
    trace: &Trace,
    findings: &mut Findings,
  ) -> Result<ChatResponse> {
    guardrails::input(
      guardrails,
      model,
      &mut req,
      options.native.as_deref(),
      findings,
    )
    .await?;
    let filter = sink.as_ref().and_then(|_| guardrails.output_stream());
    let result = match (filter, sink) {
      (Some(filter), Some(caller)) => {
        let (events, received) = tokio::sync::mpsc::channel(guardrails::FILTER_CAPACITY);
        let stop = cancel.child_token();
        let call = Box::pin(self.run(
          model,
          req,
          options,
          Some(events.into()),
          stop.clone(),
          trace,
          Work::Chat,
        ));
        let filtered = guardrails::filter_stream(filter, received, caller, stop);
        match tokio::join!(call, filtered) {
          (_, Some(blocked)) => {
            findings.blocked(&blocked);
            return Err(blocked);
          }
          (result, None) => result,
        }
      }
      (_, sink) => Box::pin(self.run(model, req, options, sink, cancel, trace, Work::Chat)).await,
    };
    let mut response = result?;
    guardrails
      .check_output(&mut response.content, findings)
      .await?;
    Ok(response)
  }

  #[allow(clippy::too_many_arguments)]
  async fn run(
    &self,
    model: &str,
    mut req: Box<ChatRequest>,
    options: Box<CallOptions>,
    sink: EventSink,
    cancel: CancellationToken,
    trace: &Trace,
    work: Work,
  ) -> Result<ChatResponse> {
    let start = tokio::time::Instant::now();
    // The targets the call may use, without choosing one yet (that, and taking a slot,
    // is the attempt stage's): an unknown model is refused here, before it costs a
    // rate-limit slot or a cache lookup, and the budget stage prices every target.
    let mut targets = self.route(model, &options, sink.is_some(), &cancel)?;
    let mut lookup = cache::lookup(self.cache.as_deref(), model, &req, &options, work);
    let limiter = self.rate_limiter.as_deref();
    let prompt = PromptTokens::new(&req.messages);
    let admitting = limits::admit(limiter, model, &req, &prompt, &self.stats);
    // With both on Redis, the cache lookup runs beside the limiter's script instead of
    // after it: one round trip of latency instead of two. A refused call drops the answer.
    let admission = match lookup
      .as_mut()
      .filter(|lookup| lookup.is_remote() && limiter.is_some())
    {
      Some(lookup) => tokio::join!(admitting, lookup.prefetch()).0?,
      None => admitting.await?,
    };
    let reservation = match budget::reserve(&self.accounting, &targets, &req, &prompt).await {
      Ok(reservation) => reservation,
      Err(refused) => {
        let refused = Err(refused);
        if let Some(admission) = admission {
          admission.settle(&refused).await;
        }
        return refused;
      }
    };
    let caller = cache::Caller {
      started: trace.started,
      request_id: &trace.request_id,
      sink: &sink,
      progress: &trace.progress,
      served: &options.served,
    };
    let asked = semantic::lookup(self.semantic_cache.as_deref(), model, &req, &options, work);
    // Without a cache to ask, the upstream call is awaited here directly. The cache stages'
    // futures are larger than it, and a call in flight would hold their size inline for
    // its whole life; with a cache they are boxed, an allocation only such calls make.
    let served = if lookup.is_none() && asked.is_none() {
      Either::Left(self.upstream(
        &mut targets,
        &mut req,
        &options,
        &sink,
        &cancel,
        start,
        trace,
        work,
      ))
    } else {
      // Borrowed into both stages' closures: the semantic stage runs inside the exact one's.
      let (targets_for_call, req_for_call) = (&mut targets, &mut req);
      let (options_for_call, sink_for_call, cancel_for_call) = (&options, &sink, &cancel);
      Either::Right(Box::pin(cache::through(
        lookup,
        caller,
        &self.stats,
        move || {
          semantic::through(self, asked, caller, cancel_for_call, move || {
            self.upstream(
              targets_for_call,
              req_for_call,
              options_for_call,
              sink_for_call,
              cancel_for_call,
              start,
              trace,
              work,
            )
          })
        },
      )))
    };
    // The upstream call keeps its own deadline; this one bounds a caller waiting on an
    // identical call in flight. Both end at the same instant, and the upstream call's
    // own (more precise) error wins a tie because it is polled first.
    let outcome = match options
      .timeout
      .and_then(|timeout| start.checked_add(timeout))
    {
      Some(deadline) => tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(GatewayError::aborted()),
        result = tokio::time::timeout_at(deadline, served) => result.unwrap_or_else(|_| {
          Err(GatewayError::timeout(options.timeout.unwrap_or_default()))
        }),
      },
      None => tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(GatewayError::aborted()),
        result = served => result,
      },
    };
    let settled = self.settle(trace, &targets, &req, reservation, outcome);
    trace.billed(settled.usage, settled.cost.usd());
    if let Some(admission) = admission {
      admission.settle(&settled.result).await;
    }
    settled.result
  }

  /// The settle stage: price the call at the deployment that served it, record it in the
  /// ledger and replace its budget reservation with the real cost.
  fn settle(
    &self,
    trace: &Trace,
    targets: &CallTargets,
    req: &ChatRequest,
    reservation: Option<Reservation>,
    outcome: Result<ChatResponse>,
  ) -> ledger::Settled {
    // Where the upstream call went (its last attempt sets `req.model`), known here even
    // when the call was cut off mid-attempt.
    let attempts = trace.attempts.load(Ordering::SeqCst);
    if attempts > 0 {
      if let Some(provider) = targets.provider_name() {
        trace.resolved(provider, &req.model);
      }
    }
    // A cached answer names the deployment it came from.
    let (provider, vendor_model) = match (trace.provider(), trace.vendor_model(), &outcome) {
      (Some(provider), Some(vendor_model), _) => (provider.to_string(), vendor_model.to_string()),
      (_, _, Ok(response)) => (response.provider.clone(), response.model.clone()),
      _ => (String::new(), String::new()),
    };
    let deployment = format!("{provider}/{vendor_model}");
    let call = ledger::Call {
      model: &deployment,
      provider: &provider,
      request_id: &trace.request_id,
      started: trace.started,
      attempts,
      progress: &trace.progress,
      operation: trace.operation,
    };
    ledger::settle(
      &self.accounting,
      &self.stats,
      &call,
      req,
      reservation,
      outcome,
    )
  }

  /// The provider stage: attempts with retries under the call's deadline, then the
  /// caller's response.
  #[allow(clippy::too_many_arguments)]
  async fn upstream(
    &self,
    targets: &mut CallTargets,
    req: &mut ChatRequest,
    options: &CallOptions,
    sink: &EventSink,
    cancel: &CancellationToken,
    start: tokio::time::Instant,
    trace: &Trace,
    work: Work,
  ) -> Result<ChatResponse> {
    let timeout = options
      .timeout
      .or(targets.provider_timeout())
      .unwrap_or(self.timeout);
    let policy = RetryPolicy {
      max_retries: options
        .max_retries
        .or(targets.provider_max_retries())
        .unwrap_or(self.max_retries),
      base: self.retry_base,
      // A timeout too large to add is no deadline at all.
      deadline: start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600)),
    };
    let last_failure = Mutex::new(None);
    let work = attempt::with_retries(
      targets,
      req,
      options.native.as_deref(),
      sink,
      &trace.progress,
      &trace.attempts,
      &last_failure,
      &policy,
      work,
    );
    let outcome = tokio::select! {
      biased;
      _ = cancel.cancelled() => Err(GatewayError::aborted()),
      result = tokio::time::timeout_at(policy.deadline, work) => {
        result.unwrap_or_else(|_| {
          let mut timed_out = targets.deadline_error(timeout);
          if timed_out.code == ErrorCode::Timeout {
            timed_out.cause = last_failure.lock().ok().and_then(|mut last| last.take());
          }
          Err(timed_out)
        })
      }
    };
    let provider = targets.provider_name().unwrap_or_default();
    let completion = outcome.map_err(|e| match targets.provider_name() {
      Some(name) => e.with_provider(name),
      None => e,
    })?;
    let timing = CallTiming {
      started: trace.started,
      ttft: trace.progress.first_event_at().map(|at| at - trace.started),
      attempts: trace.attempts.load(Ordering::SeqCst),
    };
    Ok(response::response(
      provider,
      req,
      completion,
      timing,
      &trace.request_id,
    ))
  }

  /// Records a call refused before it could start (invalid request, closed gateway).
  pub fn record_refusal(
    &self,
    model: &str,
    user: Option<&String>,
    request_id: &str,
    error: &GatewayError,
  ) {
    self.record_refused(Operation::Chat, model, user, request_id, error);
  }

  /// [`Self::record_refusal`] for any operation.
  pub fn record_refused(
    &self,
    operation: Operation,
    model: &str,
    user: Option<&String>,
    request_id: &str,
    error: &GatewayError,
  ) {
    let mut trace = Trace::start(model, user, Vec::new(), request_id);
    trace.operation = operation;
    record::finish(
      &self.stats,
      self.on_call.as_ref(),
      trace,
      &Err(error.clone()),
    );
  }

  /// Calls by outcome and error code, cache and limiter counters, hook errors.
  pub fn stats(&self) -> StatsSnapshot {
    StatsSnapshot {
      model_label_overflow: self.metrics.model_label_overflow(),
      ..self.stats.snapshot()
    }
  }

  /// The `onCall` hook threw: counted in `stats()`, never rethrown.
  pub fn record_hook_error(&self) {
    self.stats.hook_error();
  }

  /// Removes every configured key (and key-shaped text) from an error bound for JS.
  pub fn redact_error(&self, mut error: GatewayError) -> GatewayError {
    error.message = redact(&error.message, &self.secrets);
    error.cause = error.cause.map(|cause| redact(&cause, &self.secrets));
    error
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::error::ErrorCode;
  use crate::types::{Message, Role, StreamEvent};
  use tokio::sync::mpsc;

  fn mock_gateway() -> Gateway {
    Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(1))],
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  fn hello() -> ChatRequest {
    ChatRequest {
      messages: vec![Message::text(Role::User, "hello")],
      ..ChatRequest::default()
    }
  }

  #[tokio::test]
  async fn streamed_events_add_up_to_the_response() {
    let gateway = mock_gateway();
    let (sender, mut receiver) = mpsc::channel(4);
    let run = gateway.execute(
      "mock/demo",
      hello(),
      CallOptions::default(),
      Some(sender.into()),
      CancellationToken::new(),
      "fg_test",
    );
    let collect = async {
      let mut text = String::new();
      while let Some(Ok(StreamEvent::Text(piece))) = receiver.recv().await {
        text.push_str(&piece);
      }
      text
    };
    let (response, text) = tokio::join!(run, collect);
    let response = response.expect("response");
    assert_eq!(text, response.content);
    assert_eq!(
      (response.provider.as_str(), response.model.as_str()),
      ("mock", "demo")
    );
    assert!(response.ttft_ms.is_some());
    assert_eq!(response.attempts, 1);
  }

  #[tokio::test]
  async fn cancellation_and_deadlines_end_the_call() {
    let gateway = mock_gateway();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (sender, _receiver) = mpsc::channel(1);
    let aborted = gateway
      .execute(
        "mock/m",
        hello(),
        CallOptions::default(),
        Some(sender.into()),
        cancel,
        "r",
      )
      .await
      .expect_err("aborted");
    assert_eq!(aborted.code, ErrorCode::Aborted);

    let (sender, _receiver) = mpsc::channel(1);
    let options = CallOptions {
      timeout: Some(Duration::from_millis(20)),
      ..CallOptions::default()
    };
    // Nobody reads the one-slot channel, so the stream stalls until the deadline.
    let timed_out = gateway
      .execute(
        "mock/m",
        hello(),
        options,
        Some(sender.into()),
        CancellationToken::new(),
        "r",
      )
      .await
      .expect_err("timeout");
    assert_eq!(timed_out.code, ErrorCode::Timeout);
  }

  #[tokio::test]
  async fn models_resolve_by_the_longest_provider_prefix() {
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![
        ProviderConfig {
          name: "team".into(),
          kind: "mock".into(),
          ..ProviderConfig::default()
        },
        ProviderConfig {
          name: "team/eu".into(),
          kind: "mock".into(),
          ..ProviderConfig::default()
        },
      ],
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let (provider, model) = gateway
      .resolve("team/eu/llama-3")
      .map_err(|e| e.message)
      .expect("resolved");
    assert_eq!(
      (provider.name.as_str(), model.as_str()),
      ("team/eu", "llama-3")
    );
    let (provider, model) = gateway
      .resolve("team/x/y")
      .map_err(|e| e.message)
      .expect("resolved");
    assert_eq!((provider.name.as_str(), model.as_str()), ("team", "x/y"));
    let missing = gateway.resolve("other/m").map(|_| ()).expect_err("unknown");
    assert_eq!(missing.code, ErrorCode::NotFound);
  }

  fn routed_gateway(max_concurrent: Option<u32>) -> Gateway {
    let mock = |name: &str| ProviderConfig {
      name: name.into(),
      kind: "mock".into(),
      mock_chunk_delay: Some(Duration::from_millis(1)),
      ..ProviderConfig::default()
    };
    let target = |provider: &str| RouteTargetConfig {
      provider: provider.into(),
      model: format!("{provider}-model"),
      weight: 1.0,
      max_concurrent,
      health_check: false,
    };
    Gateway::new(GatewayConfig {
      providers: vec![mock("east"), mock("west")],
      routes: vec![RouteConfig {
        alias: "smart".into(),
        targets: vec![target("east"), target("west")],
      }],
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  #[tokio::test]
  async fn a_route_alias_answers_from_one_of_its_targets() {
    let gateway = routed_gateway(None);
    let response = gateway
      .execute(
        "smart",
        hello(),
        CallOptions::default(),
        None,
        CancellationToken::new(),
        "r",
      )
      .await
      .map_err(|e| e.message)
      .expect("response");
    assert!(["east", "west"].contains(&response.provider.as_str()));
    assert_eq!(response.model, format!("{}-model", response.provider));
    assert_eq!(response.attempts, 1);
    assert_eq!(
      gateway.models(),
      ["smart", "east/east-model", "west/west-model"]
    );
    assert_eq!(gateway.health().len(), 2);
  }

  #[tokio::test]
  async fn a_call_queued_past_its_deadline_is_upstream_unavailable() {
    let gateway = Arc::new(routed_gateway(Some(1)));
    // The mock counts tokens; loading the tokenizer blocks the test's only thread for
    // seconds in a debug build, so do it before any deadline runs.
    crate::tokens::encoding_for("gpt-4o").count_text("warm up");
    // Streams nobody reads stall on their one-slot channel and hold both targets' slot.
    let mut unread = Vec::new();
    for _ in 0..2 {
      let (sender, receiver) = mpsc::channel(1);
      unread.push(receiver);
      let holder = gateway.clone();
      tokio::spawn(async move {
        let options = CallOptions {
          timeout: Some(Duration::from_secs(60)),
          ..CallOptions::default()
        };
        let cancel = CancellationToken::new();
        let _ = holder
          .execute("smart", hello(), options, Some(sender.into()), cancel, "h")
          .await;
      });
    }
    while gateway.health().iter().any(|h| h.in_flight == 0) {
      tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let options = CallOptions {
      timeout: Some(Duration::from_millis(30)),
      ..CallOptions::default()
    };
    let error = gateway
      .execute(
        "smart",
        hello(),
        options,
        None,
        CancellationToken::new(),
        "q",
      )
      .await
      .map(|_| ())
      .expect_err("queued");
    assert_eq!(error.code, ErrorCode::UpstreamUnavailable);
    assert!(error.retry_after.is_some());
    assert!(gateway.health().iter().all(|h| h.queued == 0));
  }

  #[tokio::test]
  async fn identical_concurrent_misses_share_one_upstream_call() {
    let cache = Arc::new(ResponseCache::in_memory(
      crate::backend::memory_cache::MemoryCacheLimits::default(),
      None,
    ));
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(2))],
      cache: Some(cache),
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let calls = (0..20).map(|i| {
      gateway.execute(
        "mock/m",
        hello(),
        CallOptions::default(),
        None,
        CancellationToken::new(),
        if i == 0 { "first" } else { "other" },
      )
    });
    let responses = futures_util::future::join_all(calls).await;
    let upstream = responses
      .iter()
      .filter(|r| matches!(r, Ok(response) if !response.cached))
      .count();
    assert_eq!(upstream, 1);
    assert!(responses.iter().all(Result::is_ok));
    let stats = gateway.stats();
    assert_eq!(stats.cache_misses, 1);
    assert_eq!(stats.cache_coalesced + stats.cache_hits, 19);
    assert_eq!(stats.ok, 20);
  }

  #[tokio::test]
  async fn a_limiter_refusal_is_rate_limited_with_a_wait() {
    let limiter = RateLimiter::in_memory(crate::limiter::LimiterOptions {
      requests_per_minute: Some(1.0),
      ..Default::default()
    })
    .expect("limiter");
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::ZERO)],
      rate_limiter: Some(Arc::new(limiter)),
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let run = || {
      gateway.execute(
        "mock/m",
        hello(),
        CallOptions::default(),
        None,
        CancellationToken::new(),
        "r",
      )
    };
    let started = std::time::Instant::now();
    run().await.expect("first call admitted");
    let refused = run().await.expect_err("second call refused");
    let elapsed = started.elapsed();
    assert_eq!(refused.code, ErrorCode::RateLimited);
    assert_eq!(refused.status, 429);
    let wait = refused.retry_after.expect("a wait");
    // One request a minute: the next is due a minute after the first, less what has passed.
    assert!(wait <= Duration::from_secs(60) && wait + elapsed >= Duration::from_secs(60));
    assert_eq!(gateway.stats().limiter_refusals, 1);
  }

  #[test]
  fn unprefixed_models_go_to_the_default_provider() {
    let config = |default: &str| GatewayConfig {
      providers: vec![ProviderConfig {
        name: "local".into(),
        kind: "mock".into(),
        ..ProviderConfig::default()
      }],
      default_provider: Some(default.into()),
      ..GatewayConfig::default()
    };
    let gateway = Gateway::new(config("local")).expect("gateway");
    for (asked, vendor_model) in [
      ("gpt-4o-mini", "gpt-4o-mini"),
      ("meta/llama-3", "meta/llama-3"),
      ("local/x", "x"),
    ] {
      let (provider, model) = gateway
        .resolve(asked)
        .map_err(|e| e.message)
        .expect("resolved");
      assert_eq!(
        (provider.name.as_str(), model.as_str()),
        ("local", vendor_model)
      );
    }
    let unknown = Gateway::new(config("nope"))
      .map(|_| ())
      .expect_err("unknown");
    assert_eq!(unknown.code, ErrorCode::Config);
    assert!(unknown.message.contains("defaultProvider 'nope'"));
  }

  #[test]
  fn configuration_errors_are_config() {
    for kind in ["openai", "anthropic", "gemini"] {
      let config = GatewayConfig {
        providers: vec![ProviderConfig {
          name: "p".into(),
          kind: kind.into(),
          base_url: Some("not a url".into()),
          ..ProviderConfig::default()
        }],
        ..GatewayConfig::default()
      };
      let error = Gateway::new(config).map(|_| ()).expect_err(kind);
      assert_eq!(error.code, ErrorCode::Config);
    }
  }
}
