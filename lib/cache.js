'use strict'
// ResponseCache: answers by ResponseCache.keyFor(request), in memory or shared through Redis.

const native = require('./addon.js')
const shapes = require('./shapes.js')
const { invalid, codedOrInvalid, rethrown, rethrownAsync } = require('./errors.js')
const { nativeHandles, constructNative, openNative } = require('./handles.js')

/** Answers by ResponseCache.keyFor(request); see docs/API.md. With `redisUrl`, get/set/delete/clear return Promises. */
class ResponseCache {
  #native
  #shared

  constructor(options = {}) {
    this.#native = constructNative(native.NativeResponseCache, shapes.RESPONSE_CACHE_OPTIONS, options, 'ResponseCache')
    this.#shared = !this.#native.synchronous
    nativeHandles.set(this, this.#native)
  }

  /** False with redisUrl: get/set/delete/clear then return Promises. */
  get synchronous() {
    return !this.#shared
  }

  /** See openNative (lib/handles.js): resolves once Redis answers, at once without redisUrl. */
  async open() {
    await openNative(this.#native)
    return this
  }

  get(key) {
    if (this.#shared) return this.#getShared(key)
    const json = rethrown(() => this.#native.getJson(key), invalid)
    return json == null ? undefined : JSON.parse(json)
  }

  async #getShared(key) {
    const json = await this.#sharedCall(() => this.#native.getJsonAsync(key))
    return json == null ? undefined : JSON.parse(json)
  }

  set(key, value, ttlSeconds) {
    if (this.#shared) return this.#sharedCall(() => this.#native.setAsync(key, value, ttlSeconds))
    rethrown(() => this.#native.set(key, value, ttlSeconds), invalid)
  }

  delete(key) {
    if (this.#shared) return this.#sharedCall(() => this.#native.deleteAsync(key))
    return rethrown(() => this.#native.delete(key), invalid)
  }

  clear() {
    if (this.#shared) return this.#sharedCall(() => this.#native.clearAsync())
    this.#native.clear()
  }

  // Always a Promise, also when napi refuses an argument before the call starts.
  #sharedCall(call) {
    return rethrownAsync(call, codedOrInvalid)
  }

  stats() {
    return this.#native.stats()
  }

  /** Finishes the writes to Redis still under way and releases the connection (resolves at once without
   *  redisUrl); the cache then works from this process only. */
  close() {
    return this.#native.close()
  }

  static keyFor(request) {
    if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
    const { signal, ...body } = request
    return rethrown(
      () => native.NativeResponseCache.keyFor(body),
      (error) => (shapes.isNapiTypeError(error) ? shapes.invalidRequestShape(error, body) : invalid(error)),
    )
  }
}

module.exports = { ResponseCache }
