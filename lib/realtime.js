'use strict'
// ferrogate/realtime: the seed's real-time chat services as thin JS over a Gateway —
// attachChat (WebSocket, the `ws` package) and sseChat (an Express router speaking Server-Sent Events).
// Everything AI goes through the gateway's public API (streamEvents with a signal); this file only
// speaks the wire protocols, keeps the per-session history and cleans up when a client leaves.

const { requirePeer, requirePeers } = require('./peers.js')

requirePeers('ferrogate/realtime', ['ws'])

const { randomUUID } = require('node:crypto')
const { once } = require('node:events')

const DEFAULT_MAX_MESSAGES = 50
const DEFAULT_TTL_SECONDS = 86_400
// The in-memory history store's bounds (Redis has its own TTL and maxmemory).
const DEFAULT_MAX_SESSIONS = 10_000
const DEFAULT_MAX_HISTORY_BYTES = 64 * 1024 * 1024
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
// How long a socket closed for not reading gets to take its close frame before it is cut.
const OVERFLOW_CLOSE_GRACE_MS = 1000
const DEFAULT_PING_INTERVAL_MS = 30_000
const DEFAULT_BATCH_CONCURRENCY = 4
const MAX_BATCH_SIZE = 100
// Client-chosen ids (session, message, SSE client) end up in Redis keys and logs: keep them plain.
const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/

const now = () => new Date().toISOString()

const { FerrogateError, newRequestId, configError } = require('./errors.js')
const { requireGateway } = require('./shapes.js')

function positiveInteger(value, name, fallback) {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value <= 0) throw configError(`${name} must be a positive integer, got ${String(value)}`)
  return value
}

// What a client may see of an error: ferrogate errors carry a code and never contain a key;
// anything else is an internal error whose message stays on the server.
function publicError(error) {
  if (error instanceof FerrogateError || (typeof error?.code === 'string' && /^[A-Z_]+$/.test(error.code))) {
    return { code: error.code, message: String(error.message) }
  }
  return { code: 'INTERNAL', message: 'internal error' }
}

// Keeps the last `max` messages, never starting on an assistant turn (some vendors refuse that).
function trimHistory(messages, max) {
  let start = Math.max(0, messages.length - max)
  while (start < messages.length && messages[start].role !== 'user') start++
  return start === 0 ? messages : messages.slice(start)
}

// ------------------------------------------------------------------------------------- history stores

// Sessions in this process, least recently used first (a Map keeps insertion order, and every
// load or save moves its session to the end). Bounded in count and bytes: clients choose how
// many sessions they open, so without a bound they choose how much memory the server holds.
class MemoryHistoryStore {
  #sessions = new Map() // id -> { json, bytes, expiresAt }
  #ttlMs
  #maxSessions
  #maxBytes
  #bytes = 0
  constructor(ttlSeconds, { maxSessions, maxBytes }) {
    this.#ttlMs = ttlSeconds * 1000
    this.#maxSessions = maxSessions
    this.#maxBytes = maxBytes
  }
  async load(id) {
    this.#sweep()
    const entry = this.#sessions.get(id)
    if (!entry) return null
    this.#sessions.delete(id)
    this.#sessions.set(id, entry)
    return JSON.parse(entry.json)
  }
  async save(id, state) {
    this.#remove(id)
    const json = JSON.stringify(state)
    const bytes = Buffer.byteLength(json)
    if (bytes > this.#maxBytes) return // larger than the whole store: kept nowhere rather than evicting everyone
    this.#sessions.set(id, { json, bytes, expiresAt: Date.now() + this.#ttlMs })
    this.#bytes += bytes
    for (const oldest of this.#sessions.keys()) {
      if (this.#sessions.size <= this.#maxSessions && this.#bytes <= this.#maxBytes) break
      this.#remove(oldest)
    }
  }
  /** Sessions held and their bytes (JSON), for tests and monitoring. */
  usage() {
    return { sessions: this.#sessions.size, bytes: this.#bytes }
  }
  #remove(id) {
    const entry = this.#sessions.get(id)
    if (!entry) return
    this.#sessions.delete(id)
    this.#bytes -= entry.bytes
  }
  #sweep() {
    const t = Date.now()
    for (const [id, entry] of this.#sessions) if (entry.expiresAt <= t) this.#remove(id)
  }
  async close() {}
}

class RedisHistoryStore {
  #redis
  #ttlSeconds
  #prefix
  constructor(redisUrl, ttlSeconds, prefix) {
    const { Redis } = requirePeer('ferrogate/realtime (history.redisUrl)', 'ioredis')
    this.#redis = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 3 })
    // Connection errors surface on the command that needed Redis; without a listener ioredis would log them.
    this.#redis.on('error', () => {})
    this.#ttlSeconds = ttlSeconds
    this.#prefix = prefix
  }
  async load(id) {
    const raw = await this.#redis.get(this.#prefix + id)
    if (raw == null) return null
    try {
      return JSON.parse(raw)
    } catch {
      return null
    }
  }
  async save(id, state) {
    await this.#redis.set(this.#prefix + id, JSON.stringify(state), 'EX', this.#ttlSeconds)
  }
  async close() {
    await this.#redis.quit().catch(() => this.#redis.disconnect())
  }
}

// ------------------------------------------------------------------------------------------ attachChat

function attachChat(server, opts = {}) {
  const { WebSocketServer, WebSocket } = requirePeer('ferrogate/realtime', 'ws')
  if (server == null || typeof server.on !== 'function') throw configError('attachChat(server, opts) needs an http.Server')
  const { gateway, systemPrompt, user, authenticate } = opts
  requireGateway(gateway, 'attachChat', 'streamEvents')
  const path = opts.path ?? '/ws/chat'
  if (typeof path !== 'string' || !path.startsWith('/')) throw configError('path must start with "/"')
  const models = opts.models
  if (!Array.isArray(models) || models.length === 0 || !models.every((m) => typeof m === 'string' && m)) {
    throw configError('attachChat needs models: a non-empty array of model names')
  }
  const defaultModel = opts.defaultModel ?? models[0]
  if (!models.includes(defaultModel)) throw configError(`defaultModel ${JSON.stringify(defaultModel)} is not in models`)
  if (systemPrompt !== undefined && typeof systemPrompt !== 'string') throw configError('systemPrompt must be a string')
  if (user !== undefined && typeof user !== 'function') throw configError('user must be a function (req) => string')
  if (authenticate !== undefined && typeof authenticate !== 'function') throw configError('authenticate must be a function (req) => boolean')
  const history = opts.history ?? {}
  const maxMessages = positiveInteger(history.maxMessages, 'history.maxMessages', DEFAULT_MAX_MESSAGES)
  const ttlSeconds = positiveInteger(history.ttlSeconds, 'history.ttlSeconds', DEFAULT_TTL_SECONDS)
  const maxBufferedBytes = positiveInteger(opts.maxBufferedBytes, 'maxBufferedBytes', DEFAULT_MAX_BUFFERED_BYTES)
  const maxPayload = positiveInteger(opts.maxPayloadBytes, 'maxPayloadBytes', DEFAULT_MAX_PAYLOAD_BYTES)
  const pingIntervalMs = positiveInteger(opts.pingIntervalMs, 'pingIntervalMs', DEFAULT_PING_INTERVAL_MS)
  const maxSessions = positiveInteger(history.maxSessions, 'history.maxSessions', DEFAULT_MAX_SESSIONS)
  const maxBytes = positiveInteger(history.maxBytes, 'history.maxBytes', DEFAULT_MAX_HISTORY_BYTES)
  const store = history.redisUrl
    ? new RedisHistoryStore(history.redisUrl, ttlSeconds, history.keyPrefix ?? 'ferrogate:chat:')
    : new MemoryHistoryStore(ttlSeconds, { maxSessions, maxBytes })

  const wss = new WebSocketServer({ noServer: true, maxPayload })
  const connections = new Set() // live Connection objects
  let closed = false

  function refuse(socket, status, reason) {
    if (socket.destroyed) return
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${reason.length}\r\n\r\n${reason}`)
  }

  async function onUpgrade(req, socket, head) {
    let pathname
    try {
      pathname = new URL(req.url, 'http://localhost').pathname
    } catch {
      return
    }
    if (pathname !== path) return // another upgrade handler's path
    socket.on('error', () => {})
    if (closed) return refuse(socket, 503, 'Service Unavailable')
    if (authenticate) {
      let ok
      try {
        ok = await authenticate(req)
      } catch {
        ok = false
      }
      if (!ok) return refuse(socket, 401, 'Unauthorized')
    }
    if (socket.destroyed || closed) return
    wss.handleUpgrade(req, socket, head, (ws) => {
      new Connection(ws, req).start()
    })
  }
  server.on('upgrade', onUpgrade)

  const pingTimer = setInterval(() => {
    for (const conn of connections) conn.ping()
  }, pingIntervalMs)
  pingTimer.unref()

  class Connection {
    constructor(ws, req) {
      this.ws = ws
      this.req = req
      this.alive = true
      this.active = null // { controller, messageId, done }
      this.historyGeneration = 0
      let userId
      try {
        userId = user ? user(req) : undefined
      } catch {
        userId = undefined
      }
      this.userId = typeof userId === 'string' && userId ? userId : undefined
      const asked = new URL(req.url, 'http://localhost').searchParams.get('sessionId')
      this.askedSessionId = asked && ID_PATTERN.test(asked) ? asked : null
    }

    // Every message goes out here. A client whose unsent data is already past maxBufferedBytes is
    // not reading: its socket is closed (1008) instead of buffering more for it. The answer's
    // stream waits for the socket to drain before each of its sends (#drain), so only a client
    // that keeps sending frames without reading the replies gets here over the bound.
    send(type, fields = {}) {
      if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve()
      if (this.ws.bufferedAmount > maxBufferedBytes) {
        this.#overflow()
        return Promise.resolve()
      }
      return new Promise((resolve) => {
        this.ws.send(JSON.stringify({ type, ...fields, timestamp: now() }), () => resolve())
      })
    }

    #overflow() {
      this.active?.controller.abort(new Error('the client stopped reading'))
      this.ws.close(1008, 'the client is not reading its messages')
      // The close frame waits behind the unread data: a client that never reads never gets it.
      setTimeout(() => this.ws.terminate(), OVERFLOW_CLOSE_GRACE_MS).unref()
    }

    error(code, message) {
      this.send('error', { code, message })
    }

    ping() {
      if (!this.alive) return this.ws.terminate()
      this.alive = false
      try {
        this.ws.ping()
      } catch {
        this.ws.terminate() // not open any more: its 'close' ends the session
      }
    }

    async start() {
      connections.add(this)
      const { ws } = this
      ws.on('pong', () => {
        this.alive = true
      })
      ws.on('error', () => {})
      // Frames that arrive while the session loads are handled in order once it has.
      let chain = this.#load()
      ws.on('message', (data, isBinary) => {
        chain = chain.then(() => this.#onFrame(data, isBinary)).catch(() => {})
      })
      ws.on('close', () => {
        connections.delete(this)
        this.active?.controller.abort(new Error('the client closed the connection'))
      })
      await chain
    }

    async #load() {
      let state = null
      this.sessionId = this.askedSessionId ?? randomUUID()
      if (this.askedSessionId) {
        try {
          state = await store.load(this.askedSessionId)
        } catch {
          // The history store is down: start afresh rather than refuse the chat, under a new id,
          // since nobody can tell whose the asked one is and a later save would overwrite it.
          state = null
          this.sessionId = randomUUID()
        }
        // A session belongs to the user who started it (or to nobody, without `user`): anyone
        // else gets a new one, not a way to read or overwrite it.
        if (state && (state.userId ?? undefined) !== this.userId) {
          state = null
          this.sessionId = randomUUID()
        }
      }
      this.model = state && models.includes(state.model) ? state.model : defaultModel
      this.messages = Array.isArray(state?.messages) ? state.messages : []
      await this.send('connection_established', {
        sessionId: this.sessionId,
        model: this.model,
        supportedModels: models,
        history: this.messages,
      })
    }

    async #save() {
      const state = { model: this.model, messages: this.messages }
      if (this.userId !== undefined) state.userId = this.userId
      try {
        await store.save(this.sessionId, state)
      } catch {
        // the history store is down: the conversation goes on, it just cannot be resumed
      }
    }

    async #onFrame(data, isBinary) {
      if (isBinary) return this.error('INVALID_MESSAGE', 'frames must be JSON text')
      let message
      try {
        message = JSON.parse(data.toString('utf8'))
      } catch {
        return this.error('INVALID_MESSAGE', 'the frame is not valid JSON')
      }
      if (message == null || typeof message !== 'object' || Array.isArray(message)) {
        return this.error('INVALID_MESSAGE', 'a message must be a JSON object with a type')
      }
      switch (message.type) {
        case 'chat_message':
          return this.#onChat(message)
        case 'change_model':
          return this.#onChangeModel(message)
        case 'clear_history':
          this.messages = []
          this.historyGeneration++
          await this.#save()
          return this.send('history_cleared')
        case 'typing_start':
        case 'typing_stop':
          return this.#onTyping(message.type === 'typing_start')
        case 'cancel':
          this.active?.controller.abort(new Error('cancelled by the client'))
          return
        default:
          return this.error('INVALID_MESSAGE', `unknown message type ${JSON.stringify(String(message.type)).slice(0, 60)}`)
      }
    }

    async #onChangeModel({ model }) {
      if (typeof model !== 'string' || !model) return this.error('INVALID_MESSAGE', 'change_model needs { model }')
      if (!models.includes(model)) return this.error('UNKNOWN_MODEL', `unknown model ${JSON.stringify(model).slice(0, 100)}; supported: ${models.join(', ')}`)
      this.model = model
      await this.#save()
      return this.send('model_changed', { model })
    }

    #onTyping(isTyping) {
      if (this.userId === undefined) return
      for (const other of connections) {
        if (other !== this && other.userId === this.userId) other.send('user_typing', { userId: this.userId, isTyping })
      }
    }

    #onChat(message) {
      const { content } = message
      if (typeof content !== 'string' || !content.trim()) return this.error('INVALID_MESSAGE', 'chat_message needs a non-empty content string')
      if (this.active) return this.error('BUSY', 'an answer is still streaming; wait for it or send cancel')
      const messageId =
        (typeof message.id === 'string' && ID_PATTERN.test(message.id)) || Number.isInteger(message.id) ? String(message.id) : randomUUID()
      const controller = new AbortController()
      this.active = { controller, messageId }
      // Not awaited: cancel and other frames must be handled while the answer streams.
      this.active.done = this.#answer(messageId, content, controller).finally(() => {
        this.active = null
      })
    }

    // Waits while the client reads slower than the answer arrives, so the upstream read slows
    // down with it instead of the answer piling up in this process.
    async #drain() {
      while (this.ws.readyState === WebSocket.OPEN && this.ws.bufferedAmount > maxBufferedBytes) {
        await new Promise((resolve) => {
          const socket = this.ws._socket
          const done = () => {
            clearTimeout(timer)
            socket?.off('drain', done)
            this.ws.off('close', done)
            resolve()
          }
          // 'drain' is the socket's; the poll covers data still queued inside ws's own sender.
          const timer = setTimeout(done, 50)
          socket?.once('drain', done)
          this.ws.once('close', done)
        })
      }
    }

    // The answer's messages wait while the client reads slower than they come, so they never
    // find the buffer over the bound; one message may take it past the bound by its own size.
    // Not waiting for the write itself: the next chunk's #drain is the wait.
    async #sendWhenDrained(type, fields) {
      await this.#drain()
      this.send(type, fields)
    }

    async #answer(messageId, content, controller) {
      const generation = this.historyGeneration
      await this.#sendWhenDrained('message_received', { messageId })
      this.messages = trimHistory([...this.messages, { role: 'user', content }], maxMessages)
      await this.#save()
      await this.#sendWhenDrained('ai_typing', { isTyping: true })
      await this.#sendWhenDrained('ai_response_start', { messageId })
      const model = this.model
      const request = { model, messages: systemPrompt ? [{ role: 'system', content: systemPrompt }, ...this.messages] : this.messages, signal: controller.signal }
      if (this.userId !== undefined) request.user = this.userId
      let fullResponse = ''
      try {
        let response
        for await (const event of gateway.streamEvents(request)) {
          if (event.type === 'text') {
            fullResponse += event.text
            await this.#sendWhenDrained('ai_response_chunk', { messageId, chunk: event.text })
            if (this.ws.readyState !== WebSocket.OPEN) controller.abort(new Error('the client closed the connection'))
          } else if (event.type === 'done') {
            response = event.response
          }
        }
        if (generation === this.historyGeneration) {
          this.messages = trimHistory([...this.messages, { role: 'assistant', content: fullResponse }], maxMessages)
          await this.#save()
        }
        await this.#sendWhenDrained('ai_response_complete', {
          messageId,
          fullResponse,
          model,
          usage: response.usage,
          costUsd: response.costUsd,
        })
      } catch (error) {
        // The question stays unanswered in the history otherwise, and the next turn would repeat it.
        if (generation === this.historyGeneration) {
          const last = this.messages[this.messages.length - 1]
          if (last?.role === 'user' && last.content === content) {
            this.messages = this.messages.slice(0, -1)
            await this.#save()
          }
        }
        await this.#sendWhenDrained('ai_response_error', { messageId, ...publicError(error) })
      } finally {
        await this.#sendWhenDrained('ai_typing', { isTyping: false })
      }
    }
  }

  return {
    sessionCount: () => connections.size,
    /** The underlying ws WebSocketServer (its `clients` are the open sockets). */
    webSocketServer: wss,
    async close() {
      if (closed) return
      closed = true
      server.off('upgrade', onUpgrade)
      clearInterval(pingTimer)
      const pending = []
      for (const conn of connections) {
        conn.active?.controller.abort(new Error('the chat server is closing'))
        if (conn.active) pending.push(conn.active.done)
        conn.ws.close(1001, 'server closing')
      }
      await Promise.allSettled(pending)
      for (const ws of wss.clients) {
        if (ws.readyState !== WebSocket.CLOSED) {
          const closedOnce = once(ws, 'close')
          const timer = setTimeout(() => ws.terminate(), 2000)
          await closedOnce
          clearTimeout(timer)
        }
      }
      await new Promise((resolve) => wss.close(() => resolve()))
      await store.close()
    },
  }
}

// --------------------------------------------------------------------------------------------- sseChat

function sseChat(opts = {}) {
  const express = require('express')
  const { gateway, user } = opts
  requireGateway(gateway, 'sseChat', 'streamEvents')
  const defaultModel = opts.defaultModel
  if (typeof defaultModel !== 'string' || !defaultModel) throw configError('sseChat needs defaultModel')
  // The models a client may ask for: every call is billed, so a client picks from a list, never freely.
  const models = opts.models ?? [defaultModel]
  if (!Array.isArray(models) || models.length === 0 || !models.every((m) => typeof m === 'string' && m)) {
    throw configError('sseChat models must be a non-empty array of model names')
  }
  if (!models.includes(defaultModel)) throw configError(`defaultModel ${JSON.stringify(defaultModel)} is not in models`)
  const heartbeatMs = positiveInteger(opts.heartbeatMs, 'heartbeatMs', 30_000)
  const batchConcurrency = positiveInteger(opts.batchConcurrency, 'batchConcurrency', DEFAULT_BATCH_CONCURRENCY)
  const maxBatchSize = positiveInteger(opts.maxBatchSize, 'maxBatchSize', MAX_BATCH_SIZE)
  if (user !== undefined && typeof user !== 'function') throw configError('user must be a function (req) => string')

  const clients = new Map() // clientId -> Client
  const router = express.Router()

  const fail = (res, status, code, message) => res.status(status).json({ error: { code, message } })
  const userOf = (req) => {
    try {
      const id = user ? user(req) : undefined
      return typeof id === 'string' && id ? id : undefined
    } catch {
      return undefined
    }
  }

  class Client {
    constructor(id, res, userId) {
      this.id = id
      this.res = res
      this.userId = userId
      this.inFlight = new Set() // AbortControllers of its running calls
      this.closed = false
      this.heartbeat = setInterval(() => this.send('heartbeat'), heartbeatMs)
    }
    // Events are written in call order; a client that reads slowly makes the writer wait for
    // 'drain' rather than buffer without bound.
    async send(type, fields = {}) {
      if (this.closed) return
      const ok = this.res.write(`data: ${JSON.stringify({ type, ...fields, timestamp: now() })}\n\n`)
      if (!ok && !this.closed) await Promise.race([once(this.res, 'drain'), once(this.res, 'close')])
    }
    close() {
      if (this.closed) return
      this.closed = true
      clearInterval(this.heartbeat)
      for (const controller of this.inFlight) controller.abort(new Error('the client left'))
      if (clients.get(this.id) === this) clients.delete(this.id)
    }
    request(model, message) {
      const controller = new AbortController()
      this.inFlight.add(controller)
      const req = { model: model ?? defaultModel, messages: [{ role: 'user', content: message }], signal: controller.signal }
      if (this.userId !== undefined) req.user = this.userId
      return { req, controller, done: () => this.inFlight.delete(controller) }
    }
  }

  // A channel belongs to the user who opened it: to anyone else it does not exist.
  const noChannel = (res, clientId) => fail(res, 404, 'NOT_FOUND', `no open channel for client ${JSON.stringify(clientId).slice(0, 140)}`)
  const channelOf = (req, clientId) => {
    const client = clients.get(clientId)
    return client !== undefined && client.userId === userOf(req) ? client : undefined
  }

  router.get('/', (req, res) => {
    const asked = typeof req.query.clientId === 'string' ? req.query.clientId : undefined
    if (asked !== undefined && !ID_PATTERN.test(asked)) return fail(res, 400, 'INVALID_REQUEST', 'clientId must be 1-128 letters, digits or _.:-')
    const clientId = asked ?? randomUUID()
    const previous = clients.get(clientId)
    if (previous !== undefined) {
      // Only its own user may reconnect to an open channel (the reconnect takes it over).
      if (previous !== channelOf(req, clientId)) return noChannel(res, clientId)
      previous.res.end()
      previous.close()
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    res.flushHeaders()
    const client = new Client(clientId, res, userOf(req))
    clients.set(clientId, client)
    res.on('close', () => client.close())
    client.send('connected', { clientId })
  })

  const json = express.json({ limit: '1mb' })
  const unknownModel = (model) => `model must be one of ${models.join(', ')}; got ${JSON.stringify(String(model)).slice(0, 100)}`
  const lookup = (req, res, next) => {
    const client = channelOf(req, req.params.clientId)
    if (!client) return noChannel(res, req.params.clientId)
    req.sseClient = client
    next()
  }

  router.post('/:clientId', lookup, json, (req, res) => {
    const client = req.sseClient
    const { message, model } = req.body ?? {}
    if (typeof message !== 'string' || !message.trim()) return fail(res, 400, 'INVALID_REQUEST', 'send { "message": "..." }')
    if (model !== undefined && !models.includes(model)) return fail(res, 400, 'INVALID_REQUEST', unknownModel(model))
    const requestId = newRequestId()
    res.status(202).json({ requestId })
    ;(async () => {
      const call = client.request(model, message)
      let fullResponse = ''
      try {
        await client.send('processing_start', { requestId })
        let response
        for await (const event of gateway.streamEvents(call.req)) {
          if (event.type === 'text') {
            fullResponse += event.text
            await client.send('response_chunk', { requestId, chunk: event.text })
          } else if (event.type === 'done') {
            response = event.response
          }
        }
        await client.send('response_complete', { requestId, fullResponse, usage: response.usage, costUsd: response.costUsd })
      } catch (error) {
        await client.send('error', { requestId, ...publicError(error) })
      } finally {
        call.done()
      }
    })()
  })

  router.post('/:clientId/batch', lookup, json, (req, res) => {
    const client = req.sseClient
    const requests = req.body?.requests
    if (!Array.isArray(requests) || requests.length === 0) return fail(res, 400, 'INVALID_REQUEST', 'send { "requests": [{ "id", "message", "model"? }, ...] }')
    if (requests.length > maxBatchSize) return fail(res, 400, 'INVALID_REQUEST', `a batch holds at most ${maxBatchSize} requests`)
    for (const [index, item] of requests.entries()) {
      const idOk = (typeof item?.id === 'string' && item.id.length > 0 && item.id.length <= 256) || Number.isInteger(item?.id)
      if (!idOk) return fail(res, 400, 'INVALID_REQUEST', `requests[${index}].id must be a string or an integer`)
      if (typeof item.message !== 'string' || !item.message.trim()) return fail(res, 400, 'INVALID_REQUEST', `requests[${index}].message must be a non-empty string`)
      if (item.model !== undefined && !models.includes(item.model)) return fail(res, 400, 'INVALID_REQUEST', `requests[${index}]: ${unknownModel(item.model)}`)
    }
    const batchId = randomUUID()
    res.status(202).json({ batchId })
    ;(async () => {
      await client.send('batch_start', { batchId, totalRequests: requests.length })
      // Items run a few at a time; their events go out in input order.
      const outcomes = new Array(requests.length)
      let next = 0
      const runOne = async (index) => {
        const item = requests[index]
        const call = client.request(item.model, item.message)
        try {
          const response = await gateway.chat(call.req)
          return { ok: true, response }
        } catch (error) {
          return { ok: false, error }
        } finally {
          call.done()
        }
      }
      const pool = () => {
        while (next < requests.length && next < emitted + batchConcurrency) {
          const index = next++
          outcomes[index] = runOne(index)
        }
      }
      let emitted = 0
      pool()
      for (let index = 0; index < requests.length; index++) {
        const outcome = await outcomes[index]
        emitted++
        pool()
        const requestId = requests[index].id
        if (outcome.ok) {
          const { content, usage, costUsd } = outcome.response
          await client.send('batch_item_complete', { batchId, requestId, index, response: content, usage, costUsd })
        } else {
          await client.send('batch_item_error', { batchId, requestId, index, ...publicError(outcome.error) })
        }
      }
      await client.send('batch_complete', { batchId })
    })().catch(() => {})
  })

  /** Number of open SSE channels. */
  router.clientCount = () => clients.size
  /** Ends every open channel and aborts their calls. */
  router.close = () => {
    for (const client of [...clients.values()]) {
      client.res.end()
      client.close()
    }
  }
  return router
}

module.exports = { attachChat, sseChat }
