//! The normalized model every provider maps to and from. Shapes follow OpenAI's chat
//! completions semantics (API.md); nothing here knows about napi.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
  System,
  User,
  Assistant,
  Tool,
}

impl Role {
  pub fn parse(role: &str) -> Option<Role> {
    match role {
      "system" | "developer" => Some(Role::System),
      "user" => Some(Role::User),
      "assistant" => Some(Role::Assistant),
      "tool" => Some(Role::Tool),
      _ => None,
    }
  }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
  Text(String),
  /// Inline image: base64 `data` with its MIME type.
  Image {
    data: String,
    mime_type: String,
  },
  /// An image by URL (`data:` URLs included).
  ImageUrl(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
  pub role: Role,
  pub content: Vec<ContentPart>,
  pub tool_call_id: Option<String>,
  pub tool_calls: Vec<ToolCall>,
}

impl Message {
  pub fn text(role: Role, text: impl Into<String>) -> Self {
    Message {
      role,
      content: vec![ContentPart::Text(text.into())],
      tool_call_id: None,
      tool_calls: Vec::new(),
    }
  }

  /// All text parts joined; images are skipped.
  pub fn joined_text(&self) -> String {
    let mut out = String::new();
    for part in &self.content {
      if let ContentPart::Text(text) = part {
        out.push_str(text);
      }
    }
    out
  }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
  pub id: String,
  pub name: String,
  /// JSON text, exactly as the model produced it.
  pub arguments: String,
  /// Gemini's opaque signature of the reasoning behind the call, sent back with it.
  pub thought_signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
  pub name: String,
  pub description: Option<String>,
  /// JSON Schema of the arguments.
  pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
  Auto,
  None,
  Required,
  Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
  Text,
  JsonObject,
  JsonSchema { name: String, schema: Value },
}

/// A request after validation, with `model` already split from its provider name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
  /// The vendor's model name (no provider prefix).
  pub model: String,
  pub messages: Vec<Message>,
  pub temperature: Option<f64>,
  pub top_p: Option<f64>,
  pub max_tokens: Option<u32>,
  pub stop: Vec<String>,
  pub response_format: Option<ResponseFormat>,
  pub tools: Vec<ToolDefinition>,
  pub tool_choice: Option<ToolChoice>,
  pub user: Option<String>,
  /// Prompt-caching breakpoints (`cache` on messages, parts and tools), in request order.
  pub cache_breakpoints: Vec<CacheBreakpoint>,
  /// OpenAI's `prompt_cache_key`: requests sharing it are routed to the same prompt cache.
  pub prompt_cache_key: Option<String>,
}

impl ChatRequest {
  /// The breakpoint on message `message` as a whole (its last block), if asked.
  pub fn message_cache(&self, message: usize) -> Option<CacheTtl> {
    self.cache_at(CacheAt::Message(message))
  }

  /// The breakpoint on part `part` of message `message`, if asked.
  pub fn part_cache(&self, message: usize, part: usize) -> Option<CacheTtl> {
    self.cache_at(CacheAt::Part { message, part })
  }

  /// The breakpoint on tool `tool`, if asked.
  pub fn tool_cache(&self, tool: usize) -> Option<CacheTtl> {
    self.cache_at(CacheAt::Tool(tool))
  }

  fn cache_at(&self, at: CacheAt) -> Option<CacheTtl> {
    self
      .cache_breakpoints
      .iter()
      .find(|breakpoint| breakpoint.at == at)
      .map(|breakpoint| breakpoint.ttl)
  }
}

/// A prompt-caching breakpoint: the prompt up to and including this point may be cached
/// (Anthropic `cache_control`, Bedrock `cachePoint`). OpenAI and Gemini cache by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBreakpoint {
  pub at: CacheAt,
  pub ttl: CacheTtl,
}

/// Where a breakpoint is, by index into the request's messages, their parts and its tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAt {
  /// After the last block of a message (its text, tool call or tool result).
  Message(usize),
  Part {
    message: usize,
    part: usize,
  },
  Tool(usize),
}

/// How long a cached prefix lives. `Default` is the vendor's default (5 minutes): `cache:
/// true` sends no `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheTtl {
  #[default]
  Default,
  FiveMinutes,
  OneHour,
}

impl CacheTtl {
  pub fn parse(ttl: &str) -> Option<CacheTtl> {
    match ttl {
      "5m" => Some(CacheTtl::FiveMinutes),
      "1h" => Some(CacheTtl::OneHour),
      _ => None,
    }
  }

  /// The `ttl` value Anthropic takes; `None` for the default (no `ttl` field).
  pub fn as_str(self) -> Option<&'static str> {
    match self {
      CacheTtl::Default => None,
      CacheTtl::FiveMinutes => Some("5m"),
      CacheTtl::OneHour => Some("1h"),
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
  Stop,
  Length,
  ToolCalls,
  ContentFilter,
}

impl FinishReason {
  pub fn as_str(self) -> &'static str {
    match self {
      FinishReason::Stop => "stop",
      FinishReason::Length => "length",
      FinishReason::ToolCalls => "tool_calls",
      FinishReason::ContentFilter => "content_filter",
    }
  }
}

/// Billable token counts. `None` in the vendor-facing decoders means "not reported";
/// here every field is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
  /// Includes cached and cache-write prompt tokens.
  pub prompt_tokens: u64,
  /// Includes reasoning / thinking tokens.
  pub completion_tokens: u64,
  pub total_tokens: u64,
  /// Of `prompt_tokens`, read from the vendor's prompt cache.
  pub cached_prompt_tokens: u64,
  /// Of `prompt_tokens`, written to the vendor's prompt cache (Anthropic).
  pub cache_write_prompt_tokens: u64,
  /// Of `completion_tokens`, spent on reasoning.
  pub reasoning_tokens: u64,
  /// Counted here with a tokenizer because the vendor sent no usage.
  pub estimated: bool,
}

impl Usage {
  pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
    Usage {
      prompt_tokens,
      completion_tokens,
      total_tokens: prompt_tokens.saturating_add(completion_tokens),
      ..Usage::default()
    }
  }

  /// For vendors that count prompt-cache reads and writes apart from the input (Anthropic,
  /// Bedrock): the prompt is billed as all three. Saturating: the counts come from the wire
  /// and must not wrap or panic.
  pub fn with_prompt_cache(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Self {
    let prompt = input.saturating_add(cache_read).saturating_add(cache_write);
    Usage {
      cached_prompt_tokens: cache_read,
      cache_write_prompt_tokens: cache_write,
      ..Usage::new(prompt, output)
    }
  }
}

/// What a provider hands back for one completed call, before the gateway adds timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
  pub id: String,
  pub model: String,
  pub content: String,
  pub refusal: Option<String>,
  pub tool_calls: Vec<ToolCall>,
  pub finish_reason: FinishReason,
  pub usage: Option<Usage>,
  /// An embeddings call's vectors, one per input in order; `None` for chat.
  pub embeddings: Option<Vec<Vec<f32>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
  pub id: String,
  pub provider: String,
  pub model: String,
  pub content: String,
  pub refusal: Option<String>,
  pub tool_calls: Vec<ToolCall>,
  pub finish_reason: FinishReason,
  pub usage: Usage,
  pub cost_usd: f64,
  pub cached: bool,
  pub latency_ms: f64,
  pub ttft_ms: Option<f64>,
  pub attempts: u32,
  pub request_id: String,
  /// An embeddings call's vectors, one per input in order; `None` for chat. Shared, so a
  /// cached answer is handed out without copying its floats.
  pub embeddings: Option<std::sync::Arc<Vec<Vec<f32>>>>,
  /// A semantic cache hit: the cosine similarity of the question it answered.
  pub cache_similarity: Option<f64>,
}

/// What a stream delivers to the caller, in order; `Done` is always last.
///
/// Every variant is at most a `String` wide (32 bytes with the tag): events wait in channel
/// slots, and tokio's channels allocate their slots 32 at a time, when the channel is made.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
  Text(String),
  ToolCall(Box<ToolCallDelta>),
  Done(Box<ChatResponse>),
  /// Bytes of a vendor's own stream, relayed as they came to a client of the same protocol
  /// (the front door's same-protocol fidelity); never delivered through the library API.
  Native(String),
}

/// A piece of a streamed tool call: the first piece of a call names it, the rest carry its
/// arguments as they come.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallDelta {
  pub index: u32,
  pub id: Option<String>,
  pub name: Option<String>,
  pub arguments_delta: String,
}

impl StreamEvent {
  pub fn tool_call(
    index: u32,
    id: Option<String>,
    name: Option<String>,
    arguments_delta: String,
  ) -> StreamEvent {
    StreamEvent::ToolCall(Box::new(ToolCallDelta {
      index,
      id,
      name,
      arguments_delta,
    }))
  }
}

/// One embeddings call: the texts to embed, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbedRequest {
  pub input: Vec<String>,
  /// Output size, for models that can shorten their vectors (OpenAI `dimensions`, Gemini
  /// `outputDimensionality`).
  pub dimensions: Option<u32>,
  pub user: Option<String>,
}

/// The answer to an embeddings call.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedResponse {
  /// One vector per input, in the order of the inputs.
  pub embeddings: std::sync::Arc<Vec<Vec<f32>>>,
  pub provider: String,
  /// The vendor's model name.
  pub model: String,
  /// `prompt_tokens` = `total_tokens`: embeddings have no output tokens.
  pub usage: Usage,
  pub cost_usd: f64,
  pub cached: bool,
  pub latency_ms: f64,
  pub attempts: u32,
  pub request_id: String,
}

/// What a call asked for: the same pipeline runs both, and the call record and the ledger
/// say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operation {
  #[default]
  Chat,
  Embeddings,
}

impl Operation {
  pub fn as_str(self) -> &'static str {
    match self {
      Operation::Chat => "chat",
      Operation::Embeddings => "embeddings",
    }
  }

  /// The name as stored; anything unknown (a row of an older version has none) is chat.
  pub fn parse(name: Option<&str>) -> Operation {
    match name {
      Some("embeddings") => Operation::Embeddings,
      _ => Operation::Chat,
    }
  }
}
