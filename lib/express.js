'use strict'
// ferrogate/express: thin JS over the gateway for Express (4 or 5) and plain node:http.
// Nothing here needs Express itself: every export is a (req, res, next) function, so the
// same OpenAI-compatible handler also serves `ferrogate serve`.

const { randomBytes } = require('node:crypto')
const { FerrogateError, OPENAI_SSE, redactSecrets } = require('../index.js')

// ------------------------------------------------------------------------------ redaction

/**
 * Removes API keys, tokens, URL credentials, private keys, secret-named values and absolute
 * file paths from text. One rule set for JS and the native gateway (src/secret.rs).
 */
const redact = (text) => redactSecrets(text)

// ------------------------------------------------------------------------------ errors

const newId = () => `fg_${randomBytes(8).toString('hex')}`

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
}

// OpenAI's own `code` values where one fits, so clients that branch on them keep working.
const OPENAI_CODE_BY_CODE = {
  RATE_LIMITED: 'rate_limit_exceeded',
  BUDGET_EXCEEDED: 'insufficient_quota',
  AUTHENTICATION: 'invalid_api_key',
  NOT_FOUND: 'model_not_found',
  INVALID_REQUEST: 'invalid_request',
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

function openaiErrorBody(described) {
  return {
    error: {
      message: described.message,
      type: described.type,
      param: null,
      code: OPENAI_CODE_BY_CODE[described.code] ?? described.code.toLowerCase(),
    },
  }
}

function sendOpenAIError(res, error, log) {
  const described = describeError(error)
  if (described.status >= 500 || !isFerrogateError(error)) logError(log, described, error)
  if (res.headersSent) {
    res.end()
    return
  }
  setRetryAfter(res, described.retryAfterMs)
  res.setHeader('x-request-id', described.id)
  // 499 is not a status clients know; the client is gone anyway.
  sendJson(res, described.status === 499 ? 400 : described.status, openaiErrorBody(described))
}

const clientError = (code, status, message, extra = {}) =>
  new FerrogateError({ code, status, message, requestId: newId(), ...extra })

// ------------------------------------------------------------------------------ OpenAI → ChatRequest

function toPart(part, at) {
  if (part == null || typeof part !== 'object') throw clientError('INVALID_REQUEST', 400, `${at} must be an object`)
  switch (part.type) {
    case 'text':
      return { type: 'text', text: part.text }
    case 'image_url': {
      const url = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url
      const data = /^data:([^;,]+);base64,(.*)$/s.exec(url ?? '')
      return data ? { type: 'image', mimeType: data[1], data: data[2] } : { type: 'image_url', url }
    }
    default:
      throw clientError('INVALID_REQUEST', 400, `${at}.type '${part.type}' is not supported (text, image_url)`)
  }
}

function toMessage(message, i) {
  const at = `messages[${i}]`
  if (message == null || typeof message !== 'object') throw clientError('INVALID_REQUEST', 400, `${at} must be an object`)
  const role = message.role === 'developer' ? 'system' : message.role
  const out = { role }
  const content = message.content
  if (Array.isArray(content)) out.content = content.map((p, j) => toPart(p, `${at}.content[${j}]`))
  else if (content != null) out.content = String(content)
  if (message.tool_call_id != null) out.toolCallId = String(message.tool_call_id)
  if (Array.isArray(message.tool_calls)) {
    out.toolCalls = message.tool_calls.map((call) => ({
      id: String(call.id),
      name: String(call.function?.name ?? ''),
      arguments: String(call.function?.arguments ?? ''),
    }))
  }
  return out
}

function toResponseFormat(format) {
  if (format == null) return undefined
  if (format.type === 'json_schema') {
    const spec = format.json_schema ?? {}
    return { type: 'json_schema', name: spec.name ?? 'response', schema: spec.schema ?? {} }
  }
  return { type: format.type }
}

function toToolChoice(choice) {
  if (choice == null) return undefined
  if (typeof choice === 'string') return choice
  const name = choice.function?.name ?? choice.name
  return name == null ? undefined : { name }
}

/** An OpenAI chat.completions body → ferrogate's ChatRequest. */
function toChatRequest(body) {
  if (body == null || typeof body !== 'object' || Array.isArray(body)) {
    throw clientError('INVALID_REQUEST', 400, 'the request body must be a JSON object')
  }
  if (typeof body.model !== 'string' || body.model === '') {
    throw clientError('INVALID_REQUEST', 400, "you must provide a model parameter")
  }
  if (!Array.isArray(body.messages) || body.messages.length === 0) {
    throw clientError('INVALID_REQUEST', 400, "'messages' must be a non-empty array")
  }
  const request = { model: body.model, messages: body.messages.map(toMessage) }
  if (body.temperature != null) request.temperature = body.temperature
  if (body.top_p != null) request.topP = body.top_p
  const maxTokens = body.max_completion_tokens ?? body.max_tokens
  if (maxTokens != null) request.maxTokens = maxTokens
  if (body.stop != null) request.stop = Array.isArray(body.stop) ? body.stop : [body.stop]
  if (Array.isArray(body.tools)) {
    request.tools = body.tools.map((tool) => {
      const fn = tool.function ?? tool
      const out = { name: fn.name, parameters: fn.parameters ?? { type: 'object', properties: {} } }
      if (fn.description != null) out.description = fn.description
      return out
    })
  }
  const toolChoice = toToolChoice(body.tool_choice)
  if (toolChoice !== undefined) request.toolChoice = toolChoice
  const responseFormat = toResponseFormat(body.response_format)
  if (responseFormat !== undefined) request.responseFormat = responseFormat
  if (typeof body.user === 'string') request.user = body.user
  if (body.metadata != null && typeof body.metadata === 'object') {
    request.metadata = Object.fromEntries(Object.entries(body.metadata).map(([k, v]) => [k, String(v)]))
  }
  return request
}

// ------------------------------------------------------------------------------ ChatResponse → OpenAI

const openaiUsage = (usage) => ({
  prompt_tokens: usage.promptTokens,
  completion_tokens: usage.completionTokens,
  total_tokens: usage.totalTokens,
  prompt_tokens_details: { cached_tokens: usage.cachedPromptTokens ?? 0 },
  completion_tokens_details: { reasoning_tokens: usage.reasoningTokens ?? 0 },
})

const openaiToolCalls = (calls) =>
  calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }))

function completionBody(response, id, created, model) {
  const message = { role: 'assistant', content: response.toolCalls.length && !response.content ? null : response.content, refusal: response.refusal ?? null }
  if (response.toolCalls.length) message.tool_calls = openaiToolCalls(response.toolCalls)
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: response.finishReason }],
    usage: openaiUsage(response.usage),
  }
}

/**
 * Writes one completion's chunks in OpenAI's exact wire format. The fixed parts of a chunk
 * are encoded once per stream; a text delta costs one JSON.stringify of its text.
 */
class ChunkWriter {
  constructor(res, { id, created, model, includeUsage }) {
    this.res = res
    const usageField = includeUsage ? ',"usage":null' : ''
    this.head = `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"choices":`
    this.textPrefix = `${this.head}[{"index":0,"delta":{"content":`
    this.textSuffix = `},"logprobs":null,"finish_reason":null}]${usageField}}\n\n`
    this.usageField = usageField
    this.pending = []
    this.scheduled = false
    this.flush = () => {
      this.scheduled = false
      if (this.pending.length === 0 || this.res.destroyed) return
      const text = this.pending.length === 1 ? this.pending[0] : this.pending.join('')
      this.pending = []
      this.res.write(text)
    }
  }

  // Events of one native batch arrive in one run of microtasks: they are joined into one
  // write on the next tick, and each stays its own SSE event.
  push(text) {
    this.pending.push(text)
    if (!this.scheduled) {
      this.scheduled = true
      process.nextTick(this.flush)
    }
  }

  choice(delta, finishReason = null) {
    this.push(`${this.head}[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":${finishReason === null ? 'null' : JSON.stringify(finishReason)}}]${this.usageField}}\n\n`)
  }

  role() {
    this.push(`${this.head}[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]${this.usageField}}\n\n`)
  }

  text(text) {
    this.push(this.textPrefix + JSON.stringify(text) + this.textSuffix)
  }

  toolCall(event) {
    const call = { index: event.index }
    if (event.id != null) {
      call.id = event.id
      call.type = 'function'
    }
    const fn = {}
    if (event.name != null) fn.name = event.name
    fn.arguments = event.argumentsDelta ?? ''
    call.function = fn
    this.choice({ tool_calls: [call] })
  }

  finish(response, includeUsage) {
    this.choice({}, response.finishReason)
    if (includeUsage) this.push(`${this.head}[],"usage":${JSON.stringify(openaiUsage(response.usage))}}\n\n`)
    this.push('data: [DONE]\n\n')
  }

  error(described) {
    this.push(`data: ${JSON.stringify(openaiErrorBody(described))}\n\n`)
  }

  end() {
    this.flush()
    this.res.end()
  }
}

// ------------------------------------------------------------------------------ request plumbing

async function readJsonBody(req, limitBytes) {
  if (req.body !== undefined && !(Buffer.isBuffer(req.body) || typeof req.body === 'string')) {
    // Another body parser (express.json()) ran first; an empty object means it saw no JSON.
    return req.body
  }
  let raw
  if (Buffer.isBuffer(req.body) || typeof req.body === 'string') raw = String(req.body)
  else {
    const chunks = []
    let size = 0
    for await (const chunk of req) {
      size += chunk.length
      if (size > limitBytes) throw clientError('INVALID_REQUEST', 413, `the request body is larger than ${limitBytes} bytes`)
      chunks.push(chunk)
    }
    raw = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8')
  }
  try {
    return JSON.parse(raw)
  } catch {
    throw clientError('INVALID_REQUEST', 400, 'the request body is not valid JSON')
  }
}

function bearerToken(req) {
  const header = req.headers.authorization
  if (typeof header !== 'string') return null
  const match = /^Bearer\s+(.+)$/i.exec(header.trim())
  return match ? match[1].trim() : null
}

const isKeyVault = (keys) => keys != null && typeof keys === 'object' && typeof keys.verify === 'function'

/**
 * Who is calling, from the bearer token: `{ user, vaultId }`, or a 401 error. With no
 * `keys`, everyone is allowed and the body's `user` is kept.
 */
async function authenticate(keys, req) {
  if (keys == null) return {}
  const token = bearerToken(req)
  const refused = () =>
    clientError('AUTHENTICATION', 401, token ? 'Incorrect API key provided.' : 'You didn\'t provide an API key. Use an Authorization header: Bearer <key>.')
  if (!token) throw refused()
  if (isKeyVault(keys)) {
    const id = keys.verify(token)
    if (id == null) throw refused()
    return { user: id, vaultId: id }
  }
  const verdict = await keys(token, req)
  if (!verdict) throw refused()
  return typeof verdict === 'string' ? { user: verdict } : {}
}

function checkQuota(keys, vaultId) {
  if (vaultId == null || typeof keys.checkQuota !== 'function') return
  const quota = keys.checkQuota(vaultId)
  if (quota.allowed) return
  const retryAfterMs = Math.max(0, quota.resetsAtMs - Date.now())
  throw clientError('RATE_LIMITED', 429, 'this API key has used its daily token quota', { retryAfterMs })
}

function recordUsage(keys, vaultId, response) {
  if (vaultId == null || typeof keys.recordUsage !== 'function') return
  try {
    keys.recordUsage(vaultId, response.usage.totalTokens)
  } catch {
    // accounting must not fail a call that already succeeded
  }
}

/** An AbortSignal that fires when the client goes away before the response ends. */
function clientGone(res) {
  const controller = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(clientError('ABORTED', 499, 'the client disconnected'))
  })
  return controller.signal
}

// ------------------------------------------------------------------------------ openaiRouter

/**
 * OpenAI-compatible endpoints, to mount at `/v1`: `POST /chat/completions` (JSON and SSE),
 * `GET /models`. Works as Express middleware (`app.use('/v1', openaiRouter(gw))`) and as a
 * plain node:http handler given a URL below the mount point.
 */
function openaiRouter(gateway, options = {}) {
  if (gateway == null || typeof gateway.streamEvents !== 'function') {
    throw new TypeError('openaiRouter(gateway, options) needs a ferrogate Gateway')
  }
  const { keys, bodyLimitBytes = 16 * 1024 * 1024 } = options
  if (keys != null && !isKeyVault(keys) && typeof keys !== 'function') {
    throw new TypeError('openaiRouter keys must be a KeyVault or a function (key) => boolean')
  }
  const log = options.log === undefined ? (line) => console.error(line) : options.log

  async function chatCompletions(req, res) {
    const signal = clientGone(res)
    let identity
    let body
    let request
    try {
      identity = await authenticate(keys, req)
      checkQuota(keys, identity.vaultId)
      body = await readJsonBody(req, bodyLimitBytes)
      request = toChatRequest(body)
    } catch (error) {
      return sendOpenAIError(res, error, log)
    }
    if (identity.user != null) request.user = identity.user
    request.signal = signal
    const id = `chatcmpl-${randomBytes(12).toString('base64url')}`
    const created = Math.floor(Date.now() / 1000)
    const model = body.model

    if (body.stream !== true) {
      try {
        const response = await gateway.chat(request)
        recordUsage(keys, identity.vaultId, response)
        res.setHeader('x-request-id', response.requestId ?? id)
        sendJson(res, 200, completionBody(response, id, created, model))
      } catch (error) {
        if (!signal.aborted) sendOpenAIError(res, error, log)
      }
      return
    }

    const includeUsage = body.stream_options?.include_usage === true
    if (typeof gateway[OPENAI_SSE] === 'function') {
      return streamNative(res, signal, gateway[OPENAI_SSE](request, { id, created, model, includeUsage }), identity)
    }
    const iterator = gateway.streamEvents(request)[Symbol.asyncIterator]()
    let first
    try {
      // Errors before the first event (auth, limits, unknown model) keep their HTTP status.
      first = await iterator.next()
    } catch (error) {
      if (!signal.aborted) sendOpenAIError(res, error, log)
      return
    }
    openEventStream(res)
    const writer = new ChunkWriter(res, { id, created, model, includeUsage })
    writer.role()
    try {
      for (let step = first; !step.done; step = await iterator.next()) {
        const event = step.value
        if (event.type === 'text') writer.text(event.text)
        else if (event.type === 'tool_call') writer.toolCall(event)
        else if (event.type === 'done') {
          recordUsage(keys, identity.vaultId, event.response)
          writer.finish(event.response, includeUsage)
        }
      }
    } catch (error) {
      if (signal.aborted) return
      const described = describeError(error)
      logError(log, described, error)
      writer.error(described)
    }
    writer.end()
  }

  // The gateway encodes the chunks natively; JS only writes each batch's bytes.
  async function streamNative(res, signal, batches, identity) {
    const iterator = batches[Symbol.asyncIterator]()
    let step
    try {
      step = await iterator.next()
    } catch (error) {
      if (!signal.aborted) sendOpenAIError(res, error, log)
      return
    }
    openEventStream(res)
    try {
      for (; !step.done; step = await iterator.next()) {
        const batch = step.value
        if (batch.totalTokens != null) recordUsage(keys, identity.vaultId, { usage: { totalTokens: batch.totalTokens } })
        if (batch.data && batch.data.length) res.write(batch.data)
      }
    } catch (error) {
      if (signal.aborted) return
      const described = describeError(error)
      logError(log, described, error)
      res.write(`data: ${JSON.stringify(openaiErrorBody(described))}\n\n`)
    }
    res.end()
  }

  function models(req, res) {
    Promise.resolve()
      .then(() => authenticate(keys, req))
      .then(() => {
        const data = gateway.models().map((name) => ({
          id: name,
          object: 'model',
          created: 0,
          owned_by: name.includes('/') ? name.slice(0, name.indexOf('/')) : 'ferrogate',
        }))
        sendJson(res, 200, { object: 'list', data })
      })
      .catch((error) => sendOpenAIError(res, error, log))
  }

  return function ferrogateOpenAIRouter(req, res, next) {
    const path = (req.path ?? req.url.split('?')[0]).replace(/\/+$/, '')
    if (path === '/chat/completions') {
      if (req.method === 'POST') return void chatCompletions(req, res)
    } else if (path === '/models') {
      if (req.method === 'GET') return models(req, res)
    } else if (typeof next === 'function' && options.passThrough) {
      return next()
    }
    const url = `${req.baseUrl ?? ''}${req.url}`
    sendJson(res, 404, {
      error: { message: `Unknown request URL: ${req.method} ${redact(url.split('?')[0])}.`, type: 'invalid_request_error', param: null, code: 'unknown_url' },
    })
  }
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
  openaiRouter,
  rateLimit,
  errorHandler,
  metricsHandler,
  dashboardHandler,
  sse,
  redact,
  toChatRequest,
  describeError,
  sendError,
}
