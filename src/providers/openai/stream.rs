//! `data: {chunk}` … `data: [DONE]`. Only choice 0 reaches the caller (we never ask for
//! n > 1); usage arrives in a last chunk whose `choices` is empty.

use serde::Deserialize;

use super::finish_reason;
use super::wire::WireUsage;
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  in_band_error, parse_json, stray_line, ErrorBody, StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;

#[derive(Default)]
pub struct OpenAiStream {
  done: bool,
}

#[derive(Deserialize)]
struct Chunk {
  #[serde(default)]
  id: String,
  #[serde(default)]
  model: String,
  #[serde(default)]
  choices: Vec<ChunkChoice>,
  usage: Option<WireUsage>,
  error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
  #[serde(default)]
  index: u32,
  delta: Option<Delta>,
  finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
  content: Option<String>,
  refusal: Option<String>,
  #[serde(default)]
  tool_calls: Vec<ToolCallDelta>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
  #[serde(default)]
  index: u32,
  id: Option<String>,
  function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
  name: Option<String>,
  arguments: Option<String>,
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
    let chunk: Chunk = parse_json("openai", data.as_bytes())?;
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
