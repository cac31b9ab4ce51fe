//! Builds one normalized completion out of a vendor's stream deltas and queues the
//! caller-facing events. Every provider's stream decoder feeds this one assembler, so
//! tool-call assembly and the final response shape are written once.

use crate::types::{Completion, FinishReason, StreamEvent, ToolCall, Usage};

#[derive(Debug, Default)]
pub struct StreamAssembler {
  pub id: String,
  pub model: String,
  content: String,
  refusal: Option<String>,
  /// (vendor index, call) in the order calls first appeared.
  tool_calls: Vec<(u32, ToolCall)>,
  finish_reason: Option<FinishReason>,
  usage: Option<Usage>,
  events: Vec<StreamEvent>,
}

impl StreamAssembler {
  pub fn new() -> Self {
    Self::default()
  }

  pub fn set_identity(&mut self, id: &str, model: &str) {
    if self.id.is_empty() && !id.is_empty() {
      self.id = id.to_string();
    }
    if self.model.is_empty() && !model.is_empty() {
      self.model = model.to_string();
    }
  }

  pub fn text(&mut self, text: &str) {
    if text.is_empty() {
      return;
    }
    self.content.push_str(text);
    self.events.push(StreamEvent::Text(text.to_string()));
  }

  pub fn refusal(&mut self, text: &str) {
    self.refusal.get_or_insert_with(String::new).push_str(text);
  }

  /// A fragment of the tool call the vendor numbers `vendor_index`. The first fragment
  /// usually carries id and name; later ones only argument text.
  pub fn tool_call_delta(
    &mut self,
    vendor_index: u32,
    id: Option<&str>,
    name: Option<&str>,
    arguments_delta: &str,
  ) {
    let position = match self.tool_calls.iter().position(|(i, _)| *i == vendor_index) {
      Some(position) => position,
      None => {
        self.tool_calls.push((vendor_index, ToolCall::default()));
        self.tool_calls.len() - 1
      }
    };
    let call = &mut self.tool_calls[position].1;
    let id = id.filter(|id| !id.is_empty());
    let name = name.filter(|name| !name.is_empty());
    if let Some(id) = id {
      call.id = id.to_string();
    }
    if let Some(name) = name {
      call.name.push_str(name);
    }
    call.arguments.push_str(arguments_delta);
    self.events.push(StreamEvent::tool_call(
      position as u32,
      id.map(str::to_string),
      name.map(str::to_string),
      arguments_delta.to_string(),
    ));
  }

  /// The opaque signature (Gemini's `thoughtSignature`) of the call the vendor numbers
  /// `vendor_index`; it travels with the call and goes back to the vendor with it.
  pub fn tool_call_signature(&mut self, vendor_index: u32, signature: &str) {
    if let Some((_, call)) = self.tool_calls.iter_mut().find(|(i, _)| *i == vendor_index) {
      call.thought_signature = Some(signature.to_string());
    }
  }

  pub fn finish(&mut self, reason: FinishReason) {
    self.finish_reason = Some(reason);
  }

  pub fn finish_reason(&self) -> Option<FinishReason> {
    self.finish_reason
  }

  pub fn set_usage(&mut self, usage: Usage) {
    self.usage = Some(usage);
  }

  pub fn has_tool_calls(&self) -> bool {
    !self.tool_calls.is_empty()
  }

  pub fn take_events(&mut self) -> Vec<StreamEvent> {
    std::mem::take(&mut self.events)
  }

  /// The queued events appended to `out`; both Vecs keep their capacity.
  pub fn move_events_into(&mut self, out: &mut Vec<StreamEvent>) {
    out.append(&mut self.events);
  }

  /// The completed call. Calls the vendor left without an id get a generated one, since
  /// callers must echo it back in the tool result.
  pub fn into_completion(self) -> Completion {
    let tool_calls = self
      .tool_calls
      .into_iter()
      .map(|(_, mut call)| {
        if call.id.is_empty() {
          call.id = generated_call_id();
        }
        call
      })
      .collect();
    Completion {
      id: self.id,
      model: self.model,
      content: self.content,
      refusal: self.refusal,
      tool_calls,
      finish_reason: self.finish_reason.unwrap_or(FinishReason::Stop),
      usage: self.usage,
      embeddings: None,
    }
  }
}

pub fn generated_call_id() -> String {
  format!("call_{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn interleaved_tool_call_fragments_assemble_per_index() {
    let mut assembler = StreamAssembler::new();
    assembler.tool_call_delta(0, Some("a"), Some("first"), "");
    assembler.tool_call_delta(1, Some("b"), Some("second"), "{\"x\"");
    assembler.tool_call_delta(0, None, None, "{\"y\":");
    assembler.tool_call_delta(1, None, None, ":1}");
    assembler.tool_call_delta(0, None, None, "2}");
    let completion = assembler.into_completion();
    assert_eq!(completion.tool_calls[0].arguments, "{\"y\":2}");
    assert_eq!(completion.tool_calls[1].arguments, "{\"x\":1}");
    assert_eq!(completion.tool_calls[1].name, "second");
  }
}
