//! The `pii` guardrail's detector for JS (what `findPii` and `redactPii` return), and
//! `GatewayOptions.guardrails` with the `custom` guardrail's JS check.
// Exported to JS only: a test build of the library has no caller for them.
#![cfg_attr(test, allow(dead_code))]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use napi::bindgen_prelude::{Function, Promise, Uint32ArraySlice};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{sys, JsString, JsValue};
use napi_derive::napi;

use super::types::{GuardrailOptions, GuardrailsOptions};
use crate::error::GatewayError;
use crate::guardrails::pii::{self, Detector, Entity};
use crate::guardrails::{GuardrailHook, GuardrailSpec, Guardrails};

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

/// The names of the entities, by the index `findPiiPacked` gives them.
#[napi]
pub fn pii_entities() -> Vec<&'static str> {
  Entity::ALL.iter().map(|entity| entity.name()).collect()
}

/// What `findPii` (lib/text.js) finds, packed into `into`: three numbers per finding, the
/// entity's index in `piiEntities()`, then its start and end as UTF-16 offsets (what
/// `String.prototype.slice` takes). Returns how many numbers the findings take; when that is
/// more than `into` holds, nothing is written and the caller asks again with room for them.
/// The wrapper makes the `{ entity, start, end }` objects: one object literal in JS costs far
/// less than setting three properties through N-API, which took longer than the scan; and it
/// keeps `into` from call to call, where a new array per call cost an allocation, page faults
/// and a finalizer.
#[napi(
  catch_unwind,
  ts_args_type = "text: string, entities: Array<string> | undefined | null, into: Uint32Array"
)]
pub fn find_pii_packed(
  text: JsString,
  entities: Option<Vec<String>>,
  mut into: Uint32ArraySlice,
) -> napi::Result<u32> {
  let detector = detector(entities)?;
  // SAFETY: no JS runs while this call does, so nothing else writes the array meanwhile (it is
  // lib/text.js's own, on no SharedArrayBuffer).
  let into = unsafe { into.as_mut() };
  with_utf8(&text, |text, ascii| {
    FINDINGS.with_borrow_mut(|found| {
      detector.find_into(text, found);
      let needed = found.len() * 3;
      if let Some(into) = into.get_mut(..needed) {
        let mut offsets = Utf16Offsets::new(text, ascii);
        for (finding, packed) in found.iter().zip(into.chunks_exact_mut(3)) {
          packed[0] = finding.entity.index() as u32;
          packed[1] = offsets.at(finding.start);
          packed[2] = offsets.at(finding.end);
        }
      }
      if found.capacity() > KEPT_FINDINGS {
        *found = Vec::new();
      }
      needed as u32
    })
  })
}

// Kept from one `findPiiPacked` call to the next on the thread: a guardrail may see a megabyte
// on every call, and new buffers each time cost their growth and the page faults of touching
// fresh memory, more than the copy into them.
thread_local! {
  /// The text, as UTF-8.
  static TEXT_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
  static FINDINGS: RefCell<Vec<pii::Finding>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept for the next call no larger than these (bytes; findings, about 1.5 MB).
const KEPT_TEXT_BUFFER: usize = 16 << 20;
const KEPT_FINDINGS: usize = 1 << 16;

/// Calls `work` with the JS string's text as UTF-8, and whether it is all ASCII. The string is
/// written once into a buffer large enough for any string of its length: napi-rs's `String`
/// measures the UTF-8 length first, a second pass over the text.
fn with_utf8<T>(text: &JsString, work: impl FnOnce(&str, bool) -> T) -> napi::Result<T> {
  let not_a_string = || napi::Error::new(napi::Status::StringExpected, "text must be a string");
  let units = text.utf16_len().map_err(|_| not_a_string())?;
  // Each UTF-16 unit takes three UTF-8 bytes at most (a surrogate pair's four bytes are two
  // units), and napi writes a terminating nul.
  let capacity = units * 3 + 1;
  TEXT_BUFFER.with_borrow_mut(|buffer| {
    buffer.clear();
    // Only reserved: the bytes napi does not write are never touched.
    buffer.reserve(capacity);
    let mut written = 0;
    // SAFETY: `buffer` has room for `capacity` bytes, the most napi writes (the text and a nul),
    // and its first `written` bytes are initialized once napi returns successfully.
    let status = unsafe {
      let status = sys::napi_get_value_string_utf8(
        text.value().env,
        text.raw(),
        buffer.as_mut_ptr().cast(),
        capacity,
        &mut written,
      );
      if status == sys::Status::napi_ok {
        buffer.set_len(written);
      }
      status
    };
    if status != sys::Status::napi_ok {
      return Err(not_a_string());
    }
    let utf8 = std::str::from_utf8(buffer).map_err(|_| not_a_string())?;
    // A non-ASCII unit takes two UTF-8 bytes at least: as many bytes as units is ASCII.
    let result = work(utf8, written == units);
    if buffer.capacity() > KEPT_TEXT_BUFFER {
      *buffer = Vec::new();
    }
    Ok(result)
  })
}

/// Byte offsets into a text turned into UTF-16 offsets, asked for in increasing order.
struct Utf16Offsets<'a> {
  /// None for ASCII text, where the two are the same.
  chars: Option<std::iter::Peekable<std::str::CharIndices<'a>>>,
  utf16: u32,
}

impl<'a> Utf16Offsets<'a> {
  fn new(text: &'a str, ascii: bool) -> Utf16Offsets<'a> {
    Utf16Offsets {
      chars: (!ascii).then(|| text.char_indices().peekable()),
      utf16: 0,
    }
  }

  fn at(&mut self, byte: usize) -> u32 {
    let Some(chars) = &mut self.chars else {
      return byte as u32;
    };
    while let Some(&(at, c)) = chars.peek() {
      if at >= byte {
        break;
      }
      self.utf16 += c.len_utf16() as u32;
      chars.next();
    }
    self.utf16
  }
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
