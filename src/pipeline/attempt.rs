//! Upstream attempts: one HTTP or mock attempt, body reading, transport errors, and the
//! retry loop that repeats attempts under one deadline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::forward::{forward, forward_tool_calls, forward_whole, send, EventSink, Progress};
use super::http::{is_tls_failure, Lease};
use super::native::{native_attempt, NativeCall};
use super::providers::{Backend, Provider};
use super::route::CallTargets;
use crate::error::{ErrorCode, GatewayError, Result};
use crate::providers::auth::{OutgoingRequest, Rejection};
use crate::providers::mock::{self, MockConfig};
use crate::providers::{
  is_stream_content_type, Adapter, EmbedBatch, HttpCall, StreamSession, JSON_CONTENT_TYPE,
};
use crate::retry::backoff;
use crate::types::{ChatRequest, Completion, StreamEvent, Usage};

/// A non-streamed answer larger than this is refused rather than buffered.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Error bodies are only read this far: enough for any vendor's message.
pub(crate) const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// When another attempt is allowed.
pub(crate) struct RetryPolicy {
  pub max_retries: u32,
  /// First backoff step; doubles per attempt.
  pub base: Duration,
  pub deadline: tokio::time::Instant,
}

/// What an attempt asks the vendor for. An embeddings call travels the pipeline as a
/// request whose user messages are its inputs, in order: the limiter, budget and cache
/// stages count and key it as they do a chat call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
  Chat,
  Embed { dimensions: Option<u32> },
}

/// Attempts until one succeeds, a failure is final, or waiting would pass the deadline.
/// Each attempt may go to another target: after a retryable failure the call moves at
/// once to a target it has not tried, else waits (the vendor's hint or a backoff) and
/// takes the best target again. `attempts` counts every try, for the response; each
/// attempt sets `req.model` to its target's model. `last_failure` keeps the latest
/// failed attempt, the cause of a TIMEOUT that cuts the retries short.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn with_retries(
  targets: &mut CallTargets,
  req: &mut ChatRequest,
  native: Option<&NativeCall>,
  sink: &EventSink,
  progress: &Progress,
  attempts: &AtomicU32,
  last_failure: &Mutex<Option<String>>,
  policy: &RetryPolicy,
  work: Work,
) -> Result<Completion> {
  let mut lease = targets.acquire().await?;
  loop {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
    req.model.clone_from(&lease.model);
    lease.begin();
    super::telemetry::attempt_started(&lease.provider.name, lease.provider.kind, &lease.model);
    let started = Instant::now();
    let result = match lease.attempt_timeout {
      Some(limit) => tokio::time::timeout(
        limit,
        attempt_work(&lease.provider, req, native, sink, progress, work),
      )
      .await
      .unwrap_or_else(|_| Err(GatewayError::timeout(limit).retryable(true))),
      None => attempt_work(&lease.provider, req, native, sink, progress, work).await,
    };
    super::telemetry::attempt_ended(result.as_ref().err());
    let error = match result {
      Ok(completion) => {
        let ttft = progress
          .first_event_at()
          .map(|at| at.saturating_duration_since(started));
        lease.succeeded(started.elapsed(), ttft);
        return Ok(completion);
      }
      Err(error) => error,
    };
    lease.failed(&error);
    let may_retry = error.retryable && attempt <= policy.max_retries && !progress.delivered();
    if !may_retry {
      return Err(error);
    }
    if let Ok(mut last) = last_failure.lock() {
      *last = Some(format!("{}: {}", error.code.as_str(), error.message));
    }
    if let Some(next) = targets.alternative().await {
      lease = next;
      continue;
    }
    let wait = error
      .retry_after
      .unwrap_or_else(|| backoff(policy.base, attempt - 1));
    // Waiting past the deadline only turns a clear vendor error into a timeout.
    match tokio::time::Instant::now().checked_add(wait) {
      Some(resume) if resume < policy.deadline => {}
      _ => return Err(error),
    }
    tokio::time::sleep(wait).await;
    lease = match targets.acquire().await {
      Ok(next) => next,
      // Nothing can take the retry: the failure that caused it says more.
      Err(_) => return Err(error),
    };
  }
}

async fn attempt_work(
  provider: &Provider,
  req: &ChatRequest,
  native: Option<&NativeCall>,
  sink: &EventSink,
  progress: &Progress,
  work: Work,
) -> Result<Completion> {
  match (work, &provider.backend) {
    (Work::Chat, _) => attempt_once(provider, req, native, sink, progress).await,
    (Work::Embed { .. }, _) if !provider.kind.has_embeddings() => {
      Err(crate::providers::no_embeddings(provider.kind.as_str()))
    }
    (Work::Embed { dimensions }, Backend::Mock(_)) => Ok(mock::embed(req, dimensions)),
    (Work::Embed { dimensions }, Backend::Http { adapter, http }) => {
      embed_attempt(
        &provider.name,
        &http.lease(),
        adapter.as_ref(),
        req,
        dimensions,
      )
      .await
    }
  }
}

pub(crate) async fn attempt_once(
  provider: &Provider,
  req: &ChatRequest,
  native: Option<&NativeCall>,
  sink: &EventSink,
  progress: &Progress,
) -> Result<Completion> {
  if let Some(native) = native {
    match &provider.backend {
      Backend::Http { adapter, http } if native.speaks(provider.kind, provider.api) => {
        // The lease is held for as long as the answer streams.
        return native_attempt(
          &provider.name,
          &http.lease(),
          adapter.as_ref(),
          native,
          req,
          sink,
          progress,
        )
        .await;
      }
      _ => native.translated_attempt(provider.kind)?,
    }
  }
  match &provider.backend {
    Backend::Mock(config) => mock_attempt(*config, req, sink, progress).await,
    Backend::Http { adapter, http } => {
      http_attempt(
        &provider.name,
        &http.lease(),
        adapter.as_ref(),
        req,
        sink,
        progress,
      )
      .await
    }
  }
}

async fn http_attempt(
  name: &str,
  http: &Lease,
  adapter: &dyn Adapter,
  req: &ChatRequest,
  sink: &EventSink,
  progress: &Progress,
) -> Result<Completion> {
  let vendor = adapter.vendor();
  let stream = sink.is_some();
  // The request (its JSON body, headers and key) is dropped once sent, not held for as long
  // as the answer streams.
  let response = {
    let call = adapter.build(req, stream)?;
    send_call(name, http, adapter, &call, stream).await?
  };
  let is_event_stream = response
    .headers()
    .get("content-type")
    .and_then(|v| v.to_str().ok())
    .is_some_and(is_stream_content_type);
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
  let mut events = Vec::new();
  while !session.is_done() {
    match bytes.next().await {
      Some(Ok(chunk)) => {
        session.push_into(&chunk, &mut events)?;
        forward(events.drain(..), sink, progress).await?;
      }
      Some(Err(e)) => return Err(stream_broken(vendor, &e)),
      None => break,
    }
  }
  let (events, completion) = session.finish()?;
  forward(events, sink, progress).await?;
  Ok(completion)
}

/// Sends one vendor request; a 2xx answer is returned unread, anything else is the
/// vendor's error. With an [`Authorizer`] its credentials are added just before the send,
/// and a 401/403/429 it says other credentials may pass (another key of a pool, a refreshed
/// token) is sent again at once, within the same attempt.
pub(crate) async fn send_call(
  provider: &str,
  http: &Lease,
  adapter: &dyn Adapter,
  call: &HttpCall,
  stream: bool,
) -> Result<reqwest::Response> {
  let vendor = adapter.vendor();
  // Shared, so sending it again copies nothing.
  let body = bytes::Bytes::from(
    serde_json::to_vec(&call.body)
      .map_err(|e| GatewayError::invalid_request(format!("request is not serializable: {e}")))?,
  );
  let mut resends = 0;
  loop {
    let mut headers = call.headers.clone();
    let credential = match adapter.authorizer() {
      Some(authorizer) => Some(
        authorizer
          .authorize(OutgoingRequest {
            url: &call.url,
            headers: &mut headers,
            body: &body,
            http,
          })
          .await?,
      ),
      None => None,
    };
    let mut builder = match parsed_url(&call.url) {
      Some(url) => match super::telemetry::upstream_traceparent(&url) {
        Some(traceparent) => http.post(url).header("traceparent", traceparent),
        None => http.post(url),
      },
      // reqwest parses it again and reports what is wrong with it, as for any request.
      None => http.post(&call.url),
    };
    builder = builder
      .header("content-type", JSON_CONTENT_TYPE)
      .body(body.clone());
    // An adapter whose streams are not SSE (Bedrock's event stream) names its own.
    let names_accept = headers
      .iter()
      .any(|(name, _)| name.eq_ignore_ascii_case("accept"));
    if stream && !names_accept {
      builder = builder.header("accept", "text/event-stream");
    }
    for (name, value) in &headers {
      builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder
      .send()
      .await
      .map_err(|e| transport_error(&provider_at(provider, &call.url), &e))?;
    http.answered_over(response.version());
    let status = response.status().as_u16();
    if (300..400).contains(&status) {
      return Err(redirect_refused(vendor, status, response.headers()));
    }
    if (200..300).contains(&status) {
      return Ok(response);
    }
    let headers = response.headers().clone();
    let body = read_body(vendor, response, MAX_ERROR_BODY_BYTES, false).await?;
    let error = adapter.parse_error(status, &headers, &body);
    if let (Some(authorizer), Some(credential), 401 | 403 | 429) =
      (adapter.authorizer(), credential, status)
    {
      let rejection = Rejection {
        status,
        retry_after: error.retry_after,
        resends,
      };
      if resends < MAX_CREDENTIAL_RESENDS && authorizer.rejected(credential, rejection) {
        resends += 1;
        continue;
      }
    }
    return Err(error);
  }
}

/// Most times one request is sent again with other credentials (a key pool's size, bounded).
const MAX_CREDENTIAL_RESENDS: u32 = 64;

/// One embeddings attempt: the inputs in requests of at most the vendor's batch limit,
/// one after another, their vectors joined in input order and their usage summed.
async fn embed_attempt(
  provider: &str,
  http: &Lease,
  adapter: &dyn Adapter,
  req: &ChatRequest,
  dimensions: Option<u32>,
) -> Result<Completion> {
  let vendor = adapter.vendor();
  let inputs = embed_inputs(req);
  let limit = adapter.embed_batch_limit().max(1);
  let mut vectors = Vec::with_capacity(inputs.len());
  let mut usage: Option<Usage> = None;
  let mut model = String::new();
  for batch in inputs.chunks(limit) {
    let call = adapter.build_embed(&EmbedBatch {
      model: &req.model,
      input: batch,
      dimensions,
      user: req.user.as_deref(),
    })?;
    let response = send_call(provider, http, adapter, &call, false).await?;
    let body = read_body(vendor, response, MAX_RESPONSE_BYTES, true).await?;
    let answer = adapter.parse_embed(&body, batch.len())?;
    vectors.extend(answer.vectors);
    if let Some(part) = answer.usage {
      let sum = usage.get_or_insert_with(Usage::default);
      sum.prompt_tokens += part.prompt_tokens;
      sum.total_tokens += part.total_tokens;
    }
    if model.is_empty() {
      model = answer.model;
    }
  }
  // Gemini reports no usage for embeddings: counted here, as the vendor bills the inputs.
  let usage = usage.unwrap_or_else(|| {
    let encoding = crate::tokens::encoding_for(&req.model);
    let tokens: u64 = inputs
      .iter()
      .map(|text| encoding.count_text(text) as u64)
      .sum();
    let mut counted = Usage::new(tokens, 0);
    counted.estimated = true;
    counted
  });
  Ok(Completion {
    id: String::new(),
    model,
    content: String::new(),
    refusal: None,
    tool_calls: Vec::new(),
    finish_reason: crate::types::FinishReason::Stop,
    usage: Some(usage),
    embeddings: Some(vectors),
  })
}

/// The inputs of an embeddings call, as the pipeline carries them (one user message each).
pub(crate) fn embed_inputs(req: &ChatRequest) -> Vec<&str> {
  req
    .messages
    .iter()
    .map(|message| match message.content.first() {
      Some(crate::types::ContentPart::Text(text)) => text.as_str(),
      _ => "",
    })
    .collect()
}

/// Parsed URLs last sent to, per worker thread. A provider's URL is the same for every call
/// (Gemini's differs per model), and parsing it (host and IDNA checks) cost a tenth of the
/// worker's instructions per chat call.
const PARSED_URLS_KEPT: usize = 16;

thread_local! {
  static PARSED_URLS: std::cell::RefCell<Vec<(String, reqwest::Url)>> =
    const { std::cell::RefCell::new(Vec::new()) };
}

fn parsed_url(url: &str) -> Option<reqwest::Url> {
  PARSED_URLS.with(|kept| {
    let mut kept = kept.try_borrow_mut().ok()?;
    if let Some((_, parsed)) = kept.iter().find(|(text, _)| text == url) {
      return Some(parsed.clone());
    }
    let parsed = reqwest::Url::parse(url).ok()?;
    if kept.len() >= PARSED_URLS_KEPT {
      kept.remove(0);
    }
    kept.push((url.to_string(), parsed.clone()));
    Some(parsed)
  })
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

pub(crate) async fn read_body(
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

/// Redirects are not followed (see `http`): the caller learns where the vendor points, to
/// fix its baseUrl.
pub(crate) fn redirect_refused(
  vendor: &str,
  status: u16,
  headers: &reqwest::header::HeaderMap,
) -> GatewayError {
  let location = headers
    .get("location")
    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    .unwrap_or_else(|| "nowhere (no Location header)".to_string());
  GatewayError::protocol(format!(
    "{vendor} answered HTTP {status} redirecting to {location}; redirects are not followed, so that a key never reaches another host: point baseUrl at the final address"
  ))
}

/// How a transport failure names the provider: by its configured name and the host it was
/// reached at ("provider 'local' at 127.0.0.1:19999"), never the URL's path, query or
/// userinfo (they can carry keys).
fn provider_at(name: &str, url: &str) -> String {
  match reqwest::Url::parse(url) {
    Ok(parsed) => match (parsed.host_str(), parsed.port_or_known_default()) {
      (Some(host), Some(port)) => format!("provider '{name}' at {host}:{port}"),
      (Some(host), None) => format!("provider '{name}' at {host}"),
      _ => format!("provider '{name}'"),
    },
    Err(_) => format!("provider '{name}'"),
  }
}

/// The request never got an answer: worth another attempt, unless it could not be built
/// (our side: another attempt builds it the same way) or the TLS handshake refused the
/// server (its certificate will not change either).
pub(crate) fn transport_error(target: &str, error: &reqwest::Error) -> GatewayError {
  let detail = transport_detail(error);
  if error.is_builder() {
    return GatewayError::config(format!("could not build the request to {target}"))
      .with_cause(detail);
  }
  if is_tls_failure(error) {
    return GatewayError::protocol(format!(
      "TLS handshake with {target} failed: {detail}. If its certificate comes from a private CA, name the CA in caCertPath or NODE_EXTRA_CA_CERTS"
    ))
    .with_cause(detail);
  }
  if error.is_connect() {
    GatewayError::new(
      ErrorCode::UpstreamUnavailable,
      format!("could not connect to {target}"),
    )
    .retryable(true)
    .with_cause(detail)
  } else {
    GatewayError::protocol(format!("request to {target} failed"))
      .retryable(true)
      .with_cause(detail)
  }
}

pub(crate) fn stream_broken(vendor: &str, error: &reqwest::Error) -> GatewayError {
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_request_that_cannot_be_built_is_never_retried() {
    let unbuildable = reqwest::Client::new()
      .post("http://127.0.0.1:9/")
      .header("x-team", "a\nb")
      .build()
      .expect_err("a newline in a header value");
    let error = transport_error("openai", &unbuildable);
    assert!(!error.retryable);
    assert_eq!(error.code, ErrorCode::Config);
  }

  #[test]
  fn a_provider_is_named_with_its_host_and_never_its_credentials() {
    assert_eq!(
      provider_at(
        "local",
        "http://user:secret@127.0.0.1:19999/v1/chat/completions?key=k"
      ),
      "provider 'local' at 127.0.0.1:19999"
    );
    assert_eq!(
      provider_at("claude", "https://api.anthropic.com/v1/messages"),
      "provider 'claude' at api.anthropic.com:443"
    );
    assert_eq!(provider_at("odd", "not a url"), "provider 'odd'");
  }
}
