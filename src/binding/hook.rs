//! `onCall` delivery: records cross to the JS thread through a weak, non-blocking
//! threadsafe function with a bounded queue, so a slow hook never holds a call up (a
//! full queue drops the record and counts it) and never keeps the process alive.

use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;

use super::convert;
use super::types::CallRecord;
use crate::pipeline::{self, CallObserver};

/// Records waiting for the JS thread before new ones are dropped.
const QUEUE: usize = 4096;

type HookFunction = ThreadsafeFunction<CallRecord, (), CallRecord, Status, false, true, QUEUE>;

pub struct JsHook {
  function: HookFunction,
}

impl JsHook {
  pub fn new(function: Function<'_, CallRecord, ()>) -> napi::Result<Self> {
    let function = function
      .build_threadsafe_function()
      .callee_handled::<false>()
      .weak::<true>()
      .max_queue_size::<QUEUE>()
      .build()?;
    Ok(JsHook { function })
  }
}

impl CallObserver for JsHook {
  fn on_call(&self, record: pipeline::CallRecord) -> bool {
    let status = self.function.call(
      convert::call_record(record),
      ThreadsafeFunctionCallMode::NonBlocking,
    );
    status == Status::Ok
  }
}
