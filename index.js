'use strict'
// The public entry point: thin JS over the native gateway, only for what belongs in JS —
// AbortSignal wiring, async iteration, the caller's onChunk, and throwing typed errors.

const { randomBytes } = require('node:crypto')
const { inspect } = require('node:util')
const native = require('./binding.js')

class FerrogateError extends Error {
  constructor(info, cause) {
    super(info.message, cause === undefined ? undefined : { cause })
    this.name = 'FerrogateError'
    this.code = info.code
    this.status = info.status
    this.requestId = info.requestId
    if (info.provider != null) this.provider = info.provider
    if (info.retryAfterMs != null) this.retryAfterMs = Math.ceil(info.retryAfterMs)
    if (info.upstreamRequestId != null) this.upstreamRequestId = info.upstreamRequestId
    if (cause === undefined && info.cause != null) this.cause = new Error(info.cause)
  }
}

// Same shape as the native layer's ids, for calls rejected before they reach it.
const newRequestId = () => `fg_${randomBytes(8).toString('hex')}`

const invalid = (error, requestId = newRequestId()) =>
  new FerrogateError(
    { code: 'INVALID_REQUEST', status: 400, message: `invalid request: ${error.message}`, requestId },
    error,
  )

const DEFAULT_BATCH_CONCURRENCY = 8

const configError = (message, cause) =>
  new FerrogateError({ code: 'CONFIG', status: 500, message, requestId: newRequestId() }, cause)

// The native handle behind each ResponseCache / RateLimiter, for the Gateway to take.
const nativeHandles = new WeakMap()

/** Answers by ResponseCache.keyFor(request); see docs/API.md. */
class ResponseCache {
  #native

  constructor(options = {}) {
    try {
      this.#native = new native.NativeResponseCache(options)
    } catch (error) {
      throw configError(`invalid ResponseCache options: ${error.message}`, error)
    }
    nativeHandles.set(this, this.#native)
  }

  get(key) {
    try {
      const json = this.#native.getJson(key)
      return json == null ? undefined : JSON.parse(json)
    } catch (error) {
      throw invalid(error)
    }
  }

  set(key, value, ttlSeconds) {
    try {
      this.#native.set(key, value, ttlSeconds)
    } catch (error) {
      throw invalid(error)
    }
  }

  delete(key) {
    try {
      return this.#native.delete(key)
    } catch (error) {
      throw invalid(error)
    }
  }

  clear() {
    this.#native.clear()
  }

  stats() {
    return this.#native.stats()
  }

  static keyFor(request) {
    if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
    const { signal, ...body } = request
    try {
      return native.NativeResponseCache.keyFor(body)
    } catch (error) {
      throw invalid(error)
    }
  }
}

/** Requests and tokens per minute per key (GCRA); see docs/API.md. */
class RateLimiter {
  #native

  constructor(options = {}) {
    try {
      this.#native = new native.NativeRateLimiter(options)
    } catch (error) {
      throw configError(`invalid RateLimiter options: ${error.message}`, error)
    }
    nativeHandles.set(this, this.#native)
  }

  check(key, tokens) {
    try {
      return this.#native.check(key, tokens)
    } catch (error) {
      throw invalid(error)
    }
  }

  async acquire(key, tokens) {
    try {
      return await this.#native.acquire(key, tokens)
    } catch (error) {
      throw invalid(error)
    }
  }
}

function handleOf(value, Class, name) {
  if (value == null || value === false) return undefined
  const handle = value instanceof Class ? nativeHandles.get(value) : undefined
  if (handle === undefined) throw configError(`${name} must be a ${Class.name} (or ${name === 'cache' ? 'false' : 'absent'})`)
  return handle
}

class Gateway {
  #native
  #providerNames
  // chat() and stream() promises not yet settled: close() resolves after them.
  #inFlight = new Set()

  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw configError('Gateway needs an options object')
    }
    const { cache, rateLimiter, onCall, ...rest } = options
    if (onCall != null && typeof onCall !== 'function') throw configError('onCall must be a function')
    const cacheHandle = handleOf(cache, ResponseCache, 'cache')
    const limiterHandle = handleOf(rateLimiter, RateLimiter, 'rateLimiter')
    // The hook runs on its own turn of the event loop, after the call settled; a throw
    // or a rejected promise is counted in stats(), never rethrown.
    const countHookError = () => this.#native.recordHookError()
    const hook = onCall == null ? undefined : (record) => {
      try {
        const result = onCall(record)
        if (result != null && typeof result.then === 'function') result.then(undefined, countHookError)
      } catch {
        countHookError()
      }
    }
    try {
      this.#native = new native.NativeGateway(rest, cacheHandle, limiterHandle, hook)
    } catch (error) {
      // napi's own type check of the options (e.g. a number where a string belongs).
      throw configError(`invalid Gateway options: ${error.message}`, error)
    }
    const nativeConfigError = this.#native.configError()
    if (nativeConfigError) throw new FerrogateError(nativeConfigError)
    this.#providerNames = Object.keys(options.providers ?? {})
  }

  /** Resolves with the whole response. */
  chat(request) {
    return this.#track(this.#chat(request))
  }

  async #chat(request) {
    for await (const event of this.#events(request, false)) {
      if (event.type === 'done') return event.response
    }
    throw new Error('unreachable: a call ended without a response')
  }

  /** Streams text to `onChunk`; resolves with the whole response when the stream ends. */
  stream(request, onChunk) {
    return this.#track(this.#stream(request, onChunk))
  }

  async #stream(request, onChunk) {
    if (typeof onChunk !== 'function') throw invalid(new TypeError('stream(request, onChunk) needs an onChunk function'))
    const call = {}
    for await (const event of this.#events(request, true, call)) {
      if (event.type === 'text') {
        try {
          onChunk(event.text)
        } catch (error) {
          // Leaving the loop cancels the native call, which closes the upstream request.
          throw new FerrogateError(
            { code: 'CALLBACK_ERROR', status: 500, message: `onChunk threw: ${error?.message ?? String(error)}`, requestId: call.requestId },
            error,
          )
        }
      } else if (event.type === 'done') {
        return event.response
      }
    }
    throw new Error('unreachable: a stream ended without a response')
  }

  /** `for await` over text, tool_call and done events. Breaking out aborts the upstream request. */
  streamEvents(request) {
    return this.#events(request, true)
  }

  /**
   * Runs `requests` through chat() with at most `concurrency` in flight. Resolves with one
   * item per request, in input order: `{ ok: true, response }` or `{ ok: false, error }`.
   */
  async batch(requests, options = {}) {
    if (!Array.isArray(requests)) throw invalid(new TypeError('batch(requests) needs an array of requests'))
    const concurrency = options?.concurrency ?? DEFAULT_BATCH_CONCURRENCY
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw invalid(new TypeError(`batch concurrency must be a whole number >= 1, not ${concurrency}`))
    }
    const results = new Array(requests.length)
    let next = 0
    const worker = async () => {
      while (next < requests.length) {
        const index = next++
        try {
          results[index] = { ok: true, response: await this.chat(requests[index]) }
        } catch (error) {
          results[index] = { ok: false, error }
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, requests.length) }, worker))
    return results
  }

  models() {
    return this.#native.models()
  }

  /** One entry per route target: state, calls in flight, recent latency and error rate. */
  health() {
    return this.#native.health()
  }

  /** Calls by outcome and error code, cache and limiter counters, hook errors. */
  stats() {
    return this.#native.stats()
  }

  /** Refuses new calls, ends calls in flight with ABORTED; resolves once they have settled. */
  async close() {
    this.#native.close()
    await this.#native.waitClosed()
    await Promise.allSettled([...this.#inFlight])
  }

  #track(promise) {
    this.#inFlight.add(promise)
    const forget = () => this.#inFlight.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  async *#events(request, stream, callInfo = {}) {
    if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
    const { signal, ...body } = request
    if (signal != null && typeof signal.addEventListener !== 'function') {
      throw invalid(new TypeError('signal must be an AbortSignal'))
    }
    // Already aborted: nothing may reach the vendor, so the native call is never started.
    if (signal?.aborted) {
      throw new FerrogateError(
        { code: 'ABORTED', status: 499, message: "request aborted by the caller's signal", requestId: newRequestId() },
        signal.reason,
      )
    }
    let call
    try {
      call = this.#native.start(body, stream)
    } catch (error) {
      throw invalid(error)
    }
    callInfo.requestId = call.requestId
    const onAbort = () => call.cancel()
    signal?.addEventListener('abort', onAbort, { once: true })
    let finished = false
    try {
      for (;;) {
        const batch = await call.next()
        for (const event of batch.events) {
          if (event.type === 'done') finished = true
          yield event
          if (finished) return
        }
        if (batch.error) {
          finished = true
          const abortedBySignal = batch.error.code === 'ABORTED' && signal?.aborted
          throw new FerrogateError(batch.error, abortedBySignal ? signal.reason : undefined)
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
      // The consumer left early (break, throw in onChunk): stop the upstream work now
      // rather than when the native call is garbage-collected.
      if (!finished) call.cancel()
    }
  }

  [inspect.custom]() {
    return `Gateway { providers: ${inspect(this.#providerNames)} }`
  }
}

function countTokens(model, input) {
  try {
    return native.countTokens(model, input)
  } catch (error) {
    throw invalid(error)
  }
}

module.exports = {
  Gateway,
  ResponseCache,
  RateLimiter,
  FerrogateError,
  countTokens,
  NativeGateway: native.NativeGateway,
  NativeCall: native.NativeCall,
}
