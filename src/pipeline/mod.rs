//! The call pipeline. `Gateway::execute` runs the stages of one call in order:
//!
//!   resolve → budget reservation → attempt (with retries, under one deadline) → stream
//!   → response → ledger (price, record, settle the reservation)
//!
//! Each stage lives in the file its name says; limits, cache and route join this line as
//! stages of their own without changing the provider layer.

mod attempt;
mod budget;
mod forward;
mod ledger;
mod providers;
mod response;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::costs::CostTracker;
use crate::error::{GatewayError, Result};
use crate::secret::{redact, Secret};
use crate::types::{ChatRequest, ChatResponse};

pub use attempt::MAX_RESPONSE_BYTES;
pub use forward::{EventSender, EventSink};
pub use ledger::CostCounters;
pub use providers::ProviderConfig;
pub use response::estimate_usage;

use attempt::RetryPolicy;
use forward::Progress;
use ledger::Accounting;
use providers::{build_provider, Provider};
use response::CallTiming;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct GatewayConfig {
  pub providers: Vec<ProviderConfig>,
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
}

pub struct Gateway {
  providers: HashMap<String, Arc<Provider>>,
  http: reqwest::Client,
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
    for provider in config.providers {
      if provider.name.is_empty() {
        return Err(GatewayError::config("a provider needs a non-empty name"));
      }
      let built = build_provider(&provider, &mut secrets)?;
      providers.insert(provider.name.clone(), Arc::new(built));
    }
    let http = reqwest::Client::builder()
      .tcp_nodelay(true)
      .pool_idle_timeout(Duration::from_secs(90))
      .connect_timeout(Duration::from_secs(10))
      .build()
      .map_err(|e| GatewayError::config(format!("could not create the HTTP client: {e}")))?;
    Ok(Gateway {
      providers,
      http,
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

  /// "provider/model" for every model a provider advertises.
  pub fn models(&self) -> Vec<String> {
    let mut models: Vec<String> = self
      .providers
      .values()
      .flat_map(|p| p.models.iter().map(move |m| format!("{}/{m}", p.name)))
      .collect();
    models.sort();
    models
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

  /// Runs one call to completion. `model` is "provider/model"; `req.model` is ignored.
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
    let (provider, vendor_model) = self.resolve(model)?;
    req.model = vendor_model;
    let deployment = format!("{}/{}", provider.name, req.model);
    let reservation = budget::reserve(&self.accounting, &deployment, &req)?;
    let timeout = options.timeout.or(provider.timeout).unwrap_or(self.timeout);
    let now = tokio::time::Instant::now();
    let policy = RetryPolicy {
      max_retries: options
        .max_retries
        .or(provider.max_retries)
        .unwrap_or(self.max_retries),
      base: self.retry_base,
      // A timeout too large to add is no deadline at all.
      deadline: now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
    };
    let attempts = AtomicU32::new(0);
    let progress = Progress::default();
    let work = attempt::with_retries(
      &self.http, &provider, &req, &sink, &progress, &attempts, &policy,
    );
    let outcome = tokio::select! {
      biased;
      _ = cancel.cancelled() => Err(GatewayError::aborted()),
      result = tokio::time::timeout_at(policy.deadline, work) => {
        result.unwrap_or_else(|_| Err(GatewayError::timeout(timeout)))
      }
    };
    let attempts = attempts.load(Ordering::SeqCst);
    let result = outcome
      .map_err(|e| e.with_provider(&provider.name))
      .map(|completion| {
        let timing = CallTiming {
          started,
          ttft: progress.first_event_at().map(|at| at - started),
          attempts,
        };
        response::response(&provider.name, &req, completion, timing, request_id)
      });
    let call = ledger::Call {
      model: &deployment,
      provider: &provider.name,
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
      max_retries: None,
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
