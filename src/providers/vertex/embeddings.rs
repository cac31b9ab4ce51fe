//! Vertex embeddings: `POST …/publishers/google/models/{m}:predict` with
//! `{"instances": [{"content": text}], "parameters": {"outputDimensionality": n}}`; each
//! prediction carries its vector and its token count.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Result;
use crate::providers::{expect_vectors, parse_json, EmbedAnswer};
use crate::types::Usage;

/// `gemini-embedding-001` takes one instance per request (the `text-embedding-*` models
/// take up to 250, within 20,000 tokens); one per request suits every model.
pub const BATCH_LIMIT: usize = 1;

pub fn request_body(input: &[&str], dimensions: Option<u32>) -> Value {
  let instances: Vec<Value> = input
    .iter()
    .map(|text| json!({ "content": text }))
    .collect();
  let mut body = json!({ "instances": instances });
  if let Some(dimensions) = dimensions {
    body["parameters"] = json!({ "outputDimensionality": dimensions });
  }
  body
}

#[derive(Deserialize)]
struct PredictResponse {
  #[serde(default)]
  predictions: Vec<Prediction>,
}

#[derive(Deserialize)]
struct Prediction {
  embeddings: Embedding,
}

#[derive(Deserialize)]
struct Embedding {
  #[serde(default)]
  values: Vec<f32>,
  statistics: Option<Statistics>,
}

#[derive(Deserialize)]
struct Statistics {
  token_count: Option<f64>,
}

pub fn parse_response(body: &[u8], expected: usize) -> Result<EmbedAnswer> {
  let response: PredictResponse = parse_json("vertex", body)?;
  let mut tokens: Option<u64> = None;
  let mut vectors = Vec::with_capacity(response.predictions.len());
  for prediction in response.predictions {
    if let Some(count) = prediction
      .embeddings
      .statistics
      .and_then(|s| s.token_count)
      .filter(|c| c.is_finite() && *c >= 0.0)
    {
      *tokens.get_or_insert(0) += count as u64;
    }
    vectors.push(prediction.embeddings.values);
  }
  expect_vectors("vertex", &vectors, expected)?;
  Ok(EmbedAnswer {
    vectors,
    model: String::new(),
    usage: tokens.map(|t| Usage::new(t, 0)),
  })
}
