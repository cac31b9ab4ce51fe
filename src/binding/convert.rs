//! JS shapes ↔ core types, with the validation messages a caller needs to fix a request.

use napi::bindgen_prelude::Either;

use super::millis_option;
use super::types as js;
use crate::error::{GatewayError, Result};
use crate::pipeline::{
  CallOptions, DeploymentHealth, GatewayConfig, ProviderConfig, RouteConfig, RouteTargetConfig,
  RoutingConfig,
};
use crate::types::{
  ChatRequest, ChatResponse, ContentPart, Message, ResponseFormat, Role, StreamEvent, ToolCall,
  ToolChoice, ToolDefinition,
};

pub fn gateway_config(options: js::GatewayOptions) -> Result<GatewayConfig> {
  let mut config = GatewayConfig::default();
  if let Some(timeout) = options.timeout_ms {
    config.timeout = millis_option(Some(timeout))
      .filter(|d| !d.is_zero())
      .ok_or_else(|| GatewayError::config("timeoutMs must be a positive number"))?;
  }
  if let Some(retries) = options.max_retries {
    config.max_retries = retries;
  }
  if let Some(base) = options.retry_base_delay_ms {
    config.retry_base = millis_option(Some(base))
      .ok_or_else(|| GatewayError::config("retryBaseDelayMs must be a number >= 0"))?;
  }
  config.default_provider = options.default_provider;
  config.routes = routes(options.routes.unwrap_or_default())?;
  if let Some(routing) = options.routing {
    config.routing = routing_config(routing)?;
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
    let mut headers: Vec<(String, String)> =
      provider.headers.unwrap_or_default().into_iter().collect();
    headers.sort();
    config.providers.push(ProviderConfig {
      timeout: millis_option(provider.timeout_ms),
      max_retries: provider.max_retries,
      mock_chunk_delay: millis_option(provider.mock_chunk_delay_ms),
      kind: provider.kind,
      api_key: provider.api_key,
      base_url: provider.base_url,
      models: provider.models.unwrap_or_default(),
      headers,
      organization: provider.organization,
      name,
    });
  }
  Ok(config)
}

/// A whole number >= `min` from JS, or a CONFIG error naming `field`.
fn count(value: f64, min: u32, field: &str) -> Result<u32> {
  if value.is_finite()
    && value.fract() == 0.0
    && value >= f64::from(min)
    && value <= f64::from(u32::MAX)
  {
    Ok(value as u32)
  } else {
    Err(GatewayError::config(format!(
      "{field} must be a whole number >= {min}"
    )))
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
            .map(|m| count(m, 1, &format!("routes.{alias}[{i}].maxConcurrent")))
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
    config.consecutive_failures = count(n, 1, "routing.consecutiveFailures")?;
  }
  if let Some(rate) = options.error_rate {
    config.error_rate = rate;
  }
  if let Some(n) = options.error_rate_window {
    config.error_rate_window = count(n, 1, "routing.errorRateWindow")? as usize;
  }
  if let Some(ms) = options.cooldown_ms {
    config.cooldown = millis_option(Some(ms))
      .ok_or_else(|| GatewayError::config("routing.cooldownMs must be a number >= 0"))?;
  }
  if let Some(ms) = options.health_check_interval_ms {
    config.health_check_interval = Some(
      millis_option(Some(ms))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
          GatewayError::config("routing.healthCheckIntervalMs must be a positive number")
        })?,
    );
  }
  if let Some(n) = options.queue_limit {
    config.queue_limit = count(n, 0, "routing.queueLimit")? as usize;
  }
  Ok(config)
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
    ejected_until: entry.ejected_until.map(|at| {
      at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
    }),
  }
}

pub fn chat_request(request: js::ChatRequest) -> Result<(String, ChatRequest, CallOptions)> {
  if request.messages.is_empty() {
    return Err(GatewayError::invalid_request("messages must not be empty"));
  }
  let tools = request
    .tools
    .unwrap_or_default()
    .into_iter()
    .map(|tool| {
      if tool.name.is_empty() {
        return Err(GatewayError::invalid_request("every tool needs a name"));
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
        schema: format.schema.ok_or_else(|| {
          GatewayError::invalid_request("responseFormat json_schema needs a schema")
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
    messages: messages(request.messages)?,
    temperature: request.temperature,
    top_p: request.top_p,
    max_tokens: request.max_tokens,
    stop: request.stop.unwrap_or_default(),
    response_format,
    tools,
    tool_choice,
    user: request.user,
  };
  let options = CallOptions {
    timeout: millis_option(request.timeout_ms).filter(|d| !d.is_zero()),
    max_retries: request.max_retries,
    priority: match request.priority {
      None => 0,
      Some(p) if p.is_finite() && p.fract() == 0.0 && p.abs() <= f64::from(i32::MAX) => p as i32,
      Some(_) => {
        return Err(GatewayError::invalid_request(
          "priority must be a whole number",
        ))
      }
    },
  };
  Ok((request.model, core, options))
}

pub fn messages(messages: Vec<js::Message>) -> Result<Vec<Message>> {
  messages
    .into_iter()
    .enumerate()
    .map(|(i, message)| {
      let role = Role::parse(&message.role).ok_or_else(|| {
        GatewayError::invalid_request(format!(
          "messages[{i}].role must be system, user, assistant or tool, not '{}'",
          message.role
        ))
      })?;
      let content = match message.content {
        None => Vec::new(),
        Some(Either::A(text)) => vec![ContentPart::Text(text)],
        Some(Either::B(parts)) => parts
          .into_iter()
          .enumerate()
          .map(|(j, part)| content_part(part).map_err(|e| at(i, j, e)))
          .collect::<Result<Vec<_>>>()?,
      };
      if role == Role::Tool && message.tool_call_id.is_none() {
        return Err(GatewayError::invalid_request(format!(
          "messages[{i}] has role 'tool' but no toolCallId"
        )));
      }
      Ok(Message {
        role,
        content,
        tool_call_id: message.tool_call_id,
        tool_calls: message
          .tool_calls
          .unwrap_or_default()
          .into_iter()
          .map(|call| ToolCall {
            id: call.id,
            name: call.name,
            arguments: call.arguments,
          })
          .collect(),
      })
    })
    .collect()
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
    upstream_request_id: error.upstream_request_id,
    cause: error.cause,
  }
}

fn tool_call(call: ToolCall) -> js::ToolCall {
  js::ToolCall {
    id: call.id,
    name: call.name,
    arguments: call.arguments,
  }
}

pub fn response(response: ChatResponse) -> js::ChatResponse {
  let usage = response.usage;
  js::ChatResponse {
    id: response.id,
    provider: response.provider,
    model: response.model,
    content: response.content,
    refusal: response.refusal,
    tool_calls: response.tool_calls.into_iter().map(tool_call).collect(),
    finish_reason: response.finish_reason.as_str().to_string(),
    usage: js::Usage {
      prompt_tokens: usage.prompt_tokens as f64,
      completion_tokens: usage.completion_tokens as f64,
      total_tokens: usage.total_tokens as f64,
      estimated: usage.estimated,
      cached_prompt_tokens: usage.cached_prompt_tokens as f64,
      cache_write_prompt_tokens: usage.cache_write_prompt_tokens as f64,
      reasoning_tokens: usage.reasoning_tokens as f64,
    },
    cost_usd: response.cost_usd,
    cached: response.cached,
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
    StreamEvent::Text(text) => {
      out.r#type = "text".into();
      out.text = Some(text);
    }
    StreamEvent::ToolCall {
      index,
      id,
      name,
      arguments_delta,
    } => {
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
