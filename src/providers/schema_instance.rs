//! A deterministic instance of a JSON Schema: what the `mock` provider answers to a
//! `json_schema` request, so structured-output code runs and tests offline.
//!
//! The rules are simple on purpose, so a caller can predict the answer: `const` is used
//! as is, an `enum` gives its first value, a number its lower bound (or a value within its
//! bounds), a string its `format` example or the property's own name (padded to
//! `minLength`), an object every `required` property (and optional ones up to
//! `minProperties`), an array `max(minItems, 1)` items (none when `maxItems` is 0).
//! Local `$ref`s (`#/$defs/…`, `#/definitions/…`) are followed; `allOf` is merged,
//! `anyOf` / `oneOf` take their first branch. A string with a `pattern` is the shortest
//! match of the pattern (taking, in each character class, the character `variant` points
//! at); a pattern the Rust regex syntax cannot read (lookarounds, backreferences) is
//! ignored. `not` and `if`/`then` are not interpreted.

use serde_json::{Map, Number, Value};

/// Deeper than this, a schema (usually a recursive `$ref`) gets its smallest instance.
const MAX_DEPTH: usize = 24;

/// The instance of `schema`; `$ref`s resolve against `schema` itself.
pub fn instance_of(schema: &Value) -> Value {
  Generator { root: schema }.value(schema, "value", 0, 0)
}

struct Generator<'a> {
  root: &'a Value,
}

impl<'a> Generator<'a> {
  /// `name` is the property the value is for (a string's default text); `variant` makes
  /// the items of one array differ, so `uniqueItems` holds.
  fn value(&self, schema: &'a Value, name: &str, variant: usize, depth: usize) -> Value {
    let Some(map) = schema.as_object() else {
      // `true` (or anything that is not a schema object) accepts every value.
      return Value::Null;
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
      return match self.resolve(reference) {
        Some(target) if depth < MAX_DEPTH => self.value(target, name, variant, depth + 1),
        _ => Value::Null,
      };
    }
    if let Some(constant) = map.get("const") {
      return constant.clone();
    }
    if let Some(values) = map.get("enum").and_then(Value::as_array) {
      if !values.is_empty() {
        return values[variant % values.len()].clone();
      }
    }
    if let Some(parts) = map.get("allOf").and_then(Value::as_array) {
      let merged = self.merge_all_of(map, parts);
      return self.value_of_map(&merged, name, variant, depth);
    }
    for key in ["anyOf", "oneOf"] {
      if let Some(first) = map
        .get(key)
        .and_then(Value::as_array)
        .and_then(|branches| first_non_null(branches))
      {
        if depth < MAX_DEPTH {
          return self.value(first, name, variant, depth + 1);
        }
      }
    }
    self.value_of_map(map, name, variant, depth)
  }

  fn value_of_map(
    &self,
    map: &Map<String, Value>,
    name: &str,
    variant: usize,
    depth: usize,
  ) -> Value {
    match type_of(map) {
      "object" => self.object(map, variant, depth),
      "array" => self.array(map, name, depth),
      "string" => Value::String(string(map, name, variant)),
      "integer" => number(map, true, variant),
      "number" => number(map, false, variant),
      "boolean" => Value::Bool(variant % 2 == 1),
      _ => Value::Null,
    }
  }

  fn object(&self, map: &'a Map<String, Value>, variant: usize, depth: usize) -> Value {
    let empty = Map::new();
    let properties = map
      .get("properties")
      .and_then(Value::as_object)
      .unwrap_or(&empty);
    let mut names: Vec<&str> = map
      .get("required")
      .and_then(Value::as_array)
      .map(|required| required.iter().filter_map(Value::as_str).collect())
      .unwrap_or_default();
    let min_properties = bound(map, "minProperties").unwrap_or(0.0);
    for name in properties.keys() {
      if (names.len() as f64) >= min_properties {
        break;
      }
      if !names.contains(&name.as_str()) {
        names.push(name);
      }
    }
    let mut out = Map::new();
    if depth >= MAX_DEPTH {
      return Value::Object(out);
    }
    for (index, name) in names.iter().enumerate() {
      if out.contains_key(*name) {
        continue;
      }
      // Only the first property varies: enough to tell array items apart.
      let item_variant = if index == 0 { variant } else { 0 };
      let value = match properties.get(*name) {
        Some(property) => self.value(property, name, item_variant, depth + 1),
        None => match map.get("additionalProperties") {
          Some(extra @ Value::Object(_)) => self.value(extra, name, item_variant, depth + 1),
          _ => Value::Null,
        },
      };
      out.insert((*name).to_string(), value);
    }
    Value::Object(out)
  }

  fn array(&self, map: &'a Map<String, Value>, name: &str, depth: usize) -> Value {
    let min_items = bound(map, "minItems").unwrap_or(0.0).max(0.0) as usize;
    let max_items = bound(map, "maxItems").map(|max| max.max(0.0) as usize);
    let mut count = min_items.max(1);
    if let Some(max) = max_items {
      count = count.min(max);
    }
    // Recursive schemas usually recurse through arrays: stop adding optional items early,
    // well before objects reach MAX_DEPTH.
    if depth >= MAX_DEPTH / 2 {
      count = min_items;
    }
    // Tuples: `prefixItems` (2020-12) or an `items` array (draft-07), then `items` /
    // `additionalItems` for the rest.
    let prefix: &[Value] = map
      .get("prefixItems")
      .or_else(|| map.get("items").filter(|items| items.is_array()))
      .and_then(Value::as_array)
      .map(Vec::as_slice)
      .unwrap_or(&[]);
    let rest = if map.contains_key("prefixItems") {
      map.get("items")
    } else if map.get("items").is_some_and(Value::is_array) {
      map.get("additionalItems")
    } else {
      map.get("items")
    };
    if !prefix.is_empty() {
      count = min_items
        .max(prefix.len())
        .min(max_items.unwrap_or(usize::MAX));
    }
    let singular = singular(name);
    let items = (0..count)
      .map(|index| match (prefix.get(index), rest) {
        // A tuple's positions have schemas of their own: no need to vary them.
        (Some(item), _) => self.value(item, &singular, 0, depth + 1),
        (None, Some(item)) => self.value(item, &singular, index, depth + 1),
        (None, None) => Value::Null,
      })
      .collect();
    Value::Array(items)
  }

  fn resolve(&self, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
      return Some(self.root);
    }
    self.root.pointer(pointer)
  }

  /// One schema from `allOf`'s parts: properties merged, `required` joined, any other
  /// keyword from the last part that has it.
  fn merge_all_of(&self, map: &'a Map<String, Value>, parts: &'a [Value]) -> Map<String, Value> {
    let mut merged = map.clone();
    merged.remove("allOf");
    let mut properties = merged
      .remove("properties")
      .and_then(|p| p.as_object().cloned())
      .unwrap_or_default();
    let mut required: Vec<Value> = merged
      .remove("required")
      .and_then(|r| r.as_array().cloned())
      .unwrap_or_default();
    for part in parts {
      let part = match part.get("$ref").and_then(Value::as_str) {
        Some(reference) => self.resolve(reference).unwrap_or(part),
        None => part,
      };
      let Some(part) = part.as_object() else {
        continue;
      };
      for (key, value) in part {
        match (key.as_str(), value) {
          ("properties", Value::Object(more)) => {
            for (name, schema) in more {
              properties.insert(name.clone(), schema.clone());
            }
          }
          ("required", Value::Array(more)) => {
            for name in more {
              if !required.contains(name) {
                required.push(name.clone());
              }
            }
          }
          ("$ref" | "allOf", _) => {}
          _ => {
            merged.insert(key.clone(), value.clone());
          }
        }
      }
    }
    if !properties.is_empty() {
      merged.insert("properties".into(), Value::Object(properties));
      merged
        .entry("type")
        .or_insert_with(|| Value::String("object".into()));
    }
    if !required.is_empty() {
      merged.insert("required".into(), Value::Array(required));
    }
    merged
  }
}

/// "entities" → "entity", "tags" → "tag": the text of an array's string items.
fn singular(name: &str) -> String {
  if let Some(stem) = name.strip_suffix("ies").filter(|stem| !stem.is_empty()) {
    format!("{stem}y")
  } else if let Some(stem) = name
    .strip_suffix('s')
    .filter(|stem| !stem.is_empty() && !stem.ends_with('s'))
  {
    stem.to_string()
  } else {
    name.to_string()
  }
}

fn first_non_null(branches: &[Value]) -> Option<&Value> {
  branches
    .iter()
    .find(|branch| branch.get("type").and_then(Value::as_str) != Some("null"))
    .or_else(|| branches.first())
}

/// The type to produce: the first non-null one named, else the one the keywords imply.
fn type_of(map: &Map<String, Value>) -> &str {
  match map.get("type") {
    Some(Value::String(name)) => return name,
    Some(Value::Array(names)) => {
      let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
      if let Some(name) = names.iter().find(|name| **name != "null").or(names.first()) {
        return name;
      }
    }
    _ => {}
  }
  let has = |keys: &[&str]| keys.iter().any(|key| map.contains_key(*key));
  if has(&[
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
  ]) {
    "object"
  } else if has(&["items", "prefixItems", "minItems", "maxItems"]) {
    "array"
  } else if has(&["minLength", "maxLength", "format", "pattern"]) {
    "string"
  } else if has(&[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
  ]) {
    "number"
  } else {
    "null"
  }
}

fn bound(map: &Map<String, Value>, key: &str) -> Option<f64> {
  map
    .get(key)
    .and_then(Value::as_f64)
    .filter(|n| n.is_finite())
}

fn string(map: &Map<String, Value>, name: &str, variant: usize) -> String {
  let format = map.get("format").and_then(Value::as_str).unwrap_or("");
  let example = match format {
    "date-time" => Some("2024-01-01T00:00:00Z"),
    "date" => Some("2024-01-01"),
    "time" => Some("00:00:00Z"),
    "email" | "idn-email" => Some("user@example.com"),
    "uri" | "url" | "iri" => Some("https://example.com/"),
    "uri-reference" | "iri-reference" => Some("/example"),
    "uuid" => Some("00000000-0000-4000-8000-000000000000"),
    "hostname" | "idn-hostname" => Some("example.com"),
    "ipv4" => Some("192.0.2.1"),
    "ipv6" => Some("2001:db8::1"),
    "duration" => Some("P1D"),
    _ => None,
  };
  if let Some(example) = example {
    // A format example is already valid; varying it would break the format.
    return example.to_string();
  }
  if let Some(matching) = map
    .get("pattern")
    .and_then(Value::as_str)
    .and_then(|pattern| pattern_instance(pattern, variant))
  {
    return matching;
  }
  let mut text = if name.is_empty() {
    "value".to_string()
  } else {
    name.to_string()
  };
  if variant > 0 {
    text.push_str(&format!("-{variant}"));
  }
  let min_length = bound(map, "minLength").unwrap_or(0.0).max(0.0) as usize;
  let max_length = bound(map, "maxLength").map(|max| max.max(0.0) as usize);
  let length = text.chars().count();
  if length < min_length {
    text.extend(std::iter::repeat_n('x', min_length - length));
  }
  if let Some(max) = max_length {
    if text.chars().count() > max {
      text = text.chars().take(max).collect();
      // Truncation may have eaten the variant suffix: keep items distinct from the end.
      if variant > 0 && max > 0 {
        let suffix = char::from_digit((variant % 36) as u32, 36).unwrap_or('x');
        text.pop();
        text.push(suffix);
      }
    }
  }
  text
}

/// The shortest text matching `pattern` (JSON Schema patterns are unanchored, so any text
/// that is a whole match also matches); `None` when the pattern cannot be read.
fn pattern_instance(pattern: &str, variant: usize) -> Option<String> {
  let hir = regex_syntax::ParserBuilder::new()
    .build()
    .parse(pattern)
    .ok()?;
  let mut out = String::new();
  write_match(&hir, variant, &mut out, 0).then_some(out)
}

fn write_match(
  hir: &regex_syntax::hir::Hir,
  variant: usize,
  out: &mut String,
  depth: usize,
) -> bool {
  use regex_syntax::hir::{Class, HirKind};
  if depth > MAX_DEPTH * 4 {
    return false;
  }
  match hir.kind() {
    HirKind::Empty | HirKind::Look(_) => true,
    HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
      Ok(text) => {
        out.push_str(text);
        true
      }
      Err(_) => false,
    },
    HirKind::Class(Class::Unicode(class)) => {
      // Printable characters first: `.` or `[^,]` should not give a control character.
      let printable: Vec<(u32, u32)> = class
        .ranges()
        .iter()
        .map(|r| (u32::from(r.start()).max(0x21), u32::from(r.end())))
        .filter(|(start, end)| start <= end)
        .collect();
      let ranges = if printable.is_empty() {
        class
          .ranges()
          .iter()
          .map(|r| (u32::from(r.start()), u32::from(r.end())))
          .collect()
      } else {
        printable
      };
      let size: u64 = ranges
        .iter()
        .map(|(start, end)| u64::from(end - start) + 1)
        .sum();
      if size == 0 {
        return false;
      }
      // The `variant`-th character of the class, so array items differ.
      let mut index = (variant as u64) % size;
      for (start, end) in ranges {
        let width = u64::from(end - start) + 1;
        if index < width {
          // Within one range, and a range of chars has no surrogates inside: always a char.
          return match char::from_u32(start + index as u32) {
            Some(c) => {
              out.push(c);
              true
            }
            None => false,
          };
        }
        index -= width;
      }
      false
    }
    HirKind::Class(Class::Bytes(_)) => false,
    HirKind::Repetition(repetition) => {
      (0..repetition.min).all(|_| write_match(&repetition.sub, variant, out, depth + 1))
    }
    HirKind::Capture(capture) => write_match(&capture.sub, variant, out, depth + 1),
    HirKind::Concat(parts) => parts
      .iter()
      .all(|part| write_match(part, variant, out, depth + 1)),
    HirKind::Alternation(branches) => branches
      .first()
      .is_some_and(|first| write_match(first, variant, out, depth + 1)),
  }
}

/// The lower bound (exclusive bounds stepped over), else the upper one when it is below
/// zero, else zero; `multipleOf` rounds up; `variant` steps up while the upper bound allows.
fn number(map: &Map<String, Value>, integer: bool, variant: usize) -> Value {
  let minimum = bound(map, "minimum");
  let maximum = bound(map, "maximum");
  // Draft 4 wrote exclusive bounds as booleans next to minimum / maximum.
  let exclusive = |key: &str, plain: Option<f64>| match map.get(key) {
    Some(Value::Bool(true)) => plain,
    Some(value) => value.as_f64().filter(|n| n.is_finite()),
    None => None,
  };
  let exclusive_minimum = exclusive("exclusiveMinimum", minimum);
  let exclusive_maximum = exclusive("exclusiveMaximum", maximum);
  let lower = exclusive_minimum.map_or(minimum, |ex| Some(minimum.map_or(ex, |m| m.max(ex))));
  let upper = exclusive_maximum.map_or(maximum, |ex| Some(maximum.map_or(ex, |m| m.min(ex))));
  let lower_is_exclusive = exclusive_minimum.is_some_and(|ex| Some(ex) == lower);
  let upper_is_exclusive = exclusive_maximum.is_some_and(|ex| Some(ex) == upper);
  let step = if integer { 1.0 } else { 0.5 };
  let mut value = match (lower, upper) {
    (Some(lo), Some(hi)) if lower_is_exclusive && hi - lo <= step => (lo + hi) / 2.0,
    (Some(lo), _) if lower_is_exclusive => lo + step,
    (Some(lo), _) => lo,
    (None, Some(hi)) if hi <= 0.0 => {
      if upper_is_exclusive {
        hi - step
      } else {
        hi
      }
    }
    _ => 0.0,
  };
  let fits = |candidate: f64| match upper {
    Some(hi) if upper_is_exclusive => candidate < hi,
    Some(hi) => candidate <= hi,
    None => true,
  };
  if let Some(multiple) = bound(map, "multipleOf").filter(|m| *m > 0.0) {
    value = (value / multiple).ceil() * multiple;
    let stepped = value + multiple * variant as f64;
    if fits(stepped) {
      value = stepped;
    }
  } else {
    if integer {
      value = value.ceil();
    }
    let stepped = value + variant as f64;
    if variant > 0 && fits(stepped) {
      value = stepped;
    }
  }
  if integer || value.fract() == 0.0 && value.abs() < 9.0e15 {
    return Value::Number(Number::from(value as i64));
  }
  Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn required_properties_get_values_of_their_types() {
    let schema = json!({
      "type": "object",
      "properties": {
        "intent": { "type": "string", "enum": ["greeting", "order"] },
        "confidence": { "type": "number", "minimum": 0, "maximum": 1 },
        "entities": { "type": "array", "items": { "type": "string" } },
        "urgent": { "type": "boolean" },
        "note": { "type": "string" }
      },
      "required": ["intent", "confidence", "entities", "urgent"],
      "additionalProperties": false
    });
    assert_eq!(
      instance_of(&schema),
      json!({ "intent": "greeting", "confidence": 0, "entities": ["entity"], "urgent": false })
    );
  }

  #[test]
  fn number_bounds_are_respected() {
    let cases = [
      (json!({ "type": "integer", "minimum": 3 }), json!(3)),
      (
        json!({ "type": "integer", "exclusiveMinimum": 3 }),
        json!(4),
      ),
      (
        json!({ "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.1 }),
        json!(0.05),
      ),
      (json!({ "type": "number", "maximum": -5 }), json!(-5)),
      (
        json!({ "type": "integer", "exclusiveMaximum": -5 }),
        json!(-6),
      ),
      (json!({ "type": "integer", "minimum": 1.5 }), json!(2)),
      (
        json!({ "type": "number", "minimum": 7, "multipleOf": 5 }),
        json!(10),
      ),
      (
        json!({ "type": "number", "minimum": 5, "exclusiveMinimum": true }),
        json!(5.5),
      ),
      (json!({ "type": "number" }), json!(0)),
    ];
    for (schema, expected) in cases {
      assert_eq!(instance_of(&schema), expected, "{schema}");
    }
  }

  #[test]
  fn strings_follow_format_and_length() {
    assert_eq!(
      instance_of(&json!({ "type": "string", "format": "email" })),
      json!("user@example.com")
    );
    assert_eq!(
      instance_of(&json!({ "type": "string", "minLength": 8 })),
      json!("valuexxx")
    );
    assert_eq!(
      instance_of(&json!({ "type": "string", "maxLength": 2 })),
      json!("va")
    );
    let named = json!({ "type": "object", "properties": { "summary": { "type": "string" } }, "required": ["summary"] });
    assert_eq!(instance_of(&named), json!({ "summary": "summary" }));
  }

  #[test]
  fn arrays_have_min_items_distinct_when_unique() {
    let schema = json!({ "type": "array", "minItems": 3, "uniqueItems": true, "items": { "type": "integer", "maximum": 10 } });
    assert_eq!(instance_of(&schema), json!([0, 1, 2]));
    let words = json!({ "type": "array", "minItems": 2, "uniqueItems": true, "items": { "type": "string", "enum": ["a", "b", "c"] } });
    assert_eq!(instance_of(&words), json!(["a", "b"]));
    assert_eq!(
      instance_of(&json!({ "type": "array", "maxItems": 0 })),
      json!([])
    );
    let tuple = json!({ "type": "array", "prefixItems": [{ "type": "string" }, { "type": "integer" }], "items": false });
    assert_eq!(instance_of(&tuple), json!(["value", 0]));
  }

  #[test]
  fn refs_all_of_and_any_of_resolve() {
    let schema = json!({
      "$defs": {
        "node": {
          "type": "object",
          "properties": { "name": { "type": "string" }, "children": { "type": "array", "items": { "$ref": "#/$defs/node" } } },
          "required": ["name", "children"]
        },
        "base": { "type": "object", "properties": { "id": { "type": "integer", "minimum": 1 } }, "required": ["id"] }
      },
      "type": "object",
      "properties": {
        "root": { "$ref": "#/$defs/node" },
        "item": { "allOf": [{ "$ref": "#/$defs/base" }, { "properties": { "label": { "const": "x" } }, "required": ["label"] }] },
        "maybe": { "anyOf": [{ "type": "null" }, { "type": "string", "format": "date" }] },
        "either": { "type": ["null", "integer"] }
      },
      "required": ["root", "item", "maybe", "either"]
    });
    let instance = instance_of(&schema);
    assert_eq!(instance["item"], json!({ "id": 1, "label": "x" }));
    assert_eq!(instance["maybe"], json!("2024-01-01"));
    assert_eq!(instance["either"], json!(0));
    // A recursive schema ends: past MAX_DEPTH arrays take their minItems (0).
    let mut node = &instance["root"];
    let mut levels = 0;
    while let Some(child) = node["children"].get(0) {
      node = child;
      levels += 1;
    }
    assert!(levels > 2 && levels < MAX_DEPTH, "{levels}");
    assert_eq!(instance_of(&schema), instance);
  }

  #[test]
  fn strings_match_their_pattern() {
    let schema = json!({
      "type": "array",
      "uniqueItems": true,
      "minItems": 3,
      "items": { "type": "string", "pattern": "^[A-Z]{3}-\\d{4}(-(eu|us))?$" }
    });
    let value = instance_of(&schema);
    assert_eq!(value, json!(["AAA-0000", "BBB-1111", "CCC-2222"]));
    let any = instance_of(&json!({ "type": "string", "pattern": "^.+@[^,]+\\.com$" }));
    assert_eq!(any, json!("!@!.com"));
    // Lookarounds are beyond the Rust syntax: the pattern is ignored, not a failure.
    let ignored = instance_of(&json!({ "type": "string", "pattern": "^(?=a)a$" }));
    assert_eq!(ignored, json!("value"));
  }

  #[test]
  fn anything_that_is_not_a_schema_object_gives_null() {
    assert_eq!(instance_of(&json!(true)), Value::Null);
    assert_eq!(instance_of(&json!({})), Value::Null);
    assert_eq!(
      instance_of(&json!({ "$ref": "other.json#/x" })),
      Value::Null
    );
  }
}
