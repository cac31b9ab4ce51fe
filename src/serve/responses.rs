//! `POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}` on the native server, over
//! the Responses codec (`ingress::responses`) and the response store. The shared ingress
//! driver takes these over; until then they reuse this server's auth and quota.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{authenticate, check_quota, full, record_usage, Body, State, MAX_BODY_BYTES};
use crate::error::GatewayError;
use crate::ingress::{response_store, responses, Headers};
use crate::pipeline::CallOptions;
use crate::types::StreamEvent;

const STREAM_CHANNEL: usize = 256;

fn error_response(error: &GatewayError, request_id: &str) -> Response<Body> {
  let reply = responses::error_reply(error, request_id);
  let mut response = Response::new(http_body_util::Full::new(Bytes::from(reply.body)).boxed());
  *response.status_mut() =
    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
  for (name, value) in reply.headers {
    if let Ok(value) = HeaderValue::from_str(&value) {
      response.headers_mut().insert(name, value);
    }
  }
  response
}

fn request_id() -> String {
  format!("fg_{:016x}", fastrand::u64(..))
}

/// `/v1/responses/{id}` → the id.
pub(super) fn response_id(path: &str) -> Option<&str> {
  path
    .strip_prefix("/v1/responses/")
    .filter(|id| !id.is_empty() && !id.contains('/'))
}

pub(super) async fn get(state: Arc<State>, req: Request<Incoming>, id: &str) -> Response<Body> {
  let request_id = request_id();
  if let Err(error) = authenticate(&state, &req) {
    return error_response(&error, &request_id);
  }
  match response_store::get(state.gateway.response_store(), id).await {
    Ok(object) => full(StatusCode::OK, "application/json", object.to_string()),
    Err(error) => error_response(&state.gateway.redact_error(error), &request_id),
  }
}

pub(super) async fn delete(state: Arc<State>, req: Request<Incoming>, id: &str) -> Response<Body> {
  let request_id = request_id();
  if let Err(error) = authenticate(&state, &req) {
    return error_response(&error, &request_id);
  }
  match response_store::delete(state.gateway.response_store(), id).await {
    Ok(object) => full(StatusCode::OK, "application/json", object.to_string()),
    Err(error) => error_response(&state.gateway.redact_error(error), &request_id),
  }
}

pub(super) async fn create(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
  let request_id = request_id();
  let identity = match authenticate(&state, &req) {
    Ok(identity) => identity,
    Err(error) => return error_response(&error, &request_id),
  };
  if let Some(id) = &identity {
    if let Err(error) = check_quota(&state, id) {
      return error_response(&error, &request_id);
    }
  }
  let header_pairs: Vec<(String, String)> = req
    .headers()
    .iter()
    .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
    .collect();
  let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
    .collect()
    .await
  {
    Ok(collected) => collected.to_bytes(),
    Err(_) => {
      let mut error = GatewayError::invalid_request(format!(
        "the request body could not be read (at most {MAX_BODY_BYTES} bytes)"
      ));
      error.status = 413;
      return error_response(&error, &request_id);
    }
  };
  let (mut parsed, turn) = match responses::parse_turn(&body, Headers::new(&header_pairs)) {
    Ok(parsed) => parsed,
    Err(error) => return error_response(&error, &request_id),
  };
  let store = state.gateway.response_store();
  let history = match response_store::history(store, &turn).await {
    Ok(history) => history,
    Err(error) => return error_response(&state.gateway.redact_error(error), &request_id),
  };
  if let Err(error) = responses::prepend_history(&mut parsed, &turn, &history) {
    return error_response(&error, &request_id);
  }
  if identity.is_some() {
    parsed.request.user = identity.clone();
  }
  let options = CallOptions {
    metadata: std::mem::take(&mut parsed.metadata),
    ..CallOptions::default()
  };
  let cancel = CancellationToken::new();
  let mut encoder = parsed.encoder;

  if !parsed.stream {
    // Dropped when the client goes away: the call (and its upstream request) stops.
    let _guard = cancel.clone().drop_guard();
    let result = Box::pin(state.gateway.execute(
      &parsed.model,
      parsed.request,
      options,
      None,
      cancel,
      &request_id,
    ))
    .await;
    return match result {
      Ok(response) => {
        record_usage(&state, identity.as_deref(), response.usage.total_tokens);
        let bytes = encoder.json(&response);
        // Stored before the answer goes out, so the client's next turn finds it.
        let _ = response_store::remember(store, &turn, history).await;
        full(StatusCode::OK, "application/json", bytes)
      }
      Err(error) => error_response(&state.gateway.redact_error(error), &request_id),
    };
  }

  // The call runs in its own task, which encodes as events arrive; the body relays bytes.
  // The first item decides the status: an error before any event keeps its HTTP status.
  let (bytes_out, mut bytes_in) = mpsc::channel::<Result<Vec<u8>, GatewayError>>(STREAM_CHANNEL);
  let task_state = state.clone();
  let task_cancel = cancel.clone();
  let task_request_id = request_id.clone();
  tokio::spawn(async move {
    let (events_out, mut events_in) = mpsc::channel(STREAM_CHANNEL);
    let call = Box::pin(task_state.gateway.execute(
      &parsed.model,
      parsed.request,
      options,
      Some(events_out),
      task_cancel,
      &task_request_id,
    ));
    let relay_out = bytes_out.clone();
    let relay = async {
      let mut started = false;
      while let Some(event) = events_in.recv().await {
        // The call's own result ends the stream (below), not an event.
        let Ok(event) = event else { continue };
        if matches!(event, StreamEvent::Done(_)) {
          continue;
        }
        let mut out = Vec::with_capacity(512);
        if !started {
          encoder.stream_start(&task_request_id, &mut out);
          started = true;
        }
        encoder.stream_event(&event, &mut out);
        if relay_out.send(Ok(out)).await.is_err() {
          break;
        }
      }
      (encoder, started)
    };
    let (result, (mut encoder, started)) = tokio::join!(call, relay);
    let mut out = Vec::with_capacity(1024);
    match result {
      Ok(response) => {
        record_usage(
          &task_state,
          identity.as_deref(),
          response.usage.total_tokens,
        );
        if !started {
          encoder.stream_start(&task_request_id, &mut out);
        }
        encoder.stream_end(&response, &mut out);
        let _ = response_store::remember(task_state.gateway.response_store(), &turn, history).await;
        let _ = bytes_out.send(Ok(out)).await;
      }
      Err(error) => {
        let error = task_state.gateway.redact_error(error);
        if started {
          encoder.stream_error(&error, &mut out);
          let _ = bytes_out.send(Ok(out)).await;
        } else {
          let _ = bytes_out.send(Err(error)).await;
        }
      }
    }
  });
  let guard = cancel.drop_guard();
  let first = match bytes_in.recv().await {
    Some(Ok(bytes)) => bytes,
    Some(Err(error)) => return error_response(&error, &request_id),
    None => {
      return error_response(
        &GatewayError::protocol("internal error: the call ended without a result"),
        &request_id,
      )
    }
  };
  let mut pending = Some(first);
  let frames = futures_util::stream::poll_fn(move |cx| {
    let _keep_until_dropped = &guard;
    if let Some(bytes) = pending.take() {
      return std::task::Poll::Ready(Some(Ok::<_, Infallible>(Frame::data(Bytes::from(bytes)))));
    }
    match bytes_in.poll_recv(cx) {
      std::task::Poll::Ready(Some(Ok(bytes))) => {
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from(bytes)))))
      }
      std::task::Poll::Ready(_) => std::task::Poll::Ready(None),
      std::task::Poll::Pending => std::task::Poll::Pending,
    }
  });
  let mut response = Response::new(StreamBody::new(frames).boxed());
  let headers = response.headers_mut();
  headers.insert(
    CONTENT_TYPE,
    HeaderValue::from_static("text/event-stream; charset=utf-8"),
  );
  headers.insert("cache-control", HeaderValue::from_static("no-cache"));
  if let Ok(value) = HeaderValue::from_str(&request_id) {
    headers.insert("x-request-id", value);
  }
  response
}
