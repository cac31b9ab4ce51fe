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

// A signal aborted before the call: nothing is sent upstream.
const abortedBefore = (signal) =>
  new FerrogateError(
    { code: 'ABORTED', status: 499, message: "request aborted by the caller's signal", requestId: newRequestId() },
    signal.reason,
  )

const DEFAULT_BATCH_CONCURRENCY = 8

const configError = (message, cause) =>
  new FerrogateError({ code: 'CONFIG', status: 500, message, requestId: newRequestId() }, cause)

// Every call of every gateway is delivered through `dispatch`: the native side wakes the JS
// thread once for whatever is ready (events of many streams, responses of many chats) and
// hands it over as the JSON text of one flat array [callId, kind, payload, ...]. The kinds match
// src/binding/pump.rs.
const TEXT = 0
const TOOL_CALL = 1
const DONE = 2
const FAILED = 3
// A stream may run this many events ahead of its consumer (src/binding/mod.rs STREAM_CREDITS);
// consumed events are acknowledged in steps of ACK_STEP, so short streams never need to.
const ACK_STEP = 64

const calls = new Map()
let lastCallId = 0

function dispatch(batchJson) {
  const batch = JSON.parse(batchJson)
  for (let i = 0; i < batch.length; i += 3) {
    const call = calls.get(batch[i])
    if (call !== undefined) call.deliver(batch[i + 1], batch[i + 2])
  }
}

// One call in flight: the native side's call id, its AbortSignal wiring, and its end.
class Call {
  constructor(native, body, stream, signal) {
    this.native = native
    this.signal = signal
    this.id = lastCallId = (lastCallId + 1) >>> 0
    this.onAbort = null
    // Throws only for napi's own type checks of the request; the rest arrives as FAILED.
    this.requestId = native.begin(this.id, body, stream)
    calls.set(this.id, this)
    if (signal) {
      this.onAbort = () => native.cancel(this.id)
      signal.addEventListener('abort', this.onAbort, { once: true })
    }
  }

  // After its end (or once JS gave up on it): later deliveries are dropped.
  settle() {
    calls.delete(this.id)
    if (this.onAbort !== null) this.signal.removeEventListener('abort', this.onAbort)
  }

  cancel() {
    this.settle()
    this.native.cancel(this.id)
  }

  error(info) {
    const abortedBySignal = info.code === 'ABORTED' && this.signal?.aborted
    return new FerrogateError(info, abortedBySignal ? this.signal.reason : undefined)
  }
}

// chat(): one promise, settled by the call's end.
class ChatCall extends Call {
  constructor(native, body, signal, resolve, reject) {
    super(native, body, false, signal)
    this.resolve = resolve
    this.reject = reject
  }

  deliver(kind, payload) {
    if (kind === DONE) {
      this.settle()
      this.resolve(payload)
    } else if (kind === FAILED) {
      this.settle()
      this.reject(this.error(payload))
    }
  }
}

// stream(): text goes straight to onChunk, on the dispatch that brought it.
class CallbackCall extends Call {
  constructor(native, body, signal, onChunk, resolve, reject) {
    super(native, body, true, signal)
    this.onChunk = onChunk
    this.resolve = resolve
    this.reject = reject
    this.unacked = 0
  }

  deliver(kind, payload) {
    if (kind === TEXT) {
      try {
        this.onChunk(payload)
      } catch (error) {
        // Cancelling the native call closes the upstream request.
        this.cancel()
        this.reject(
          new FerrogateError(
            { code: 'CALLBACK_ERROR', status: 500, message: `onChunk threw: ${error?.message ?? String(error)}`, requestId: this.requestId },
            error,
          ),
        )
        return
      }
      if (++this.unacked === ACK_STEP) {
        this.native.ack(this.id, ACK_STEP)
        this.unacked = 0
      }
    } else if (kind === DONE) {
      this.settle()
      this.resolve(payload)
    } else if (kind === FAILED) {
      this.settle()
      this.reject(this.error(payload))
    }
  }
}

// streamEvents(): events queue here until the async iterator asks for them.
class EventsCall extends Call {
  constructor(native, body, signal) {
    super(native, body, true, signal)
    this.events = []
    this.failure = null
    this.ended = false
    this.wake = null
    this.unacked = 0
  }

  deliver(kind, payload) {
    if (kind === TEXT) {
      this.events.push({ type: 'text', text: payload })
    } else if (kind === TOOL_CALL) {
      this.events.push(payload)
    } else if (kind === DONE) {
      this.settle()
      this.ended = true
      this.events.push({ type: 'done', response: payload })
    } else if (kind === FAILED) {
      this.settle()
      this.ended = true
      this.failure = this.error(payload)
    }
    if (this.wake !== null) {
      const wake = this.wake
      this.wake = null
      wake()
    }
  }

  // The consumer took one more event.
  consumed() {
    if (++this.unacked === ACK_STEP) {
      this.native.ack(this.id, ACK_STEP)
      this.unacked = 0
    }
  }

  next() {
    return new Promise((resolve) => {
      this.wake = resolve
    })
  }
}

// Cancels a stream whose iterator was dropped mid-way without being closed (a suspended
// iterator waiting for events stays reachable through `calls`, so only abandoned ones go).
const abandoned = new FinalizationRegistry((holder) => {
  if (holder.call !== null && !holder.call.ended) holder.call.cancel()
})

class Gateway {
  #native
  #providerNames
  // chat() and stream() promises not yet settled: close() resolves after them.
  #inFlight = new Set()

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
    this.#native.listen(dispatch)
    this.#providerNames = Object.keys(options.providers ?? {})
  }

  /** Resolves with the whole response. */
  chat(request) {
    return this.#track(
      new Promise((resolve, reject) => {
        const [body, signal] = split(request)
        if (signal?.aborted) throw abortedBefore(signal)
        try {
          new ChatCall(this.#native, body, signal, resolve, reject)
        } catch (error) {
          throw invalid(error)
        }
      }),
    )
  }

  /** Streams text to `onChunk`; resolves with the whole response when the stream ends. */
  stream(request, onChunk) {
    return this.#track(
      new Promise((resolve, reject) => {
        if (typeof onChunk !== 'function') throw invalid(new TypeError('stream(request, onChunk) needs an onChunk function'))
        const [body, signal] = split(request)
        if (signal?.aborted) throw abortedBefore(signal)
        try {
          new CallbackCall(this.#native, body, signal, onChunk, resolve, reject)
        } catch (error) {
          throw invalid(error)
        }
      }),
    )
  }

  /** `for await` over text, tool_call and done events. Breaking out aborts the upstream request. */
  streamEvents(request) {
    const holder = { call: null }
    const iterator = this.#events(request, holder)
    abandoned.register(iterator, holder, holder)
    return iterator
  }

  async *#events(request, holder) {
    const [body, signal] = split(request)
    if (signal?.aborted) throw abortedBefore(signal)
    let call
    try {
      call = holder.call = new EventsCall(this.#native, body, signal)
    } catch (error) {
      throw invalid(error)
    }
    try {
      for (;;) {
        while (call.events.length > 0) {
          yield call.events.shift()
          call.consumed()
        }
        if (call.failure !== null) throw call.failure
        if (call.ended) return
        await call.next()
      }
    } finally {
      abandoned.unregister(holder)
      // The consumer left early (break, throw): stop the upstream work now.
      if (!call.ended) call.cancel()
    }
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

  [inspect.custom]() {
    return `Gateway { providers: ${inspect(this.#providerNames)} }`
  }
}

// The request body for the native side, and the caller's AbortSignal.
function split(request) {
  if (request == null || typeof request !== 'object') throw invalid(new TypeError('a request object is required'))
  const { signal, ...body } = request
  if (signal != null && typeof signal.addEventListener !== 'function') {
    throw invalid(new TypeError('signal must be an AbortSignal'))
  }
  return [body, signal]
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
  countTokens,
  NativeGateway: native.NativeGateway,
}
