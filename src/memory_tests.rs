//! What one stream in flight holds, for `bench/concurrent-streams.mjs`'s breakdown of the
//! memory per open stream. A measurement, not a check: run it with
//! `cargo test --lib --release what_a_call_in_flight_holds -- --ignored --nocapture`
//! (`STREAMS=n` changes how many streams are held open at once, 500 by default).
//!
//! The bytes are counted by this test binary's global allocator, on the test's thread only:
//! the streams run on a current-thread runtime there, while the upstream they read from runs
//! on a thread of its own and is not counted (nor are the other tests running beside this
//! one). The counts are the bytes asked for; malloc adds its own header and rounding to each
//! allocation, so the allocation counts are printed too.
//!
//! Vendors serve HTTP/2 over TLS, so streams share connections; the legs over TLS
//! ([`crate::tls_upstream`]) show what a stream holds then, beside HTTP/1.1 over TLS and the
//! plain HTTP/1.1 the bench's mock speaks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Gateway, GatewayConfig, ProviderConfig};
use crate::tls_upstream::{self, Alpn};
use crate::types::{ChatRequest, Message, Role, StreamEvent};

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCATIONS: AtomicI64 = AtomicI64::new(0);
/// Allocations of at least [`LARGE`] bytes: hyper's buffers, a channel's first block, the
/// pipeline's boxed future. They are tallied apart as they are what a stream holds most of.
static LIVE_LARGE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_LARGE: AtomicI64 = AtomicI64::new(0);
const LARGE: usize = 2048;

thread_local! {
  // `const`, with no destructor: safe to read from inside the allocator.
  static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted_here() -> bool {
  COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn count(size: usize, sign: i64) {
  if counted_here() {
    LIVE_BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
    LIVE_ALLOCATIONS.fetch_add(sign, Ordering::Relaxed);
    if size >= LARGE {
      LIVE_LARGE_BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
      LIVE_LARGE.fetch_add(sign, Ordering::Relaxed);
    }
  }
}

unsafe impl GlobalAlloc for Counting {
  unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
    count(layout.size(), 1);
    System.alloc(layout)
  }

  unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
    count(layout.size(), 1);
    System.alloc_zeroed(layout)
  }

  unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
    count(layout.size(), -1);
    System.dealloc(ptr, layout)
  }

  unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    // A reallocation is counted as a free and a new allocation.
    count(layout.size(), -1);
    count(new_size, 1);
    System.realloc(ptr, layout, new_size)
  }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes and allocations made on this thread (while counted) and not yet freed.
#[derive(Clone, Copy)]
struct Live {
  bytes: i64,
  allocations: i64,
  large_bytes: i64,
  large: i64,
}

fn live() -> Live {
  Live {
    bytes: LIVE_BYTES.load(Ordering::Relaxed),
    allocations: LIVE_ALLOCATIONS.load(Ordering::Relaxed),
    large_bytes: LIVE_LARGE_BYTES.load(Ordering::Relaxed),
    large: LIVE_LARGE.load(Ordering::Relaxed),
  }
}

impl std::ops::Sub for Live {
  type Output = Live;
  fn sub(self, earlier: Live) -> Live {
    Live {
      bytes: self.bytes - earlier.bytes,
      allocations: self.allocations - earlier.allocations,
      large_bytes: self.large_bytes - earlier.large_bytes,
      large: self.large - earlier.large,
    }
  }
}

impl Live {
  /// Per stream: all bytes and allocations, then the large ones among them.
  fn per(self, streams: usize) -> String {
    let n = streams as f64;
    format!(
      "{:>6.0} bytes in {:>4.1} allocations ({:>5.0} bytes in {:.1} of {} KiB or more)",
      self.bytes as f64 / n,
      self.allocations as f64 / n,
      self.large_bytes as f64 / n,
      self.large as f64 / n,
      LARGE / 1024
    )
  }
}

const CHUNK: &str = r#"{"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}"#;
const LAST: &str = r#"{"id":"c","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

fn http_chunk(text: &str) -> String {
  format!("{:x}\r\n{text}\r\n", text.len())
}

/// One request of a kept-alive connection: its head, then as many body bytes as it names.
async fn read_request(socket: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> bool {
  loop {
    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
      let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
      let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
      if buffer.len() >= end + 4 + length {
        buffer.drain(..end + 4 + length);
        return true;
      }
    }
    let mut read = [0u8; 4096];
    match socket.read(&mut read).await {
      Ok(0) | Err(_) => return false,
      Ok(n) => buffer.extend_from_slice(&read[..n]),
    }
  }
}

/// An OpenAI-shaped streaming upstream on a thread of its own (so none of it is counted):
/// every stream sends one chunk of text, then waits for `release` before it ends.
fn held_upstream() -> (String, watch::Sender<bool>) {
  let (ready, address) = std::sync::mpsc::channel();
  std::thread::spawn(move || {
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .expect("upstream runtime");
    runtime.block_on(async move {
      let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
      let (release, released) = watch::channel(false);
      ready
        .send((listener.local_addr().expect("address"), release))
        .expect("hand over");
      while let Ok((mut socket, _)) = listener.accept().await {
        let mut released = released.clone();
        tokio::spawn(async move {
          let mut buffer = Vec::new();
          while read_request(&mut socket, &mut buffer).await {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            let first = http_chunk(&format!("data: {CHUNK}\n\n"));
            if socket
              .write_all(format!("{head}{first}").as_bytes())
              .await
              .is_err()
            {
              return;
            }
            if released.wait_for(|released| *released).await.is_err() {
              return;
            }
            let rest = format!(
              "{}{}0\r\n\r\n",
              http_chunk(&format!("data: {LAST}\n\n")),
              http_chunk("data: [DONE]\n\n")
            );
            if socket.write_all(rest.as_bytes()).await.is_err() {
              return;
            }
          }
        });
      }
    });
  });
  let (address, release) = address.recv().expect("upstream address");
  (format!("http://{address}/v1"), release)
}

fn gateway(base_url: &str, ca_cert_path: Option<&str>) -> Gateway {
  Gateway::new(GatewayConfig {
    providers: vec![ProviderConfig {
      name: "up".into(),
      kind: "openai".into(),
      api_key: Some("sk-memory".into()),
      base_url: Some(base_url.into()),
      ca_cert_path: ca_cert_path.map(Into::into),
      ..ProviderConfig::default()
    }],
    max_retries: 0,
    ..GatewayConfig::default()
  })
  .expect("gateway")
}

fn request() -> ChatRequest {
  ChatRequest {
    messages: vec![Message::text(Role::User, "Stream to the benchmark.")],
    ..ChatRequest::default()
  }
}

/// Holds `streams` streams open through the binding's way of streaming
/// ([`crate::binding::stream_call`]), each spawned as a task the way the binding spawns a
/// call, until each has delivered its first event; returns what they hold then.
async fn hold_gateway_streams(
  gateway: &Arc<Gateway>,
  streams: usize,
  release: &watch::Sender<bool>,
) -> Live {
  release.send_replace(false);
  let first_events = Arc::new(AtomicUsize::new(0));
  let all_open = Arc::new(tokio::sync::Notify::new());
  let before = live();
  let calls: Vec<_> = (0..streams)
    .map(|_| {
      let gateway = gateway.clone();
      let first_events = first_events.clone();
      let all_open = all_open.clone();
      tokio::spawn(async move {
        let credits = Arc::new(Semaphore::new(256));
        let cancel = CancellationToken::new();
        let request_id = crate::ingress::new_request_id();
        let seen_first = AtomicBool::new(false);
        let deliver = move |event: StreamEvent| {
          let first =
            matches!(event, StreamEvent::Text(_)) && !seen_first.swap(true, Ordering::SeqCst);
          if first && first_events.fetch_add(1, Ordering::SeqCst) + 1 == streams {
            all_open.notify_one();
          }
        };
        let result = crate::binding::stream_call(
          &gateway,
          "up/gpt-4o-mini",
          Box::new(request()),
          Box::default(),
          credits,
          &cancel,
          &request_id,
          None,
          deliver,
        )
        .await;
        usize::from(result.is_ok())
      })
    })
    .collect();
  all_open.notified().await;
  let held = live() - before;
  release.send_replace(true);
  let mut ok = 0;
  for call in calls {
    ok += call.await.expect("call task");
  }
  assert_eq!(ok, streams, "every stream ends well");
  held
}

/// A client built like the gateway's, trusting the CA of `ca_path` too.
fn bare_client(ca_path: Option<&str>) -> reqwest::Client {
  let mut builder = reqwest::Client::builder()
    .redirect(reqwest::redirect::Policy::none())
    .tcp_nodelay(true)
    .pool_idle_timeout(Duration::from_secs(90))
    .connect_timeout(Duration::from_secs(10));
  if let Some(path) = ca_path {
    let pem = std::fs::read(path).expect("CA file");
    for root in reqwest::Certificate::from_pem_bundle(&pem).expect("CA") {
      builder = builder.add_root_certificate(root);
    }
  }
  builder.build().expect("client")
}

/// Holds `streams` bare reqwest streams open on `client`, each having read its first chunk:
/// the HTTP client's own share of a stream. Over HTTP/1.1 its large part is hyper's, per
/// connection: the 8 KiB buffer headers are written into, the 8 KiB read buffer (both
/// `INIT_BUFFER_SIZE`), and the first block of the channel requests are dispatched to the
/// connection through (a tokio mpsc: 32 slots of about 280 bytes). reqwest sizes none of them.
async fn hold_reqwest_streams(
  client: &reqwest::Client,
  base_url: &str,
  streams: usize,
  release: &watch::Sender<bool>,
) -> Live {
  release.send_replace(false);
  let url = format!("{base_url}/chat/completions");
  let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Stream to the benchmark."}]}).to_string();
  let before = live();
  let mut open = Vec::with_capacity(streams);
  let started: Vec<_> = (0..streams)
    .map(|_| {
      client
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
    })
    .collect();
  for response in futures_util::future::join_all(started).await {
    let mut response = response.expect("response");
    response
      .chunk()
      .await
      .expect("first chunk")
      .expect("a chunk");
    open.push(response);
  }
  let held = live() - before;
  release.send_replace(true);
  for mut response in open {
    while response.chunk().await.expect("chunk").is_some() {}
  }
  held
}

#[test]
#[ignore = "a measurement: prints sizes"]
fn what_a_call_in_flight_holds() {
  let streams: usize = std::env::var("STREAMS")
    .ok()
    .and_then(|n| n.parse().ok())
    .unwrap_or(500);
  let build = if cfg!(debug_assertions) {
    "debug"
  } else {
    "release"
  };
  println!("{build} build; sizes:");
  println!(
    "  a stream event in a channel slot: {} bytes",
    std::mem::size_of::<crate::pipeline::StreamItem>()
  );
  let size_gateway = Gateway::new(GatewayConfig {
    providers: vec![ProviderConfig::mock(Duration::ZERO)],
    ..GatewayConfig::default()
  })
  .expect("gateway");
  let (sender, _receiver) = tokio::sync::mpsc::channel(1);
  let pipeline = size_gateway.execute_billed(
    "mock/demo",
    Box::new(request()),
    Box::default(),
    Some(sender.into()),
    CancellationToken::new(),
    "fg_size",
  );
  println!(
    "  the pipeline's future (execute_billed, boxed once per call): {} bytes",
    std::mem::size_of_val(&pipeline)
  );
  drop(pipeline);
  let cancel = CancellationToken::new();
  let stream_call = crate::binding::stream_call(
    &size_gateway,
    "mock/demo",
    Box::new(request()),
    Box::default(),
    Arc::new(Semaphore::new(1)),
    &cancel,
    "fg_size",
    None,
    |_| {},
  );
  println!(
    "  the binding's stream future (stream_call, inline in the call's task): {} bytes",
    std::mem::size_of_val(&stream_call)
  );
  drop(stream_call);

  COUNTED.with(|counted| counted.set(true));
  println!("allocated (bytes asked for, on the test's thread):");
  let before = live();
  let channel = tokio::sync::mpsc::channel::<crate::pipeline::StreamItem>(32);
  println!(
    "  a stream channel as made (the front door's; its first block included): {}",
    (live() - before).per(1)
  );
  drop(channel);
  let before = live();
  let lane = crate::pipeline::http::client(&[]).expect("client");
  println!(
    "  an HTTP client as made (the gateway's; one per lane of {} calls): {}",
    crate::pipeline::http::CALLS_PER_LANE,
    (live() - before).per(1)
  );
  drop(lane);

  let (base_url, release) = held_upstream();
  // No stream limit on the h2 server: the legs measure streams multiplexed on a connection
  // (the gateway's lanes put 100 on each); the tests of `pipeline::http` cover a limit.
  let h2 = tls_upstream::start(Alpn::H2 {
    max_streams: u32::MAX,
  });
  let h1_tls = tls_upstream::start(Alpn::Http1);
  let runtime = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .expect("runtime");
  runtime.block_on(async {
    // One warm-up round per way, on clients of their own: statics and lazy tables are made
    // before anything is measured. Every client stays alive to the end: one dropped would
    // close its pooled connections, and their buffers, freed while a later way is measured,
    // would be subtracted from it.
    let warm = Arc::new(gateway(&base_url, None));
    hold_gateway_streams(&warm, 20, &release).await;
    let warm_client = bare_client(None);
    hold_reqwest_streams(&warm_client, &base_url, 20, &release).await;
    let warm_tls = bare_client(Some(&h2.ca_path));
    hold_reqwest_streams(&warm_tls, &h2.base_url, 20, &h2.release).await;
    hold_reqwest_streams(&warm_tls, &h1_tls.base_url, 20, &h1_tls.release).await;

    let client = bare_client(None);
    let bare = hold_reqwest_streams(&client, &base_url, streams, &release).await;
    let measured = Arc::new(gateway(&base_url, None));
    let whole = hold_gateway_streams(&measured, streams, &release).await;
    println!("  per stream held open ({streams} at once, after the first event):");
    println!("   plain HTTP/1.1 (a connection per stream):");
    println!("    reqwest alone:              {}", bare.per(streams));
    println!("    a gateway stream, in all:   {}", whole.per(streams));
    println!(
      "    the gateway's own share:    {}",
      (whole - bare).per(streams)
    );

    let h1_client = bare_client(Some(&h1_tls.ca_path));
    let h1_bare =
      hold_reqwest_streams(&h1_client, &h1_tls.base_url, streams, &h1_tls.release).await;
    println!("   HTTP/1.1 over TLS (a connection per stream):");
    println!("    reqwest alone:              {}", h1_bare.per(streams));

    // A stream first, so the client has a pooled HTTP/2 connection to multiplex onto (a cold
    // burst opens a connection per stream: ALPN is not known before the first handshake).
    let h2_client = bare_client(Some(&h2.ca_path));
    hold_reqwest_streams(&h2_client, &h2.base_url, 1, &h2.release).await;
    let connections = h2.connections.load(Ordering::SeqCst);
    let h2_bare = hold_reqwest_streams(&h2_client, &h2.base_url, streams, &h2.release).await;
    let h2_connections = h2.connections.load(Ordering::SeqCst) - connections;
    // The gateway's lanes are made, and each holds a pooled connection, in a round of as
    // many streams first; the second round is measured.
    let h2_gateway = Arc::new(gateway(&h2.base_url, Some(&h2.ca_path)));
    hold_gateway_streams(&h2_gateway, streams, &h2.release).await;
    // The warm round's extra connections (one per stream of a cold lane) are let go of
    // after their stream: their frees are not to fall in the measured round.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connections = h2.connections.load(Ordering::SeqCst);
    let h2_whole = hold_gateway_streams(&h2_gateway, streams, &h2.release).await;
    let gateway_connections = h2.connections.load(Ordering::SeqCst) - connections;
    println!(
      "   HTTP/2 over TLS (reqwest: one connection, {h2_connections} new; the gateway: a lane of \
       {} streams per connection, {gateway_connections} new):",
      crate::pipeline::http::CALLS_PER_LANE
    );
    println!("    reqwest alone:              {}", h2_bare.per(streams));
    println!("    a gateway stream, in all:   {}", h2_whole.per(streams));
    println!(
      "    the gateway's own share:    {}",
      (h2_whole - h2_bare).per(streams)
    );
  });
  COUNTED.with(|counted| counted.set(false));
}
