'use strict'
// CostTracker: prices calls, keeps the ledger (embedded, PostgreSQL or Redis), budgets and alerts.

const { inspect } = require('node:util')
const native = require('./addon.js')
const shapes = require('./shapes.js')
const { FerrogateError, configError, invalid, codedError, rethrown, rethrownAsync } = require('./errors.js')
const { nativeHandles } = require('./handles.js')

// Trackers still open, flushed when the process exits normally (a SIGKILL loses nothing
// older than 100 ms either way: the ledger commits continuously).
const openTrackers = new Set()
let flushOnExit = false

// Native errors from tracker methods: plain-text bad arguments (napi's type checks,
// InvalidArg) are INVALID_REQUEST; other plain-text failures (GenericFailure) are CONFIG.
const trackerFallback = (error) =>
  error?.code === 'GenericFailure' ? configError(error?.message ?? String(error), error) : invalid(error)
const trackerWording = (code, message) =>
  code === 'INVALID_REQUEST' && !message.startsWith('invalid request') ? `invalid request: ${message}` : message

function trackerError(error) {
  if (error instanceof FerrogateError) return error
  return codedError(error, trackerFallback, { word: trackerWording, cause: error })
}

const FLUSH_BEFORE_EXIT = Symbol('flushBeforeExit')

const trackerCall = (work) => rethrown(work, trackerError)

// A native promise whose rejection becomes a FerrogateError.
const trackerPromise = (work) => rethrownAsync(work, trackerError)

// A tracker `CostTracker.open()` connected: handed to the constructor, which then connects nothing.
const OPENED_TRACKER = Symbol('opened native tracker')

function checkTrackerOptions(options) {
  if (options === null || typeof options !== 'object') throw configError('CostTracker options must be an object')
  shapes.checkOptions(shapes.COST_TRACKER_OPTIONS, options, 'CostTracker')
}

/** The CostTracker's error for a failed native construction or open. */
function trackerConstructionError(error) {
  const typed = trackerError(error)
  if (typed.code === 'UPSTREAM_UNAVAILABLE') return typed
  // A coded error is ours and safe to show; napi's own text is not (it may quote the value).
  const message = shapes.isNapiTypeError(error) ? shapes.plainNapiMessage(error.message) : typed.message.replace(/^invalid request: /, '')
  return configError(`invalid CostTracker options: ${message}`)
}

class CostTracker {
  #native
  #ref
  #networked = false
  #alertCallbackErrors = 0

  /**
   * A tracker whose PostgreSQL / Redis connections are made off the event loop: `new CostTracker()`
   * with a URL waits for them (up to the connect timeout per server), this does not.
   */
  static async open(options = {}) {
    checkTrackerOptions(options)
    const opened = await rethrownAsync(() => native.openCostTracker(options), trackerConstructionError)
    return new CostTracker(options, { [OPENED_TRACKER]: opened })
  }

  constructor(options = {}, opened = undefined) {
    checkTrackerOptions(options)
    if (opened?.[OPENED_TRACKER] instanceof native.NativeCostTracker) {
      this.#native = opened[OPENED_TRACKER]
    } else {
      this.#native = rethrown(() => new native.NativeCostTracker(options), trackerConstructionError)
    }
    this.#networked = this.#native.networked
    nativeHandles.set(this, this.#native)
    this.#ref = new WeakRef(this)
    openTrackers.add(this.#ref)
    if (!flushOnExit) {
      flushOnExit = true
      process.once('exit', () => {
        for (const ref of openTrackers) {
          try {
            ref.deref()?.[FLUSH_BEFORE_EXIT]()
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

  /** Synchronous with the embedded ledger; a Promise when `postgresUrl` or `redisUrl` is set (`await` works for both). */
  summary(user, options) {
    if (user != null && typeof user !== 'string') {
      const error = invalid(new TypeError('summary(user) needs a user id or null'))
      if (this.#networked) return Promise.reject(error)
      throw error
    }
    if (this.#networked) return trackerPromise(() => this.#native.summaryAsync(user ?? undefined, options ?? undefined))
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

  /** Returns once every recorded call is durable in the ledger (a Promise when networked). */
  flush() {
    if (this.#networked) return trackerPromise(() => this.#native.flushAsync())
    trackerCall(() => this.#native.flush())
  }

  /** Flushes and closes; a Promise when networked, which never rejects (what cannot be written in time is counted as dropped). */
  close() {
    openTrackers.delete(this.#ref)
    if (this.#networked) return this.#native.closeAsync().catch(() => {})
    trackerCall(() => this.#native.close())
  }

  // The 'exit' event runs no more asynchronous work: a networked tracker waits here (up to 2 s).
  [FLUSH_BEFORE_EXIT]() {
    if (this.#networked) this.#native.flushBeforeExit(2000)
    else this.#native.flush()
  }

  [inspect.custom]() {
    return `CostTracker { pricingDate: '${this.pricingDate}' }`
  }
}

module.exports = { CostTracker }
