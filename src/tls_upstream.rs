//! Test aid: an OpenAI-shaped streaming upstream over TLS, with the certificate of
//! `__test__/fixtures/tls` (trust `ca.pem` there), speaking HTTP/2 or HTTP/1.1 as ALPN picks,
//! the way vendors' edges do. Every stream sends its head and one chunk of text, then waits
//! for `release` before it ends, so a test can hold any number of streams open at once.
//!
//! It runs on a thread of its own (so `memory_tests`' allocator, counting the test's thread,
//! does not count it).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

const CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#;
const LAST: &str = r#"{"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

/// What the server offers by ALPN, and how many streams one HTTP/2 connection may carry.
#[derive(Clone, Copy)]
pub(crate) enum Alpn {
  /// `h2` (and `http/1.1` for a client that offers no h2), with the server's
  /// SETTINGS_MAX_CONCURRENT_STREAMS.
  H2 {
    max_streams: u32,
  },
  Http1,
}

pub(crate) struct TlsUpstream {
  /// `https://127.0.0.1:<port>/v1`
  pub base_url: String,
  /// The PEM file of the CA that signed the server's certificate.
  pub ca_path: String,
  pub release: watch::Sender<bool>,
  /// TLS connections accepted so far.
  pub connections: Arc<AtomicUsize>,
}

fn fixture(name: &str) -> PathBuf {
  PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    .join("__test__/fixtures/tls")
    .join(name)
}

fn tls_config(alpn: Alpn) -> rustls::ServerConfig {
  let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
    .expect("server.pem")
    .collect::<std::result::Result<Vec<_>, _>>()
    .expect("certificates");
  let key = PrivateKeyDer::from_pem_file(fixture("server.key")).expect("server.key");
  let mut config =
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
      .with_safe_default_protocol_versions()
      .expect("TLS versions")
      .with_no_client_auth()
      .with_single_cert(certs, key)
      .expect("server certificate");
  config.alpn_protocols = match alpn {
    Alpn::H2 { .. } => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    Alpn::Http1 => vec![b"http/1.1".to_vec()],
  };
  config
}

type Body = StreamBody<
  futures_util::stream::BoxStream<'static, std::result::Result<Frame<Bytes>, Infallible>>,
>;

/// One stream's answer: its first chunk at once, the rest once `release` says so.
fn answer(released: watch::Receiver<bool>) -> hyper::Response<Body> {
  use futures_util::StreamExt;
  let frames = futures_util::stream::unfold((0, released), |(step, mut released)| async move {
    let text = match step {
      0 => format!("data: {CHUNK}\n\n"),
      1 => {
        // A sender gone (the test over) ends the stream too.
        let _ = released.wait_for(|released| *released).await;
        format!("data: {LAST}\n\ndata: [DONE]\n\n")
      }
      _ => return None,
    };
    Some((Ok(Frame::data(Bytes::from(text))), (step + 1, released)))
  });
  hyper::Response::builder()
    .header("content-type", "text/event-stream")
    .body(StreamBody::new(frames.boxed()))
    .expect("response")
}

/// Starts the upstream on a thread of its own.
pub(crate) fn start(alpn: Alpn) -> TlsUpstream {
  let (ready, address) = std::sync::mpsc::channel();
  let connections = Arc::new(AtomicUsize::new(0));
  let accepted = connections.clone();
  std::thread::spawn(move || {
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .expect("upstream runtime");
    runtime.block_on(async move {
      let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
      let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(alpn)));
      let (release, released) = watch::channel(false);
      ready
        .send((listener.local_addr().expect("address"), release))
        .expect("hand over");
      while let Ok((socket, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        let acceptor = acceptor.clone();
        let released = released.clone();
        tokio::spawn(async move {
          let Ok(tls) = acceptor.accept(socket).await else {
            return;
          };
          let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
          let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
              let released = released.clone();
              async move {
                // The request is read whole, as a server would before it answers.
                let _ = request.into_body().collect().await;
                Ok::<_, Infallible>(answer(released))
              }
            });
          let io = TokioIo::new(tls);
          let _ = match (alpn, is_h2) {
            (Alpn::H2 { max_streams }, true) => {
              hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(max_streams)
                .serve_connection(io, service)
                .await
            }
            _ => {
              hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            }
          };
        });
      }
    });
  });
  let (address, release) = address.recv().expect("upstream address");
  TlsUpstream {
    base_url: format!("https://{address}/v1"),
    ca_path: fixture("ca.pem").to_string_lossy().into_owned(),
    release,
    connections,
  }
}
