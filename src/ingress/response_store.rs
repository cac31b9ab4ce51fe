//! What the driver does with the response store around a Responses call:
//! [`history`] before the call (the conversation `previous_response_id` names), [`remember`]
//! after it (`store: true`), and the `GET` / `DELETE /v1/responses/{id}` answers.
//!
//! An entry is `{"response": <the response object>, "items": [<every item of the
//! conversation, this response's output last>]}`, so one read continues a conversation of
//! any length, on any provider.

use serde_json::{json, Value};

use super::responses::{response_not_found, Turn};
use crate::backend::responses::ResponseStore;
use crate::error::{GatewayError, Result};

fn unreadable(id: &str) -> GatewayError {
  GatewayError::protocol(format!("the stored response '{id}' could not be read"))
}

async fn entry(store: &dyn ResponseStore, id: &str) -> Result<Option<Value>> {
  match store.get(id).await? {
    None => Ok(None),
    Some(text) => serde_json::from_str(&text)
      .map(Some)
      .map_err(|_| unreadable(id)),
  }
}

/// The items of the conversation `turn.previous_response_id` names (none without one).
/// An id the store does not hold (unknown, expired, deleted) is INVALID_REQUEST naming it.
pub async fn history(store: &dyn ResponseStore, turn: &Turn) -> Result<Vec<Value>> {
  let Some(id) = &turn.previous_response_id else {
    return Ok(Vec::new());
  };
  match entry(store, id).await? {
    Some(Value::Object(mut stored)) => match stored.remove("items") {
      Some(Value::Array(items)) => Ok(items),
      _ => Err(unreadable(id)),
    },
    Some(_) => Err(unreadable(id)),
    None => Err(GatewayError::invalid_request(format!(
      "previous_response_id: Previous response with id '{id}' not found."
    ))),
  }
}

/// Keeps the completed response and its conversation (`history`, then this turn's input,
/// then its output) when the request asked for `store` (the default). Nothing is kept for a
/// call that failed.
pub async fn remember(store: &dyn ResponseStore, turn: &Turn, history: Vec<Value>) -> Result<()> {
  match turn.finished_response() {
    Some(response) => remember_response(store, turn, history, response).await,
    None => Ok(()),
  }
}

/// [`remember`] for an answer the encoder did not make: a same-protocol passthrough's
/// `response` object as the vendor sent it, kept under the vendor's id.
pub async fn remember_response(
  store: &dyn ResponseStore,
  turn: &Turn,
  history: Vec<Value>,
  response: Value,
) -> Result<()> {
  if !turn.store {
    return Ok(());
  }
  let id = match response.get("id").and_then(Value::as_str) {
    Some(id) if !id.is_empty() => id.to_string(),
    _ => turn.response_id.clone(),
  };
  let mut items = history;
  items.extend(turn.input_items.iter().cloned());
  if let Some(Value::Array(output)) = response.get("output") {
    items.extend(output.iter().cloned());
  }
  let entry = json!({ "response": response, "items": items });
  store.put(id, entry.to_string()).await
}

/// `GET /v1/responses/{id}`: the response object as it was answered; NOT_FOUND otherwise.
pub async fn get(store: &dyn ResponseStore, id: &str) -> Result<Value> {
  match entry(store, id).await? {
    Some(Value::Object(mut stored)) => stored.remove("response").ok_or_else(|| unreadable(id)),
    _ => Err(response_not_found(id)),
  }
}

/// `DELETE /v1/responses/{id}`: `{id, object: 'response.deleted', deleted: true}`, or
/// NOT_FOUND.
pub async fn delete(store: &dyn ResponseStore, id: &str) -> Result<Value> {
  if store.delete(id).await? {
    Ok(json!({ "id": id, "object": "response.deleted", "deleted": true }))
  } else {
    Err(response_not_found(id))
  }
}
