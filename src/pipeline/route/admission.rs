//! The admission queue: calls waiting for a slot when every target of a route is at its
//! `maxConcurrent`. Highest priority first, first come first served within a priority.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Slot;
use crate::error::Result;

pub(super) type Grant = oneshot::Sender<Result<Slot>>;

pub(super) struct Waiter {
  pub priority: i32,
  pub seq: u64,
  /// Targets this call must not be given (those it already failed on).
  pub excluded: Vec<bool>,
  pub stream: bool,
  pub cancel: CancellationToken,
  pub grant: Grant,
}

impl PartialEq for Waiter {
  fn eq(&self, other: &Self) -> bool {
    self.cmp(other) == Ordering::Equal
  }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
  fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
    Some(self.cmp(other))
  }
}

impl Ord for Waiter {
  /// The heap's maximum is served first: higher priority, then the earlier arrival.
  fn cmp(&self, other: &Self) -> Ordering {
    self
      .priority
      .cmp(&other.priority)
      .then_with(|| other.seq.cmp(&self.seq))
  }
}

#[derive(Default)]
pub(super) struct AdmissionQueue {
  heap: BinaryHeap<Waiter>,
  next_seq: u64,
}

impl AdmissionQueue {
  pub fn len(&self) -> usize {
    self.heap.len()
  }

  pub fn is_empty(&self) -> bool {
    self.heap.is_empty()
  }

  pub fn push(
    &mut self,
    priority: i32,
    excluded: Vec<bool>,
    stream: bool,
    cancel: CancellationToken,
  ) -> (u64, oneshot::Receiver<Result<Slot>>) {
    let (grant, receiver) = oneshot::channel();
    let seq = self.next_seq;
    self.next_seq += 1;
    self.heap.push(Waiter {
      priority,
      seq,
      excluded,
      stream,
      cancel,
      grant,
    });
    (seq, receiver)
  }

  pub fn peek(&self) -> Option<&Waiter> {
    self.heap.peek()
  }

  pub fn pop(&mut self) -> Option<Waiter> {
    self.heap.pop()
  }

  /// A waiter that gave up (deadline, caller abort) leaves the queue at once, so it
  /// neither holds a place nor counts toward the bound.
  pub fn remove(&mut self, seq: u64) {
    self.heap.retain(|waiter| waiter.seq != seq);
  }
}
