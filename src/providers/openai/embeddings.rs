//! OpenAI Embeddings: `POST {baseUrl}/embeddings`, and the little-endian f32 base64 form
//! OpenAI uses for `encoding_format: "base64"` (the `/v1/embeddings` ingress encodes with it).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{GatewayError, Result};
use crate::providers::{expect_vectors, parse_json, EmbedAnswer, EmbedBatch};
use crate::types::Usage;

/// OpenAI refuses more than 2048 inputs in one request.
pub const BATCH_LIMIT: usize = 2048;

pub fn request_body(batch: &EmbedBatch<'_>) -> Value {
  let mut body = Map::new();
  body.insert("model".into(), json!(batch.model));
  body.insert("input".into(), json!(batch.input));
  body.insert("encoding_format".into(), json!("float"));
  if let Some(dimensions) = batch.dimensions {
    body.insert("dimensions".into(), json!(dimensions));
  }
  if let Some(user) = batch.user {
    body.insert("user".into(), json!(user));
  }
  Value::Object(body)
}

#[derive(Deserialize)]
struct EmbeddingList {
  data: Vec<Item>,
  #[serde(default)]
  model: String,
  usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Item {
  index: usize,
  embedding: Embedding,
}

/// Floats as asked; base64 from a compatible server that ignores `encoding_format`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Embedding {
  Floats(Vec<f32>),
  Base64(String),
}

#[derive(Deserialize)]
struct WireUsage {
  #[serde(default)]
  prompt_tokens: u64,
  #[serde(default)]
  total_tokens: u64,
}

/// The vectors in input order (OpenAI numbers them with `index`).
pub fn parse_response(body: &[u8], expected: usize) -> Result<EmbedAnswer> {
  let list: EmbeddingList = parse_json("openai", body)?;
  let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
  for item in list.data {
    let vector = match item.embedding {
      Embedding::Floats(floats) => floats,
      Embedding::Base64(text) => decode_base64(&text)
        .ok_or_else(|| GatewayError::protocol("openai sent an embedding that is not base64 f32"))?,
    };
    match slots.get_mut(item.index) {
      Some(slot @ None) => *slot = Some(vector),
      _ => {
        return Err(GatewayError::protocol(format!(
          "openai sent embedding index {} for {expected} inputs",
          item.index
        )))
      }
    }
  }
  let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
  expect_vectors("openai", &vectors, expected)?;
  Ok(EmbedAnswer {
    vectors,
    model: list.model,
    usage: list.usage.map(|usage| {
      // Embeddings bill input only; a server that leaves total out means the same.
      let total = usage.total_tokens.max(usage.prompt_tokens);
      Usage {
        prompt_tokens: usage.prompt_tokens,
        total_tokens: total,
        ..Usage::default()
      }
    }),
  })
}

/// A vector as OpenAI's `encoding_format: "base64"`: its f32 values, little-endian, in base64.
pub fn encode_base64(vector: &[f32]) -> String {
  let mut bytes = Vec::with_capacity(vector.len() * 4);
  for value in vector {
    bytes.extend_from_slice(&value.to_le_bytes());
  }
  STANDARD.encode(bytes)
}

/// The inverse of [`encode_base64`]; `None` when the text is not whole f32s in base64.
pub fn decode_base64(text: &str) -> Option<Vec<f32>> {
  let bytes = STANDARD.decode(text).ok()?;
  if bytes.len() % 4 != 0 {
    return None;
  }
  Some(
    bytes
      .chunks_exact(4)
      .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
      .collect(),
  )
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn base64_is_little_endian_f32_bytes() {
    // 1.0f32 = 0x3f800000, -2.0f32 = 0xc0000000: little-endian 00 00 80 3f, 00 00 00 c0.
    let encoded = encode_base64(&[1.0, -2.0]);
    assert_eq!(
      STANDARD.decode(&encoded).expect("base64"),
      [0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0]
    );
    assert_eq!(encoded, "AACAPwAAAMA=");
    assert_eq!(decode_base64(&encoded), Some(vec![1.0, -2.0]));
    assert_eq!(decode_base64("AAA="), None, "not whole f32s");
  }

  #[test]
  fn vectors_come_back_in_input_order_whatever_the_order_sent() {
    let body = br#"{"object":"list","model":"text-embedding-3-small","data":[
      {"object":"embedding","index":1,"embedding":[0.5,0.5]},
      {"object":"embedding","index":0,"embedding":"AACAPwAAAMA="}],
      "usage":{"prompt_tokens":7,"total_tokens":7}}"#;
    let answer = parse_response(body, 2).expect("answer");
    assert_eq!(answer.vectors, vec![vec![1.0, -2.0], vec![0.5, 0.5]]);
    assert_eq!(answer.usage.expect("usage").total_tokens, 7);
    assert!(parse_response(body, 3).is_err(), "one vector missing");
    let duplicate = br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}"#;
    assert!(parse_response(duplicate, 2).is_err());
  }

  #[test]
  fn the_request_asks_for_floats_and_the_dimensions() {
    let body = request_body(&EmbedBatch {
      model: "text-embedding-3-small",
      input: &["a", "b"],
      dimensions: Some(8),
      user: Some("ann"),
    });
    assert_eq!(
      body,
      json!({"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8, "user": "ann"})
    );
  }
}
