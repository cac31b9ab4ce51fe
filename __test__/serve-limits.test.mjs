// `ferrogate serve`'s connection layer, on both engines: header, body and keep-alive timeouts
// (shortened here to 500 ms through the config's `server` object), the cap on open connections,
// and the bound on the model labels clients can create in the metrics. Raw sockets over loopback
// play the slow and silent clients; the upstream is the mock vendors.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { startServe } from '../lib/serve.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const TIMEOUT_MS = 500
// A connection the server should close after TIMEOUT_MS must be gone well within this.
const CLOSED_WITHIN_MS = 8_000

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(async () => {
  await vendors.close()
})

function config(server) {
  return {
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl, models: ['gpt-4o-mini'] } },
    defaultProvider: 'openai',
    maxRetries: 0,
    server,
  }
}

/** A raw connection to `url`; `closed` resolves when the server ends it. */
async function connect(url) {
  const { hostname, port } = new URL(url)
  const socket = net.connect(Number(port), hostname)
  socket.on('error', () => {})
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk) => (received += chunk))
  // 'close' comes after any 'error' (a reset is one way for the server to close).
  const closed = new Promise((resolve) => socket.once('close', () => resolve(received)))
  await once(socket, 'connect')
  return { socket, closed, received: () => received }
}

/** Resolves with what the server sent before closing, or rejects if it is still open after `ms`. */
async function closedWithin(connection, ms, what) {
  let timer
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([connection.closed, late])
  } finally {
    clearTimeout(timer)
  }
}

async function health(url) {
  const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5_000) })
  assert.equal(response.status, 200)
  assert.deepEqual(await response.json(), { status: 'ok' })
}

const partialHeaders = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appli'
const headersWithoutBody = 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model"'

for (const engine of ['native', 'node']) {
  describe(`serve (${engine}): connection limits`, () => {
    let running
    before(async () => {
      running = await startServe(
        config({ headersTimeoutMs: TIMEOUT_MS, bodyTimeoutMs: TIMEOUT_MS, keepAliveTimeoutMs: TIMEOUT_MS, maxConnections: 1000 }),
        { port: 0, engine, log: () => {} },
      )
    })
    after(async () => {
      await running.close()
    })

    test('with 300 half-sent requests open, /health answers; all 300 are closed after their timeout', async () => {
      const open = []
      for (let i = 0; i < 300; i++) {
        const connection = await connect(running.url)
        connection.socket.write(i % 2 ? partialHeaders : headersWithoutBody)
        open.push(connection)
      }
      await health(running.url)
      await Promise.all(open.map((c, i) => closedWithin(c, CLOSED_WITHIN_MS, `half-sent request ${i}`)))
    })

    test('partial headers are closed after headersTimeoutMs', async () => {
      const connection = await connect(running.url)
      connection.socket.write(partialHeaders)
      await closedWithin(connection, CLOSED_WITHIN_MS, 'partial headers')
    })

    test('a body that never completes is closed after bodyTimeoutMs', async () => {
      const connection = await connect(running.url)
      connection.socket.write(headersWithoutBody)
      const sent = await closedWithin(connection, CLOSED_WITHIN_MS, 'incomplete body')
      // Whatever the server said first, it was not a success.
      assert.ok(!/^HTTP\/1\.1 200/.test(sent), sent)
    })

    test('an idle kept-alive connection is closed after keepAliveTimeoutMs', async () => {
      const connection = await connect(running.url)
      connection.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
      while (!connection.received().includes('{"status":"ok"}')) await sleep(5)
      const sent = await closedWithin(connection, CLOSED_WITHIN_MS, 'idle keep-alive')
      assert.match(sent, /^HTTP\/1\.1 200/)
    })

    test('a slow but steady stream is not cut by the timeouts (they bound reading, not answering)', async () => {
      vendors.enqueue('openai', {
        sse: Array.from({ length: 8 }, (_, i) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`),
        delayMs: 200,
      })
      const response = await fetch(`${running.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'slow' }] }),
      })
      assert.equal(response.status, 200)
      const text = await response.text()
      assert.ok(text.includes('t7 '), text)
      assert.ok(text.includes('data: [DONE]'), text)
    })
  })

  describe(`serve (${engine}): maxConnections`, () => {
    test('a connection past the cap is closed at once; the ones open keep working', async () => {
      const running = await startServe(config({ maxConnections: 2, keepAliveTimeoutMs: 30_000 }), { port: 0, engine, log: () => {} })
      try {
        const first = await connect(running.url)
        const second = await connect(running.url)
        // Both are being served (a request on each answers).
        for (const c of [first, second]) c.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
        for (const c of [first, second]) while (!c.received().includes('{"status":"ok"}')) await sleep(5)
        const third = await connect(running.url)
        third.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
        const sent = await closedWithin(third, CLOSED_WITHIN_MS, 'the connection past the cap')
        assert.equal(sent, '', 'refused without an answer')
        // A slot freed is a slot usable again.
        first.socket.destroy()
        await first.closed
        await sleep(100)
        await health(running.url)
        second.socket.destroy()
      } finally {
        await running.close()
      }
    })
  })

  describe(`serve (${engine}): metric labels`, () => {
    test('200 invented model names through defaultProvider keep /metrics small; the overflow is counted', async () => {
      const running = await startServe(config(), { port: 0, engine, log: () => {} })
      try {
        const ask = (model) =>
          fetch(`${running.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
          }).then(async (response) => {
            assert.equal(response.status, 200, await response.clone().text())
            await response.arrayBuffer()
          })
        for (let i = 0; i < 200; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => ask(`invented-model-${i + j}`)))
        await ask('gpt-4o-mini')
        const text = running.gateway.metrics()
        const invented = new Set(text.match(/model="invented-model-\d+"/g))
        assert.ok(invented.size <= 32, `${invented.size} invented models have their own series`)
        assert.ok(invented.size > 0, 'the first unconfigured models keep their names')
        assert.match(text, /ferrogate_requests_total\{provider="openai",model="other",outcome="ok",code=""\} \d+/)
        // The configured model keeps its name even once past the limit.
        assert.match(text, /ferrogate_requests_total\{provider="openai",model="gpt-4o-mini",outcome="ok",code=""\} 1/)
        const overflow = 200 - invented.size
        assert.match(text, new RegExp(`ferrogate_model_label_overflow_total ${overflow}\\n`))
        assert.equal(running.gateway.stats().modelLabelOverflow, overflow)
        assert.ok(text.length < 100_000, `/metrics is ${text.length} bytes`)
      } finally {
        await running.close()
      }
    })
  })
}
