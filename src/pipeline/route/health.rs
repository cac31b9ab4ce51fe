//! Active health checks: with `routing.healthCheckIntervalMs`, every target that allows
//! it is checked once per interval (`GET /models` for the openai kind, else a 1-token
//! request). A success brings an ejected target back at
//! once; a failure counts like a failed call. Off by default: a 1-token check is a billed call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::breaker::Circuit;
use super::Route;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::pipeline::attempt::attempt_once;
use crate::pipeline::forward::Progress;
use crate::pipeline::providers::{Backend, Provider};
use crate::types::{ChatRequest, Message, Role};

/// A check never takes longer than this, whatever the interval.
const MAX_CHECK_TIME: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct HealthChecks {
  started: AtomicBool,
  stop: CancellationToken,
}

impl HealthChecks {
  pub fn start(&self, routes: Vec<Arc<Route>>, interval: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
      return;
    };
    if self.started.swap(true, Ordering::SeqCst) {
      return;
    }
    let routes: Vec<Weak<Route>> = routes.iter().map(Arc::downgrade).collect();
    let stop = self.stop.clone();
    runtime.spawn(async move {
      tokio::select! {
        _ = stop.cancelled() => {}
        _ = check_forever(routes, interval) => {}
      }
    });
  }

  pub fn started(&self) -> bool {
    self.started.load(Ordering::SeqCst)
  }

  pub fn stop(&self) {
    self.stop.cancel();
  }
}

async fn check_forever(routes: Vec<Weak<Route>>, interval: Duration) {
  let mut ticker = tokio::time::interval(interval);
  ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
  loop {
    ticker.tick().await;
    let mut checks = Vec::new();
    for route in &routes {
      // The gateway is gone: nothing left to check.
      let Some(route) = route.upgrade() else {
        return;
      };
      for index in 0..route.targets.len() {
        if route.targets[index].health_check {
          checks.push(check(route.clone(), index, interval));
        }
      }
    }
    futures_util::future::join_all(checks).await;
  }
}

/// `GET /models` where the vendor has a free endpoint for it (openai kind), else a
/// 1-token request. Each goes through the provider's own client (its trusted roots).
async fn probe(provider: &Provider, model: &str) -> Result<()> {
  if let Backend::Http { adapter, http } = &provider.backend {
    if let Some(call) = adapter.health_check() {
      let http = http.lease();
      let mut builder = http.get(&call.url);
      for (name, value) in &call.headers {
        builder = builder.header(name.as_str(), value.as_str());
      }
      let response = builder.send().await.map_err(|_| {
        GatewayError::new(
          ErrorCode::UpstreamUnavailable,
          format!("health check of {} failed", provider.name),
        )
      })?;
      let status = response.status().as_u16();
      if (200..300).contains(&status) {
        return Ok(());
      }
      let headers = response.headers().clone();
      let body = response.bytes().await.unwrap_or_default();
      return Err(adapter.parse_error(status, &headers, &body));
    }
  }
  let request = ChatRequest {
    model: model.to_string(),
    messages: vec![Message::text(Role::User, "ping")],
    max_tokens: Some(1),
    ..ChatRequest::default()
  };
  let progress = Progress::default();
  attempt_once(provider, &request, None, &None, &progress)
    .await
    .map(|_| ())
}

async fn check(route: Arc<Route>, index: usize, interval: Duration) {
  let target = &route.targets[index];
  let attempt = probe(&target.provider, &target.model);
  let result = tokio::time::timeout(interval.min(MAX_CHECK_TIME), attempt).await;
  let mut state = route.lock();
  let now = route.env.now();
  let stats = &mut state.stats[index];
  match result {
    Ok(Ok(_)) => stats.record_health_check_success(),
    Ok(Err(error)) if matches!(error.code, ErrorCode::InvalidRequest) => {}
    _ => {
      if let Circuit::HalfOpen { .. } = stats.circuit {
        stats.circuit = Circuit::Open {
          until: now + route.config.cooldown,
        };
      } else {
        stats.record_failure(now, false, &route.config);
      }
    }
  }
  route.dispatch(&mut state);
}
