//! The HTTP clients vendors are called with, and what trusting a server means: the bundled
//! web roots, the system store (corporate proxies, private endpoints), the PEM files named
//! by `NODE_EXTRA_CA_CERTS` (as Node trusts them) and a provider's own `caCertPath`.
//! Redirects are never followed: reqwest would re-send `x-api-key` / `x-goog-api-key` /
//! `api-key` to whatever host a 307 names.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::Certificate;

use crate::error::{GatewayError, Result};

/// A client trusting the default roots plus `extra_roots`.
pub(crate) fn client(extra_roots: &[Certificate]) -> Result<reqwest::Client> {
  build_client(extra_roots, false)
}

/// `client`, speaking HTTP/2 only: for a lane of an origin known to answer over HTTP/2.
/// Before a connection's handshake hyper-util cannot know it will be HTTP/2, so a burst of
/// calls on a new client opens a connection per call; told in advance, it opens one and the
/// burst waits for it.
fn multiplexed_client(extra_roots: &[Certificate]) -> Result<reqwest::Client> {
  build_client(extra_roots, true)
}

fn build_client(extra_roots: &[Certificate], http2_only: bool) -> Result<reqwest::Client> {
  let mut builder = reqwest::Client::builder()
    .redirect(reqwest::redirect::Policy::none())
    .tcp_nodelay(true)
    .pool_idle_timeout(Duration::from_secs(90))
    .connect_timeout(Duration::from_secs(10));
  if http2_only {
    builder = builder.http2_prior_knowledge();
  }
  for root in extra_roots {
    builder = builder.add_root_certificate(root.clone());
  }
  builder
    .build()
    .map_err(|e| GatewayError::config(format!("could not create the HTTP client: {e}")))
}

/// The certificates of `NODE_EXTRA_CA_CERTS`. Node reads the file once at startup and only
/// warns when it is missing or unreadable; so does this (the warning is Node's).
pub(crate) fn node_extra_ca_certs() -> Vec<Certificate> {
  std::env::var_os("NODE_EXTRA_CA_CERTS")
    .and_then(|path| std::fs::read(path).ok())
    .and_then(|pem| Certificate::from_pem_bundle(&pem).ok())
    .unwrap_or_default()
}

/// The certificates of a provider's `caCertPath`: a PEM file with at least one certificate.
pub(crate) fn ca_cert_file(provider: &str, path: &str) -> Result<Vec<Certificate>> {
  let bad =
    |why: String| GatewayError::config(format!("provider '{provider}' caCertPath '{path}' {why}"));
  let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
  let certificates = Certificate::from_pem_bundle(&pem)
    .map_err(|e| bad(format!("is not a PEM certificate file: {e}")))?;
  if certificates.is_empty() {
    return Err(bad("holds no PEM certificate".to_string()));
  }
  Ok(certificates)
}

/// Whether a transport error is the TLS handshake rejecting the server (an unknown CA, a
/// name mismatch, an expired certificate): no retry will change that.
pub(crate) fn is_tls_failure(error: &reqwest::Error) -> bool {
  let mut source = std::error::Error::source(error);
  while let Some(cause) = source {
    if is_rustls_error(cause) {
      return true;
    }
    source = cause.source();
  }
  false
}

/// io::Error hides the error it wraps from `source()`, and hyper-rustls wraps tokio-rustls'
/// io::Error in another one, so the wrapped errors are unwrapped here.
fn is_rustls_error(error: &(dyn std::error::Error + 'static)) -> bool {
  if error.is::<rustls::Error>() {
    return true;
  }
  match error
    .downcast_ref::<std::io::Error>()
    .and_then(|io| io.get_ref())
  {
    Some(inner) => is_rustls_error(inner),
    None => false,
  }
}

/// How many calls one lane (one reqwest client, so one connection pool) carries at once
/// before the next call takes another lane. A vendor's HTTP/2 edge caps the streams of one
/// connection (SETTINGS_MAX_CONCURRENT_STREAMS, 100 to 256), and hyper-util's pool keeps a
/// single HTTP/2 connection per host while hyper queues the streams past that cap on it until
/// earlier ones end (hyperium/hyper#2197: by design, RFC 9113 9.1): a call would wait for
/// another call's whole answer before its request is even sent. 100 is the least a server
/// should allow (RFC 9113 6.5.2) and what hyper assumes before the server's SETTINGS arrive.
/// Lanes are opened only once the provider's origin has answered over HTTP/2: over HTTP/1.1
/// every call has a connection of its own anyway, and more clients would only split the pool
/// and add a client's memory (its TLS roots, 120 KB) per hundred calls.
pub(crate) const CALLS_PER_LANE: usize = 100;

/// A provider's HTTP clients: the first made at once, more as calls in flight need them
/// ([`CALLS_PER_LANE`]). They share the trusted roots they were made with.
#[derive(Clone)]
pub(crate) struct Lanes(Arc<LanesInner>);

struct LanesInner {
  roots: Vec<Certificate>,
  /// An answer came over HTTP/2: calls past a lane's share get a lane of their own.
  multiplexed: Arc<AtomicBool>,
  first: Lane,
  /// Lanes are kept once made: one with no call holds only its client (its idle
  /// connections close after `pool_idle_timeout`), and a burst that needed it may come back.
  more: Mutex<Vec<Lane>>,
}

/// One client and the calls it carries now; shared by the lanes' list and every lease of it.
struct LaneState {
  client: reqwest::Client,
  in_flight: AtomicUsize,
}

#[derive(Clone)]
struct Lane(Arc<LaneState>);

impl Lane {
  fn new(client: reqwest::Client) -> Self {
    Lane(Arc::new(LaneState {
      client,
      in_flight: AtomicUsize::new(0),
    }))
  }

  fn load(&self) -> usize {
    self.0.in_flight.load(Ordering::Relaxed)
  }

  fn lease(&self, multiplexed: &Arc<AtomicBool>) -> Lease {
    self.0.in_flight.fetch_add(1, Ordering::Relaxed);
    Lease {
      lane: self.0.clone(),
      multiplexed: multiplexed.clone(),
    }
  }
}

/// A lane's client for one call: it counts against the lane until dropped, so it is held
/// for as long as the answer is read.
pub(crate) struct Lease {
  lane: Arc<LaneState>,
  multiplexed: Arc<AtomicBool>,
}

impl Lease {
  /// Told the protocol of each answer: the first over HTTP/2 opens further lanes.
  pub fn answered_over(&self, version: reqwest::Version) {
    if version == reqwest::Version::HTTP_2 && !self.multiplexed.load(Ordering::Relaxed) {
      self.multiplexed.store(true, Ordering::Relaxed);
    }
  }
}

impl Deref for Lease {
  type Target = reqwest::Client;
  fn deref(&self) -> &reqwest::Client {
    &self.lane.client
  }
}

impl Drop for Lease {
  fn drop(&mut self) {
    self.lane.in_flight.fetch_sub(1, Ordering::Relaxed);
  }
}

impl Lanes {
  fn new(roots: Vec<Certificate>) -> Result<Self> {
    let first = Lane::new(client(&roots)?);
    Ok(Lanes(Arc::new(LanesInner {
      roots,
      multiplexed: Arc::new(AtomicBool::new(false)),
      first,
      more: Mutex::new(Vec::new()),
    })))
  }

  /// The first lane with room for one more call; a new lane when none has.
  pub fn lease(&self) -> Lease {
    let inner = &*self.0;
    let multiplexed = &inner.multiplexed;
    if inner.first.load() < CALLS_PER_LANE || !multiplexed.load(Ordering::Relaxed) {
      return inner.first.lease(multiplexed);
    }
    {
      let more = inner.more.lock().unwrap_or_else(PoisonError::into_inner);
      if let Some(lane) = more.iter().find(|lane| lane.load() < CALLS_PER_LANE) {
        return lane.lease(multiplexed);
      }
    }
    // Made outside the lock: a client reads the system's roots. Two calls racing here
    // may both make one; both are kept and filled. Only an origin that answered over HTTP/2
    // gets here, so the new lane speaks nothing else.
    match multiplexed_client(&inner.roots) {
      Ok(client) => {
        let lane = Lane::new(client);
        let lease = lane.lease(multiplexed);
        inner
          .more
          .lock()
          .unwrap_or_else(PoisonError::into_inner)
          .push(lane);
        lease
      }
      // It was made once with the same roots; should it fail now, the call waits in the
      // least loaded lane rather than fail.
      Err(_) => {
        let more = inner.more.lock().unwrap_or_else(PoisonError::into_inner);
        more
          .iter()
          .fold(&inner.first, |least, lane| {
            if lane.load() < least.load() {
              lane
            } else {
              least
            }
          })
          .lease(multiplexed)
      }
    }
  }

  /// How many lanes there are (tests).
  #[cfg(test)]
  pub fn count(&self) -> usize {
    1 + self
      .0
      .more
      .lock()
      .unwrap_or_else(PoisonError::into_inner)
      .len()
  }
}

/// Hands each provider lanes of its own: whether its origin speaks HTTP/2 is learnt per
/// provider (a local HTTP/1.1 server must never get a lane that speaks only HTTP/2), and a
/// provider with a `caCertPath` trusts a CA of its own (reqwest's roots are per client).
pub(crate) struct Clients {
  node_roots: Vec<Certificate>,
}

impl Clients {
  pub fn new() -> Self {
    Clients {
      node_roots: node_extra_ca_certs(),
    }
  }

  pub fn for_provider(&mut self, provider: &str, ca_cert_path: Option<&str>) -> Result<Lanes> {
    let mut roots = self.node_roots.clone();
    if let Some(path) = ca_cert_path {
      roots.extend(ca_cert_file(provider, path)?);
    }
    Lanes::new(roots)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::tls_upstream::{self, Alpn};

  /// Sends one streamed chat request and reads its first chunk; the answer is returned open,
  /// with the lease it went out on.
  async fn open_stream(lanes: Lanes, url: String) -> (Lease, reqwest::Response) {
    let lease = lanes.lease();
    let mut response = lease
      .post(&url)
      .header("content-type", "application/json")
      .body(r#"{"model":"m","stream":true,"messages":[]}"#)
      .send()
      .await
      .expect("response");
    // What `send_call` tells the lease of every answer.
    lease.answered_over(response.version());
    response
      .chunk()
      .await
      .expect("first chunk")
      .expect("a chunk");
    (lease, response)
  }

  /// An HTTP/2 server that lets one connection carry 100 streams, and a pooled connection to
  /// it: 201 calls held open at once each get their answer while the others stream, on three
  /// lanes. On one client the 101st would wait, unsent, for one of the first 100 to end.
  #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
  async fn calls_past_a_connections_stream_cap_are_not_queued_behind_it() {
    let upstream = tls_upstream::start(Alpn::H2 {
      max_streams: CALLS_PER_LANE as u32,
    });
    let lanes = Clients::new()
      .for_provider("p", Some(&upstream.ca_path))
      .expect("lanes");
    let url = format!("{}/chat/completions", upstream.base_url);
    // One call first, so the first lane holds a pooled HTTP/2 connection that every later
    // call of that lane is multiplexed onto (a cold burst opens a connection per call).
    upstream.release.send_replace(true);
    let (lease, mut warm) = open_stream(lanes.clone(), url.clone()).await;
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    while warm.chunk().await.expect("chunk").is_some() {}
    drop(lease);
    upstream.release.send_replace(false);

    let calls = 2 * CALLS_PER_LANE + 1;
    let held = futures_util::future::join_all(
      (0..calls).map(|_| tokio::spawn(open_stream(lanes.clone(), url.clone()))),
    );
    // A guard against a hang, not a timing check: a queued call is never answered while
    // the others are held open.
    let held = tokio::time::timeout(Duration::from_secs(60), held)
      .await
      .expect("every call answered while the others stream");
    let mut open = Vec::new();
    for call in held {
      let (lease, response) = call.expect("call task");
      assert_eq!(response.version(), reqwest::Version::HTTP_2);
      open.push((lease, response));
    }
    assert_eq!(lanes.count(), 3);
    upstream.release.send_replace(true);
    for (_lease, mut response) in open {
      while response.chunk().await.expect("chunk").is_some() {}
    }
  }

  #[test]
  fn a_lease_counts_against_its_lane_until_dropped() {
    let lanes = Lanes::new(Vec::new()).expect("lanes");
    let first: Vec<_> = (0..CALLS_PER_LANE).map(|_| lanes.lease()).collect();
    first[0].answered_over(reqwest::Version::HTTP_11);
    assert_eq!(lanes.count(), 1);
    let over_http1 = lanes.lease();
    assert_eq!(
      lanes.count(),
      1,
      "HTTP/1.1 answers only: one lane takes every call"
    );
    drop(over_http1);
    first[0].answered_over(reqwest::Version::HTTP_2);
    let second = lanes.lease();
    assert_eq!(
      lanes.count(),
      2,
      "past a full lane, once HTTP/2 has answered"
    );
    drop(first);
    drop(second);
    // Room again on the first lane: no third is made.
    let again: Vec<_> = (0..CALLS_PER_LANE).map(|_| lanes.lease()).collect();
    assert_eq!(lanes.count(), 2);
    let more = lanes.lease();
    assert_eq!(lanes.count(), 2, "the second lane takes the 101st");
    drop((again, more));
  }
}
