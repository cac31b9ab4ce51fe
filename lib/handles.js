'use strict'
// The native object behind each ResponseCache, RateLimiter, CostTracker and KeyVault: made from
// checked options, opened, and handed to a Gateway (or the front door) that takes the JS object.

const { configError, codedError, codedOrInvalid, rethrownAsync } = require('./errors.js')
const { checkOptions, plainNapiMessage } = require('./shapes.js')

const nativeHandles = new WeakMap()

/** `new NativeClass(options)` after the options passed `shape`; its refusal is a CONFIG error. */
function constructNative(NativeClass, shape, options, what) {
  checkOptions(shape, options, what)
  try {
    return new NativeClass(options)
  } catch (error) {
    throw codedError(error, (cause) => configError(`invalid ${what} options: ${plainNapiMessage(cause.message)}`))
  }
}

/**
 * With redisUrl the constructor returns at once and connects in the background: resolves once Redis answers,
 * rejects with UPSTREAM_UNAVAILABLE (the URL without its password) when it cannot be reached. Resolves at once
 * without redisUrl. Optional: calls made before wait for the connection, then follow the fault policy.
 */
const openNative = (handle) => rethrownAsync(() => handle.open(), codedOrInvalid)

/** The native handle behind `value` (an instance of `Class`), or undefined when it is absent or false. */
function handleOf(value, Class, name) {
  if (value == null || value === false) return undefined
  const handle = value instanceof Class ? nativeHandles.get(value) : undefined
  if (handle === undefined) throw configError(`${name} must be a ${Class.name} (or ${name === 'cache' || name === 'semanticCache' ? 'false' : 'absent'})`)
  return handle
}

module.exports = { nativeHandles, constructNative, openNative, handleOf }
