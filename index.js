'use strict'
// The public entry point. Each part lives in its own module under lib/: the Gateway (gateway.js)
// and the delivery protocol under it (delivery.js), the classes a gateway takes (cache.js,
// semantic-cache.js, limiter.js, cost-tracker.js, key-vault.js), coded errors and ids (errors.js), option
// validators (shapes.js) and the text tools (text.js).

const native = require('./lib/addon.js')
const { Gateway, FRONT_DOOR, NATIVE_SERVE } = require('./lib/gateway.js')
const { ResponseCache } = require('./lib/cache.js')
const { SemanticCache } = require('./lib/semantic-cache.js')
const { RateLimiter } = require('./lib/limiter.js')
const { CostTracker } = require('./lib/cost-tracker.js')
const { KeyVault } = require('./lib/key-vault.js')
const { FerrogateError } = require('./lib/errors.js')
const { countTokens, redactSecrets, findPii, redactPii } = require('./lib/text.js')

module.exports = {
  Gateway,
  ResponseCache,
  SemanticCache,
  RateLimiter,
  CostTracker,
  FerrogateError,
  KeyVault,
  FRONT_DOOR,
  NATIVE_SERVE,
  countTokens,
  redactSecrets,
  findPii,
  redactPii,
  NativeGateway: native.NativeGateway,
  NativeCostTracker: native.NativeCostTracker,
}
