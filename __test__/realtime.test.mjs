// ferrogate/realtime: the WebSocket chat protocol (attachChat) and the SSE chat router (sseChat), driven by
// real clients over loopback, with the upstream at the mock vendors where a test must see what was sent.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import express from 'express'
import { Redis } from 'ioredis'
import { Gateway } from 'ferrogate'
import { attachChat, sseChat } from 'ferrogate/realtime'
import { connectChat, refusedUpgradeStatus } from './helpers/chat-client.mjs'
import { generateOpenAIStream, startMockVendors } from './helpers/mock-vendors.mjs'
import { startExample } from './helpers/examples.mjs'
import { waitUntil } from './helpers/wait.mjs'

const REDIS_URL = 'redis://127.0.0.1:6379'
const MOCK_MODEL = 'mock/mock-1'
const VENDOR_MODEL = 'vendor/gpt-4o-mini'
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

const newGateway = () =>
  new Gateway({
    providers: {
      mock: { kind: 'mock', mockChunkDelayMs: 1 },
      vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl },
    },
    maxRetries: 0,
  })

/** An SSE reply in separate frames, `delayMs` before each: an answer that is still streaming. */
const slowStream = (chunks, delayMs) => ({ sse: generateOpenAIStream({ chunks }).split(/(?<=\n\n)/), delayMs })
const lastUpstreamMessages = () => vendors.requests.at(-1).body.messages

async function startChat(options = {}) {
  const server = http.createServer()
  const chat = attachChat(server, { gateway: newGateway(), models: [MOCK_MODEL, VENDOR_MODEL], defaultModel: MOCK_MODEL, ...options })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `ws://127.0.0.1:${server.address().port}/ws/chat`
  return {
    server,
    chat,
    url,
    async stop() {
      await chat.close()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** Sends a question and returns everything up to its ai_response_complete (or ai_response_error). */
async function ask(client, content, id) {
  client.send({ type: 'chat_message', content, ...(id === undefined ? {} : { id }) })
  return client.collectUntil((m) => m.type === 'ai_response_complete' || m.type === 'ai_response_error')
}

describe('attachChat', () => {
  test('a whole conversation: events in order, chunks rebuilding the answer, model change, history clear', async () => {
    const chat = await startChat({ systemPrompt: 'Be brief.' })
    const client = await connectChat(chat.url)
    try {
      const hello = await client.waitFor('connection_established')
      assert.match(hello.sessionId, /^[0-9a-f-]{36}$/)
      assert.equal(hello.model, MOCK_MODEL)
      assert.deepEqual(hello.supportedModels, [MOCK_MODEL, VENDOR_MODEL])
      assert.deepEqual(hello.history, [])
      assert.equal(chat.chat.sessionCount(), 1)

      const events = await ask(client, 'Hello there', 'm1')
      const types = events.map((m) => m.type)
      assert.deepEqual(types.slice(0, 3), ['message_received', 'ai_typing', 'ai_response_start'])
      assert.equal(types.at(-1), 'ai_response_complete')
      assert.deepEqual(events[0], { type: 'message_received', messageId: 'm1', timestamp: events[0].timestamp })
      assert.equal(events[1].isTyping, true)
      const chunks = events.filter((m) => m.type === 'ai_response_chunk')
      assert.ok(chunks.length > 5, 'the mock answer streams word by word')
      assert.ok(chunks.every((m) => m.messageId === 'm1' && typeof m.chunk === 'string' && !('fullResponse' in m)))
      const complete = events.at(-1)
      assert.equal(chunks.map((m) => m.chunk).join(''), complete.fullResponse)
      assert.match(complete.fullResponse, /ferrogate mock provider answering "Hello there"/)
      assert.equal(complete.model, MOCK_MODEL)
      assert.ok(complete.usage.totalTokens > 0)
      assert.equal(typeof complete.costUsd, 'number')
      assert.deepEqual(await client.waitFor('ai_typing'), { type: 'ai_typing', isTyping: false, timestamp: client.messages.at(-1).timestamp })

      client.send({ type: 'change_model', model: 'nope/unknown' })
      assert.equal((await client.waitFor('error')).code, 'UNKNOWN_MODEL')
      client.send({ type: 'change_model', model: VENDOR_MODEL })
      assert.equal((await client.waitFor('model_changed')).model, VENDOR_MODEL)
      const second = (await ask(client, 'And now?')).at(-1)
      assert.equal(second.type, 'ai_response_complete')
      assert.equal(second.model, VENDOR_MODEL)
      assert.equal(second.fullResponse, 'echo: And now?')
      // The new model got the whole conversation, system prompt first.
      assert.equal(vendors.requests.at(-1).body.model, 'gpt-4o-mini')
      assert.deepEqual(
        lastUpstreamMessages().map((m) => [m.role, m.content]),
        [['system', 'Be brief.'], ['user', 'Hello there'], ['assistant', complete.fullResponse], ['user', 'And now?']],
      )

      client.send({ type: 'clear_history' })
      await client.waitFor('history_cleared')
      await ask(client, 'Fresh start')
      assert.deepEqual(lastUpstreamMessages().map((m) => m.content), ['Be brief.', 'Fresh start'])

      for (const message of client.messages) assert.match(message.timestamp, ISO, `${message.type} has an ISO timestamp`)
    } finally {
      await client.close()
      await chat.stop()
    }
  })

  test('malformed JSON, an unknown type and an empty message get INVALID_MESSAGE and the socket stays usable', async () => {
    const chat = await startChat()
    const client = await connectChat(chat.url)
    try {
      await client.waitFor('connection_established')
      for (const frame of ['{not json', JSON.stringify({ type: 'launch_rockets' }), JSON.stringify({ type: 'chat_message', content: '   ' }), '[1,2]']) {
        client.send(frame)
        const error = await client.waitFor('error')
        assert.equal(error.code, 'INVALID_MESSAGE', frame)
        assert.equal(typeof error.message, 'string')
      }
      client.send({ type: 'change_model' })
      assert.equal((await client.waitFor('error')).code, 'INVALID_MESSAGE')
      const done = (await ask(client, 'still there?')).at(-1)
      assert.equal(done.type, 'ai_response_complete')
    } finally {
      await client.close()
      await chat.stop()
    }
  })

  test('a second chat_message mid-answer is BUSY; cancel aborts the answer and closes the upstream connection', async () => {
    const chat = await startChat({ defaultModel: VENDOR_MODEL })
    const client = await connectChat(chat.url)
    try {
      await client.waitFor('connection_established')
      vendors.enqueue('openai', slowStream(40, 100))
      const mark = vendors.mark()
      client.send({ type: 'chat_message', id: 'slow', content: 'take your time' })
      await client.waitFor('ai_response_chunk')
      client.send({ type: 'chat_message', content: 'me too' })
      assert.equal((await client.waitFor('error')).code, 'BUSY')
      client.send({ type: 'cancel' })
      const error = await client.waitFor('ai_response_error')
      assert.equal(error.messageId, 'slow')
      assert.equal(error.code, 'ABORTED')
      await vendors.waitForClose({ since: mark, timeoutMs: 20_000 })
      // The unanswered question is not left in the history; the session takes the next message.
      const done = (await ask(client, 'quick one')).at(-1)
      assert.equal(done.fullResponse, 'echo: quick one')
      assert.deepEqual(lastUpstreamMessages().map((m) => m.content), ['quick one'])
    } finally {
      await client.close()
      await chat.stop()
    }
  })

  test('closing the socket mid-answer closes the upstream connection', async () => {
    const chat = await startChat({ defaultModel: VENDOR_MODEL })
    const client = await connectChat(chat.url)
    try {
      await client.waitFor('connection_established')
      vendors.enqueue('openai', slowStream(40, 100))
      const mark = vendors.mark()
      client.send({ type: 'chat_message', content: 'long answer please' })
      await client.waitFor('ai_response_chunk')
      await client.close()
      await vendors.waitForClose({ since: mark, timeoutMs: 20_000 })
      await waitUntil(() => chat.chat.sessionCount() === 0, 'the session to end')
    } finally {
      await chat.stop()
    }
  })

  test('a reconnect with ?sessionId= resumes the history, trimmed to maxMessages', async () => {
    const chat = await startChat({ defaultModel: VENDOR_MODEL, history: { maxMessages: 3 } })
    let client = await connectChat(chat.url)
    try {
      const { sessionId } = await client.waitFor('connection_established')
      await ask(client, 'one')
      await ask(client, 'two')
      assert.deepEqual(lastUpstreamMessages().map((m) => m.content), ['one', 'echo: one', 'two'])
      client.send({ type: 'change_model', model: MOCK_MODEL })
      await client.waitFor('model_changed')
      client.send({ type: 'change_model', model: VENDOR_MODEL })
      await client.waitFor('model_changed')
      await client.close()

      client = await connectChat(`${chat.url}?sessionId=${sessionId}`)
      const resumed = await client.waitFor('connection_established')
      assert.equal(resumed.sessionId, sessionId)
      assert.equal(resumed.model, VENDOR_MODEL)
      // [echo: one, two, echo: two] trimmed to 3 never starts on an answer.
      assert.deepEqual(resumed.history, [{ role: 'user', content: 'two' }, { role: 'assistant', content: 'echo: two' }])
      await ask(client, 'three')
      assert.deepEqual(lastUpstreamMessages().map((m) => m.content), ['two', 'echo: two', 'three'])

      const other = await connectChat(`${chat.url}?sessionId=${randomUUID()}`)
      assert.deepEqual((await other.waitFor('connection_established')).history, [])
      await other.close()
    } finally {
      await client.close()
      await chat.stop()
    }
  })

  test('a session belongs to its user: another user asking for its id gets a new session', async () => {
    const chat = await startChat({ user: (req) => req.headers['x-user'] })
    try {
      const ann = await connectChat(chat.url, { headers: { 'x-user': 'ann' } })
      const { sessionId } = await ann.waitFor('connection_established')
      await ask(ann, 'my secret plans')
      await ann.close()
      const bob = await connectChat(`${chat.url}?sessionId=${sessionId}`, { headers: { 'x-user': 'bob' } })
      const bobs = await bob.waitFor('connection_established')
      assert.notEqual(bobs.sessionId, sessionId)
      assert.deepEqual(bobs.history, [])
      await ask(bob, 'overwrite?')
      await bob.close()
      const again = await connectChat(`${chat.url}?sessionId=${sessionId}`, { headers: { 'x-user': 'ann' } })
      const resumed = await again.waitFor('connection_established')
      assert.equal(resumed.sessionId, sessionId)
      assert.equal(resumed.history[0].content, 'my secret plans')
      await again.close()
    } finally {
      await chat.stop()
    }
  })

  test('authenticate refuses the upgrade with 401', async () => {
    const chat = await startChat({ authenticate: async (req) => req.headers.authorization === 'Bearer good' })
    try {
      assert.equal(await refusedUpgradeStatus(chat.url), 401)
      assert.equal(await refusedUpgradeStatus(chat.url, { headers: { authorization: 'Bearer bad' } }), 401)
      const client = await connectChat(chat.url, { headers: { authorization: 'Bearer good' } })
      await client.waitFor('connection_established')
      await client.close()
    } finally {
      await chat.stop()
    }
  })

  test('typing reaches the same user\'s other sessions only', async () => {
    const chat = await startChat({ user: (req) => req.headers['x-user'] })
    const a = await connectChat(chat.url, { headers: { 'x-user': 'ann' } })
    const b = await connectChat(chat.url, { headers: { 'x-user': 'ann' } })
    const c = await connectChat(chat.url, { headers: { 'x-user': 'bob' } })
    try {
      await Promise.all([a, b, c].map((x) => x.waitFor('connection_established')))
      a.send({ type: 'typing_start' })
      assert.deepEqual(await b.waitFor('user_typing'), { type: 'user_typing', userId: 'ann', isTyping: true, timestamp: b.messages.at(-1).timestamp })
      a.send({ type: 'typing_stop' })
      assert.equal((await b.waitFor('user_typing')).isTyping, false)
      // Anything sent to c for a's typing would arrive before the answer to this frame.
      c.send('{bad')
      await c.waitFor('error')
      assert.ok(!c.messages.some((m) => m.type === 'user_typing'))
      assert.ok(!a.messages.some((m) => m.type === 'user_typing'))
    } finally {
      await Promise.all([a, b, c].map((x) => x.close()))
      await chat.stop()
    }
  })

  test('a client that stops reading pauses the upstream read instead of buffering the answer', async () => {
    const maxBufferedBytes = 256 * 1024
    const chat = await startChat({ defaultModel: VENDOR_MODEL, maxBufferedBytes })
    const client = await connectChat(chat.url)
    try {
      await client.waitFor('connection_established')
      const word = 'x'.repeat(64 * 1024)
      const chunks = 300 // ~19 MiB of answer, far more than the socket buffers hold
      vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks, text: (i) => `${i}:${word} ` }).split(/(?<=\n\n)/) })
      client.ws._socket.pause()
      client.send({ type: 'chat_message', content: 'a flood' })
      const [serverSide] = chat.chat.webSocketServer.clients
      // Wait until the server has filled the client's buffers and paused, then watch it for a while.
      let maxSeen = 0
      await waitUntil(() => serverSide.bufferedAmount > maxBufferedBytes, 'the client buffer to fill')
      for (let i = 0; i < 100; i++) {
        maxSeen = Math.max(maxSeen, serverSide.bufferedAmount)
        await sleep(5)
      }
      // One chunk may go out after the threshold was last checked.
      assert.ok(maxSeen <= maxBufferedBytes + 2 * word.length, `buffered ${maxSeen} bytes for a slow client`)
      client.ws._socket.resume()
      const done = await client.waitFor('ai_response_complete', 120_000)
      assert.equal(done.fullResponse.length, Array.from({ length: chunks }, (_, i) => `${i}:${word} `).join('').length)
    } finally {
      await client.close()
      await chat.stop()
    }
  })

  test('history in Redis: another process resumes the session', async () => {
    const keyPrefix = `fgtest:chat:${randomUUID()}:`
    const history = { redisUrl: REDIS_URL, keyPrefix, ttlSeconds: 600 }
    const chat = await startChat({ defaultModel: VENDOR_MODEL, history })
    const redis = new Redis(REDIS_URL)
    const child = spawn(process.execPath, [new URL('./helpers/chat-process.mjs', import.meta.url).pathname], {
      env: { ...process.env, FG_CHAT_CONFIG: JSON.stringify({ ...history, openaiBaseUrl: vendors.openaiBaseUrl, models: [VENDOR_MODEL] }) },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      let client = await connectChat(chat.url)
      const { sessionId } = await client.waitFor('connection_established')
      await ask(client, 'remember me')
      await client.close()
      const ttl = await redis.ttl(keyPrefix + sessionId)
      assert.ok(ttl > 0 && ttl <= 600, `ttl ${ttl}`)

      const [line] = await once(child.stdout.setEncoding('utf8'), 'data')
      const { port } = JSON.parse(line)
      client = await connectChat(`ws://127.0.0.1:${port}/ws/chat?sessionId=${sessionId}`)
      const resumed = await client.waitFor('connection_established')
      assert.equal(resumed.sessionId, sessionId)
      assert.deepEqual(resumed.history.map((m) => m.content), ['remember me', 'echo: remember me'])
      assert.equal((await ask(client, 'and now?')).at(-1).fullResponse, 'echo: and now?')
      assert.deepEqual(lastUpstreamMessages().map((m) => m.content), ['remember me', 'echo: remember me', 'and now?'])
      await client.close()
    } finally {
      child.kill('SIGTERM')
      if (child.exitCode === null) await once(child, 'exit')
      const keys = await redis.keys(`${keyPrefix}*`)
      if (keys.length) await redis.del(...keys)
      await redis.quit()
      await chat.stop()
    }
  })
})

// ------------------------------------------------------------------------------------------------ SSE

/** Reads a Server-Sent Events response, parsing each `data:` line as JSON. */
async function openEvents(url) {
  const controller = new AbortController()
  const res = await fetch(url, { signal: controller.signal })
  const events = []
  const waiters = new Set()
  let cursor = 0
  const pump = (async () => {
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      for await (const bytes of res.body) {
        buffer += decoder.decode(bytes, { stream: true })
        let end
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          for (const line of frame.split('\n')) if (line.startsWith('data: ')) events.push(JSON.parse(line.slice(6)))
          for (const w of [...waiters]) w()
        }
      }
    } catch {
      // aborted by close()
    }
  })()
  return {
    res,
    events,
    waitFor(type, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (let i = cursor; i < events.length; i++) {
            if (events[i].type === type) {
              cursor = i + 1
              waiters.delete(check)
              clearTimeout(timer)
              return resolve(events[i])
            }
          }
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`no ${type} event within ${timeoutMs}ms`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    async close() {
      controller.abort()
      await pump
    },
  }
}

describe('sseChat', () => {
  let server, base, router
  before(async () => {
    const app = express()
    router = sseChat({ gateway: newGateway(), defaultModel: MOCK_MODEL, models: [MOCK_MODEL, VENDOR_MODEL, 'nowhere/none'], heartbeatMs: 50 })
    app.use('/events', router)
    server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    base = `http://127.0.0.1:${server.address().port}/events`
  })
  after(async () => {
    router.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  const post = (path, body) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  test('connected, heartbeats and a streamed answer', async () => {
    const channel = await openEvents(`${base}?clientId=alice`)
    try {
      assert.equal(channel.res.status, 200)
      assert.match(channel.res.headers.get('content-type'), /^text\/event-stream/)
      const connected = await channel.waitFor('connected')
      assert.equal(connected.clientId, 'alice')
      assert.match(connected.timestamp, ISO)
      await channel.waitFor('heartbeat')
      await channel.waitFor('heartbeat')

      const accepted = await post('/alice', { message: 'Stream it' })
      assert.equal(accepted.status, 202)
      const { requestId } = await accepted.json()
      assert.equal((await channel.waitFor('processing_start')).requestId, requestId)
      const complete = await channel.waitFor('response_complete')
      assert.equal(complete.requestId, requestId)
      const chunks = channel.events.filter((e) => e.type === 'response_chunk' && e.requestId === requestId)
      assert.ok(chunks.length > 5)
      assert.equal(chunks.map((e) => e.chunk).join(''), complete.fullResponse)
      assert.match(complete.fullResponse, /answering "Stream it"/)
      assert.ok(complete.usage.totalTokens > 0)
      assert.equal(typeof complete.costUsd, 'number')

      const failing = await post('/alice', { message: 'x', model: 'nowhere/none' })
      const failed = await channel.waitFor('error')
      assert.equal(failed.requestId, (await failing.json()).requestId)
      assert.equal(failed.code, 'NOT_FOUND')

      assert.equal((await post('/alice', { nothing: true })).status, 400)
    } finally {
      await channel.close()
    }
  })

  test('a batch of 5 with one failing item is reported in order', async () => {
    const channel = await openEvents(`${base}?clientId=batcher`)
    try {
      await channel.waitFor('connected')
      const requests = ['a', 'b', 'c', 'd', 'e'].map((id) => ({ id, message: `item ${id}` }))
      requests[2].model = 'nowhere/none'
      const accepted = await post('/batcher/batch', { requests })
      assert.equal(accepted.status, 202)
      const { batchId } = await accepted.json()
      assert.deepEqual(await channel.waitFor('batch_start'), { type: 'batch_start', batchId, totalRequests: 5, timestamp: channel.events.find((e) => e.type === 'batch_start').timestamp })
      await channel.waitFor('batch_complete')
      const items = channel.events.filter((e) => e.type.startsWith('batch_item_'))
      assert.deepEqual(items.map((e) => [e.type, e.requestId, e.index]), [
        ['batch_item_complete', 'a', 0],
        ['batch_item_complete', 'b', 1],
        ['batch_item_error', 'c', 2],
        ['batch_item_complete', 'd', 3],
        ['batch_item_complete', 'e', 4],
      ])
      assert.equal(items[2].code, 'NOT_FOUND')
      assert.match(items[4].response, /answering "item e"/)
      assert.ok(items.every((e) => e.batchId === batchId))
    } finally {
      await channel.close()
    }
  })

  test('an unknown client gets 404 JSON; a client that leaves is cleaned up and its call aborted', async () => {
    const missing = await post('/nobody', { message: 'hi' })
    assert.equal(missing.status, 404)
    assert.equal((await missing.json()).error.code, 'NOT_FOUND')
    assert.equal((await post('/nobody/batch', { requests: [{ id: 1, message: 'x' }] })).status, 404)

    const channel = await openEvents(`${base}?clientId=leaver`)
    await channel.waitFor('connected')
    vendors.enqueue('openai', slowStream(40, 100))
    const mark = vendors.mark()
    assert.equal((await post('/leaver', { message: 'slow', model: VENDOR_MODEL })).status, 202)
    await channel.waitFor('response_chunk')
    await channel.close()
    await vendors.waitForClose({ since: mark, timeoutMs: 20_000 })
    await waitUntil(() => router.clientCount() === 0, 'the SSE client to be cleaned up')
    assert.equal((await post('/leaver', { message: 'hi' })).status, 404)
  })
})

test('the SSE example (npm run example:sse) streams an answer offline', async () => {
  const example = await startExample('example:sse', { HEARTBEAT_MS: '100' })
  try {
    assert.match(example.output(), /no OPENAI_API_KEY/)
    const channel = await openEvents(`${example.url}?clientId=demo`)
    try {
      await channel.waitFor('connected')
      await channel.waitFor('heartbeat')
      const res = await fetch(`${example.url}/demo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'Hi SSE' }) })
      assert.equal(res.status, 202)
      assert.match((await channel.waitFor('response_complete')).fullResponse, /answering "Hi SSE"/)
    } finally {
      await channel.close()
    }
  } finally {
    assert.equal(await example.stop(), 0)
  }
})

test('ferrogate/realtime loads with require as well as import', () => {
  const require = createRequire(import.meta.url)
  const cjs = require('ferrogate/realtime')
  assert.equal(cjs.attachChat, attachChat)
  assert.equal(cjs.sseChat, sseChat)
})
