//! `data: {GenerateContentResponse}\r\n\r\n` chunks, no terminator: the stream is whole
//! when a finish reason (or a prompt block) arrived. Usage: the last report wins.

use super::finish_reason;
use super::wire::GenerateResponse;
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  arguments_text, in_band_error, parse_json_str, stray_line, ErrorBody, StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;
use crate::types::{FinishReason, Usage};

#[derive(Default)]
pub struct GeminiStream {
  /// Gemini sends each function call whole; this numbers them for the caller.
  next_tool_index: u32,
}

impl StreamDecoder for GeminiStream {
  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep> {
    let data = match frame {
      SseFrame::Event { data, .. } => data,
      // Gemini writes a mid-stream failure as a bare, multi-line JSON error object.
      SseFrame::Stray(text) => return Err(stray_line("gemini", &text)),
    };
    let chunk: GenerateResponse = parse_json_str("gemini", &data)?;
    if chunk.error.is_some() {
      return Err(in_band_error(
        "gemini",
        ErrorBody::parse(data.as_bytes()),
        data.as_bytes(),
      ));
    }
    apply_chunk(out, chunk, &mut self.next_tool_index);
    Ok(StreamStep::Continue)
  }

  fn on_end(&mut self, out: &mut StreamAssembler) -> Result<()> {
    settle_finish(out, "gemini stream ended before a finish reason")
  }
}

/// One response (whole, or one stream chunk) into the assembler.
pub fn apply_chunk(out: &mut StreamAssembler, chunk: GenerateResponse, next_tool_index: &mut u32) {
  out.set_identity(
    chunk.response_id.as_deref().unwrap_or(""),
    chunk.model_version.as_deref().unwrap_or(""),
  );
  if let Some(candidate) = chunk.candidates.into_iter().find(|c| c.index == 0) {
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
      if let Some(call) = part.function_call {
        out.tool_call_delta(
          *next_tool_index,
          call.id.as_deref(),
          Some(&call.name),
          &arguments_text(&call.args),
        );
        if let Some(signature) = part.thought_signature.as_deref() {
          out.tool_call_signature(*next_tool_index, signature);
        }
        *next_tool_index += 1;
      } else if let Some(text) = part.text.as_deref() {
        // Thought summaries are not part of the answer.
        if !part.thought {
          out.text(text);
        }
      }
    }
    if let Some(reason) = candidate.finish_reason.as_deref() {
      out.finish(finish_reason(reason));
    }
  } else if chunk
    .prompt_feedback
    .and_then(|feedback| feedback.block_reason)
    .is_some()
  {
    out.finish(FinishReason::ContentFilter);
  }
  if let Some(metadata) = chunk.usage_metadata {
    let prompt = metadata.prompt_token_count.unwrap_or(0);
    // Thinking is billed as output, as OpenAI's reasoning tokens are.
    let thoughts = metadata.thoughts_token_count.unwrap_or(0);
    let completion = metadata
      .candidates_token_count
      .unwrap_or(0)
      .saturating_add(thoughts);
    let mut usage = Usage::new(prompt, completion);
    usage.reasoning_tokens = thoughts;
    usage.cached_prompt_tokens = metadata.cached_content_token_count.unwrap_or(0);
    if metadata.prompt_token_count.is_some() || metadata.candidates_token_count.is_some() {
      out.set_usage(usage);
    }
  }
}

/// The answer is whole only with a finish reason (or a prompt block); Gemini has no
/// tool-call finish reason: STOP with a function call means tool_calls.
pub fn settle_finish(out: &mut StreamAssembler, unfinished: &str) -> Result<()> {
  match out.finish_reason() {
    None => Err(GatewayError::protocol(unfinished)),
    Some(FinishReason::Stop) if out.has_tool_calls() => {
      out.finish(FinishReason::ToolCalls);
      Ok(())
    }
    Some(_) => Ok(()),
  }
}
