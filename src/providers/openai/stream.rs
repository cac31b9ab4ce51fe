//! `data: {chunk}` … `data: [DONE]`. Only choice 0 reaches the caller (we never ask for
//! n > 1); usage arrives in a last chunk whose `choices` is empty.

use std::borrow::Cow;

use serde::Deserialize;

use super::finish_reason;
use super::wire::WireUsage;
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  in_band_error, parse_json_str, stray_line, ErrorBody, StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;

#[derive(Default)]
pub struct OpenAiStream {
  done: bool,
}

// Strings borrow from the event's text where they need no unescaping: a chunk's id, model
// and delta text would otherwise be three allocations per chunk.
#[derive(Deserialize)]
struct Chunk<'a> {
  #[serde(default, borrow)]
  id: Cow<'a, str>,
  #[serde(default, borrow)]
  model: Cow<'a, str>,
  #[serde(default, borrow)]
  choices: Vec<ChunkChoice<'a>>,
  usage: Option<WireUsage>,
  error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
  #[serde(default)]
  index: u32,
  #[serde(borrow)]
  delta: Option<Delta<'a>>,
  #[serde(borrow)]
  finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
  #[serde(borrow)]
  content: Option<Cow<'a, str>>,
  #[serde(borrow)]
  refusal: Option<Cow<'a, str>>,
  #[serde(default, borrow)]
  tool_calls: Vec<ToolCallDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
  #[serde(default)]
  index: u32,
  #[serde(borrow)]
  id: Option<Cow<'a, str>>,
  #[serde(borrow)]
  function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
  #[serde(borrow)]
  name: Option<Cow<'a, str>>,
  #[serde(borrow)]
  arguments: Option<Cow<'a, str>>,
}

impl StreamDecoder for OpenAiStream {
  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep> {
    let data = match frame {
      SseFrame::Event { data, .. } => data,
      SseFrame::Stray(text) => return Err(stray_line("openai", &text)),
    };
    if data.trim() == "[DONE]" {
      self.done = true;
      return Ok(StreamStep::Done);
    }
    let chunk: Chunk = parse_json_str("openai", &data)?;
    // vLLM, LiteLLM and other compatible servers report failures as a chunk `{"error": …}`.
    if chunk.error.is_some() {
      return Err(in_band_error(
        "openai",
        ErrorBody::parse(data.as_bytes()),
        data.as_bytes(),
      ));
    }
    out.set_identity(&chunk.id, &chunk.model);
    for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
      if let Some(delta) = choice.delta {
        if let Some(text) = delta.content.as_deref() {
          out.text(text);
        }
        if let Some(refusal) = delta.refusal.as_deref() {
          out.refusal(refusal);
        }
        for call in delta.tool_calls {
          let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
          };
          out.tool_call_delta(
            call.index,
            call.id.as_deref(),
            name.as_deref(),
            arguments.as_deref().unwrap_or(""),
          );
        }
      }
      if let Some(reason) = choice.finish_reason.as_deref() {
        out.finish(finish_reason(reason));
      }
    }
    if let Some(usage) = chunk.usage {
      out.set_usage(usage.normalize());
    }
    Ok(StreamStep::Continue)
  }

  fn on_end(&mut self, out: &mut StreamAssembler) -> Result<()> {
    // Some compatible servers omit `[DONE]`; a finish reason proves the answer is whole.
    if self.done || out.finish_reason().is_some() {
      Ok(())
    } else {
      Err(GatewayError::protocol(
        "openai stream ended before the answer was complete",
      ))
    }
  }
}
