// How results travel from the native side to JS: one dispatch per wake-up carries the events
// of many calls, so each must reach its own caller, complete and in order; a stream runs only
// a bounded distance ahead of its consumer; an abandoned iterator cancels its call; a pending
// call keeps Node running and an idle gateway does not.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { after, before, describe, test } from 'node:test'

import { Gateway } from '../index.js'
import { generateOpenAIStream, startMockVendors } from './helpers/mock-vendors.mjs'

let vendors

before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

const gateway = () =>
  new Gateway({ maxRetries: 0, timeoutMs: 30_000, providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } } })
const ask = (extra = {}) => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...extra })

describe('delivery', { timeout: 60_000 }, () => {
  test('concurrent streams and chats each get their own events, complete and in order', async () => {
    // The built-in mock provider echoes the prompt, one word per event.
    const gw = new Gateway({ providers: { mock: { kind: 'mock', mockChunkDelayMs: 1 } } })
    const say = (i) => ({ model: 'mock/m', messages: [{ role: 'user', content: `call-${i}` }] })
    const calls = Array.from({ length: 60 }, async (_, i) => {
      const pieces = []
      let response
      if (i % 3 === 0) {
        for await (const event of gw.streamEvents(say(i))) {
          if (event.type === 'text') pieces.push(event.text)
          else if (event.type === 'done') response = event.response
        }
      } else if (i % 3 === 1) {
        response = await gw.stream(say(i), (text) => pieces.push(text))
      } else {
        response = await gw.chat(say(i))
      }
      return { i, pieces, response }
    })
    const requestIds = new Set()
    for (const { i, pieces, response } of await Promise.all(calls)) {
      assert.ok(response.content.includes(`"call-${i}"`), `call ${i} got its own answer: ${response.content}`)
      if (i % 3 !== 2) {
        assert.ok(pieces.length > 10)
        assert.equal(pieces.join(''), response.content)
      }
      requestIds.add(response.requestId)
    }
    assert.equal(requestIds.size, 60)
  })

  test('a consumer slower than the stream gets every event, in order', async () => {
    vendors.enqueue('openai', { sse: [generateOpenAIStream({ chunks: 3000 })] })
    let expected = 0
    for await (const event of gateway().streamEvents(ask())) {
      if (event.type !== 'text') continue
      assert.equal(event.text, `tok${expected} `)
      expected++
      // Yield to the event loop now and then, so deliveries pile up ahead of the consumer.
      if (expected % 100 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    assert.equal(expected, 3000)
  })

  test('a paused consumer stops the upstream read: buffering is bounded', async () => {
    // A server of its own, to count what the client has actually taken off the socket.
    const total = 4000
    const piece = 'x'.repeat(4000)
    let written = 0
    let finished = false
    const server = http.createServer(async (req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (let i = 0; i < total && !res.destroyed; i++) {
        const event = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] }
        await new Promise((resolve) => res.write(`data: ${JSON.stringify(event)}\n\n`, resolve))
        written++
      }
      finished = true
      res.end('data: [DONE]\n\n')
    })
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const gw = new Gateway({ maxRetries: 0, providers: { up: { kind: 'openai', apiKey: 'sk-test', baseUrl: `http://127.0.0.1:${server.address().port}/v1` } } })
      const iterator = gw.streamEvents({ model: 'up/m', messages: [{ role: 'user', content: 'hi' }] })[Symbol.asyncIterator]()
      assert.equal((await iterator.next()).value.type, 'text')
      // Nothing is consumed now; an unbounded buffer would let the server write all 16 MB.
      let last = -1
      while (written !== last) {
        last = written
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
      assert.ok(!finished && written < total, `the server wrote ${written} of ${total} events to a paused consumer`)
      await iterator.return()
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })

  test('an iterator dropped without being closed cancels its upstream request once collected', async () => {
    vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 500 }).split(/(?<=\n\n)/), delayMs: 20 })
    const since = vendors.mark()
    const gw = gateway()
    await (async () => {
      const iterator = gw.streamEvents(ask())[Symbol.asyncIterator]()
      assert.equal((await iterator.next()).value.type, 'text')
    })()
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc')
    const closed = vendors.waitForClose({ since, timeoutMs: 10_000 })
    for (let i = 0; i < 20; i++) {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await closed
  })

  test('a call in flight keeps Node running until it settles; an idle gateway does not', async () => {
    vendors.enqueue('openai', { delayMs: 300 })
    const script = `
      const { Gateway } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))})
      const gw = new Gateway({ providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: ${JSON.stringify(vendors.openaiBaseUrl)} } } })
      gw.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
        .then((r) => console.log('answered', r.content.length > 0), (e) => console.log('failed', e.code))
      new Gateway({ providers: { idle: { kind: 'mock' } } })
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    const [code, signal] = await new Promise((resolve) => child.on('exit', (c, s) => resolve([c, s])))
    clearTimeout(killer)
    assert.equal(signal, null, 'the process exited by itself (an idle gateway must not hold it)')
    assert.equal(code, 0)
    assert.equal(out.trim(), 'answered true')
  })
})
