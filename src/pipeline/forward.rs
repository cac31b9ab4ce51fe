//! Delivering events to the caller, and the delivered mark that forbids retries: once
//! any event reached the caller, a retry would repeat it.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::error::{GatewayError, Result};
use crate::types::{Completion, StreamEvent, ToolCall};

/// Where streamed events go; `None` for a plain chat call. Items are `Result`s so that
/// whoever runs the call can end the same channel with its failure.
pub type EventSender = mpsc::Sender<StreamItem>;
/// An event or the failure that ends the stream. The error is boxed: a `GatewayError` is
/// 120 bytes, and every slot of a channel is as wide as its widest item (tokio allocates
/// 32 slots at a time), while a failure comes at most once per stream.
pub type StreamItem = std::result::Result<StreamEvent, Box<GatewayError>>;
pub type EventSink = Option<EventSender>;

/// When the first event reached the caller, and what was delivered: a call that ends
/// early is billed for the text it delivered.
#[derive(Default)]
pub(crate) struct Progress {
  first_event_at: OnceLock<Instant>,
  delivered: Mutex<String>,
}

impl Progress {
  fn mark_delivered(&self, event: &StreamEvent) {
    if self.first_event_at.get().is_none() {
      let _ = self.first_event_at.set(Instant::now());
    }
    let (name, piece) = match event {
      StreamEvent::Text(text) => (None, text),
      StreamEvent::ToolCall(call) => (call.name.as_deref(), &call.arguments_delta),
      StreamEvent::Done(_) | StreamEvent::Native(_) => return,
    };
    let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
    delivered.push_str(name.unwrap_or_default());
    delivered.push_str(piece);
  }

  /// The text and tool-call text delivered so far.
  pub fn delivered_text(&self) -> String {
    self
      .delivered
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .clone()
  }

  /// Text the caller received in a relayed native stream: billed like delivered events.
  fn note_text(&self, event: &StreamEvent) {
    let (name, piece) = match event {
      StreamEvent::Text(text) => (None, text),
      StreamEvent::ToolCall(call) => (call.name.as_deref(), &call.arguments_delta),
      StreamEvent::Done(_) | StreamEvent::Native(_) => return,
    };
    let mut delivered = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
    delivered.push_str(name.unwrap_or_default());
    delivered.push_str(piece);
  }

  pub fn delivered(&self) -> bool {
    self.first_event_at.get().is_some()
  }

  pub fn first_event_at(&self) -> Option<Instant> {
    self.first_event_at.get().copied()
  }
}

/// Decoded events of a stream whose bytes were relayed natively: counted as delivered
/// (billing) without being sent.
pub(crate) fn note_delivered(progress: &Progress, events: &[StreamEvent]) {
  for event in events {
    progress.note_text(event);
  }
}

/// Sends queued events; the bounded channel makes a slow consumer slow the upstream read
/// instead of growing memory.
pub(crate) async fn forward(
  events: impl IntoIterator<Item = StreamEvent>,
  sink: &EventSender,
  progress: &Progress,
) -> Result<()> {
  for event in events {
    send(sink, event, progress).await?;
  }
  Ok(())
}

pub(crate) async fn send(
  sink: &EventSender,
  event: StreamEvent,
  progress: &Progress,
) -> Result<()> {
  progress.mark_delivered(&event);
  sink
    .send(Ok(event))
    .await
    .map_err(|_| GatewayError::aborted())
}

/// A whole completion as events: its text in one piece, then its tool calls.
pub(crate) async fn forward_whole(
  completion: &Completion,
  sink: &EventSender,
  progress: &Progress,
) -> Result<()> {
  if !completion.content.is_empty() {
    send(
      sink,
      StreamEvent::Text(completion.content.clone()),
      progress,
    )
    .await?;
  }
  forward_tool_calls(&completion.tool_calls, sink, progress).await
}

/// Whole tool calls as one event each (vendors and the mock that do not stream them).
pub(crate) async fn forward_tool_calls(
  calls: &[ToolCall],
  sink: &EventSender,
  progress: &Progress,
) -> Result<()> {
  for (index, call) in calls.iter().enumerate() {
    let event = StreamEvent::tool_call(
      index as u32,
      Some(call.id.clone()),
      Some(call.name.clone()),
      call.arguments.clone(),
    );
    send(sink, event, progress).await?;
  }
  Ok(())
}
