//! The JS-facing shapes. Doc comments here become the JSDoc of `index.d.ts`.

use std::collections::HashMap;

use napi::bindgen_prelude::Either;
use napi_derive::napi;

/// One configured provider; its key in `providers` is the name used in "provider/model".
#[napi(object, object_to_js = false)]
pub struct ProviderConfig {
  /// 'openai' (any OpenAI-compatible server with `baseUrl`), 'anthropic', 'gemini' or 'mock'.
  #[napi(ts_type = "'openai' | 'anthropic' | 'gemini' | 'mock'")]
  pub kind: String,
  /// Else OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY (or GOOGLE_API_KEY).
  pub api_key: Option<String>,
  /// As the official SDKs take it: OpenAI's includes `/v1`, Anthropic's and Gemini's do not.
  pub base_url: Option<String>,
  /// Models this provider advertises in `models()`.
  pub models: Option<Vec<String>>,
  /// Extra headers sent with every request.
  pub headers: Option<HashMap<String, String>>,
  /// OpenAI organization id (`OpenAI-Organization` header).
  pub organization: Option<String>,
  pub timeout_ms: Option<f64>,
  pub max_retries: Option<u32>,
  /// `mock` only: delay before each streamed chunk (default 15 ms).
  pub mock_chunk_delay_ms: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct GatewayOptions {
  pub providers: HashMap<String, ProviderConfig>,
  /// Deadline for a whole call, retries included (default 60000).
  pub timeout_ms: Option<f64>,
  /// Further attempts after a retryable failure (default 3).
  pub max_retries: Option<u32>,
  /// First backoff step in ms when the vendor gives no Retry-After (default 500; doubles per attempt, with jitter).
  pub retry_base_delay_ms: Option<f64>,
}

/// `{ type: 'text', text }`, `{ type: 'image', data, mimeType }` (base64) or `{ type: 'image_url', url }`.
#[napi(object, object_to_js = false)]
pub struct ContentPart {
  #[napi(ts_type = "'text' | 'image' | 'image_url'")]
  pub r#type: String,
  pub text: Option<String>,
  /// Base64 image bytes (type 'image').
  pub data: Option<String>,
  pub mime_type: Option<String>,
  /// type 'image_url': an https or data: URL.
  pub url: Option<String>,
}

#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
  pub id: String,
  pub name: String,
  /// JSON text of the arguments, as the model produced it.
  pub arguments: String,
}

#[napi(object, object_to_js = false)]
pub struct Message {
  #[napi(ts_type = "'system' | 'user' | 'assistant' | 'tool'")]
  pub role: String,
  pub content: Option<Either<String, Vec<ContentPart>>>,
  /// For role 'tool': the id of the call this message answers.
  pub tool_call_id: Option<String>,
  /// For role 'assistant': the calls the model made.
  pub tool_calls: Option<Vec<ToolCall>>,
}

#[napi(object, object_to_js = false)]
pub struct ToolDefinition {
  pub name: String,
  pub description: Option<String>,
  /// JSON Schema of the arguments.
  #[napi(ts_type = "Record<string, unknown>")]
  pub parameters: Option<serde_json::Value>,
}

#[napi(object, object_to_js = false)]
pub struct ResponseFormat {
  #[napi(ts_type = "'text' | 'json_object' | 'json_schema'")]
  pub r#type: String,
  /// json_schema: the schema's name.
  pub name: Option<String>,
  /// json_schema: the JSON Schema the answer must follow.
  #[napi(ts_type = "Record<string, unknown>")]
  pub schema: Option<serde_json::Value>,
}

#[napi(object, object_to_js = false)]
pub struct NamedToolChoice {
  pub name: String,
}

#[napi(object, object_to_js = false)]
pub struct ChatRequest {
  /// "provider/model", e.g. "openai/gpt-4o-mini".
  pub model: String,
  pub messages: Vec<Message>,
  pub temperature: Option<f64>,
  pub top_p: Option<f64>,
  pub max_tokens: Option<u32>,
  pub stop: Option<Vec<String>>,
  pub response_format: Option<ResponseFormat>,
  pub tools: Option<Vec<ToolDefinition>>,
  #[napi(ts_type = "'auto' | 'none' | 'required' | { name: string }")]
  pub tool_choice: Option<Either<String, NamedToolChoice>>,
  /// Key for rate limits, budgets and cost reports; sent to the vendor as its user id.
  pub user: Option<String>,
  pub metadata: Option<HashMap<String, String>>,
  /// Deadline for this call, retries included.
  pub timeout_ms: Option<f64>,
  pub max_retries: Option<u32>,
}

#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
  /// Includes cached and cache-write prompt tokens.
  pub prompt_tokens: f64,
  /// Includes reasoning / thinking tokens.
  pub completion_tokens: f64,
  pub total_tokens: f64,
  /// Counted here (tiktoken) because the vendor sent no usage.
  pub estimated: bool,
  pub cached_prompt_tokens: f64,
  pub cache_write_prompt_tokens: f64,
  pub reasoning_tokens: f64,
}

#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatResponse {
  pub id: String,
  /// The configured provider name (the key in `providers`).
  pub provider: String,
  pub model: String,
  pub content: String,
  /// OpenAI's refusal text, when the model refused.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub refusal: Option<String>,
  pub tool_calls: Vec<ToolCall>,
  #[napi(ts_type = "'stop' | 'length' | 'tool_calls' | 'content_filter'")]
  pub finish_reason: String,
  pub usage: Usage,
  pub cost_usd: f64,
  /// No upstream call was made for this request.
  pub cached: bool,
  pub latency_ms: f64,
  /// Time to the first streamed event.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub ttft_ms: Option<f64>,
  pub attempts: u32,
  /// ferrogate's id for this call (also on errors).
  pub request_id: String,
}

/// A streamed event as the native layer delivers it; see `StreamEvent` for the union.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NativeStreamEvent {
  #[napi(ts_type = "'text' | 'tool_call' | 'done'")]
  pub r#type: String,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub text: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub index: Option<u32>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub id: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub name: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub arguments_delta: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub response: Option<ChatResponse>,
}

/// The fields of a rejected call; the JS layer throws them as a `FerrogateError`.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
  #[napi(ts_type = "ErrorCode")]
  pub code: String,
  /// The HTTP status a server should answer with.
  pub status: u32,
  pub message: String,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub provider: Option<String>,
  #[serde(skip_serializing_if = "Option::is_none")]
  pub retry_after_ms: Option<f64>,
  pub request_id: String,
  /// The vendor's request id, when it sent one.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub upstream_request_id: Option<String>,
  /// Lower-level detail (transport error, vendor error type).
  #[serde(skip_serializing_if = "Option::is_none")]
  pub cause: Option<String>,
}
