//! The embeddings operation. It runs the very stages a chat call runs (route → limits →
//! budget → cache → attempt → settle → record, in `Gateway::run`); only the attempt differs
//! (the provider's embeddings endpoint, batches split at the vendor's limit). The inputs
//! travel the pipeline as one user message each, so the limiter and the budget count their
//! tokens and the cache keys them like any prompt.

use tokio_util::sync::CancellationToken;

use super::attempt::Work;
use super::record::{self, Operation, Trace};
use super::{CallOptions, Gateway};
use crate::error::{GatewayError, Result};
use crate::types::{ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Message, Role};

/// More inputs than any caller should send in one call (OpenAI's own limit is 2048 per
/// request; the gateway splits, but a million-input call is a mistake).
pub const MAX_EMBED_INPUTS: usize = 100_000;
/// The largest vector size any vendor offers is 3072; the mock refuses absurd sizes.
pub const MAX_EMBED_DIMENSIONS: u32 = 65_536;

impl Gateway {
  /// Embeds `req.input` with `model` (a route alias or "provider/model"): one vector per
  /// input, in order. Priced, limited, budgeted, cached, ledgered and recorded like a chat
  /// call, with `operation: embeddings` on its record.
  pub async fn embed(
    &self,
    model: &str,
    req: EmbedRequest,
    mut options: CallOptions,
    cancel: CancellationToken,
    request_id: &str,
  ) -> Result<EmbedResponse> {
    let metadata = std::mem::take(&mut options.metadata);
    let mut trace = Trace::start(model, req.user.as_ref(), metadata, request_id);
    trace.operation = Operation::Embeddings;
    trace.ingress = options.ingress;
    trace.telemetry = options.trace.clone();
    if self.router.aliases().iter().any(|alias| alias == model) {
      trace.route = Some(model.to_string());
    }
    let result = match check(&req) {
      Ok(()) => {
        let work = Work::Embed {
          dimensions: req.dimensions,
        };
        let traced = options.trace.clone();
        let (req, options) = (Box::new(carrier(req)), Box::new(options));
        let run = self.run(model, req, options, None, cancel, &trace, work);
        super::telemetry::scoped(traced, run).await
      }
      Err(error) => Err(error),
    };
    self.observe(model, &trace, &result);
    record::finish(&self.stats, self.on_call.as_ref(), trace, &result);
    result.and_then(embed_response)
  }
}

impl Gateway {
  /// [`Gateway::embed`] behind a pointer, for a caller inside the pipeline itself (the
  /// semantic cache stage): the future of `run` cannot contain itself, and a function of
  /// its own, with its type written out, keeps the compiler from proving `Send` in a cycle.
  pub(crate) fn embed_boxed<'a>(
    &'a self,
    model: &'a str,
    req: EmbedRequest,
    options: CallOptions,
    cancel: CancellationToken,
    request_id: &'a str,
  ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<EmbedResponse>> + Send + 'a>> {
    Box::pin(self.embed(model, req, options, cancel, request_id))
  }
}

/// Bad input is refused before it costs a rate-limit slot or reaches a vendor.
fn check(req: &EmbedRequest) -> Result<()> {
  if req.input.is_empty() {
    return Err(GatewayError::invalid_request(
      "input must be a string or a non-empty array of strings",
    ));
  }
  if req.input.len() > MAX_EMBED_INPUTS {
    return Err(GatewayError::invalid_request(format!(
      "input has {} items; at most {MAX_EMBED_INPUTS} per call",
      req.input.len()
    )));
  }
  if let Some(dimensions) = req.dimensions {
    if dimensions == 0 || dimensions > MAX_EMBED_DIMENSIONS {
      return Err(GatewayError::invalid_request(format!(
        "dimensions must be a whole number from 1 to {MAX_EMBED_DIMENSIONS}"
      )));
    }
  }
  Ok(())
}

/// The request the stages see: one user message per input, in order.
fn carrier(req: EmbedRequest) -> ChatRequest {
  ChatRequest {
    messages: req
      .input
      .into_iter()
      .map(|text| Message::text(Role::User, text))
      .collect(),
    user: req.user,
    ..ChatRequest::default()
  }
}

fn embed_response(response: ChatResponse) -> Result<EmbedResponse> {
  let Some(embeddings) = response.embeddings else {
    return Err(GatewayError::protocol(
      "internal error: an embeddings call ended without vectors",
    ));
  };
  let mut usage = response.usage;
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  Ok(EmbedResponse {
    embeddings,
    provider: response.provider,
    model: response.model,
    usage,
    cost_usd: response.cost_usd,
    cached: response.cached,
    latency_ms: response.latency_ms,
    attempts: response.attempts,
    request_id: response.request_id,
  })
}

#[cfg(test)]
mod tests {
  use std::convert::Infallible;
  use std::sync::{Arc, Mutex};
  use std::time::Duration;

  use http_body_util::{BodyExt, Full};
  use hyper::body::Bytes;
  use serde_json::{json, Value};

  use super::*;
  use crate::cache::ResponseCache;
  use crate::error::ErrorCode;
  use crate::pipeline::{GatewayConfig, ProviderConfig};

  fn texts(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("text {i}")).collect()
  }

  fn request(input: Vec<String>) -> EmbedRequest {
    EmbedRequest {
      input,
      ..EmbedRequest::default()
    }
  }

  async fn embed(gateway: &Gateway, model: &str, req: EmbedRequest) -> Result<EmbedResponse> {
    gateway
      .embed(
        model,
        req,
        CallOptions::default(),
        CancellationToken::new(),
        "fg_e",
      )
      .await
  }

  use crate::pipeline::RecordedCalls as Records;

  /// The mock provider is free unless `pricing` names its model: priced here as OpenAI's
  /// text-embedding-3-small, $0.02 per million input tokens.
  fn embedding_pricing() -> crate::costs::Pricing {
    crate::costs::Pricing::from_litellm(&serde_json::json!({
      "mock/text-embedding-3-small": { "input_cost_per_token": 0.02e-6, "output_cost_per_token": 0.0 },
    }))
    .expect("pricing")
  }

  fn mock_gateway(records: Arc<Records>) -> Gateway {
    let cache = ResponseCache::in_memory(Default::default(), None);
    let tracker = crate::costs::CostTracker::new(crate::costs::TrackerOptions {
      pricing: embedding_pricing(),
      ..crate::costs::TrackerOptions::default()
    })
    .expect("tracker");
    Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::ZERO)],
      costs: Some(Arc::new(tracker)),
      cache: Some(Arc::new(cache)),
      on_call: Some(crate::pipeline::CallHook(records)),
      ..GatewayConfig::default()
    })
    .expect("gateway")
  }

  #[tokio::test]
  async fn mock_embeddings_are_priced_cached_and_recorded_as_embeddings() {
    let records = Arc::new(Records::default());
    let gateway = mock_gateway(records.clone());
    let model = "mock/text-embedding-3-small";
    let first = embed(&gateway, model, request(texts(3)))
      .await
      .expect("embed");
    assert_eq!(first.embeddings.len(), 3);
    assert_eq!(first.embeddings[0].len(), 256);
    assert_eq!(
      (first.provider.as_str(), first.model.as_str()),
      ("mock", "text-embedding-3-small")
    );
    assert!(first.usage.prompt_tokens > 0);
    assert_eq!(first.usage.total_tokens, first.usage.prompt_tokens);
    // $0.02 per million input tokens (embedding_pricing).
    let expected = first.usage.prompt_tokens as f64 * 0.02e-6;
    assert!(
      (first.cost_usd - expected).abs() < 1e-12,
      "{} vs {expected}",
      first.cost_usd
    );
    assert!(!first.cached);

    let again = embed(&gateway, model, request(texts(3)))
      .await
      .expect("embed");
    assert!(again.cached);
    assert_eq!(again.cost_usd, 0.0);
    assert_eq!(again.embeddings, first.embeddings);

    // Another size is another answer; a chat call with the same text is not this entry.
    let resized = EmbedRequest {
      dimensions: Some(8),
      ..request(texts(3))
    };
    let resized = embed(&gateway, model, resized).await.expect("embed");
    assert!(!resized.cached);
    assert_eq!(resized.embeddings[2].len(), 8);

    let records = records.0.lock().expect("records");
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.operation == Operation::Embeddings));
    assert_eq!(records[0].usage.prompt_tokens, first.usage.prompt_tokens);
    assert!(records[1].cached);
  }

  #[tokio::test]
  async fn the_ledger_row_says_embeddings() {
    let dir = std::env::temp_dir().join(format!("ferrogate-embed-ledger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ledger.db");
    let _ = std::fs::remove_file(&path);
    let path = path.to_str().expect("utf-8").to_string();
    let tracker = Arc::new(
      crate::costs::CostTracker::new(crate::costs::TrackerOptions {
        ledger_path: Some(path.clone()),
        pricing: embedding_pricing(),
        ..crate::costs::TrackerOptions::default()
      })
      .expect("tracker"),
    );
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig::mock(Duration::ZERO)],
      costs: Some(tracker.clone()),
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let response = embed(&gateway, "mock/text-embedding-3-small", request(texts(2)))
      .await
      .expect("embed");
    tracker.flush().expect("flush");
    let connection = rusqlite::Connection::open(&path).expect("open");
    let (model, operation, prompt, cost): (String, String, i64, i64) = connection
      .query_row(
        "SELECT model, operation, prompt_tokens, cost_nanos FROM ferrogate_ledger",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
      )
      .expect("one row");
    assert_eq!(
      (model.as_str(), operation.as_str()),
      ("mock/text-embedding-3-small", "embeddings")
    );
    assert_eq!(prompt as u64, response.usage.prompt_tokens);
    assert!(cost > 0);
    let _ = std::fs::remove_dir_all(&dir);
  }

  #[tokio::test]
  async fn bad_input_is_refused_before_any_vendor_and_recorded() {
    let records = Arc::new(Records::default());
    let gateway = mock_gateway(records.clone());
    let empty = embed(&gateway, "mock/e", request(vec![])).await;
    assert_eq!(
      empty.map(|_| ()).expect_err("empty").code,
      ErrorCode::InvalidRequest
    );
    let zero = EmbedRequest {
      dimensions: Some(0),
      ..request(texts(1))
    };
    let zero = embed(&gateway, "mock/e", zero).await;
    assert!(zero
      .map(|_| ())
      .expect_err("zero")
      .message
      .contains("dimensions"));
    assert_eq!(records.0.lock().expect("records").len(), 2);
  }

  #[tokio::test]
  async fn anthropic_has_no_embeddings() {
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig {
        name: "claude".into(),
        kind: "anthropic".into(),
        api_key: Some("sk-ant-test".into()),
        // Nothing listens here: the refusal must come before any request.
        base_url: Some("http://127.0.0.1:9".into()),
        ..ProviderConfig::default()
      }],
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let error = embed(&gateway, "claude/x", request(texts(1)))
      .await
      .map(|_| ())
      .expect_err("refused");
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(
      error.message.contains("anthropic has no embeddings API"),
      "{}",
      error.message
    );
  }

  /// A local OpenAI-shaped embeddings server: each input "text N" embeds as [N]; it records
  /// the size of every batch it received and refuses batches over OpenAI's limit.
  async fn fake_openai(batches: Arc<Mutex<Vec<usize>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
      .await
      .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
      while let Ok((socket, _)) = listener.accept().await {
        let batches = batches.clone();
        tokio::spawn(async move {
          let service = hyper::service::service_fn(
            move |req: hyper::Request<hyper::body::Incoming>| {
              let batches = batches.clone();
              async move {
                let body = req.into_body().collect().await.expect("body").to_bytes();
                let body: Value = serde_json::from_slice(&body).expect("json");
                let input = body["input"].as_array().expect("input array").clone();
                batches.lock().expect("batches").push(input.len());
                let (status, answer) = if input.len() > 2048 {
                  (
                    400,
                    json!({"error": {"message": "too many inputs", "type": "invalid_request_error"}}),
                  )
                } else {
                  let data: Vec<Value> = input
                    .iter()
                    .enumerate()
                    .rev()
                    .map(|(index, text)| {
                      let n: f32 = text
                        .as_str()
                        .and_then(|t| t.strip_prefix("text "))
                        .and_then(|n| n.parse().ok())
                        .expect("text N");
                      json!({"object": "embedding", "index": index, "embedding": [n]})
                    })
                    .collect();
                  let tokens = input.len() * 2;
                  (
                    200,
                    json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
                  )
                };
                let mut response = hyper::Response::new(Full::new(Bytes::from(answer.to_string())));
                *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                Ok::<_, Infallible>(response)
              }
            },
          );
          let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
            .await;
        });
      }
    });
    format!("http://{address}/v1")
  }

  #[tokio::test]
  async fn a_batch_over_the_vendor_limit_is_split_and_joined_in_order() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let base_url = fake_openai(batches.clone()).await;
    let gateway = Gateway::new(GatewayConfig {
      providers: vec![ProviderConfig {
        name: "openai".into(),
        kind: "openai".into(),
        api_key: Some("sk-test".into()),
        base_url: Some(base_url),
        ..ProviderConfig::default()
      }],
      ..GatewayConfig::default()
    })
    .expect("gateway");
    let response = embed(
      &gateway,
      "openai/text-embedding-3-small",
      request(texts(2500)),
    )
    .await
    .map_err(|e| e.message)
    .expect("embed");
    assert_eq!(*batches.lock().expect("batches"), [2048, 452]);
    let order: Vec<f32> = response.embeddings.iter().map(|v| v[0]).collect();
    let expected: Vec<f32> = (0..2500).map(|n| n as f32).collect();
    assert_eq!(order, expected);
    assert_eq!(response.usage.prompt_tokens, 5000);
    assert_eq!(response.usage.total_tokens, 5000);
    assert!((response.cost_usd - 5000.0 * 0.02e-6).abs() < 1e-12);
  }
}
