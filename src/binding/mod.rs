//! napi shims over the core: convert, spawn, hand results back. No gateway logic here.

mod cache;
mod convert;
mod costs;
mod guardrails;
mod hook;
mod ingress;
mod limiter;
mod numbers;
mod pump;
mod runtime;
mod semantic;
mod serve;
mod types;
mod vault;

use std::collections::HashMap;

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{Either, Env, Function, PromiseRaw, Unknown};
use napi_derive::napi;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ErrorCode, GatewayError};
use crate::pipeline::{CallOptions, CallTrace, Consumer, EventSender, Gateway, Operation};
use crate::types::{ChatRequest as CoreRequest, StreamEvent};
use pump::{Delivery, Pump};

/// An error whose code JS keeps: the message travels as "CODE|message", which the JS
/// wrappers turn into a FerrogateError with that code (`codedError` in index.js).
pub(crate) fn coded(error: GatewayError) -> napi::Error {
  coded_as(error.code, &error.message)
}

pub(crate) fn coded_as(code: ErrorCode, message: &str) -> napi::Error {
  let status = match code {
    ErrorCode::InvalidRequest => napi::Status::InvalidArg,
    _ => napi::Status::GenericFailure,
  };
  napi::Error::new(status, format!("{}|{message}", code.as_str()))
}

/// A bad option or argument, as plain text: the JS wrappers word it (CONFIG or
/// INVALID_REQUEST, depending on the method).
pub(crate) fn invalid_arg(error: GatewayError) -> napi::Error {
  napi::Error::new(napi::Status::InvalidArg, error.message)
}

pub use cache::*;
pub use costs::*;
pub use ingress::*;
pub use limiter::*;
pub use semantic::*;
pub use serve::*;
pub use types::*;
pub use vault::*;

/// Events a stream may hand to JS before JS acknowledges having consumed them: a slow
/// consumer slows the upstream read instead of growing memory. index.js acknowledges in
/// steps of at most this much.
const STREAM_CREDITS: usize = 256;

/// What JS can still do to a call in flight.
struct CallControl {
  cancel: CancellationToken,
  /// Streams only: the events JS may still receive unacknowledged.
  credits: Option<Arc<Semaphore>>,
}

type Controls = Arc<Mutex<HashMap<u32, CallControl>>>;

fn lock(controls: &Controls) -> MutexGuard<'_, HashMap<u32, CallControl>> {
  // Every change under this lock is a single insert or remove: a poisoned map is intact.
  controls
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The native gateway. Use `Gateway` from the package, which wraps this with
/// AbortSignal support, async iteration and typed errors.
#[napi]
pub struct NativeGateway {
  inner: Result<Arc<Gateway>, GatewayError>,
  closed: CancellationToken,
  pump: Option<Arc<Pump>>,
  controls: Controls,
  /// Calls in flight, so that `close()` can wait for them to settle.
  calls: TaskTracker,
}

#[napi]
impl NativeGateway {
  /// Never throws: a bad configuration is reported by `configError()`, so the JS layer
  /// can throw it with the same error shape as every other failure.
  ///
  /// `cache`, `rateLimiter`, `onCall` and `costs` arrive apart from the options: the JS layer
  /// unwraps its classes to their native handles and guards the hook against throws. So do
  /// the `custom` guardrails' checks, in the order of their guardrails, wrapped to take and
  /// resolve with JSON text.
  #[napi(constructor, catch_unwind)]
  pub fn new(
    mut options: GatewayOptions,
    cache: Option<&NativeResponseCache>,
    rate_limiter: Option<&NativeRateLimiter>,
    on_call: Option<Function<'_, CallRecord, ()>>,
    costs: Option<&NativeCostTracker>,
    semantic_cache: Option<&NativeSemanticCache>,
    #[napi(ts_arg_type = "Array<(inputJson: string) => Promise<string>>")] guardrail_checks: Option<
      Vec<Function<'_, String, napi::bindgen_prelude::Promise<String>>>,
    >,
  ) -> napi::Result<Self> {
    let hook = on_call.map(hook::JsHook::new).transpose()?;
    let guardrails = guardrails::guardrails(
      options.guardrails.take(),
      guardrail_checks.unwrap_or_default(),
    );
    let inner = convert::gateway_config(options).and_then(|mut config| {
      config.guardrails = guardrails?;
      config.cache = cache.map(|cache| cache.inner.clone());
      config.rate_limiter = rate_limiter.map(|limiter| limiter.inner.clone());
      config.on_call = hook.map(|hook| crate::pipeline::CallHook(Arc::new(hook)));
      config.costs = costs.map(|tracker| tracker.inner.clone());
      config.semantic_cache = semantic_cache.map(|cache| cache.inner.clone());
      Gateway::new(config)
    });
    Ok(NativeGateway {
      inner: inner.map(Arc::new),
      closed: CancellationToken::new(),
      pump: None,
      controls: Arc::default(),
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

  /// Sets the function every call delivers to, once, before the first call. It receives
  /// the JSON text of a flat array `[callId, kind, payload, …]` holding whatever was ready
  /// at once: kind 0 = text (a string), 1 = tool call (an event object), 2 = done (the
  /// ChatResponse), 3 = failed (an ErrorInfo). Kinds 2 and 3 end their call.
  #[napi(ts_args_type = "dispatch: (batchJson: string) => void")]
  pub fn listen(&mut self, dispatch: Function<'_, String, Unknown<'static>>) -> napi::Result<()> {
    if self.pump.is_some() {
      return Err(napi::Error::new(
        napi::Status::GenericFailure,
        "listen() was already called",
      ));
    }
    self.pump = Some(Arc::new(Pump::new(dispatch)?));
    Ok(())
  }

  /// Starts call `callId` (chosen by the caller, unique among its calls in flight) and
  /// returns its request id. `stream` decides whether text events are delivered as they
  /// arrive; the end (done or failed) is always delivered, also for a request that is
  /// invalid or a gateway that is closed. With `traceparent` (the call span's W3C context)
  /// every upstream request carries it, and a trace report (kind 7) precedes the end.
  #[napi(catch_unwind)]
  pub fn begin(
    &self,
    env: Env,
    call_id: u32,
    request: ChatRequest,
    stream: bool,
    traceparent: Option<String>,
  ) -> napi::Result<String> {
    let Some(pump) = &self.pump else {
      return Err(napi::Error::new(
        napi::Status::GenericFailure,
        "listen() must be called before the first call",
      ));
    };
    let request_id = new_request_id();
    pump.call_started(&env);
    let fail = |error: GatewayError| {
      pump.deliver(
        call_id,
        Delivery::Failed(convert::error_info(error, &request_id)),
      );
    };
    let gateway = match &self.inner {
      Ok(gateway) => gateway.clone(),
      Err(error) => {
        fail(error.clone());
        return Ok(request_id);
      }
    };
    // Calls refused here still get their onCall record and their count in stats().
    let refuse = |model: &str, user: Option<&String>, error: GatewayError| {
      gateway.record_refusal(model, user, &request_id, &error);
      fail(error);
    };
    if self.closed.is_cancelled() {
      let closed = GatewayError::new(ErrorCode::Aborted, "the gateway is closed");
      refuse(&request.model, request.user.as_ref(), closed);
      return Ok(request_id);
    }
    let asked = (request.model.clone(), request.user.clone());
    let (model, core_request, mut options) = match convert::chat_request(request) {
      Ok(parts) => parts,
      Err(error) => {
        refuse(&asked.0, asked.1.as_ref(), error);
        return Ok(request_id);
      }
    };
    options.trace = traceparent.as_deref().and_then(CallTrace::continuing);
    let cancel = self.closed.child_token();
    let credits = stream.then(|| Arc::new(Semaphore::new(STREAM_CREDITS)));
    lock(&self.controls).insert(
      call_id,
      CallControl {
        cancel: cancel.clone(),
        credits: credits.clone(),
      },
    );
    let call = Call {
      id: call_id,
      request_id: request_id.clone(),
      gateway,
      pump: pump.clone(),
      controls: self.controls.clone(),
      cancel,
      closed: self.closed.clone(),
    };
    // Boxed here, once: every stage of the call keeps room for its arguments while the call
    // is in flight.
    let (core_request, options) = (Box::new(core_request), Box::new(options));
    napi::bindgen_prelude::spawn(self.calls.track_future(call.run(
      model,
      core_request,
      options,
      credits,
    )));
    Ok(request_id)
  }

  /// Embeds `request.input` as call `callId` (unique among calls in flight, like `begin`'s;
  /// `cancel(callId)` aborts it, from the moment this returns). The promise resolves with the
  /// response or the error, and rejects only for napi's own type checks. `traceparent` as
  /// for `begin`: the outcome then carries the trace report.
  #[napi(catch_unwind, ts_return_type = "Promise<EmbedOutcome>")]
  pub fn embed<'env>(
    &self,
    env: &'env Env,
    call_id: u32,
    request: EmbedRequest,
    traceparent: Option<String>,
  ) -> napi::Result<PromiseRaw<'env, EmbedOutcome>> {
    let request_id = new_request_id();
    let failed = move |error: GatewayError, request_id: &str| EmbedOutcome {
      response: None,
      error: Some(convert::error_info(error, request_id)),
      trace: None,
    };
    let gateway = match &self.inner {
      Ok(gateway) => gateway.clone(),
      Err(error) => {
        let outcome = failed(error.clone(), &request_id);
        return env.spawn_future(async move { Ok(outcome) });
      }
    };
    // Calls refused here still get their onCall record and their count in stats().
    let refused = |model: &str, user: Option<&String>, error: GatewayError| {
      gateway.record_refused(Operation::Embeddings, model, user, &request_id, &error);
      let outcome = failed(error, &request_id);
      env.spawn_future(async move { Ok(outcome) })
    };
    if self.closed.is_cancelled() {
      let closed = GatewayError::new(ErrorCode::Aborted, "the gateway is closed");
      return refused(&request.model, request.user.as_ref(), closed);
    }
    let asked = (request.model.clone(), request.user.clone());
    let (model, core_request, mut options) = match convert::embed_request(request) {
      Ok(parts) => parts,
      Err(error) => return refused(&asked.0, asked.1.as_ref(), error),
    };
    options.trace = traceparent.as_deref().and_then(CallTrace::continuing);
    let trace = options.trace.clone();
    // Registered before JS gets the promise: an abort right after this call reaches it.
    let cancel = self.closed.child_token();
    lock(&self.controls).insert(
      call_id,
      CallControl {
        cancel: cancel.clone(),
        credits: None,
      },
    );
    let controls = self.controls.clone();
    let closed = self.closed.clone();
    // Tracked, so that `waitClosed()` waits for it.
    let call = self.calls.track_future(async move {
      // Boxed: the pipeline's future is large.
      let result =
        Box::pin(gateway.embed(&model, core_request, options, cancel, &request_id)).await;
      lock(&controls).remove(&call_id);
      let mut outcome = match result {
        Ok(response) => EmbedOutcome {
          response: Some(convert::embed_response(response)),
          error: None,
          trace: None,
        },
        Err(error) if error.code == ErrorCode::Aborted && closed.is_cancelled() => {
          failed(crate::ingress::closed_in_flight(), &request_id)
        }
        Err(error) => failed(gateway.redact_error(error), &request_id),
      };
      outcome.trace = trace.and_then(|trace| serde_json::to_value(trace.snapshot()).ok());
      Ok(outcome)
    });
    env.spawn_future(call)
  }

  /// Aborts a call: the upstream connection is closed and the call ends with ABORTED.
  /// A call that already ended is left alone.
  #[napi]
  pub fn cancel(&self, call_id: u32) {
    if let Some(control) = lock(&self.controls).get(&call_id) {
      control.cancel.cancel();
    }
  }

  /// JS consumed `count` more events of a stream: that many more may come.
  #[napi]
  pub fn ack(&self, call_id: u32, count: u32) {
    if let Some(control) = lock(&self.controls).get(&call_id) {
      if let Some(credits) = &control.credits {
        credits.add_permits((count as usize).min(STREAM_CREDITS));
      }
    }
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

  /// After `close()`: resolves once every call in flight has settled (its result handed
  /// over) and the backends have written what the calls recorded.
  #[napi]
  pub async fn wait_closed(&self) {
    self.calls.wait().await;
    // Every settled call has queued its ledger row and cache write: write them now, so a
    // process that exits right after `close()` keeps them.
    if let Ok(gateway) = &self.inner {
      gateway.flush_backends().await;
    }
  }

  #[napi]
  pub fn is_open(&self) -> bool {
    !self.closed.is_cancelled()
  }
}

/// One call in flight, on the runtime.
struct Call {
  id: u32,
  request_id: String,
  gateway: Arc<Gateway>,
  pump: Arc<Pump>,
  controls: Controls,
  cancel: CancellationToken,
  closed: CancellationToken,
}

impl Call {
  async fn run(
    self,
    model: String,
    request: Box<CoreRequest>,
    options: Box<CallOptions>,
    credits: Option<Arc<Semaphore>>,
  ) {
    let gateway = &self.gateway;
    let closed = Some(&self.closed);
    let trace = options.trace.clone();
    let result = match credits {
      None => {
        let cancel = self.cancel.clone();
        run_call(
          gateway,
          &model,
          request,
          options,
          None,
          cancel,
          &self.request_id,
          closed,
        )
        .await
        .result
      }
      Some(credits) => {
        let pump = self.pump.clone();
        let id = self.id;
        stream_call(
          gateway,
          &model,
          request,
          options,
          credits,
          &self.cancel,
          &self.request_id,
          closed,
          move |event| pump.deliver(id, Delivery::Event(event)),
        )
        .await
      }
    };
    lock(&self.controls).remove(&self.id);
    if let Some(trace) = trace {
      self
        .pump
        .deliver(self.id, Delivery::Trace(Box::new(trace.snapshot())));
    }
    let last = match result {
      Ok(response) => Delivery::Event(StreamEvent::Done(Box::new(response))),
      Err(error) => Delivery::Failed(convert::error_info(error, &self.request_id)),
    };
    self.pump.deliver(self.id, last);
  }
}

/// A streamed call: its events go to `deliver` as the pipeline sends them, each once the
/// consumer has a credit for it; returns the call's end, which the caller delivers after
/// the events.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_call(
  gateway: &Gateway,
  model: &str,
  request: Box<CoreRequest>,
  options: Box<CallOptions>,
  credits: Arc<Semaphore>,
  cancel: &CancellationToken,
  request_id: &str,
  closed: Option<&CancellationToken>,
  deliver: impl Fn(StreamEvent) + Send + Sync + 'static,
) -> crate::error::Result<crate::types::ChatResponse> {
  let consumer = Consumer::new(credits, cancel.clone(), deliver);
  run_call(
    gateway,
    model,
    request,
    options,
    Some(EventSender::Direct(Arc::new(consumer))),
    cancel.clone(),
    request_id,
    closed,
  )
  .await
  .result
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

/// `text` with every secret shape replaced: URL credentials, private key blocks, JWTs, AWS,
/// GitHub, Slack, Stripe, OpenAI, Anthropic and Google keys, `key=value` pairs named like a
/// secret, and absolute file paths. The gateway's own messages go through the same rules.
#[napi]
pub fn redact_secrets(text: String) -> String {
  crate::secret::redact_shapes(&text)
}

use crate::ingress::{new_request_id, run_call};
