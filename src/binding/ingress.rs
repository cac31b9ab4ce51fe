//! napi entry of the front door for ferrogate/express's `gatewayRouter`: JS hands over the
//! request's method, path, headers and body bytes; the answer (status, headers, and a whole
//! body or a stream's byte batches) comes back through the gateway's shared delivery pump.
//! Parsing, auth, quotas, the call and encoding are all `crate::ingress`'s.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::{Buffer, Either, Env};
use napi_derive::napi;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::invalid_arg;
use super::pump::{Delivery, Pump, ReplyHead};
use super::serve::{serve_keys as config_keys, ServeKeyOptions};
use super::{lock, CallControl, Controls, NativeGateway, NativeKeyVault, STREAM_CREDITS};
use crate::error::{ErrorCode, GatewayError};
use crate::ingress::{FrontDoor, HttpRequest, KeyVerdict, Keys, Reply, WholeReply};
use crate::pipeline::CallTrace;

#[napi(object)]
pub struct WholeAnswer {
  pub status: u32,
  /// `[name, value]` pairs.
  pub headers: Vec<Vec<String>>,
  pub body: String,
}

/// A front door over one gateway (one per `gatewayRouter`).
#[napi]
pub struct NativeFrontDoor {
  door: Arc<FrontDoor>,
  pump: Arc<Pump>,
  controls: Controls,
  calls: TaskTracker,
  closed: CancellationToken,
}

#[napi]
impl NativeGateway {
  /// A front door checking keys against `vault` (a KeyVault's native handle), against the
  /// verdicts of a JS key function when `keyFunction` is true, or against `serveKeys` (the
  /// virtual keys of `ferrogate serve`'s config, each with its own quota); else open.
  #[napi]
  pub fn front_door(
    &self,
    vault: Option<&NativeKeyVault>,
    key_function: bool,
    serve_keys: Option<Vec<ServeKeyOptions>>,
  ) -> napi::Result<NativeFrontDoor> {
    let Some(pump) = &self.pump else {
      return Err(napi::Error::new(
        napi::Status::GenericFailure,
        "listen() must be called before a front door is made",
      ));
    };
    let gateway = self.gateway().map_err(super::coded)?;
    let keys = match (vault, key_function, serve_keys) {
      (Some(vault), _, _) => Keys::Vault {
        vault: vault.inner.clone(),
        users: Arc::new(HashMap::new()),
      },
      (None, true, _) => Keys::Function,
      (None, false, Some(keys)) => Keys::from_serve_keys(config_keys(keys)).map_err(invalid_arg)?,
      (None, false, None) => Keys::Open,
    };
    Ok(NativeFrontDoor {
      door: Arc::new(FrontDoor::new(gateway, keys, Some(self.closed.clone()))),
      pump: pump.clone(),
      controls: self.controls.clone(),
      calls: self.calls.clone(),
      closed: self.closed.clone(),
    })
  }
}

fn head(reply: WholeReply) -> Delivery {
  Delivery::Head(ReplyHead {
    status: reply.status,
    headers: reply.headers,
    // Every codec writes JSON (UTF-8); lossy only guards against a broken vendor relay.
    body: Some(String::from_utf8_lossy(&reply.body).into_owned()),
  })
}

#[napi]
impl NativeFrontDoor {
  /// Whether the front door serves `method path` (a router passes other requests on).
  #[napi]
  pub fn knows(method: String, path: String) -> bool {
    FrontDoor::knows(&method, &path)
  }

  /// The 413 answer to a body over the front door's limit, in the protocol's shape (the
  /// router stops reading such a body instead of handing it over).
  #[napi]
  pub fn too_large(method: String, path: String) -> WholeAnswer {
    let reply = FrontDoor::refuse(&method, &path, &crate::ingress::body_too_large());
    WholeAnswer {
      status: u32::from(reply.status),
      headers: reply.headers.into_iter().map(|(k, v)| vec![k, v]).collect(),
      body: String::from_utf8_lossy(&reply.body).into_owned(),
    }
  }

  /// The caller's key as the front door reads it (Bearer, x-api-key, api-key), for a JS key
  /// function to judge; `headers` is Node's `rawHeaders` (name, value, name, value, …).
  #[napi]
  pub fn caller_key(headers: Vec<String>) -> Option<String> {
    let pairs = header_pairs(headers);
    crate::ingress::auth::caller_key(crate::ingress::Headers::new(&pairs)).map(str::to_string)
  }

  /// Answers one request as call `callId` of the gateway's delivery pump: a head (with the
  /// whole body, or followed by byte batches and an end). `keyVerdict` is the key function's
  /// answer (false, true or the caller's identity). Cancel with the gateway's `cancel(callId)`,
  /// acknowledge batches with its `ack(callId, n)`.
  // Plain arguments, not an options object: no property lookups per request.
  #[allow(clippy::too_many_arguments)]
  #[napi(catch_unwind)]
  pub fn handle(
    &self,
    env: Env,
    call_id: u32,
    method: String,
    path: String,
    headers: Vec<String>,
    body: Buffer,
    key_verdict: Option<Either<bool, String>>,
  ) {
    self.pump.call_started(&env);
    if self.closed.is_cancelled() {
      let closed = GatewayError::new(ErrorCode::Aborted, "the gateway is closed");
      self
        .pump
        .deliver(call_id, head(FrontDoor::refuse(&method, &path, &closed)));
      return;
    }
    let verdict = key_verdict.map(|verdict| match verdict {
      Either::A(true) => KeyVerdict::Allowed,
      Either::A(false) => KeyVerdict::Refused,
      Either::B(user) => KeyVerdict::User(user),
    });
    let body = body.to_vec();
    let headers = header_pairs(headers);
    // gatewayRouter puts its call span's context here (a client's, when it makes no span).
    let trace = CallTrace::from_headers(&headers);
    let cancel = self.closed.child_token();
    let credits = Arc::new(Semaphore::new(STREAM_CREDITS));
    lock(&self.controls).insert(
      call_id,
      CallControl {
        cancel: cancel.clone(),
        credits: Some(credits.clone()),
      },
    );
    let door = self.door.clone();
    let pump = self.pump.clone();
    let controls = self.controls.clone();
    napi::bindgen_prelude::spawn(self.calls.track_future(async move {
      let request = HttpRequest {
        method: &method,
        path: &path,
        headers: &headers,
        body: &body,
        key_verdict: verdict,
        trace: trace.clone(),
      };
      let reply = Box::pin(door.handle(request, cancel.clone())).await;
      match reply {
        Reply::Whole(reply) => {
          lock(&controls).remove(&call_id);
          deliver_trace(&pump, call_id, trace.as_deref());
          pump.deliver(call_id, head(reply));
        }
        Reply::Stream(mut reply) => {
          pump.deliver(
            call_id,
            Delivery::Head(ReplyHead {
              status: 200,
              headers: std::mem::take(&mut reply.headers),
              body: None,
            }),
          );
          while let Some(batch) = reply.next_batch().await {
            // A slow client slows the upstream read: one batch per credit JS gave back.
            let permit = tokio::select! {
              biased;
              () = cancel.cancelled() => break,
              permit = credits.acquire() => permit,
            };
            match permit {
              Ok(permit) => permit.forget(),
              Err(_) => break,
            }
            let text = String::from_utf8(batch)
              .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            pump.deliver(call_id, Delivery::Bytes(text));
          }
          lock(&controls).remove(&call_id);
          deliver_trace(&pump, call_id, trace.as_deref());
          pump.deliver(call_id, Delivery::End);
        }
      }
    }));
  }
}

/// The report of a traced call that reached the pipeline (one refused before has none).
fn deliver_trace(pump: &Pump, call_id: u32, trace: Option<&CallTrace>) {
  if let Some(report) = trace
    .map(CallTrace::snapshot)
    .filter(|report| report.finished)
  {
    pump.deliver(call_id, Delivery::Trace(Box::new(report)));
  }
}

/// Node's `rawHeaders` as (lower-case name, value) pairs.
fn header_pairs(raw: Vec<String>) -> Vec<(String, String)> {
  let mut pairs = Vec::with_capacity(raw.len() / 2);
  let mut items = raw.into_iter();
  while let (Some(name), Some(value)) = (items.next(), items.next()) {
    pairs.push((name.to_ascii_lowercase(), value));
  }
  pairs
}
