//! ConverseStream: event-stream messages `messageStart`, `contentBlockStart`,
//! `contentBlockDelta`, `contentBlockStop`, `messageStop`, then `metadata` (usage). An
//! `exception` message is the vendor's error, classified as the same error over HTTP.

use std::collections::HashMap;

use serde::Deserialize;

use super::wire::WireUsage;
use super::{apply_exception, finish_reason, JSON_TOOL_NAME};
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  in_band_error, parse_json_str, ErrorBody, Framing, StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;
use crate::types::FinishReason;

enum BlockKind {
  Tool,
  /// The forced JSON-output tool: its input is the answer's text.
  JsonOutput,
}

pub struct BedrockStream {
  model: String,
  json_mode: bool,
  /// Tool-use blocks by `contentBlockIndex`; a delta for any other index is text.
  blocks: HashMap<u32, BlockKind>,
  stop_reason: Option<String>,
}

impl BedrockStream {
  pub fn new(model: &str, json_mode: bool) -> Self {
    BedrockStream {
      model: model.to_string(),
      json_mode,
      blocks: HashMap::new(),
      stop_reason: None,
    }
  }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
  #[serde(default)]
  content_block_index: u32,
  start: Option<StartBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody {
  tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
  tool_use_id: Option<String>,
  name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
  #[serde(default)]
  content_block_index: u32,
  delta: Option<DeltaBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody {
  text: Option<String>,
  tool_use: Option<ToolUseDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
  #[serde(default)]
  input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
  stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
  usage: Option<WireUsage>,
}

impl StreamDecoder for BedrockStream {
  fn framing(&self) -> Framing {
    Framing::AwsEventStream
  }

  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep> {
    let (label, data) = match frame {
      SseFrame::Event {
        event: Some(label),
        data,
      } => (label, data),
      _ => {
        return Err(GatewayError::protocol(
          "bedrock stream sent an unlabelled frame",
        ))
      }
    };
    let (message_type, name) = label.split_once(':').unwrap_or(("event", label.as_str()));
    if message_type != "event" {
      return Err(stream_exception(name, &data));
    }
    match name {
      "messageStart" => out.set_identity("", &self.model),
      "contentBlockStart" => {
        let start: BlockStart = parse_json_str("bedrock", &data)?;
        let Some(tool) = start.start.and_then(|s| s.tool_use) else {
          return Ok(StreamStep::Continue);
        };
        let index = start.content_block_index;
        if self.json_mode && tool.name.as_deref() == Some(JSON_TOOL_NAME) {
          self.blocks.insert(index, BlockKind::JsonOutput);
        } else {
          out.tool_call_delta(index, tool.tool_use_id.as_deref(), tool.name.as_deref(), "");
          self.blocks.insert(index, BlockKind::Tool);
        }
      }
      "contentBlockDelta" => {
        let delta: BlockDelta = parse_json_str("bedrock", &data)?;
        let index = delta.content_block_index;
        let Some(delta) = delta.delta else {
          return Ok(StreamStep::Continue);
        };
        match (self.blocks.get(&index), delta.text, delta.tool_use) {
          (None, Some(text), _) => out.text(&text),
          (Some(BlockKind::Tool), _, Some(tool)) => {
            out.tool_call_delta(index, None, None, &tool.input)
          }
          (Some(BlockKind::JsonOutput), _, Some(tool)) => out.text(&tool.input),
          // Reasoning and citations are not part of the answer.
          _ => {}
        }
      }
      "messageStop" => {
        let stop: MessageStop = parse_json_str("bedrock", &data)?;
        let raw = stop.stop_reason.unwrap_or_else(|| "end_turn".to_string());
        let mut reason = finish_reason(&raw);
        if reason == FinishReason::ToolCalls && !out.has_tool_calls() {
          reason = FinishReason::Stop;
        }
        out.finish(reason);
        self.stop_reason = Some(raw);
      }
      "metadata" => {
        let metadata: Metadata = parse_json_str("bedrock", &data)?;
        if let Some(usage) = metadata.usage {
          out.set_usage(usage.normalize());
        }
        // Metadata is the last event; it follows messageStop.
        if self.stop_reason.is_some() {
          return Ok(StreamStep::Done);
        }
      }
      _ => {}
    }
    Ok(StreamStep::Continue)
  }

  fn on_end(&mut self, _out: &mut StreamAssembler) -> Result<()> {
    if self.stop_reason.is_some() {
      Ok(())
    } else {
      Err(GatewayError::protocol(
        "bedrock stream ended before messageStop",
      ))
    }
  }
}

/// An `exception` (or `error`) message: the payload's message, classified by the
/// exception's name as the same exception over HTTP is.
fn stream_exception(name: &str, data: &str) -> GatewayError {
  let parsed = ErrorBody::parse(data.as_bytes()).or_else(|| {
    Some(ErrorBody {
      message: Some(format!("{name} without a message")),
      ..ErrorBody::default()
    })
  });
  let mut error = in_band_error("bedrock", parsed, data.as_bytes());
  error.message = format!("{} ({name})", error.message);
  apply_exception(&mut error, name);
  error
}
