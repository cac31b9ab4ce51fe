//! What one call in flight holds, for `bench/concurrent-streams.mjs`'s breakdown of the
//! memory per open stream. A measurement, not a check: run it with
//! `cargo test --lib --release what_a_call_in_flight_holds -- --ignored --nocapture`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::pipeline::{CallOptions, Gateway, GatewayConfig, ProviderConfig};
use crate::types::{ChatRequest, Message, Role, StreamEvent};

#[test]
#[ignore = "a measurement: prints sizes"]
fn what_a_call_in_flight_holds() {
  let gateway = Gateway::new(GatewayConfig {
    providers: vec![ProviderConfig::mock(Duration::ZERO)],
    ..GatewayConfig::default()
  })
  .expect("gateway");
  let (sender, _receiver) = tokio::sync::mpsc::channel(1);
  let request = ChatRequest {
    messages: vec![Message::text(Role::User, "hello")],
    ..ChatRequest::default()
  };
  let pipeline = gateway.execute_billed(
    "mock/demo",
    request,
    CallOptions::default(),
    Some(sender),
    CancellationToken::new(),
    "fg_size",
  );
  let event = std::mem::size_of::<Result<StreamEvent>>();
  println!(
    "pipeline future (execute_billed, boxed once per call): {} bytes",
    std::mem::size_of_val(&pipeline)
  );
  // tokio's mpsc allocates its first block of 32 slots when the channel is made.
  println!(
    "stream event in a channel: {event} bytes; a channel's first block: {} bytes",
    event * 32
  );
  println!(
    "ChatResponse: {} bytes",
    std::mem::size_of::<crate::types::ChatResponse>()
  );
}
