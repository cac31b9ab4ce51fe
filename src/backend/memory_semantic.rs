//! The embedded semantic cache store: answers by entry in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::{self, BoxFuture, FutureExt};

use super::{SemanticEntry, SemanticStore};
use crate::error::Result;
use crate::types::ChatResponse;

#[derive(Default)]
pub struct MemorySemanticStore {
  answers: Mutex<HashMap<u64, Arc<ChatResponse>>>,
}

impl MemorySemanticStore {
  fn answers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ChatResponse>>> {
    self
      .answers
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }
}

impl SemanticStore for MemorySemanticStore {
  fn answer(&self, entry: u64) -> BoxFuture<'_, Result<Option<Arc<ChatResponse>>>> {
    future::ready(Ok(self.answers().get(&entry).cloned())).boxed()
  }

  fn save(&self, entry: SemanticEntry) -> BoxFuture<'_, Result<()>> {
    self.answers().insert(entry.id, entry.answer);
    future::ready(Ok(())).boxed()
  }

  fn forget(&self, entries: &[u64]) {
    let mut answers = self.answers();
    for entry in entries {
      answers.remove(entry);
    }
  }
}
