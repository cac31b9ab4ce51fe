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

pub mod response_store;
pub mod responses;

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::types::{ChatRequest, ChatResponse, StreamEvent};

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
