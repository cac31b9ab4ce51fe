//! The JS-facing shapes. Doc comments here become the JSDoc of `index.d.ts`.

use std::collections::HashMap;

use napi::bindgen_prelude::{Either, Either3, Null, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;
use napi_derive::napi;

/// One configured provider; its key in `providers` is the name used in "provider/model".
#[napi(object, object_to_js = false)]
pub struct ProviderConfig {
  /// 'openai' (any OpenAI-compatible server with `baseUrl`), 'anthropic', 'gemini', 'azure',
  /// 'bedrock', 'vertex', 'mock', or an OpenAI-compatible preset (kind 'openai' with the
  /// vendor's base URL and key variable): 'groq', 'mistral', 'deepseek', 'xai', 'together',
  /// 'fireworks', 'openrouter', 'cerebras', 'ollama'.
  #[napi(
    ts_type = "'openai' | 'anthropic' | 'gemini' | 'azure' | 'bedrock' | 'vertex' | 'mock' | 'groq' | 'mistral' | 'deepseek' | 'xai' | 'together' | 'fireworks' | 'openrouter' | 'cerebras' | 'ollama'"
  )]
  pub kind: String,
  /// Else the kind's variable: OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY (or
  /// GOOGLE_API_KEY) / AZURE_OPENAI_API_KEY / AWS_BEARER_TOKEN_BEDROCK, a preset's own.
  pub api_key: Option<String>,
  /// A key pool: calls use the first key that is not resting; a key answered 429 rests for
  /// its retry delay, one answered 401/403 until restart.
  pub api_keys: Option<Vec<String>>,
  /// As the official SDKs take it: OpenAI's includes `/v1`, Anthropic's and Gemini's do not.
  pub base_url: Option<String>,
  /// Models this provider advertises in `models()`.
  pub models: Option<Vec<String>>,
  /// Extra headers sent with every request.
  pub headers: Option<HashMap<String, String>>,
  /// OpenAI organization id (`OpenAI-Organization` header).
  pub organization: Option<String>,
  /// Deadline for a whole call to this provider, retries included (> 0; default: the gateway's).
  pub timeout_ms: Option<f64>,
  /// Further attempts after a retryable failure (a whole number >= 0; default: the gateway's).
  pub max_retries: Option<f64>,
  /// `mock` only: delay before each streamed chunk (default 15 ms).
  pub mock_chunk_delay_ms: Option<f64>,
  /// A PEM file of CA certificates to trust for this provider, besides the bundled web
  /// roots, the system store and `NODE_EXTRA_CA_CERTS` (a private CA, a corporate proxy).
  pub ca_cert_path: Option<String>,
  /// kind 'openai': the wire API used upstream, 'chat' (default, `/chat/completions`) or
  /// 'responses' (`/responses`, for models that exist only there).
  #[napi(ts_type = "'chat' | 'responses'")]
  pub api: Option<String>,
  /// azure, classic URLs: `/openai/deployments/{deployment}/…` (with `apiVersion`).
  pub deployment: Option<String>,
  /// azure, classic URLs: the `api-version` query (with `deployment`).
  pub api_version: Option<String>,
  /// azure: an Entra ID token sent as Bearer instead of `api-key`: a string, or an async
  /// function asked before every request (it caches and refreshes as it sees fit).
  #[napi(ts_type = "string | (() => Promise<string>)")]
  pub azure_ad_token: Option<Either<String, TokenFunction>>,
  /// bedrock: the AWS region (else AWS_REGION / AWS_DEFAULT_REGION).
  pub region: Option<String>,
  /// bedrock: credentials instead of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
  pub credentials: Option<AwsCredentials>,
  /// vertex: the Google Cloud project.
  pub project: Option<String>,
  /// vertex: the region (e.g. 'us-central1', or 'global').
  pub location: Option<String>,
  /// vertex: a service-account key file (else GOOGLE_APPLICATION_CREDENTIALS).
  pub credentials_path: Option<String>,
}

/// An async JS function returning a token, callable from any thread; weak, so it never
/// keeps the process alive.
pub type TokenFunction = ThreadsafeFunction<(), Promise<String>, (), Status, false, true>;

/// AWS credentials for a `bedrock` provider.
#[napi(object, object_to_js = false)]
pub struct AwsCredentials {
  pub access_key_id: String,
  pub secret_access_key: String,
  pub session_token: Option<String>,
}

/// Where Responses kept with `store: true` live (for `previous_response_id`, GET, DELETE).
#[napi(object, object_to_js = false)]
pub struct ResponsesOptions {
  /// Keep them in Redis, so that any process continues a conversation (default: this process's memory).
  pub redis_url: Option<String>,
  /// Prepended to every Redis key (default 'ferrogate:responses:').
  pub prefix: Option<String>,
  /// How long a stored response lives (default 86400).
  pub ttl_seconds: Option<f64>,
  /// In memory: most responses kept; the oldest go first (default 10000).
  pub max_entries: Option<f64>,
  /// In memory: most bytes kept in all, and the largest one response stored anywhere (default 64 MiB).
  pub max_bytes: Option<f64>,
}

/// One deployment behind a route alias.
#[napi(object, object_to_js = false)]
pub struct RouteTarget {
  /// A key of `providers`.
  pub provider: String,
  /// The vendor's model name.
  pub model: String,
  /// Share of traffic relative to the route's other targets (default 1).
  pub weight: Option<f64>,
  /// Most calls in flight on this target; more wait in the admission queue.
  pub max_concurrent: Option<f64>,
  /// Whether active health checks may call this target (default true; checks are off
  /// unless `routing.healthCheckIntervalMs` is set).
  pub health_check: Option<bool>,
}

/// Circuit breaker, health check and admission queue parameters for every route.
#[napi(object, object_to_js = false)]
pub struct RoutingOptions {
  /// A target is ejected after this many failures in a row (default 5).
  pub consecutive_failures: Option<f64>,
  /// ...or when more than this share of its last `errorRateWindow` calls failed (default 0.5).
  pub error_rate: Option<f64>,
  /// Calls in the error-rate window (default 20; judged from min(window, 10) calls on).
  pub error_rate_window: Option<f64>,
  /// How long an ejected target sits out before one probe call (default 30000).
  pub cooldown_ms: Option<f64>,
  /// Active health checks: a 1-token request to every target this often. Off by default.
  pub health_check_interval_ms: Option<f64>,
  /// Calls that may wait per route when every target is at maxConcurrent (default 1024).
  pub queue_limit: Option<f64>,
}

#[napi(object, object_to_js = false)]
pub struct GatewayOptions {
  pub providers: HashMap<String, ProviderConfig>,
  /// Route alias -> deployments: load balancing, fallbacks, circuit breaking.
  pub routes: Option<HashMap<String, Vec<RouteTarget>>>,
  pub routing: Option<RoutingOptions>,
  /// Deadline for a whole call, retries included (> 0; default 60000).
  pub timeout_ms: Option<f64>,
  /// Further attempts after a retryable failure (a whole number >= 0; default 3).
  pub max_retries: Option<f64>,
  /// First backoff step in ms when the vendor gives no wait hint (default 500). Before retry n
  /// (1, 2, …) the step is this × 2^(n-1), capped at 8 s; the wait is a uniformly random time
  /// between half the step and the whole step.
  pub retry_base_delay_ms: Option<f64>,
  /// Where a model with no "provider/" prefix goes (a provider name), so OpenAI clients can send plain model names.
  pub default_provider: Option<String>,
  /// The Responses store (`store: true`, `previous_response_id`): in memory unless `redisUrl`.
  pub responses: Option<ResponsesOptions>,
  /// Checks on every call's prompt before it leaves (input) and on its answer before it
  /// reaches the caller (output), on every ingress.
  pub guardrails: Option<GuardrailsOptions>,
}

/// `GatewayOptions.guardrails`: each list runs in order.
#[napi(object, object_to_js = false)]
pub struct GuardrailsOptions {
  pub input: Option<Vec<GuardrailOptions>>,
  pub output: Option<Vec<GuardrailOptions>>,
}

/// One guardrail: `{ type: 'pii', entities?, action }`, `{ type: 'regex', pattern, action }`,
/// `{ type: 'maxInputTokens', limit, action? }` or `{ type: 'custom', check, timeoutMs?, onError? }`.
#[napi(object, object_to_js = false)]
pub struct GuardrailOptions {
  #[napi(ts_type = "'pii' | 'regex' | 'maxInputTokens' | 'custom'")]
  pub r#type: String,
  /// Its name on findings, metrics and errors (default: the type).
  pub name: Option<String>,
  /// type 'pii': which entities (default all).
  #[napi(
    ts_type = "Array<'email' | 'phone' | 'credit_card' | 'iban' | 'us_ssn' | 'ip_address' | 'api_key'>"
  )]
  pub entities: Option<Vec<String>>,
  /// 'redact' replaces each match (`[CREDIT_CARD]`, `[REDACTED]` for a regex), 'block' fails
  /// the call with GUARDRAIL_BLOCKED, 'flag' only records. maxInputTokens: 'block' (default) or 'flag'.
  #[napi(ts_type = "'redact' | 'block' | 'flag'")]
  pub action: Option<String>,
  /// type 'regex': Rust `regex` syntax, which cannot backtrack (linear time on any input).
  pub pattern: Option<String>,
  /// type 'maxInputTokens': the most prompt tokens a call may send.
  pub limit: Option<f64>,
  /// type 'custom': how long `check` may take (default 1000).
  pub timeout_ms: Option<f64>,
  /// type 'custom': what a check that throws, rejects or times out means (default 'allow').
  #[napi(ts_type = "'allow' | 'block'")]
  pub on_error: Option<String>,
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
  /// A prompt-caching breakpoint here: `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
  /// `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
  #[napi(ts_type = "boolean | CacheControl")]
  pub cache: Option<Either<bool, CacheControl>>,
}

/// A prompt-caching breakpoint with its lifetime.
#[napi(object, object_to_js = false)]
pub struct CacheControl {
  /// How long the cached prefix lives (default: the vendor's, 5 minutes).
  #[napi(ts_type = "'5m' | '1h'")]
  pub ttl: Option<String>,
}

#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
  pub id: String,
  pub name: String,
  /// JSON text of the arguments, as the model produced it.
  pub arguments: String,
  /// Gemini's opaque signature of the model's reasoning behind this call; send the call
  /// back unchanged (Gemini 3 rejects a later turn without it).
  #[serde(skip_serializing_if = "Option::is_none")]
  pub thought_signature: Option<String>,
}

#[napi(object, object_to_js = false)]
pub struct Message {
  #[napi(ts_type = "'system' | 'user' | 'assistant' | 'tool'")]
  pub role: String,
  /// Required, except on an assistant message that carries `toolCalls` (then it may be
  /// absent or null, as OpenAI sends it).
  #[napi(ts_type = "string | Array<ContentPart> | null")]
  pub content: Option<Either3<String, Vec<ContentPart>, Null>>,
  /// For role 'tool': the id of the call this message answers.
  pub tool_call_id: Option<String>,
  /// For role 'assistant': the calls the model made.
  pub tool_calls: Option<Vec<ToolCall>>,
  /// A prompt-caching breakpoint after this message's last block: `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
  /// `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
  #[napi(ts_type = "boolean | CacheControl")]
  pub cache: Option<Either<bool, CacheControl>>,
}

#[napi(object, object_to_js = false)]
pub struct ToolDefinition {
  pub name: String,
  pub description: Option<String>,
  /// JSON Schema of the arguments.
  #[napi(ts_type = "Record<string, unknown>")]
  pub parameters: Option<serde_json::Value>,
  /// A prompt-caching breakpoint after this tool (it caches the tools up to it): `true`, or `{ ttl: '5m' | '1h' }` (Anthropic
  /// `cache_control`, Bedrock `cachePoint`; OpenAI and Gemini cache by themselves).
  #[napi(ts_type = "boolean | CacheControl")]
  pub cache: Option<Either<bool, CacheControl>>,
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
  /// "provider/model", e.g. "openai/gpt-4o-mini", or a route alias.
  pub model: String,
  pub messages: Vec<Message>,
  pub temperature: Option<f64>,
  pub top_p: Option<f64>,
  /// A whole number >= 0.
  pub max_tokens: Option<f64>,
  /// One stop sequence or several, as OpenAI takes them.
  #[napi(ts_type = "string | Array<string>")]
  pub stop: Option<Either<String, Vec<String>>>,
  pub response_format: Option<ResponseFormat>,
  pub tools: Option<Vec<ToolDefinition>>,
  #[napi(ts_type = "'auto' | 'none' | 'required' | { name: string }")]
  pub tool_choice: Option<Either<String, NamedToolChoice>>,
  /// Key for rate limits, budgets and cost reports; sent to the vendor as its user id.
  pub user: Option<String>,
  /// Not sent to the vendor; handed to `onCall` with the call's record.
  pub metadata: Option<HashMap<String, String>>,
  /// `false` skips the gateway's cache for this call (no lookup, nothing stored).
  pub cache: Option<bool>,
  /// Deadline for this call, retries included (> 0).
  pub timeout_ms: Option<f64>,
  /// Further attempts after a retryable failure (a whole number >= 0).
  pub max_retries: Option<f64>,
  /// Admission order when every target of a route is busy: higher first (default 0).
  pub priority: Option<f64>,
  /// OpenAI `prompt_cache_key`: requests that share it share a prompt cache.
  pub prompt_cache_key: Option<String>,
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
  /// A semantic cache hit: the cosine similarity of the question it answered.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub cache_similarity: Option<f64>,
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
  /// GUARDRAIL_BLOCKED: the guardrail that blocked the call.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub guardrail: Option<String>,
  /// GUARDRAIL_BLOCKED: what it found ('credit_card', 'regex', 'tokens', 'custom', 'timeout', …).
  #[serde(skip_serializing_if = "Option::is_none")]
  pub entity: Option<String>,
}

/// A call whose latency was an outlier for its provider/model (EWMA z-score).
#[napi(object)]
pub struct LatencyAnomaly {
  pub provider: String,
  pub model: String,
  pub latency_ms: f64,
  /// The moving average latency before this call.
  pub expected_ms: f64,
  pub z_score: f64,
  /// 'warning' (z >= 3) or 'critical' (z >= 6).
  #[napi(ts_type = "'warning' | 'critical'")]
  pub severity: String,
  /// Unix ms.
  pub at: f64,
}

/// One finished call, handed to `onCall`.
#[napi(object)]
pub struct CallRecord {
  /// What the call asked for: a chat completion or embeddings.
  #[napi(ts_type = "'chat' | 'embeddings'")]
  pub operation: String,
  pub request_id: String,
  /// The model as the caller asked for it.
  pub model: String,
  /// The configured provider name; absent when the model did not resolve.
  pub provider: Option<String>,
  /// The vendor's model name.
  pub vendor_model: Option<String>,
  pub route: Option<String>,
  pub user: Option<String>,
  pub metadata: Option<HashMap<String, String>>,
  #[napi(ts_type = "'ok' | 'error' | 'aborted'")]
  pub outcome: String,
  #[napi(ts_type = "ErrorCode")]
  pub error_code: Option<String>,
  /// Zero for a failed call.
  pub usage: Usage,
  pub cost_usd: f64,
  /// No upstream call was made (a cache hit, or joined onto an identical call).
  pub cached: bool,
  /// A semantic cache hit: the cosine similarity of the question it answered.
  pub cache_similarity: Option<f64>,
  pub latency_ms: f64,
  pub ttft_ms: Option<f64>,
  /// Upstream tries (0 for a cached answer).
  pub attempts: u32,
  /// The client protocol of a call that came through the front door (`gatewayRouter`,
  /// `ferrogate serve`): 'chat' | 'responses' | 'messages' | 'embeddings'.
  pub ingress: Option<String>,
  /// What a protocol translation left out (the call went on without it).
  pub warnings: Option<Vec<String>>,
  /// What the guardrails found (never the matched text).
  pub guardrails: Option<Vec<GuardrailFinding>>,
}

/// How often a guardrail found an entity in one call, and what it did.
#[napi(object)]
pub struct GuardrailFinding {
  pub guardrail: String,
  pub entity: String,
  #[napi(ts_type = "'redact' | 'block' | 'flag'")]
  pub action: String,
  pub count: f64,
}

#[napi(object)]
pub struct CallsByOutcome {
  pub ok: f64,
  pub error: f64,
  pub aborted: f64,
}

/// `gateway.stats()`: counters since the gateway was created.
#[napi(object)]
pub struct GatewayStats {
  pub calls_by_outcome: CallsByOutcome,
  /// Failed and aborted calls by error code (codes seen at least once).
  #[napi(ts_type = "Partial<Record<ErrorCode, number>>")]
  pub calls_by_error_code: HashMap<String, f64>,
  /// Calls answered from the cache.
  pub cache_hits: f64,
  /// Calls that went upstream through the cache.
  pub cache_misses: f64,
  /// Calls that joined an identical call already in flight.
  pub cache_coalesced: f64,
  /// Calls our RateLimiter refused (vendor 429s are in callsByErrorCode only).
  pub limiter_refusals: f64,
  /// Calls refused by a hard budget (BUDGET_EXCEEDED).
  pub budget_refusals: f64,
  /// Calls the cost tracker had no price for.
  pub unpriced_calls: f64,
  /// `onCall` threw or its promise rejected.
  pub hook_errors: f64,
  /// Records not delivered to `onCall` because its queue was full.
  pub hook_dropped: f64,
  /// Calls of unconfigured models that metrics counted under `model="other"` (past the
  /// first 32 such models).
  pub model_label_overflow: f64,
}

/// One route target's state.
#[napi(object)]
pub struct DeploymentHealth {
  pub route: String,
  pub provider: String,
  pub model: String,
  #[napi(ts_type = "'healthy' | 'ejected' | 'half_open'")]
  pub state: String,
  pub in_flight: u32,
  /// Calls waiting in the route's admission queue (the same for every target of a route).
  pub queued: u32,
  /// EWMA of whole-call latency (0 before the first success).
  pub ewma_latency_ms: f64,
  /// EWMA of time to first token over streamed calls.
  pub ewma_ttft_ms: Option<f64>,
  /// Failed share of the recent calls (the error-rate window).
  pub error_rate: f64,
  /// Epoch ms until which the target is ejected or cooling down after a 429.
  pub ejected_until: Option<f64>,
  /// The provider's key pool (`apiKeys`), each key by a short hash of it, never the key.
  pub keys: Option<Vec<KeyHealth>>,
}

/// One key of a provider's pool.
#[napi(object)]
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyHealth {
  /// A short hash of the key ("k-1a2b3c4d").
  pub id: String,
  #[napi(ts_type = "'active' | 'resting' | 'revoked'")]
  pub state: String,
  /// Epoch ms until which a resting key rests.
  pub resting_until: Option<f64>,
}

/// `gateway.embed()`'s request, without `signal` (the JS wrapper handles it).
#[napi(object, object_to_js = false)]
pub struct EmbedRequest {
  /// A route alias or "provider/model".
  pub model: String,
  /// One text, or several (one vector each, in order).
  #[napi(ts_type = "string | string[]")]
  pub input: Either<String, Vec<String>>,
  /// Output vector size, for models that can shorten theirs (a whole number > 0).
  pub dimensions: Option<f64>,
  /// Key for rate limits, budgets and cost reports; sent to the vendor as its user id.
  pub user: Option<String>,
  /// Passed through to `onCall`.
  pub metadata: Option<HashMap<String, String>>,
  /// `false` skips the gateway's cache for this call.
  pub cache: Option<bool>,
  /// Deadline for this call, retries included (> 0).
  pub timeout_ms: Option<f64>,
  /// Further attempts after a retryable failure (a whole number >= 0).
  pub max_retries: Option<f64>,
}

#[napi(object)]
pub struct EmbedUsage {
  pub prompt_tokens: f64,
  /// Equal to `promptTokens`: embeddings have no output tokens.
  pub total_tokens: f64,
}

/// `gateway.embed()`'s answer.
#[napi(object, object_from_js = false)]
pub struct EmbedResponse {
  /// One vector per input, in the order of the inputs.
  pub embeddings: Vec<napi::bindgen_prelude::Float32Array>,
  /// The vendor's model name.
  pub model: String,
  /// The configured provider that answered.
  pub provider: String,
  pub usage: EmbedUsage,
  /// 0 for a cached answer or an unpriced model.
  pub cost_usd: f64,
  /// Answered from the gateway's cache.
  pub cached: bool,
  pub request_id: String,
  pub latency_ms: f64,
  /// Upstream tries (0 for a cached answer).
  pub attempts: u32,
}

/// How a native `embed` call ended: exactly one of the two is set.
#[napi(object, object_from_js = false)]
pub struct EmbedOutcome {
  pub response: Option<EmbedResponse>,
  pub error: Option<ErrorInfo>,
  /// The trace report of a call given a `traceparent` (what its spans are made from).
  pub trace: Option<serde_json::Value>,
}
