//! Delivering events to the caller, and the delivered mark that forbids retries: once
//! any event reached the caller, a retry would repeat it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures_util::FutureExt;
use std::future::Future;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::{GatewayError, Result};
use crate::types::{Completion, StreamEvent, ToolCall};

/// Where streamed events go; `None` for a plain chat call.
#[derive(Clone)]
pub enum EventSender {
  /// A bounded channel, read by a task of its own (the front door's encoder, the output
  /// guardrails' filter). Items are `Result`s so that whoever runs the call can end the same
  /// channel with its failure.
  Channel(mpsc::Sender<StreamItem>),
  /// A consumer that takes each event as it is sent (the binding's pump): no channel and no
  /// second task between the call and it, so a stream held open holds neither.
  Direct(Arc<Consumer>),
}

/// An event or the failure that ends the stream. The error is boxed: a `GatewayError` is
/// 120 bytes, and every slot of a channel is as wide as its widest item (tokio allocates
/// 32 slots at a time), while a failure comes at most once per stream.
pub type StreamItem = std::result::Result<StreamEvent, Box<GatewayError>>;
pub type EventSink = Option<EventSender>;

impl From<mpsc::Sender<StreamItem>> for EventSender {
  fn from(sender: mpsc::Sender<StreamItem>) -> Self {
    EventSender::Channel(sender)
  }
}

/// The consumer stopped taking events: the call was cancelled, or the stream ended.
#[derive(Debug)]
pub struct Closed;

/// A consumer fed directly by the call, paced by credits: each event takes one, and while
/// there is none the call waits (a slow consumer slows the upstream read instead of growing
/// memory). The consumer hands credits back as it consumes. `deliver` comes last, unsized,
/// so that an `Arc<Consumer>` holds it without a box of its own.
pub struct Consumer<Deliver: ?Sized = dyn Fn(StreamEvent) + Send + Sync> {
  credits: Arc<Semaphore>,
  /// The call's own token: a call cancelled while it waits for a credit stops waiting.
  cancel: CancellationToken,
  /// Once closed, every later send fails too, as a channel's would once its reader left.
  closed: AtomicBool,
  deliver: Deliver,
}

impl<Deliver: Fn(StreamEvent) + Send + Sync> Consumer<Deliver> {
  pub fn new(credits: Arc<Semaphore>, cancel: CancellationToken, deliver: Deliver) -> Self {
    Consumer {
      credits,
      cancel,
      closed: AtomicBool::new(false),
      deliver,
    }
  }
}

impl Consumer {
  fn close(&self) -> Closed {
    self.closed.store(true, Ordering::Relaxed);
    Closed
  }

  fn try_take_credit(&self) -> bool {
    self
      .credits
      .try_acquire()
      .map(|permit| permit.forget())
      .is_ok()
  }

  /// Waits for a credit; false when the call was cancelled first or the credits closed.
  async fn wait_for_credit(&self) -> bool {
    tokio::select! {
      biased;
      () = self.cancel.cancelled() => false,
      permit = self.credits.acquire() => match permit {
        Ok(permit) => {
          permit.forget();
          true
        }
        Err(_) => false,
      },
    }
  }
}

impl EventSender {
  /// Written as one function rather than one per kind: each level of `async fn` keeps its own
  /// copy of the event in the future of every stage that sends.
  pub async fn send(&self, item: StreamItem) -> std::result::Result<(), Closed> {
    let consumer = match self {
      EventSender::Channel(sender) => return sender.send(item).await.map_err(|_| Closed),
      EventSender::Direct(consumer) => consumer,
    };
    if consumer.closed.load(Ordering::Relaxed) {
      return Err(Closed);
    }
    // A failure ends the stream: the call's own end is delivered by whoever runs it.
    let Ok(event) = item else {
      return Err(consumer.close());
    };
    if !consumer.try_take_credit() && !consumer.wait_for_credit().await {
      return Err(consumer.close());
    }
    (consumer.deliver)(event);
    Ok(())
  }
}

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

/// A plain function returning the sender's future, not an `async fn` around it, so that a
/// stage awaiting it holds one copy of the event, not two.
pub(crate) fn send<'a>(
  sink: &'a EventSender,
  event: StreamEvent,
  progress: &Progress,
) -> impl Future<Output = Result<()>> + Send + 'a {
  progress.mark_delivered(&event);
  sink
    .send(Ok(event))
    .map(|sent| sent.map_err(|Closed| GatewayError::aborted()))
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

#[cfg(test)]
mod tests {
  use std::sync::{Arc, Mutex};
  use std::time::Duration;

  use tokio::sync::Semaphore;
  use tokio_util::sync::CancellationToken;

  use super::{Consumer, EventSender};
  use crate::error::GatewayError;
  use crate::types::StreamEvent;

  fn direct(
    credits: usize,
  ) -> (
    EventSender,
    Arc<Semaphore>,
    CancellationToken,
    Arc<Mutex<Vec<String>>>,
  ) {
    let credits = Arc::new(Semaphore::new(credits));
    let cancel = CancellationToken::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    let consumer = Consumer::new(credits.clone(), cancel.clone(), move |event| {
      if let StreamEvent::Text(text) = event {
        into.lock().expect("seen").push(text);
      }
    });
    (
      EventSender::Direct(Arc::new(consumer)),
      credits,
      cancel,
      seen,
    )
  }

  fn text(piece: &str) -> super::StreamItem {
    Ok(StreamEvent::Text(piece.into()))
  }

  #[tokio::test]
  async fn a_direct_consumer_takes_an_event_per_credit_and_waits_for_more() {
    let (sender, credits, _cancel, seen) = direct(1);
    sender.send(text("a")).await.expect("a credit was there");
    let waiting = tokio::spawn({
      let sender = sender.clone();
      async move { sender.send(text("b")).await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(*seen.lock().expect("seen"), ["a"], "no credit, no delivery");
    credits.add_permits(1);
    assert!(waiting.await.expect("send"));
    assert_eq!(*seen.lock().expect("seen"), ["a", "b"]);
  }

  #[tokio::test]
  async fn a_call_cancelled_while_waiting_for_a_credit_stops_and_sends_nothing_more() {
    let (sender, credits, cancel, seen) = direct(0);
    let waiting = tokio::spawn({
      let sender = sender.clone();
      async move { sender.send(text("a")).await.is_ok() }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    cancel.cancel();
    assert!(!waiting.await.expect("send"), "the wait ends with the call");
    credits.add_permits(5);
    assert!(sender.send(text("b")).await.is_err(), "closed for good");
    assert!(seen.lock().expect("seen").is_empty());
  }

  #[tokio::test]
  async fn a_failure_sent_directly_closes_the_stream() {
    let (sender, _credits, _cancel, seen) = direct(5);
    let failure = Err(Box::new(GatewayError::aborted()));
    assert!(sender.send(failure).await.is_err());
    assert!(sender.send(text("late")).await.is_err());
    assert!(seen.lock().expect("seen").is_empty());
  }
}
