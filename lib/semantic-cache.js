'use strict'
// SemanticCache: answers paraphrases from cache, in this process or followed by every process on Redis.

const native = require('./addon.js')
const shapes = require('./shapes.js')
const { configError } = require('./errors.js')
const { nativeHandles, constructNative, openNative } = require('./handles.js')

/**
 * Answers paraphrases from cache: the last user message is embedded (through the gateway's own embed(), with
 * `embeddingModel`) and the closest earlier question of the same scope (model, system prompt, earlier turns,
 * tools, response format, sampling) answers at cosine >= threshold. With redisUrl, every process follows the
 * entries in Redis. Pass it as GatewayOptions.semanticCache; see docs/API.md.
 */
class SemanticCache {
  #native

  constructor(options) {
    if (options == null || typeof options !== 'object') throw configError('SemanticCache needs an options object { embeddingModel }')
    this.#native = constructNative(native.NativeSemanticCache, shapes.SEMANTIC_CACHE_OPTIONS, options, 'SemanticCache')
    nativeHandles.set(this, this.#native)
  }

  /** With redisUrl: resolves once Redis answers and this process's index holds the live entries. */
  async open() {
    await openNative(this.#native)
    return this
  }

  /** { hits, misses, entries, lookups, embedErrors, p50SimilarityOfHits, storeErrors } */
  stats() {
    return this.#native.stats()
  }

  /** Stops following Redis and releases its connections (resolves at once without redisUrl). */
  close() {
    return this.#native.close()
  }
}

module.exports = { SemanticCache }
