//! OpenAI Embeddings, `POST /v1/embeddings`: the request parsed into an [`EmbedRequest`], the
//! answer encoded as OpenAI's `list` of `embedding`s (`float` arrays, or `base64` of the
//! little-endian f32 bytes, as OpenAI sends them), errors in OpenAI's shape.
//!
//! Embeddings are not chat-shaped, so this codec does not implement the `Parsed` / `Encoder`
//! contract of `ingress/mod.rs`; it has three small functions instead:
//! - [`parse`]: body bytes → [`EmbeddingsCall`], or an [`ErrorReply`] (400) whose message and
//!   `param` name the offending field;
//! - [`encode`]: an [`EmbedResponse`] → the response body;
//! - [`error_reply`]: any gateway error before the answer → status, headers and body.
//!
//! [`answer`] runs one request through `Gateway::embed` with them: what a driver calls once it
//! has authenticated the caller and read the body.

use std::io::Write;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::ErrorReply;
use crate::error::GatewayError;
use crate::pipeline::{CallOptions, Gateway};
use crate::providers::openai::embeddings::encode_base64;
use crate::types::{EmbedRequest, EmbedResponse};

/// How the client wants each vector written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
  Float,
  /// Little-endian f32 bytes in base64: a quarter of the size of float text, as OpenAI sends.
  Base64,
}

/// A parsed `/v1/embeddings` request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingsCall {
  /// As the client named it: a route alias or "provider/model" (echoed in the answer).
  pub model: String,
  pub request: EmbedRequest,
  pub encoding: EncodingFormat,
}

/// Parses an OpenAI Embeddings request body. Fields ferrogate does not model are ignored.
pub fn parse(body: &[u8]) -> Result<EmbeddingsCall, ErrorReply> {
  let value: Value = serde_json::from_slice(body).map_err(|e| {
    invalid(
      None,
      format!("We could not parse the JSON body of your request: {e}"),
    )
  })?;
  let Value::Object(fields) = value else {
    return Err(invalid(None, "the request body must be a JSON object"));
  };
  let model = match fields.get("model") {
    Some(Value::String(model)) if !model.is_empty() => model.clone(),
    None | Some(Value::Null) => {
      return Err(invalid(
        Some("model"),
        "Missing required parameter: 'model'.",
      ))
    }
    Some(_) => return Err(invalid(Some("model"), "model must be a non-empty string")),
  };
  let input = match fields.get("input") {
    None | Some(Value::Null) => {
      return Err(invalid(
        Some("input"),
        "Missing required parameter: 'input'.",
      ))
    }
    Some(Value::String(text)) => vec![text.clone()],
    Some(Value::Array(items)) if items.is_empty() => {
      return Err(invalid(
        Some("input"),
        "input must be a string or a non-empty array of strings",
      ))
    }
    Some(Value::Array(items)) => items
      .iter()
      .enumerate()
      .map(|(i, item)| match item {
        Value::String(text) => Ok(text.clone()),
        Value::Number(_) | Value::Array(_) => Err(invalid(
          Some("input"),
          format!("input[{i}]: token arrays are not supported by ferrogate; send the text"),
        )),
        _ => Err(invalid(
          Some("input"),
          format!("input[{i}] must be a string"),
        )),
      })
      .collect::<Result<Vec<String>, ErrorReply>>()?,
    Some(_) => {
      return Err(invalid(
        Some("input"),
        "input must be a string or an array of strings",
      ))
    }
  };
  if let Some(i) = input.iter().position(String::is_empty) {
    let at = if input.len() == 1 && matches!(fields.get("input"), Some(Value::String(_))) {
      "input".to_string()
    } else {
      format!("input[{i}]")
    };
    return Err(invalid(Some("input"), format!("{at} must not be empty")));
  }
  let dimensions = match fields.get("dimensions") {
    None | Some(Value::Null) => None,
    Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
      Some(n) if n > 0 => Some(n),
      _ => {
        return Err(invalid(
          Some("dimensions"),
          "dimensions must be a whole number > 0",
        ))
      }
    },
  };
  let encoding = match fields.get("encoding_format") {
    None | Some(Value::Null) => EncodingFormat::Float,
    Some(Value::String(format)) if format == "float" => EncodingFormat::Float,
    Some(Value::String(format)) if format == "base64" => EncodingFormat::Base64,
    Some(other) => {
      return Err(invalid(
        Some("encoding_format"),
        format!("encoding_format must be 'float' or 'base64', not {other}"),
      ))
    }
  };
  let user = match fields.get("user") {
    None | Some(Value::Null) => None,
    Some(Value::String(user)) => Some(user.clone()),
    Some(_) => return Err(invalid(Some("user"), "user must be a string")),
  };
  Ok(EmbeddingsCall {
    model,
    request: EmbedRequest {
      input,
      dimensions,
      user,
    },
    encoding,
  })
}

/// The answer body: `{ object: 'list', data: [{ object: 'embedding', index, embedding }], model,
/// usage: { prompt_tokens, total_tokens } }`. Floats are written straight into the body (shortest
/// f32 text), never through a JSON tree.
pub fn encode(response: &EmbedResponse, encoding: EncodingFormat, model: &str) -> Vec<u8> {
  let vectors = response.embeddings.as_slice();
  let floats: usize = vectors.iter().map(Vec::len).sum();
  let mut out = Vec::with_capacity(64 + vectors.len() * 48 + floats * 12);
  out.extend_from_slice(br#"{"object":"list","data":["#);
  for (index, vector) in vectors.iter().enumerate() {
    if index > 0 {
      out.push(b',');
    }
    // Writing into a Vec cannot fail.
    let _ = write!(
      out,
      r#"{{"object":"embedding","index":{index},"embedding":"#
    );
    match encoding {
      EncodingFormat::Float => {
        let _ = serde_json::to_writer(&mut out, vector);
      }
      EncodingFormat::Base64 => {
        out.push(b'"');
        out.extend_from_slice(encode_base64(vector).as_bytes());
        out.push(b'"');
      }
    }
    out.push(b'}');
  }
  out.extend_from_slice(br#"],"model":"#);
  let _ = serde_json::to_writer(&mut out, model);
  let _ = write!(
    out,
    r#","usage":{{"prompt_tokens":{},"total_tokens":{}}}}}"#,
    response.usage.prompt_tokens, response.usage.total_tokens
  );
  out
}

/// A gateway error as OpenAI answers it: the Chat Completions codec owns OpenAI's error shape.
pub fn error_reply(error: &GatewayError) -> ErrorReply {
  super::chat_completions::error_reply(error)
}

/// A 400 naming the field (OpenAI's `param`).
fn invalid(param: Option<&str>, message: impl Into<String>) -> ErrorReply {
  let error = GatewayError::invalid_request(message);
  let mut reply = error_reply(&error);
  if let Ok(mut body) = serde_json::from_slice::<Value>(&reply.body) {
    body["error"]["param"] = json!(param);
    reply.body = body.to_string().into_bytes();
  }
  reply
}

/// One `/v1/embeddings` request through the gateway: the answer body and the tokens it used
/// (for key quotas), or the error reply. `identity`, when the driver authenticated the caller
/// by key, replaces the body's `user`.
pub async fn answer(
  gateway: &Gateway,
  body: &[u8],
  identity: Option<String>,
  cancel: CancellationToken,
  request_id: &str,
  trace: Option<std::sync::Arc<crate::pipeline::CallTrace>>,
) -> Result<(Vec<u8>, u64), ErrorReply> {
  let mut call = parse(body)?;
  if identity.is_some() {
    call.request.user = identity;
  }
  let result = Box::pin(gateway.embed(
    &call.model,
    call.request,
    CallOptions {
      ingress: Some(super::Protocol::Embeddings.as_str()),
      trace,
      ..CallOptions::default()
    },
    cancel,
    request_id,
  ))
  .await;
  match result {
    Ok(response) => Ok((
      encode(&response, call.encoding, &call.model),
      response.usage.total_tokens,
    )),
    Err(error) => Err(error_reply(&gateway.redact_error(error))),
  }
}

#[cfg(test)]
mod tests {
  use std::sync::Arc;

  use super::*;
  use crate::types::Usage;

  fn reply_json(reply: &ErrorReply) -> Value {
    serde_json::from_slice(&reply.body).expect("json")
  }

  #[test]
  fn requests_parse_and_bad_fields_are_named() {
    let call = parse(br#"{"model":"mock/e","input":["a","b"],"dimensions":4,"encoding_format":"base64","user":"u","extra":1}"#)
      .expect("parsed");
    assert_eq!(call.model, "mock/e");
    assert_eq!(call.request.input, ["a", "b"]);
    assert_eq!(call.request.dimensions, Some(4));
    assert_eq!(call.request.user.as_deref(), Some("u"));
    assert_eq!(call.encoding, EncodingFormat::Base64);
    let single = parse(br#"{"model":"m","input":"one"}"#).expect("parsed");
    assert_eq!(
      (single.request.input.len(), single.encoding),
      (1, EncodingFormat::Float)
    );

    for (body, param, words) in [
      (&br#"{"input":"a"}"#[..], "model", "'model'"),
      (br#"{"model":"m"}"#, "input", "'input'"),
      (br#"{"model":"m","input":[1,2,3]}"#, "input", "token arrays"),
      (br#"{"model":"m","input":[[1,2]]}"#, "input", "token arrays"),
      (br#"{"model":"m","input":[]}"#, "input", "non-empty"),
      (
        br#"{"model":"m","input":["a",""]}"#,
        "input",
        "input[1] must not be empty",
      ),
      (
        br#"{"model":"m","input":"a","dimensions":0}"#,
        "dimensions",
        "dimensions",
      ),
      (
        br#"{"model":"m","input":"a","encoding_format":"int8"}"#,
        "encoding_format",
        "'float' or 'base64'",
      ),
      (br#"{"model":"m","input":"a","user":7}"#, "user", "user"),
    ] {
      let reply = parse(body).expect_err("refused");
      assert_eq!(reply.status, 400);
      let json = reply_json(&reply);
      assert_eq!(json["error"]["param"], param, "{json}");
      assert_eq!(json["error"]["type"], "invalid_request_error");
      let message = json["error"]["message"].as_str().expect("message");
      assert!(message.contains(words), "{message} should say {words}");
    }
    let malformed = parse(b"{nope").expect_err("malformed");
    assert_eq!(malformed.status, 400);
    assert_eq!(reply_json(&malformed)["error"]["param"], Value::Null);
  }

  #[test]
  fn answers_are_openai_lists_in_float_or_base64() {
    let response = EmbedResponse {
      embeddings: Arc::new(vec![vec![1.0, -2.0], vec![0.1, 0.5]]),
      provider: "mock".into(),
      model: "e".into(),
      usage: Usage::new(3, 0),
      cost_usd: 0.0,
      cached: false,
      latency_ms: 1.0,
      attempts: 1,
      request_id: "fg_1".into(),
    };
    let float: Value =
      serde_json::from_slice(&encode(&response, EncodingFormat::Float, "mock/e")).expect("json");
    assert_eq!(
      float,
      json!({"object": "list", "data": [
        {"object": "embedding", "index": 0, "embedding": [1.0, -2.0]},
        {"object": "embedding", "index": 1, "embedding": [0.1, 0.5]}],
        "model": "mock/e", "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    );
    // Shortest f32 text: 0.1f32 is written "0.1", not its f64 widening.
    assert!(
      String::from_utf8_lossy(&encode(&response, EncodingFormat::Float, "m")).contains("[0.1,0.5]")
    );
    let base64: Value =
      serde_json::from_slice(&encode(&response, EncodingFormat::Base64, "m")).expect("json");
    assert_eq!(base64["data"][0]["embedding"], "AACAPwAAAMA=");
  }
}
