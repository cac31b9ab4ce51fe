//! `event: <type>` + `data: {"type": <type>, …}` from `message_start` to `message_stop`.

use std::collections::HashMap;

use serde::Deserialize;

use super::wire::WireUsage;
use super::{finish_reason, JSON_TOOL_NAME};
use crate::assembler::StreamAssembler;
use crate::error::{GatewayError, Result};
use crate::providers::{
  in_band_error, parse_json_str, stray_line, ErrorBody, StreamDecoder, StreamStep,
};
use crate::sse::SseFrame;
use crate::types::FinishReason;

enum BlockKind {
  Text,
  Tool,
  /// The forced JSON-output tool: its input is the answer's text.
  JsonOutput,
  Ignored,
}

pub struct AnthropicStream {
  json_mode: bool,
  blocks: HashMap<u32, BlockKind>,
  usage: WireUsage,
  stopped: bool,
}

impl AnthropicStream {
  pub fn new(json_mode: bool) -> Self {
    AnthropicStream {
      json_mode,
      blocks: HashMap::new(),
      usage: WireUsage::default(),
      stopped: false,
    }
  }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
  MessageStart {
    message: StartMessage,
  },
  ContentBlockStart {
    index: u32,
    content_block: StartBlock,
  },
  ContentBlockDelta {
    index: u32,
    delta: Delta,
  },
  ContentBlockStop {},
  MessageDelta {
    delta: MessageDelta,
    usage: Option<WireUsage>,
  },
  MessageStop {},
  Ping {},
  Error {},
  #[serde(other)]
  Unknown,
}

#[derive(Deserialize)]
struct StartMessage {
  #[serde(default)]
  id: String,
  #[serde(default)]
  model: String,
  usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct StartBlock {
  #[serde(rename = "type")]
  kind: String,
  id: Option<String>,
  name: Option<String>,
  text: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
  #[serde(rename = "text_delta")]
  Text { text: String },
  #[serde(rename = "input_json_delta")]
  InputJson { partial_json: String },
  #[serde(other)]
  Other,
}

#[derive(Deserialize)]
struct MessageDelta {
  stop_reason: Option<String>,
}

impl StreamDecoder for AnthropicStream {
  fn on_frame(&mut self, frame: SseFrame, out: &mut StreamAssembler) -> Result<StreamStep> {
    let data = match frame {
      SseFrame::Event { data, .. } => data,
      SseFrame::Stray(text) => return Err(stray_line("anthropic", &text)),
    };
    let event: Event = parse_json_str("anthropic", &data)?;
    match event {
      Event::MessageStart { message } => {
        out.set_identity(&message.id, &message.model);
        if let Some(usage) = message.usage {
          self.usage.merge(usage);
          out.set_usage(self.usage.normalize());
        }
      }
      Event::ContentBlockStart {
        index,
        content_block,
      } => {
        let kind = match content_block.kind.as_str() {
          "text" => {
            out.text(content_block.text.as_deref().unwrap_or(""));
            BlockKind::Text
          }
          "tool_use" if self.json_mode && content_block.name.as_deref() == Some(JSON_TOOL_NAME) => {
            BlockKind::JsonOutput
          }
          "tool_use" => {
            out.tool_call_delta(
              index,
              content_block.id.as_deref(),
              content_block.name.as_deref(),
              "",
            );
            BlockKind::Tool
          }
          _ => BlockKind::Ignored,
        };
        self.blocks.insert(index, kind);
      }
      Event::ContentBlockDelta { index, delta } => match (self.blocks.get(&index), delta) {
        (Some(BlockKind::Text), Delta::Text { text }) => out.text(&text),
        (Some(BlockKind::Tool), Delta::InputJson { partial_json }) => {
          out.tool_call_delta(index, None, None, &partial_json)
        }
        (Some(BlockKind::JsonOutput), Delta::InputJson { partial_json }) => out.text(&partial_json),
        _ => {}
      },
      Event::MessageDelta { delta, usage } => {
        if let Some(reason) = delta.stop_reason.as_deref() {
          let mut reason = finish_reason(reason);
          if reason == FinishReason::ToolCalls && !out.has_tool_calls() {
            reason = FinishReason::Stop;
          }
          out.finish(reason);
        }
        if let Some(usage) = usage {
          self.usage.merge(usage);
          out.set_usage(self.usage.normalize());
        }
      }
      Event::MessageStop {} => {
        self.stopped = true;
        return Ok(StreamStep::Done);
      }
      Event::Error {} => {
        return Err(in_band_error(
          "anthropic",
          ErrorBody::parse(data.as_bytes()),
          data.as_bytes(),
        ));
      }
      Event::ContentBlockStop {} | Event::Ping {} | Event::Unknown => {}
    }
    Ok(StreamStep::Continue)
  }

  fn on_end(&mut self, _out: &mut StreamAssembler) -> Result<()> {
    if self.stopped {
      Ok(())
    } else {
      Err(GatewayError::protocol(
        "anthropic stream ended before message_stop",
      ))
    }
  }
}
