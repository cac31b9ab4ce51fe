//! AWS's binary `application/vnd.amazon.eventstream` framing (Bedrock's ConverseStream),
//! decoded incrementally into the same frames the SSE decoder yields, so one
//! [`crate::providers::StreamSession`] drives either.
//!
//! A message is `total length (u32) · headers length (u32) · prelude CRC32 · headers ·
//! payload · message CRC32`, big-endian; the prelude CRC covers the first 8 bytes, the
//! message CRC everything before it. Both are checked: a length is trusted only once the
//! prelude CRC vouches for it, so a corrupted length never makes us wait for (or buffer)
//! bytes that will not come.

use crate::error::{GatewayError, Result};
use crate::sse::SseFrame;

const PRELUDE_LEN: usize = 12;
const CRC_LEN: usize = 4;
const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + CRC_LEN;
/// AWS's limits: 16 MiB per message, 128 KiB of headers.
const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
const MAX_HEADERS_LEN: usize = 128 * 1024;

/// One decoded message's type, from its `:message-type` header and the header naming
/// what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
  /// `:message-type: event`, `:event-type: <name>`.
  Event(String),
  /// `:message-type: exception`, `:exception-type: <name>` (a modeled error).
  Exception(String),
  /// `:message-type: error`, `:error-code: <code>` (an unmodeled one).
  Error(String),
}

impl MessageKind {
  /// The frame's `event` field: `event:<name>`, `exception:<name>` or `error:<code>`.
  pub fn label(&self) -> String {
    match self {
      MessageKind::Event(name) => format!("event:{name}"),
      MessageKind::Exception(name) => format!("exception:{name}"),
      MessageKind::Error(code) => format!("error:{code}"),
    }
  }
}

#[derive(Debug, Default)]
pub struct EventStreamDecoder {
  buffer: Vec<u8>,
}

impl EventStreamDecoder {
  pub fn new() -> Self {
    Self::default()
  }

  /// Feeds bytes; every message they complete is appended to `out` as
  /// `SseFrame::Event { event: Some(label), data: payload }`.
  pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseFrame>) -> Result<()> {
    self.buffer.extend_from_slice(bytes);
    let mut start = 0;
    let result = loop {
      match next_message(&self.buffer[start..]) {
        Ok(Some((frame, used))) => {
          out.push(frame);
          start += used;
        }
        Ok(None) => break Ok(()),
        Err(error) => break Err(error),
      }
    };
    self.buffer.drain(..start);
    result
  }

  /// The stream ended: bytes left over are a message cut off.
  pub fn finish(&mut self, _out: &mut Vec<SseFrame>) -> Result<()> {
    if self.buffer.is_empty() {
      Ok(())
    } else {
      Err(GatewayError::protocol(format!(
        "event stream ended inside a message ({} bytes of it received)",
        self.buffer.len()
      )))
    }
  }
}

fn be_u32(bytes: &[u8]) -> u32 {
  u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn be_u16(bytes: &[u8]) -> usize {
  u16::from_be_bytes([bytes[0], bytes[1]]) as usize
}

fn malformed(why: impl std::fmt::Display) -> GatewayError {
  GatewayError::protocol(format!("event stream message is malformed: {why}"))
}

/// The first whole message in `bytes` and how many bytes it took; `None` when more are needed.
fn next_message(bytes: &[u8]) -> Result<Option<(SseFrame, usize)>> {
  if bytes.len() < PRELUDE_LEN {
    return Ok(None);
  }
  let prelude_crc = be_u32(&bytes[8..12]);
  if crc32fast::hash(&bytes[..8]) != prelude_crc {
    return Err(malformed("the prelude CRC does not match"));
  }
  let total = be_u32(&bytes[0..4]) as usize;
  let headers_len = be_u32(&bytes[4..8]) as usize;
  if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&total) {
    return Err(malformed(format!("a length of {total} bytes")));
  }
  if headers_len > MAX_HEADERS_LEN || headers_len > total - MIN_MESSAGE_LEN {
    return Err(malformed(format!("{headers_len} bytes of headers")));
  }
  if bytes.len() < total {
    return Ok(None);
  }
  let message_crc = be_u32(&bytes[total - CRC_LEN..total]);
  if crc32fast::hash(&bytes[..total - CRC_LEN]) != message_crc {
    return Err(malformed("the message CRC does not match"));
  }
  let headers = &bytes[PRELUDE_LEN..PRELUDE_LEN + headers_len];
  let payload = &bytes[PRELUDE_LEN + headers_len..total - CRC_LEN];
  let kind = message_kind(headers)?;
  let data = std::str::from_utf8(payload)
    .map_err(|_| malformed("the payload is not UTF-8"))?
    .to_string();
  let frame = SseFrame::Event {
    event: Some(kind.label()),
    data,
  };
  Ok(Some((frame, total)))
}

/// Reads the headers and returns what the message is. Every header is walked (so a
/// truncated one is an error) though only the string ones that name the message matter.
fn message_kind(mut headers: &[u8]) -> Result<MessageKind> {
  let mut message_type = None;
  let mut event_type = None;
  let mut exception_type = None;
  let mut error_code = None;
  let short = || malformed("a header is cut short");
  while !headers.is_empty() {
    let name_len = headers[0] as usize;
    let name = headers.get(1..1 + name_len).ok_or_else(short)?;
    let value_type = *headers.get(1 + name_len).ok_or_else(short)?;
    let rest = &headers[2 + name_len..];
    let (value, used) = match value_type {
      0 | 1 => (None, 0),
      2 => (None, 1),
      3 => (None, 2),
      4 => (None, 4),
      5 | 8 => (None, 8),
      9 => (None, 16),
      6 | 7 => {
        let len = be_u16(rest.get(..2).ok_or_else(short)?);
        let value = rest.get(2..2 + len).ok_or_else(short)?;
        (Some(value), 2 + len)
      }
      other => return Err(malformed(format!("unknown header value type {other}"))),
    };
    if rest.len() < used {
      return Err(short());
    }
    if value_type == 7 {
      let text = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string);
      match name {
        b":message-type" => message_type = text,
        b":event-type" => event_type = text,
        b":exception-type" => exception_type = text,
        b":error-code" => error_code = text,
        _ => {}
      }
    }
    headers = &rest[used..];
  }
  let missing = |header: &str| malformed(format!("no {header} header"));
  match message_type.as_deref() {
    Some("event") => Ok(MessageKind::Event(
      event_type.ok_or_else(|| missing(":event-type"))?,
    )),
    Some("exception") => Ok(MessageKind::Exception(
      exception_type.ok_or_else(|| missing(":exception-type"))?,
    )),
    Some("error") => Ok(MessageKind::Error(
      error_code.unwrap_or_else(|| "unknown".to_string()),
    )),
    Some(other) => Err(malformed(format!("message type '{other}'"))),
    None => Err(missing(":message-type")),
  }
}

/// Encodes one message with string headers: the test fakes' side of the framing.
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
  let mut header_bytes = Vec::new();
  for (name, value) in headers {
    header_bytes.push(name.len() as u8);
    header_bytes.extend_from_slice(name.as_bytes());
    header_bytes.push(7);
    header_bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
    header_bytes.extend_from_slice(value.as_bytes());
  }
  let total = (MIN_MESSAGE_LEN + header_bytes.len() + payload.len()) as u32;
  let mut message = Vec::with_capacity(total as usize);
  message.extend_from_slice(&total.to_be_bytes());
  message.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
  let prelude_crc = crc32fast::hash(&message);
  message.extend_from_slice(&prelude_crc.to_be_bytes());
  message.extend_from_slice(&header_bytes);
  message.extend_from_slice(payload);
  let message_crc = crc32fast::hash(&message);
  message.extend_from_slice(&message_crc.to_be_bytes());
  message
}

#[cfg(test)]
mod tests {
  use super::*;

  fn event(name: &str, payload: &str) -> Vec<u8> {
    encode(
      &[
        (":event-type", name),
        (":content-type", "application/json"),
        (":message-type", "event"),
      ],
      payload.as_bytes(),
    )
  }

  fn decode_in_pieces(bytes: &[u8], size: usize) -> Result<Vec<SseFrame>> {
    let mut decoder = EventStreamDecoder::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(size.max(1)) {
      decoder.push(piece, &mut frames)?;
    }
    decoder.finish(&mut frames)?;
    Ok(frames)
  }

  #[test]
  fn messages_decode_the_same_whatever_the_split() {
    let bytes = [
      event("messageStart", r#"{"role":"assistant"}"#),
      event(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"héllo"}}"#,
      ),
    ]
    .concat();
    let whole = decode_in_pieces(&bytes, bytes.len()).expect("whole");
    assert_eq!(
      whole[0],
      SseFrame::Event {
        event: Some("event:messageStart".into()),
        data: r#"{"role":"assistant"}"#.into()
      }
    );
    assert_eq!(whole.len(), 2);
    for size in 1..bytes.len() {
      assert_eq!(decode_in_pieces(&bytes, size).expect("split"), whole);
    }
  }

  #[test]
  fn exceptions_and_errors_are_labelled_by_their_type() {
    let exception = encode(
      &[
        (":exception-type", "throttlingException"),
        (":message-type", "exception"),
      ],
      br#"{"message":"slow down"}"#,
    );
    let frames = decode_in_pieces(&exception, 64).expect("decodes");
    assert_eq!(
      frames,
      vec![SseFrame::Event {
        event: Some("exception:throttlingException".into()),
        data: r#"{"message":"slow down"}"#.into()
      }]
    );
  }

  #[test]
  fn a_flipped_bit_anywhere_fails_the_crc_checks() {
    let message = event("messageStop", r#"{"stopReason":"end_turn"}"#);
    for at in 0..message.len() {
      let mut corrupted = message.clone();
      corrupted[at] ^= 0x01;
      let error = decode_in_pieces(&corrupted, 7).expect_err("corrupted");
      assert_eq!(error.code, crate::error::ErrorCode::ProviderError);
      assert!(
        error.message.contains("CRC"),
        "byte {at}: {}",
        error.message
      );
    }
  }

  #[test]
  fn a_message_cut_off_is_an_error_at_the_end() {
    let message = event("messageStop", "{}");
    let error = decode_in_pieces(&message[..message.len() - 1], 5).expect_err("cut");
    assert!(error.message.contains("ended inside a message"));
  }
}
