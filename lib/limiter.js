'use strict'
// RateLimiter: requests and tokens per minute per key (GCRA), in memory or shared through Redis.

const native = require('./addon.js')
const shapes = require('./shapes.js')
const { codedOrInvalid, rethrown, rethrownAsync } = require('./errors.js')
const { nativeHandles, constructNative, openNative } = require('./handles.js')

/** Requests and tokens per minute per key (GCRA); see docs/API.md. With `redisUrl`, use acquire(). */
class RateLimiter {
  #native
  #options
  #synchronous

  constructor(options = {}) {
    this.#native = constructNative(native.NativeRateLimiter, shapes.RATE_LIMITER_OPTIONS, options, 'RateLimiter')
    nativeHandles.set(this, this.#native)
    this.#options = { ...options }
    this.#synchronous = this.#native.stats().backend === 'memory'
  }

  /** False with redisUrl: check() then throws; acquire() works for every backend. */
  get synchronous() {
    return this.#synchronous
  }

  /** See openNative (lib/handles.js): resolves once Redis answers, at once without redisUrl. */
  async open() {
    await openNative(this.#native)
    return this
  }

  /** The options it was created with (ferrogate/express's rateLimit reads requestsPerMinute for X-RateLimit-Limit). */
  get options() {
    return { ...this.#options }
  }

  check(key, tokens) {
    return rethrown(() => this.#native.check(key, tokens), codedOrInvalid)
  }

  acquire(key, tokens) {
    return rethrownAsync(() => this.#native.acquire(key, tokens), codedOrInvalid)
  }

  /** { backend: 'memory' | 'redis', storeErrors, failOpenAdmissions } */
  stats() {
    return this.#native.stats()
  }

  /** Releases the Redis connection (a no-op without redisUrl); later calls fail with CONFIG. */
  close() {
    this.#native.close()
  }
}

module.exports = { RateLimiter }
