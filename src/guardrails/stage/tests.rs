use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::error::ErrorCode;

fn pii(action: &str) -> GuardrailSpec {
  GuardrailSpec {
    kind: "pii".into(),
    action: Some(action.into()),
    ..GuardrailSpec::default()
  }
}

fn regex(pattern: &str, action: &str) -> GuardrailSpec {
  GuardrailSpec {
    kind: "regex".into(),
    pattern: Some(pattern.into()),
    action: Some(action.into()),
    ..GuardrailSpec::default()
  }
}

/// A hook answering with a fixed reply after a delay (or never), counting its calls.
struct FakeHook {
  reply: std::result::Result<String, String>,
  delay: Option<Duration>,
  calls: Arc<AtomicUsize>,
}

impl GuardrailHook for FakeHook {
  fn check(&self, _payload: String) -> BoxFuture<'static, std::result::Result<String, String>> {
    self.calls.fetch_add(1, Ordering::SeqCst);
    let reply = self.reply.clone();
    let delay = self.delay;
    Box::pin(async move {
      match delay {
        Some(delay) => tokio::time::sleep(delay).await,
        None => std::future::pending::<()>().await,
      }
      reply
    })
  }
}

fn custom(
  reply: std::result::Result<&str, &str>,
  delay: Option<Duration>,
  on_error: &str,
) -> GuardrailSpec {
  GuardrailSpec {
    kind: "custom".into(),
    timeout: Some(Duration::from_millis(50)),
    on_error: Some(on_error.into()),
    hook: Some(Arc::new(FakeHook {
      reply: reply.map(str::to_string).map_err(str::to_string),
      delay,
      calls: Arc::default(),
    })),
    ..GuardrailSpec::default()
  }
}

fn user(text: &str) -> Vec<Message> {
  vec![Message::text(Role::User, text)]
}

const CARD_TEXT: &str = "pay with 4111 1111 1111 1111 today";

#[tokio::test]
async fn input_redaction_reaches_the_messages_and_the_clients_own_body() {
  let guardrails = Guardrails::new(vec![pii("redact")], vec![]).expect("valid");
  let mut messages = user(CARD_TEXT);
  let mut body: Map<String, Value> = serde_json::from_value(json!({
    "model": "gpt-4o",
    "messages": [
      { "role": "system", "content": "mail ops@example.com" },
      { "role": "user", "content": [{ "type": "text", "text": CARD_TEXT }] }
    ],
    "metadata": { "note": "4111 1111 1111 1111 stays: not text the model reads" }
  }))
  .expect("object");
  let mut findings = Findings::default();
  let replaced = guardrails
    .check_input(&mut messages, Some(&mut body), |_| 0, &mut findings)
    .await
    .expect("allowed");
  assert!(!replaced);
  assert_eq!(messages[0].joined_text(), "pay with [CREDIT_CARD] today");
  assert_eq!(body["messages"][0]["content"], "mail [EMAIL]");
  assert_eq!(
    body["messages"][1]["content"][0]["text"],
    "pay with [CREDIT_CARD] today"
  );
  assert_eq!(
    findings.0,
    [
      GuardrailFinding {
        guardrail: "pii".into(),
        entity: "credit_card".into(),
        action: "redact",
        count: 1
      },
      GuardrailFinding {
        guardrail: "pii".into(),
        entity: "email".into(),
        action: "redact",
        count: 1
      },
    ]
  );
}

#[tokio::test]
async fn block_fails_before_anything_leaves_and_names_the_guardrail() {
  let guardrails = Guardrails::new(vec![pii("block")], vec![]).expect("valid");
  let mut findings = Findings::default();
  let error = guardrails
    .check_input(&mut user(CARD_TEXT), None, |_| 0, &mut findings)
    .await
    .expect_err("blocked");
  assert_eq!(error.code, ErrorCode::GuardrailBlocked);
  assert_eq!(error.status, 400);
  let hit = error.guardrail.expect("hit");
  assert_eq!(
    (hit.guardrail.as_str(), hit.entity.as_str()),
    ("pii", "credit_card")
  );
  assert!(!error.message.contains("4111"), "{}", error.message);
  assert_eq!(findings.0[0].action, "block");
}

#[tokio::test]
async fn flag_records_and_changes_nothing() {
  let guardrails = Guardrails::new(vec![regex(r"ORD-\d{6}", "flag")], vec![]).expect("valid");
  let mut messages = user("order ORD-123456 and ORD-654321");
  let mut findings = Findings::default();
  guardrails
    .check_input(&mut messages, None, |_| 0, &mut findings)
    .await
    .expect("allowed");
  assert_eq!(messages[0].joined_text(), "order ORD-123456 and ORD-654321");
  assert_eq!(findings.0[0].count, 2);
  assert_eq!(findings.0[0].entity, "regex");
}

#[tokio::test]
async fn max_input_tokens_blocks_over_the_limit() {
  let spec = GuardrailSpec {
    kind: "maxInputTokens".into(),
    limit: Some(10),
    ..GuardrailSpec::default()
  };
  let guardrails = Guardrails::new(vec![spec], vec![]).expect("valid");
  let mut findings = Findings::default();
  guardrails
    .check_input(&mut user("short"), None, |_| 10, &mut findings)
    .await
    .expect("at the limit");
  let error = guardrails
    .check_input(&mut user("long"), None, |_| 11, &mut findings)
    .await
    .expect_err("over");
  assert_eq!(error.code, ErrorCode::GuardrailBlocked);
  assert_eq!(error.guardrail.expect("hit").entity, "tokens");
}

#[test]
fn bad_guardrails_are_config_naming_them() {
  let error = Guardrails::new(
    vec![
      pii("redact"),
      GuardrailSpec {
        name: Some("order-ids".into()),
        ..regex(r"ORD-(\d+", "block")
      },
    ],
    vec![],
  )
  .expect_err("invalid");
  assert_eq!(error.code, ErrorCode::Config);
  assert!(
    error
      .message
      .starts_with("guardrails.input[1] ('order-ids'): invalid pattern"),
    "{}",
    error.message
  );
  for (spec, problem) in [
    (regex("a*", "block"), "matches empty text"),
    (regex("x", "erase"), "action 'erase'"),
    (
      GuardrailSpec {
        kind: "pii".into(),
        ..GuardrailSpec::default()
      },
      "needs an action",
    ),
    (
      GuardrailSpec {
        entities: Some(vec!["passport".into()]),
        ..pii("redact")
      },
      "unknown entity 'passport'",
    ),
    (
      GuardrailSpec {
        kind: "custom".into(),
        ..GuardrailSpec::default()
      },
      "needs a check",
    ),
    (
      GuardrailSpec {
        kind: "toxicity".into(),
        ..GuardrailSpec::default()
      },
      "type 'toxicity'",
    ),
  ] {
    let error = Guardrails::new(vec![], vec![spec]).expect_err(problem);
    assert_eq!(error.code, ErrorCode::Config);
    assert!(error.message.contains(problem), "{}", error.message);
  }
  let error = Guardrails::new(
    vec![],
    vec![GuardrailSpec {
      kind: "maxInputTokens".into(),
      limit: Some(5),
      ..GuardrailSpec::default()
    }],
  )
  .expect_err("output");
  assert!(error.message.contains("input only"), "{}", error.message);
}

/// Streams `text` cut at `a` and `b` through the output guardrails: the released text, and
/// the added delay in chunks: for each chunk, how many chunks later its last byte went out
/// (the end of the stream counts as one more chunk; an empty piece is no chunk).
fn stream_in_three(
  guardrails: &Guardrails,
  text: &str,
  a: usize,
  b: usize,
) -> (String, Vec<(usize, usize)>) {
  let mut stream = guardrails.output_stream().expect("a text guardrail");
  let mut out = String::new();
  let ends: Vec<usize> =
    [a, b, text.len()]
      .into_iter()
      .filter(|&end| end > 0)
      .fold(Vec::new(), |mut ends, end| {
        if ends.last() != Some(&end) {
          ends.push(end);
        }
        ends
      });
  // Input bytes let out after each chunk: pushed minus held.
  let mut let_out = Vec::new();
  let mut pushed = 0;
  for &end in &ends {
    out.push_str(&stream.push(&text[pushed..end]).expect("not blocked"));
    pushed = end;
    let_out.push(end - stream.held());
  }
  out.push_str(&stream.finish().expect("not blocked"));
  let_out.push(text.len());
  // (where the chunk ended, its delay)
  let delays = ends
    .iter()
    .enumerate()
    .map(|(chunk, &end)| {
      let delay = let_out[chunk..]
        .iter()
        .position(|&done| done >= end)
        .unwrap_or(ends.len() - chunk);
      (end, delay)
    })
    .collect();
  (out, delays)
}

#[tokio::test]
async fn a_card_split_across_three_chunks_in_every_way_is_redacted_in_the_stream_and_the_content() {
  let guardrails = Guardrails::new(vec![], vec![pii("redact")]).expect("valid");
  let expected = "pay with [CREDIT_CARD] today";
  let card = CARD_TEXT.find("4111").expect("card")..CARD_TEXT.find(" today").expect("card end");
  // Chunks by their added delay: those that end inside the card number, and the others.
  let (mut in_card, mut elsewhere) = ([0usize; 4], [0usize; 4]);
  for a in 0..=CARD_TEXT.len() {
    for b in a..=CARD_TEXT.len() {
      let (streamed, delays) = stream_in_three(&guardrails, CARD_TEXT, a, b);
      assert_eq!(streamed, expected, "split at {a}, {b}");
      for (end, delay) in delays {
        if card.start < end && end < card.end {
          in_card[delay] += 1;
          // Held until the chunk that shows the number ended (past the space after it, which
          // could still join another group of digits), no longer.
          let completes = [a, b, CARD_TEXT.len()]
            .into_iter()
            .filter(|&at| at > end)
            .position(|at| at > card.end + 1)
            .map_or(0, |later| later + 1);
          assert!(
            delay <= completes,
            "split at {a}, {b}: chunk ending at {end} waited {delay}"
          );
        } else {
          elsewhere[delay] += 1;
        }
      }
      // A chunk ending inside a word or a number waits until that word or number ends (it may
      // still become an entity), however many chunks it spans; the exact hold is checked in
      // `the_hold_back_is_only_what_a_match_needs`.
    }
  }
  // The distribution, for the record (`cargo test --lib guardrails -- --nocapture`).
  eprintln!(
    "3-way splits of {CARD_TEXT:?}: chunks by added delay (0, 1, 2, 3 chunks): ending inside the card {in_card:?}, elsewhere {elsewhere:?}"
  );
  let mut content = CARD_TEXT.to_string();
  let mut findings = Findings::default();
  guardrails
    .check_output(&mut content, &mut findings)
    .await
    .expect("allowed");
  assert_eq!(content, expected);
}

/// The added delay, in chunks: how many chunks after its own each chunk's text is released.
/// A chunk of plain prose is released with itself (0); a chunk ending inside a card number is
/// held until the chunk that completes it.
#[test]
fn the_hold_back_is_only_what_a_match_needs() {
  let guardrails = Guardrails::new(vec![], vec![pii("redact")]).expect("valid");
  let chunks = [
    "Sure. ",
    "Your card ",
    "4111 1111 ",
    "1111 1111",
    " is on file. ",
    "Anything else?",
  ];
  let mut stream = guardrails.output_stream().expect("stream");
  let mut held_after = Vec::new();
  for chunk in chunks {
    let _ = stream.push(chunk).expect("redacts");
    held_after.push(stream.held());
  }
  // Held: nothing after prose; the number's digits while it may still grow; nothing once
  // a space after it shows it ended.
  assert_eq!(
    held_after,
    [0, 0, "4111 1111 ".len(), "4111 1111 1111 1111".len(), 0, 0]
  );
}

#[tokio::test]
async fn a_block_on_output_stops_before_the_match_is_released() {
  let guardrails = Guardrails::new(vec![], vec![pii("block")]).expect("valid");
  let mut stream = guardrails.output_stream().expect("stream");
  let mut released = String::new();
  released.push_str(&stream.push("pay with 4111 1111 ").expect("held"));
  let error = stream.push("1111 1111 today").expect_err("blocked");
  assert_eq!(error.code, ErrorCode::GuardrailBlocked);
  assert_eq!(released, "pay with ");
}

#[test]
fn a_regex_stream_holds_back_its_longest_match() {
  let guardrails = Guardrails::new(vec![], vec![regex(r"ORD-\d{6}", "redact")]).expect("valid");
  let text = "orders ORD-123456, ORD-000001 and more";
  for a in 0..=text.len() {
    for b in a..=text.len() {
      let mut stream = guardrails.output_stream().expect("stream");
      let mut out = String::new();
      for piece in [&text[..a], &text[a..b], &text[b..]] {
        out.push_str(&stream.push(piece).expect("redacts"));
        // `\d` is Unicode: a digit may take 4 bytes, so the longest match is 4 + 6 × 4 bytes.
        assert!(
          stream.held() <= "ORD-".len() + 6 * 4,
          "held {}",
          stream.held()
        );
      }
      out.push_str(&stream.finish().expect("redacts"));
      assert_eq!(
        out, "orders [REDACTED], [REDACTED] and more",
        "split at {a}, {b}"
      );
      // Word boundaries see the text already released: `\bORD` never matches inside `xORD`.
    }
  }
  let bounded = Guardrails::new(vec![], vec![regex(r"\bORD-\d{6}", "redact")]).expect("valid");
  let text = "xORD-123456 ORD-123456";
  for a in 0..=text.len() {
    for b in a..=text.len() {
      let mut stream = bounded.output_stream().expect("stream");
      let mut out = String::new();
      for piece in [&text[..a], &text[a..b], &text[b..]] {
        out.push_str(&stream.push(piece).expect("redacts"));
      }
      out.push_str(&stream.finish().expect("redacts"));
      assert_eq!(out, "xORD-123456 [REDACTED]", "split at {a}, {b}");
    }
  }
}

#[tokio::test]
async fn a_custom_hook_blocks_replaces_and_follows_on_error() {
  let mut findings = Findings::default();
  let refuse = custom(
    Ok(r#"{"allow":false,"reason":"off topic"}"#),
    Some(Duration::ZERO),
    "allow",
  );
  let error = Guardrails::new(vec![refuse], vec![])
    .expect("valid")
    .check_input(&mut user("hi"), None, |_| 0, &mut findings)
    .await
    .expect_err("refused");
  assert_eq!(error.code, ErrorCode::GuardrailBlocked);
  assert!(error.message.ends_with("off topic"), "{}", error.message);

  let replace = custom(
    Ok(r#"{"allow":true,"replace":[{"role":"user","content":"rewritten"}]}"#),
    Some(Duration::ZERO),
    "allow",
  );
  let mut messages = user("original");
  let replaced = Guardrails::new(vec![replace], vec![])
    .expect("valid")
    .check_input(&mut messages, None, |_| 0, &mut findings)
    .await
    .expect("allowed");
  assert!(replaced);
  assert_eq!(messages, user("rewritten"));

  // Hanging past the timeout, or failing: onError decides.
  for (reply, delay, why) in [
    (Ok("{}"), None, "timeout"),
    (Err("boom"), Some(Duration::ZERO), "error"),
    (Ok("not json"), Some(Duration::ZERO), "error"),
  ] {
    let allow = Guardrails::new(vec![custom(reply, delay, "allow")], vec![]).expect("valid");
    let mut findings = Findings::default();
    allow
      .check_input(&mut user("hi"), None, |_| 0, &mut findings)
      .await
      .expect("onError allow");
    assert_eq!(findings.0[0].entity, why);
    assert_eq!(findings.0[0].action, "flag");
    let block = Guardrails::new(vec![custom(reply, delay, "block")], vec![]).expect("valid");
    let error = block
      .check_input(&mut user("hi"), None, |_| 0, &mut findings)
      .await
      .expect_err("onError block");
    assert_eq!(error.code, ErrorCode::GuardrailBlocked);
    assert_eq!(error.guardrail.expect("hit").entity, why);
  }
}

#[test]
fn body_text_is_found_in_every_protocols_places_and_nowhere_else() {
  let mut body: Map<String, Value> = serde_json::from_value(json!({
    "model": "claude",
    "system": [{ "type": "text", "text": "S" }],
    "instructions": "I",
    "input": [
      { "role": "user", "content": [{ "type": "input_text", "text": "T" }] },
      { "type": "function_call_output", "call_id": "c", "output": "O" },
      { "type": "function_call", "name": "f", "arguments": "A" }
    ],
    "messages": [{ "role": "user", "content": [
      { "type": "tool_result", "tool_use_id": "t", "content": "R" },
      { "type": "tool_use", "id": "u", "name": "n", "input": { "text": "U" } }
    ]}],
    "tools": [{ "name": "n", "description": "D", "input_schema": { "type": "object" } }],
    "metadata": { "user_id": "M" }
  }))
  .expect("object");
  let mut seen = Vec::new();
  for_each_body_text(&mut body, &mut |text| seen.push(text.clone()));
  seen.sort();
  assert_eq!(seen, ["A", "I", "O", "R", "S", "T", "U"]);
}
