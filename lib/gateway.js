'use strict'
// The Gateway: thin JS over the native gateway, only for what belongs in JS — AbortSignal wiring,
// async iteration, the caller's onChunk, and throwing typed errors.

const { inspect } = require('node:util')
const native = require('./addon.js')
const shapes = require('./shapes.js')
const { FerrogateError, configError, invalid, abortedBefore, codedError, rethrown } = require('./errors.js')
const { nativeHandles, handleOf } = require('./handles.js')
const { dispatch, ChatCall, CallbackCall, EventsCall, IngressCall, embedCall } = require('./delivery.js')
const { ResponseCache } = require('./cache.js')
const { SemanticCache } = require('./semantic-cache.js')
const { RateLimiter } = require('./limiter.js')
const { CostTracker } = require('./cost-tracker.js')
const telemetry = require('./telemetry.js')

const DEFAULT_BATCH_CONCURRENCY = 8

// ferrogate/express's gatewayRouter answers through this: the native front door (src/ingress).
const FRONT_DOOR = Symbol.for('ferrogate.frontDoor')
// `ferrogate serve` (native engine) serves the OpenAI-compatible endpoint over a Gateway through this.
const NATIVE_SERVE = Symbol.for('ferrogate.serve')

// Cancels a stream whose iterator was dropped mid-way without being closed (a suspended
// iterator waiting for events stays reachable through the pump's calls, so only abandoned ones go).
const abandoned = new FinalizationRegistry((holder) => {
  if (holder.call !== null && !holder.call.ended) holder.call.cancel()
})

// A `custom` guardrail's check, as the native side calls it: JSON text in, a promise of JSON
// text out. Being async, it turns a throw into a rejection, which the native side treats as
// the guardrail's onError says (a hang is its timeout's), never as a crash.
const guardrailCheck = (check) => async (inputJson) => JSON.stringify((await check(JSON.parse(inputJson))) ?? null)

// GatewayOptions.guardrails without the `custom` checks (functions cannot cross as options),
// and the checks, in the order of their guardrails: input, then output.
function splitGuardrails(guardrails) {
  if (guardrails == null) return [undefined, undefined]
  const checks = []
  const strip = (list, phase) =>
    list?.map((guardrail, i) => {
      if (guardrail?.type !== 'custom') return guardrail
      const { check, ...rest } = guardrail
      if (typeof check !== 'function') {
        throw configError(`guardrails.${phase}[${i}] ('${guardrail.name ?? 'custom'}'): check must be a function`)
      }
      checks.push(guardrailCheck(check))
      return rest
    })
  return [{ input: strip(guardrails.input, 'input'), output: strip(guardrails.output, 'output') }, checks]
}

class Gateway {
  #native
  #providerNames
  #onAnomaly
  // chat() and stream() promises not yet settled: close() resolves after them.
  #inFlight = new Set()

  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw configError('Gateway needs an options object')
    }
    shapes.checkOptions(shapes.GATEWAY_OPTIONS, options, 'Gateway')
    const { cache, semanticCache, rateLimiter, onCall, costs, guardrails, ...rest } = options
    const [nativeGuardrails, guardrailChecks] = splitGuardrails(guardrails)
    if (nativeGuardrails !== undefined) rest.guardrails = nativeGuardrails
    if (onCall != null && typeof onCall !== 'function') throw configError('onCall must be a function')
    const cacheHandle = handleOf(cache, ResponseCache, 'cache')
    const limiterHandle = handleOf(rateLimiter, RateLimiter, 'rateLimiter')
    const trackerHandle = handleOf(costs, CostTracker, 'costs')
    const semanticHandle = handleOf(semanticCache, SemanticCache, 'semanticCache')
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
      this.#native = new native.NativeGateway(rest, cacheHandle, limiterHandle, hook, trackerHandle, semanticHandle, guardrailChecks)
    } catch (error) {
      // napi's own type check of the options (e.g. a number where a string belongs).
      throw configError(`invalid Gateway options: ${shapes.wrongShape(error, shapes.GATEWAY_OPTIONS, options)}`)
    }
    const nativeConfigError = this.#native.configError()
    if (nativeConfigError) throw new FerrogateError(nativeConfigError)
    this.#native.listen(dispatch)
    this.#providerNames = Object.keys(options.providers ?? {})
    if (options.onAnomaly != null && typeof options.onAnomaly !== 'function') {
      throw configError('onAnomaly must be a function')
    }
    this.#onAnomaly = options.onAnomaly
  }

  /** Resolves with the whole response. */
  chat(request) {
    return this.#settledBy(request, (body, signal, resolve, reject) => new ChatCall(this.#native, body, signal, resolve, reject))
  }

  /** Streams text to `onChunk`; resolves with the whole response when the stream ends. */
  stream(request, onChunk) {
    if (typeof onChunk !== 'function') {
      return this.#track(Promise.reject(invalid(new TypeError('stream(request, onChunk) needs an onChunk function'))))
    }
    return this.#settledBy(request, (body, signal, resolve, reject) => new CallbackCall(this.#native, body, signal, onChunk, resolve, reject))
  }

  // A promise settled by the end of the call `begin` starts.
  #settledBy(request, begin) {
    return this.#track(
      new Promise((resolve, reject) => {
        const [body, signal] = split(request)
        if (signal?.aborted) throw abortedBefore(signal)
        rethrown(() => begin(body, signal, resolve, reject), (error) => shapes.invalidRequestShape(error, body))
      }),
    )
  }

  /**
   * Embeds `input` (a string or an array of strings): `{ embeddings: Float32Array[], model, provider,
   * usage, costUsd, cached, requestId }`, one vector per input in order. Same routes, limits, budgets,
   * cache, ledger and onCall as chat (the record's `operation` is 'embeddings').
   */
  embed(request) {
    const embedding = async () => {
      const [body, signal] = split(request)
      return embedCall(this.#native, body, signal)
    }
    return this.#track(embedding())
  }

  /** For `ferrogate serve`: `{ host?, port, keys? }` → a native server over this gateway (`port`, `host`, `close()`). */
  [NATIVE_SERVE](options) {
    return this.#native.serve(options)
  }

  /**
   * For ferrogate/express's gatewayRouter: the native front door over this gateway, checking
   * keys against `keys` (a KeyVault) or a key function's verdicts (`keyFunction: true`).
   * `serveKeys`: serve's config keys. `handle(request, sink)` answers one request `{ method, path, headers (rawHeaders), body
   * (Buffer), keyVerdict? }` through `sink.head({ status, headers, body? })`, `sink.bytes(text)`
   * (→ false while the socket is full), `sink.onDrain(fn)` and `sink.end()`; it returns a
   * function that cancels the call.
   */
  [FRONT_DOOR]({ keys, keyFunction = false, serveKeys } = {}) {
    const vault = keys == null ? undefined : nativeHandles.get(keys)
    if (keys != null && vault === undefined) throw configError('keys must be a KeyVault or a function (key) => boolean')
    const gateway = this.#native
    let door
    try {
      door = gateway.frontDoor(vault, keyFunction, serveKeys)
    } catch (error) {
      throw codedError(error, (cause) => configError(`invalid keys: ${cause.message}`, cause))
    }
    return {
      knows: (method, path) => native.NativeFrontDoor.knows(method, path),
      callerKey: (headers) => native.NativeFrontDoor.callerKey(headers),
      tooLarge: (method, path) => {
        const reply = native.NativeFrontDoor.tooLarge(method, path)
        return { ...reply, headers: reply.headers.map((pair) => [pair[0], pair[1]]) }
      },
      handle: (request, sink) => {
        const call = new IngressCall(gateway, door, sink, request)
        return () => call.cancel()
      },
    }
  }

  /** `for await` over text, tool_call and done events. Breaking out aborts the upstream request. */
  streamEvents(request) {
    const holder = { call: null }
    const iterator = this.#events(request, holder, telemetry.activeContext())
    abandoned.register(iterator, holder, holder)
    return iterator
  }

  async *#events(request, holder, traceParent) {
    const [body, signal] = split(request)
    if (signal?.aborted) throw abortedBefore(signal)
    const call = (holder.call = rethrown(
      () => new EventsCall(this.#native, body, signal, traceParent),
      (error) => shapes.invalidRequestShape(error, body),
    ))
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
      this.#reportAnomalies()
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
    const forget = () => {
      this.#inFlight.delete(promise)
      this.#reportAnomalies()
    }
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
    throw invalid(new TypeError(`signal must be an AbortSignal (got ${shapes.typeOf(signal)})`))
  }
  if (!shapes.topLevelFits(shapes.CHAT_REQUEST, body)) throw shapes.invalidRequestShape(undefined, body)
  return [body, signal]
}

module.exports = { Gateway, FRONT_DOOR, NATIVE_SERVE }
