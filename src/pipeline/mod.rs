//! The call pipeline. `Gateway::execute` runs the stages of one call in order:
//!
//!   route → budget reservation → attempt (with retries, under one deadline) → stream
//!   → response → ledger (price, record, settle the reservation)
//!
//! Each stage lives in the file its name says; limits, cache and route join this line as
//! stages of their own without changing the provider layer.

mod attempt;
mod budget;
mod forward;
mod http;
mod ledger;
mod providers;
mod response;
mod route;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::costs::CostTracker;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::secret::{redact, Secret};
use crate::types::{ChatRequest, ChatResponse};

pub use attempt::MAX_RESPONSE_BYTES;
pub use forward::{EventSender, EventSink};
pub use ledger::CostCounters;
pub use providers::ProviderConfig;
pub use response::estimate_usage;
pub use route::{DeploymentHealth, RouteConfig, RouteTargetConfig, RoutingConfig};

use attempt::RetryPolicy;
use forward::Progress;
use ledger::Accounting;
use providers::{build_provider, Provider};
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
  /// Prices, records and budgets every call; without it `costUsd` uses the built-in prices.
  pub costs: Option<Arc<CostTracker>>,
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
      costs: None,
    }
  }
}

/// Per-call overrides from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  /// Admission order when a route's targets are all busy: higher first.
  pub priority: i32,
}

pub struct Gateway {
  providers: HashMap<String, Arc<Provider>>,
  router: Router,
  timeout: Duration,
  max_retries: u32,
  retry_base: Duration,
  secrets: Vec<Secret>,
  accounting: Accounting,
}

impl Gateway {
  pub fn new(config: GatewayConfig) -> Result<Gateway> {
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
    let router = Router::new(config.routes, config.routing, &providers)?;
    Ok(Gateway {
      providers,
      router,
      timeout: config.timeout,
      max_retries: config.max_retries,
      retry_base: config.retry_base,
      secrets,
      accounting: Accounting::new(config.costs),
    })
  }

  /// Unpriced calls and budget refusals, for `stats()`.
  pub fn cost_counters(&self) -> CostCounters {
    self.accounting.counters()
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
      None => {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort();
        Err(GatewayError::not_found(format!(
          "no provider for model '{model}': use \"provider/model\" with one of [{}]",
          names.join(", ")
        )))
      }
    }
  }

  /// Runs one call to completion. `model` is a route alias or "provider/model";
  /// `req.model` is ignored.
  pub async fn execute(
    &self,
    model: &str,
    mut req: ChatRequest,
    options: CallOptions,
    sink: EventSink,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Result<ChatResponse> {
    let started = Instant::now();
    let mut targets = self.route(model, &options, sink.is_some(), &cancel)?;
    let reservation = budget::reserve(&self.accounting, &targets, &req)?;
    let timeout = options
      .timeout
      .or(targets.provider_timeout())
      .unwrap_or(self.timeout);
    let now = tokio::time::Instant::now();
    let policy = RetryPolicy {
      max_retries: options
        .max_retries
        .or(targets.provider_max_retries())
        .unwrap_or(self.max_retries),
      base: self.retry_base,
      // A timeout too large to add is no deadline at all.
      deadline: now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
    };
    let attempts = AtomicU32::new(0);
    let progress = Progress::default();
    let last_failure = Mutex::new(None);
    let work = attempt::with_retries(
      &mut targets,
      &mut req,
      &sink,
      &progress,
      &attempts,
      &last_failure,
      &policy,
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
    let attempts = attempts.load(Ordering::SeqCst);
    let provider = targets.provider_name().unwrap_or_default();
    let result = outcome
      .map_err(|e| match targets.provider_name() {
        Some(name) => e.with_provider(name),
        None => e,
      })
      .map(|completion| {
        let timing = CallTiming {
          started,
          ttft: progress.first_event_at().map(|at| at - started),
          attempts,
        };
        response::response(provider, &req, completion, timing, request_id)
      });
    // The deployment that served the call (the last one tried) is what is billed.
    let deployment = format!("{provider}/{}", req.model);
    let call = ledger::Call {
      model: &deployment,
      provider,
      request_id,
      started,
      attempts,
      progress: &progress,
    };
    ledger::settle(&self.accounting, &call, &req, reservation, result).result
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
      providers: vec![ProviderConfig {
        name: "mock".into(),
        kind: "mock".into(),
        mock_chunk_delay: Some(Duration::from_millis(1)),
        ..ProviderConfig::default()
      }],
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
      Some(sender),
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
        Some(sender),
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
        Some(sender),
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
          .execute("smart", hello(), options, Some(sender), cancel, "h")
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
