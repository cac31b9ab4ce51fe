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

// ferrogate/express's openaiRouter streams through this: OpenAI SSE bytes encoded natively.
const OPENAI_SSE = Symbol.for('ferrogate.openaiSse')

class Gateway {
  #native
  #providerNames
  #onAnomaly

  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw configError('Gateway needs an options object')
    }
    try {
      this.#native = new native.NativeGateway(options)
    } catch (error) {
      // napi's own type check of the options (e.g. a number where a string belongs).
      throw configError(`invalid Gateway options: ${error.message}`, error)
    }
    const nativeConfigError = this.#native.configError()
    if (nativeConfigError) throw new FerrogateError(nativeConfigError)
    this.#providerNames = Object.keys(options.providers ?? {})
    if (options.onAnomaly != null && typeof options.onAnomaly !== 'function') {
      throw configError('onAnomaly must be a function')
    }
    this.#onAnomaly = options.onAnomaly
  }

  /** Resolves with the whole response. */
  async chat(request) {
    for await (const event of this.#events(request, false)) {
      if (event.type === 'done') return event.response
    }
    throw new Error('unreachable: a call ended without a response')
  }

  /** Streams text to `onChunk`; resolves with the whole response when the stream ends. */
  async stream(request, onChunk) {
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

  /**
   * For ferrogate/express: `for await` over `{ data: Buffer, done, totalTokens? }` batches of OpenAI
   * `chat.completion.chunk` SSE events, encoded natively. A failure before any byte rejects (so the
   * caller can answer with its status); one after is an error event in `data`.
   */
  async *[OPENAI_SSE](request, options) {
    if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
    const { signal, ...body } = request
    let call
    try {
      call = this.#native.startOpenaiSse(body, options)
    } catch (error) {
      throw invalid(error)
    }
    const onAbort = () => call.cancel()
    if (signal) {
      if (signal.aborted) call.cancel()
      else signal.addEventListener('abort', onAbort, { once: true })
    }
    let finished = false
    try {
      for (;;) {
        const batch = await call.next()
        if (batch.error) {
          finished = true
          throw new FerrogateError(batch.error, batch.error.code === 'ABORTED' && signal?.aborted ? signal.reason : undefined)
        }
        if (batch.done) finished = true
        yield batch
        if (finished) return
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (!finished) call.cancel()
      this.#reportAnomalies()
    }
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

  /** Prometheus text exposition of this gateway's metrics. */
  metrics() {
    return this.#native.metrics()
  }

  // The core's anomaly detector queues what it finds; hand it to onAnomaly as each call
  // ends. A throwing callback never fails the call.
  #reportAnomalies() {
    if (!this.#onAnomaly) return
    for (const anomaly of this.#native.takeAnomalies()) {
      try {
        this.#onAnomaly(anomaly)
      } catch {
        // the call's outcome does not depend on the callback
      }
    }
  }

  /** One entry per route target: state, calls in flight, recent latency and error rate. */
  health() {
    return this.#native.health()
  }

  async close() {
    this.#native.close()
  }

  async *#events(request, stream, callInfo = {}) {
    if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
    const { signal, ...body } = request
    if (signal != null && typeof signal.addEventListener !== 'function') {
      throw invalid(new TypeError('signal must be an AbortSignal'))
    }
    let call
    try {
      call = this.#native.start(body, stream)
    } catch (error) {
      throw invalid(error)
    }
    callInfo.requestId = call.requestId
    const onAbort = () => call.cancel()
    if (signal) {
      if (signal.aborted) call.cancel()
      else signal.addEventListener('abort', onAbort, { once: true })
    }
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
      this.#reportAnomalies()
    }
  }

  [inspect.custom]() {
    return `Gateway { providers: ${inspect(this.#providerNames)} }`
  }
}

const STATUS_BY_CODE = { INVALID_REQUEST: 400, NOT_FOUND: 404, CONFIG: 500 }

// Native KeyVault errors arrive as "CODE|message"; napi's own argument checks as plain text.
function vaultError(error) {
  const match = /^([A-Z_]+)\|(.*)$/s.exec(error?.message ?? '')
  const code = match ? match[1] : 'INVALID_REQUEST'
  const message = match ? match[2] : `KeyVault: invalid argument: ${error?.message ?? error}`
  return new FerrogateError({ code, status: STATUS_BY_CODE[code] ?? 500, message, requestId: newRequestId() })
}

function vaultCall(fn) {
  try {
    return fn()
  } catch (error) {
    throw vaultError(error)
  }
}

/**
 * Provider keys sealed with AES-256-GCM (key derived from `secret` with HKDF-SHA256, a random
 * 96-bit nonce per encryption), virtual API keys stored as SHA-256 hashes and compared in
 * constant time, and per-id daily token quotas that reset at UTC midnight.
 */
class KeyVault {
  #native
  #now

  constructor(options) {
    if (options == null || typeof options.secret !== 'string' || options.secret === '') {
      throw configError('KeyVault needs { secret }: a non-empty string')
    }
    if (options.now != null && typeof options.now !== 'function') throw configError('KeyVault now must be a function')
    this.#native = new native.NativeKeyVault({ secret: options.secret })
    this.#now = options.now ?? Date.now
  }

  static encrypt(plain, secret) {
    return vaultCall(() => native.NativeKeyVault.encrypt(plain, secret))
  }

  static decrypt(token, secret) {
    return vaultCall(() => native.NativeKeyVault.decrypt(token, secret))
  }

  add(id, entry) {
    vaultCall(() => this.#native.add(id, entry))
    return this
  }

  provider(id) {
    return vaultCall(() => this.#native.provider(id))
  }

  getKey(id) {
    return vaultCall(() => this.#native.getKey(id))
  }

  issueKey(id) {
    return vaultCall(() => this.#native.issueKey(id))
  }

  addVirtualKey(key, id) {
    vaultCall(() => this.#native.addVirtualKey(key, id))
    return this
  }

  verify(key) {
    if (typeof key !== 'string') return null
    return this.#native.verify(key)
  }

  checkQuota(id) {
    return vaultCall(() => this.#native.checkQuota(id, this.#now()))
  }

  recordUsage(id, tokens) {
    return vaultCall(() => this.#native.recordUsage(id, tokens, this.#now()))
  }

  [inspect.custom]() {
    return 'KeyVault { [secret] }'
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
  FerrogateError,
  KeyVault,
  OPENAI_SSE,
  countTokens,
  NativeGateway: native.NativeGateway,
  NativeCall: native.NativeCall,
}
