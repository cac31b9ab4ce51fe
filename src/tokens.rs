//! Token counts with OpenAI's tiktoken encodings: exact for OpenAI models, a documented
//! estimate (o200k_base) for everything else. Used when a vendor sends no usage and by
//! `countTokens`.

use std::sync::{Mutex, OnceLock};

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
  /// The role names' counts in this encoding, counted once: every message pays one.
  roles: &'static OnceLock<[usize; 4]>,
}

/// One slot per distinct BPE below.
static ROLE_TOKENS: [OnceLock<[usize; 4]>; 6] = [const { OnceLock::new() }; 6];

/// Builds the estimating tokenizer (o200k_base) now rather than on first use.
pub fn load_estimator() {
  tiktoken_rs::o200k_base_singleton();
}

/// Picks the encoding for a bare or "provider/model" name.
pub fn encoding_for(model: &str) -> Encoding {
  let bare = model.rsplit('/').next().unwrap_or(model);
  match get_tokenizer(bare) {
    Some(tokenizer) => {
      let (bpe, slot) = bpe_for(tokenizer);
      Encoding {
        bpe,
        exact: true,
        roles: &ROLE_TOKENS[slot],
      }
    }
    None => Encoding {
      bpe: tiktoken_rs::o200k_base_singleton(),
      exact: false,
      roles: &ROLE_TOKENS[0],
    },
  }
}

/// Whether `model` (bare or "provider/model") is counted with its own tokenizer, as
/// `encoding_for(model).exact` says, without loading a tokenizer's tables (tens of MB).
pub fn is_exact(model: &str) -> bool {
  get_tokenizer(model.rsplit('/').next().unwrap_or(model)).is_some()
}

fn bpe_for(tokenizer: Tokenizer) -> (&'static CoreBPE, usize) {
  match tokenizer {
    Tokenizer::O200kHarmony => (tiktoken_rs::o200k_harmony_singleton(), 1),
    Tokenizer::Cl100kBase => (tiktoken_rs::cl100k_base_singleton(), 2),
    Tokenizer::P50kBase => (tiktoken_rs::p50k_base_singleton(), 3),
    Tokenizer::P50kEdit => (tiktoken_rs::p50k_edit_singleton(), 4),
    Tokenizer::R50kBase | Tokenizer::Gpt2 => (tiktoken_rs::r50k_base_singleton(), 5),
    _ => (tiktoken_rs::o200k_base_singleton(), 0),
  }
}

/// One request's prompt count per encoding. The stages that charge a call before it runs
/// (the rate limiter's estimate, the hard budget's reservation) each need it, nearly always
/// in the same encoding, and a tokenizer pass is the dearest part of either: counted once.
pub struct PromptTokens<'m> {
  messages: &'m [Message],
  /// (the BPE's address, the count)
  counted: Mutex<Vec<(usize, usize)>>,
}

impl<'m> PromptTokens<'m> {
  pub fn new(messages: &'m [Message]) -> Self {
    PromptTokens {
      messages,
      counted: Mutex::new(Vec::new()),
    }
  }

  /// `encoding.count_messages(messages)`, counted the first time only.
  pub fn count(&self, encoding: &Encoding) -> usize {
    let id = std::ptr::from_ref(encoding.bpe) as usize;
    let known = |counted: &Vec<(usize, usize)>| {
      counted
        .iter()
        .find(|(bpe, _)| *bpe == id)
        .map(|(_, count)| *count)
    };
    if let Some(count) = known(&self.counted.lock().unwrap_or_else(|e| e.into_inner())) {
      return count;
    }
    // Counted unlocked: a long prompt is counted off the worker, and nothing else waits here.
    let count = encoding.count_messages(self.messages);
    self
      .counted
      .lock()
      .unwrap_or_else(|e| e.into_inner())
      .push((id, count));
    count
  }
}

impl PromptTokens<'_> {
  /// An upper bound of `count` in every encoding, without a tokenizer pass: each token of
  /// a byte-level BPE stands for at least one byte of the text, so a text has at most as
  /// many tokens as bytes (role names likewise), and the framing tokens are added as
  /// `count` adds them. Typically 3 to 4 times the count for English.
  pub fn bound(&self) -> usize {
    self
      .messages
      .iter()
      .map(|message| {
        let images = message
          .content
          .iter()
          .filter(|part| !matches!(part, ContentPart::Text(_)))
          .count();
        TOKENS_PER_MESSAGE
          + role_name(message.role).len()
          + text_bytes(message)
          + images * TOKENS_PER_IMAGE
          + message.tool_calls.len() * TOKENS_PER_TOOL_CALL
      })
      .sum::<usize>()
      + REPLY_PRIMING
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
    let roles = self.roles.get_or_init(|| {
      [Role::System, Role::User, Role::Assistant, Role::Tool]
        .map(|role| self.bpe.count_ordinary(role_name(role)))
    });
    for message in messages {
      total += TOKENS_PER_MESSAGE + roles[role_index(message.role)];
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

fn role_index(role: Role) -> usize {
  match role {
    Role::System => 0,
    Role::User => 1,
    Role::Assistant => 2,
    Role::Tool => 3,
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
    // Every role in every encoding counts as its own text would.
    for model in ["gpt-4o", "gpt-4", "text-davinci-003", "davinci", "claude-x"] {
      let encoding = encoding_for(model);
      for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
        let alone = vec![Message::text(role, "")];
        let expected = REPLY_PRIMING + TOKENS_PER_MESSAGE + encoding.count_text(role_name(role));
        assert_eq!(
          encoding.count_messages(&alone),
          expected,
          "{model} {role:?}"
        );
      }
    }
  }

  #[test]
  fn a_prompt_is_counted_once_per_encoding() {
    let messages = vec![Message::text(Role::User, "hello world")];
    let prompt = PromptTokens::new(&messages);
    let o200k = encoding_for("openai/gpt-4o");
    assert_eq!(prompt.count(&o200k), 9);
    // Another model with the same BPE reuses the count; another BPE counts again.
    assert_eq!(prompt.count(&encoding_for("claude-x")), 9);
    let cl100k = encoding_for("gpt-4");
    assert_eq!(prompt.count(&cl100k), cl100k.count_messages(&messages));
    assert_eq!(prompt.counted.lock().expect("counts").len(), 2);
    for model in [
      "openai/gpt-4o",
      "gpt-4",
      "claude-sonnet-4-5",
      "gemini-2.5-pro",
    ] {
      assert_eq!(is_exact(model), encoding_for(model).exact, "{model}");
    }
  }

  #[test]
  fn the_bound_is_at_least_the_count_in_every_encoding() {
    let texts = [
      "Say hello to the benchmark.",
      "日本語のテキストと emoji 🎉🎉 and ٱلْعَرَبِيَّة",
      "a",
      "",
      "        \n\n\t  x",
      "0123456789abcdefghijklmnopqrstuvwxyz!@#$%^&*()",
    ];
    for text in texts {
      let messages = vec![
        Message::text(Role::System, text),
        Message::text(Role::User, text),
        Message::text(Role::Assistant, text),
      ];
      let prompt = PromptTokens::new(&messages);
      for model in [
        "gpt-4o",
        "gpt-4",
        "text-davinci-003",
        "gpt2",
        "claude-sonnet-4-5",
      ] {
        let count = prompt.count(&encoding_for(model));
        assert!(
          prompt.bound() >= count,
          "{model}: {} < {count} for {text:?}",
          prompt.bound()
        );
      }
    }
  }
}
