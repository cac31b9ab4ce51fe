//! Same-protocol fidelity: when a call that came through the front door reaches a target
//! that speaks the client's protocol itself (Chat Completions to an `openai` provider, say),
//! the vendor receives the client's own body, with only `model` renamed, plus the headers the
//! codec chose to pass on; the client receives the vendor's bytes (the JSON body, or the SSE
//! stream relayed as it comes) with every field the vendor sent. The vendor's decoder still
//! runs beside the relay, so usage, cost, the ledger and the delivered text are read from the
//! same answer. A target of another kind is translated as usual; a field only a same-protocol
//! target can honour (`native_only`, e.g. `n` above 1) is then a 400 naming it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures_util::StreamExt;
use serde_json::{Map, Value};

use super::attempt::{read_body, send_call, stream_broken, MAX_RESPONSE_BYTES};
use super::forward::{forward, forward_whole, note_delivered, send, EventSink, Progress};
use super::kind::{Kind, WireApi};
use crate::error::{GatewayError, Result};
use crate::ingress::Protocol;
use crate::providers::{Adapter, HttpCall, StreamSession};
use crate::types::{ChatRequest, Completion, StreamEvent};

/// The client's request as it arrived, for a target that speaks its protocol.
#[derive(Debug)]
pub struct NativeCall {
  /// The client's protocol: a target relays it when its kind speaks it natively.
  pub protocol: Protocol,
  /// The body exactly as the client sent it; `model` is replaced by the target's.
  pub body: Map<String, Value>,
  /// Client headers passed on unchanged (e.g. `anthropic-beta`).
  pub headers: Vec<(String, String)>,
  /// Fields a target of another kind cannot honour: it refuses the call naming the first.
  pub native_only: Vec<String>,
  /// The vendor's JSON body of a whole (not streamed) answer that was relayed.
  reply: Mutex<Option<Vec<u8>>>,
  /// The call was answered natively (so nothing was left out in translation).
  answered_natively: AtomicBool,
  /// The body after the input guardrails (text redacted): what the vendor receives.
  guarded_body: Mutex<Option<Map<String, Value>>>,
  /// False with output guardrails: the vendor's answer is decoded and re-encoded, so that
  /// every byte the client receives has passed them.
  relay_answer: AtomicBool,
  /// A guardrail replaced the messages: the client's body no longer says what the call sends.
  translate_only: AtomicBool,
}

impl NativeCall {
  pub fn new(
    protocol: Protocol,
    body: Map<String, Value>,
    headers: Vec<(String, String)>,
    native_only: Vec<String>,
  ) -> Self {
    NativeCall {
      protocol,
      body,
      headers,
      native_only,
      reply: Mutex::new(None),
      answered_natively: AtomicBool::new(false),
      guarded_body: Mutex::new(None),
      relay_answer: AtomicBool::new(true),
      translate_only: AtomicBool::new(false),
    }
  }

  /// What the guardrails stage decided for this call: the body to send instead of the
  /// client's, whether the answer may be relayed as the vendor sent it, and whether only a
  /// translated request says what the call sends.
  pub(crate) fn guard(
    &self,
    body: Option<Map<String, Value>>,
    relay_answer: bool,
    translate_only: bool,
  ) {
    *self
      .guarded_body
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner()) = body;
    self.relay_answer.store(relay_answer, Ordering::SeqCst);
    self.translate_only.store(translate_only, Ordering::SeqCst);
  }

  /// The body a same-protocol target receives (before `model` is set).
  fn outgoing_body(&self) -> Map<String, Value> {
    self
      .guarded_body
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .clone()
      .unwrap_or_else(|| self.body.clone())
  }

  /// Whether a provider of `kind` whose upstream API is `api` speaks the client's protocol.
  pub fn speaks(&self, kind: Kind, api: WireApi) -> bool {
    !self.translate_only.load(Ordering::SeqCst) && kind.speaks_natively(self.protocol, api)
  }

  /// The vendor's own JSON body, when the answer was relayed natively.
  pub fn take_reply(&self) -> Option<Vec<u8>> {
    self
      .reply
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
      .take()
  }

  pub fn answered_natively(&self) -> bool {
    self.answered_natively.load(Ordering::SeqCst)
  }

  /// Before an attempt on a target of another kind: what it cannot honour is refused.
  pub(crate) fn translated_attempt(&self, kind: Kind) -> Result<()> {
    self.set_reply(None);
    self.answered_natively.store(false, Ordering::SeqCst);
    match self.native_only.first() {
      Some(field) => Err(GatewayError::invalid_request(format!(
        "{field} is not supported by the '{}' provider this call went to: only a provider that speaks the client's protocol natively can honour it",
        kind.as_str()
      ))),
      None => Ok(()),
    }
  }

  fn set_reply(&self, reply: Option<Vec<u8>>) {
    *self
      .reply
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner()) = reply;
  }
}

/// UTF-8 text of a byte stream cut at arbitrary places: a character split across two
/// chunks is held back until its rest arrives.
#[derive(Default)]
struct Utf8Chunks {
  pending: Vec<u8>,
}

impl Utf8Chunks {
  fn push(&mut self, chunk: &[u8]) -> String {
    self.pending.extend_from_slice(chunk);
    match std::str::from_utf8(&self.pending) {
      Ok(text) => {
        let text = text.to_string();
        self.pending.clear();
        text
      }
      Err(error) if error.error_len().is_none() => {
        let valid = error.valid_up_to();
        let rest = self.pending.split_off(valid);
        String::from_utf8(std::mem::replace(&mut self.pending, rest)).unwrap_or_default()
      }
      Err(_) => {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
      }
    }
  }
}

/// One attempt that relays the client's own request and the vendor's own answer.
pub(crate) async fn native_attempt(
  provider: &str,
  http: &super::http::Lease,
  adapter: &dyn Adapter,
  native: &NativeCall,
  req: &ChatRequest,
  sink: &EventSink,
  progress: &Progress,
) -> Result<Completion> {
  native.set_reply(None);
  native.answered_natively.store(true, Ordering::SeqCst);
  let vendor = adapter.vendor();
  let stream = sink.is_some();
  let relay = native.relay_answer.load(Ordering::SeqCst);
  // The request (the client's body, headers and the key) is dropped once sent, not held
  // for as long as the answer streams.
  let response = {
    let call = native_http_call(adapter, native, req, stream)?;
    send_call(provider, http, adapter, &call, stream).await?
  };
  let is_event_stream = response
    .headers()
    .get("content-type")
    .and_then(|v| v.to_str().ok())
    .is_some_and(|v| v.contains("text/event-stream"));
  if !(stream && is_event_stream) {
    let body = read_body(vendor, response, MAX_RESPONSE_BYTES, true).await?;
    let completion = adapter.parse_response(req, &body)?;
    match sink {
      // A server that ignored `stream: true` still streams, in one piece (translated).
      Some(sink) => {
        native.answered_natively.store(false, Ordering::SeqCst);
        forward_whole(&completion, sink, progress).await?;
      }
      None if relay => native.set_reply(Some(body.to_vec())),
      None => {}
    }
    return Ok(completion);
  }
  let Some(sink) = sink else {
    return Err(GatewayError::protocol("internal: stream without a sink"));
  };
  let mut session = StreamSession::new(adapter.stream_decoder(req));
  let mut bytes = response.bytes_stream();
  let mut events = Vec::new();
  let mut text = Utf8Chunks::default();
  while !session.is_done() {
    match bytes.next().await {
      Some(Ok(chunk)) => {
        session.push_into(&chunk, &mut events)?;
        if !relay {
          forward(events.drain(..), sink, progress).await?;
          continue;
        }
        note_delivered(progress, &events);
        events.clear();
        let relayed = text.push(&chunk);
        if !relayed.is_empty() {
          send(sink, StreamEvent::Native(relayed), progress).await?;
        }
      }
      Some(Err(e)) => return Err(stream_broken(vendor, &e)),
      None => break,
    }
  }
  let (events, completion) = session.finish()?;
  if relay {
    note_delivered(progress, &events);
  } else {
    forward(events, sink, progress).await?;
  }
  Ok(completion)
}

/// The vendor request for the client's own body: the adapter's request for `req` gives the URL
/// and the provider's own headers (its key); the body is the client's, with `model` renamed to
/// `req.model` (the target's), and the client's passed-on headers join the provider's.
pub(crate) fn native_http_call(
  adapter: &dyn Adapter,
  native: &NativeCall,
  req: &ChatRequest,
  stream: bool,
) -> Result<HttpCall> {
  let built = adapter.build(req, stream)?;
  // The client's body after the input guardrails, when they ran.
  let mut body = native.outgoing_body();
  body.insert("model".into(), Value::String(req.model.clone()));
  let headers = native_headers(&built.headers, &native.headers)
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect();
  Ok(HttpCall {
    url: built.url,
    headers,
    body: Value::Object(body),
  })
}

/// Headers that carry a key: only the provider's own are ever sent.
const KEY_HEADERS: &[&str] = &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The provider's headers, then the client's: a client header replaces the provider's of the
/// same name (`anthropic-version`, say), except the ones that carry a key, which the client
/// can never set.
fn native_headers<'a>(
  provider: &'a [(String, String)],
  client: &'a [(String, String)],
) -> Vec<(&'a str, &'a str)> {
  let is_key = |name: &str| KEY_HEADERS.iter().any(|key| name.eq_ignore_ascii_case(key));
  let from_client = |name: &str| client.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
  provider
    .iter()
    .filter(|(name, _)| is_key(name) || !from_client(name))
    .chain(client.iter().filter(|(name, _)| !is_key(name)))
    .map(|(name, value)| (name.as_str(), value.as_str()))
    .collect()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn client_headers_replace_the_providers_but_never_its_key() {
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    let provider = [
      pair("x-api-key", "sk-provider"),
      pair("anthropic-version", "2023-06-01"),
    ];
    let client = [
      pair("anthropic-version", "2024-01-01"),
      pair("anthropic-beta", "tools"),
      pair("X-Api-Key", "sk-client"),
    ];
    assert_eq!(
      native_headers(&provider, &client),
      vec![
        ("x-api-key", "sk-provider"),
        ("anthropic-version", "2024-01-01"),
        ("anthropic-beta", "tools"),
      ]
    );
  }

  #[test]
  fn a_target_api_must_match_the_providers() {
    let call = |protocol| NativeCall::new(protocol, Map::new(), Vec::new(), Vec::new());
    assert!(call(Protocol::Responses).speaks(Kind::OpenAi, WireApi::Responses));
    assert!(!call(Protocol::Responses).speaks(Kind::OpenAi, WireApi::Chat));
    assert!(call(Protocol::ChatCompletions).speaks(Kind::OpenAi, WireApi::Chat));
    assert!(!call(Protocol::ChatCompletions).speaks(Kind::OpenAi, WireApi::Responses));
    assert!(!call(Protocol::ChatCompletions).speaks(Kind::Anthropic, WireApi::Chat));
  }

  #[test]
  fn characters_split_across_chunks_are_held_back() {
    let mut chunks = Utf8Chunks::default();
    let bytes = "é€".as_bytes();
    assert_eq!(chunks.push(&bytes[..1]), "");
    assert_eq!(chunks.push(&bytes[1..3]), "é");
    assert_eq!(chunks.push(&bytes[3..]), "€");
  }
}
