// The front door (src/ingress) served two ways: gatewayRouter in an Express 5 app and the
// native `ferrogate serve` engine, both in this process over the loopback mock vendors. The
// official `openai` client drives both against a mock, an OpenAI-, an Anthropic- and a
// Gemini-kind provider; the same request through both engines gives the same bytes; bad
// input is the protocol's 400/413 naming the field with nothing sent upstream; and the
// defects of the two old copies (quota races, uncharged cut-off streams, a spoofable
// identity, `tools: [null]`, a dropped `metadata`) stay fixed.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import OpenAI from 'openai'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { Gateway, KeyVault } = require('../index.js')
const { gatewayRouter, openaiRouter } = require('../lib/express.js')
const { startServe } = require('../lib/serve.js')

const CLIENT_KEY = 'vk-front-door-1'
let mock

const providers = () => ({
  mock: { kind: 'mock', models: ['demo'], mockChunkDelayMs: 0 },
  openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-fd-openai-secret', models: ['gpt-4o-mini'] },
  anthropic: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-fd-secret', models: ['claude-sonnet-4-5'] },
  gemini: { kind: 'gemini', baseUrl: mock.geminiBaseUrl, apiKey: 'AIza-fd-secret', models: ['gemini-2.5-flash'] },
})

async function listen(app) {
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return server
}

async function closeServer(server) {
  server.closeAllConnections?.()
  await new Promise((resolve) => server.close(resolve))
}

// An Express app with gatewayRouter at its root; a KeyVault with one key, quota `quota`.
async function startRouter({ quota, onCall, keys } = {}) {
  const gateway = new Gateway({ providers: providers(), maxRetries: 0, onCall })
  const vault = new KeyVault({ secret: 'front-door-test-secret' })
  vault.add('team-a', { provider: '', dailyTokenQuota: quota })
  vault.addVirtualKey(CLIENT_KEY, 'team-a')
  const app = express()
  app.get('/own-route', (req, res) => res.json({ own: true }))
  app.use(gatewayRouter(gateway, { keys: keys ?? vault, log: false }))
  const server = await listen(app)
  const url = `http://127.0.0.1:${server.address().port}`
  return {
    url,
    vault,
    gateway,
    async close() {
      await closeServer(server)
      await gateway.close()
    },
  }
}

async function startNativeServe({ quota } = {}) {
  const running = await startServe(
    { providers: providers(), maxRetries: 0, keys: [{ key: CLIENT_KEY, user: 'team-a', dailyTokenQuota: quota }] },
    { engine: 'native', host: '127.0.0.1', port: 0 },
  )
  return { url: running.url, close: () => running.close() }
}

const ENGINES = { router: startRouter, serve: startNativeServe }

before(async () => {
  mock = await startMockVendors()
})

after(async () => {
  await mock?.close()
})

const hello = [{ role: 'user', content: 'hello' }]
const TARGETS = ['mock/demo', 'openai/gpt-4o-mini', 'anthropic/claude-sonnet-4-5', 'gemini/gemini-2.5-flash']
const TOOL_FIXTURES = {
  'openai/gpt-4o-mini': ['openai', 'openai/response-tool-call.json'],
  'anthropic/claude-sonnet-4-5': ['anthropic', 'anthropic/response-tool-use.json'],
  'gemini/gemini-2.5-flash': ['gemini', 'gemini/response-tool-call.json'],
}
const weather = [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]

for (const [engine, start] of Object.entries(ENGINES)) {
  describe(`official openai client through ${engine}`, () => {
    let running
    let client
    before(async () => {
      running = await start({ quota: 10_000_000 })
      client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${running.url}/v1`, maxRetries: 0 })
    })
    after(() => running?.close())

    for (const model of TARGETS) {
      test(`${model}: chat JSON, a stream with include_usage, tools`, async () => {
        const completion = await client.chat.completions.create({ model, messages: hello })
        assert.equal(completion.object, 'chat.completion')
        assert.ok(completion.choices[0].message.content.length > 0)
        assert.ok(completion.usage.total_tokens > 0)

        const stream = await client.chat.completions.create({ model, messages: hello, stream: true, stream_options: { include_usage: true } })
        let text = ''
        let usage = null
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta?.content ?? ''
          if (chunk.usage) usage = chunk.usage
        }
        assert.ok(text.length > 0)
        assert.ok(usage && usage.total_tokens > 0, 'the last chunk carries usage')

        const fixture = TOOL_FIXTURES[model]
        if (fixture) {
          mock.enqueue(fixture[0], { fixture: fixture[1] })
          const called = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'weather in Paris?' }], tools: weather })
          assert.equal(called.choices[0].finish_reason, 'tool_calls')
          const call = called.choices[0].message.tool_calls[0]
          assert.equal(call.type, 'function')
          assert.equal(typeof JSON.parse(call.function.arguments), 'object')
        }
      })
    }

    test('bad input is a 400/413 naming the field, in OpenAI shape, and reaches no vendor', async () => {
      const before = mock.requests.length
      const post = (body, headers = {}) =>
        fetch(`${running.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...headers },
          body,
        })
      const cases = [
        [JSON.stringify({ model: 'openai/gpt-4o-mini', messages: hello, tools: [null] }), 400, 'tools[0] must be an object'],
        [JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: {} }] }), 400, 'messages[0].content must be a string or an array of parts'],
        [JSON.stringify({ model: 'openai/gpt-4o-mini', messages: hello, temperature: 'hot' }), 400, 'temperature must be a number (got a string)'],
        [JSON.stringify({ messages: hello }), 400, 'model is required'],
        [JSON.stringify({ model: 'openai/gpt-4o-mini' }), 400, 'messages is required'],
        [JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] }), 400, "type 'input_audio' is not supported"],
        [JSON.stringify({ model: 'anthropic/claude-sonnet-4-5', messages: hello, n: 2 }), 400, 'n is not supported'],
        ['{"model": "x", "messages": [', 400, 'the request body is not valid JSON'],
        ['x'.repeat(20 * 1024 * 1024), 413, 'larger than'],
      ]
      for (const [body, status, words] of cases) {
        const res = await post(body)
        const answer = await res.json()
        assert.equal(res.status, status, `${words}: ${JSON.stringify(answer)}`)
        assert.equal(answer.error.type, 'invalid_request_error')
        assert.ok('param' in answer.error && 'code' in answer.error)
        assert.ok(answer.error.message.includes(words), answer.error.message)
        assert.ok(!/line \d+ column|invalid type/.test(answer.error.message), answer.error.message)
      }
      // Another protocol's endpoint refuses in its own shape (Anthropic's, keyed by x-api-key).
      const messages = await fetch(`${running.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': CLIENT_KEY }, body: '{}' })
      assert.equal(messages.status, 400)
      const refused = await messages.json()
      assert.equal(refused.type, 'error')
      assert.equal(refused.error.type, 'invalid_request_error')
      assert.equal(mock.requests.length, before, 'nothing reached a vendor')
    })

    test('GET /v1/models answers in OpenAI shape, and in Anthropic shape with anthropic-version', async () => {
      const page = await client.models.list()
      assert.ok(page.data.some((m) => m.id === 'openai/gpt-4o-mini' && m.object === 'model'))
      const res = await fetch(`${running.url}/v1/models`, { headers: { 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' } })
      const list = await res.json()
      assert.equal(list.has_more, false)
      assert.equal(list.data[0].type, 'model')
      assert.equal(list.first_id, list.data[0].id)
    })

    test('a key quota holds against concurrent streams', async () => {
      const tight = await start({ quota: 10 })
      try {
        const tightClient = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${tight.url}/v1`, maxRetries: 0 })
        const outcomes = await Promise.all(
          Array.from({ length: 6 }, async () => {
            try {
              const stream = await tightClient.chat.completions.create({ model: 'mock/demo', messages: hello, stream: true })
              for await (const _ of stream);
              return 'served'
            } catch (error) {
              assert.ok(error instanceof OpenAI.RateLimitError, String(error))
              return 'refused'
            }
          }),
        )
        assert.equal(outcomes.filter((o) => o === 'served').length, 1, outcomes.join(','))
      } finally {
        await tight.close()
      }
    })
  })
}

test('the same request through gatewayRouter and serve gives the same bytes (ids and times masked)', async () => {
  const router = await startRouter({ quota: 1_000_000 })
  const serve = await startNativeServe({ quota: 1_000_000 })
  const mask = (text) => text.replace(/"id":"[^"]+"/g, '"id":"x"').replace(/"created":\d+/g, '"created":0')
  const read = async (url, body) => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return { status: res.status, type: res.headers.get('content-type'), text: mask(await res.text()) }
  }
  try {
    for (const body of [
      { model: 'mock/demo', messages: hello, stream: true, stream_options: { include_usage: true } },
      { model: 'mock/demo', messages: hello },
      { model: 'mock/demo', messages: hello, tools: [null] },
    ]) {
      const [viaRouter, viaServe] = await Promise.all([read(router.url, body), read(serve.url, body)])
      assert.deepEqual(viaRouter, viaServe)
    }
  } finally {
    await router.close()
    await serve.close()
  }
})

test('a stream cut off after its first chunks is charged its prompt and delivered output', async () => {
  const gateway = new Gateway({ providers: { slow: { kind: 'mock', models: ['demo'], mockChunkDelayMs: 30 } }, maxRetries: 0 })
  const vault = new KeyVault({ secret: 'cut-off-secret' })
  vault.add('team-a', { provider: '', dailyTokenQuota: 1_000_000 })
  vault.addVirtualKey(CLIENT_KEY, 'team-a')
  const app = express()
  app.use(gatewayRouter(gateway, { keys: vault, log: false }))
  const server = await listen(app)
  try {
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `http://127.0.0.1:${server.address().port}/v1`, maxRetries: 0 })
    const controller = new AbortController()
    const stream = await client.chat.completions.create(
      { model: 'slow/demo', messages: [{ role: 'user', content: 'tell me a long story about a lighthouse keeper' }], stream: true },
      { signal: controller.signal },
    )
    let chunks = 0
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content && ++chunks === 2) controller.abort()
      }
    } catch {
      // the client's own abort
    }
    let used = 0
    for (let i = 0; i < 100 && used === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      used = vault.checkQuota('team-a').usedTokens
    }
    assert.ok(used > 0, 'the cut-off stream was charged')
  } finally {
    await closeServer(server)
    await gateway.close()
  }
})

test('with a key function, the identity is the key (hashed), never the body user; metadata reaches onCall', async () => {
  const records = []
  const router = await startRouter({ keys: (key) => key === CLIENT_KEY, onCall: (record) => records.push(record) })
  try {
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${router.url}/v1`, maxRetries: 0 })
    await client.chat.completions.create({ model: 'mock/demo', messages: hello, user: 'victim', metadata: { team: 'search', ticket: '42' } })
    await new Promise((resolve) => setTimeout(resolve, 50))
    const record = records.at(-1)
    assert.notEqual(record.user, 'victim')
    assert.match(record.user, /^key:[0-9a-f]{24}$/)
    assert.deepEqual(record.metadata, { team: 'search', ticket: '42' })
    assert.equal(record.ingress, 'chat')
    // Every protocol names itself in the record; a translation's omissions are its warnings.
    const post = (route, body, headers = {}) =>
      fetch(`${router.url}/v1/${route}`, { method: 'POST', headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
    for (const [route, body, ingress] of [
      ['messages?beta=true', { model: 'mock/demo', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }, 'messages'],
      ['responses', { model: 'mock/demo', input: 'hi', tools: [{ type: 'web_search' }] }, 'responses'],
      ['embeddings', { model: 'mock/embed', input: ['hi'] }, 'embeddings'],
    ]) {
      const res = await post(route, body, route.startsWith('messages') ? { 'x-api-key': CLIENT_KEY } : {})
      assert.equal(res.status, 200, `${route}: ${await res.clone().text()}`)
      await res.arrayBuffer()
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(records.at(-1).ingress, ingress, route)
    }
    assert.ok(records.findLast((r) => r.ingress === 'responses').warnings?.length > 0, 'the hosted tool left out is a warning')
    // Other routes of the app are left alone; openaiRouter is the same router at /v1.
    assert.deepEqual(await (await fetch(`${router.url}/own-route`)).json(), { own: true })
    assert.throws(() => openaiRouter({ chat() {}, streamEvents() {} }), /needs a ferrogate Gateway/)
  } finally {
    await router.close()
  }
})

test('same-protocol fidelity: an OpenAI-kind target gets the body as sent and the client gets every field it answered', async () => {
  const records = []
  const router = await startRouter({ quota: 10_000_000, onCall: (record) => records.push(record) })
  try {
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: `${router.url}/v1`, maxRetries: 0 })
    const sent = {
      model: 'openai/gpt-4o-mini',
      messages: hello,
      n: 2,
      seed: 7,
      logprobs: true,
      top_logprobs: 2,
      frequency_penalty: 0.5,
      logit_bias: { 50256: -100 },
      service_tier: 'flex',
    }
    const answer = {
      id: 'chatcmpl-fidelity',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini-2024-07-18',
      system_fingerprint: 'fp_fidelity',
      service_tier: 'flex',
      choices: [0, 1].map((index) => ({
        index,
        message: { role: 'assistant', content: `choice ${index}`, refusal: null, annotations: [] },
        logprobs: { content: [{ token: 'choice', logprob: -0.1, bytes: [99], top_logprobs: [] }], refusal: null },
        finish_reason: 'stop',
      })),
      usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
    }
    mock.enqueue('openai', { body: answer })
    const completion = await client.chat.completions.create(sent)
    const upstream = mock.requests.at(-1).body
    for (const field of ['n', 'seed', 'logprobs', 'top_logprobs', 'frequency_penalty', 'logit_bias', 'service_tier']) {
      assert.deepEqual(upstream[field], sent[field], `${field} reached the vendor as sent`)
    }
    assert.equal(upstream.model, 'gpt-4o-mini', 'only the model is renamed')
    assert.equal(completion.choices.length, 2)
    assert.equal(completion.choices[1].message.content, 'choice 1')
    assert.equal(completion.choices[0].logprobs.content[0].token, 'choice')
    assert.equal(completion.system_fingerprint, 'fp_fidelity')
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(records.at(-1).usage.totalTokens, 13, 'usage is read from the relayed answer')
    assert.equal(records.at(-1).warnings, undefined, 'nothing was left out')

    // A stream is relayed event by event, every choice included, and still priced.
    mock.enqueue('openai', { fixture: 'openai/stream-n3-choices.sse' })
    const stream = await client.chat.completions.create({ model: 'openai/gpt-4o-mini', messages: hello, n: 3, stream: true, stream_options: { include_usage: true } })
    const indexes = new Set()
    let fingerprint
    for await (const chunk of stream) {
      for (const choice of chunk.choices) indexes.add(choice.index)
      fingerprint ??= chunk.system_fingerprint
    }
    assert.deepEqual([...indexes].sort(), [0, 1, 2])
    assert.equal(fingerprint, 'fp_b40fb1c6fb')
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(records.at(-1).usage.totalTokens, 121)

    // Another kind cannot give two choices: a 400 naming the field, nothing sent upstream.
    const before = mock.requests.length
    const refused = await client.chat.completions.create({ ...sent, model: 'anthropic/claude-sonnet-4-5' }).catch((e) => e)
    assert.ok(refused instanceof OpenAI.BadRequestError)
    assert.match(refused.message, /\bn is not supported/)
    assert.equal(mock.requests.length, before)
    // A field translation leaves out is named in the call record's warnings.
    await client.chat.completions.create({ model: 'mock/demo', messages: hello, seed: 7 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.ok(records.at(-1).warnings.some((w) => w.startsWith('seed ')), JSON.stringify(records.at(-1).warnings))
  } finally {
    await router.close()
  }
})

test('no second wire implementation: lib/ holds no OpenAI or Anthropic chunk encoder', async () => {
  const fs = await import('node:fs')
  const path = await import('node:path')
  const dir = new URL('../lib/', import.meta.url)
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.js') || n.endsWith('.mjs'))) {
    const text = fs.readFileSync(path.join(dir.pathname, name), 'utf8')
    for (const marker of ['chat.completion.chunk', 'content_block_delta', 'message_start', 'response.output_text.delta']) {
      assert.ok(!text.includes(marker), `${name} encodes ${marker}`)
    }
  }
})

test('gatewayRouter after express.json() still answers (the parsed body is handed over)', async () => {
  const gateway = new Gateway({ providers: { mock: { kind: 'mock', models: ['demo'], mockChunkDelayMs: 0 } } })
  const app = express()
  app.use(express.json())
  app.use(gatewayRouter(gateway, { log: false }))
  const server = await listen(app)
  try {
    const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${server.address().port}/v1`, maxRetries: 0 })
    const completion = await client.chat.completions.create({ model: 'mock/demo', messages: hello })
    assert.ok(completion.choices[0].message.content.length > 0)
  } finally {
    await closeServer(server)
    await gateway.close()
  }
})
