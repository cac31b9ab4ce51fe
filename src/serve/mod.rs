//! `ferrogate serve`'s HTTP server (hyper 1, HTTP/1.1 keep-alive): sockets and limits, with
//! no JS on the request path. Every request under `/v1/` goes to the front door
//! (`crate::ingress`), the same driver and codecs `gatewayRouter` uses; `GET /health` is
//! answered here. A client that disconnects drops the response body, which cancels the call
//! and so the upstream request. Connections, their timeouts and their number are
//! `connection`'s.

pub mod connection;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use self::connection::{ConnectionLimits, Connections, RequestBody};
use crate::error::{ErrorCode, GatewayError};
use crate::ingress::{self, FrontDoor, HttpRequest, Keys, Reply, MAX_BODY_BYTES};
use crate::pipeline::Gateway;

pub use crate::ingress::ServeKey;

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct State {
  door: FrontDoor,
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

/// Binds and starts serving on the current tokio runtime.
pub async fn start(
  gateway: Arc<Gateway>,
  host: &str,
  port: u16,
  keys: Option<Vec<ServeKey>>,
  limits: ConnectionLimits,
) -> Result<Server, GatewayError> {
  let keys = match keys {
    Some(keys) => Keys::from_serve_keys(keys)?,
    None => Keys::Open,
  };
  let listener = tokio::net::TcpListener::bind((host, port))
    .await
    .map_err(|e| GatewayError::config(format!("cannot listen on {host}:{port}: {e}")))?;
  let address = listener
    .local_addr()
    .map_err(|e| GatewayError::config(format!("cannot read the listening address: {e}")))?;
  let state = Arc::new(State {
    door: FrontDoor::new(gateway, keys, None),
  });
  let connections = connection::serve(listener, limits, move |req| handle(state.clone(), req));
  Ok(Server {
    address,
    connections,
  })
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
  let mut response = Response::new(Full::new(body.into()).boxed_unsync());
  *response.status_mut() = status;
  response
    .headers_mut()
    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
  response
}

fn with_headers(
  mut response: Response<Body>,
  status: u16,
  headers: Vec<(String, String)>,
) -> Response<Body> {
  *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
  let map = response.headers_mut();
  for (name, value) in headers {
    if let (Ok(name), Ok(value)) = (
      HeaderName::from_bytes(name.as_bytes()),
      HeaderValue::from_str(&value),
    ) {
      map.insert(name, value);
    }
  }
  response
}

fn whole(reply: ingress::WholeReply) -> Response<Body> {
  let response = Response::new(Full::new(Bytes::from(reply.body)).boxed_unsync());
  with_headers(response, reply.status, reply.headers)
}

async fn handle(state: Arc<State>, req: Request<RequestBody>) -> Response<Body> {
  if req.method() == Method::GET && req.uri().path().trim_end_matches('/') == "/health" {
    return full(
      StatusCode::OK,
      "application/json",
      &b"{\"status\":\"ok\"}"[..],
    );
  }
  let (parts, body) = req.into_parts();
  let method = parts.method.as_str();
  let path = parts
    .uri
    .path_and_query()
    .map_or_else(|| parts.uri.path(), |p| p.as_str());
  let headers: Vec<(String, String)> = parts
    .headers
    .iter()
    .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
    .collect();
  let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
    Ok(collected) => collected.to_bytes(),
    Err(error) if error.is::<http_body_util::LengthLimitError>() => {
      return whole(FrontDoor::refuse(method, path, &ingress::body_too_large()))
    }
    // The body did not arrive in time, or the connection broke while it did.
    Err(error) => {
      let refused = GatewayError::new(
        ErrorCode::InvalidRequest,
        format!("the request body could not be read: {error}"),
      )
      .with_status(408);
      return whole(FrontDoor::refuse(method, path, &refused));
    }
  };
  let request = HttpRequest {
    method,
    path,
    headers: &headers,
    body: &body,
    key_verdict: None,
    // A client's trace continues upstream: its `traceparent` is forwarded as it came.
    trace: crate::pipeline::CallTrace::from_headers(&headers),
  };
  match state.door.handle(request, CancellationToken::new()).await {
    Reply::Whole(reply) => whole(reply),
    Reply::Stream(mut reply) => {
      let headers = std::mem::take(&mut reply.headers);
      let batches = stream::unfold(reply, |mut reply| async move {
        let batch = reply.next_batch().await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(batch))), reply))
      });
      let response = Response::new(StreamBody::new(batches).boxed_unsync());
      with_headers(response, 200, headers)
    }
  }
}
