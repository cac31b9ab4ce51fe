//! The `pii` guardrail's detector for JS (what `findPii` and `redactPii` return), and
//! `GatewayOptions.guardrails` with the `custom` guardrail's JS check.
// Exported to JS only: a test build of the library has no caller for them.
#![cfg_attr(test, allow(dead_code))]

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::{Function, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use super::types::{GuardrailOptions, GuardrailsOptions};
use crate::error::GatewayError;
use crate::guardrails::pii::{self, Detector, Entity};
use crate::guardrails::{GuardrailHook, GuardrailSpec, Guardrails};

/// A finding in a JS string: its entity and its UTF-16 offsets (as `String.prototype.slice` takes
/// them); never the matched text.
#[napi(object)]
pub struct PiiFinding {
  /// 'email' | 'phone' | 'credit_card' | 'iban' | 'us_ssn' | 'ip_address' | 'api_key'
  pub entity: String,
  pub start: u32,
  pub end: u32,
}

fn detector(entities: Option<Vec<String>>) -> napi::Result<Detector> {
  let Some(names) = entities else {
    return Ok(Detector::all());
  };
  let mut chosen = Vec::with_capacity(names.len());
  for name in &names {
    let entity = Entity::parse(name).ok_or_else(|| {
      let known: Vec<&str> = Entity::ALL.iter().map(|e| e.name()).collect();
      napi::Error::new(
        napi::Status::InvalidArg,
        format!("unknown PII entity '{name}': one of {}", known.join(", ")),
      )
    })?;
    chosen.push(entity);
  }
  Ok(Detector::new(&chosen))
}

/// Personal data and keys in `text`: emails, phone numbers, card numbers (Luhn-checked), IBANs
/// (mod-97-checked), US SSNs, IP addresses and API keys, or only the `entities` named.
#[napi(catch_unwind)]
pub fn find_pii(text: String, entities: Option<Vec<String>>) -> napi::Result<Vec<PiiFinding>> {
  let found = detector(entities)?.find(&text);
  // Byte offsets to UTF-16 offsets, walking the text once.
  let mut out = Vec::with_capacity(found.len());
  let mut utf16: u32 = 0;
  let mut chars = text.char_indices().peekable();
  let mut advance_to = |target: usize, utf16: &mut u32| {
    while let Some(&(at, c)) = chars.peek() {
      if at >= target {
        break;
      }
      *utf16 += c.len_utf16() as u32;
      chars.next();
    }
  };
  for finding in found {
    advance_to(finding.start, &mut utf16);
    let start = utf16;
    advance_to(finding.end, &mut utf16);
    out.push(PiiFinding {
      entity: finding.entity.name().to_string(),
      start,
      end: utf16,
    });
  }
  Ok(out)
}

/// `text` with each finding replaced by `[EMAIL]`, `[CREDIT_CARD]`, …
#[napi(catch_unwind)]
pub fn redact_pii(text: String, entities: Option<Vec<String>>) -> napi::Result<String> {
  let detector = detector(entities)?;
  Ok(pii::replace(&text, &detector.find(&text)))
}

// ------------------------------------------------------------------------ GatewayOptions.guardrails

/// A `custom` guardrail's `check`, wrapped by the package so that it takes and resolves with
/// JSON text (index.js `guardrailCheck`): a throw or a rejection arrives here as an error.
type CheckFunction = ThreadsafeFunction<String, Promise<String>, String, napi::Status, false, true>;

/// Calls the JS check from the pipeline. Weak: a gateway with a hook does not keep the process
/// alive. The timeout and `onError` are the core's (`guardrails::stage`).
struct JsCheck {
  function: Arc<CheckFunction>,
}

impl GuardrailHook for JsCheck {
  fn check(&self, payload: String) -> BoxFuture<'static, Result<String, String>> {
    let function = self.function.clone();
    Box::pin(async move {
      // `_catch`: a throw becomes an error here instead of a fatal exception.
      let promise = function
        .call_async_catch(payload)
        .await
        .map_err(|e| e.reason.clone())?;
      promise.await.map_err(|e| e.reason.clone())
    })
  }
}

fn spec(options: GuardrailOptions) -> Result<GuardrailSpec, GatewayError> {
  let whole = |value: Option<f64>| value.filter(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0);
  let name = options
    .name
    .clone()
    .unwrap_or_else(|| options.r#type.clone());
  let bad = |field: &str| {
    GatewayError::config(format!(
      "guardrails: '{name}'.{field} must be a whole number >= 0"
    ))
  };
  Ok(GuardrailSpec {
    limit: match options.limit {
      None => None,
      Some(limit) => Some(whole(Some(limit)).ok_or_else(|| bad("limit"))? as u64),
    },
    timeout: match options.timeout_ms {
      None => None,
      Some(ms) => Some(Duration::from_millis(
        whole(Some(ms)).ok_or_else(|| bad("timeoutMs"))? as u64,
      )),
    },
    kind: options.r#type,
    name: options.name,
    entities: options.entities,
    action: options.action,
    pattern: options.pattern,
    on_error: options.on_error,
    hook: None,
  })
}

/// `GatewayOptions.guardrails` with the `custom` checks the package took out of it, in the
/// order their guardrails appear (input, then output).
pub(crate) fn guardrails(
  options: Option<GuardrailsOptions>,
  checks: Vec<Function<'_, String, Promise<String>>>,
) -> Result<Option<Arc<Guardrails>>, GatewayError> {
  let Some(options) = options else {
    return Ok(None);
  };
  let mut checks = checks.into_iter();
  let mut specs =
    |list: Option<Vec<GuardrailOptions>>| -> Result<Vec<GuardrailSpec>, GatewayError> {
      let mut out = Vec::new();
      for options in list.unwrap_or_default() {
        let mut spec = spec(options)?;
        if spec.kind == "custom" {
          if let Some(function) = checks.next() {
            let function = function
              .build_threadsafe_function()
              .callee_handled::<false>()
              .weak::<true>()
              .build()
              .map_err(|e| GatewayError::config(format!("guardrails: {}", e.reason)))?;
            spec.hook = Some(Arc::new(JsCheck {
              function: Arc::new(function),
            }));
          }
        }
        out.push(spec);
      }
      Ok(out)
    };
  let input = specs(options.input)?;
  let output = specs(options.output)?;
  if input.is_empty() && output.is_empty() {
    return Ok(None);
  }
  Guardrails::new(input, output).map(|guardrails| Some(Arc::new(guardrails)))
}
