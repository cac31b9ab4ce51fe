// The official `openai` npm client against an Express app with ferrogate's openaiRouter, over
// the loopback mock vendors: chat, streams with usage, tools, JSON mode, and errors raised as
// the client's own classes.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, test } from 'node:test'

import OpenAI from 'openai'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { Gateway } = require('../index.js')
const { openaiRouter } = require('../lib/express.js')

const CLIENT_KEY = 'client-key-123'
const UPSTREAM_KEY = 'sk-upstream-secret-abcdef'
let mock
let gateway
let server
let baseURL
let client

before(async () => {
  mock = await startMockVendors()
  gateway = new Gateway({
    providers: {
      openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: UPSTREAM_KEY, models: ['gpt-4o-mini'] },
    },
    defaultProvider: 'openai',
    maxRetries: 0,
  })
  const app = express()
  app.use('/v1', openaiRouter(gateway, { keys: (key) => key === CLIENT_KEY, log: false }))
  server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  baseURL = `http://127.0.0.1:${server.address().port}/v1`
  client = new OpenAI({ apiKey: CLIENT_KEY, baseURL, maxRetries: 0 })
})

after(async () => {
  server?.closeAllConnections?.()
  await new Promise((resolve) => server?.close(resolve) ?? resolve())
  await gateway?.close()
  await mock?.close()
})

const lastUpstreamBody = () => mock.requests.at(-1).body
const hello = [{ role: 'user', content: 'hello' }]

test('chat: a plain model name goes to the default provider and the OpenAI fields are mapped', async () => {
  const completion = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'system', content: 'be brief' }, ...hello],
    temperature: 0.5,
    top_p: 0.9,
    stop: 'END',
    max_completion_tokens: 50,
    user: 'end-user-1',
    metadata: { tenant: 'acme' },
  })
  assert.equal(completion.object, 'chat.completion')
  assert.match(completion.id, /^chatcmpl-/)
  assert.equal(completion.model, 'gpt-4o-mini')
  assert.equal(completion.choices[0].message.role, 'assistant')
  assert.equal(completion.choices[0].message.content, 'echo: hello')
  assert.equal(completion.choices[0].finish_reason, 'stop')
  assert.deepEqual(
    [completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens],
    [10, 5, 15],
  )
  const upstream = lastUpstreamBody()
  assert.equal(upstream.model, 'gpt-4o-mini')
  assert.equal(upstream.temperature, 0.5)
  assert.equal(upstream.top_p, 0.9)
  // An OpenAI-kind target receives the client's own body (same-protocol fidelity).
  assert.equal(upstream.stop, 'END')
  assert.equal(upstream.max_completion_tokens ?? upstream.max_tokens, 50)
  // A key function that answers true makes the key (hashed) the caller's identity: the body's
  // `user` cannot choose whose limits and budget the call spends.
  assert.match(upstream.user, /^key:[0-9a-f]{24}$/)
  assert.ok(!upstream.user.includes(CLIENT_KEY))
  assert.equal(mock.requests.at(-1).headers.authorization, `Bearer ${UPSTREAM_KEY}`)
})

test('stream with include_usage: role delta first, content deltas, finish chunk, usage chunk, [DONE]', async () => {
  const stream = await client.chat.completions.create({
    model: 'openai/gpt-4o-mini',
    messages: hello,
    stream: true,
    stream_options: { include_usage: true },
  })
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id))
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null })
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')
  assert.equal(text, 'echo: hello')
  const finish = chunks.at(-2)
  assert.equal(finish.choices[0].finish_reason, 'stop')
  const usage = chunks.at(-1)
  assert.deepEqual(usage.choices, [])
  assert.equal(usage.usage.total_tokens, 15)
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null))
  assert.equal(lastUpstreamBody().stream, true)

  // The raw wire: every event is one `data:` line, the last is [DONE].
  const raw = await fetch(`${baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: hello, stream: true }),
  })
  assert.equal(raw.status, 200)
  assert.match(raw.headers.get('content-type'), /^text\/event-stream/)
  const events = (await raw.text()).split('\n\n').filter(Boolean)
  assert.equal(events.at(-1), 'data: [DONE]')
  assert.ok(events.every((e) => e.startsWith('data: ') && !e.includes('\n')))
  assert.ok(!events.some((e) => e.includes('"usage"')), 'no usage without include_usage')
})

test('tool calls: definitions and tool messages go upstream, calls come back (JSON and stream)', async () => {
  mock.enqueue('openai', { fixture: 'openai/response-tool-call.json' })
  const tools = [
    {
      type: 'function',
      function: { name: 'get_current_weather', description: 'weather', parameters: { type: 'object', properties: { location: { type: 'string' } } } },
    },
  ]
  const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, tools, tool_choice: 'auto' })
  const message = completion.choices[0].message
  assert.equal(completion.choices[0].finish_reason, 'tool_calls')
  assert.equal(message.content, null)
  assert.equal(message.tool_calls[0].id, 'call_8fxy20OEu9ulvvaa5b5CzVA4')
  assert.equal(message.tool_calls[0].type, 'function')
  assert.equal(message.tool_calls[0].function.name, 'get_current_weather')
  assert.deepEqual(JSON.parse(message.tool_calls[0].function.arguments), { location: 'Boston, MA', unit: 'fahrenheit' })
  assert.equal(lastUpstreamBody().tools[0].function.name, 'get_current_weather')
  assert.equal(lastUpstreamBody().tool_choice, 'auto')

  // The vendor's own answer is relayed, fields ferrogate does not model included.
  assert.deepEqual(message.annotations, [])
  // The answer to the call goes back as a tool message (the strict fake vendor refuses the
  // response-only `annotations` field on a request message, so it is left out).
  const { annotations, ...assistant } = message
  await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [...hello, assistant, { role: 'tool', tool_call_id: message.tool_calls[0].id, content: '72F' }],
    tools,
    tool_choice: { type: 'function', function: { name: 'get_current_weather' } },
  })
  const sent = lastUpstreamBody()
  assert.equal(sent.messages.at(-1).role, 'tool')
  assert.equal(sent.messages.at(-1).tool_call_id, message.tool_calls[0].id)
  assert.equal(sent.messages.at(-2).tool_calls[0].function.name, 'get_current_weather')
  assert.equal(sent.tool_choice.function.name, 'get_current_weather')

  // Streamed: tool_call deltas with index/id/type/function, assembled by the client's helper.
  mock.enqueue('openai', { fixture: 'openai/stream-tool-call.sse' })
  const runner = client.chat.completions.stream({ model: 'gpt-4o-mini', messages: hello, tools })
  const chunks = []
  runner.on('chunk', (chunk) => chunks.push(chunk))
  const final = await runner.finalChatCompletion()
  const call = final.choices[0].message.tool_calls[0]
  assert.equal(call.id, 'call_4XzlGBLtUe9dy3GVNV4jhq7h')
  assert.equal(call.function.name, 'get_weather')
  assert.doesNotThrow(() => JSON.parse(call.function.arguments))
  assert.equal(final.choices[0].finish_reason, 'tool_calls')
  const firstToolDelta = chunks.find((c) => c.choices[0]?.delta?.tool_calls)
  assert.deepEqual(Object.keys(firstToolDelta.choices[0].delta.tool_calls[0]).sort(), ['function', 'id', 'index', 'type'])
})

test('JSON mode and json_schema response formats', async () => {
  mock.enqueue('openai', { fixture: 'openai/response-json-mode.json' })
  const completion = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'answer in JSON' }],
    response_format: { type: 'json_object' },
  })
  assert.doesNotThrow(() => JSON.parse(completion.choices[0].message.content))
  assert.deepEqual(lastUpstreamBody().response_format, { type: 'json_object' })

  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }
  await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'a city' }],
    response_format: { type: 'json_schema', json_schema: { name: 'city', schema, strict: true } },
  })
  const sent = lastUpstreamBody().response_format
  assert.equal(sent.type, 'json_schema')
  assert.equal(sent.json_schema.name, 'city')
  assert.deepEqual(sent.json_schema.schema, schema)
})

test('errors raise the client own classes: 429 with retry-after, 401, 404, 400', async () => {
  mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '7' } })
  const limited = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello }).catch((e) => e)
  assert.ok(limited instanceof OpenAI.RateLimitError, `got ${limited?.constructor?.name}: ${limited?.message}`)
  assert.equal(limited.status, 429)
  assert.equal(limited.headers.get('retry-after'), '7')
  assert.equal(limited.error.type, 'rate_limit_error')

  // The same for a stream: the error comes before any SSE byte, with its status.
  mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '3' } })
  const limitedStream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true }).catch((e) => e)
  assert.ok(limitedStream instanceof OpenAI.RateLimitError)

  const before = mock.requests.length
  const stranger = new OpenAI({ apiKey: 'wrong-key', baseURL, maxRetries: 0 })
  const refused = await stranger.chat.completions.create({ model: 'gpt-4o-mini', messages: hello }).catch((e) => e)
  assert.ok(refused instanceof OpenAI.AuthenticationError)
  assert.equal(refused.status, 401)
  assert.ok(!JSON.stringify(refused.error).includes('wrong-key'), 'the key is not echoed')
  const refusedList = await stranger.models.list().catch((e) => e)
  assert.ok(refusedList instanceof OpenAI.AuthenticationError)
  assert.equal(mock.requests.length, before, 'nothing reached the upstream')

  mock.enqueue('openai', { fixture: 'openai/error-404-model-not-found.json' })
  const missing = await client.chat.completions.create({ model: 'gpt-9', messages: hello }).catch((e) => e)
  assert.ok(missing instanceof OpenAI.NotFoundError)
  const unknownUrl = await client.get('/nothing-here').catch((e) => e)
  assert.ok(unknownUrl instanceof OpenAI.NotFoundError)
  assert.equal(unknownUrl.error.code, 'unknown_url')

  const bad = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).catch((e) => e)
  assert.ok(bad instanceof OpenAI.BadRequestError)
  assert.equal(bad.error.type, 'invalid_request_error')
  assert.equal(typeof bad.error.message, 'string')
  assert.ok('param' in bad.error && 'code' in bad.error)
})

test('unknown models without a default provider are 404 NotFoundError', async () => {
  const strict = new Gateway({ providers: { openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: UPSTREAM_KEY } }, maxRetries: 0 })
  const app = express()
  app.use('/v1', openaiRouter(strict, { log: false }))
  const local = app.listen(0, '127.0.0.1')
  await once(local, 'listening')
  try {
    const open = new OpenAI({ apiKey: 'anything', baseURL: `http://127.0.0.1:${local.address().port}/v1`, maxRetries: 0 })
    const missing = await open.chat.completions.create({ model: 'gpt-4o-mini', messages: hello }).catch((e) => e)
    assert.ok(missing instanceof OpenAI.NotFoundError)
    assert.equal(missing.error.code, 'model_not_found')
  } finally {
    local.closeAllConnections()
    local.close()
    await strict.close()
  }
})

test('GET /models lists the gateway models in OpenAI list shape', async () => {
  const page = await client.models.list()
  const ids = page.data.map((m) => m.id)
  assert.deepEqual(ids, ['openai/gpt-4o-mini'])
  assert.equal(page.data[0].object, 'model')
  assert.equal(page.data[0].owned_by, 'openai')
})

test('a client that disconnects mid-stream stops the upstream request', async () => {
  const since = mock.mark()
  mock.enqueue('openai', { sse: Array.from({ length: 200 }, (_, i) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`), delayMs: 20 })
  const controller = new AbortController()
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true }, { signal: controller.signal })
  let received = 0
  try {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) received++
      if (received === 2) controller.abort()
    }
  } catch (error) {
    assert.ok(error instanceof OpenAI.APIUserAbortError || error.name === 'AbortError', String(error))
  }
  // The router saw the client leave and cancelled the gateway call, which closed the upstream.
  await mock.waitForClose({ since })
  assert.equal(received, 2)
})

test('a gateway-like object without the native front door is refused (no second encoder in JS)', () => {
  const wrapper = { chat: (r) => gateway.chat(r), streamEvents: (r) => gateway.streamEvents(r), models: () => gateway.models() }
  assert.throws(() => openaiRouter(wrapper), /needs a ferrogate Gateway/)
})
