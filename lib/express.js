'use strict'
// ferrogate/express: thin JS over the gateway for Express (4 or 5) and plain node:http.
// Nothing here needs Express itself: every export is a (req, res, next) function, so the
// same OpenAI-compatible handler also serves `ferrogate serve`.

const { FerrogateError, KeyVault, FRONT_DOOR, redactSecrets } = require('../index.js')

// ------------------------------------------------------------------------------ redaction

/**
 * Removes API keys, tokens, URL credentials, private keys, secret-named values and absolute
 * file paths from text. One rule set for JS and the native gateway (src/secret.rs).
 */
const redact = (text) => redactSecrets(text)

// ------------------------------------------------------------------------------ errors

const { newRequestId: newId } = require('./errors.js')

const isFerrogateError = (error) =>
  error instanceof FerrogateError ||
  (error != null && typeof error.code === 'string' && /^[A-Z_]+$/.test(error.code) && Number.isInteger(error.status) && 'requestId' in error)

const TYPE_BY_CODE = {
  RATE_LIMITED: 'rate_limit_error',
  BUDGET_EXCEEDED: 'insufficient_quota',
  AUTHENTICATION: 'authentication_error',
  INVALID_REQUEST: 'invalid_request_error',
  NOT_FOUND: 'not_found_error',
  PROVIDER_ERROR: 'api_error',
  UPSTREAM_UNAVAILABLE: 'api_error',
  TIMEOUT: 'timeout_error',
  ABORTED: 'aborted',
  CONFIG: 'server_error',
  CALLBACK_ERROR: 'server_error',
  GUARDRAIL_BLOCKED: 'invalid_request_error',
}

const GENERIC_MESSAGE = 'Internal server error'

/**
 * The public view of any error: ferrogate errors keep their status and code; an error a
 * body parser marked as the client's (4xx with `expose`) is INVALID_REQUEST; anything else
 * is a 500 with a generic message.
 */
function describeError(error) {
  if (isFerrogateError(error)) {
    return {
      status: error.status,
      id: error.requestId ?? newId(),
      code: error.code,
      message: redact(error.message),
      type: TYPE_BY_CODE[error.code] ?? 'api_error',
      retryAfterMs: error.retryAfterMs,
    }
  }
  const status = error?.status ?? error?.statusCode
  if (Number.isInteger(status) && status >= 400 && status < 500 && error.expose !== false) {
    return { status, id: newId(), code: status === 404 ? 'NOT_FOUND' : 'INVALID_REQUEST', message: redact(error.message ?? 'Bad request'), type: 'invalid_request_error' }
  }
  return { status: 500, id: newId(), code: 'INTERNAL', message: GENERIC_MESSAGE, type: 'server_error' }
}

function setRetryAfter(res, retryAfterMs) {
  if (retryAfterMs == null || !Number.isFinite(retryAfterMs)) return
  res.setHeader('Retry-After', String(Math.max(0, Math.ceil(retryAfterMs / 1000))))
  res.setHeader('retry-after-ms', String(Math.max(0, Math.ceil(retryAfterMs))))
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body)
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  res.end(text)
}

function logError(log, described, error) {
  if (!log) return
  const detail = error?.stack ?? error?.message ?? String(error)
  try {
    log(redact(`[ferrogate] ${described.status} ${described.code} ${described.id}: ${detail}`))
  } catch {
    // a broken logger must not turn an error response into a crash
  }
}

/**
 * Express error middleware: ferrogate errors → their status and
 * `{ error: { id, code, message, type } }`, anything else → 500 with a generic message.
 * Secrets are redacted from the response and the log; Retry-After when the error has one.
 */
function errorHandler(options = {}) {
  const log = options.log === undefined ? (line) => console.error(line) : options.log
  return function ferrogateErrorHandler(error, req, res, next) {
    sendError(res, error, { log })
  }
}

/**
 * errorHandler()'s answer to `error`, with `extra` fields next to `error` in the body
 * (aiErrorHandler adds `analysis`). `described` is describeError(error) when the caller
 * already has it, so the id stays the same.
 */
function sendError(res, error, { log, extra, described = describeError(error) } = {}) {
  if (described.status >= 500 || !isFerrogateError(error)) logError(log, described, error)
  if (res.headersSent) {
    // Too late for a status: end what was started so the client is not left hanging.
    res.end()
    return
  }
  setRetryAfter(res, described.retryAfterMs)
  sendJson(res, described.status, {
    error: { id: described.id, code: described.code, message: described.message, type: described.type },
    ...extra,
  })
}

const clientError = (code, status, message, extra = {}) =>
  new FerrogateError({ code, status, message, requestId: newId(), ...extra })

/** An AbortSignal that fires when the client goes away before the response ends. */
function clientGone(res) {
  const controller = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(clientError('ABORTED', 499, 'the client disconnected'))
  })
  return controller.signal
}

// ------------------------------------------------------------------------------ gatewayRouter

// The front door reads at most this much (src/ingress MAX_BODY_BYTES); a larger body is
// drained, so the client can read the 413, up to this many bytes, then the socket is closed.
const BODY_LIMIT = 16 * 1024 * 1024
const DRAIN_LIMIT = 64 * 1024 * 1024

/** The raw request body as one Buffer, or `null` when it is over the limit. */
async function readBody(req) {
  if (Buffer.isBuffer(req.body)) return req.body
  if (typeof req.body === 'string') return Buffer.from(req.body)
  if (req.body !== undefined && req.readableEnded) {
    // A body parser (express.json()) ran first and consumed the stream: its parse is all there is.
    return Buffer.from(JSON.stringify(req.body) ?? '')
  }
  const chunks = []
  let size = 0
  for await (const chunk of req) {
    size += chunk.length
    if (size > DRAIN_LIMIT) {
      req.destroy()
      return null
    }
    if (size <= BODY_LIMIT) chunks.push(chunk)
  }
  if (size > BODY_LIMIT) return null
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
}

function keyVerdict(verdict) {
  if (verdict === true) return true
  if (typeof verdict === 'string' && verdict !== '') return verdict
  return false
}

// Writes the front door's answer: JS moves bytes, nothing else.
function responseSink(res) {
  return {
    head({ status, headers, body }) {
      if (res.destroyed) return
      res.statusCode = status
      for (const [name, value] of headers) res.setHeader(name, value)
      if (body !== undefined) {
        res.setHeader('Content-Length', Buffer.byteLength(body))
        res.end(body)
        return
      }
      res.setHeader('Connection', 'keep-alive')
      res.setHeader('X-Accel-Buffering', 'no')
      res.flushHeaders?.()
    },
    bytes(text) {
      if (res.destroyed) return true
      return res.write(text)
    },
    onDrain(fn) {
      res.once('drain', fn)
    },
    end() {
      if (!res.destroyed) res.end()
    },
  }
}

/**
 * Every client protocol of the front door (src/ingress), for Express (4 or 5) or plain
 * node:http: `POST /v1/chat/completions`, `POST /v1/responses` (`GET`/`DELETE /v1/responses/{id}`),
 * `POST /v1/messages` (`/count_tokens`), `POST /v1/embeddings` and `GET /v1/models`. Parsing, keys, quotas, the call and the wire
 * format are all native; this reads the raw body, hands it over with the client's
 * disconnect as the cancel, and writes back what comes.
 * `keys`: a KeyVault, or `(key) => boolean | string` (a string names the caller).
 */
function gatewayRouter(gateway, options = {}) {
  if (gateway == null || typeof gateway[FRONT_DOOR] !== 'function') {
    throw new TypeError('gatewayRouter(gateway, options) needs a ferrogate Gateway')
  }
  const { keys, prefix = '' } = options
  const keyFunction = typeof keys === 'function'
  if (keys != null && !keyFunction && !(keys instanceof KeyVault)) {
    throw new TypeError('gatewayRouter keys must be a KeyVault or a function (key) => boolean')
  }
  const log = options.log === undefined ? (line) => console.error(line) : options.log
  const door = gateway[FRONT_DOOR]({ keys: keyFunction ? undefined : keys, keyFunction, serveKeys: options.serveKeys })
  // Mounted at the app's root, requests the front door does not serve go on to the next
  // handler; mounted at /v1 (openaiRouter), they are its 404 unless `passThrough`.
  const passOn = prefix === '' || options.passThrough === true

  async function serve(req, res, path) {
    let cancel = null
    res.once('close', () => {
      if (!res.writableFinished && cancel !== null) cancel()
    })
    try {
      const body = await readBody(req)
      let verdict
      if (keyFunction && body !== null) {
        const key = door.callerKey(req.rawHeaders)
        verdict = key == null ? false : keyVerdict(await keys(key, req))
      }
      if (res.destroyed) return
      if (body === null) {
        responseSink(res).head(door.tooLarge(req.method, path))
        return
      }
      const request = { method: req.method, path, headers: req.rawHeaders, body, keyVerdict: verdict }
      cancel = door.handle(request, responseSink(res))
    } catch (error) {
      sendError(res, error, { log })
    }
  }

  return function ferrogateGatewayRouter(req, res, next) {
    const url = req.url ?? '/'
    const path = prefix + url
    if (!door.knows(req.method, path) && passOn && typeof next === 'function') return next()
    void serve(req, res, path)
  }
}

/** gatewayRouter mounted at `/v1` (`app.use('/v1', openaiRouter(gateway, { keys }))`). */
function openaiRouter(gateway, options = {}) {
  if (gateway == null || typeof gateway[FRONT_DOOR] !== 'function') {
    throw new TypeError('openaiRouter(gateway, options) needs a ferrogate Gateway')
  }
  return gatewayRouter(gateway, { ...options, prefix: '/v1' })
}

// ------------------------------------------------------------------------------ aiMiddleware

/**
 * Sets `req.ai` with `chat`, `stream` and `streamEvents` bound to the caller: each request
 * gets `user` (limits, budgets and cost reports key on it) and a signal that stops the
 * upstream call when the client goes away.
 */
function aiMiddleware(gateway, options = {}) {
  if (gateway == null || typeof gateway.chat !== 'function') throw new TypeError('aiMiddleware(gateway, options) needs a ferrogate Gateway')
  const userOf = options.user
  if (userOf != null && typeof userOf !== 'function') throw new TypeError('aiMiddleware user must be a function (req) => string')
  return function ferrogateAI(req, res, next) {
    let user
    try {
      user = userOf ? userOf(req) : undefined
    } catch (error) {
      return next(error)
    }
    if (user != null) user = String(user)
    let signal
    const bind = (request) => {
      if (request == null || typeof request !== 'object') return request
      signal ??= clientGone(res)
      const bound = { ...request, signal: request.signal ?? signal }
      if (user != null) bound.user = user
      return bound
    }
    req.ai = {
      user,
      chat: (request) => gateway.chat(bind(request)),
      stream: (request, onChunk) => gateway.stream(bind(request), onChunk),
      streamEvents: (request) => gateway.streamEvents(bind(request)),
    }
    next()
  }
}

// ------------------------------------------------------------------------------ rateLimit

function limitOf(limiter, explicit) {
  if (explicit != null) return explicit
  const source = limiter.options ?? limiter.config ?? limiter
  return source.requestsPerMinute ?? source.burst
}

/**
 * Express middleware over a RateLimiter (anything with `check(key, tokens)` or
 * `acquire(key, tokens)` answering `{ allowed, retryAfterMs, remainingRequests }`):
 * 429 with Retry-After and X-RateLimit-Limit/Remaining/Reset when refused.
 */
function rateLimit(limiter, options = {}) {
  if (limiter == null || (typeof limiter.check !== 'function' && typeof limiter.acquire !== 'function')) {
    throw new TypeError('rateLimit(limiter) needs a RateLimiter (check or acquire)')
  }
  const keyOf = options.key ?? ((req) => req.ai?.user ?? req.ip ?? req.socket?.remoteAddress ?? 'anonymous')
  const tokensOf = options.tokens ?? (() => 0)
  return async function ferrogateRateLimit(req, res, next) {
    let verdict
    try {
      const key = String(keyOf(req))
      const tokens = tokensOf(req)
      // A RateLimiter on Redis (synchronous === false) answers through acquire() only.
      const sync = typeof limiter.check === 'function' && (limiter.synchronous !== false || typeof limiter.acquire !== 'function')
      verdict = sync ? limiter.check(key, tokens) : limiter.acquire(key, tokens)
      if (verdict != null && typeof verdict.then === 'function') verdict = await verdict
    } catch (error) {
      return next(error)
    }
    const limit = limitOf(limiter, options.limit)
    const remaining = Math.max(0, Math.floor(verdict.remainingRequests ?? 0))
    const resetSeconds = verdict.allowed
      ? limit ? Math.ceil((60 * Math.max(0, limit - remaining)) / limit) : 0
      : Math.ceil((verdict.retryAfterMs ?? 0) / 1000)
    if (limit != null) res.setHeader('X-RateLimit-Limit', String(limit))
    res.setHeader('X-RateLimit-Remaining', String(remaining))
    res.setHeader('X-RateLimit-Reset', String(resetSeconds))
    if (verdict.allowed) return next()
    const error = clientError('RATE_LIMITED', 429, `rate limit exceeded; retry in ${Math.ceil((verdict.retryAfterMs ?? 0) / 1000)}s`, {
      retryAfterMs: verdict.retryAfterMs ?? 0,
    })
    const described = describeError(error)
    setRetryAfter(res, described.retryAfterMs)
    sendJson(res, 429, { error: { id: described.id, code: described.code, message: described.message, type: described.type } })
  }
}

// ------------------------------------------------------------------------------ metricsHandler

/** Prometheus text exposition of `gateway.metrics()`. */
function metricsHandler(gateway) {
  if (gateway == null || typeof gateway.metrics !== 'function') throw new TypeError('metricsHandler(gateway) needs a ferrogate Gateway')
  return function ferrogateMetrics(req, res, next) {
    let text
    try {
      text = gateway.metrics()
    } catch (error) {
      return typeof next === 'function' ? next(error) : sendJson(res, 500, { error: { message: GENERIC_MESSAGE } })
    }
    res.statusCode = 200
    res.setHeader('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
    res.end(text)
  }
}

// ------------------------------------------------------------------------------ sse

// A field value on one line: a CR or LF in `event` or `id` would end the field and let the
// rest of the value forge fields or whole events (NUL makes clients drop an id).
const oneLine = (value) => String(value).replace(/[\r\n\0]/g, '')
// Every line terminator SSE knows (CRLF, CR, LF) starts a new `data:` line.
const dataLines = (data) => `${data.split(/\r\n|\r|\n/).map((line) => `data: ${line}`).join('\n')}\n\n`

function sseFrame(item) {
  if (item != null && typeof item === 'object' && 'data' in item && ('event' in item || 'id' in item || 'retry' in item || Object.keys(item).length === 1)) {
    let frame = ''
    if (item.event != null) frame += `event: ${oneLine(item.event)}\n`
    if (item.id != null) frame += `id: ${oneLine(item.id)}\n`
    if (item.retry != null) {
      if (!Number.isInteger(item.retry) || item.retry < 0) throw new TypeError('sse: retry must be a non-negative integer (milliseconds)')
      frame += `retry: ${item.retry}\n`
    }
    const data = typeof item.data === 'string' ? item.data : JSON.stringify(item.data)
    return `${frame}${dataLines(data)}`
  }
  return dataLines(typeof item === 'string' ? item : JSON.stringify(item))
}

// The response head of every Server-Sent Events answer; proxies must not buffer it.
function openEventStream(res) {
  res.statusCode = 200
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8')
  res.setHeader('Cache-Control', 'no-cache')
  res.setHeader('Connection', 'keep-alive')
  res.setHeader('X-Accel-Buffering', 'no')
}

/**
 * Writes an async iterable as Server-Sent Events: headers at once, a heartbeat comment while
 * idle, one flush per batch. `source` may be a function `(signal) => iterable`: the signal
 * fires when the client leaves, so the upstream call stops at once (e.g.
 * `sse(res, (signal) => gw.streamEvents({ ...req, signal }))`). Resolves when the stream ends.
 */
async function sse(res, source, options = {}) {
  const { heartbeatMs = 15_000, done } = options
  const controller = new AbortController()
  let closed = false
  res.once('close', () => {
    closed = true
    controller.abort()
  })
  const iterable = typeof source === 'function' ? source(controller.signal) : source
  if (iterable == null || typeof iterable[Symbol.asyncIterator] !== 'function' && typeof iterable[Symbol.iterator] !== 'function') {
    throw new TypeError('sse(res, source) needs an (async) iterable or a function returning one')
  }
  openEventStream(res)
  res.flushHeaders?.()
  let pending = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (pending.length === 0 || closed) return
    res.write(pending.join(''))
    pending = []
    res.flush?.()
  }
  const push = (text) => {
    pending.push(text)
    if (!scheduled) {
      scheduled = true
      process.nextTick(flush)
    }
  }
  const heartbeat = heartbeatMs > 0 ? setInterval(() => push(': heartbeat\n\n'), heartbeatMs) : null
  heartbeat?.unref?.()
  const iterator = typeof iterable[Symbol.asyncIterator] === 'function' ? iterable[Symbol.asyncIterator]() : iterable[Symbol.iterator]()
  let failed
  try {
    for (;;) {
      if (closed) break
      const step = await iterator.next()
      if (step.done || closed) break
      push(sseFrame(step.value))
    }
  } catch (error) {
    if (!closed) {
      failed = error
      push(`event: error\ndata: ${JSON.stringify({ error: { code: describeError(error).code, message: describeError(error).message } })}\n\n`)
    }
  } finally {
    if (heartbeat) clearInterval(heartbeat)
    // The client left mid-stream: closing the iterator stops the upstream call.
    if (closed) await iterator.return?.().catch?.(() => {})
  }
  if (!closed) {
    if (done != null && failed === undefined) push(`data: ${done}\n\n`)
    flush()
    res.end()
  }
}

const { dashboardHandler } = require('./dashboard.js')

module.exports = {
  aiMiddleware,
  gatewayRouter,
  openaiRouter,
  rateLimit,
  errorHandler,
  metricsHandler,
  dashboardHandler,
  sse,
  redact,
  describeError,
  sendError,
}
