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
    self.bpe.count_ordinary(text)
  }

  pub fn count_messages(&self, messages: &[Message]) -> usize {
    let mut total = REPLY_PRIMING;
    for message in messages {
      total += TOKENS_PER_MESSAGE + self.count_text(role_name(message.role));
      for part in &message.content {
        total += match part {
          ContentPart::Text(text) => self.count_text(text),
          ContentPart::Image { .. } | ContentPart::ImageUrl(_) => TOKENS_PER_IMAGE,
        };
      }
      for call in &message.tool_calls {
        total +=
          TOKENS_PER_TOOL_CALL + self.count_text(&call.name) + self.count_text(&call.arguments);
      }
    }
    total
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

  #[test]
  fn message_framing_follows_the_cookbook() {
    let encoding = encoding_for("gpt-4o");
    let messages = vec![Message::text(Role::User, "hello world")];
    // 3 framing + 1 ("user") + 2 (text) + 3 reply priming.
    assert_eq!(encoding.count_messages(&messages), 9);
  }
}
