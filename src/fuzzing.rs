//! The checks the fuzz targets in `fuzz/` run, kept here so `cargo test --lib` replays every
//! committed corpus file (`fuzz/corpus/<target>/`) through exactly the same code on stable
//! Rust. Each check panics when an invariant breaks; libFuzzer reports that panic as a crash.
//!
//! Invariants, beyond "no panic":
//! - split-invariance: the bytes decoded in one piece, one byte at a time (inputs up to
//!   512 bytes; many pseudo-random cuts above), and in pieces cut at a few pseudo-random
//!   points (empty pieces included) give the same frames / events / error;
//! - well-formed output: no line terminator inside a frame, stream events that add up to
//!   the completion, tool-call indices in order of first appearance;
//! - bounded output: what the SSE decoder yields is never larger than what came in, and a
//!   vendor decoder's answer is at most a few times the size of its input;
//! - request parsers: the same answer twice, and a refusal is always INVALID_REQUEST (400).
//!
//! Compiled only for tests and for the `fuzzing` feature, which only `fuzz/` turns on.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crate::error::{ErrorCode, GatewayError, Result};
use crate::providers::anthropic::Anthropic;
use crate::providers::bedrock::{Auth, Bedrock};
use crate::providers::gemini::Gemini;
use crate::providers::openai::OpenAi;
use crate::providers::{Adapter, StreamSession};
use crate::sse::{SseDecoder, SseFrame};
use crate::types::{ChatRequest, Completion, StreamEvent};

/// Inputs up to this size are also decoded one byte at a time (every boundary a cut); longer
/// ones are cut at many pseudo-random points instead, which keeps a run at ~10k executions a
/// second on a shared machine.
const BYTEWISE_UP_TO: usize = 512;

/// Piece boundaries for `len` bytes, chosen from `input` itself so a replayed corpus file is
/// cut exactly as the fuzzer cut it. At most `max_cuts`; sorted, may repeat (an empty
/// piece), all in `0..=len`. `salt` gives another set of cuts for the same input.
fn pseudo_random_splits(input: &[u8], len: usize, max_cuts: usize, salt: u64) -> Vec<usize> {
  // FNV-1a: cheap, and any change to the input moves the cuts.
  let seed = input
    .iter()
    .fold(0xcbf2_9ce4_8422_2325u64 ^ salt, |hash, &byte| {
      (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
  let mut rng = fastrand::Rng::with_seed(seed);
  let count = rng.usize(0..=len.min(max_cuts));
  let mut splits: Vec<usize> = (0..count).map(|_| rng.usize(0..=len)).collect();
  splits.sort_unstable();
  splits
}

/// The ways `input` is cut besides whole: a few pseudo-random cuts, and every byte boundary
/// (short inputs) or many pseudo-random cuts (long ones).
fn cuts(input: &[u8]) -> [Vec<usize>; 2] {
  let len = input.len();
  let fine = if len <= BYTEWISE_UP_TO {
    (1..len).collect()
  } else {
    pseudo_random_splits(input, len, len / 8, 1)
  };
  [pseudo_random_splits(input, len, 16, 0), fine]
}

/// `input` cut at `splits` into consecutive pieces (the last runs to the end).
fn pieces<'a>(input: &'a [u8], splits: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
  let ends = splits.iter().copied().chain(std::iter::once(input.len()));
  let mut start = 0;
  ends.map(move |end| {
    let piece = &input[start..end];
    start = end;
    piece
  })
}

/// An error as compared across splits: its code and its message.
fn error_key(error: &GatewayError) -> (ErrorCode, String) {
  (error.code, error.message.clone())
}

fn decode_sse<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> Result<Vec<SseFrame>> {
  let mut decoder = SseDecoder::new();
  let mut frames = Vec::new();
  for piece in pieces {
    decoder.push(piece, &mut frames)?;
  }
  decoder.finish(&mut frames)?;
  Ok(frames)
}

/// The SSE decoder: same frames (or the same error) for every way of cutting `input`;
/// frames hold no line terminator and are no larger than the input.
pub fn check_sse_decoder(input: &[u8]) {
  let whole = decode_sse(std::iter::once(input)).map_err(|e| error_key(&e));
  for splits in cuts(input) {
    let split = decode_sse(pieces(input, &splits)).map_err(|e| error_key(&e));
    assert_eq!(whole, split, "cut at {splits:?} differs from whole");
  }
  match whole {
    Ok(frames) => {
      let mut decoded = 0;
      for frame in &frames {
        match frame {
          SseFrame::Event { event, data } => {
            if let Some(event) = event {
              assert!(!event.contains(['\r', '\n']), "event name {event:?}");
              decoded += event.len();
            }
            assert!(!data.contains('\r'), "data {data:?}");
            decoded += data.len();
          }
          SseFrame::Stray(text) => {
            assert!(!text.is_empty(), "empty stray frame");
            assert!(!text.contains('\r'), "stray {text:?}");
            decoded += text.len();
          }
        }
      }
      assert!(
        decoded <= input.len(),
        "{decoded} bytes out of {}",
        input.len()
      );
    }
    Err((code, message)) => {
      assert_eq!(code, ErrorCode::ProviderError, "{message}");
      assert!(!message.is_empty());
    }
  }
}

/// The vendors whose stream decoders are fuzzed through [`StreamSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
  OpenAi,
  Anthropic,
  Gemini,
  /// ConverseStream: AWS's binary event-stream framing, not SSE.
  Bedrock,
}

fn adapter(vendor: Vendor) -> Box<dyn Adapter> {
  let base_url = "http://127.0.0.1:9".to_string();
  match vendor {
    Vendor::OpenAi => Box::new(OpenAi {
      base_url,
      api_key: None,
      organization: None,
      headers: vec![],
    }),
    Vendor::Anthropic => Box::new(Anthropic {
      base_url,
      api_key: None,
      headers: vec![],
    }),
    Vendor::Gemini => Box::new(Gemini {
      base_url,
      api_key: None,
      headers: vec![],
    }),
    Vendor::Bedrock => Box::new(Bedrock {
      base_url,
      auth: Auth::ApiKey(crate::secret::Secret::new("fuzz".into())),
      headers: vec![],
    }),
  }
}

type Decoded = std::result::Result<(Vec<StreamEvent>, Completion), (ErrorCode, String)>;

fn decode_stream<'a>(adapter: &dyn Adapter, pieces: impl Iterator<Item = &'a [u8]>) -> Decoded {
  let request = ChatRequest {
    model: "fuzz".into(),
    ..ChatRequest::default()
  };
  let mut session = StreamSession::new(adapter.stream_decoder(&request));
  let mut events = Vec::new();
  for piece in pieces {
    session
      .push_into(piece, &mut events)
      .map_err(|e| error_key(&e))?;
  }
  let (tail, mut completion) = session.finish().map_err(|e| error_key(&e))?;
  events.extend(tail);
  // Ids the assembler generated for calls the vendor left without one are random.
  for call in &mut completion.tool_calls {
    if is_generated_call_id(&call.id) {
      call.id = "call_<generated>".into();
    }
  }
  Ok((events, completion))
}

fn is_generated_call_id(id: &str) -> bool {
  id.strip_prefix("call_")
    .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One vendor's stream decoder behind [`StreamSession`]: the same events and completion
/// (or the same error) for every way of cutting `input`, events that add up to the
/// completion, and nothing decoded larger than the input.
pub fn check_stream(vendor: Vendor, input: &[u8]) {
  let adapter = adapter(vendor);
  let whole = decode_stream(adapter.as_ref(), std::iter::once(input));
  for splits in cuts(input) {
    let split = decode_stream(adapter.as_ref(), pieces(input, &splits));
    assert_eq!(whole, split, "cut at {splits:?} differs from whole");
  }
  match whole {
    Ok((events, completion)) => check_events(input.len(), &events, &completion),
    Err((code, message)) => assert!(!message.is_empty(), "{code:?} without a message"),
  }
}

/// The events a caller saw are the completion, piece by piece.
fn check_events(input_len: usize, events: &[StreamEvent], completion: &Completion) {
  let mut text = String::new();
  let mut calls: Vec<(String, String)> = Vec::new();
  for event in events {
    match event {
      StreamEvent::Text(piece) => {
        assert!(!piece.is_empty(), "empty text event");
        text.push_str(piece);
      }
      StreamEvent::ToolCall(call) => {
        let (index, name, arguments_delta) =
          (call.index as usize, &call.name, &call.arguments_delta);
        assert!(index <= calls.len(), "tool call index {index} skips one");
        if index == calls.len() {
          calls.push((String::new(), String::new()));
        }
        calls[index].0.push_str(name.as_deref().unwrap_or(""));
        calls[index].1.push_str(arguments_delta);
      }
      StreamEvent::Done(_) => panic!("a decoder emitted Done; the pipeline adds it"),
      StreamEvent::Native(_) => {
        panic!("a decoder emitted a relayed chunk; only the native relay does")
      }
    }
  }
  assert_eq!(text, completion.content, "text events vs completion");
  assert_eq!(calls.len(), completion.tool_calls.len(), "tool calls");
  for ((name, arguments), call) in calls.iter().zip(&completion.tool_calls) {
    assert_eq!(name, &call.name, "tool call name");
    assert_eq!(arguments, &call.arguments, "tool call arguments");
    assert!(!call.id.is_empty(), "tool call without id");
  }
  let decoded = completion.content.len()
    + completion.refusal.as_ref().map_or(0, String::len)
    + completion
      .tool_calls
      .iter()
      .map(|call| call.name.len() + call.arguments.len())
      .sum::<usize>();
  // Linear, not equal: Gemini's arguments object is re-serialized, and a number such as
  // `9e15` comes back as `9000000000000000.0`.
  assert!(
    decoded <= 8 * input_len + 64,
    "{decoded} bytes out of {input_len}"
  );
}

/// A client request parser (serve's today, each ingress codec's as it lands): the same
/// answer when asked twice, and a refusal is always INVALID_REQUEST with status 400 and a
/// message. `parse` maps the codec's result to something comparable.
pub fn check_request_parser<T: PartialEq + Debug>(body: &[u8], parse: impl Fn(&[u8]) -> Result<T>) {
  let first = parse(body).map_err(|e| (e.code, e.status, e.message));
  let second = parse(body).map_err(|e| (e.code, e.status, e.message));
  assert_eq!(first, second, "the same body parsed twice differs");
  if let Err((code, status, message)) = first {
    assert_eq!(code, ErrorCode::InvalidRequest, "{message}");
    assert_eq!(status, 400, "{message}");
    assert!(!message.is_empty());
  }
}

/// What a front-door codec's parse gives that two parses of the same body must agree on.
fn parsed_view(
  parsed: crate::ingress::Parsed,
) -> (String, crate::types::ChatRequest, bool, Vec<String>) {
  (
    parsed.model,
    parsed.request,
    parsed.stream,
    parsed.native_only,
  )
}

/// OpenAI Chat Completions request parsing (the front door's, for gatewayRouter and serve).
pub fn check_chat_completions_request(body: &[u8]) {
  let headers = crate::ingress::Headers::new(&[]);
  check_request_parser(body, |b| {
    crate::ingress::chat_completions::parse(b, headers).map(parsed_view)
  })
}

/// Anthropic Messages request parsing.
pub fn check_messages_request(body: &[u8]) {
  let headers = crate::ingress::Headers::new(&[]);
  check_request_parser(body, |b| {
    crate::ingress::messages::parse(b, headers).map(parsed_view)
  })
}

/// OpenAI Responses request parsing.
pub fn check_responses_request(body: &[u8]) {
  let headers = crate::ingress::Headers::new(&[]);
  check_request_parser(body, |b| {
    crate::ingress::responses::parse(b, headers).map(parsed_view)
  })
}

/// OpenAI Embeddings request parsing: an error is a 400 reply, the same for the same body.
pub fn check_embeddings_request(body: &[u8]) {
  let parse =
    |b: &[u8]| crate::ingress::embeddings::parse(b).map_err(|reply| (reply.status, reply.body));
  let (first, second) = (parse(body), parse(body));
  assert_eq!(first, second, "the same body parsed twice differs");
  if let Err((status, reply)) = first {
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&reply));
  }
}

/// The committed seed corpus of one target, `fuzz/corpus/<target>/`, read at test time.
pub fn corpus_files(target: &str) -> Vec<PathBuf> {
  let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
    .join("fuzz/corpus")
    .join(target);
  let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    .map(|entry| entry.map(|e| e.path()))
    .collect::<std::io::Result<_>>()
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
  files.sort();
  files
}

#[cfg(test)]
mod tests {
  use super::*;

  /// A fuzz target's name in `fuzz/fuzz_targets/` and `fuzz/corpus/`, and the check it runs.
  type Target = (&'static str, fn(&[u8]));

  /// Every fuzz target. A new one adds its line here (the test below fails until it does).
  fn targets() -> Vec<Target> {
    vec![
      ("sse_decoder", check_sse_decoder),
      ("stream_openai", |input| check_stream(Vendor::OpenAi, input)),
      ("stream_anthropic", |input| {
        check_stream(Vendor::Anthropic, input)
      }),
      ("stream_gemini", |input| check_stream(Vendor::Gemini, input)),
      ("stream_bedrock", |input| {
        check_stream(Vendor::Bedrock, input)
      }),
      ("serve_parse_request", check_chat_completions_request),
      ("ingress_messages", check_messages_request),
      ("ingress_responses", check_responses_request),
      ("ingress_embeddings", check_embeddings_request),
    ]
  }

  #[test]
  fn every_committed_corpus_file_passes_its_targets_check() {
    let targets = targets();
    let corpus_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut on_disk: Vec<String> = std::fs::read_dir(&corpus_root)
      .expect("fuzz/corpus")
      .map(|entry| {
        entry
          .expect("entry")
          .file_name()
          .to_string_lossy()
          .into_owned()
      })
      .collect();
    on_disk.sort();
    let mut known: Vec<String> = targets.iter().map(|(name, _)| name.to_string()).collect();
    known.sort();
    assert_eq!(
      on_disk, known,
      "every corpus directory needs its check in targets()"
    );
    for (name, check) in targets {
      let files = corpus_files(name);
      assert!(files.len() >= 5, "{name}: only {} seed files", files.len());
      for file in files {
        let input = std::fs::read(&file).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(
          outcome.is_ok(),
          "{name}: {} fails its check",
          file.display()
        );
      }
    }
  }

  #[test]
  fn pieces_cover_the_input_in_order() {
    let input = b"data: abc\n\n";
    let splits = [0, 3, 3, 11];
    let joined: Vec<u8> = pieces(input, &splits).flatten().copied().collect();
    assert_eq!(joined, input);
    assert_eq!(pieces(input, &splits).count(), 5);
    let chosen = pseudo_random_splits(input, input.len(), 16, 0);
    assert!(chosen.windows(2).all(|w| w[0] <= w[1]));
    assert!(chosen.iter().all(|&at| at <= input.len()));
    assert_eq!(
      chosen,
      pseudo_random_splits(input, input.len(), 16, 0),
      "reproducible"
    );
    let [_, every_byte] = cuts(input);
    assert_eq!(every_byte, (1..input.len()).collect::<Vec<_>>());
  }
}
