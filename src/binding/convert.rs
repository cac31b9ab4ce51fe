//! JS shapes ↔ core types, with the validation messages a caller needs to fix a request.

use napi::bindgen_prelude::{Either, Either3, Null};

use super::numbers::{count, finite, millis};
use super::types as js;
use crate::backend::responses::ResponseStoreConfig;
use crate::error::{GatewayError, Result};
use crate::pipeline::{
  CallOptions, CallRecord, DeploymentHealth, GatewayConfig, ProviderConfig, RouteConfig,
  RouteTargetConfig, RoutingConfig, StatsSnapshot,
};
use crate::providers::auth::{AwsCredentials, TokenSource};
use crate::secret::Secret;
use crate::types::{
  CacheAt, CacheBreakpoint, CacheTtl, ChatRequest, ChatResponse, ContentPart, EmbedRequest,
  EmbedResponse, Message, ResponseFormat, Role, StreamEvent, ToolCall, ToolChoice, ToolDefinition,
};

pub fn gateway_config(options: js::GatewayOptions) -> Result<GatewayConfig> {
  let mut config = GatewayConfig::default();
  if let Some(timeout) =
    millis("timeoutMs", options.timeout_ms, false).map_err(GatewayError::config)?
  {
    config.timeout = timeout;
  }
  if let Some(retries) = count("maxRetries", options.max_retries).map_err(GatewayError::config)? {
    config.max_retries = retries;
  }
  if let Some(base) =
    millis("retryBaseDelayMs", options.retry_base_delay_ms, true).map_err(GatewayError::config)?
  {
    config.retry_base = base;
  }
  config.default_provider = options.default_provider;
  config.routes = routes(options.routes.unwrap_or_default())?;
  if let Some(routing) = options.routing {
    config.routing = routing_config(routing)?;
  }
  if let Some(responses) = options.responses {
    config.responses = response_store_config(responses)?;
  }
  if options.providers.is_empty() {
    return Err(GatewayError::config(
      "providers must name at least one provider",
    ));
  }
  let mut names: Vec<String> = options.providers.keys().cloned().collect();
  names.sort();
  let mut providers = options.providers;
  for name in names {
    let Some(provider) = providers.remove(&name) else {
      continue;
    };
    let field = |option: &str| format!("providers.{name}.{option}");
    let mut headers: Vec<(String, String)> =
      provider.headers.unwrap_or_default().into_iter().collect();
    headers.sort();
    config.providers.push(ProviderConfig {
      timeout: millis(&field("timeoutMs"), provider.timeout_ms, false)
        .map_err(GatewayError::config)?,
      max_retries: count(&field("maxRetries"), provider.max_retries)
        .map_err(GatewayError::config)?,
      mock_chunk_delay: millis(
        &field("mockChunkDelayMs"),
        provider.mock_chunk_delay_ms,
        true,
      )
      .map_err(GatewayError::config)?,
      kind: provider.kind,
      api_key: provider.api_key,
      api_keys: provider.api_keys.unwrap_or_default(),
      deployment: provider.deployment,
      api_version: provider.api_version,
      azure_ad_token: provider.azure_ad_token.map(token_source),
      region: provider.region,
      credentials: provider.credentials.map(|c| AwsCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: c.session_token,
      }),
      project: provider.project,
      location: provider.location,
      credentials_path: provider.credentials_path,
      base_url: provider.base_url,
      models: provider.models.unwrap_or_default(),
      headers,
      organization: provider.organization,
      ca_cert_path: provider.ca_cert_path,
      api: provider.api,
      name,
    });
  }
  Ok(config)
}

/// A token option: fixed, or the caller's async function asked before every request.
fn token_source(token: Either<String, js::TokenFunction>) -> TokenSource {
  match token {
    Either::A(token) => TokenSource::Fixed(Secret::new(token)),
    Either::B(function) => {
      let function = std::sync::Arc::new(function);
      TokenSource::Fetch(std::sync::Arc::new(move || {
        let function = function.clone();
        Box::pin(async move {
          let failed = |e: napi::Error| {
            GatewayError::new(
              crate::error::ErrorCode::Authentication,
              format!("the token function failed: {}", e.reason),
            )
          };
          let promise = function.call_async_catch(()).await.map_err(failed)?;
          promise.await.map_err(failed)
        })
      }))
    }
  }
}

fn response_store_config(options: js::ResponsesOptions) -> Result<ResponseStoreConfig> {
  let mut config = ResponseStoreConfig {
    redis_url: options.redis_url,
    ..ResponseStoreConfig::default()
  };
  if let Some(prefix) = options.prefix {
    config.prefix = prefix;
  }
  if let Some(seconds) = options.ttl_seconds {
    if !(seconds.is_finite() && seconds > 0.0) {
      return Err(GatewayError::config(format!(
        "responses.ttlSeconds must be a number > 0, not {seconds}"
      )));
    }
    config.ttl = std::time::Duration::from_secs_f64(seconds.min(1e9));
  }
  if let Some(n) = options.max_entries {
    config.max_entries = config_count(n, 1, "responses.maxEntries")? as usize;
  }
  if let Some(n) = options.max_bytes {
    config.max_bytes = config_count(n, 1, "responses.maxBytes")? as usize;
  }
  Ok(config)
}

/// A whole number >= `min` in the options, or a CONFIG error naming `field`.
fn config_count(value: f64, min: u32, field: &str) -> Result<u32> {
  match count(field, Some(value)).map_err(GatewayError::config)? {
    Some(n) if n >= min => Ok(n),
    _ => Err(GatewayError::config(format!(
      "{field} must be a whole number >= {min}, not {value}"
    ))),
  }
}

fn routes(
  routes: std::collections::HashMap<String, Vec<js::RouteTarget>>,
) -> Result<Vec<RouteConfig>> {
  let mut aliases: Vec<String> = routes.keys().cloned().collect();
  aliases.sort();
  let mut routes = routes;
  let mut out = Vec::new();
  for alias in aliases {
    let targets = routes.remove(&alias).unwrap_or_default();
    let targets = targets
      .into_iter()
      .enumerate()
      .map(|(i, target)| {
        Ok(RouteTargetConfig {
          max_concurrent: target
            .max_concurrent
            .map(|m| config_count(m, 1, &format!("routes.{alias}[{i}].maxConcurrent")))
            .transpose()?,
          weight: target.weight.unwrap_or(1.0),
          health_check: target.health_check.unwrap_or(true),
          provider: target.provider,
          model: target.model,
        })
      })
      .collect::<Result<Vec<_>>>()?;
    out.push(RouteConfig { alias, targets });
  }
  Ok(out)
}

fn routing_config(options: js::RoutingOptions) -> Result<RoutingConfig> {
  let mut config = RoutingConfig::default();
  if let Some(n) = options.consecutive_failures {
    config.consecutive_failures = config_count(n, 1, "routing.consecutiveFailures")?;
  }
  if let Some(rate) = options.error_rate {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
      return Err(GatewayError::config(format!(
        "routing.errorRate must be a share in (0, 1], not {rate}"
      )));
    }
    config.error_rate = rate;
  }
  if let Some(n) = options.error_rate_window {
    config.error_rate_window = config_count(n, 1, "routing.errorRateWindow")? as usize;
  }
  if let Some(cooldown) =
    millis("routing.cooldownMs", options.cooldown_ms, true).map_err(GatewayError::config)?
  {
    config.cooldown = cooldown;
  }
  config.health_check_interval = millis(
    "routing.healthCheckIntervalMs",
    options.health_check_interval_ms,
    false,
  )
  .map_err(GatewayError::config)?;
  if let Some(n) = options.queue_limit {
    config.queue_limit = config_count(n, 0, "routing.queueLimit")? as usize;
  }
  Ok(config)
}

fn epoch_ms(at: std::time::SystemTime) -> f64 {
  at.duration_since(std::time::UNIX_EPOCH)
    .map(|d| d.as_secs_f64() * 1000.0)
    .unwrap_or(0.0)
}

pub fn health(entry: DeploymentHealth) -> js::DeploymentHealth {
  js::DeploymentHealth {
    route: entry.route,
    provider: entry.provider,
    model: entry.model,
    state: entry.state.to_string(),
    in_flight: entry.in_flight,
    queued: u32::try_from(entry.queued).unwrap_or(u32::MAX),
    ewma_latency_ms: entry.ewma_latency_ms.unwrap_or(0.0),
    ewma_ttft_ms: entry.ewma_ttft_ms,
    error_rate: entry.error_rate,
    ejected_until: entry.ejected_until.map(epoch_ms),
    keys: (!entry.keys.is_empty()).then(|| {
      entry
        .keys
        .into_iter()
        .map(|key| js::KeyHealth {
          id: key.id,
          state: key.state.to_string(),
          resting_until: key.resting_until.map(epoch_ms),
        })
        .collect()
    }),
  }
}

pub fn chat_request(request: js::ChatRequest) -> Result<(String, ChatRequest, CallOptions)> {
  if request.messages.is_empty() {
    return Err(GatewayError::invalid_request("messages must not be empty"));
  }
  let (messages, mut cache_breakpoints) = messages_and_breakpoints(request.messages)?;
  let tools = request
    .tools
    .unwrap_or_default()
    .into_iter()
    .enumerate()
    .map(|(i, tool)| {
      push_breakpoint(&mut cache_breakpoints, CacheAt::Tool(i), tool.cache)
        .map_err(|e| GatewayError::invalid_request(format!("tools[{i}]: {}", e.message)))?;
      if tool.name.is_empty() {
        return Err(GatewayError::invalid_request("every tool needs a name"));
      }
      if tool.parameters.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(GatewayError::invalid_request(format!(
          "tools[{i}].parameters must be an object (a JSON Schema)"
        )));
      }
      Ok(ToolDefinition {
        name: tool.name,
        description: tool.description,
        parameters: tool
          .parameters
          .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
      })
    })
    .collect::<Result<Vec<_>>>()?;
  let tool_choice = match request.tool_choice {
    None => None,
    Some(Either::B(named)) => Some(ToolChoice::Named(named.name)),
    Some(Either::A(choice)) => Some(match choice.as_str() {
      "auto" => ToolChoice::Auto,
      "none" => ToolChoice::None,
      "required" => ToolChoice::Required,
      other => {
        return Err(GatewayError::invalid_request(format!(
          "toolChoice must be 'auto', 'none', 'required' or {{ name }}, not '{other}'"
        )))
      }
    }),
  };
  let response_format = match request.response_format {
    None => None,
    Some(format) => Some(match format.r#type.as_str() {
      "text" => ResponseFormat::Text,
      "json_object" => ResponseFormat::JsonObject,
      "json_schema" => ResponseFormat::JsonSchema {
        name: format.name.unwrap_or_else(|| "response".to_string()),
        schema: format
          .schema
          .filter(serde_json::Value::is_object)
          .ok_or_else(|| {
            GatewayError::invalid_request("responseFormat json_schema needs a schema (an object)")
          })?,
      },
      other => {
        return Err(GatewayError::invalid_request(format!(
          "responseFormat.type must be 'text', 'json_object' or 'json_schema', not '{other}'"
        )))
      }
    }),
  };
  let core = ChatRequest {
    model: String::new(),
    messages,
    temperature: finite("temperature", request.temperature)
      .map_err(GatewayError::invalid_request)?,
    top_p: finite("topP", request.top_p).map_err(GatewayError::invalid_request)?,
    max_tokens: count("maxTokens", request.max_tokens).map_err(GatewayError::invalid_request)?,
    stop: match request.stop {
      None => Vec::new(),
      Some(Either::A(one)) => vec![one],
      Some(Either::B(several)) => several,
    },
    response_format,
    tools,
    tool_choice,
    user: request.user,
    cache_breakpoints,
    prompt_cache_key: request.prompt_cache_key,
  };
  let mut metadata: Vec<(String, String)> =
    request.metadata.unwrap_or_default().into_iter().collect();
  metadata.sort();
  let options = CallOptions {
    timeout: millis("timeoutMs", request.timeout_ms, false)
      .map_err(GatewayError::invalid_request)?,
    max_retries: count("maxRetries", request.max_retries).map_err(GatewayError::invalid_request)?,
    priority: match request.priority {
      None => 0,
      Some(p) if p.is_finite() && p.fract() == 0.0 && p.abs() <= f64::from(i32::MAX) => p as i32,
      Some(_) => {
        return Err(GatewayError::invalid_request(
          "priority must be a whole number",
        ))
      }
    },
    bypass_cache: request.cache == Some(false),
    metadata,
    ..CallOptions::default()
  };
  Ok((request.model, core, options))
}

pub fn messages(messages: Vec<js::Message>) -> Result<Vec<Message>> {
  Ok(messages_and_breakpoints(messages)?.0)
}

/// The messages, and the prompt-caching breakpoints set on them and their parts.
fn messages_and_breakpoints(
  messages: Vec<js::Message>,
) -> Result<(Vec<Message>, Vec<CacheBreakpoint>)> {
  let mut breakpoints = Vec::new();
  let messages = messages
    .into_iter()
    .enumerate()
    .map(|(i, message)| {
      let role = Role::parse(&message.role).ok_or_else(|| {
        GatewayError::invalid_request(format!(
          "messages[{i}].role must be system, user, assistant or tool, not '{}'",
          message.role
        ))
      })?;
      let tool_calls = message.tool_calls.unwrap_or_default();
      let content = match message.content {
        // An assistant turn that only calls tools has nothing to say; any other message
        // without content is a caller's bug (an absent `req.body.message`), not an empty turn.
        None | Some(Either3::C(Null)) if role == Role::Assistant && !tool_calls.is_empty() => {
          Vec::new()
        }
        None | Some(Either3::C(Null)) => {
          return Err(GatewayError::invalid_request(format!(
            "messages[{i}].content is missing: give a string or an array of parts (only an assistant message with toolCalls may leave it out)"
          )))
        }
        Some(Either3::A(text)) => vec![ContentPart::Text(text)],
        Some(Either3::B(parts)) => parts
          .into_iter()
          .enumerate()
          .map(|(j, mut part)| {
            let at_part = CacheAt::Part { message: i, part: j };
            push_breakpoint(&mut breakpoints, at_part, part.cache.take())
              .map_err(|e| at(i, j, e))?;
            content_part(part).map_err(|e| at(i, j, e))
          })
          .collect::<Result<Vec<_>>>()?,
      };
      push_breakpoint(&mut breakpoints, CacheAt::Message(i), message.cache)
        .map_err(|e| GatewayError::invalid_request(format!("messages[{i}]: {}", e.message)))?;
      if role == Role::Tool && message.tool_call_id.is_none() {
        return Err(GatewayError::invalid_request(format!(
          "messages[{i}] has role 'tool' but no toolCallId"
        )));
      }
      Ok(Message {
        role,
        content,
        tool_call_id: message.tool_call_id,
        tool_calls: tool_calls
          .into_iter()
          .map(|call| ToolCall {
            id: call.id,
            name: call.name,
            arguments: call.arguments,
            thought_signature: call.thought_signature,
          })
          .collect(),
      })
    })
    .collect::<Result<Vec<_>>>()?;
  Ok((messages, breakpoints))
}

/// `cache: true | { ttl }` at `at`, added to `breakpoints`; `false` or absent adds none.
fn push_breakpoint(
  breakpoints: &mut Vec<CacheBreakpoint>,
  at: CacheAt,
  cache: Option<Either<bool, js::CacheControl>>,
) -> Result<()> {
  let ttl = match cache {
    None | Some(Either::A(false)) => return Ok(()),
    Some(Either::A(true)) => CacheTtl::Default,
    Some(Either::B(control)) => match control.ttl.as_deref() {
      None => CacheTtl::Default,
      Some(text) => CacheTtl::parse(text).ok_or_else(|| {
        GatewayError::invalid_request(format!("cache.ttl must be '5m' or '1h', not '{text}'"))
      })?,
    },
  };
  breakpoints.push(CacheBreakpoint { at, ttl });
  Ok(())
}

fn at(message: usize, part: usize, error: GatewayError) -> GatewayError {
  GatewayError::invalid_request(format!(
    "messages[{message}].content[{part}]: {}",
    error.message
  ))
}

fn content_part(part: js::ContentPart) -> Result<ContentPart> {
  let js::ContentPart {
    r#type,
    text,
    data,
    mime_type,
    url,
    cache: _,
  } = part;
  let missing = |field: &str| GatewayError::invalid_request(format!("'{type}' part needs {field}"));
  match r#type.as_str() {
    "text" => Ok(ContentPart::Text(text.ok_or_else(|| missing("text"))?)),
    "image" => Ok(ContentPart::Image {
      data: data.ok_or_else(|| missing("data"))?,
      mime_type: mime_type.ok_or_else(|| missing("mimeType"))?,
    }),
    "image_url" => Ok(ContentPart::ImageUrl(url.ok_or_else(|| missing("url"))?)),
    other => Err(GatewayError::invalid_request(format!(
      "type must be 'text', 'image' or 'image_url', not '{other}'"
    ))),
  }
}

pub fn error_info(error: GatewayError, request_id: &str) -> js::ErrorInfo {
  js::ErrorInfo {
    code: error.code.as_str().to_string(),
    status: u32::from(error.status),
    message: error.message,
    provider: error.provider,
    retry_after_ms: error.retry_after.map(|d| d.as_secs_f64() * 1000.0),
    request_id: request_id.to_string(),
    upstream_request_id: error.upstream_request_id.map(String::from),
    cause: error.cause,
    guardrail: error.guardrail.as_ref().map(|hit| hit.guardrail.clone()),
    entity: error.guardrail.map(|hit| hit.entity),
  }
}

fn tool_call(call: ToolCall) -> js::ToolCall {
  js::ToolCall {
    id: call.id,
    name: call.name,
    arguments: call.arguments,
    thought_signature: call.thought_signature,
  }
}

fn usage(usage: crate::types::Usage) -> js::Usage {
  js::Usage {
    prompt_tokens: usage.prompt_tokens as f64,
    completion_tokens: usage.completion_tokens as f64,
    total_tokens: usage.total_tokens as f64,
    estimated: usage.estimated,
    cached_prompt_tokens: usage.cached_prompt_tokens as f64,
    cache_write_prompt_tokens: usage.cache_write_prompt_tokens as f64,
    reasoning_tokens: usage.reasoning_tokens as f64,
  }
}

pub fn call_record(record: CallRecord) -> js::CallRecord {
  js::CallRecord {
    operation: record.operation.as_str().to_string(),
    request_id: record.request_id,
    model: record.model,
    provider: record.provider,
    vendor_model: record.vendor_model,
    route: record.route,
    user: record.user,
    metadata: (!record.metadata.is_empty()).then(|| record.metadata.into_iter().collect()),
    outcome: record.outcome.as_str().to_string(),
    error_code: record.error_code.map(|code| code.as_str().to_string()),
    usage: usage(record.usage),
    cost_usd: record.cost_usd,
    cached: record.cached,
    cache_similarity: record.cache_similarity,
    latency_ms: record.latency_ms,
    ttft_ms: record.ttft_ms,
    attempts: record.attempts,
    ingress: record.ingress.map(str::to_string),
    warnings: (!record.warnings.is_empty()).then_some(record.warnings),
    guardrails: (!record.guardrails.is_empty()).then(|| {
      record
        .guardrails
        .into_iter()
        .map(|finding| js::GuardrailFinding {
          guardrail: finding.guardrail,
          entity: finding.entity,
          action: finding.action.to_string(),
          count: finding.count as f64,
        })
        .collect()
    }),
  }
}

pub fn stats(stats: StatsSnapshot) -> js::GatewayStats {
  js::GatewayStats {
    calls_by_outcome: js::CallsByOutcome {
      ok: stats.ok as f64,
      error: stats.errors as f64,
      aborted: stats.aborted as f64,
    },
    calls_by_error_code: stats
      .by_error_code
      .into_iter()
      .map(|(code, count)| (code.as_str().to_string(), count as f64))
      .collect(),
    cache_hits: stats.cache_hits as f64,
    cache_misses: stats.cache_misses as f64,
    cache_coalesced: stats.cache_coalesced as f64,
    limiter_refusals: stats.limiter_refusals as f64,
    budget_refusals: stats.budget_refusals as f64,
    unpriced_calls: stats.unpriced_calls as f64,
    hook_errors: stats.hook_errors as f64,
    hook_dropped: stats.hook_dropped as f64,
    model_label_overflow: stats.model_label_overflow as f64,
  }
}

pub fn response(response: ChatResponse) -> js::ChatResponse {
  js::ChatResponse {
    id: response.id,
    provider: response.provider,
    model: response.model,
    content: response.content,
    refusal: response.refusal,
    tool_calls: response.tool_calls.into_iter().map(tool_call).collect(),
    finish_reason: response.finish_reason.as_str().to_string(),
    usage: usage(response.usage),
    cost_usd: response.cost_usd,
    cached: response.cached,
    cache_similarity: response.cache_similarity,
    latency_ms: response.latency_ms,
    ttft_ms: response.ttft_ms,
    attempts: response.attempts,
    request_id: response.request_id,
  }
}

pub fn stream_event(event: StreamEvent) -> js::NativeStreamEvent {
  let mut out = js::NativeStreamEvent {
    r#type: String::new(),
    text: None,
    index: None,
    id: None,
    name: None,
    arguments_delta: None,
    response: None,
  };
  match event {
    // Relayed bytes only reach front-door callers; as text if one ever got here.
    StreamEvent::Text(text) | StreamEvent::Native(text) => {
      out.r#type = "text".into();
      out.text = Some(text);
    }
    StreamEvent::ToolCall(call) => {
      let crate::types::ToolCallDelta {
        index,
        id,
        name,
        arguments_delta,
      } = *call;
      out.r#type = "tool_call".into();
      out.index = Some(index);
      out.id = id;
      out.name = name;
      out.arguments_delta = Some(arguments_delta);
    }
    StreamEvent::Done(done) => {
      out.r#type = "done".into();
      out.response = Some(response(*done));
    }
  }
  out
}

pub fn anomaly(found: crate::metrics::Anomaly) -> js::LatencyAnomaly {
  js::LatencyAnomaly {
    provider: found.provider,
    model: found.model,
    latency_ms: found.latency_ms,
    expected_ms: found.expected_ms,
    z_score: found.z_score,
    severity: found.severity.to_string(),
    at: found.at_ms,
  }
}

/// `gateway.embed()`'s request: the model as asked, the core request and its call options.
pub fn embed_request(request: js::EmbedRequest) -> Result<(String, EmbedRequest, CallOptions)> {
  let input = match request.input {
    Either::A(text) => vec![text],
    Either::B(texts) => texts,
  };
  let dimensions =
    match count("dimensions", request.dimensions).map_err(GatewayError::invalid_request)? {
      Some(0) => {
        return Err(GatewayError::invalid_request(
          "dimensions must be a whole number > 0",
        ))
      }
      other => other,
    };
  let mut metadata: Vec<(String, String)> =
    request.metadata.unwrap_or_default().into_iter().collect();
  metadata.sort();
  let options = CallOptions {
    timeout: millis("timeoutMs", request.timeout_ms, false)
      .map_err(GatewayError::invalid_request)?,
    max_retries: count("maxRetries", request.max_retries).map_err(GatewayError::invalid_request)?,
    priority: 0,
    bypass_cache: request.cache == Some(false),
    metadata,
    ..CallOptions::default()
  };
  let core = EmbedRequest {
    input,
    dimensions,
    user: request.user,
  };
  Ok((request.model, core, options))
}

/// The vectors become Float32Arrays here, natively: no float crosses to JS as JSON or as a
/// JS number array. A cached answer's vectors are shared, so they are copied once; a fresh
/// answer's are moved.
pub fn embed_response(response: EmbedResponse) -> js::EmbedResponse {
  let vectors =
    std::sync::Arc::try_unwrap(response.embeddings).unwrap_or_else(|shared| (*shared).clone());
  js::EmbedResponse {
    embeddings: vectors
      .into_iter()
      .map(napi::bindgen_prelude::Float32Array::new)
      .collect(),
    model: response.model,
    provider: response.provider,
    usage: js::EmbedUsage {
      prompt_tokens: response.usage.prompt_tokens as f64,
      total_tokens: response.usage.total_tokens as f64,
    },
    cost_usd: response.cost_usd,
    cached: response.cached,
    request_id: response.request_id,
    latency_ms: response.latency_ms,
    attempts: response.attempts,
  }
}
