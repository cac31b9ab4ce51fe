//! Token counts with OpenAI's tiktoken encodings: exact for OpenAI models, a documented
//! estimate (o200k_base) for everything else. Used when a vendor sends no usage and by
//! `countTokens`.

use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer};
use tiktoken_rs::CoreBPE;

use crate::types::{ContentPart, Message, Role};

/// OpenAI cookbook framing: every message costs 3 tokens, the reply is primed with 3 more.
const TOKENS_PER_MESSAGE: usize = 3;
const REPLY_PRIMING: usize = 3;
const TOKENS_PER_TOOL_CALL: usize = 1;
/// Text this long takes milliseconds to count: long enough to hold up every other call's
/// I/O on the runtime's worker (there is one by default), so it is counted off the worker.
const LONG_COUNT_BYTES: usize = 64 * 1024;
/// A low-detail image costs a flat 85 tokens at OpenAI; high detail depends on the pixel
/// size we do not decode, so this is the floor, and counts with images are estimates.
const TOKENS_PER_IMAGE: usize = 85;

pub struct Encoding {
  bpe: &'static CoreBPE,
  /// True when this is the model's own tokenizer (OpenAI models).
  pub exact: bool,
}

/// Picks the encoding for a bare or "provider/model" name.
pub fn encoding_for(model: &str) -> Encoding {
  let bare = model.rsplit('/').next().unwrap_or(model);
  match get_tokenizer(bare) {
    Some(tokenizer) => Encoding {
      bpe: bpe_for(tokenizer),
      exact: true,
    },
    None => Encoding {
      bpe: tiktoken_rs::o200k_base_singleton(),
      exact: false,
    },
  }
}

fn bpe_for(tokenizer: Tokenizer) -> &'static CoreBPE {
  match tokenizer {
    Tokenizer::O200kHarmony => tiktoken_rs::o200k_harmony_singleton(),
    Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
    Tokenizer::P50kBase => tiktoken_rs::p50k_base_singleton(),
    Tokenizer::P50kEdit => tiktoken_rs::p50k_edit_singleton(),
    Tokenizer::R50kBase | Tokenizer::Gpt2 => tiktoken_rs::r50k_base_singleton(),
    _ => tiktoken_rs::o200k_base_singleton(),
  }
}

impl Encoding {
  /// Text as ordinary text: `<|endoftext|>` typed by a user is not a special token.
  pub fn count_text(&self, text: &str) -> usize {
    if text.len() >= LONG_COUNT_BYTES {
      return off_the_worker(|| self.bpe.count_ordinary(text));
    }
    self.bpe.count_ordinary(text)
  }

  pub fn count_messages(&self, messages: &[Message]) -> usize {
    let bytes: usize = messages.iter().map(text_bytes).sum();
    if bytes >= LONG_COUNT_BYTES {
      return off_the_worker(|| self.count_messages_here(messages));
    }
    self.count_messages_here(messages)
  }

  fn count_messages_here(&self, messages: &[Message]) -> usize {
    let mut total = REPLY_PRIMING;
    for message in messages {
      total += TOKENS_PER_MESSAGE + self.bpe.count_ordinary(role_name(message.role));
      for part in &message.content {
        total += match part {
          ContentPart::Text(text) => self.bpe.count_ordinary(text),
          ContentPart::Image { .. } | ContentPart::ImageUrl(_) => TOKENS_PER_IMAGE,
        };
      }
      for call in &message.tool_calls {
        total += TOKENS_PER_TOOL_CALL
          + self.bpe.count_ordinary(&call.name)
          + self.bpe.count_ordinary(&call.arguments);
      }
    }
    total
  }
}

fn text_bytes(message: &Message) -> usize {
  let parts: usize = message
    .content
    .iter()
    .map(|part| match part {
      ContentPart::Text(text) => text.len(),
      ContentPart::Image { .. } | ContentPart::ImageUrl(_) => 0,
    })
    .sum();
  let calls: usize = message
    .tool_calls
    .iter()
    .map(|call| call.name.len() + call.arguments.len())
    .sum();
  parts + calls
}

/// Runs `count` so that the calling runtime worker's other tasks move on meanwhile: on a
/// multi-thread runtime the worker's queue is handed to another thread for the duration.
/// Elsewhere (a current-thread runtime, no runtime) it simply runs.
fn off_the_worker<T>(count: impl FnOnce() -> T) -> T {
  use tokio::runtime::{Handle, RuntimeFlavor};
  match Handle::try_current() {
    Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
      tokio::task::block_in_place(count)
    }
    _ => count(),
  }
}

fn role_name(role: Role) -> &'static str {
  match role {
    Role::System => "system",
    Role::User => "user",
    Role::Assistant => "assistant",
    Role::Tool => "tool",
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn openai_models_are_exact_and_counted_with_their_encoding() {
    let encoding = encoding_for("openai/gpt-4o-mini");
    assert!(encoding.exact);
    // "hello world" is two tokens in o200k_base.
    assert_eq!(encoding.count_text("hello world"), 2);
    assert!(!encoding_for("claude-sonnet-4-5").exact);
  }

  /// With one worker, a task spawned before a long count still runs while it counts.
  #[test]
  fn a_long_count_does_not_hold_up_the_worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
      .worker_threads(1)
      .enable_all()
      .build()
      .expect("runtime");
    let long = "lorem ipsum dolor sit amet ".repeat(200_000);
    let (ran_during, count) = runtime.block_on(async move {
      let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
      let counted = tokio::spawn({
        let ran = ran.clone();
        async move {
          let other = tokio::spawn({
            let ran = ran.clone();
            async move { ran.store(true, std::sync::atomic::Ordering::SeqCst) }
          });
          let count = encoding_for("gpt-4o").count_text(&long);
          let ran_during = ran.load(std::sync::atomic::Ordering::SeqCst);
          let _ = other.await;
          (ran_during, count)
        }
      });
      counted.await.expect("count task")
    });
    assert!(count > 1_000_000);
    assert!(ran_during, "the other task waited for the count");
    // The same count on a current-thread runtime or outside any runtime just runs.
    let text = "x".repeat(LONG_COUNT_BYTES);
    let current = tokio::runtime::Builder::new_current_thread()
      .build()
      .expect("runtime");
    let inside = current.block_on(async { encoding_for("gpt-4o").count_text(&text) });
    assert_eq!(inside, encoding_for("gpt-4o").count_text(&text));
  }

  #[test]
  fn message_framing_follows_the_cookbook() {
    let encoding = encoding_for("gpt-4o");
    let messages = vec![Message::text(Role::User, "hello world")];
    // 3 framing + 1 ("user") + 2 (text) + 3 reply priming.
    assert_eq!(encoding.count_messages(&messages), 9);
  }
}
