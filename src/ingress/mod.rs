//! The front door: one codec per client protocol, shared by the Express router (through
//! `binding`) and `ferrogate serve` (hyper). A codec is pure: it parses a client's request
//! bytes into the gateway's normalized request and encodes the gateway's answers, events and
//! errors in its protocol's wire format. Transport, auth, quotas and the pipeline call live in
//! the driver, once.
//!
//! The codec contract, which every protocol module implements:
//! - `parse(body, headers) -> Result<Parsed>`: an invalid request is `INVALID_REQUEST` whose
//!   message names the offending field (`messages[2].content: expected a string or an array`).
//! - `Parsed::encoder` answers the call in the protocol's shape, whole or streamed.
//! - `error_reply(error)`: an error before any answer, as status + headers + body.
//!
//! # Plugging a codec into the driver
//! A protocol module exposes `pub fn parse(&[u8], Headers) -> Result<Parsed>` and
//! `pub fn error_reply(&GatewayError) -> ErrorReply`, and one `Codec` value naming them
//! (see `chat_completions::CODEC`). The route table in `FrontDoor::route` maps the path to
//! that `Codec`; `FrontDoor::call` then does the rest for
//! every protocol alike: body limit (413), auth, parse, identity, key quota, the pipeline
//! call, encoding through `Parsed::encoder`, cancel, relay and redaction.
//!
//! Same-protocol fidelity hook: `Kind::speaks_natively` (pipeline/kind.rs) says which provider
//! kinds speak `Codec::protocol` natively (`anthropic` for Messages, say). Nothing else is needed: when the attempt stage picks a target of such a kind, the vendor
//! receives `Parsed::native` (only `model` renamed) plus `Parsed::native_headers`, and the
//! client receives the vendor's bytes, JSON or SSE, relayed as they come
//! (`pipeline::native`); usage and cost are still read by the vendor's decoder. A target of
//! another kind gets the translated `Parsed::request`, and refuses with 400 a call whose
//! `Parsed::native_only` is not empty, naming its first field. The provider's upstream `api`
//! counts: an `openai` provider with `api: 'responses'` speaks Responses, one without it Chat
//! Completions.
//!
//! Responses also go through the response store around the call (`Remember`): the history
//! `previous_response_id` names is put in front of the input before it, and the answer is
//! stored before the bytes that complete it go out. `count_tokens`, embeddings and the
//! stored responses' GET/DELETE have routes of their own beside the codecs.
//!
//! Embeddings (`embeddings.rs`) are not chat-shaped and have their own three functions: `parse`
//! (body → model, `EmbedRequest`, encoding format), `encode` (an `EmbedResponse` → the body) and
//! `error_reply`, plus `answer`, which runs one request through `Gateway::embed` with them.

pub mod auth;
pub mod chat_completions;
pub mod embeddings;
pub mod messages;
pub mod response_store;
pub mod responses;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::{ErrorCode, GatewayError, Result};
use crate::pipeline::{CallOptions, CallTrace, Gateway, NativeCall};
use crate::types::{ChatRequest, ChatResponse, StreamEvent};
pub use auth::{KeyVerdict, Keys, ServeKey};

/// The client protocol a request arrived in (`CallRecord.ingress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
  ChatCompletions,
  Responses,
  Messages,
  Embeddings,
}

impl Protocol {
  /// The name `CallRecord.ingress` carries.
  pub fn as_str(self) -> &'static str {
    match self {
      Protocol::ChatCompletions => "chat",
      Protocol::Responses => "responses",
      Protocol::Messages => "messages",
      Protocol::Embeddings => "embeddings",
    }
  }
}

/// Request headers as the codec sees them: names lower-cased, in arrival order.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
  pairs: &'a [(String, String)],
}

impl<'a> Headers<'a> {
  pub fn new(pairs: &'a [(String, String)]) -> Self {
    Headers { pairs }
  }

  /// The first value of `name` (lower-case).
  pub fn get(&self, name: &str) -> Option<&'a str> {
    self
      .pairs
      .iter()
      .find(|(key, _)| key == name)
      .map(|(_, value)| value.as_str())
  }

  pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
    self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
  }
}

/// A client request after its codec parsed it.
pub struct Parsed {
  pub protocol: Protocol,
  /// The model as the client named it: a route alias or "provider/model".
  pub model: String,
  /// The request in the gateway's normalized form, for a target of any protocol.
  pub request: ChatRequest,
  pub stream: bool,
  /// The body's `metadata`, for `onCall` and the ledger.
  pub metadata: Vec<(String, String)>,
  /// The body exactly as the client sent it. A target that speaks the same protocol receives
  /// this, with only `model` renamed, plus the headers in `native_headers`.
  pub native: Map<String, Value>,
  /// Client headers a same-protocol target must receive unchanged (e.g. `anthropic-beta`).
  pub native_headers: Vec<(String, String)>,
  /// Fields only a same-protocol target can honour (e.g. `n` when it is above 1). A target of
  /// another protocol answers INVALID_REQUEST naming the first of them, never drops them.
  pub native_only: Vec<String>,
  /// What was left out when translating for another protocol (a `web_search` tool, say): the
  /// call goes on, and these reach the call record.
  pub warnings: Vec<String>,
  /// Encodes this call's answer; made at parse time, so it can remember what the request
  /// asked for (include_usage, tool kinds, the model name to echo).
  pub encoder: Box<dyn Encoder>,
}

/// Encodes one call's answer in its protocol's wire format.
pub trait Encoder: Send {
  /// A whole (not streamed) answer: the response body.
  fn json(&mut self, response: &ChatResponse) -> Vec<u8>;
  /// The bytes that open a stream, before the first event (may be none).
  fn stream_start(&mut self, request_id: &str, out: &mut Vec<u8>);
  /// One event; `StreamEvent::Done` is passed to `stream_end` instead.
  fn stream_event(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
  /// The closing events (finish reason, usage, terminator) after the last content event.
  fn stream_end(&mut self, response: &ChatResponse, out: &mut Vec<u8>);
  /// A failure after the stream began, as the protocol's in-stream error event.
  fn stream_error(&mut self, error: &GatewayError, out: &mut Vec<u8>);
}

/// An error answered before any part of an answer: the protocol's HTTP status, headers
/// (`retry-after`, `request-id`, …) and body.
#[derive(Debug, Clone)]
pub struct ErrorReply {
  pub status: u16,
  pub headers: Vec<(&'static str, String)>,
  pub body: Vec<u8>,
}

/// The largest request body the front door reads; a larger one is 413 in the protocol's shape.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Events buffered between the pipeline and a stream's encoder. Bounded, so a slow client
/// slows the upstream read instead of growing memory.
const STREAM_CHANNEL: usize = 256;
/// Most events encoded into one batch of bytes (each stays its own SSE event).
const MAX_BATCH: usize = 64;
/// Yields a batch waits, with nothing new, for the rest of a burst (`next_of_burst`).
const BURST_YIELDS: usize = 2;

/// One client protocol as the driver sees it: what to call to parse a request and to shape
/// an error (which provider kinds speak it natively is `Kind::speaks_natively`).
#[derive(Clone, Copy)]
pub struct Codec {
  pub protocol: Protocol,
  pub parse: fn(&[u8], Headers<'_>) -> Result<Parsed>,
  /// The error and the request's id (Anthropic puts it in the body).
  pub error_reply: fn(&GatewayError, &str) -> ErrorReply,
  /// Where the caller's identity goes in a natively relayed body when keys decide it
  /// (`["user"]` for OpenAI, `["metadata", "user_id"]` for Anthropic): the client cannot
  /// choose it there either.
  pub identity_path: &'static [&'static str],
}

/// `retry-after` (seconds) and `retry-after-ms` for an error that carries a delay.
pub(crate) fn retry_after_headers(error: &GatewayError) -> Vec<(&'static str, String)> {
  match error.retry_after {
    Some(wait) => vec![
      ("retry-after", wait.as_secs_f64().ceil().to_string()),
      ("retry-after-ms", wait.as_millis().to_string()),
    ],
    None => Vec::new(),
  }
}

pub(crate) fn unix_seconds() -> u64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map(|d| d.as_secs())
    .unwrap_or(0)
}

pub fn new_request_id() -> String {
  format!("fg_{:016x}", fastrand::u64(..))
}

/// The one place a call's result leaves the pipeline for a caller (the library API, the
/// front door): secrets redacted from every error, and an abort caused by the gateway's
/// `close()` told apart from the caller's own.
pub fn finish_result(
  gateway: &Gateway,
  result: Result<ChatResponse>,
  closed: Option<&CancellationToken>,
) -> Result<ChatResponse> {
  result.map_err(|error| {
    if error.code == ErrorCode::Aborted && closed.is_some_and(CancellationToken::is_cancelled) {
      closed_in_flight()
    } else {
      gateway.redact_error(error)
    }
  })
}

/// Runs one call through the pipeline: the one way every caller (the library API's calls in
/// `binding`, the front door's for `gatewayRouter` and `serve`) drives `Gateway::execute`,
/// so that no path can forget to redact an error or to tell an abort by `close()` apart.
/// Returns the finished result and the usage billed (also for a call cut short).
#[allow(clippy::too_many_arguments)]
pub async fn run_call(
  gateway: &Gateway,
  model: &str,
  request: Box<ChatRequest>,
  options: Box<CallOptions>,
  sink: crate::pipeline::EventSink,
  cancel: CancellationToken,
  request_id: &str,
  closed: Option<&CancellationToken>,
) -> crate::pipeline::Executed {
  // Boxed: the pipeline's future is large (tens of KB), and a task holding it inline is
  // copied whole when it is spawned and again when it completes.
  let executed =
    Box::pin(gateway.execute_billed(model, request, options, sink, cancel, request_id)).await;
  crate::pipeline::Executed {
    result: finish_result(gateway, executed.result, closed),
    billed: executed.billed,
  }
}

/// How a call ends when `close()` cut it short (distinct from the caller's own abort).
pub fn closed_in_flight() -> GatewayError {
  GatewayError::new(
    ErrorCode::Aborted,
    "the gateway was closed while the call was in flight",
  )
}

/// One HTTP request as a transport (hyper, or Express through the binding) hands it over.
pub struct HttpRequest<'a> {
  pub method: &'a str,
  /// The path below the host, query string allowed: `/v1/chat/completions`.
  pub path: &'a str,
  /// Names lower-cased.
  pub headers: &'a [(String, String)],
  pub body: &'a [u8],
  /// The JS key function's answer, when the front door's keys are `Keys::Function`.
  pub key_verdict: Option<KeyVerdict>,
  /// The trace the request's `traceparent` continues (`CallTrace::from_headers`).
  pub trace: Option<Arc<CallTrace>>,
}

/// What the transport writes back.
pub enum Reply {
  Whole(WholeReply),
  Stream(StreamReply),
}

pub struct WholeReply {
  pub status: u16,
  pub headers: Vec<(String, String)>,
  pub body: Vec<u8>,
}

impl WholeReply {
  fn json(status: u16, body: Vec<u8>) -> Self {
    WholeReply {
      status,
      headers: vec![("content-type".into(), "application/json".into())],
      body,
    }
  }

  fn error(codec: &Codec, error: &GatewayError, request_id: &str) -> Self {
    let reply = (codec.error_reply)(error, request_id);
    let mut whole = WholeReply {
      status: reply.status,
      headers: Vec::with_capacity(reply.headers.len() + 2),
      body: reply.body,
    };
    if !reply
      .headers
      .iter()
      .any(|(name, _)| *name == "content-type")
    {
      whole
        .headers
        .push(("content-type".into(), "application/json".into()));
    }
    whole
      .headers
      .extend(reply.headers.into_iter().map(|(k, v)| (k.to_string(), v)));
    whole
      .headers
      .push(("x-request-id".into(), request_id.to_string()));
    whole
  }

  fn ok(body: Vec<u8>, request_id: &str) -> Self {
    let mut reply = WholeReply::json(200, body);
    reply
      .headers
      .push(("x-request-id".into(), request_id.to_string()));
    reply
  }
}

/// A streamed answer (status 200): SSE bytes in batches, pulled by the transport. Dropping
/// it cancels the call, and so the upstream request.
pub struct StreamReply {
  pub headers: Vec<(String, String)>,
  receiver: mpsc::Receiver<crate::pipeline::StreamItem>,
  encoder: Box<dyn Encoder>,
  /// The stream's opening bytes and first event, encoded before the head was sent.
  head: Vec<u8>,
  finished: bool,
  /// The target speaks the client's protocol: its bytes are relayed, not encoded here.
  relaying: bool,
  /// A Responses call's store hook, run before the bytes that complete the response.
  remember: Option<Remember>,
  _cancel_on_drop: DropGuard,
}

/// Keeps a Responses call's answer in the response store before the client can see it
/// complete (so its next turn, sent at once, finds it).
struct Remember {
  gateway: Arc<Gateway>,
  turn: responses::Turn,
  history: Vec<Value>,
  /// Relayed bytes after the last whole line, held back until the line is complete.
  held: Vec<u8>,
}

impl Remember {
  /// The answer our encoder made.
  async fn encoded(self) {
    let store = self.gateway.response_store();
    // A store that fails loses only the continuation; the answer still goes out.
    let _ = response_store::remember(store, &self.turn, self.history).await;
  }

  /// A same-protocol vendor's whole `response` object.
  async fn relayed_whole(self, body: &[u8]) {
    if let Ok(response) = serde_json::from_slice::<Value>(body) {
      self.relayed(response).await;
    }
  }

  async fn relayed(self, response: Value) {
    let store = self.gateway.response_store();
    let _ = response_store::remember_response(store, &self.turn, self.history, response).await;
  }

  /// Of relayed SSE bytes, the whole lines (a `response.completed` among them is stored
  /// before they are returned); the rest is held until its line ends or the stream does.
  /// Returns the hook when it has not run yet.
  async fn relay(mut self, out: &mut Vec<u8>, finished: bool) -> Option<Self> {
    let mut bytes = std::mem::take(&mut self.held);
    bytes.append(out);
    let whole = if finished {
      bytes.len()
    } else {
      bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1)
    };
    self.held = bytes.split_off(whole);
    *out = bytes;
    let completed = out.split(|&b| b == b'\n').find_map(completed_response);
    match completed {
      Some(response) => {
        out.append(&mut self.held);
        self.relayed(response).await;
        None
      }
      None => Some(self),
    }
  }
}

/// The `response` of a `data: {"type":"response.completed",…}` SSE line.
fn completed_response(line: &[u8]) -> Option<Value> {
  let data = line.strip_prefix(b"data:")?;
  let event: Value = serde_json::from_slice(data).ok()?;
  if event.get("type")?.as_str()? != "response.completed" {
    return None;
  }
  event.get("response").cloned()
}

impl StreamReply {
  /// The next batch of bytes: whatever events are ready (at least one), encoded; `None`
  /// once the stream has ended (after its closing or error event).
  pub async fn next_batch(&mut self) -> Option<Vec<u8>> {
    loop {
      // A stream whose first event was its last has that event's bytes in `head` still.
      if self.finished && self.head.is_empty() {
        return None;
      }
      let mut out = std::mem::take(&mut self.head);
      if out.is_empty() {
        out.reserve(1024);
        match self.receiver.recv().await {
          Some(item) => self.encode(item, &mut out),
          None => self.finished = true,
        }
      }
      let mut count = 1;
      while !self.finished && count < MAX_BATCH {
        let item = match self.receiver.try_recv() {
          Ok(item) => item,
          Err(_) => match self.next_of_burst().await {
            Some(item) => item,
            None => break,
          },
        };
        self.encode(item, &mut out);
        count += 1;
      }
      if let Some(remember) = self.remember.take() {
        if self.relaying {
          self.remember = remember.relay(&mut out, self.finished).await;
        } else if self.finished {
          remember.encoded().await;
        } else {
          self.remember = Some(remember);
        }
      }
      // An empty batch (events that wrote nothing, bytes held back) is not the end.
      if !out.is_empty() {
        return Some(out);
      }
    }
  }

  /// Nothing queued, yet the upstream may be mid-burst: its bytes already read and being
  /// decoded by tasks of this worker. A yielded task resumes once the worker has run what
  /// was ready, so the burst's events join this batch and go out in one write.
  /// One yield is not enough: hyper's client hands its reader one chunk per poll, and the
  /// first resume came before the next chunk was through (`bench/serve-counts.mjs`: a
  /// 20-chunk stream read in one recv went out in 25 writes; with two yields, in 2).
  async fn next_of_burst(&mut self) -> Option<crate::pipeline::StreamItem> {
    for _ in 0..BURST_YIELDS {
      tokio::task::yield_now().await;
      if let Ok(item) = self.receiver.try_recv() {
        return Some(item);
      }
    }
    None
  }

  fn encode(&mut self, item: crate::pipeline::StreamItem, out: &mut Vec<u8>) {
    match item {
      Ok(StreamEvent::Native(bytes)) => {
        self.relaying = true;
        out.extend_from_slice(bytes.as_bytes());
      }
      Ok(StreamEvent::Done(response)) => {
        if !self.relaying {
          self.encoder.stream_end(&response, out);
        }
        self.finished = true;
      }
      Ok(_) if self.relaying => {}
      Ok(event) => self.encoder.stream_event(&event, out),
      Err(error) => {
        self.encoder.stream_error(&error, out);
        self.finished = true;
      }
    }
  }
}

/// The front door: one per `gatewayRouter` / `ferrogate serve`.
pub struct FrontDoor {
  gateway: Arc<Gateway>,
  keys: Keys,
  /// The gateway's `close()`, when the binding owns one: calls cut short by it say so.
  closed: Option<CancellationToken>,
}

enum Route<'a> {
  Call(Codec),
  /// `POST /v1/messages/count_tokens`.
  CountTokens,
  /// `POST /v1/embeddings`, answered by `gateway.embed()`.
  Embeddings,
  /// `GET /v1/responses/{id}` from the response store.
  GetResponse(&'a str),
  /// `DELETE /v1/responses/{id}` from the response store.
  DeleteResponse(&'a str),
  Models,
  Unknown,
}

impl FrontDoor {
  pub fn new(gateway: Arc<Gateway>, keys: Keys, closed: Option<CancellationToken>) -> Self {
    FrontDoor {
      gateway,
      keys,
      closed,
    }
  }

  pub fn keys(&self) -> &Keys {
    &self.keys
  }

  /// The route table. Paths are matched without the query string and trailing slashes.
  fn route<'a>(method: &str, path: &'a str) -> Route<'a> {
    let path = path
      .split('?')
      .next()
      .unwrap_or_default()
      .trim_end_matches('/');
    let stored_id = path
      .strip_prefix("/v1/responses/")
      .filter(|id| !id.is_empty() && !id.contains('/'));
    match (method, path, stored_id) {
      ("POST", "/v1/chat/completions", _) => Route::Call(chat_completions::CODEC),
      ("POST", "/v1/responses", _) => Route::Call(responses::CODEC),
      ("POST", "/v1/messages", _) => Route::Call(messages::CODEC),
      ("POST", "/v1/messages/count_tokens", _) => Route::CountTokens,
      ("POST", "/v1/embeddings", _) => Route::Embeddings,
      ("GET", "/v1/models", _) => Route::Models,
      ("GET", _, Some(id)) => Route::GetResponse(id),
      ("DELETE", _, Some(id)) => Route::DeleteResponse(id),
      _ => Route::Unknown,
    }
  }

  /// The codec whose error shape `route` answers in.
  fn error_codec(route: &Route<'_>) -> Codec {
    match route {
      Route::Call(codec) => *codec,
      Route::CountTokens => messages::CODEC,
      Route::GetResponse(_) | Route::DeleteResponse(_) => responses::CODEC,
      Route::Embeddings | Route::Models | Route::Unknown => chat_completions::CODEC,
    }
  }

  /// `error` (a body too large, say) answered in the shape of the protocol `method path`
  /// speaks, for a transport that refuses a request before the driver sees it.
  pub fn refuse(method: &str, path: &str, error: &GatewayError) -> WholeReply {
    let codec = Self::error_codec(&Self::route(method, path));
    WholeReply::error(&codec, error, &new_request_id())
  }

  /// Whether the route table has `method path` (an Express router passes the rest on).
  pub fn knows(method: &str, path: &str) -> bool {
    !matches!(Self::route(method, path), Route::Unknown)
  }

  /// Answers one request. `cancel` stops the call (the client left); dropping the returned
  /// future or stream does too.
  pub async fn handle(&self, request: HttpRequest<'_>, cancel: CancellationToken) -> Reply {
    let route = Self::route(request.method, request.path);
    // Anthropic's clients expect `req_…` request ids (`request-id`, the error body's).
    let request_id = match route {
      Route::Call(Codec {
        protocol: Protocol::Messages,
        ..
      })
      | Route::CountTokens => format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..)),
      _ => new_request_id(),
    };
    match route {
      Route::Call(codec) => self.call(codec, request, cancel, &request_id).await,
      Route::Models => Reply::Whole(self.models(&request, &request_id)),
      Route::CountTokens => Reply::Whole(self.count_tokens(&request, cancel, &request_id).await),
      Route::Embeddings => Reply::Whole(self.embeddings(&request, cancel, &request_id).await),
      Route::GetResponse(id) => {
        Reply::Whole(self.stored_response(&request, id, false, &request_id).await)
      }
      Route::DeleteResponse(id) => {
        Reply::Whole(self.stored_response(&request, id, true, &request_id).await)
      }
      Route::Unknown => {
        let path = request.path.split('?').next().unwrap_or_default();
        let body = json!({ "error": {
          "message": format!("Unknown request URL: {} {}.", request.method, crate::secret::redact(path, &[])),
          "type": "invalid_request_error", "param": null, "code": "unknown_url" } });
        Reply::Whole(WholeReply::json(404, body.to_string().into_bytes()))
      }
    }
  }

  fn models(&self, request: &HttpRequest<'_>, request_id: &str) -> WholeReply {
    let headers = Headers::new(request.headers);
    let anthropic = headers.get("anthropic-version").is_some();
    let codec = if anthropic {
      messages::CODEC
    } else {
      chat_completions::CODEC
    };
    if let Err(error) = self.admit(request) {
      return WholeReply::error(&codec, &error, request_id);
    }
    let models = self.gateway.models();
    let body = if anthropic {
      let data: Vec<Value> = models
        .iter()
        .map(|id| json!({ "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z" }))
        .collect();
      json!({ "data": data, "has_more": false, "first_id": models.first(), "last_id": models.last() })
    } else {
      let data: Vec<Value> = models
        .iter()
        .map(|id| {
          let owner = id.split_once('/').map_or("ferrogate", |(owner, _)| owner);
          json!({ "id": id, "object": "model", "created": 0, "owned_by": owner })
        })
        .collect();
      json!({ "object": "list", "data": data })
    };
    WholeReply::json(200, body.to_string().into_bytes())
  }

  /// What every route checks first, in its protocol's error shape: the body's size (413) and
  /// the caller's key.
  fn admit(&self, request: &HttpRequest<'_>) -> Result<Option<auth::Caller>> {
    if request.body.len() > MAX_BODY_BYTES {
      return Err(body_too_large());
    }
    self
      .keys
      .authenticate(Headers::new(request.headers), request.key_verdict.as_ref())
  }

  /// `POST /v1/messages/count_tokens`: answered by Anthropic for an `anthropic` target (the
  /// client's body with the model renamed and its `anthropic-*` headers, the vendor's answer
  /// relayed), and by ferrogate's own count of the translated prompt and tools otherwise.
  async fn count_tokens(
    &self,
    request: &HttpRequest<'_>,
    cancel: CancellationToken,
    request_id: &str,
  ) -> WholeReply {
    let refuse = |error: GatewayError| WholeReply::error(&messages::CODEC, &error, request_id);
    if let Err(error) = self.admit(request) {
      return refuse(error);
    }
    let count = match messages::parse_count_tokens(request.body, Headers::new(request.headers)) {
      Ok(count) => count,
      Err(error) => return refuse(error),
    };
    let native = NativeCall::new(
      messages::CODEC.protocol,
      count.native.clone(),
      count.native_headers.clone(),
      Vec::new(),
    );
    // Dropped when the client goes away (serve drops this future): the request stops.
    let _guard = cancel.clone().drop_guard();
    let asked = self
      .gateway
      .count_tokens_upstream(&count.model, &count.request, &native, cancel)
      .await;
    match asked {
      Ok(Some(answer)) => match messages::parse_count_tokens_answer(&answer) {
        Ok(_) => WholeReply::ok(answer, request_id),
        Err(error) => refuse(error),
      },
      Ok(None) => WholeReply::ok(
        messages::count_tokens_json(messages::count_tokens_locally(&count)),
        request_id,
      ),
      Err(error) => refuse(error),
    }
  }

  /// `POST /v1/embeddings` through `gateway.embed()`, with the key's quota held for the
  /// body's tokens (an upper bound of the input's) and charged what the call used.
  async fn embeddings(
    &self,
    request: &HttpRequest<'_>,
    cancel: CancellationToken,
    request_id: &str,
  ) -> WholeReply {
    let codec = chat_completions::CODEC;
    let refuse = |error: GatewayError| WholeReply::error(&codec, &error, request_id);
    let caller = match self.admit(request) {
      Ok(caller) => caller,
      Err(error) => return refuse(error),
    };
    let hold = match &caller {
      Some(caller) => {
        let text = String::from_utf8_lossy(request.body);
        let wanted = crate::tokens::encoding_for("").count_text(&text) as u64;
        match caller.reserve(wanted) {
          Ok(hold) => hold,
          Err(error) => return refuse(error),
        }
      }
      None => None,
    };
    let identity = caller.map(|caller| caller.user.clone());
    let trace = request.trace.clone();
    let _guard = cancel.clone().drop_guard();
    let answer = embeddings::answer(
      &self.gateway,
      request.body,
      identity,
      cancel,
      request_id,
      trace,
    )
    .await;
    let (reply, used) = match answer {
      Ok((body, tokens)) => (WholeReply::ok(body, request_id), tokens),
      Err(reply) => {
        let mut whole = WholeReply::json(reply.status, reply.body);
        whole
          .headers
          .extend(reply.headers.into_iter().map(|(k, v)| (k.to_string(), v)));
        whole
          .headers
          .push(("x-request-id".into(), request_id.to_string()));
        (whole, 0)
      }
    };
    if let Some(hold) = hold {
      hold.settle(used);
    }
    reply
  }

  /// `GET` (or, with `delete`, `DELETE`) `/v1/responses/{id}` from the response store.
  async fn stored_response(
    &self,
    request: &HttpRequest<'_>,
    id: &str,
    delete: bool,
    request_id: &str,
  ) -> WholeReply {
    let refuse = |error: GatewayError| WholeReply::error(&responses::CODEC, &error, request_id);
    if let Err(error) = self.admit(request) {
      return refuse(error);
    }
    let store = self.gateway.response_store();
    let result = if delete {
      response_store::delete(store, id).await
    } else {
      response_store::get(store, id).await
    };
    match result {
      Ok(object) => WholeReply::ok(object.to_string().into_bytes(), request_id),
      Err(error) => refuse(self.gateway.redact_error(error)),
    }
  }

  /// parse → auth → quota → the pipeline, once → encode.
  async fn call(
    &self,
    codec: Codec,
    request: HttpRequest<'_>,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Reply {
    let refuse = |error: GatewayError| Reply::Whole(WholeReply::error(&codec, &error, request_id));
    let caller = match self.admit(&request) {
      Ok(caller) => caller,
      Err(error) => return refuse(error),
    };
    let headers = Headers::new(request.headers);
    // A Responses call also carries its turn for the response store.
    let parsed = if codec.protocol == Protocol::Responses {
      responses::parse_turn(request.body, headers).map(|(parsed, turn)| (parsed, Some(turn)))
    } else {
      (codec.parse)(request.body, headers).map(|parsed| (parsed, None))
    };
    let (mut parsed, turn) = match parsed {
      Ok(parsed) => parsed,
      Err(error) => return refuse(error),
    };
    // The conversation `previous_response_id` names goes in front of this turn's input.
    let stored = match turn {
      Some(turn) => {
        let store = self.gateway.response_store();
        let history = match response_store::history(store, &turn).await {
          Ok(history) => history,
          Err(error) => return refuse(self.gateway.redact_error(error)),
        };
        if let Err(error) = responses::prepend_history(&mut parsed, &turn, &history) {
          return refuse(error);
        }
        if let Value::Object(body) = responses::native_body(&parsed, &turn, &history, &parsed.model)
        {
          parsed.native = body;
        }
        Some(Remember {
          gateway: self.gateway.clone(),
          turn,
          history,
          held: Vec::new(),
        })
      }
      None => None,
    };
    // With keys, the caller's identity is the key's, whatever the body says.
    if let Some(caller) = &caller {
      parsed.request.user = Some(caller.user.clone());
    }
    let hold = match &caller {
      Some(caller) => {
        let wanted = quota_wanted(&parsed);
        match caller.reserve(wanted) {
          Ok(hold) => hold,
          Err(error) => return refuse(error),
        }
      }
      None => None,
    };
    let Parsed {
      model,
      request: chat,
      stream,
      mut encoder,
      metadata,
      native,
      native_headers,
      native_only,
      warnings,
      ..
    } = parsed;
    // A field the gateway's request does not model changes the answer without changing
    // the cache key: such calls are not answered from the cache.
    let bypass_cache = !native_only.is_empty() || !warnings.is_empty();
    let mut native_body = native;
    if let Some(caller) = &caller {
      set_path(&mut native_body, codec.identity_path, &caller.user);
    }
    // Every codec's protocol has kinds that speak it natively (`Kind::speaks_natively`); the
    // attempt stage decides per target whether to relay or translate.
    let native = Some(Arc::new(NativeCall::new(
      codec.protocol,
      native_body,
      native_headers,
      native_only.clone(),
    )));
    let options = CallOptions {
      metadata,
      ingress: Some(codec.protocol.as_str()),
      warnings,
      bypass_cache,
      native: native.clone(),
      trace: request.trace.clone(),
      ..CallOptions::default()
    };
    let request_id = request_id.to_string();
    // Which cache answered, known before the first event: the `x-ferrogate-cache` header.
    let served = options.served.clone();
    let (chat, options) = (Box::new(chat), Box::new(options));
    if !stream {
      // Dropped when the client goes away (serve drops this future): the call stops.
      let _guard = cancel.clone().drop_guard();
      // Boxed: the pipeline's future is large.
      let executed =
        Box::pin(
          self
            .gateway
            .execute_billed(&model, chat, options, None, cancel, &request_id),
        )
        .await;
      if let Some(hold) = hold {
        hold.settle(executed.billed.total_tokens);
      }
      return match finish_result(&self.gateway, executed.result, self.closed.as_ref()) {
        Ok(response) => {
          // The vendor's own body when the target speaks the client's protocol.
          let body = match native.and_then(|native| native.take_reply()) {
            Some(body) => {
              if let Some(stored) = stored {
                stored.relayed_whole(&body).await;
              }
              body
            }
            None => {
              let body = encoder.json(&response);
              // Stored before the answer goes out, so the client's next turn finds it.
              if let Some(stored) = stored {
                stored.encoded().await;
              }
              body
            }
          };
          let mut reply = WholeReply::ok(body, &request_id);
          reply.headers.extend(cache_header(&served));
          Reply::Whole(reply)
        }
        Err(error) => refuse(error),
      };
    }
    let (sender, mut receiver) = mpsc::channel(STREAM_CHANNEL);
    let gateway = self.gateway.clone();
    let closed = self.closed.clone();
    let task_cancel = cancel.clone();
    let task_request_id = request_id.clone();
    tokio::spawn(async move {
      let executed = run_call(
        &gateway,
        &model,
        chat,
        options,
        Some(sender.clone().into()),
        task_cancel,
        &task_request_id,
        closed.as_ref(),
      )
      .await;
      // A stream cut off is charged what it used: its prompt and the delivered output.
      if let Some(hold) = hold {
        hold.settle(executed.billed.total_tokens);
      }
      let last = executed
        .result
        .map(|response| StreamEvent::Done(Box::new(response)))
        .map_err(Box::new);
      // The receiver is gone when the client left; nobody is left to tell.
      let _ = sender.send(last).await;
    });
    let guard = cancel.drop_guard();
    // Errors before the first event keep their HTTP status.
    let first = match receiver.recv().await {
      Some(Ok(event)) => event,
      Some(Err(error)) => return refuse(*error),
      None => {
        return refuse(GatewayError::protocol(
          "internal error: the call ended without a result",
        ))
      }
    };
    let mut head = Vec::with_capacity(1024);
    // A relayed native stream is the vendor's bytes only.
    if !matches!(first, StreamEvent::Native(_)) {
      encoder.stream_start(&request_id, &mut head);
    }
    let mut reply = StreamReply {
      headers: vec![
        (
          "content-type".into(),
          "text/event-stream; charset=utf-8".into(),
        ),
        ("cache-control".into(), "no-cache".into()),
        ("x-request-id".into(), request_id),
      ]
      .into_iter()
      .chain(cache_header(&served))
      .collect(),
      receiver,
      encoder,
      head: Vec::new(),
      finished: false,
      relaying: false,
      remember: stored,
      _cancel_on_drop: guard,
    };
    reply.encode(Ok(first), &mut head);
    reply.head = head;
    Reply::Stream(reply)
  }
}

/// `x-ferrogate-cache: exact` or `semantic; similarity=0.97` for an answer from a cache.
fn cache_header(served: &std::sync::OnceLock<crate::pipeline::Served>) -> Option<(String, String)> {
  served
    .get()
    .map(|served| ("x-ferrogate-cache".to_string(), served.header_value()))
}

/// Sets `path` in a JSON object to `value`, making the objects on the way.
fn set_path(object: &mut Map<String, Value>, path: &[&str], value: &str) {
  let Some((last, parents)) = path.split_last() else {
    return;
  };
  let mut at = object;
  for key in parents {
    let entry = at
      .entry(key.to_string())
      .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
      *entry = Value::Object(Map::new());
    }
    let Value::Object(next) = entry else {
      return;
    };
    at = next;
  }
  at.insert(last.to_string(), Value::String(value.to_string()));
}

pub fn body_too_large() -> GatewayError {
  GatewayError::invalid_request(format!(
    "the request body is larger than {MAX_BODY_BYTES} bytes"
  ))
  .with_status(413)
}

/// What a call may use of a key's quota: its prompt plus the longest answer it may get
/// (`max_tokens`, else the model's largest completion from the built-in prices, else the
/// hard budgets' default bound). The hold is capped by what is left of the quota.
fn quota_wanted(parsed: &Parsed) -> u64 {
  let encoding = crate::tokens::encoding_for(&parsed.model);
  let prompt = encoding.count_messages(&parsed.request.messages) as u64;
  // Other vendors' tokenizers count differently: a quarter more keeps it an upper bound.
  let prompt = if encoding.exact {
    prompt
  } else {
    prompt + prompt.div_ceil(4)
  };
  let output = parsed
    .request
    .max_tokens
    .or_else(|| {
      crate::costs::Pricing::builtin()
        .lookup(&parsed.model)
        .and_then(|price| price.max_output_tokens)
    })
    .unwrap_or(crate::costs::pricing::DEFAULT_RESERVED_OUTPUT_TOKENS);
  prompt.saturating_add(u64::from(output))
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::pipeline::{GatewayConfig, ProviderConfig};
  use std::time::Duration;

  fn door(keys: Keys) -> FrontDoor {
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(1))],
      ..GatewayConfig::default()
    })
    .expect("gateway");
    FrontDoor::new(Arc::new(gateway), keys, None)
  }

  fn headers(key: Option<&str>) -> Vec<(String, String)> {
    key
      .map(|key| vec![("authorization".to_string(), format!("Bearer {key}"))])
      .unwrap_or_default()
  }

  async fn ask(
    door: &FrontDoor,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
  ) -> Reply {
    let headers = headers(key);
    let request = HttpRequest {
      method,
      path,
      headers: &headers,
      body,
      key_verdict: None,
      trace: None,
    };
    door.handle(request, CancellationToken::new()).await
  }

  fn whole(reply: Reply) -> (u16, Value) {
    match reply {
      Reply::Whole(reply) => (
        reply.status,
        serde_json::from_slice(&reply.body).expect("json body"),
      ),
      Reply::Stream(_) => panic!("expected a whole reply"),
    }
  }

  async fn all_bytes(reply: Reply) -> String {
    let Reply::Stream(mut stream) = reply else {
      panic!("expected a stream");
    };
    let mut out = Vec::new();
    while let Some(batch) = stream.next_batch().await {
      out.extend_from_slice(&batch);
    }
    String::from_utf8(out).expect("utf8")
  }

  const CHAT: &str = "/v1/chat/completions";

  use crate::pipeline::RecordedCalls as Records;

  #[tokio::test]
  async fn metadata_ingress_and_the_key_identity_reach_the_call_record() {
    let records = Arc::new(Records(std::sync::Mutex::new(Vec::new())));
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::from_millis(1))],
      on_call: Some(crate::pipeline::CallHook(records.clone())),
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let keys = Keys::from_serve_keys(vec![ServeKey {
      key: "k".into(),
      user: Some("svc".into()),
      daily_token_quota: None,
    }])
    .expect("keys");
    let door = FrontDoor::new(Arc::new(gateway), keys, None);
    let body = br#"{"model":"mock/demo","user":"victim","metadata":{"team":"search"},"messages":[{"role":"user","content":"hello"}]}"#;
    let (status, _) = whole(ask(&door, "POST", CHAT, Some("k"), body).await);
    assert_eq!(status, 200);
    let records = records.0.lock().expect("records");
    let record = records.last().expect("a record");
    assert_eq!(
      record.metadata,
      vec![("team".to_string(), "search".to_string())]
    );
    assert_eq!(record.ingress, Some("chat"));
    assert_eq!(record.user.as_deref(), Some("svc"));
  }

  #[tokio::test]
  async fn chat_completions_are_answered_whole_and_streamed() {
    let door = door(Keys::Open);
    let body = br#"{"model":"mock/demo","messages":[{"role":"user","content":"hello"}]}"#;
    let (status, json) = whole(ask(&door, "POST", CHAT, None, body).await);
    assert_eq!(status, 200);
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "mock/demo");
    let body = br#"{"model":"mock/demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}"#;
    let text = all_bytes(ask(&door, "POST", CHAT, None, body).await).await;
    assert!(text.starts_with("data: {"), "{text}");
    assert!(text.contains(r#""delta":{"role":"assistant""#));
    assert!(text.contains(r#""choices":[],"usage":{"#));
    assert!(text.ends_with("data: [DONE]\n\n"));
  }

  #[tokio::test]
  async fn refusals_come_in_the_protocol_shape_with_their_status() {
    let door = door(Keys::Open);
    let (status, json) = whole(ask(&door, "POST", CHAT, None, b"{").await);
    assert_eq!(
      (status, json["error"]["type"].as_str()),
      (400, Some("invalid_request_error"))
    );
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, _) = whole(ask(&door, "POST", CHAT, None, &big).await);
    assert_eq!(status, 413);
    let (status, json) = whole(ask(&door, "POST", "/v1/messages", None, b"{}").await);
    assert_eq!(
      (status, json["error"]["type"].as_str()),
      (400, Some("invalid_request_error"))
    );
    let (status, json) = whole(ask(&door, "POST", "/v1/messages?beta=true", None, &big).await);
    assert_eq!(
      (status, json["error"]["type"].as_str()),
      (413, Some("request_too_large"))
    );
    let (status, json) = whole(ask(&door, "GET", "/v1/nothing?x=1", None, b"").await);
    assert_eq!(
      (status, json["error"]["code"].as_str()),
      (404, Some("unknown_url"))
    );
    let body = br#"{"model":"mock/demo","n":2,"messages":[{"role":"user","content":"hello"}]}"#;
    let (status, json) = whole(ask(&door, "POST", CHAT, None, body).await);
    assert_eq!(status, 400);
    assert!(json["error"]["message"]
      .as_str()
      .is_some_and(|m| m.starts_with("n is not supported")));
  }

  #[tokio::test]
  async fn a_quota_is_held_while_a_stream_runs_and_settled_after() {
    let keys = Keys::from_serve_keys(vec![ServeKey {
      key: "k".into(),
      user: Some("svc".into()),
      daily_token_quota: Some(10),
    }])
    .expect("keys");
    let door = door(keys);
    let body =
      br#"{"model":"mock/demo","stream":true,"messages":[{"role":"user","content":"hello"}]}"#;
    let (status, _) = whole(ask(&door, "POST", CHAT, None, body).await);
    assert_eq!(status, 401);
    let first = ask(&door, "POST", CHAT, Some("k"), body).await;
    assert!(matches!(first, Reply::Stream(_)));
    let (status, json) = whole(ask(&door, "POST", CHAT, Some("k"), body).await);
    assert_eq!(
      (status, json["error"]["code"].as_str()),
      (429, Some("rate_limit_exceeded"))
    );
    all_bytes(first).await;
    // Settled with what the first call used, which spent the quota.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = whole(ask(&door, "POST", CHAT, Some("k"), body).await);
    assert_eq!(status, 429);

    // A quota with room for several answers lets calls run together.
    let roomy = Keys::from_serve_keys(vec![ServeKey {
      key: "k".into(),
      user: None,
      daily_token_quota: Some(1_000_000),
    }])
    .expect("keys");
    let door = super::tests::door(roomy);
    let first = ask(&door, "POST", CHAT, Some("k"), body).await;
    let second = ask(&door, "POST", CHAT, Some("k"), body).await;
    assert!(matches!(
      (&first, &second),
      (Reply::Stream(_), Reply::Stream(_))
    ));
  }

  #[tokio::test]
  async fn messages_responses_and_embeddings_share_the_door() {
    let keys = Keys::from_serve_keys(vec![ServeKey {
      key: "k".into(),
      user: Some("svc".into()),
      daily_token_quota: Some(1_000_000),
    }])
    .expect("keys");
    let door = door(keys);
    let anthropic_key = vec![("x-api-key".to_string(), "k".to_string())];
    let messages =
      br#"{"model":"mock/demo","max_tokens":50,"messages":[{"role":"user","content":"hello"}]}"#;
    let request = HttpRequest {
      method: "POST",
      path: "/v1/messages?beta=true",
      headers: &anthropic_key,
      body: messages,
      key_verdict: None,
      trace: None,
    };
    let (status, json) = whole(door.handle(request, CancellationToken::new()).await);
    assert_eq!(
      (status, json["type"].as_str()),
      (200, Some("message")),
      "{json}"
    );
    let counted = HttpRequest {
      method: "POST",
      path: "/v1/messages/count_tokens",
      headers: &anthropic_key,
      body: br#"{"model":"mock/demo","messages":[{"role":"user","content":"hello"}]}"#,
      key_verdict: None,
      trace: None,
    };
    let (status, json) = whole(door.handle(counted, CancellationToken::new()).await);
    assert_eq!(status, 200);
    assert!(
      json["input_tokens"].as_u64().is_some_and(|n| n > 0),
      "{json}"
    );

    let first = br#"{"model":"mock/demo","input":"hello"}"#;
    let (status, json) = whole(ask(&door, "POST", "/v1/responses", Some("k"), first).await);
    assert_eq!((status, json["object"].as_str()), (200, Some("response")));
    let id = json["id"].as_str().expect("id").to_string();
    let path = format!("/v1/responses/{id}");
    let (status, stored) = whole(ask(&door, "GET", &path, Some("k"), b"").await);
    assert_eq!((status, &stored["id"]), (200, &json["id"]));
    // A streamed next turn continues the stored conversation, and is stored itself before
    // its `response.completed` goes out.
    let next = format!(
      r#"{{"model":"mock/demo","stream":true,"previous_response_id":"{id}","input":"again"}}"#
    );
    let text =
      all_bytes(ask(&door, "POST", "/v1/responses", Some("k"), next.as_bytes()).await).await;
    assert!(text.contains("event: response.completed"), "{text}");
    let (status, json) = whole(ask(&door, "DELETE", &path, Some("k"), b"").await);
    assert_eq!((status, json["deleted"].as_bool()), (200, Some(true)));
    let (status, json) = whole(ask(&door, "GET", &path, None, b"").await);
    assert_eq!(status, 401, "{json}");
    let (status, json) = whole(ask(&door, "GET", &path, Some("k"), b"").await);
    assert_eq!(
      (status, json["error"]["code"].as_str()),
      (404, Some("not_found"))
    );
    let unknown = br#"{"model":"mock/demo","input":"x","previous_response_id":"resp_nope"}"#;
    let (status, json) = whole(ask(&door, "POST", "/v1/responses", Some("k"), unknown).await);
    assert_eq!(
      (status, json["error"]["param"].as_str()),
      (400, Some("previous_response_id"))
    );

    let embed = br#"{"model":"mock/embed","input":["a","b"]}"#;
    let (status, json) = whole(ask(&door, "POST", "/v1/embeddings", None, embed).await);
    assert_eq!(status, 401, "{json}");
    let (status, json) = whole(ask(&door, "POST", "/v1/embeddings", Some("k"), embed).await);
    assert_eq!(
      (status, json["object"].as_str()),
      (200, Some("list")),
      "{json}"
    );
    assert_eq!(json["data"].as_array().map(Vec::len), Some(2));
  }
}
