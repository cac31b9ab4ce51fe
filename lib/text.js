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

/** Personal data and keys in `text` (the `pii` guardrail's detector): `{ entity, start, end }` each. */
function findPii(text, entities) {
  return rethrown(() => native.findPii(text, entities), invalid)
}

/** `text` with each finding replaced by `[EMAIL]`, `[CREDIT_CARD]`, … */
function redactPii(text, entities) {
  return rethrown(() => native.redactPii(text, entities), invalid)
}

module.exports = { countTokens, redactSecrets, findPii, redactPii }
