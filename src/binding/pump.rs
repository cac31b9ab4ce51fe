//! Handing call results to JS. Every call of a gateway delivers through one threadsafe
//! function: whatever is ready when the JS thread wakes up (events of many streams, the
//! responses of many chats) goes over in one callback, as one flat JSON array. A wake-up of the
//! JS thread and the crossing into JS are the costly part of a delivery, so they are shared
//! by everything that is ready rather than paid per call, per event or per promise.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{Env, Function, Unknown};
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use super::convert;
use super::types as js;
use crate::types::StreamEvent;

/// The kinds of the flat delivery array `[callId, kind, payload, callId, kind, payload, …]`;
/// index.js reads the same numbers.
const TEXT: u32 = 0;
const TOOL_CALL: u32 = 1;
const DONE: u32 = 2;
const FAILED: u32 = 3;
/// The front door's answers (`binding::ingress`): a response head (with the whole body, which
/// ends the call, or without, when a stream follows), a batch of the stream's bytes, its end.
const HEAD: u32 = 4;
const BYTES: u32 = 5;
const END: u32 = 6;
/// A traced call's report (`pipeline::TraceReport`), just before its end.
const TRACE: u32 = 7;

/// What one call hands to JS. `Done` and `Failed` end the call.
pub(crate) enum Delivery {
  Event(StreamEvent),
  Failed(js::ErrorInfo),
  /// `{ status, headers: [[name, value], …], body? }`: with a body, the answer is whole.
  Head(ReplyHead),
  /// Encoded bytes of a streamed answer (SSE text, so a JSON string carries them).
  Bytes(String),
  /// A streamed answer ended.
  End,
  /// What the call's spans are made from; sent only for a call given a trace context.
  Trace(Box<crate::pipeline::TraceReport>),
}

#[derive(serde::Serialize)]
pub(crate) struct ReplyHead {
  pub status: u16,
  pub headers: Vec<(String, String)>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub body: Option<String>,
}

impl Delivery {
  fn ends_call(&self) -> bool {
    matches!(
      self,
      Delivery::Event(StreamEvent::Done(_)) | Delivery::Failed(_) | Delivery::End
    ) || matches!(self, Delivery::Head(head) if head.body.is_some())
  }
}

#[derive(Default)]
struct Queue {
  /// The deliveries so far, as JSON array elements without the brackets: building JS
  /// objects through napi one property at a time costs several times what `JSON.parse`
  /// does, and the text is written here, on the thread that delivers, not on the JS thread.
  json: String,
  /// How many of them end their call.
  ended: u32,
  /// A wake-up of the JS thread is on its way; later deliveries ride along with it.
  wake_pending: bool,
}

/// The queue and what the JS-thread side of the pump needs.
#[derive(Default)]
struct Shared {
  queue: Mutex<Queue>,
  /// Calls started and not yet delivered their end; only touched on the JS thread. While it
  /// is above zero the threadsafe function keeps the event loop alive, like a pending promise.
  in_flight: AtomicU32,
  /// The threadsafe function itself, for its JS-thread side (ref and unref).
  wake: AtomicPtr<sys::napi_threadsafe_function__>,
}

impl Shared {
  fn queue(&self) -> MutexGuard<'_, Queue> {
    // A panic while the lock was held cannot leave the queue half-changed (appending and
    // taking are single operations), so a poisoned lock is still a good queue.
    self
      .queue
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }
}

type WakeFn = ThreadsafeFunction<(), Unknown<'static>, String, napi::Status, false, true>;

pub(crate) struct Pump {
  shared: Arc<Shared>,
  wake: WakeFn,
}

impl Pump {
  /// `dispatch` is called on the JS thread with the JSON text of the delivery array.
  pub fn new(dispatch: Function<'_, String, Unknown<'static>>) -> napi::Result<Pump> {
    let shared = Arc::new(Shared::default());
    let for_js = shared.clone();
    let wake = dispatch
      .build_threadsafe_function::<()>()
      .callee_handled::<false>()
      // Unreferenced while no call is in flight: an idle gateway must not keep Node running.
      .weak::<true>()
      .build_callback(move |ctx| {
        let (json, ended) = {
          let mut queue = for_js.queue();
          queue.wake_pending = false;
          (
            std::mem::take(&mut queue.json),
            std::mem::take(&mut queue.ended),
          )
        };
        if ended > 0 {
          let before = for_js.in_flight.load(Ordering::Relaxed);
          let after = before.saturating_sub(ended);
          for_js.in_flight.store(after, Ordering::Relaxed);
          if after == 0 {
            set_referenced(&ctx.env, for_js.wake.load(Ordering::Relaxed), false);
          }
        }
        Ok(format!("[{json}]"))
      })?;
    shared.wake.store(wake.raw(), Ordering::Relaxed);
    Ok(Pump { shared, wake })
  }

  /// On the JS thread, when a call starts: keeps the event loop alive until it ends.
  pub fn call_started(&self, env: &Env) {
    let before = self.shared.in_flight.load(Ordering::Relaxed);
    self.shared.in_flight.store(before + 1, Ordering::Relaxed);
    if before == 0 && !self.wake.aborted() {
      set_referenced(env, self.wake.raw(), true);
    }
  }

  /// From any thread.
  pub fn deliver(&self, call_id: u32, delivery: Delivery) {
    let ends_call = delivery.ends_call();
    let element = delivery.into_json(call_id);
    let wake = {
      let mut queue = self.shared.queue();
      if !queue.json.is_empty() {
        queue.json.push(',');
      }
      queue.json.push_str(&element);
      queue.ended += u32::from(ends_call);
      !std::mem::replace(&mut queue.wake_pending, true)
    };
    if wake {
      // Fails only while Node tears the environment down, when nobody is left to tell.
      let _ = self.wake.call((), ThreadsafeFunctionCallMode::NonBlocking);
    }
  }
}

fn set_referenced(env: &Env, raw: sys::napi_threadsafe_function, referenced: bool) {
  if raw.is_null() {
    return;
  }
  // Both only flip the uv handle's ref flag; they fail only for a closing function.
  unsafe {
    if referenced {
      sys::napi_ref_threadsafe_function(env.raw(), raw);
    } else {
      sys::napi_unref_threadsafe_function(env.raw(), raw);
    }
  }
}

impl Delivery {
  /// `callId,kind,payload`: three elements of the delivery array, written into one string
  /// (a text event is one allocation, not three).
  fn into_json(self, call_id: u32) -> String {
    let (kind, written) = match self {
      // Relayed native bytes only reach front-door callers, which do not use these kinds.
      Delivery::Event(StreamEvent::Text(text) | StreamEvent::Native(text)) => {
        element(call_id, TEXT, text.len(), &text)
      }
      Delivery::Event(StreamEvent::Done(response)) => {
        element(call_id, DONE, 512, &convert::response(*response))
      }
      Delivery::Event(event @ StreamEvent::ToolCall(_)) => {
        element(call_id, TOOL_CALL, 128, &convert::stream_event(event))
      }
      Delivery::Failed(info) => element(call_id, FAILED, 256, &info),
      Delivery::Head(head) => element(
        call_id,
        HEAD,
        head.body.as_ref().map_or(128, String::len) + 128,
        &head,
      ),
      Delivery::Bytes(bytes) => element(call_id, BYTES, bytes.len() + 64, &bytes),
      Delivery::End => element(call_id, END, 8, &0),
      Delivery::Trace(report) => element(call_id, TRACE, 512, &report),
    };
    match written {
      Some(element) => element,
      // Plain structs of strings and numbers always serialize; still, the call must end.
      None => format!(
        "{call_id},{FAILED},{}",
        serde_json::json!({
          "code": "PROVIDER_ERROR",
          "status": 502,
          "message": format!("internal error: the result of a call ({kind}) could not be encoded"),
          "requestId": "",
        })
      ),
    }
  }
}

fn element(
  call_id: u32,
  kind: u32,
  size_hint: usize,
  payload: &impl serde::Serialize,
) -> (u32, Option<String>) {
  use std::io::Write;
  let mut out = Vec::with_capacity(size_hint + 24);
  let written =
    write!(out, "{call_id},{kind},").is_ok() && serde_json::to_writer(&mut out, payload).is_ok();
  // serde_json writes UTF-8 only.
  (kind, written.then(|| String::from_utf8(out).ok()).flatten())
}
