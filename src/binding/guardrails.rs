//! The `pii` guardrail's detector for JS: what `findPii` and `redactPii` return.
// Exported to JS only: a test build of the library has no caller for them.
#![cfg_attr(test, allow(dead_code))]

use napi_derive::napi;

use crate::guardrails::pii::{self, Detector, Entity};

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
