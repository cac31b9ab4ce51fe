//! The guardrails stage in the pipeline. Input guardrails run first, before the cache, the
//! limiter and any upstream request, on the gateway's request and on the client's own body
//! (what a same-protocol target receives), so no path sends unguarded text. Output
//! guardrails sit between the call and its caller: every streamed event passes through
//! [`filter_stream`], and with them a same-protocol target's answer is decoded and re-encoded
//! rather than relayed byte for byte; the final answer passes [`Guardrails::check_output`].

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::forward::{EventSender, StreamItem};
use super::native::NativeCall;
use crate::error::{GatewayError, Result};
use crate::guardrails::{Findings, Guardrails, OutputStream};
use crate::tokens::encoding_for;
use crate::types::{ChatRequest, StreamEvent};

/// Events between the call and the output filter.
pub(super) const FILTER_CAPACITY: usize = 32;

/// The input guardrails on `req` and on the client's own body; tells a same-protocol target
/// what it may send and relay.
pub(super) async fn input(
  guardrails: &Guardrails,
  model: &str,
  req: &mut ChatRequest,
  native: Option<&NativeCall>,
  findings: &mut Findings,
) -> Result<()> {
  let mut body = native
    .filter(|_| guardrails.has_input())
    .map(|native| native.body.clone());
  let replaced = guardrails
    .check_input(
      &mut req.messages,
      body.as_mut(),
      |messages| encoding_for(model).count_messages(messages),
      findings,
    )
    .await?;
  if let Some(native) = native {
    native.guard(body, !guardrails.has_output(), replaced);
  }
  Ok(())
}

/// Passes the call's events to the caller through the output guardrails, holding back only
/// the text a match could still need. A `block` match stops the call (`stop`) and is
/// returned: the call then fails with it instead of its own end.
pub(super) async fn filter_stream(
  mut stream: OutputStream,
  mut events: mpsc::Receiver<StreamItem>,
  caller: EventSender,
  stop: CancellationToken,
) -> Option<GatewayError> {
  let blocked = |error: GatewayError| {
    stop.cancel();
    Some(error)
  };
  while let Some(item) = events.recv().await {
    let mut out = Vec::with_capacity(2);
    match item {
      Ok(StreamEvent::Text(piece)) => match stream.push(&piece) {
        Ok(text) if text.is_empty() => continue,
        Ok(text) => out.push(Ok(StreamEvent::Text(text))),
        Err(error) => return blocked(error),
      },
      // A tool call ends the text before it: what was held back goes first.
      Ok(call @ StreamEvent::ToolCall(_)) => {
        match stream.finish() {
          Ok(text) if text.is_empty() => {}
          Ok(text) => out.push(Ok(StreamEvent::Text(text))),
          Err(error) => return blocked(error),
        }
        out.push(Ok(call));
      }
      // Never sent with output guardrails (the native relay is off); refused, not passed.
      Ok(StreamEvent::Native(_)) => {
        return blocked(GatewayError::protocol(
          "internal error: vendor bytes reached the output guardrails",
        ))
      }
      other => out.push(other),
    }
    for item in out {
      if caller.send(item).await.is_err() {
        // The caller is gone: so is the call.
        stop.cancel();
        return None;
      }
    }
  }
  match stream.finish() {
    Ok(text) if !text.is_empty() => {
      let _ = caller.send(Ok(StreamEvent::Text(text))).await;
      None
    }
    Ok(_) => None,
    Err(error) => Some(error),
  }
}
