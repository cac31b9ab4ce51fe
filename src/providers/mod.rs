//! Vendor adapters behind one trait. Each adapter is pure: it builds the HTTP request
//! for a normalized [`ChatRequest`] and decodes the vendor's response, stream or error
//! into normalized types. The gateway owns transport, retries and timing.

pub mod anthropic;
pub mod auth;
pub mod azure;
pub mod bedrock;
mod errors;
pub mod gemini;
pub mod key_pool;
pub mod mock;
pub mod openai;
pub mod schema_instance;
pub mod vertex;

pub use errors::{classify_status, http_error, in_band_error, stray_line, vendor_error, ErrorBody};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::sse::SseFrame;
use crate::types::{ChatRequest, Completion};

/// The content type every vendor request body is sent with (a SigV4 signature covers it).
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Whether a 2xx answer's content type is a stream: SSE, or AWS's binary event stream.
pub fn is_stream_content_type(content_type: &str) -> bool {
  content_type.contains("text/event-stream")
    || content_type.contains("application/vnd.amazon.eventstream")
}

/// One HTTP request to a vendor.
#[derive(Debug)]
pub struct HttpCall {
  pub url: String,
  pub headers: Vec<(String, String)>,
  pub body: Value,
}

pub trait Adapter: Send + Sync {
  /// The vendor's name for messages ("openai", "anthropic", "gemini").
  fn vendor(&self) -> &'static str;
  fn build(&self, req: &ChatRequest, stream: bool) -> Result<HttpCall>;
  fn parse_response(&self, req: &ChatRequest, body: &[u8]) -> Result<Completion>;
  fn stream_decoder(&self, req: &ChatRequest) -> Box<dyn StreamDecoder>;
  /// A non-2xx answer, as one of API.md's errors. Bodies come in every vendor's shape
  /// (gateways answer in each other's), so one parser serves every kind.
  fn parse_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> GatewayError {
    http_error(self.vendor(), status, headers, body)
  }
  /// The header that carries `key`, for key pools (`apiKeys`): the pool adds it per send.
  /// `None` when the kind takes no key in a header, so a pool is refused at construction.
  fn key_header(&self, _key: &str) -> Option<(String, String)> {
    None
  }
  /// Credentials added just before each send (a token, a signature); `None` when the
  /// headers from [`Self::build`] already carry them.
  fn authorizer(&self) -> Option<&dyn auth::Authorizer> {
    None
  }
  /// A free GET that answers 2xx when the deployment is up, for active health checks;
  /// `None` where only a real (1-token) call tells. The GET carries only these headers (no
  /// [`Self::authorizer`]): an adapter whose credentials come from one answers `None`.
  fn health_check(&self) -> Option<HttpCall> {
    None
  }
  /// The vendor's token-counting endpoint for a body in its own protocol (Anthropic's
  /// `/v1/messages/count_tokens`); `None` where the vendor has none and the gateway counts.
  fn count_tokens_url(&self) -> Option<String> {
    None
  }
  /// Most inputs one embeddings request may carry; larger batches are split.
  fn embed_batch_limit(&self) -> usize {
    1
  }
  /// One embeddings request (at most [`Self::embed_batch_limit`] texts).
  fn build_embed(&self, _batch: &EmbedBatch<'_>) -> Result<HttpCall> {
    Err(no_embeddings(self.vendor()))
  }
  /// The vendor's answer to [`Self::build_embed`]: exactly `expected` vectors, in input order.
  fn parse_embed(&self, _body: &[u8], _expected: usize) -> Result<EmbedAnswer> {
    Err(no_embeddings(self.vendor()))
  }
}

/// One embeddings request's worth of a call.
#[derive(Debug, Clone, Copy)]
pub struct EmbedBatch<'a> {
  /// The vendor's model name.
  pub model: &'a str,
  pub input: &'a [&'a str],
  pub dimensions: Option<u32>,
  /// The caller, for vendors that take an end-user id (OpenAI's `user`).
  pub user: Option<&'a str>,
}

/// A vendor's answer to one embeddings request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbedAnswer {
  /// One per input, in input order.
  pub vectors: Vec<Vec<f32>>,
  pub model: String,
  pub usage: Option<crate::types::Usage>,
}

/// Embeddings asked of a vendor that has no embeddings API (Anthropic): a clear refusal,
/// never retried.
pub fn no_embeddings(vendor: &str) -> GatewayError {
  GatewayError::invalid_request(format!(
    "{vendor} has no embeddings API: use an openai, gemini or mock provider for embeddings"
  ))
}

/// Checks that a vendor answered one vector per input.
pub fn expect_vectors(vendor: &str, vectors: &[Vec<f32>], expected: usize) -> Result<()> {
  if vectors.len() == expected {
    Ok(())
  } else {
    Err(GatewayError::protocol(format!(
      "{vendor} answered {} embeddings for {expected} inputs",
      vectors.len()
    )))
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStep {
  Continue,
  /// The vendor's end marker (`[DONE]`, `message_stop`); nothing after it matters.
  Done,
}

/// How a stream's bytes are cut into frames before a [`StreamDecoder`] reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
  Sse,
  /// `application/vnd.amazon.eventstream`: each message becomes an
  /// `SseFrame::Event { event: Some("event:<type>" | "exception:<type>" | "error:<code>") }`.
  AwsEventStream,
}

enum Framer {
  Sse(crate::sse::SseDecoder),
  AwsEventStream(crate::eventstream::EventStreamDecoder),
}

impl Framer {
  fn push(&mut self, bytes: &[u8], out: &mut Vec<SseFrame>) -> Result<()> {
    match self {
      Framer::Sse(sse) => sse.push(bytes, out),
      Framer::AwsEventStream(decoder) => decoder.push(bytes, out),
    }
  }

  fn finish(&mut self, out: &mut Vec<SseFrame>) -> Result<()> {
    match self {
      Framer::Sse(sse) => sse.finish(out),
      Framer::AwsEventStream(decoder) => decoder.finish(out),
    }
  }
}

pub trait StreamDecoder: Send {
  /// The framing this vendor's streams use.
  fn framing(&self) -> Framing {
    Framing::Sse
  }
  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep>;
  /// The byte stream is over: fail if the vendor stopped before finishing its answer.
  fn on_end(&mut self, out: &mut StreamAssembler) -> Result<()>;
}

/// Parses a JSON document, naming the vendor in the error.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(vendor: &str, body: &'a [u8]) -> Result<T> {
  serde_json::from_slice(body).map_err(|e| {
    GatewayError::protocol(format!("{vendor} sent a response we could not parse: {e}"))
  })
}

/// [`parse_json`] for text already checked to be UTF-8 (a stream event's data): its strings
/// are not validated a second time.
pub fn parse_json_str<'a, T: serde::Deserialize<'a>>(vendor: &str, text: &'a str) -> Result<T> {
  serde_json::from_str(text).map_err(|e| {
    GatewayError::protocol(format!("{vendor} sent a response we could not parse: {e}"))
  })
}

/// `base` joined with `path`, without doubled or missing slashes. Query strings of both
/// are kept: Azure-style deployments put `?api-version=` in the base URL.
pub fn join_url(base: &str, path: &str) -> String {
  let (base_path, base_query) = base.split_once('?').unwrap_or((base, ""));
  let (path, path_query) = path.split_once('?').unwrap_or((path, ""));
  let mut url = format!(
    "{}/{}",
    base_path.trim_end_matches('/'),
    path.trim_start_matches('/')
  );
  let queries: Vec<&str> = [base_query, path_query]
    .into_iter()
    .filter(|q| !q.is_empty())
    .collect();
  if !queries.is_empty() {
    url.push('?');
    url.push_str(&queries.join("&"));
  }
  url
}

/// `base` plus path segments, each percent-encoded as exactly one segment (so `?`, `#` and
/// `/` in a model name stay inside it and `..` cannot climb out of the path), plus `query`
/// after the base's own query.
pub fn url_with_segments(base: &str, segments: &[&str], query: Option<&str>) -> Result<String> {
  let invalid = |why: &str| GatewayError::config(format!("baseUrl '{base}' {why}"));
  let mut url = url::Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
  url
    .path_segments_mut()
    .map_err(|_| invalid("cannot take a path"))?
    .pop_if_empty()
    .extend(segments);
  if let Some(query) = query {
    let joined = match url.query() {
      Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
      _ => query.to_string(),
    };
    url.set_query(Some(&joined));
  }
  Ok(url.into())
}

/// JSON text for a tool call's arguments object, as OpenAI would send it.
pub fn arguments_text(value: &Value) -> String {
  match value {
    Value::Null => "{}".to_string(),
    other => other.to_string(),
  }
}

/// Parses the JSON text of tool arguments back into an object for vendors that want one.
pub fn arguments_value(arguments: &str) -> Result<Value> {
  if arguments.trim().is_empty() {
    return Ok(Value::Object(Default::default()));
  }
  serde_json::from_str(arguments).map_err(|e| {
    GatewayError::invalid_request(format!("tool call arguments are not valid JSON: {e}"))
  })
}

/// One streamed answer being decoded: bytes in, caller-facing events out. Pure, so the
/// gateway and the fixture tests drive exactly the same code.
pub struct StreamSession {
  framer: Framer,
  decoder: Box<dyn StreamDecoder>,
  assembler: StreamAssembler,
  frames: Vec<SseFrame>,
  done: bool,
}

impl StreamSession {
  pub fn new(decoder: Box<dyn StreamDecoder>) -> Self {
    let framer = match decoder.framing() {
      Framing::Sse => Framer::Sse(crate::sse::SseDecoder::new()),
      Framing::AwsEventStream => {
        Framer::AwsEventStream(crate::eventstream::EventStreamDecoder::new())
      }
    };
    StreamSession {
      framer,
      decoder,
      assembler: StreamAssembler::new(),
      frames: Vec::new(),
      done: false,
    }
  }

  /// Feeds the next bytes; returns the events they completed. Bytes after the
  /// vendor's end marker are ignored.
  pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<crate::types::StreamEvent>> {
    let mut events = Vec::new();
    self.push_into(bytes, &mut events)?;
    Ok(events)
  }

  /// [`Self::push`] appending to `events`: a reader that empties the same Vec after every
  /// read allocates none per chunk.
  pub fn push_into(
    &mut self,
    bytes: &[u8],
    events: &mut Vec<crate::types::StreamEvent>,
  ) -> Result<()> {
    if !self.done {
      let framing = self.framer.push(bytes, &mut self.frames);
      self.decode_after_framing(framing)?;
    }
    self.assembler.move_events_into(events);
    Ok(())
  }

  /// The vendor sent its end marker: nothing more needs to be read.
  pub fn is_done(&self) -> bool {
    self.done
  }

  /// The byte stream ended: the last events, and the whole answer (or why it is not whole).
  pub fn finish(mut self) -> Result<(Vec<crate::types::StreamEvent>, Completion)> {
    if !self.done {
      let framing = self.framer.finish(&mut self.frames);
      self.decode_after_framing(framing)?;
    }
    self.decoder.on_end(&mut self.assembler)?;
    let events = self.assembler.take_events();
    Ok((events, self.assembler.into_completion()))
  }

  /// Decodes the frames the SSE decoder completed before `framing` failed, if it did, and
  /// only then reports that failure, unless the end marker came first. So a read holding
  /// `[DONE]` and then a broken line ends the same as two reads split after `[DONE]`, and a
  /// bad frame before a broken line is the error, whatever the split (found by fuzzing).
  fn decode_after_framing(&mut self, framing: Result<()>) -> Result<()> {
    self.decode_frames()?;
    if self.done {
      return Ok(());
    }
    framing
  }

  fn decode_frames(&mut self) -> Result<()> {
    for frame in self.frames.drain(..) {
      if self.decoder.on_frame(frame, &mut self.assembler)? == StreamStep::Done {
        self.done = true;
        break;
      }
    }
    Ok(())
  }
}

/// Conversation turns for vendors that demand alternating roles (Anthropic, Gemini):
/// consecutive turns of one role are merged, empty turns dropped.
#[derive(Default)]
pub struct AlternatingTurns {
  turns: Vec<(&'static str, Vec<Value>)>,
}

impl AlternatingTurns {
  pub fn push(&mut self, role: &'static str, items: Vec<Value>) {
    if items.is_empty() {
      return;
    }
    match self.turns.last_mut() {
      Some((last_role, last_items)) if *last_role == role => last_items.extend(items),
      _ => self.turns.push((role, items)),
    }
  }

  /// `[{ "role": role, <items_key>: items }, …]`
  pub fn into_json(self, items_key: &str) -> Vec<Value> {
    self
      .turns
      .into_iter()
      .map(|(role, items)| {
        let mut turn = serde_json::Map::new();
        turn.insert("role".into(), Value::String(role.into()));
        turn.insert(items_key.into(), Value::Array(items));
        Value::Object(turn)
      })
      .collect()
  }
}

/// `data:image/png;base64,AAAA` → ("image/png", "AAAA").
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
  let rest = url.strip_prefix("data:")?;
  let (meta, data) = rest.split_once(',')?;
  let mime_type = meta.strip_suffix(";base64")?;
  Some((mime_type, data))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn openai_session() -> StreamSession {
    let adapter = openai::OpenAi {
      base_url: "http://127.0.0.1:9".into(),
      api_key: None,
      organization: None,
      headers: vec![],
    };
    StreamSession::new(adapter.stream_decoder(&ChatRequest::default()))
  }

  /// Outcome of `input` fed in the given pieces: the text, or the error message.
  fn outcome(pieces: &[&[u8]]) -> std::result::Result<String, String> {
    let mut session = openai_session();
    for piece in pieces {
      session.push(piece).map_err(|e| e.message)?;
    }
    let (_, completion) = session.finish().map_err(|e| e.message)?;
    Ok(completion.content)
  }

  #[test]
  fn what_follows_the_end_marker_never_matters_however_the_bytes_are_split() {
    let chunk =
      br#"data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;
    let done = [&chunk[..], b"\n\ndata: [DONE]\n\n"].concat();
    let broken_tail: &[u8] = b"data: \xff\n\n";
    let whole = [&done[..], broken_tail].concat();
    assert_eq!(outcome(&[&done, broken_tail]), Ok("hi".to_string()));
    assert_eq!(outcome(&[&whole]), Ok("hi".to_string()), "one read");
  }

  #[test]
  fn a_bad_frame_before_a_broken_line_is_the_error_however_the_bytes_are_split() {
    let bad_frame: &[u8] = b"data: {not json\n\n";
    let broken_line: &[u8] = b"data: \xff\n\n";
    let whole = [bad_frame, broken_line].concat();
    let split = outcome(&[bad_frame, broken_line]).expect_err("bad frame");
    assert!(split.contains("could not parse"), "{split}");
    assert_eq!(outcome(&[&whole]), Err(split), "one read");
  }

  #[test]
  fn urls_join_with_one_slash_and_keep_every_query() {
    assert_eq!(
      join_url("http://h/v1/", "/chat/completions"),
      "http://h/v1/chat/completions"
    );
    assert_eq!(
      join_url(
        "https://x/openai/deployments/d?api-version=2024-10-21",
        "chat/completions"
      ),
      "https://x/openai/deployments/d/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
      join_url(
        "http://h?k=1",
        "v1beta/models/m:streamGenerateContent?alt=sse"
      ),
      "http://h/v1beta/models/m:streamGenerateContent?k=1&alt=sse"
    );
  }
}
