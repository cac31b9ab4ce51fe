//! Incremental Server-Sent Events decoder (WHATWG rules) that yields the same frames for
//! every split of the byte stream: lines are cut on raw bytes (`\n`, `\r`, `\r\n`, all
//! ASCII, so a multi-byte UTF-8 character is never cut) and decoded only once whole.

use crate::error::{GatewayError, Result};

/// One event (its data lines, stray text and the line being read, together) larger than
/// this means a broken or hostile upstream; refusing it keeps memory bounded however the
/// bytes are spread over lines.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseFrame {
  Event {
    /// The `event:` field; `None` means the default type, "message".
    event: Option<String>,
    data: String,
  },
  /// Lines that are not SSE fields at all, joined with `\n`. Some vendors (Gemini) write a
  /// bare JSON error object into the stream this way; a strict parser would drop it.
  Stray(String),
}

#[derive(Debug, Default)]
pub struct SseDecoder {
  line: Vec<u8>,
  /// The previous chunk ended in `\r`: a `\n` opening the next chunk belongs to it.
  pending_cr: bool,
  event: Option<String>,
  data: String,
  has_data: bool,
  stray: String,
  /// The first line was read: a byte order mark can only open that one.
  past_first_line: bool,
}

impl SseDecoder {
  pub fn new() -> Self {
    Self::default()
  }

  /// Feeds bytes; complete frames are appended to `out`.
  pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<SseFrame>) -> Result<()> {
    // An empty read says nothing about whether a `\n` follows the pending `\r`.
    if self.pending_cr && !bytes.is_empty() {
      self.pending_cr = false;
      if let Some((&b'\n', rest)) = bytes.split_first() {
        bytes = rest;
      }
    }
    while let Some(pos) = memchr::memchr2(b'\n', b'\r', bytes) {
      self.extend_line(&bytes[..pos])?;
      let terminator = bytes[pos];
      bytes = &bytes[pos + 1..];
      if terminator == b'\r' {
        match bytes.first() {
          Some(b'\n') => bytes = &bytes[1..],
          None => self.pending_cr = true,
          Some(_) => {}
        }
      }
      // Taken and put back so the line buffer's capacity is reused for every line.
      let mut line = std::mem::take(&mut self.line);
      self.process_line(&line, out)?;
      line.clear();
      self.line = line;
    }
    self.extend_line(bytes)
  }

  /// The stream ended: a trailing line without terminator still counts (vendors do end
  /// on a bare `data: …`), an unterminated event is dispatched, stray text is flushed.
  pub fn finish(&mut self, out: &mut Vec<SseFrame>) -> Result<()> {
    if !self.line.is_empty() {
      let line = std::mem::take(&mut self.line);
      self.process_line(&line, out)?;
    }
    self.dispatch(out);
    self.flush_stray(out);
    Ok(())
  }

  fn extend_line(&mut self, bytes: &[u8]) -> Result<()> {
    self.check_event_size(bytes.len())?;
    self.line.extend_from_slice(bytes);
    Ok(())
  }

  /// Fails when the event being read would grow past [`MAX_EVENT_BYTES`] with `more` bytes.
  fn check_event_size(&self, more: usize) -> Result<()> {
    let event_name = self.event.as_ref().map_or(0, String::len);
    let held = self.line.len() + self.data.len() + self.stray.len() + event_name;
    if held + more > MAX_EVENT_BYTES {
      return Err(GatewayError::protocol(format!(
        "stream event larger than {} MiB",
        MAX_EVENT_BYTES / (1024 * 1024)
      )));
    }
    Ok(())
  }

  fn process_line(&mut self, mut raw: &[u8], out: &mut Vec<SseFrame>) -> Result<()> {
    // "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
    // Stripped from the first whole line, so a BOM cut across reads is still found.
    if !self.past_first_line {
      self.past_first_line = true;
      raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    }
    let line = std::str::from_utf8(raw)
      .map_err(|e| GatewayError::protocol(format!("stream is not valid UTF-8: {e}")))?;
    if line.is_empty() {
      self.dispatch(out);
      self.flush_stray(out);
      return Ok(());
    }
    if line.starts_with(':') {
      return Ok(());
    }
    let (field, value) = match line.find(':') {
      Some(i) => {
        let value = &line[i + 1..];
        (&line[..i], value.strip_prefix(' ').unwrap_or(value))
      }
      None => (line, ""),
    };
    match field {
      "data" => {
        self.flush_stray(out);
        if self.has_data {
          self.data.push('\n');
        }
        self.data.push_str(value);
        self.has_data = true;
      }
      "event" => {
        self.flush_stray(out);
        self.event = Some(value.to_string());
      }
      "id" | "retry" => {}
      _ => {
        if !self.stray.is_empty() {
          self.stray.push('\n');
        }
        self.stray.push_str(line);
      }
    }
    Ok(())
  }

  fn dispatch(&mut self, out: &mut Vec<SseFrame>) {
    let event = self.event.take();
    if self.has_data {
      self.has_data = false;
      out.push(SseFrame::Event {
        event,
        data: std::mem::take(&mut self.data),
      });
    }
  }

  fn flush_stray(&mut self, out: &mut Vec<SseFrame>) {
    if !self.stray.is_empty() {
      out.push(SseFrame::Stray(std::mem::take(&mut self.stray)));
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn decode_split(input: &[u8], splits: &[usize]) -> Result<Vec<SseFrame>> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &at in splits {
      decoder.push(&input[start..at], &mut out)?;
      start = at;
    }
    decoder.push(&input[start..], &mut out)?;
    decoder.finish(&mut out)?;
    Ok(out)
  }

  fn data(event: Option<&str>, data: &str) -> SseFrame {
    SseFrame::Event {
      event: event.map(str::to_string),
      data: data.to_string(),
    }
  }

  #[test]
  fn every_two_way_split_gives_the_same_frames() {
    let input = "event: a\r\ndata: h\u{e9}llo \u{1F4E6}\r\n\r\n: keep-alive\n\ndata:x\rdata:y\r\rdata: [DONE]\n\n"
      .as_bytes();
    let whole = decode_split(input, &[]).expect("whole");
    assert_eq!(
      whole,
      vec![
        data(Some("a"), "h\u{e9}llo \u{1F4E6}"),
        data(None, "x\ny"),
        data(None, "[DONE]")
      ]
    );
    for at in 0..=input.len() {
      assert_eq!(
        decode_split(input, &[at]).expect("split"),
        whole,
        "split at {at}"
      );
    }
    let every_byte: Vec<usize> = (1..input.len()).collect();
    assert_eq!(decode_split(input, &every_byte).expect("bytes"), whole);
    // A read may be empty (between a `\r` and its `\n` too): it changes nothing.
    for at in 0..=input.len() {
      assert_eq!(
        decode_split(input, &[at, at]).expect("empty piece"),
        whole,
        "empty piece at {at}"
      );
    }
  }

  #[test]
  fn one_event_is_bounded_however_it_is_spread() {
    let mib = "x".repeat(1024 * 1024);
    let many_data_lines: String = (0..17).map(|_| format!("data: {mib}\n")).collect();
    let many_stray_lines: String = (0..17).map(|_| format!("{mib}\n")).collect();
    let one_long_line = format!("data: {}", "x".repeat(MAX_EVENT_BYTES + 1));
    for input in [many_data_lines, many_stray_lines, one_long_line] {
      let mut decoder = SseDecoder::new();
      let mut out = Vec::new();
      let result = input
        .as_bytes()
        .chunks(64 * 1024)
        .try_for_each(|piece| decoder.push(piece, &mut out));
      let error = result.expect_err("bounded");
      assert_eq!(error.code, crate::error::ErrorCode::ProviderError);
      assert!(error.message.contains("16 MiB"), "{}", error.message);
    }
    // Many events of the same total size are fine: the bound is per event.
    let many_events: String = (0..17).map(|_| format!("data: {mib}\n\n")).collect();
    assert_eq!(
      decode_split(many_events.as_bytes(), &[])
        .expect("events")
        .len(),
      17
    );
  }

  #[test]
  fn one_leading_byte_order_mark_is_ignored_however_it_is_split() {
    let input = "\u{FEFF}data: a\n\n\u{FEFF}data: b\n\n".as_bytes();
    // Only the leading one: the second opens an unknown field, as the spec says.
    let expected = vec![
      data(None, "a"),
      SseFrame::Stray("\u{FEFF}data: b".to_string()),
    ];
    for at in 0..=input.len() {
      assert_eq!(
        decode_split(input, &[at]).expect("frames"),
        expected,
        "split at {at}"
      );
    }
    let bom_only = decode_split(b"\xEF\xBB\xBF\r\ndata: c", &[1, 2]).expect("frames");
    assert_eq!(bom_only, vec![data(None, "c")]);
    // Not at the start of the stream: part of the line.
    let later = decode_split("\n\u{FEFF}data: d\n\n".as_bytes(), &[]).expect("frames");
    assert_eq!(later, vec![SseFrame::Stray("\u{FEFF}data: d".to_string())]);
  }

  #[test]
  fn invalid_utf8_is_an_error_not_a_replacement() {
    let err = decode_split(b"data: \xff\xfe\n\n", &[]).expect_err("invalid");
    assert_eq!(err.code, crate::error::ErrorCode::ProviderError);
    assert!(err.message.contains("UTF-8"));
  }

  #[test]
  fn bare_json_lines_become_a_stray_frame() {
    let input = b"data: {\"a\":1}\r\n\r\n{\n  \"error\": {\"code\": 499}\n}\n";
    let frames = decode_split(input, &[]).expect("frames");
    assert_eq!(frames[0], data(None, "{\"a\":1}"));
    assert_eq!(
      frames[1],
      SseFrame::Stray("{\n  \"error\": {\"code\": 499}\n}".to_string())
    );
  }

  #[test]
  fn event_without_data_is_not_dispatched_and_unterminated_tail_is() {
    let frames = decode_split(b"event: ping\n\ndata: tail", &[]).expect("frames");
    assert_eq!(frames, vec![data(None, "tail")]);
  }
}
