//! serve's connection layer: the accept loop, the cap on open connections, and the three
//! timeouts that keep a slow or silent client from holding a connection forever:
//! - headers: a request's headers must arrive within `headers_timeout` (hyper's header read
//!   timer, which on a kept-alive connection starts when the previous response ended, so it
//!   also bounds an idle connection);
//! - body: a request's body must arrive within `body_timeout` of its headers ([`TimedBody`]);
//! - keep-alive: a connection with no request in progress for `keep_alive_timeout` is closed.
//!
//! Shutdown: [`Connections::shutdown`] stops accepting, lets the requests in progress finish
//! (streams included) for a grace period, then drops the connections still open.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The response body type of serve's handlers.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The limits of `ferrogate serve`'s connections (the `server` object of its config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
  pub headers_timeout: Duration,
  pub body_timeout: Duration,
  pub keep_alive_timeout: Duration,
  /// Connections open at once; one more is closed as soon as it is accepted.
  pub max_connections: usize,
}

impl Default for ConnectionLimits {
  fn default() -> Self {
    ConnectionLimits {
      headers_timeout: Duration::from_secs(30),
      body_timeout: Duration::from_secs(60),
      keep_alive_timeout: Duration::from_secs(30),
      max_connections: 1024,
    }
  }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
  #[error("the request body did not arrive within {0:?}")]
  TimedOut(Duration),
  #[error("the request body could not be read: {0}")]
  Read(#[from] hyper::Error),
}

/// A request body that must arrive whole before its deadline (`body_timeout` after the
/// request's headers); past it, reading fails with [`BodyError::TimedOut`].
pub struct TimedBody {
  inner: Incoming,
  deadline: Pin<Box<tokio::time::Sleep>>,
  timeout: Duration,
}

impl TimedBody {
  fn new(inner: Incoming, timeout: Duration) -> Self {
    TimedBody {
      inner,
      deadline: Box::pin(tokio::time::sleep(timeout)),
      timeout,
    }
  }
}

impl HttpBody for TimedBody {
  type Data = Bytes;
  type Error = BodyError;

  fn poll_frame(
    mut self: Pin<&mut Self>,
    cx: &mut Context<'_>,
  ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
    if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
      return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::from)));
    }
    if self.deadline.as_mut().poll(cx).is_ready() {
      return Poll::Ready(Some(Err(BodyError::TimedOut(self.timeout))));
    }
    Poll::Pending
  }

  fn is_end_stream(&self) -> bool {
    self.inner.is_end_stream()
  }

  fn size_hint(&self) -> SizeHint {
    self.inner.size_hint()
  }
}

/// The body type serve's request handlers receive.
pub type RequestBody = TimedBody;

/// The accept loop and its connections.
pub struct Connections {
  /// Stops accepting; open connections finish their request in progress and close.
  stop: CancellationToken,
  /// Drops the connections still open.
  force: CancellationToken,
  tasks: TaskTracker,
  refused: Arc<AtomicU64>,
}

impl Connections {
  /// Stops accepting and ends idle connections; requests in progress go on.
  pub fn close(&self) {
    self.stop.cancel();
  }

  /// `close`, then waits up to `grace` for the requests in progress (streams included) to
  /// finish; connections still open after it are dropped, which cancels their calls.
  pub async fn shutdown(&self, grace: Duration) {
    self.stop.cancel();
    self.tasks.close();
    if tokio::time::timeout(grace, self.tasks.wait())
      .await
      .is_err()
    {
      self.force.cancel();
      // A dropped connection ends at once; the bound only guards against a stuck task.
      let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }
  }

  /// Connections closed at once because `max_connections` were open.
  pub fn refused(&self) -> u64 {
    self.refused.load(Ordering::Relaxed)
  }
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
  started: Instant,
  in_progress: AtomicUsize,
  /// Milliseconds after `started`.
  idle_since_ms: AtomicU64,
}

impl Activity {
  fn now_ms(&self) -> u64 {
    u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
  }

  /// How long the connection has had no request in progress (`None` while one is).
  fn idle_for(&self) -> Option<Duration> {
    if self.in_progress.load(Ordering::Acquire) > 0 {
      return None;
    }
    let since = self.idle_since_ms.load(Ordering::Acquire);
    Some(Duration::from_millis(self.now_ms().saturating_sub(since)))
  }
}

/// Held by a request from its headers until its response body is dropped (sent or not).
struct InProgress(Arc<Activity>);

impl InProgress {
  fn start(activity: &Arc<Activity>) -> Self {
    activity.in_progress.fetch_add(1, Ordering::AcqRel);
    InProgress(activity.clone())
  }
}

impl Drop for InProgress {
  fn drop(&mut self) {
    self
      .0
      .idle_since_ms
      .store(self.0.now_ms(), Ordering::Release);
    self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
  }
}

/// Accepts connections on `listener` and serves each with `handler` (HTTP/1.1, keep-alive)
/// within `limits`, on the current tokio runtime.
pub fn serve<F, Fut>(listener: TcpListener, limits: ConnectionLimits, handler: F) -> Connections
where
  F: Fn(Request<RequestBody>) -> Fut + Send + Sync + 'static,
  Fut: Future<Output = Response<Body>> + Send + 'static,
{
  let connections = Connections {
    stop: CancellationToken::new(),
    force: CancellationToken::new(),
    tasks: TaskTracker::new(),
    refused: Arc::new(AtomicU64::new(0)),
  };
  let stop = connections.stop.clone();
  let force = connections.force.clone();
  let tasks = connections.tasks.clone();
  let refused = connections.refused.clone();
  let handler = Arc::new(handler);
  let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
  tasks.clone().spawn(async move {
    loop {
      let accepted = tokio::select! {
        _ = stop.cancelled() => break,
        accepted = listener.accept() => accepted,
      };
      let Ok((socket, _)) = accepted else {
        // Out of file descriptors and the like: back off instead of spinning.
        tokio::time::sleep(Duration::from_millis(10)).await;
        continue;
      };
      let Ok(slot) = slots.clone().try_acquire_owned() else {
        // Past the cap: closed at once, so the connections already open keep their share.
        refused.fetch_add(1, Ordering::Relaxed);
        drop(socket);
        continue;
      };
      let _ = socket.set_nodelay(true);
      let handler = handler.clone();
      let stop = stop.clone();
      let force = force.clone();
      tasks.spawn(async move {
        let _slot = slot;
        serve_connection(socket, limits, handler, stop, force).await;
      });
    }
  });
  connections
}

async fn serve_connection<F, Fut>(
  socket: tokio::net::TcpStream,
  limits: ConnectionLimits,
  handler: Arc<F>,
  stop: CancellationToken,
  force: CancellationToken,
) where
  F: Fn(Request<RequestBody>) -> Fut + Send + Sync + 'static,
  Fut: Future<Output = Response<Body>> + Send + 'static,
{
  let activity = Arc::new(Activity {
    started: Instant::now(),
    in_progress: AtomicUsize::new(0),
    idle_since_ms: AtomicU64::new(0),
  });
  let service_activity = activity.clone();
  let service = hyper::service::service_fn(move |req: Request<Incoming>| {
    let in_progress = InProgress::start(&service_activity);
    let req = req.map(|body| TimedBody::new(body, limits.body_timeout));
    let response = handler(req);
    async move {
      let response = response.await;
      // The request counts as in progress until its response body is dropped.
      Ok::<_, std::convert::Infallible>(response.map(|body| {
        body
          .map_frame(move |frame| {
            let _held = &in_progress;
            frame
          })
          .boxed_unsync()
      }))
    }
  });
  let connection = hyper::server::conn::http1::Builder::new()
    .timer(TokioTimer::new())
    .header_read_timeout(limits.headers_timeout)
    .keep_alive(true)
    .serve_connection(TokioIo::new(socket), service);
  tokio::pin!(connection);
  let mut closing = false;
  let tick =
    (limits.keep_alive_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
  loop {
    tokio::select! {
      _ = connection.as_mut() => return,
      _ = force.cancelled() => return,
      _ = stop.cancelled(), if !closing => {
        closing = true;
        connection.as_mut().graceful_shutdown();
      }
      _ = tokio::time::sleep(tick), if !closing => {
        if activity.idle_for().is_some_and(|idle| idle >= limits.keep_alive_timeout) {
          closing = true;
          connection.as_mut().graceful_shutdown();
        }
      }
    }
  }
}
