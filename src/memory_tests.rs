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

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Gateway, GatewayConfig, ProviderConfig};
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

fn gateway(base_url: &str) -> Gateway {
  Gateway::new(GatewayConfig {
    providers: vec![ProviderConfig {
      name: "up".into(),
      kind: "openai".into(),
      api_key: Some("sk-memory".into()),
      base_url: Some(base_url.into()),
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

/// Holds `streams` bare reqwest streams open (a client built like the gateway's), each
/// having read its first chunk: the HTTP client's own share of a stream. Its large part is
/// hyper's, per connection: the 8 KiB buffer headers are written into, the 8 KiB read buffer
/// (both `INIT_BUFFER_SIZE`), and the first block of the channel requests are dispatched to
/// the connection through (a tokio mpsc: 32 slots of about 280 bytes). reqwest sizes none of
/// them.
async fn hold_reqwest_streams(
  base_url: &str,
  streams: usize,
  release: &watch::Sender<bool>,
) -> (Live, reqwest::Client) {
  release.send_replace(false);
  let client = reqwest::Client::builder()
    .redirect(reqwest::redirect::Policy::none())
    .tcp_nodelay(true)
    .pool_idle_timeout(Duration::from_secs(90))
    .connect_timeout(Duration::from_secs(10))
    .build()
    .expect("client");
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
  (held, client)
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

  let (base_url, release) = held_upstream();
  let runtime = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
    .expect("runtime");
  runtime.block_on(async {
    // One warm-up round per way, on clients of their own: statics and lazy tables are made
    // before anything is measured. Every client stays alive to the end: one dropped would
    // close its pooled connections, and their buffers, freed while a later way is measured,
    // would be subtracted from it.
    let warm = Arc::new(gateway(&base_url));
    hold_gateway_streams(&warm, 20, &release).await;
    let _warm_client = hold_reqwest_streams(&base_url, 20, &release).await;

    let (bare, _client) = hold_reqwest_streams(&base_url, streams, &release).await;
    let measured = Arc::new(gateway(&base_url));
    let whole = hold_gateway_streams(&measured, streams, &release).await;
    println!("  per stream held open ({streams} at once, after the first event):");
    println!("    reqwest alone:              {}", bare.per(streams));
    println!("    a gateway stream, in all:   {}", whole.per(streams));
    println!(
      "    the gateway's own share:    {}",
      (whole - bare).per(streams)
    );
  });
  COUNTED.with(|counted| counted.set(false));
}
