//! The call pipeline: resolve the provider → attempt (HTTP or mock) with retries under
//! one deadline → assemble the response. Later stages (limits and budget, cache,
//! routing, ledger) wrap `execute` without changing the provider layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorCode, GatewayError, Result};
use crate::providers::anthropic::{self, Anthropic};
use crate::providers::gemini::{self, Gemini};
use crate::providers::mock::{self, MockConfig};
use crate::providers::openai::{self, OpenAi};
use crate::providers::{Adapter, StreamSession};
use crate::retry::backoff;
use crate::secret::{redact, Secret};
use crate::tokens::encoding_for;
use crate::types::{ChatRequest, ChatResponse, Completion, StreamEvent, ToolCall, Usage};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_RETRIES: u32 = 3;
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(500);
/// A non-streamed answer larger than this is refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Error bodies are only read this far: enough for any vendor's message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
  pub name: String,
  pub kind: String,
  pub api_key: Option<String>,
  pub base_url: Option<String>,
  pub models: Vec<String>,
  pub headers: Vec<(String, String)>,
  pub organization: Option<String>,
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
  pub mock_chunk_delay: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
  pub providers: Vec<ProviderConfig>,
  pub timeout: Duration,
  pub max_retries: u32,
  /// First backoff step; doubles per attempt.
  pub retry_base: Duration,
}

impl Default for GatewayConfig {
  fn default() -> Self {
    GatewayConfig {
      providers: Vec::new(),
      timeout: DEFAULT_TIMEOUT,
      max_retries: DEFAULT_MAX_RETRIES,
      retry_base: DEFAULT_RETRY_BASE,
    }
  }
}

/// Per-call overrides from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
  pub timeout: Option<Duration>,
  pub max_retries: Option<u32>,
}

enum Backend {
  Http(Box<dyn Adapter>),
  Mock(MockConfig),
}

struct Provider {
  name: String,
  backend: Backend,
  timeout: Option<Duration>,
  max_retries: Option<u32>,
  models: Vec<String>,
}

pub struct Gateway {
  providers: HashMap<String, Arc<Provider>>,
  http: reqwest::Client,
  timeout: Duration,
  max_retries: u32,
  retry_base: Duration,
  secrets: Vec<Secret>,
}

/// Where streamed events go; `None` for a plain chat call. Items are `Result`s so that
/// whoever runs the call can end the same channel with its failure.
pub type EventSender = mpsc::Sender<Result<StreamEvent>>;
pub type EventSink = Option<EventSender>;

/// When the first event reached the caller. Once anything did, a retry would repeat
/// it, so none happens.
#[derive(Default)]
struct Progress {
  first_event_at: OnceLock<Instant>,
}

impl Progress {
  fn mark_delivered(&self) {
    let _ = self.first_event_at.set(Instant::now());
  }

  fn delivered(&self) -> bool {
    self.first_event_at.get().is_some()
  }
}

/// How the call went, for the response.
struct CallRecord {
  started: Instant,
  ttft: Option<Duration>,
  attempts: u32,
}

impl Gateway {
  pub fn new(config: GatewayConfig) -> Result<Gateway> {
    let mut providers = HashMap::new();
    let mut secrets = Vec::new();
    for provider in config.providers {
      if provider.name.is_empty() {
        return Err(GatewayError::config("a provider needs a non-empty name"));
      }
      let built = build_provider(&provider, &mut secrets)?;
      providers.insert(provider.name.clone(), Arc::new(built));
    }
    let http = reqwest::Client::builder()
      .tcp_nodelay(true)
      .pool_idle_timeout(Duration::from_secs(90))
      .connect_timeout(Duration::from_secs(10))
      .build()
      .map_err(|e| GatewayError::config(format!("could not create the HTTP client: {e}")))?;
    Ok(Gateway {
      providers,
      http,
      timeout: config.timeout,
      max_retries: config.max_retries,
      retry_base: config.retry_base,
      secrets,
    })
  }

  /// "provider/model" for every model a provider advertises.
  pub fn models(&self) -> Vec<String> {
    let mut models: Vec<String> = self
      .providers
      .values()
      .flat_map(|p| p.models.iter().map(move |m| format!("{}/{m}", p.name)))
      .collect();
    models.sort();
    models
  }

  /// "provider/model" → the provider and the vendor's model name. Provider names may
  /// themselves contain '/', so the longest configured prefix wins.
  fn resolve(&self, model: &str) -> Result<(Arc<Provider>, String)> {
    let best = self
      .providers
      .iter()
      .filter(|(name, _)| {
        model.len() > name.len() + 1
          && model.starts_with(name.as_str())
          && model.as_bytes()[name.len()] == b'/'
      })
      .max_by_key(|(name, _)| name.len());
    match best {
      Some((name, provider)) => Ok((provider.clone(), model[name.len() + 1..].to_string())),
      None => {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort();
        Err(GatewayError::not_found(format!(
          "no provider for model '{model}': use \"provider/model\" with one of [{}]",
          names.join(", ")
        )))
      }
    }
  }

  /// Runs one call to completion. `model` is "provider/model"; `req.model` is ignored.
  pub async fn execute(
    &self,
    model: &str,
    mut req: ChatRequest,
    options: CallOptions,
    sink: EventSink,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Result<ChatResponse> {
    let started = Instant::now();
    let (provider, vendor_model) = self.resolve(model)?;
    req.model = vendor_model;
    let timeout = options.timeout.or(provider.timeout).unwrap_or(self.timeout);
    let max_retries = options
      .max_retries
      .or(provider.max_retries)
      .unwrap_or(self.max_retries);
    let now = tokio::time::Instant::now();
    // A timeout too large to add is no deadline at all.
    let deadline = now
      .checked_add(timeout)
      .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
    let attempts = AtomicU32::new(0);
    let progress = Progress::default();

    let work = async {
      loop {
        let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let error = match self.attempt(&provider, &req, &sink, &progress).await {
          Ok(completion) => return Ok(completion),
          Err(error) => error,
        };
        let may_retry = error.retryable && attempt <= max_retries && !progress.delivered();
        if !may_retry {
          return Err(error);
        }
        let wait = error
          .retry_after
          .unwrap_or_else(|| backoff(self.retry_base, attempt - 1));
        // Waiting past the deadline only turns a clear vendor error into a timeout.
        match tokio::time::Instant::now().checked_add(wait) {
          Some(resume) if resume < deadline => {}
          _ => return Err(error),
        }
        tokio::time::sleep(wait).await;
      }
    };
    let outcome = tokio::select! {
      biased;
      _ = cancel.cancelled() => Err(GatewayError::aborted()),
      result = tokio::time::timeout_at(deadline, work) => {
        result.unwrap_or_else(|_| Err(GatewayError::timeout(timeout)))
      }
    };
    let completion = outcome.map_err(|e| e.with_provider(&provider.name))?;
    let record = CallRecord {
      started,
      ttft: progress.first_event_at.get().map(|at| *at - started),
      attempts: attempts.load(Ordering::SeqCst),
    };
    Ok(response(
      &provider.name,
      &req,
      completion,
      record,
      request_id,
    ))
  }

  /// Removes every configured key (and key-shaped text) from an error bound for JS.
  pub fn redact_error(&self, mut error: GatewayError) -> GatewayError {
    error.message = redact(&error.message, &self.secrets);
    error.cause = error.cause.map(|cause| redact(&cause, &self.secrets));
    error
  }

  async fn attempt(
    &self,
    provider: &Provider,
    req: &ChatRequest,
    sink: &EventSink,
    progress: &Progress,
  ) -> Result<Completion> {
    match &provider.backend {
      Backend::Mock(config) => mock_attempt(*config, req, sink, progress).await,
      Backend::Http(adapter) => {
        self
          .http_attempt(adapter.as_ref(), req, sink, progress)
          .await
      }
    }
  }

  async fn http_attempt(
    &self,
    adapter: &dyn Adapter,
    req: &ChatRequest,
    sink: &EventSink,
    progress: &Progress,
  ) -> Result<Completion> {
    let vendor = adapter.vendor();
    let stream = sink.is_some();
    let call = adapter.build(req, stream)?;
    let body = serde_json::to_vec(&call.body)
      .map_err(|e| GatewayError::invalid_request(format!("request is not serializable: {e}")))?;
    let mut builder = self
      .http
      .post(&call.url)
      .header("content-type", "application/json")
      .body(body);
    if stream {
      builder = builder.header("accept", "text/event-stream");
    }
    for (name, value) in &call.headers {
      builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder
      .send()
      .await
      .map_err(|e| transport_error(vendor, &e))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
      let headers = response.headers().clone();
      let body = read_body(vendor, response, MAX_ERROR_BODY_BYTES, false).await?;
      return Err(adapter.parse_error(status, &headers, &body));
    }
    let is_event_stream = response
      .headers()
      .get("content-type")
      .and_then(|v| v.to_str().ok())
      .is_some_and(|v| v.contains("text/event-stream"));
    if !(stream && is_event_stream) {
      let body = read_body(vendor, response, MAX_RESPONSE_BYTES, true).await?;
      let completion = adapter.parse_response(req, &body)?;
      // A compatible server that ignored `stream: true` still streams, in one piece.
      if let Some(sink) = sink {
        forward_whole(&completion, sink, progress).await?;
      }
      return Ok(completion);
    }
    let Some(sink) = sink else {
      return Err(GatewayError::protocol("internal: stream without a sink"));
    };
    let mut session = StreamSession::new(adapter.stream_decoder(req));
    let mut bytes = response.bytes_stream();
    while !session.is_done() {
      match bytes.next().await {
        Some(Ok(chunk)) => {
          let events = session.push(&chunk)?;
          forward(events, sink, progress).await?;
        }
        Some(Err(e)) => return Err(stream_broken(vendor, &e)),
        None => break,
      }
    }
    let (events, completion) = session.finish()?;
    forward(events, sink, progress).await?;
    Ok(completion)
  }
}

/// Sends queued events; the bounded channel makes a slow consumer slow the upstream read
/// instead of growing memory.
async fn forward(events: Vec<StreamEvent>, sink: &EventSender, progress: &Progress) -> Result<()> {
  for event in events {
    send(sink, event, progress).await?;
  }
  Ok(())
}

async fn send(sink: &EventSender, event: StreamEvent, progress: &Progress) -> Result<()> {
  progress.mark_delivered();
  sink
    .send(Ok(event))
    .await
    .map_err(|_| GatewayError::aborted())
}

async fn forward_whole(
  completion: &Completion,
  sink: &EventSender,
  progress: &Progress,
) -> Result<()> {
  if !completion.content.is_empty() {
    send(
      sink,
      StreamEvent::Text(completion.content.clone()),
      progress,
    )
    .await?;
  }
  forward_tool_calls(&completion.tool_calls, sink, progress).await
}

/// Whole tool calls as one event each (vendors and the mock that do not stream them).
async fn forward_tool_calls(
  calls: &[ToolCall],
  sink: &EventSender,
  progress: &Progress,
) -> Result<()> {
  for (index, call) in calls.iter().enumerate() {
    let event = StreamEvent::ToolCall {
      index: index as u32,
      id: Some(call.id.clone()),
      name: Some(call.name.clone()),
      arguments_delta: call.arguments.clone(),
    };
    send(sink, event, progress).await?;
  }
  Ok(())
}

async fn mock_attempt(
  config: MockConfig,
  req: &ChatRequest,
  sink: &EventSink,
  progress: &Progress,
) -> Result<Completion> {
  let (chunks, completion) = mock::respond(req);
  if let Some(sink) = sink {
    for chunk in chunks {
      tokio::time::sleep(config.chunk_delay).await;
      send(sink, StreamEvent::Text(chunk), progress).await?;
    }
    forward_tool_calls(&completion.tool_calls, sink, progress).await?;
  }
  Ok(completion)
}

async fn read_body(
  vendor: &str,
  response: reqwest::Response,
  limit: usize,
  fail_when_over: bool,
) -> Result<Vec<u8>> {
  let mut body = Vec::new();
  let mut stream = response.bytes_stream();
  while let Some(chunk) = stream.next().await {
    let chunk = chunk.map_err(|e| stream_broken(vendor, &e))?;
    if body.len() + chunk.len() > limit {
      if fail_when_over {
        return Err(GatewayError::protocol(format!(
          "{vendor} response is larger than {limit} bytes"
        )));
      }
      body.extend_from_slice(&chunk[..limit - body.len()]);
      break;
    }
    body.extend_from_slice(&chunk);
  }
  Ok(body)
}

/// The request never got an answer: worth another attempt.
fn transport_error(vendor: &str, error: &reqwest::Error) -> GatewayError {
  let detail = transport_detail(error);
  if error.is_connect() {
    GatewayError::new(
      ErrorCode::UpstreamUnavailable,
      format!("could not connect to {vendor}"),
    )
    .retryable(true)
    .with_cause(detail)
  } else {
    GatewayError::protocol(format!("request to {vendor} failed"))
      .retryable(true)
      .with_cause(detail)
  }
}

fn stream_broken(vendor: &str, error: &reqwest::Error) -> GatewayError {
  GatewayError::protocol(format!("{vendor} connection broke off mid-response"))
    .retryable(true)
    .with_cause(transport_detail(error))
}

/// The causes under a reqwest error, without its top line: that line names the URL,
/// and URLs can carry credentials (userinfo, query keys).
fn transport_detail(error: &reqwest::Error) -> String {
  let mut parts = Vec::new();
  let mut source = std::error::Error::source(error);
  while let Some(cause) = source {
    parts.push(cause.to_string());
    source = cause.source();
  }
  if parts.is_empty() {
    "transport error".to_string()
  } else {
    parts.join(": ")
  }
}

fn response(
  provider: &str,
  req: &ChatRequest,
  completion: Completion,
  record: CallRecord,
  request_id: &str,
) -> ChatResponse {
  let usage = completion
    .usage
    .unwrap_or_else(|| estimate_usage(req, &completion));
  ChatResponse {
    id: if completion.id.is_empty() {
      request_id.to_string()
    } else {
      completion.id
    },
    provider: provider.to_string(),
    model: if completion.model.is_empty() {
      req.model.clone()
    } else {
      completion.model
    },
    content: completion.content,
    refusal: completion.refusal,
    tool_calls: completion.tool_calls,
    finish_reason: completion.finish_reason,
    usage,
    // Pricing arrives with the cost tracker; until then no call is priced.
    cost_usd: 0.0,
    cached: false,
    latency_ms: millis(record.started.elapsed()),
    ttft_ms: record.ttft.map(millis),
    attempts: record.attempts,
    request_id: request_id.to_string(),
  }
}

fn millis(duration: Duration) -> f64 {
  duration.as_secs_f64() * 1000.0
}

/// Counts a call the vendor did not count: prompt framing per OpenAI's cookbook, the
/// answer's text and tool calls.
pub fn estimate_usage(req: &ChatRequest, completion: &Completion) -> Usage {
  let encoding = encoding_for(&req.model);
  let mut completion_tokens = encoding.count_text(&completion.content);
  for call in &completion.tool_calls {
    completion_tokens += encoding.count_text(&call.name) + encoding.count_text(&call.arguments);
  }
  let mut usage = Usage::new(
    encoding.count_messages(&req.messages) as u64,
    completion_tokens as u64,
  );
  usage.estimated = true;
  usage
}

fn build_provider(config: &ProviderConfig, secrets: &mut Vec<Secret>) -> Result<Provider> {
  let name = &config.name;
  let env_names: &[&str] = match config.kind.as_str() {
    "openai" => &["OPENAI_API_KEY"],
    "anthropic" => &["ANTHROPIC_API_KEY"],
    "gemini" => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    "mock" => &[],
    other => {
      return Err(GatewayError::config(format!(
        "provider '{name}' has unknown kind '{other}' (expected openai, anthropic, gemini or mock)"
      )))
    }
  };
  let api_key = config
    .api_key
    .clone()
    .filter(|k| !k.is_empty())
    .or_else(|| {
      env_names
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|k| !k.is_empty()))
    })
    .map(Secret::new);
  if let Some(key) = &api_key {
    secrets.push(key.clone());
  }
  let default_base = match config.kind.as_str() {
    "openai" => openai::DEFAULT_BASE_URL,
    "anthropic" => anthropic::DEFAULT_BASE_URL,
    "gemini" => gemini::DEFAULT_BASE_URL,
    _ => "",
  };
  let base_url = config
    .base_url
    .clone()
    .unwrap_or_else(|| default_base.to_string());
  if config.kind != "mock" {
    let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
      GatewayError::config(format!("provider '{name}' has an invalid baseUrl: {e}"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
      return Err(GatewayError::config(format!(
        "provider '{name}' baseUrl must be http or https"
      )));
    }
    // The vendors' own endpoints always need a key; a self-hosted server may not.
    if api_key.is_none() && config.base_url.is_none() {
      return Err(GatewayError::config(format!(
        "provider '{name}' has no apiKey and {} is not set",
        env_names.join(" / ")
      )));
    }
  }
  for (header, value) in &config.headers {
    let valid = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok()
      && reqwest::header::HeaderValue::from_str(value).is_ok();
    if !valid {
      return Err(GatewayError::config(format!(
        "provider '{name}' has an invalid header '{header}'"
      )));
    }
  }
  if let Some(key) = &api_key {
    if reqwest::header::HeaderValue::from_str(key.expose()).is_err() {
      return Err(GatewayError::config(format!(
        "provider '{name}' apiKey contains characters not allowed in an HTTP header"
      )));
    }
  }
  // Credentials given as plain headers (Azure's `api-key`, a proxy's bearer token) are
  // secrets too: they must not come back in an echoed error.
  for (header, value) in &config.headers {
    let header = header.to_ascii_lowercase();
    if header.contains("key") || header.contains("auth") || header.contains("token") {
      let token = value.strip_prefix("Bearer ").unwrap_or(value);
      secrets.push(Secret::new(token.to_string()));
    }
  }
  let headers = config.headers.clone();
  let backend = match config.kind.as_str() {
    "openai" => Backend::Http(Box::new(OpenAi {
      base_url,
      api_key,
      organization: config.organization.clone(),
      headers,
    })),
    "anthropic" => Backend::Http(Box::new(Anthropic {
      base_url,
      api_key,
      headers,
    })),
    "gemini" => Backend::Http(Box::new(Gemini {
      base_url,
      api_key,
      headers,
    })),
    _ => Backend::Mock(MockConfig {
      chunk_delay: config.mock_chunk_delay.unwrap_or(mock::DEFAULT_CHUNK_DELAY),
    }),
  };
  Ok(Provider {
    name: name.clone(),
    backend,
    timeout: config.timeout,
    max_retries: config.max_retries,
    models: config.models.clone(),
  })
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::types::{Message, Role};

  fn mock_gateway() -> Gateway {
    Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig {
        name: "mock".into(),
        kind: "mock".into(),
        mock_chunk_delay: Some(Duration::from_millis(1)),
        ..ProviderConfig::default()
      }],
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  fn hello() -> ChatRequest {
    ChatRequest {
      messages: vec![Message::text(Role::User, "hello")],
      ..ChatRequest::default()
    }
  }

  #[tokio::test]
  async fn streamed_events_add_up_to_the_response() {
    let gateway = mock_gateway();
    let (sender, mut receiver) = mpsc::channel(4);
    let run = gateway.execute(
      "mock/demo",
      hello(),
      CallOptions::default(),
      Some(sender),
      CancellationToken::new(),
      "fg_test",
    );
    let collect = async {
      let mut text = String::new();
      while let Some(Ok(StreamEvent::Text(piece))) = receiver.recv().await {
        text.push_str(&piece);
      }
      text
    };
    let (response, text) = tokio::join!(run, collect);
    let response = response.expect("response");
    assert_eq!(text, response.content);
    assert_eq!(
      (response.provider.as_str(), response.model.as_str()),
      ("mock", "demo")
    );
    assert!(response.ttft_ms.is_some());
    assert_eq!(response.attempts, 1);
  }

  #[tokio::test]
  async fn cancellation_and_deadlines_end_the_call() {
    let gateway = mock_gateway();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (sender, _receiver) = mpsc::channel(1);
    let aborted = gateway
      .execute(
        "mock/m",
        hello(),
        CallOptions::default(),
        Some(sender),
        cancel,
        "r",
      )
      .await
      .expect_err("aborted");
    assert_eq!(aborted.code, ErrorCode::Aborted);

    let (sender, _receiver) = mpsc::channel(1);
    let options = CallOptions {
      timeout: Some(Duration::from_millis(20)),
      max_retries: None,
    };
    // Nobody reads the one-slot channel, so the stream stalls until the deadline.
    let timed_out = gateway
      .execute(
        "mock/m",
        hello(),
        options,
        Some(sender),
        CancellationToken::new(),
        "r",
      )
      .await
      .expect_err("timeout");
    assert_eq!(timed_out.code, ErrorCode::Timeout);
  }

  #[tokio::test]
  async fn models_resolve_by_the_longest_provider_prefix() {
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![
        ProviderConfig {
          name: "team".into(),
          kind: "mock".into(),
          ..ProviderConfig::default()
        },
        ProviderConfig {
          name: "team/eu".into(),
          kind: "mock".into(),
          ..ProviderConfig::default()
        },
      ],
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let (provider, model) = gateway
      .resolve("team/eu/llama-3")
      .map_err(|e| e.message)
      .expect("resolved");
    assert_eq!(
      (provider.name.as_str(), model.as_str()),
      ("team/eu", "llama-3")
    );
    let (provider, model) = gateway
      .resolve("team/x/y")
      .map_err(|e| e.message)
      .expect("resolved");
    assert_eq!((provider.name.as_str(), model.as_str()), ("team", "x/y"));
    let missing = gateway.resolve("other/m").map(|_| ()).expect_err("unknown");
    assert_eq!(missing.code, ErrorCode::NotFound);
  }

  #[test]
  fn configuration_errors_are_config() {
    for kind in ["openai", "anthropic", "gemini"] {
      let config = GatewayConfig {
        providers: vec![ProviderConfig {
          name: "p".into(),
          kind: kind.into(),
          base_url: Some("not a url".into()),
          ..ProviderConfig::default()
        }],
        ..GatewayConfig::default()
      };
      let error = Gateway::new(config).map(|_| ()).expect_err(kind);
      assert_eq!(error.code, ErrorCode::Config);
    }
  }
}
