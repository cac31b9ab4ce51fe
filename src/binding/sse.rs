//! OpenAI SSE bytes encoded natively for ferrogate/express's openaiRouter: one Buffer per
//! batch of events (each event its own `data:` line), so JS only writes bytes.

use std::sync::atomic::{AtomicBool, Ordering};

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use super::{closed_in_flight, convert, new_request_id, ChatRequest, ErrorInfo, NativeGateway};
use crate::error::{ErrorCode, GatewayError};
use crate::serve::wire::{self, ChunkEncoder};
use crate::types::StreamEvent;

#[napi(object, object_to_js = false)]
pub struct OpenAiSseOptions {
  /// The `chatcmpl-…` id every chunk carries.
  pub id: String,
  /// Unix seconds.
  pub created: f64,
  /// The model name as the client sent it.
  pub model: String,
  /// `stream_options.include_usage`: `"usage": null` on every chunk, then a usage chunk.
  pub include_usage: bool,
}

#[napi(object)]
pub struct SseBatch {
  /// Encoded `data: …\n\n` events (the role delta first, `data: [DONE]` last).
  pub data: Option<Buffer>,
  /// The stream ended (with `[DONE]`, or with an error event in `data`).
  pub done: bool,
  /// The call failed before any byte was encoded: answer with its status instead.
  pub error: Option<ErrorInfo>,
  /// usage.totalTokens of the finished call (quotas).
  pub total_tokens: Option<f64>,
}

/// A streamed call whose events come back as OpenAI SSE bytes.
#[napi]
pub struct NativeSseCall {
  call: ChannelCall,
  encoder: ChunkEncoder,
  include_usage: bool,
  emitted: AtomicBool,
}

/// Events buffered between the upstream reader and the encoder. Bounded so a slow client
/// slows the upstream read instead of growing memory.
const CHANNEL_CAPACITY: usize = 256;
/// Most events encoded into one Buffer: one Promise settles a batch, not an event.
const MAX_BATCH: usize = 64;

/// A streamed call read through its own channel. Unlike the gateway's pump, which hands
/// decoded events to JS, this hands the encoder raw events so only bytes cross to JS.
struct ChannelCall {
  receiver: Mutex<mpsc::Receiver<crate::error::Result<StreamEvent>>>,
  cancel: CancellationToken,
  request_id: String,
}

impl ChannelCall {
  fn cancel(&self) {
    self.cancel.cancel();
  }
}

impl Drop for ChannelCall {
  fn drop(&mut self) {
    self.cancel.cancel();
  }
}

impl NativeGateway {
  /// Starts a streamed call whose events and end (a response or an error) arrive on one
  /// channel; refusals (closed gateway, invalid request) arrive there too.
  fn start_channel(&self, request: ChatRequest) -> ChannelCall {
    let request_id = new_request_id();
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let cancel = self.closed.child_token();
    let call = ChannelCall {
      receiver: Mutex::new(receiver),
      cancel: cancel.clone(),
      request_id: request_id.clone(),
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
      let closed = GatewayError::new(ErrorCode::Aborted, "the gateway is closed");
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
      // Boxed: the pipeline's future is large, and the task's own state is copied whole when
      // it is spawned and when it completes.
      let result = Box::pin(gateway.execute(
        &model,
        core_request,
        options,
        Some(sender.clone()),
        cancel,
        &request_id,
      ))
      .await;
      let last = match result {
        Ok(response) => Ok(StreamEvent::Done(Box::new(response))),
        Err(error) if error.code == ErrorCode::Aborted && closed.is_cancelled() => {
          Err(closed_in_flight())
        }
        Err(error) => Err(gateway.redact_error(error)),
      };
      if closed.is_cancelled() {
        // close() waits for this task: a client that stopped reading must not hold it.
        let _ = sender.try_send(last);
      } else {
        // The receiver is gone when JS dropped the call; nobody is left to tell.
        let _ = sender.send(last).await;
      }
    }));
    call
  }
}

#[napi]
impl NativeGateway {
  /// Starts a streamed call whose events are encoded as OpenAI `chat.completion.chunk` SSE.
  #[napi(catch_unwind)]
  pub fn start_openai_sse(&self, request: ChatRequest, options: OpenAiSseOptions) -> NativeSseCall {
    let created = if options.created.is_finite() && options.created >= 0.0 {
      options.created as u64
    } else {
      0
    };
    NativeSseCall {
      call: self.start_channel(request),
      encoder: ChunkEncoder::new(&options.id, created, &options.model, options.include_usage),
      include_usage: options.include_usage,
      emitted: AtomicBool::new(false),
    }
  }
}

#[napi]
impl NativeSseCall {
  /// Waits for at least one event (or the end) and encodes everything available.
  #[napi]
  pub async fn next(&self) -> SseBatch {
    let mut receiver = self.call.receiver.lock().await;
    let mut batch = SseBatch {
      data: None,
      done: false,
      error: None,
      total_tokens: None,
    };
    let mut out = Vec::with_capacity(4096);
    let mut item = Some(receiver.recv().await.unwrap_or_else(|| {
      Err(GatewayError::protocol(
        "internal error: the call ended without a result",
      ))
    }));
    let mut count = 0;
    'batch: loop {
      while let Some(current) = item.take() {
        let first_bytes = !self.emitted.load(Ordering::Relaxed);
        match current {
          Err(error) if first_bytes => {
            batch.error = Some(convert::error_info(error, &self.call.request_id));
            batch.done = true;
            return batch;
          }
          Err(error) => {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&wire::error_json(&error));
            out.extend_from_slice(b"\n\n");
            batch.done = true;
            break 'batch;
          }
          Ok(event) => {
            if first_bytes {
              self.encoder.role(&mut out);
              self.emitted.store(true, Ordering::Relaxed);
            }
            match event {
              StreamEvent::Text(text) => self.encoder.text(&mut out, &text),
              StreamEvent::ToolCall {
                index,
                id,
                name,
                arguments_delta,
              } => self.encoder.tool_call(
                &mut out,
                index,
                id.as_deref(),
                name.as_deref(),
                &arguments_delta,
              ),
              StreamEvent::Done(response) => {
                batch.total_tokens = Some(response.usage.total_tokens as f64);
                self.encoder.finish(&mut out, &response, self.include_usage);
                batch.done = true;
                break 'batch;
              }
            }
          }
        }
        count += 1;
        if count >= MAX_BATCH {
          break 'batch;
        }
        item = receiver.try_recv().ok();
      }
      // Nothing queued, yet the upstream may be mid-burst: its bytes already read and being
      // decoded by tasks of this worker. A yielded task resumes once the worker has nothing
      // else to run, so the burst's events join this Buffer; each Buffer costs a promise and a
      // wake-up of the JS thread. Nothing new after the yield means the upstream is waiting
      // on the network: send what we have.
      tokio::task::yield_now().await;
      item = receiver.try_recv().ok();
      if item.is_none() {
        break;
      }
    }
    batch.data = Some(out.into());
    batch
  }

  /// Aborts the call: the upstream connection is closed.
  #[napi]
  pub fn cancel(&self) {
    self.call.cancel();
  }

  #[napi(getter)]
  pub fn request_id(&self) -> String {
    self.call.request_id.clone()
  }
}
