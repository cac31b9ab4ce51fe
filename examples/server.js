'use strict'
// ferrogate + Express 5: a chat endpoint and a streaming (Server-Sent Events) endpoint.
//
//   npm start                       # PORT=3000; OpenAI when OPENAI_API_KEY is set, else the mock provider
//   curl localhost:3000/chat -H 'content-type: application/json' -d '{"message":"Hello!"}'
//   curl -N 'localhost:3000/chat/stream?q=Tell+me+a+joke'
//
// Env: OPENAI_API_KEY, OPENAI_BASE_URL (any OpenAI-compatible server), OPENAI_MODEL (gpt-4o-mini), PORT.
const { once } = require('node:events')
const express = require('express')
const { Gateway } = require('..') // in your app: require('ferrogate')

const { OPENAI_API_KEY, OPENAI_BASE_URL } = process.env
const PORT = process.env.PORT ? Number(process.env.PORT) : 3000 // PORT=0 picks a free port

let gateway, defaultModel
if (OPENAI_API_KEY) {
  const openai = { kind: 'openai', apiKey: OPENAI_API_KEY }
  if (OPENAI_BASE_URL) openai.baseUrl = OPENAI_BASE_URL
  gateway = new Gateway({ providers: { openai }, timeoutMs: 60_000, maxRetries: 2 })
  defaultModel = `openai/${process.env.OPENAI_MODEL || 'gpt-4o-mini'}`
  const at = OPENAI_BASE_URL ? ` at ${URL.canParse(OPENAI_BASE_URL) ? new URL(OPENAI_BASE_URL).origin : 'OPENAI_BASE_URL'}` : ''
  console.log(`using OpenAI: model ${defaultModel}${at}`) // never the key
} else {
  gateway = new Gateway({ providers: { mock: { kind: 'mock' } } })
  defaultModel = 'mock/mock-1'
  console.log('no OPENAI_API_KEY: using the built-in mock provider')
}

// An Error carrying .status and .code is answered by the error middleware below.
const badRequest = (message) => Object.assign(new Error(message), { status: 400, code: 'INVALID_REQUEST' })

function toMessages (body) {
  if (Array.isArray(body?.messages) && body.messages.length) return body.messages
  if (typeof body?.message === 'string' && body.message.trim()) return [{ role: 'user', content: body.message }]
  throw badRequest('send { "message": "..." } or { "messages": [...] }')
}

// What the client sees of an error: ferrogate errors carry .status and .code, and their messages
// never contain API keys; anything else without a code is an internal error.
function publicError (err) {
  const status = err.status || err.statusCode || 500
  const code = err.code || (status < 500 ? 'INVALID_REQUEST' : 'INTERNAL')
  const message = err.code || status < 500 ? err.message : 'internal error'
  return { status, code, message }
}

// Aborts the upstream call when the client goes away before the response is complete.
function abortOnClose (res) {
  const ac = new AbortController()
  res.on('close', () => { if (!res.writableFinished) ac.abort() })
  return ac.signal
}

const app = express()
app.disable('x-powered-by')
app.use(express.json({ limit: '1mb' }))

app.post('/chat', async (req, res) => {
  const response = await gateway.chat({
    model: req.body?.model || defaultModel,
    messages: toMessages(req.body),
    signal: abortOnClose(res)
  })
  res.json(response)
})

app.get('/chat/stream', async (req, res) => {
  const q = typeof req.query.q === 'string' ? req.query.q.trim() : ''
  if (!q) throw badRequest('missing ?q=')
  const signal = abortOnClose(res)

  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no' // no proxy buffering (nginx)
  })
  const send = async (data, event) => {
    const ok = res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`)
    if (!ok) await once(res, 'drain', { signal }) // backpressure: wait for a slow client
  }

  try {
    for await (const ev of gateway.streamEvents({ model: defaultModel, messages: [{ role: 'user', content: q }], signal })) {
      if (ev.type === 'text') await send({ text: ev.text })
      else if (ev.type === 'done') {
        const { id, model, finishReason, usage, latencyMs, ttftMs } = ev.response
        await send({ id, model, finishReason, usage, latencyMs, ttftMs }, 'done')
      }
    }
  } catch (err) {
    if (signal.aborted) return // the client left; the upstream call has been stopped
    const { status, code, message } = publicError(err)
    console.error(`GET /chat/stream -> ${status} ${code}: ${err.message}`)
    await send({ code, message, status }, 'error').catch(() => {})
  }
  res.end()
})

// Error middleware: Express 5 forwards rejected promises here.
app.use((err, req, res, next) => {
  if (res.headersSent) return next(err)
  const { status, code, message } = publicError(err)
  if (status >= 500) console.error(`${req.method} ${req.path} -> ${status} ${code}: ${err.message}`)
  if (err.retryAfterMs) res.set('retry-after', String(Math.ceil(err.retryAfterMs / 1000)))
  res.status(status).json({ error: { code, message } })
})

const server = app.listen(PORT, (err) => {
  if (err) throw err // e.g. EADDRINUSE
  console.log(`listening on http://localhost:${server.address().port}`)
})

// Shutting down (SIGTERM from a process manager, Ctrl-C): stop accepting, let the requests and
// streams in progress finish (up to a grace period), then close the gateway, which flushes the
// cost ledger and caches, and exit 0. A second signal exits at once.
const SHUTDOWN_GRACE_MS = 25_000
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, async () => {
    process.once(sig, () => process.exit(1))
    const closed = new Promise((resolve) => server.close(resolve))
    // Kept-alive connections are closed as soon as their request in progress has ended.
    const idle = setInterval(() => server.closeIdleConnections(), 50)
    const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS)
    await closed
    clearInterval(idle)
    clearTimeout(force)
    await gateway.close()
    process.exit(0)
  })
}
