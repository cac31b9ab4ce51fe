//! `ferrogate serve`'s HTTP server (hyper 1, HTTP/1.1 keep-alive): the OpenAI-compatible
//! endpoint over a `Gateway`, with no JS on the request path. `POST /v1/chat/completions`
//! (JSON and SSE), `GET /v1/models`, `GET /health`. A client that disconnects drops the
//! response body, which cancels the call and so the upstream request.

pub mod connection;
pub mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::connection::{ConnectionLimits, Connections, RequestBody};
use crate::error::{ErrorCode, GatewayError};
use crate::keyvault::KeyVault;
use crate::pipeline::{CallOptions, Gateway};
use crate::types::StreamEvent;

const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const STREAM_CHANNEL: usize = 256;
/// Events joined into one write; each stays its own SSE event.
const MAX_BATCH: usize = 64;

type Body = BoxBody<Bytes, Infallible>;

/// A virtual key from the config: only its hash is kept (in the KeyVault).
pub struct ServeKey {
  pub key: String,
  pub user: Option<String>,
  pub daily_token_quota: Option<u64>,
}

struct State {
  gateway: Arc<Gateway>,
  keys: Option<Mutex<KeyVault>>,
}

pub struct Server {
  pub address: SocketAddr,
  connections: Connections,
}

impl Server {
  /// Stops accepting and ends idle connections; requests in progress go on.
  pub fn close(&self) {
    self.connections.close();
  }

  /// Stops accepting, lets the requests in progress (streams included) finish for up to
  /// `grace`, then drops the connections still open.
  pub async fn shutdown(&self, grace: Duration) {
    self.connections.shutdown(grace).await;
  }

  /// Connections closed at once because `max_connections` were open.
  pub fn refused_connections(&self) -> u64 {
    self.connections.refused()
  }
}

fn random_secret() -> String {
  format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn vault(keys: Vec<ServeKey>) -> Result<KeyVault, GatewayError> {
  let mut vault = KeyVault::new(&random_secret());
  for (i, entry) in keys.into_iter().enumerate() {
    if entry.key.is_empty() {
      return Err(GatewayError::config(format!(
        "keys[{i}].key must be a non-empty string"
      )));
    }
    let id = entry.user.unwrap_or_else(|| format!("key-{}", i + 1));
    if vault.provider(&id).is_err() {
      vault
        .add(&id, "", None, entry.daily_token_quota)
        .map_err(|e| GatewayError::config(e.to_string()))?;
    }
    vault
      .add_virtual_key(&entry.key, &id)
      .map_err(|e| GatewayError::config(e.to_string()))?;
  }
  Ok(vault)
}

/// Binds and starts serving on the current tokio runtime.
pub async fn start(
  gateway: Arc<Gateway>,
  host: &str,
  port: u16,
  keys: Option<Vec<ServeKey>>,
  limits: ConnectionLimits,
) -> Result<Server, GatewayError> {
  let keys = keys.map(vault).transpose()?.map(Mutex::new);
  let listener = tokio::net::TcpListener::bind((host, port))
    .await
    .map_err(|e| GatewayError::config(format!("cannot listen on {host}:{port}: {e}")))?;
  let address = listener
    .local_addr()
    .map_err(|e| GatewayError::config(format!("cannot read the listening address: {e}")))?;
  let state = Arc::new(State { gateway, keys });
  let connections = connection::serve(listener, limits, move |req| handle(state.clone(), req));
  Ok(Server {
    address,
    connections,
  })
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
  let mut response = Response::new(Full::new(body.into()).boxed());
  *response.status_mut() = status;
  response
    .headers_mut()
    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
  response
}

fn error_response(error: &GatewayError) -> Response<Body> {
  // 499 means nothing to a client; it is gone anyway.
  let status = if error.status == 499 {
    400
  } else {
    error.status
  };
  let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
  let mut response = full(status, "application/json", wire::error_json(error));
  if let Some(wait) = error.retry_after {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&wait.as_secs_f64().ceil().to_string()) {
      headers.insert("retry-after", value);
    }
    if let Ok(value) = HeaderValue::from_str(&(wait.as_millis()).to_string()) {
      headers.insert("retry-after-ms", value);
    }
  }
  response
}

async fn handle(state: Arc<State>, req: Request<RequestBody>) -> Response<Body> {
  let path = req.uri().path().trim_end_matches('/');
  match (req.method(), path) {
    (&Method::POST, "/v1/chat/completions") => chat(state, req).await,
    (&Method::GET, "/v1/models") => match authenticate(&state, &req) {
      Ok(_) => models(&state),
      Err(error) => error_response(&error),
    },
    (&Method::GET, "/health") => full(
      StatusCode::OK,
      "application/json",
      &b"{\"status\":\"ok\"}"[..],
    ),
    (method, _) => {
      let body = serde_json::json!({ "error": {
        "message": format!("Unknown request URL: {method} {}.", crate::secret::redact(req.uri().path(), &[])),
        "type": "invalid_request_error", "param": null, "code": "unknown_url" } });
      full(StatusCode::NOT_FOUND, "application/json", body.to_string())
    }
  }
}

fn models(state: &State) -> Response<Body> {
  let data: Vec<serde_json::Value> = state
    .gateway
    .models()
    .into_iter()
    .map(|id| {
      let owner = id.split('/').next().unwrap_or("ferrogate").to_string();
      serde_json::json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
    })
    .collect();
  full(
    StatusCode::OK,
    "application/json",
    serde_json::json!({ "object": "list", "data": data }).to_string(),
  )
}

/// The caller's KeyVault id, or `None` when the server has no keys.
fn authenticate(state: &State, req: &Request<RequestBody>) -> Result<Option<String>, GatewayError> {
  let Some(keys) = &state.keys else {
    return Ok(None);
  };
  let token = req
    .headers()
    .get(AUTHORIZATION)
    .and_then(|v| v.to_str().ok())
    .and_then(|v| {
      let (scheme, rest) = v.trim().split_once(' ')?;
      scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
  let Some(token) = token else {
    return Err(GatewayError::new(
      ErrorCode::Authentication,
      "You didn't provide an API key. Use an Authorization header: Bearer <key>.",
    ));
  };
  let vault = keys
    .lock()
    .map_err(|_| GatewayError::config("internal error: the key store is unavailable"))?;
  vault
    .verify(token)
    .map(|id| Some(id.to_string()))
    .ok_or_else(|| GatewayError::new(ErrorCode::Authentication, "Incorrect API key provided."))
}

fn now_ms() -> i64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_millis() as i64)
    .unwrap_or(0)
}

fn check_quota(state: &State, id: &str) -> Result<(), GatewayError> {
  let Some(keys) = &state.keys else {
    return Ok(());
  };
  let Ok(mut vault) = keys.lock() else {
    return Ok(());
  };
  let now = now_ms();
  match vault.check_quota(id, now) {
    Ok(status) if !status.allowed => {
      let mut error = GatewayError::new(
        ErrorCode::RateLimited,
        "this API key has used its daily token quota",
      );
      error.retry_after = Some(Duration::from_millis(
        u64::try_from(status.resets_at_ms - now).unwrap_or(0),
      ));
      Err(error)
    }
    _ => Ok(()),
  }
}

fn record_usage(state: &State, id: Option<&str>, tokens: u64) {
  if let (Some(keys), Some(id)) = (&state.keys, id) {
    if let Ok(mut vault) = keys.lock() {
      let _ = vault.record_usage(id, tokens, now_ms());
    }
  }
}

fn call_id() -> (String, String) {
  let request_id = format!("fg_{:016x}", fastrand::u64(..));
  let id = format!(
    "chatcmpl-{:016x}{:08x}",
    fastrand::u64(..),
    fastrand::u32(..)
  );
  (request_id, id)
}

async fn chat(state: Arc<State>, req: Request<RequestBody>) -> Response<Body> {
  let identity = match authenticate(&state, &req) {
    Ok(identity) => identity,
    Err(error) => return error_response(&error),
  };
  if let Some(id) = &identity {
    if let Err(error) = check_quota(&state, id) {
      return error_response(&error);
    }
  }
  let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
    .collect()
    .await
  {
    Ok(collected) => collected.to_bytes(),
    Err(_) => {
      return error_response(&GatewayError::invalid_request(format!(
        "the request body could not be read (at most {MAX_BODY_BYTES} bytes)"
      )))
    }
  };
  let mut parsed = match wire::parse_request(&body) {
    Ok(parsed) => parsed,
    Err(error) => return error_response(&error),
  };
  if identity.is_some() {
    parsed.request.user = identity.clone();
  }
  let (request_id, id) = call_id();
  let created = u64::try_from(now_ms() / 1000).unwrap_or(0);
  let cancel = CancellationToken::new();

  if !parsed.stream {
    // Dropped when the client goes away: the call (and its upstream request) stops.
    let _guard = cancel.clone().drop_guard();
    // Boxed: the pipeline's future is large, and the connection's task would otherwise hold
    // (and move) all of it.
    let result = Box::pin(state.gateway.execute(
      &parsed.model,
      parsed.request,
      CallOptions::default(),
      None,
      cancel,
      &request_id,
    ))
    .await;
    return match result {
      Ok(response) => {
        record_usage(&state, identity.as_deref(), response.usage.total_tokens);
        full(
          StatusCode::OK,
          "application/json",
          wire::completion_json(&response, &id, created, &parsed.model),
        )
      }
      Err(error) => error_response(&state.gateway.redact_error(error)),
    };
  }

  let (sender, mut receiver) = mpsc::channel(STREAM_CHANNEL);
  let task_state = state.clone();
  let task_cancel = cancel.clone();
  let model = parsed.model.clone();
  tokio::spawn(async move {
    // Boxed: tokio copies a task's whole state when it spawns and when it completes.
    let result = Box::pin(task_state.gateway.execute(
      &model,
      parsed.request,
      CallOptions::default(),
      Some(sender.clone()),
      task_cancel,
      &request_id,
    ))
    .await;
    let last = match result {
      Ok(response) => Ok(StreamEvent::Done(Box::new(response))),
      Err(error) => Err(task_state.gateway.redact_error(error)),
    };
    let _ = sender.send(last).await;
  });
  let guard = cancel.drop_guard();
  // Errors before the first event keep their HTTP status.
  let first = match receiver.recv().await {
    Some(Ok(event)) => event,
    Some(Err(error)) => return error_response(&error),
    None => {
      return error_response(&GatewayError::protocol(
        "internal error: the call ended without a result",
      ))
    }
  };
  let encoder = wire::ChunkEncoder::new(&id, created, &parsed.model, parsed.include_usage);
  let mut head = Vec::with_capacity(1024);
  encoder.role(&mut head);
  let include_usage = parsed.include_usage;
  let user = identity;
  let mut pending = Some(Ok(first));
  let mut finished = false;
  let events = stream::poll_fn(move |cx| {
    let _keep_until_dropped = &guard;
    if finished {
      return std::task::Poll::Ready(None);
    }
    let mut out = std::mem::take(&mut head);
    let mut count = 0;
    loop {
      let item = match pending.take() {
        Some(item) => Some(item),
        None if count == 0 => match receiver.poll_recv(cx) {
          std::task::Poll::Ready(item) => item,
          std::task::Poll::Pending => return std::task::Poll::Pending,
        },
        None => receiver.try_recv().ok(),
      };
      let Some(item) = item else {
        if count == 0 {
          finished = true;
        }
        break;
      };
      count += 1;
      match item {
        Ok(StreamEvent::Text(text)) => encoder.text(&mut out, &text),
        Ok(StreamEvent::ToolCall {
          index,
          id,
          name,
          arguments_delta,
        }) => encoder.tool_call(
          &mut out,
          index,
          id.as_deref(),
          name.as_deref(),
          &arguments_delta,
        ),
        Ok(StreamEvent::Done(response)) => {
          record_usage(&state, user.as_deref(), response.usage.total_tokens);
          encoder.finish(&mut out, &response, include_usage);
          finished = true;
          break;
        }
        Err(error) => {
          out.extend_from_slice(b"data: ");
          out.extend_from_slice(&wire::error_json(&error));
          out.extend_from_slice(b"\n\n");
          finished = true;
          break;
        }
      }
      if count >= MAX_BATCH {
        break;
      }
    }
    if out.is_empty() {
      return std::task::Poll::Ready(None);
    }
    std::task::Poll::Ready(Some(Ok::<_, Infallible>(Frame::data(Bytes::from(out)))))
  });
  let mut response = Response::new(StreamBody::new(events).boxed());
  let headers = response.headers_mut();
  headers.insert(
    CONTENT_TYPE,
    HeaderValue::from_static("text/event-stream; charset=utf-8"),
  );
  headers.insert("cache-control", HeaderValue::from_static("no-cache"));
  response
}
