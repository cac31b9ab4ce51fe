//! Test aid, not part of ferrogate: runs byte streams through `ferrogate::sse::SseDecoder` for
//! `__test__/sse-differential.test.mjs`, which compares the frames with eventsource-parser's.
//! A Cargo example (built by the test) rather than a napi export, so the addon's public API
//! carries no test-only function.
//!
//! stdin: cases, each `u32 LE piece count`, then per piece `u32 LE length` and its bytes.
//! stdout: one JSON line per case: `{"pushed":[frame…],"finished":[frame…],"error":null|msg}`,
//! a frame being `{"event":name|null,"data":text}` or `{"stray":text}`. `pushed` holds the
//! frames completed while the pieces were fed, `finished` those `finish()` added; on an error,
//! the frames completed before it and the error's message.

use std::io::{Read, Write};

use ferrogate::sse::{SseDecoder, SseFrame};
use serde_json::{json, Value};

fn frame_json(frame: &SseFrame) -> Value {
  match frame {
    SseFrame::Event { event, data } => json!({ "event": event, "data": data }),
    SseFrame::Stray(text) => json!({ "stray": text }),
  }
}

fn take_u32(input: &mut &[u8]) -> Option<usize> {
  let (head, rest) = input.split_first_chunk::<4>()?;
  *input = rest;
  Some(u32::from_le_bytes(*head) as usize)
}

fn decode(pieces: &[&[u8]]) -> Value {
  let mut decoder = SseDecoder::new();
  let mut pushed = Vec::new();
  for piece in pieces {
    if let Err(error) = decoder.push(piece, &mut pushed) {
      let frames: Vec<Value> = pushed.iter().map(frame_json).collect();
      return json!({ "pushed": frames, "finished": [], "error": error.message });
    }
  }
  let mut finished = Vec::new();
  let error = decoder.finish(&mut finished).err().map(|e| e.message);
  json!({
    "pushed": pushed.iter().map(frame_json).collect::<Vec<_>>(),
    "finished": finished.iter().map(frame_json).collect::<Vec<_>>(),
    "error": error,
  })
}

fn main() -> std::io::Result<()> {
  let mut all = Vec::new();
  std::io::stdin().read_to_end(&mut all)?;
  let mut input = all.as_slice();
  let mut out = std::io::BufWriter::new(std::io::stdout().lock());
  while let Some(count) = take_u32(&mut input) {
    let mut pieces = Vec::with_capacity(count);
    for _ in 0..count {
      let len = take_u32(&mut input).ok_or(std::io::ErrorKind::UnexpectedEof)?;
      let (piece, rest) = input
        .split_at_checked(len)
        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
      pieces.push(piece);
      input = rest;
    }
    serde_json::to_writer(&mut out, &decode(&pieces))?;
    out.write_all(b"\n")?;
  }
  out.flush()
}
