'use strict'
// What every AI-assisted helper of ferrogate/intelligent shares: a structured-output call
// that can never outlast its time budget, a small TTL cache with in-flight sharing, and
// option checks that fail with CONFIG errors.

const { redact } = require('./express.js')

const { FerrogateError, newRequestId: newId, configError } = require('./errors.js')

function budgetTimeout(ms) {
  return new FerrogateError({ code: 'TIMEOUT', status: 504, message: `no answer within ${ms} ms`, requestId: newId() })
}

/** A positive finite duration, or `fallback` when absent; anything else is a CONFIG error. */
function duration(value, name, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw configError(`${name} must be a positive number of milliseconds, not ${JSON.stringify(value)}`)
  }
  return value
}

function fraction(value, name, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw configError(`${name} must be a number from 0 to 1, not ${JSON.stringify(value)}`)
  }
  return value
}

function requireModel(model, who) {
  if (typeof model !== 'string' || model === '') throw configError(`${who} needs a model name`)
}

/**
 * One structured-output call, parsed. Settles within `timeoutMs` whatever the gateway does:
 * the call gets the deadline and an AbortSignal, and a timer of our own rejects with TIMEOUT
 * in case the abort itself is slow to land.
 */
function structuredCall(gateway, { model, name, schema, system, prompt, user, timeoutMs, maxTokens, feature }) {
  const controller = new AbortController()
  let timer
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => {
      controller.abort()
      reject(budgetTimeout(timeoutMs))
    }, timeoutMs)
  })
  const call = Promise.resolve()
    .then(() =>
      gateway.chat({
        model,
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: prompt },
        ],
        responseFormat: { type: 'json_schema', name, schema },
        ...(user ? { user } : {}),
        ...(maxTokens ? { maxTokens } : {}),
        metadata: { feature },
        timeoutMs: Math.ceil(timeoutMs),
        signal: controller.signal,
      }),
    )
    .then((response) => {
      let parsed
      try {
        parsed = JSON.parse(response.content)
      } catch {
        throw Object.assign(new Error('the model did not answer with JSON'), { code: 'INVALID_ANSWER' })
      }
      return { value: parsed, response }
    })
  // The loser of the race must not surface as an unhandled rejection.
  call.catch(() => {})
  return Promise.race([call, deadline]).finally(() => clearTimeout(timer))
}

/** Why a model call gave nothing usable: the keys of the helpers' miss counters. */
function missReason(error) {
  switch (error?.code) {
    case 'TIMEOUT':
    case 'ABORTED':
      return 'timeout'
    case 'BUDGET_EXCEEDED':
      return 'budget'
    case 'RATE_LIMITED':
      return 'rateLimited'
    case 'INVALID_ANSWER':
      return 'invalid'
    default:
      return 'error'
  }
}

const newMissCounters = () => ({ timeout: 0, budget: 0, rateLimited: 0, invalid: 0, error: 0 })

/**
 * A map with a time to live and a size bound (oldest entry out first), which also shares
 * the promise of a computation in flight: identical content costs one model call.
 */
class TtlCache {
  #entries = new Map()
  #inFlight = new Map()
  constructor({ ttlMs, maxEntries = 1000 }) {
    this.ttlMs = ttlMs
    this.maxEntries = maxEntries
  }

  get(key) {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expires <= Date.now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.value
  }

  set(key, value) {
    if (this.ttlMs <= 0 || this.maxEntries <= 0) return
    this.#entries.delete(key)
    this.#entries.set(key, { value, expires: Date.now() + this.ttlMs })
    while (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value)
  }

  /** The computation for `key` in flight, or a new one from `compute()`; its value is cached. */
  shared(key, compute) {
    let pending = this.#inFlight.get(key)
    if (pending === undefined) {
      pending = Promise.resolve()
        .then(compute)
        .then((value) => {
          this.set(key, value)
          return value
        })
        .finally(() => this.#inFlight.delete(key))
      this.#inFlight.set(key, pending)
    }
    return pending
  }

  get size() {
    return this.#entries.size
  }
}

/** Calls `fn` and ignores what it throws: user callbacks must not break a request. */
function safely(fn, ...args) {
  if (typeof fn !== 'function') return
  try {
    const result = fn(...args)
    if (result && typeof result.catch === 'function') result.catch(() => {})
  } catch {
    // an observer that throws changes nothing
  }
}

module.exports = {
  duration,
  fraction,
  requireModel,
  structuredCall,
  missReason,
  newMissCounters,
  TtlCache,
  safely,
  redact,
}
