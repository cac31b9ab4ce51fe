//! napi shims over the core: convert, spawn, hand results back. No gateway logic here.

mod cache;
mod convert;
mod costs;
mod hook;
mod limiter;
mod numbers;
mod serve;
mod sse;
mod types;
mod vault;

use std::sync::Arc;

use napi::bindgen_prelude::{Either, Function};
use napi_derive::napi;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ErrorCode, GatewayError};
use crate::pipeline::Gateway;
use crate::types::StreamEvent;

pub use cache::*;
pub use costs::*;
pub use limiter::*;
pub use serve::*;
pub use sse::*;
pub use types::*;
pub use vault::*;

/// Events buffered between the upstream reader and JS. Bounded so a slow consumer
/// slows the upstream read instead of growing memory.
const CHANNEL_CAPACITY: usize = 256;
/// Most events handed to JS per `next()`: one Promise settles a batch, not an event.
const MAX_BATCH: usize = 64;

/// The native gateway. Use `Gateway` from the package, which wraps this with
/// AbortSignal support, async iteration and typed errors.
#[napi]
pub struct NativeGateway {
  inner: Result<Arc<Gateway>, GatewayError>,
  closed: CancellationToken,
  /// Calls in flight, so that `close()` can wait for them to settle.
  calls: TaskTracker,
}

#[napi]
impl NativeGateway {
  /// Never throws: a bad configuration is reported by `configError()`, so the JS layer
  /// can throw it with the same error shape as every other failure.
  ///
  /// `cache`, `rateLimiter`, `onCall` and `costs` arrive apart from the options: the JS layer
  /// unwraps its classes to their native handles and guards the hook against throws.
  #[napi(constructor, catch_unwind)]
  pub fn new(
    options: GatewayOptions,
    cache: Option<&NativeResponseCache>,
    rate_limiter: Option<&NativeRateLimiter>,
    on_call: Option<Function<'_, CallRecord, ()>>,
    costs: Option<&NativeCostTracker>,
  ) -> napi::Result<Self> {
    let hook = on_call.map(hook::JsHook::new).transpose()?;
    let inner = convert::gateway_config(options).and_then(|mut config| {
      config.cache = cache.map(|cache| cache.inner.clone());
      config.rate_limiter = rate_limiter.map(|limiter| limiter.inner.clone());
      config.on_call = hook.map(|hook| crate::pipeline::CallHook(Arc::new(hook)));
      config.costs = costs.map(|tracker| tracker.inner.clone());
      Gateway::new(config)
    });
    Ok(NativeGateway {
      inner: inner.map(Arc::new),
      closed: CancellationToken::new(),
      calls: TaskTracker::new(),
    })
  }

  /// Calls by outcome and error code, cache and limiter counters, hook errors.
  #[napi]
  pub fn stats(&self) -> Option<GatewayStats> {
    let gateway = self.inner.as_ref().ok()?;
    Some(convert::stats(gateway.stats()))
  }

  /// Counts an `onCall` hook that threw (called by the JS guard around the hook).
  #[napi]
  pub fn record_hook_error(&self) {
    if let Ok(gateway) = &self.inner {
      gateway.record_hook_error();
    }
  }

  pub(crate) fn gateway(&self) -> Result<Arc<Gateway>, GatewayError> {
    self.inner.clone()
  }

  #[napi]
  pub fn config_error(&self) -> Option<ErrorInfo> {
    self
      .inner
      .as_ref()
      .err()
      .map(|e| convert::error_info(e.clone(), &new_request_id()))
  }

  /// Starts a call; `stream` decides whether text events are delivered as they arrive.
  #[napi(catch_unwind)]
  pub fn start(&self, request: ChatRequest, stream: bool) -> NativeCall {
    let request_id = new_request_id();
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let cancel = self.closed.child_token();
    let call = NativeCall {
      receiver: Mutex::new(receiver),
      cancel: cancel.clone(),
      request_id: request_id.clone(),
      gateway_closed: self.closed.clone(),
    };
    let gateway = match &self.inner {
      Ok(gateway) => gateway.clone(),
      Err(error) => {
        let _ = sender.try_send(Err(error.clone()));
        return call;
      }
    };
    // Calls refused here still get their onCall record and their count in stats().
    let refuse = |model: &str, user: Option<&String>, error: GatewayError| {
      gateway.record_refusal(model, user, &request_id, &error);
      let _ = sender.try_send(Err(error));
    };
    if self.closed.is_cancelled() {
      let closed = GatewayError::new(crate::error::ErrorCode::Aborted, "the gateway is closed");
      refuse(&request.model, request.user.as_ref(), closed);
      return call;
    }
    let asked = (request.model.clone(), request.user.clone());
    let (model, core_request, options) = match convert::chat_request(request) {
      Ok(parts) => parts,
      Err(error) => {
        refuse(&asked.0, asked.1.as_ref(), error);
        return call;
      }
    };
    let closed = self.closed.clone();
    napi::bindgen_prelude::spawn(self.calls.track_future(async move {
      let sink = stream.then(|| sender.clone());
      let result = gateway
        .execute(&model, core_request, options, sink, cancel, &request_id)
        .await;
      let last = match result {
        Ok(response) => Ok(StreamEvent::Done(Box::new(response))),
        Err(error) if error.code == ErrorCode::Aborted && closed.is_cancelled() => {
          Err(closed_in_flight())
        }
        Err(error) => Err(gateway.redact_error(error)),
      };
      if closed.is_cancelled() {
        // close() waits for this task: a consumer that stopped reading must not hold it.
        // A result that does not fit is reported by `next()` from the closed gateway.
        let _ = sender.try_send(last);
      } else {
        // The receiver is gone when JS dropped the call; nobody is left to tell.
        let _ = sender.send(last).await;
      }
    }));
    call
  }

  /// Route aliases, then "provider/model" for every model named in a route or advertised
  /// by a provider.
  #[napi]
  pub fn models(&self) -> Vec<String> {
    match &self.inner {
      Ok(gateway) => gateway.models(),
      Err(_) => Vec::new(),
    }
  }

  /// Prometheus text exposition of the gateway's metrics.
  #[napi]
  pub fn metrics(&self) -> String {
    match &self.inner {
      Ok(gateway) => gateway.render_metrics(),
      Err(_) => String::new(),
    }
  }

  /// Latency anomalies found since the last call (the JS layer hands them to `onAnomaly`).
  #[napi]
  pub fn take_anomalies(&self) -> Vec<LatencyAnomaly> {
    match &self.inner {
      Ok(gateway) => gateway
        .metrics()
        .take_anomalies()
        .into_iter()
        .map(convert::anomaly)
        .collect(),
      Err(_) => Vec::new(),
    }
  }

  /// One entry per route target: breaker state, calls in flight, recent latency and errors.
  #[napi]
  pub fn health(&self) -> Vec<DeploymentHealth> {
    match &self.inner {
      Ok(gateway) => gateway.health().into_iter().map(convert::health).collect(),
      Err(_) => Vec::new(),
    }
  }

  /// Refuses new calls at once and ends calls in flight with ABORTED; `waitClosed()` then
  /// resolves once they have settled.
  #[napi]
  pub fn close(&self) {
    self.closed.cancel();
    self.calls.close();
    if let Ok(gateway) = &self.inner {
      gateway.close();
    }
  }

  /// After `close()`: resolves once every call in flight has settled (its result handed over).
  #[napi]
  pub async fn wait_closed(&self) {
    self.calls.wait().await;
  }

  #[napi]
  pub fn is_open(&self) -> bool {
    !self.closed.is_cancelled()
  }
}

/// One call in flight. Dropping it (or `cancel()`) aborts the upstream request.
#[napi]
pub struct NativeCall {
  receiver: Mutex<mpsc::Receiver<crate::error::Result<StreamEvent>>>,
  cancel: CancellationToken,
  request_id: String,
  gateway_closed: CancellationToken,
}

#[napi]
impl NativeCall {
  /// Waits for at least one event (or the end) and returns everything available.
  #[napi]
  pub async fn next(&self) -> CallBatch {
    let mut receiver = self.receiver.lock().await;
    let mut batch = CallBatch {
      events: Vec::new(),
      error: None,
    };
    // The task always ends the channel with a response or an error; a channel closed
    // without either means the task itself failed.
    let Some(first) = receiver.recv().await else {
      let lost = if self.gateway_closed.is_cancelled() {
        closed_in_flight()
      } else {
        GatewayError::protocol("internal error: the call ended without a result")
      };
      batch.error = Some(convert::error_info(lost, &self.request_id));
      return batch;
    };
    let mut item = Some(first);
    while let Some(current) = item.take() {
      match current {
        Ok(event) => {
          let done = matches!(event, StreamEvent::Done(_));
          batch.events.push(convert::stream_event(event));
          if done || batch.events.len() >= MAX_BATCH {
            break;
          }
        }
        Err(error) => {
          batch.error = Some(convert::error_info(error, &self.request_id));
          break;
        }
      }
      item = receiver.try_recv().ok();
    }
    batch
  }

  /// Aborts the call: the upstream connection is closed and the call ends with ABORTED.
  #[napi]
  pub fn cancel(&self) {
    self.cancel.cancel();
  }

  #[napi(getter)]
  pub fn request_id(&self) -> String {
    self.request_id.clone()
  }
}

impl Drop for NativeCall {
  fn drop(&mut self) {
    self.cancel.cancel();
  }
}

/// Tokens in a text or a message list: exact for OpenAI models (tiktoken encodings), an
/// o200k_base estimate for other vendors, whose tokenizers are not public.
#[napi(catch_unwind)]
pub fn count_tokens(model: String, input: Either<String, Vec<Message>>) -> napi::Result<u32> {
  let encoding = crate::tokens::encoding_for(&model);
  let count = match input {
    Either::A(text) => encoding.count_text(&text),
    Either::B(messages) => {
      let messages = convert::messages(messages)
        .map_err(|e| napi::Error::new(napi::Status::InvalidArg, e.message))?;
      encoding.count_messages(&messages)
    }
  };
  Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

/// How a call ends when `close()` cut it short (distinct from the caller's own abort).
fn closed_in_flight() -> GatewayError {
  GatewayError::new(
    ErrorCode::Aborted,
    "the gateway was closed while the call was in flight",
  )
}

fn new_request_id() -> String {
  format!("fg_{:016x}", fastrand::u64(..))
}
