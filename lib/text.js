'use strict'
// The gateway's text tools without a gateway: token counts, secret redaction and PII detection.

const native = require('./addon.js')
const { invalid, rethrown } = require('./errors.js')

function countTokens(model, input) {
  return rethrown(() => native.countTokens(model, input), invalid)
}

/**
 * `text` with every secret shape replaced by [REDACTED] (absolute paths by [PATH]): the rules
 * the gateway applies to its own messages (src/secret.rs).
 */
function redactSecrets(text) {
  return native.redactSecrets(String(text))
}

// Entity names by the index findPiiPacked gives each finding.
const PII_ENTITIES = native.piiEntities()
// Where findPiiPacked writes the findings, kept from call to call (grown when a text has more
// findings, let go of when that was very many).
const PACKED_KEPT = 3 * 65536
let packed = new Uint32Array(3 * 256)

/**
 * Personal data and keys in `text` (the `pii` guardrail's detector): `{ entity, start, end }` each.
 * The addon writes three numbers per finding; the objects are made here, where an object literal
 * is much cheaper than building one property by property through N-API.
 */
function findPii(text, entities) {
  let count = rethrown(() => native.findPiiPacked(text, entities, packed), invalid)
  if (count > packed.length) {
    packed = new Uint32Array(count)
    count = rethrown(() => native.findPiiPacked(text, entities, packed), invalid)
  }
  const found = new Array(count / 3)
  for (let i = 0, at = 0; i < found.length; i++, at += 3) {
    found[i] = { entity: PII_ENTITIES[packed[at]], start: packed[at + 1], end: packed[at + 2] }
  }
  if (packed.length > PACKED_KEPT) packed = new Uint32Array(3 * 256)
  return found
}

/** `text` with each finding replaced by `[EMAIL]`, `[CREDIT_CARD]`, … */
function redactPii(text, entities) {
  return rethrown(() => native.redactPii(text, entities), invalid)
}

module.exports = { countTokens, redactSecrets, findPii, redactPii }
