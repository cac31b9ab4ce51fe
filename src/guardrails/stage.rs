//! The guardrails stage: what `GatewayOptions.guardrails` asks of every call, on the prompt
//! before it leaves (input) and on the answer before it reaches the caller (output).
//!
//! A guardrail finds something (`pii` entities, a `regex` match, a prompt over
//! `maxInputTokens`, a `custom` hook's refusal) and acts on it: `redact` replaces the match
//! with a placeholder, `block` fails the call with GUARDRAIL_BLOCKED, `flag` only records.
//! Each finding is counted by guardrail, entity and action, never with the matched text.
//!
//! The pipeline owns the order (input before the cache and any upstream request, output on
//! every event and on the final answer); this module knows nothing of providers or napi.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use regex::Regex;
use serde_json::{json, Map, Value};

use super::pii::{Detector, Entity, StreamRedactor};
use crate::error::{GatewayError, Result};
use crate::types::{ContentPart, Message, Role, ToolCall};

/// A `custom` hook's default patience.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(1000);
/// Hold-back of a `regex` guardrail on a stream when its pattern has no longest match
/// (`\d+`): a match longer than this that straddles a chunk boundary is not caught whole.
pub const MAX_REGEX_HOLD: usize = 4096;
/// What a `regex` guardrail's `redact` puts in a match's place.
pub const REGEX_PLACEHOLDER: &str = "[REDACTED]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
  Redact,
  Block,
  Flag,
}

impl Action {
  pub fn as_str(self) -> &'static str {
    match self {
      Action::Redact => "redact",
      Action::Block => "block",
      Action::Flag => "flag",
    }
  }

  fn parse(name: &str) -> Option<Action> {
    [Action::Redact, Action::Block, Action::Flag]
      .into_iter()
      .find(|action| action.as_str() == name)
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
  Input,
  Output,
}

impl Phase {
  pub fn as_str(self) -> &'static str {
    match self {
      Phase::Input => "input",
      Phase::Output => "output",
    }
  }
}

/// A `custom` guardrail's JS function. It takes the JSON text of `{ messages | text, phase }`
/// and resolves with the JSON text of `{ allow, reason?, replace? }`, or fails with a reason.
pub trait GuardrailHook: Send + Sync {
  fn check(&self, payload: String) -> BoxFuture<'static, std::result::Result<String, String>>;
}

/// One guardrail as configured, before it is checked.
#[derive(Clone, Default)]
pub struct GuardrailSpec {
  /// 'pii' | 'regex' | 'maxInputTokens' | 'custom'
  pub kind: String,
  /// Its name on findings, metrics and errors; the kind by default.
  pub name: Option<String>,
  pub entities: Option<Vec<String>>,
  pub action: Option<String>,
  pub pattern: Option<String>,
  pub limit: Option<u64>,
  pub timeout: Option<Duration>,
  pub on_error: Option<String>,
  pub hook: Option<Arc<dyn GuardrailHook>>,
}

enum Check {
  Pii(Detector),
  /// `hold`: the longest match in bytes, or [`MAX_REGEX_HOLD`].
  Regex {
    regex: Regex,
    hold: usize,
    bounded: bool,
  },
  MaxInputTokens(u64),
  Custom {
    hook: Arc<dyn GuardrailHook>,
    timeout: Duration,
    block_on_error: bool,
  },
}

struct Guardrail {
  name: String,
  check: Check,
  action: Action,
}

/// Every configured guardrail, input and output, in the order they run.
pub struct Guardrails {
  input: Vec<Guardrail>,
  output: Vec<Guardrail>,
}

impl std::fmt::Debug for Guardrails {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let names = |list: &[Guardrail]| list.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
    f.debug_struct("Guardrails")
      .field("input", &names(&self.input))
      .field("output", &names(&self.output))
      .finish()
  }
}

/// One line of the call record's `guardrails`: how often a guardrail found an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailFinding {
  pub guardrail: String,
  pub entity: String,
  pub action: &'static str,
  pub count: u64,
}

/// A call's findings, one line per (guardrail, entity, action).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings(pub Vec<GuardrailFinding>);

impl Findings {
  fn add(&mut self, guardrail: &str, entity: &str, action: Action, count: u64) {
    if count == 0 {
      return;
    }
    match self
      .0
      .iter_mut()
      .find(|f| f.guardrail == guardrail && f.entity == entity && f.action == action.as_str())
    {
      Some(line) => line.count += count,
      None => self.0.push(GuardrailFinding {
        guardrail: guardrail.to_string(),
        entity: entity.to_string(),
        action: action.as_str(),
        count,
      }),
    }
  }

  /// Each line at the larger of its two counts: the same text seen in two forms (the
  /// gateway's request and the client's own body) is counted once.
  fn merge_max(&mut self, other: Findings) {
    for line in other.0 {
      match self.0.iter_mut().find(|f| {
        f.guardrail == line.guardrail && f.entity == line.entity && f.action == line.action
      }) {
        Some(mine) => mine.count = mine.count.max(line.count),
        None => self.0.push(line),
      }
    }
  }

  pub fn extend(&mut self, other: Findings) {
    for line in other.0 {
      match self.0.iter_mut().find(|f| {
        f.guardrail == line.guardrail && f.entity == line.entity && f.action == line.action
      }) {
        Some(mine) => mine.count += line.count,
        None => self.0.push(line),
      }
    }
  }

  /// A block that ended a stream: its finding.
  pub fn blocked(&mut self, error: &GatewayError) {
    if let Some(hit) = &error.guardrail {
      self.add(&hit.guardrail, &hit.entity, Action::Block, 1);
    }
  }

  pub fn is_empty(&self) -> bool {
    self.0.is_empty()
  }
}

fn config_error(at: &str, name: &str, problem: impl std::fmt::Display) -> GatewayError {
  GatewayError::config(format!("guardrails.{at} ('{name}'): {problem}"))
}

fn build(at: &str, spec: GuardrailSpec, phase: Phase) -> Result<Guardrail> {
  let kind = spec.kind.as_str();
  let name = spec.name.clone().unwrap_or_else(|| kind.to_string());
  let fail = |problem: String| config_error(at, &name, problem);
  let action = match spec.action.as_deref() {
    None => None,
    Some(word) => Some(Action::parse(word).ok_or_else(|| {
      fail(format!(
        "action '{word}' is not one of 'redact', 'block', 'flag'"
      ))
    })?),
  };
  let needs_action =
    || action.ok_or_else(|| fail("needs an action: 'redact', 'block' or 'flag'".into()));
  let (check, action) = match kind {
    "pii" => {
      let detector = match &spec.entities {
        None => Detector::all(),
        Some(names) => {
          let mut chosen = Vec::with_capacity(names.len());
          for entity in names {
            chosen.push(Entity::parse(entity).ok_or_else(|| {
              let known: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
              fail(format!(
                "unknown entity '{entity}': one of {}",
                known.join(", ")
              ))
            })?);
          }
          Detector::new(&chosen)
        }
      };
      (Check::Pii(detector), needs_action()?)
    }
    "regex" => {
      let pattern = spec
        .pattern
        .as_deref()
        .ok_or_else(|| fail("needs a pattern".into()))?;
      let regex = Regex::new(pattern).map_err(|e| fail(format!("invalid pattern: {e}")))?;
      if regex.is_match("") {
        return Err(fail("the pattern matches empty text".into()));
      }
      // Parsed again only for its longest match, which bounds what a stream must hold back.
      let longest = regex_syntax::Parser::new()
        .parse(pattern)
        .ok()
        .and_then(|hir| hir.properties().maximum_len());
      let bounded = longest.is_some_and(|len| len <= MAX_REGEX_HOLD);
      let hold = longest.map_or(MAX_REGEX_HOLD, |len| len.min(MAX_REGEX_HOLD));
      let check = Check::Regex {
        regex,
        hold,
        bounded,
      };
      (check, needs_action()?)
    }
    "maxInputTokens" => {
      if phase == Phase::Output {
        return Err(fail("maxInputTokens applies to the input only".into()));
      }
      let limit = spec
        .limit
        .filter(|limit| *limit > 0)
        .ok_or_else(|| fail("needs a limit (a whole number > 0)".into()))?;
      let action = action.unwrap_or(Action::Block);
      if action == Action::Redact {
        return Err(fail(
          "action 'redact' does not apply: use 'block' or 'flag'".into(),
        ));
      }
      (Check::MaxInputTokens(limit), action)
    }
    "custom" => {
      let hook = spec
        .hook
        .clone()
        .ok_or_else(|| fail("needs a check function".into()))?;
      let block_on_error = match spec.on_error.as_deref() {
        None | Some("allow") => false,
        Some("block") => true,
        Some(other) => return Err(fail(format!("onError '{other}' is not 'allow' or 'block'"))),
      };
      let timeout = spec.timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT);
      if timeout.is_zero() {
        return Err(fail("timeoutMs must be > 0".into()));
      }
      let check = Check::Custom {
        hook,
        timeout,
        block_on_error,
      };
      // A refusal blocks; what the hook replaces is recorded as redacted.
      (check, Action::Block)
    }
    other => {
      return Err(config_error(
        at,
        &name,
        format!("type '{other}' is not one of 'pii', 'regex', 'maxInputTokens', 'custom'"),
      ))
    }
  };
  Ok(Guardrail {
    name,
    check,
    action,
  })
}

impl Guardrails {
  /// Checks every guardrail: a bad one is CONFIG naming it (`guardrails.input[1] ('regex'): …`).
  pub fn new(input: Vec<GuardrailSpec>, output: Vec<GuardrailSpec>) -> Result<Guardrails> {
    let build_all = |list: Vec<GuardrailSpec>, phase: Phase| {
      list
        .into_iter()
        .enumerate()
        .map(|(i, spec)| build(&format!("{}[{i}]", phase.as_str()), spec, phase))
        .collect::<Result<Vec<_>>>()
    };
    Ok(Guardrails {
      input: build_all(input, Phase::Input)?,
      output: build_all(output, Phase::Output)?,
    })
  }

  pub fn has_input(&self) -> bool {
    !self.input.is_empty()
  }

  pub fn has_output(&self) -> bool {
    !self.output.is_empty()
  }

  /// The input stage. `messages` are the gateway's request; `native_body` the client's own
  /// body when the call came through the front door (a same-protocol target receives that
  /// one): both are redacted alike. `tokens` counts the prompt (for `maxInputTokens`).
  /// Returns whether a `custom` hook replaced the messages, so that the client's own body no
  /// longer says what the call sends.
  pub async fn check_input(
    &self,
    messages: &mut Vec<Message>,
    mut native_body: Option<&mut Map<String, Value>>,
    tokens: impl Fn(&[Message]) -> usize,
    findings: &mut Findings,
  ) -> Result<bool> {
    let mut replaced = false;
    for guardrail in &self.input {
      match &guardrail.check {
        Check::Pii(_) | Check::Regex { .. } => {
          let mut found = Findings::default();
          let mut outcome = Ok(());
          for message in messages.iter_mut() {
            for text in message_texts(message) {
              if outcome.is_ok() {
                outcome = guardrail.scan(text, &mut found);
              }
            }
          }
          if let Some(body) = native_body.as_deref_mut() {
            let mut in_body = Findings::default();
            let mut in_body_outcome = Ok(());
            for_each_body_text(body, &mut |text| {
              if in_body_outcome.is_ok() {
                in_body_outcome = guardrail.scan(text, &mut in_body);
              }
            });
            found.merge_max(in_body);
            outcome = outcome.and(in_body_outcome);
          }
          // A block is recorded with what it found.
          findings.extend(found);
          outcome?;
        }
        Check::MaxInputTokens(limit) => {
          let counted = tokens(messages) as u64;
          if counted > *limit {
            findings.add(&guardrail.name, "tokens", guardrail.action, 1);
            if guardrail.action == Action::Block {
              return Err(GatewayError::guardrail_blocked(
                &guardrail.name,
                "tokens",
                format!(
                  "guardrail '{}' blocked the input: {counted} tokens, over the limit of {limit}",
                  guardrail.name
                ),
              ));
            }
          }
        }
        Check::Custom { .. } => {
          let payload = json!({ "phase": "input", "messages": messages_json(messages) });
          if let Some(replace) = guardrail.run_hook(payload, Phase::Input, findings).await? {
            *messages = parse_messages(&replace).map_err(|problem| {
              GatewayError::new(
                crate::error::ErrorCode::CallbackError,
                format!(
                  "guardrail '{}' replaced the messages with something else: {problem}",
                  guardrail.name
                ),
              )
            })?;
            findings.add(&guardrail.name, "custom", Action::Redact, 1);
            replaced = true;
          }
        }
      }
    }
    Ok(replaced)
  }

  /// The output stage on a whole answer (a plain call's, or a stream's final content).
  pub async fn check_output(&self, content: &mut String, findings: &mut Findings) -> Result<()> {
    for guardrail in &self.output {
      match &guardrail.check {
        Check::Pii(_) | Check::Regex { .. } => guardrail.scan(content, findings)?,
        Check::MaxInputTokens(_) => {}
        Check::Custom { .. } => {
          let payload = json!({ "phase": "output", "text": content.as_str() });
          if let Some(replace) = guardrail.run_hook(payload, Phase::Output, findings).await? {
            let Value::String(text) = replace else {
              return Err(GatewayError::new(
                crate::error::ErrorCode::CallbackError,
                format!(
                  "guardrail '{}' replaced the output with something other than a string",
                  guardrail.name
                ),
              ));
            };
            *content = text;
            findings.add(&guardrail.name, "custom", Action::Redact, 1);
          }
        }
      }
    }
    Ok(())
  }

  /// A filter for streamed text, when an output guardrail matches text (`pii`, `regex`).
  pub fn output_stream(&self) -> Option<OutputStream> {
    let stages: Vec<StreamStage> = self
      .output
      .iter()
      .filter_map(|guardrail| {
        let matcher = match &guardrail.check {
          Check::Pii(detector) => TextStream::Pii(StreamRedactor::new(*detector)),
          Check::Regex {
            regex,
            hold,
            bounded,
          } => TextStream::Regex(RegexStream::new(regex.clone(), *hold, *bounded)),
          _ => return None,
        };
        Some(StreamStage {
          name: guardrail.name.clone(),
          action: guardrail.action,
          matcher,
        })
      })
      .collect();
    (!stages.is_empty()).then_some(OutputStream { stages })
  }
}

/// One match in a text: where, what it is called, what replaces it.
#[derive(Clone, Copy)]
struct Match {
  start: usize,
  end: usize,
  entity: &'static str,
  placeholder: &'static str,
}

impl Guardrail {
  fn matches(&self, text: &str) -> Vec<Match> {
    match &self.check {
      Check::Pii(detector) => detector
        .find(text)
        .into_iter()
        .map(|f| Match {
          start: f.start,
          end: f.end,
          entity: f.entity.name(),
          placeholder: f.entity.placeholder(),
        })
        .collect(),
      Check::Regex { regex, .. } => regex
        .find_iter(text)
        .filter(|m| !m.is_empty())
        .map(|m| Match {
          start: m.start(),
          end: m.end(),
          entity: "regex",
          placeholder: REGEX_PLACEHOLDER,
        })
        .collect(),
      _ => Vec::new(),
    }
  }

  /// Counts what the guardrail finds in `text`, and acts: redacts it in place, or blocks.
  fn scan(&self, text: &mut String, findings: &mut Findings) -> Result<()> {
    let found = self.matches(text);
    if found.is_empty() {
      return Ok(());
    }
    for m in &found {
      findings.add(&self.name, m.entity, self.action, 1);
    }
    match self.action {
      Action::Flag => Ok(()),
      Action::Block => Err(self.blocked(found[0].entity)),
      Action::Redact => {
        *text = replace(text, &found);
        Ok(())
      }
    }
  }

  fn blocked(&self, entity: &str) -> GatewayError {
    GatewayError::guardrail_blocked(
      &self.name,
      entity,
      format!("guardrail '{}' blocked the call: {entity} found", self.name),
    )
  }

  /// Runs a `custom` hook under its timeout. A refusal blocks; a hook that fails or hangs
  /// follows `onError`. Returns what the hook wants in the checked text's place.
  async fn run_hook(
    &self,
    payload: Value,
    phase: Phase,
    findings: &mut Findings,
  ) -> Result<Option<Value>> {
    let Check::Custom {
      hook,
      timeout,
      block_on_error,
    } = &self.check
    else {
      return Ok(None);
    };
    let failed = |why: &str, findings: &mut Findings| {
      let action = if *block_on_error {
        Action::Block
      } else {
        Action::Flag
      };
      findings.add(&self.name, why, action, 1);
      if *block_on_error {
        Err(GatewayError::guardrail_blocked(
          &self.name,
          why,
          format!(
            "guardrail '{}' could not check the {} ({why}) and its onError is 'block'",
            self.name,
            phase.as_str()
          ),
        ))
      } else {
        Ok(None)
      }
    };
    let answer = match tokio::time::timeout(*timeout, hook.check(payload.to_string())).await {
      Err(_) => return failed("timeout", findings),
      Ok(Err(_)) => return failed("error", findings),
      Ok(Ok(answer)) => answer,
    };
    let Ok(Value::Object(mut verdict)) = serde_json::from_str::<Value>(&answer) else {
      return failed("error", findings);
    };
    let Some(Value::Bool(allow)) = verdict.get("allow") else {
      return failed("error", findings);
    };
    if !allow {
      findings.add(&self.name, "custom", Action::Block, 1);
      let reason = match verdict.get("reason") {
        Some(Value::String(reason)) => format!(": {reason}"),
        _ => String::new(),
      };
      return Err(GatewayError::guardrail_blocked(
        &self.name,
        "custom",
        format!(
          "guardrail '{}' blocked the {}{reason}",
          self.name,
          phase.as_str()
        ),
      ));
    }
    Ok(verdict.remove("replace").filter(|v| !v.is_null()))
  }
}

fn replace(text: &str, found: &[Match]) -> String {
  let mut out = String::with_capacity(text.len());
  let mut at = 0;
  for m in found {
    out.push_str(&text[at..m.start]);
    out.push_str(m.placeholder);
    at = m.end;
  }
  out.push_str(&text[at..]);
  out
}

/// Every text of a message the vendor receives: its text parts and its tool calls' arguments.
fn message_texts(message: &mut Message) -> impl Iterator<Item = &mut String> {
  let parts = message.content.iter_mut().filter_map(|part| match part {
    ContentPart::Text(text) => Some(text),
    _ => None,
  });
  let arguments = message
    .tool_calls
    .iter_mut()
    .map(|call| &mut call.arguments);
  parts.chain(arguments)
}

/// Keys whose string values are text a vendor reads in every protocol's body: Chat
/// Completions and Messages `content` / `text` / `system`, Responses `input` /
/// `instructions` / `output` (a tool's result), tool-call `arguments`.
const TEXT_KEYS: &[&str] = &[
  "content",
  "text",
  "system",
  "input",
  "instructions",
  "output",
  "arguments",
  "prompt",
];

/// Calls `visit` on every text in a client's own body, wherever it is nested (messages,
/// content blocks, tool results), and on nothing else (roles, ids, types, tool schemas).
fn for_each_body_text(body: &mut Map<String, Value>, visit: &mut impl FnMut(&mut String)) {
  for (key, value) in body.iter_mut() {
    if key == "tools" || key == "model" {
      continue;
    }
    visit_value(value, TEXT_KEYS.contains(&key.as_str()), visit);
  }
}

fn visit_value(value: &mut Value, is_text: bool, visit: &mut impl FnMut(&mut String)) {
  match value {
    Value::String(text) if is_text => visit(text),
    Value::Array(items) => {
      for item in items {
        visit_value(item, is_text, visit);
      }
    }
    Value::Object(object) => for_each_body_text(object, visit),
    _ => {}
  }
}

/// Messages as a `custom` hook receives them: the shape of `ChatRequest.messages` in API.md.
fn messages_json(messages: &[Message]) -> Value {
  let role = |role: Role| match role {
    Role::System => "system",
    Role::User => "user",
    Role::Assistant => "assistant",
    Role::Tool => "tool",
  };
  let messages: Vec<Value> = messages
    .iter()
    .map(|message| {
      let content = match message.content.as_slice() {
        [] => Value::Null,
        [ContentPart::Text(text)] => Value::String(text.clone()),
        parts => Value::Array(
          parts
            .iter()
            .map(|part| match part {
              ContentPart::Text(text) => json!({ "type": "text", "text": text }),
              ContentPart::Image { data, mime_type } => {
                json!({ "type": "image", "data": data, "mimeType": mime_type })
              }
              ContentPart::ImageUrl(url) => json!({ "type": "image_url", "url": url }),
            })
            .collect(),
        ),
      };
      let mut out = json!({ "role": role(message.role), "content": content });
      if let Some(id) = &message.tool_call_id {
        out["toolCallId"] = json!(id);
      }
      if !message.tool_calls.is_empty() {
        out["toolCalls"] = message
          .tool_calls
          .iter()
          .map(|call| json!({ "id": call.id, "name": call.name, "arguments": call.arguments }))
          .collect();
      }
      out
    })
    .collect();
  Value::Array(messages)
}

/// A `custom` hook's replacement messages, in the shape [`messages_json`] gives.
fn parse_messages(value: &Value) -> std::result::Result<Vec<Message>, String> {
  let Value::Array(items) = value else {
    return Err("replace must be an array of messages".into());
  };
  let text = |value: Option<&Value>, at: &str| match value {
    Some(Value::String(text)) => Ok(text.clone()),
    _ => Err(format!("{at} must be a string")),
  };
  let mut messages = Vec::with_capacity(items.len());
  for (i, item) in items.iter().enumerate() {
    let at = format!("replace[{i}]");
    let role = item
      .get("role")
      .and_then(Value::as_str)
      .and_then(Role::parse)
      .ok_or_else(|| format!("{at}.role must be 'system', 'user', 'assistant' or 'tool'"))?;
    let content = match item.get("content") {
      None | Some(Value::Null) => Vec::new(),
      Some(Value::String(text)) => vec![ContentPart::Text(text.clone())],
      Some(Value::Array(parts)) => parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
          let at = format!("{at}.content[{j}]");
          match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(ContentPart::Text(text(part.get("text"), &at)?)),
            Some("image") => Ok(ContentPart::Image {
              data: text(part.get("data"), &format!("{at}.data"))?,
              mime_type: text(part.get("mimeType"), &format!("{at}.mimeType"))?,
            }),
            Some("image_url") => Ok(ContentPart::ImageUrl(text(
              part.get("url"),
              &format!("{at}.url"),
            )?)),
            _ => Err(format!("{at}.type must be 'text', 'image' or 'image_url'")),
          }
        })
        .collect::<std::result::Result<_, String>>()?,
      Some(_) => return Err(format!("{at}.content must be a string or an array")),
    };
    let tool_call_id = match item.get("toolCallId") {
      None | Some(Value::Null) => None,
      id => Some(text(id, &format!("{at}.toolCallId"))?),
    };
    let tool_calls = match item.get("toolCalls") {
      None | Some(Value::Null) => Vec::new(),
      Some(Value::Array(calls)) => calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
          let at = format!("{at}.toolCalls[{j}]");
          Ok(ToolCall {
            id: text(call.get("id"), &format!("{at}.id"))?,
            name: text(call.get("name"), &format!("{at}.name"))?,
            arguments: text(call.get("arguments"), &format!("{at}.arguments"))?,
            thought_signature: None,
          })
        })
        .collect::<std::result::Result<_, String>>()?,
      Some(_) => return Err(format!("{at}.toolCalls must be an array")),
    };
    messages.push(Message {
      role,
      content,
      tool_call_id,
      tool_calls,
    });
  }
  Ok(messages)
}

// ------------------------------------------------------------------------------------ streams

/// Redacts a `regex` guardrail's matches in a stream of text pieces, holding back the last
/// `hold` bytes (the pattern's longest match): a match that starts before them is already
/// whole, so it is the same match the whole text would give. The last released character
/// stays in front as context, so `\b` sees what came before.
struct RegexStream {
  regex: Regex,
  hold: usize,
  /// Whether `hold` is the pattern's longest match (not the cap).
  bounded: bool,
  /// Released text kept as context (one character), then the text not yet released.
  pending: String,
  context: usize,
  found: usize,
}

impl RegexStream {
  fn new(regex: Regex, hold: usize, bounded: bool) -> RegexStream {
    RegexStream {
      regex,
      hold,
      bounded,
      pending: String::new(),
      context: 0,
      found: 0,
    }
  }

  /// Matches from `self.context` on, seeing the context before it.
  fn matches(&self) -> Vec<Match> {
    let mut found = Vec::new();
    let mut at = self.context;
    while let Some(m) = self.regex.find_at(&self.pending, at) {
      if m.is_empty() {
        // Step over one character: an empty match replaces nothing.
        at = m.end()
          + self.pending[m.end()..]
            .chars()
            .next()
            .map_or(1, char::len_utf8);
        if at > self.pending.len() {
          break;
        }
        continue;
      }
      found.push(Match {
        start: m.start(),
        end: m.end(),
        entity: "regex",
        placeholder: REGEX_PLACEHOLDER,
      });
      at = m.end();
    }
    found
  }

  fn push(&mut self, piece: &str) -> String {
    self.pending.push_str(piece);
    let len = self.pending.len();
    let mut release = len.saturating_sub(self.hold).max(self.context);
    while !self.pending.is_char_boundary(release) {
      release -= 1;
    }
    let found = self.matches();
    for m in &found {
      if m.start < release && m.end > release {
        // Started before the held tail: with a bounded pattern it is already whole and goes
        // out now; otherwise (or ending at the text's end, where `$` and `\b` may change) it
        // waits whole.
        release = if self.bounded && m.end < len {
          m.end
        } else {
          m.start
        };
      }
    }
    let releasable: Vec<Match> = found.into_iter().filter(|m| m.end <= release).collect();
    self.found += releasable.len();
    self.release(release, &releasable)
  }

  fn finish(&mut self) -> String {
    let found = self.matches();
    self.found += found.len();
    self.release(self.pending.len(), &found)
  }

  /// Hands out the text up to `release`, redacted, keeping its last character as context.
  fn release(&mut self, release: usize, found: &[Match]) -> String {
    let shifted: Vec<Match> = found
      .iter()
      .map(|m| Match {
        start: m.start - self.context,
        end: m.end - self.context,
        ..*m
      })
      .collect();
    let out = replace(&self.pending[self.context..release], &shifted);
    let keep = self.pending[..release]
      .chars()
      .next_back()
      .map_or(0, char::len_utf8);
    self.pending.drain(..release - keep);
    self.context = keep;
    out
  }

  fn held(&self) -> usize {
    self.pending.len() - self.context
  }
}

enum TextStream {
  Pii(StreamRedactor),
  Regex(RegexStream),
}

impl TextStream {
  fn push(&mut self, piece: &str) -> String {
    match self {
      TextStream::Pii(stream) => stream.push(piece),
      TextStream::Regex(stream) => stream.push(piece),
    }
  }

  fn finish(&mut self) -> String {
    match self {
      TextStream::Pii(stream) => stream.finish(),
      TextStream::Regex(stream) => stream.finish(),
    }
  }

  fn held(&self) -> usize {
    match self {
      TextStream::Pii(stream) => stream.held(),
      TextStream::Regex(stream) => stream.held(),
    }
  }

  /// The first entity found so far, if any.
  fn first_found(&self) -> Option<&'static str> {
    match self {
      TextStream::Pii(stream) => stream.findings().first().map(|e| e.name()),
      TextStream::Regex(stream) => (stream.found > 0).then_some("regex"),
    }
  }
}

struct StreamStage {
  name: String,
  action: Action,
  matcher: TextStream,
}

/// The output guardrails over a stream's text, one after the other: each releases what can
/// no longer be part of a match, redacted (`redact`), checked (`block`: a match ends the
/// stream before its text reaches the caller) or untouched and at once (`flag`, which only
/// records, from the final content).
pub struct OutputStream {
  stages: Vec<StreamStage>,
}

impl OutputStream {
  /// The text that can be released after `piece`.
  pub fn push(&mut self, piece: &str) -> Result<String> {
    self.pass(piece.to_string(), false)
  }

  /// The stream's text ended (or a tool call follows it): the rest.
  pub fn finish(&mut self) -> Result<String> {
    self.pass(String::new(), true)
  }

  fn pass(&mut self, mut text: String, finish: bool) -> Result<String> {
    for stage in &mut self.stages {
      let mut released = stage.matcher.push(&text);
      if finish {
        released.push_str(&stage.matcher.finish());
      }
      match stage.action {
        Action::Flag => {}
        Action::Redact => text = released,
        Action::Block => {
          if let Some(entity) = stage.matcher.first_found() {
            return Err(GatewayError::guardrail_blocked(
              &stage.name,
              entity,
              format!(
                "guardrail '{}' blocked the output: {entity} found",
                stage.name
              ),
            ));
          }
          text = released;
        }
      }
    }
    Ok(text)
  }

  /// Bytes held back right now, over all guardrails.
  pub fn held(&self) -> usize {
    self
      .stages
      .iter()
      .filter(|stage| stage.action != Action::Flag)
      .map(|stage| stage.matcher.held())
      .sum()
  }
}

#[cfg(test)]
mod tests;
