//! The floor under `ferrogate serve` at concurrency 1: the same transport (hyper 1 HTTP/1.1
//! server, keep-alive, TCP_NODELAY; a reqwest client with a pooled upstream connection)
//! relaying `POST /v1/chat/completions` to the upstream as it is, with no pipeline. What it
//! adds over calling the upstream directly is the extra loopback hop and the two HTTP stacks;
//! what serve adds beyond it is ferrogate's own work. Used by `bench/serve-latency.mjs`
//! (BARE=1).
//!
//! Env: PORT (listen on 127.0.0.1), UPSTREAM (e.g. http://127.0.0.1:18080), WORKERS (1).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type Body = BoxBody<Bytes, std::io::Error>;

async fn relay(
  client: reqwest::Client,
  upstream: Arc<str>,
  req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
  let path = req.uri().path().to_string();
  let content_type = req.headers().get("content-type").cloned();
  let body = match req.into_body().collect().await {
    Ok(collected) => collected.to_bytes(),
    Err(_) => Bytes::new(),
  };
  let mut call = client.post(format!("{upstream}{path}")).body(body);
  if let Some(value) = content_type {
    call = call.header("content-type", value);
  }
  let answer = match call.send().await {
    Ok(answer) => answer,
    Err(error) => {
      let mut response = Response::new(
        Full::new(Bytes::from(error.to_string()))
          .map_err(|never| match never {})
          .boxed(),
      );
      *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
      return Ok(response);
    }
  };
  let status = answer.status();
  let content_type = answer.headers().get("content-type").cloned();
  let streamed = content_type
    .as_ref()
    .and_then(|v| v.to_str().ok())
    .is_some_and(|v| v.contains("text/event-stream"));
  let body: Body = if streamed {
    let frames = answer
      .bytes_stream()
      .map_ok(Frame::data)
      .map_err(std::io::Error::other);
    BodyExt::boxed(StreamBody::new(frames))
  } else {
    let bytes = answer.bytes().await.unwrap_or_default();
    Full::new(bytes).map_err(|never| match never {}).boxed()
  };
  let mut response = Response::new(body);
  *response.status_mut() = status;
  if let Some(value) = content_type {
    response.headers_mut().insert("content-type", value);
  }
  Ok(response)
}

fn main() {
  let port: u16 = std::env::var("PORT")
    .ok()
    .and_then(|p| p.parse().ok())
    .unwrap_or(18090);
  let upstream: Arc<str> = std::env::var("UPSTREAM")
    .unwrap_or_else(|_| "http://127.0.0.1:18080".into())
    .into();
  let workers = std::env::var("WORKERS")
    .ok()
    .and_then(|w| w.parse().ok())
    .unwrap_or(1);
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(workers)
    .enable_all()
    .build()
    .expect("runtime");
  runtime.block_on(async move {
    let client = reqwest::Client::builder()
      .redirect(reqwest::redirect::Policy::none())
      .tcp_nodelay(true)
      .build()
      .expect("client");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
      .await
      .expect("listen");
    loop {
      let Ok((socket, _)) = listener.accept().await else {
        continue;
      };
      let _ = socket.set_nodelay(true);
      let client = client.clone();
      let upstream = upstream.clone();
      tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
          if req.uri().path() == "/health" {
            let ok: Body = Full::new(Bytes::from_static(b"ok"))
              .map_err(|never| match never {})
              .boxed();
            return futures_util::future::Either::Left(async { Ok(Response::new(ok)) });
          }
          futures_util::future::Either::Right(relay(client.clone(), upstream.clone(), req))
        });
        let _ = hyper::server::conn::http1::Builder::new()
          .keep_alive(true)
          .serve_connection(TokioIo::new(socket), service)
          .await;
      });
    }
  });
}
