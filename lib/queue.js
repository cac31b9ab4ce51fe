'use strict'
// ferrogate/queue: the seed's AIProcessingQueue as thin JS over a Gateway and BullMQ (Redis).
// BullMQ does the queueing (priorities, delays, retries with backoff, stalled-job recovery); this file
// validates jobs, turns each job type into a gateway call, maps gateway error codes onto BullMQ's
// retry rules and delivers signed callbacks.

const { requirePeer, requirePeers } = require('./peers.js')

requirePeers('ferrogate/queue', ['bullmq', 'ioredis'])

const { createHmac, timingSafeEqual } = require('node:crypto')
const { EventEmitter } = require('node:events')
const { setTimeout: sleep } = require('node:timers/promises')
const { allowedHosts, literalRefusal, postToCheckedTarget, RefusedCallbackTarget } = require('./callback-target.js')

const JOB_TYPES = Object.freeze({
  text_generation: ['prompt'],
  code_review: ['code', 'language'],
  translation: ['text', 'targetLanguage'],
  analysis: ['content', 'analysisType'],
})
const OPTIONAL_INPUTS = { translation: ['sourceLanguage'] }

// The caller's or the configuration's fault: another attempt would fail the same way.
const NON_RETRYABLE_CODES = Object.freeze(['INVALID_REQUEST', 'AUTHENTICATION', 'NOT_FOUND', 'BUDGET_EXCEEDED', 'CONFIG'])
const MAX_PRIORITY = 2_097_152 // BullMQ's limit (2^21)
const CODE_PREFIX = /^([A-Z][A-Z_]+): ([\s\S]*)$/

const { FerrogateError, newRequestId: requestId, configError } = require('./errors.js')
const { requireGateway } = require('./shapes.js')
const invalid = (message) => new FerrogateError({ code: 'INVALID_REQUEST', status: 400, message: `invalid job: ${message}`, requestId: requestId() })

function count(value, name, fallback, { min = 0, config = true } = {}) {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) {
    const message = `${name} must be an integer >= ${min}, got ${String(value)}`
    throw config ? configError(message) : invalid(message)
  }
  return value
}

/** `sha256=<hex HMAC-SHA256 of body>`, the value of the x-ferrogate-signature header. */
function signCallbackBody(secret, body) {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

/** Checks a callback's x-ferrogate-signature header against its raw body, in constant time. */
function verifyCallbackSignature(secret, body, header) {
  if (typeof header !== 'string') return false
  const expected = Buffer.from(signCallbackBody(secret, body))
  const given = Buffer.from(header)
  return expected.length === given.length && timingSafeEqual(expected, given)
}

function messagesFor(type, input) {
  switch (type) {
    case 'text_generation':
      return [{ role: 'user', content: input.prompt }]
    case 'code_review':
      return [
        { role: 'system', content: 'You are an expert code reviewer. Point out bugs, security issues, performance problems and unclear code, most important first, each with a concrete fix.' },
        { role: 'user', content: `Review this ${input.language} code:\n\n\`\`\`${input.language}\n${input.code}\n\`\`\`` },
      ]
    case 'translation': {
      const from = input.sourceLanguage ? ` from ${input.sourceLanguage}` : ''
      return [
        { role: 'system', content: 'You are a professional translator. Answer with the translation only, keeping the meaning, tone and formatting.' },
        { role: 'user', content: `Translate the following text${from} to ${input.targetLanguage}:\n\n${input.text}` },
      ]
    }
    case 'analysis':
      return [
        { role: 'system', content: 'You are a careful analyst. Give a structured analysis with key findings first.' },
        { role: 'user', content: `Perform a ${input.analysisType} analysis of the following content:\n\n${input.content}` },
      ]
    default:
      throw invalid(`unknown type ${type}`)
  }
}

// BullMQ keeps a failed job's reason as a string: "CODE: message" carries the gateway's code through.
function failureOf(reason) {
  const match = CODE_PREFIX.exec(String(reason ?? ''))
  return match ? { code: match[1], message: match[2] } : { code: 'INTERNAL', message: String(reason ?? 'unknown error') }
}

class AIQueue extends EventEmitter {
  #bull
  #gateway
  #name
  #defaultModel
  #attempts
  #backoffMs
  #callbackSecret
  #callback
  #callbackAllowed
  #connections = []
  #queue
  #events
  #worker
  #pendingCallbacks = new Set()
  #closing = new AbortController()
  #closed

  constructor(opts = {}) {
    super()
    const { gateway, redisUrl, callbackSecret } = opts
    requireGateway(gateway, 'AIQueue')
    if (typeof redisUrl !== 'string' || !redisUrl) throw configError('AIQueue needs { redisUrl }')
    if (callbackSecret !== undefined && (typeof callbackSecret !== 'string' || !callbackSecret)) throw configError('callbackSecret must be a non-empty string')
    if (typeof opts.defaultModel !== 'string' || !opts.defaultModel) throw configError('AIQueue needs { defaultModel }')
    this.#bull = requirePeer('ferrogate/queue', 'bullmq')
    const { Redis } = requirePeer('ferrogate/queue', 'ioredis')
    this.#gateway = gateway
    this.#name = opts.name ?? 'ai-processing'
    this.#defaultModel = opts.defaultModel
    this.#attempts = count(opts.attempts, 'attempts', 3, { min: 1 })
    this.#backoffMs = count(opts.backoffMs, 'backoffMs', 2000)
    this.#callbackSecret = callbackSecret
    this.#callback = {
      attempts: count(opts.callbackAttempts, 'callbackAttempts', 5, { min: 1 }),
      backoffMs: count(opts.callbackBackoffMs, 'callbackBackoffMs', 1000),
      timeoutMs: count(opts.callbackTimeoutMs, 'callbackTimeoutMs', 10_000, { min: 1 }),
    }
    this.#callbackAllowed = allowedHosts(opts.callbackAllowHosts, configError)
    const concurrency = count(opts.concurrency, 'concurrency', 5, { min: 1 })
    const prefix = opts.prefix ?? 'bull'

    const connect = (workerSide) => {
      // A worker's blocking commands must wait for Redis to come back, not fail (BullMQ's requirement).
      const redis = new Redis(redisUrl, workerSide ? { maxRetriesPerRequest: null } : {})
      redis.on('error', (error) => this.#emitError(error))
      this.#connections.push(redis)
      return redis
    }
    const { Queue, QueueEvents, Worker } = this.#bull
    this.#queue = new Queue(this.#name, { connection: connect(false), prefix })
    this.#queue.on('error', (error) => this.#emitError(error))
    this.#events = new QueueEvents(this.#name, { connection: connect(true), prefix })
    this.#events.on('error', (error) => this.#emitError(error))
    this.#events.on('completed', ({ jobId, returnvalue }) => this.emit('completed', { jobId, result: returnvalue }))
    this.#events.on('failed', ({ jobId, failedReason }) => this.emit('failed', { jobId, error: failureOf(failedReason) }))
    this.#events.on('progress', ({ jobId, data }) => this.emit('progress', { jobId, progress: data }))

    if (opts.worker ?? true) {
      const workerOptions = { connection: connect(true), prefix, concurrency }
      if (opts.stalledIntervalMs !== undefined) workerOptions.stalledInterval = count(opts.stalledIntervalMs, 'stalledIntervalMs', 30_000, { min: 1 })
      if (opts.lockDurationMs !== undefined) workerOptions.lockDuration = count(opts.lockDurationMs, 'lockDurationMs', 30_000, { min: 1 })
      this.#worker = new Worker(this.#name, (job) => this.#process(job), workerOptions)
      this.#worker.on('error', (error) => this.#emitError(error))
      this.#worker.on('completed', (job, result) => this.#deliver(job, { success: true, result }))
      this.#worker.on('failed', (job, error) => {
        // 'failed' fires for every attempt; only the last one is the job's outcome.
        if (!job) return
        job
          .getState()
          .then((state) => {
            if (state === 'failed') this.#deliver(job, { success: false, error: failureOf(error?.message) })
          })
          .catch((e) => this.#emitError(e))
      })
    }
  }

  /** Resolves once Redis answered and the worker (if any) is ready to take jobs. */
  async ready() {
    await this.#queue.waitUntilReady()
    await this.#events.waitUntilReady()
    if (this.#worker) await this.#worker.waitUntilReady()
  }

  #emitError(error) {
    // Without 'error' listeners EventEmitter would throw; connection errors are retried by ioredis anyway.
    if (this.listenerCount('error') > 0) this.emit('error', error)
  }

  #validate(job) {
    if (job == null || typeof job !== 'object') throw invalid('a job object is required')
    const { type, input, model, priority, userId, callbackUrl } = job
    const required = Object.hasOwn(JOB_TYPES, type) ? JOB_TYPES[type] : null
    if (!required) throw invalid(`unknown type ${JSON.stringify(String(type)).slice(0, 60)}; one of ${Object.keys(JOB_TYPES).join(', ')}`)
    if (input == null || typeof input !== 'object' || Array.isArray(input)) throw invalid(`${type} needs an input object`)
    for (const field of required) {
      if (typeof input[field] !== 'string' || !input[field].trim()) throw invalid(`${type} needs input.${field} (a non-empty string)`)
    }
    for (const field of OPTIONAL_INPUTS[type] ?? []) {
      if (input[field] !== undefined && typeof input[field] !== 'string') throw invalid(`input.${field} must be a string`)
    }
    if (typeof userId !== 'string' || !userId) throw invalid('userId (a non-empty string) is required')
    if (model !== undefined && (typeof model !== 'string' || !model)) throw invalid('model must be a non-empty string')
    if (priority !== undefined && (!Number.isInteger(priority) || priority < 0 || priority > MAX_PRIORITY)) {
      throw invalid(`priority must be an integer from 0 to ${MAX_PRIORITY} (lower runs first)`)
    }
    if (callbackUrl !== undefined) {
      let url
      try {
        url = new URL(callbackUrl)
      } catch {
        throw invalid('callbackUrl must be an absolute http(s) URL')
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid('callbackUrl must be an absolute http(s) URL')
      if (url.username || url.password) throw invalid('callbackUrl must not carry credentials')
      const refusal = literalRefusal(url, this.#callbackAllowed)
      if (refusal) throw invalid(refusal)
    }
    const data = { type, input: { ...input }, userId }
    if (model !== undefined) data.model = model
    if (callbackUrl !== undefined) data.callbackUrl = callbackUrl
    return data
  }

  #jobOptions(job, opts = {}) {
    if (opts == null || typeof opts !== 'object') throw invalid('options must be an object')
    const delay = count(opts.delayMs, 'delayMs', 0, { config: false })
    const attempts = count(opts.attempts, 'attempts', this.#attempts, { min: 1, config: false })
    const jobOptions = { attempts, backoff: { type: 'exponential', delay: this.#backoffMs }, delay }
    if (job.priority) jobOptions.priority = job.priority
    return jobOptions
  }

  /** Queues one job; resolves with its id. */
  async add(job, opts) {
    const data = this.#validate(job)
    const added = await this.#queue.add(data.type, data, this.#jobOptions(job, opts))
    return added.id
  }

  /** Queues several jobs at once (each `{ ...job, opts? }`); all are validated before any is queued. */
  async addBulk(jobs) {
    if (!Array.isArray(jobs)) throw invalid('addBulk needs an array of jobs')
    const entries = jobs.map((job, index) => {
      try {
        const data = this.#validate(job)
        return { name: data.type, data, opts: this.#jobOptions(job, job.opts) }
      } catch (error) {
        error.message = error.message.replace('invalid job: ', `invalid job at index ${index}: `)
        throw error
      }
    })
    const added = await this.#queue.addBulk(entries)
    return added.map((job) => job.id)
  }

  async #process(job) {
    const { type, input, userId } = job.data
    const model = job.data.model ?? this.#defaultModel
    await job.updateProgress(10)
    let response
    try {
      // A job queued by other code than add() may not fit its type: that fails it as INVALID_REQUEST.
      this.#validate(job.data)
      response = await this.#gateway.chat({ model, messages: messagesFor(type, input), user: userId, signal: this.#closing.signal })
    } catch (error) {
      const code = typeof error?.code === 'string' ? error.code : 'INTERNAL'
      const reason = `${code}: ${error?.message ?? String(error)}`
      if (NON_RETRYABLE_CODES.includes(code)) throw new this.#bull.UnrecoverableError(reason)
      throw new Error(reason)
    }
    await job.updateProgress(100)
    return { content: response.content, model, usage: response.usage, costUsd: response.costUsd }
  }

  #deliver(job, outcome) {
    const url = job?.data?.callbackUrl
    if (!url) return
    const delivery = this.#postCallback(url, { jobId: job.id, ...outcome, timestamp: new Date().toISOString() })
      .catch((error) => this.emit('callbackFailed', { jobId: job.id, error }))
      .finally(() => this.#pendingCallbacks.delete(delivery))
    this.#pendingCallbacks.add(delivery)
  }

  async #postCallback(url, payload) {
    const body = JSON.stringify(payload)
    const headers = { 'content-type': 'application/json' }
    if (this.#callbackSecret) headers['x-ferrogate-signature'] = signCallbackBody(this.#callbackSecret, body)
    let lastError
    for (let attempt = 0; attempt < this.#callback.attempts; attempt++) {
      if (attempt > 0) await sleep(this.#callback.backoffMs * 2 ** (attempt - 1), undefined, { signal: this.#closing.signal })
      try {
        const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(this.#callback.timeoutMs)])
        // Redirects are not followed: a signed body goes only where the job said, and only to a
        // public address unless callbackAllowHosts names the host (lib/callback-target.js).
        const status = await postToCheckedTarget(new URL(url), { headers, body, signal, allowed: this.#callbackAllowed })
        if (status >= 200 && status < 300) return
        lastError = new Error(`callback answered HTTP ${status}`)
      } catch (error) {
        if (this.#closing.signal.aborted || error instanceof RefusedCallbackTarget) throw error
        lastError = error
      }
    }
    throw lastError
  }

  /**
   * Waits up to `timeoutMs` (default 30000) for the job to finish; resolves with its state and its
   * result or error (state 'unknown' for an id the queue does not have).
   */
  async result(jobId, { timeoutMs = 30_000 } = {}) {
    count(timeoutMs, 'timeoutMs', 0, { config: false })
    const deadline = Date.now() + timeoutMs
    let wake
    const onEvent = ({ jobId: id }) => {
      if (id === String(jobId)) wake?.()
    }
    this.#events.on('completed', onEvent)
    this.#events.on('failed', onEvent)
    try {
      for (;;) {
        // The state first: a job read before it finished would lack the result its final state promises.
        const state = await this.#queue.getJobState(String(jobId))
        if (state === 'unknown') return { state }
        if (state === 'completed' || state === 'failed') {
          const job = await this.#queue.getJob(String(jobId))
          if (!job) return { state: 'unknown' } // removed in between
          if (state === 'completed') return { state, result: job.returnvalue, attempts: job.attemptsMade }
          return { state, error: failureOf(job.failedReason), attempts: job.attemptsMade }
        }
        const left = deadline - Date.now()
        if (left <= 0) return { state }
        // Woken by the job's event; the poll covers an event missed between the read and the wait.
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 500))
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    } finally {
      this.#events.off('completed', onEvent)
      this.#events.off('failed', onEvent)
    }
  }

  /** Job counts; `waiting` includes prioritized jobs. */
  async stats() {
    const c = await this.#queue.getJobCounts('waiting', 'prioritized', 'active', 'completed', 'failed', 'delayed')
    return { waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0, completed: c.completed ?? 0, failed: c.failed ?? 0, delayed: c.delayed ?? 0 }
  }

  /** Removes finished jobs older than the given ages; resolves with how many of each were removed. */
  async clean({ completedOlderThanMs, failedOlderThanMs } = {}) {
    const removed = { completed: 0, failed: 0 }
    if (completedOlderThanMs !== undefined) {
      removed.completed = (await this.#queue.clean(count(completedOlderThanMs, 'completedOlderThanMs', 0, { config: false }), 0, 'completed')).length
    }
    if (failedOlderThanMs !== undefined) {
      removed.failed = (await this.#queue.clean(count(failedOlderThanMs, 'failedOlderThanMs', 0, { config: false }), 0, 'failed')).length
    }
    return removed
  }

  /** Removes every job and key of this queue (for tests and teardown). */
  async obliterate() {
    await this.#queue.obliterate({ force: true })
  }

  /**
   * Stops taking jobs, waits for the ones running, stops callback retries and closes every Redis
   * connection.
   */
  close() {
    this.#closed ??= (async () => {
      if (this.#worker) await this.#worker.close()
      this.#closing.abort(new Error('the queue is closing'))
      await Promise.allSettled([...this.#pendingCallbacks])
      await this.#events.close()
      await this.#queue.close()
      await Promise.allSettled(this.#connections.map((redis) => redis.quit().catch(() => redis.disconnect())))
    })()
    return this.#closed
  }
}

module.exports = { AIQueue, JOB_TYPES, NON_RETRYABLE_CODES, signCallbackBody, verifyCallbackSignature }
