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

class Gateway {
  #native
  #providerNames
  // chat() and stream() promises not yet settled: close() resolves after them.
  #inFlight = new Set()

  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw configError('Gateway needs an options object')
    }
    const { costs, ...nativeOptions } = options
    if (costs != null && !nativeTrackers.has(costs)) throw configError('costs must be a CostTracker')
    try {
      this.#native = new native.NativeGateway(nativeOptions, costs == null ? undefined : nativeTrackers.get(costs))
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

// CostTracker → its native tracker, for the Gateway that is handed one.
const nativeTrackers = new WeakMap()
// Trackers still open, flushed when the process exits normally (a SIGKILL loses nothing
// older than 100 ms either way: the ledger commits continuously).
const openTrackers = new Set()
let flushOnExit = false

// Native errors from tracker methods: bad arguments (napi's type checks, InvalidArg) are
// INVALID_REQUEST; the tracker's own failures (GenericFailure) are CONFIG.
function trackerCall(work) {
  try {
    return work()
  } catch (error) {
    if (error instanceof FerrogateError) throw error
    if (error?.code !== 'GenericFailure') throw invalid(error)
    throw configError(error?.message ?? String(error), error)
  }
}

class CostTracker {
  #native
  #ref
  #alertCallbackErrors = 0

  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw configError('CostTracker options must be an object')
    try {
      this.#native = new native.NativeCostTracker(options)
    } catch (error) {
      throw configError(`invalid CostTracker options: ${error.message}`, error)
    }
    nativeTrackers.set(this, this.#native)
    this.#ref = new WeakRef(this)
    openTrackers.add(this.#ref)
    if (!flushOnExit) {
      flushOnExit = true
      process.once('exit', () => {
        for (const ref of openTrackers) {
          try {
            ref.deref()?.flush()
          } catch {}
        }
      })
    }
  }

  /** The date of the built-in price table. */
  get pricingDate() {
    return this.#native.pricingDate
  }

  priceOf(model) {
    if (typeof model !== 'string') throw invalid(new TypeError('priceOf(model) needs a model name'))
    return this.#native.priceOf(model)
  }

  /** Records a call; returns its cost in USD. */
  record(usage) {
    if (usage == null || typeof usage !== 'object') throw invalid(new TypeError('record(usage) needs a usage object'))
    const u = usage
    return trackerCall(() =>
      this.#native.recordCall(
        u.user ?? undefined,
        u.model,
        u.promptTokens,
        u.completionTokens,
        u.cachedPromptTokens ?? undefined,
        u.cacheWritePromptTokens ?? undefined,
        u.reasoningTokens ?? undefined,
        u.latencyMs ?? undefined,
        u.success ?? undefined,
        u.provider ?? undefined,
        u.timestamp ?? undefined,
      ),
    )
  }

  summary(user, options) {
    if (user != null && typeof user !== 'string') throw invalid(new TypeError('summary(user) needs a user id or null'))
    return trackerCall(() => this.#native.summary(user ?? undefined, options ?? undefined))
  }

  setBudget(user, budget) {
    if (typeof user !== 'string') throw invalid(new TypeError('setBudget(user, budget) needs a user id'))
    trackerCall(() => this.#native.setBudget(user, budget ?? undefined))
  }

  budget(user) {
    return this.#native.budget(String(user))
  }

  alerts(user) {
    return this.#native.alerts(String(user))
  }

  /** `callback(alert)` runs on the event loop after the call that raised the alert; a throw is counted in stats(). */
  onAlert(callback) {
    if (typeof callback !== 'function') throw invalid(new TypeError('onAlert(callback) needs a function'))
    this.#native.onAlert((alert) => {
      try {
        const result = callback(alert)
        if (result != null && typeof result.then === 'function') {
          result.then(undefined, () => {
            this.#alertCallbackErrors++
          })
        }
      } catch {
        this.#alertCallbackErrors++
      }
    })
  }

  stats() {
    return { ...this.#native.stats(), alertCallbackErrors: this.#alertCallbackErrors }
  }

  /** Returns once every recorded call is durable in the ledger. */
  flush() {
    trackerCall(() => this.#native.flush())
  }

  close() {
    openTrackers.delete(this.#ref)
    trackerCall(() => this.#native.close())
  }

  [inspect.custom]() {
    return `CostTracker { pricingDate: '${this.pricingDate}' }`
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
  CostTracker,
  FerrogateError,
  countTokens,
  NativeGateway: native.NativeGateway,
  NativeCall: native.NativeCall,
  NativeCostTracker: native.NativeCostTracker,
}
