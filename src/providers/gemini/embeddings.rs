//! Gemini embeddings: `POST {baseUrl}/v1beta/models/{model}:batchEmbedContents`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::providers::{expect_vectors, parse_json, EmbedAnswer};

/// `batchEmbedContents` refuses more than 100 requests at once.
pub const BATCH_LIMIT: usize = 100;

/// One `EmbedContentRequest` per input, each naming the model as `models/…`.
pub fn request_body(model: &str, input: &[&str], dimensions: Option<u32>) -> Value {
  let resource = format!("models/{model}");
  let requests: Vec<Value> = input
    .iter()
    .map(|text| {
      let mut request = Map::new();
      request.insert("model".into(), json!(resource));
      request.insert("content".into(), json!({ "parts": [{ "text": text }] }));
      if let Some(dimensions) = dimensions {
        request.insert("outputDimensionality".into(), json!(dimensions));
      }
      Value::Object(request)
    })
    .collect();
  json!({ "requests": requests })
}

#[derive(Deserialize)]
struct BatchResponse {
  #[serde(default)]
  embeddings: Vec<ContentEmbedding>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
  #[serde(default)]
  values: Vec<f32>,
}

/// The vectors in request order. Gemini names no model and reports no token usage here: the
/// pipeline fills in the model asked and counts the tokens.
pub fn parse_response(body: &[u8], expected: usize) -> Result<EmbedAnswer> {
  let response: BatchResponse = parse_json("gemini", body)?;
  let vectors: Vec<Vec<f32>> = response.embeddings.into_iter().map(|e| e.values).collect();
  expect_vectors("gemini", &vectors, expected)?;
  Ok(EmbedAnswer {
    vectors,
    model: String::new(),
    usage: None,
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn each_input_is_one_request_naming_the_model() {
    let body = request_body("gemini-embedding-001", &["a", "b"], Some(16));
    assert_eq!(
      body["requests"][1],
      json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 16})
    );
    let answer =
      parse_response(br#"{"embeddings":[{"values":[1,0]},{"values":[0,1]}]}"#, 2).expect("answer");
    assert_eq!(answer.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    assert!(parse_response(br#"{"embeddings":[]}"#, 1).is_err());
  }
}
