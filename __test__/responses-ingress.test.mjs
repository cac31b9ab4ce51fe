// OpenAI Responses ingress (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`) on `ferrogate serve`, driven by
// the official `openai` client (npm, and Python when it is installed), with the mock provider and with an OpenAI
// Chat Completions, an Anthropic, a Gemini and an OpenAI Responses (`api: 'responses'`) vendor fake behind it; the response
// store in memory and shared through Redis by two serve processes.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'

import OpenAI from 'openai'
import { Redis } from 'ioredis'
import { responsesEvents, responsesItems, responsesObject, startMockVendors } from './helpers/mock-vendors.mjs'
import { ENGINES, startServe as startServeOn, stopServe } from './helpers/serve-engines.mjs'

const run = promisify(execFile)
const REDIS_URL = 'redis://127.0.0.1:6379/'
const PREFIX = `fgtest:responses:${process.pid}:${Math.random().toString(36).slice(2)}:`
let mock
let dir
const running = []

before(async () => {
  mock = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-responses-'))
})

after(async () => {
  await Promise.all(running.map(stopServe))
  await mock?.close()
  fs.rmSync(dir, { recursive: true, force: true })
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const keys = await redis.keys(`${PREFIX}*`)
    if (keys.length) await redis.del(...keys)
  } catch {
    // no Redis: nothing was written there
  } finally {
    redis.disconnect()
  }
})

function config(extra = {}) {
  return {
    providers: {
      mock: { kind: 'mock', mockChunkDelayMs: 0 },
      oai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-chat-fake' },
      ant: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-fake' },
      gem: { kind: 'gemini', baseUrl: mock.geminiBaseUrl, apiKey: 'gem-fake' },
      resp: { kind: 'openai', api: 'responses', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-resp-fake' },
    },
    maxRetries: 0,
    ...extra,
  }
}

async function startServe(options, engine = 'native') {
  const server = await startServeOn({ engine, file: path.join(dir, `config-${running.length}-${engine}.json`), config: options })
  running.push(server)
  server.baseURL = `${server.url}/v1`
  server.client = new OpenAI({ baseURL: server.baseURL, apiKey: 'unused', maxRetries: 0 })
  return server
}

const lastRequest = (vendor) => mock.requests.findLast((r) => r.vendor === vendor)

// Each provider behind serve: its model, the vendor fake that answers it, how to queue a tool call there, and
// where the tool result shows in what the vendor received.
const PROVIDERS = {
  mock: { model: 'mock/mock-1' },
  'openai chat': {
    model: 'oai/gpt-4o-mini',
    vendor: 'openai',
    queueToolCall(name, args, callId) {
      mock.enqueue('openai', { body: {
        id: 'chatcmpl-tool', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
        choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: callId, type: 'function', function: { name, arguments: args } }] }, finish_reason: 'tool_calls' }],
        usage: { prompt_tokens: 20, completion_tokens: 8, total_tokens: 28 },
      } })
    },
    toolResult: (body, callId) => body.messages.find((m) => m.role === 'tool' && m.tool_call_id === callId)?.content,
    texts: (body) => body.messages.map((m) => (typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text ?? '').join(''))),
  },
  anthropic: {
    model: 'ant/claude-sonnet-4-5',
    vendor: 'anthropic',
    queueToolCall(name, args, callId) {
      mock.enqueue('anthropic', { body: {
        id: 'msg_tool', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5',
        content: [{ type: 'tool_use', id: callId, name, input: JSON.parse(args) }], stop_reason: 'tool_use', stop_sequence: null,
        usage: { input_tokens: 20, output_tokens: 8 },
      } })
    },
    toolResult(body, callId) {
      const block = body.messages.flatMap((m) => (Array.isArray(m.content) ? m.content : [])).find((b) => b.type === 'tool_result' && b.tool_use_id === callId)
      return typeof block?.content === 'string' ? block.content : block?.content?.map((b) => b.text).join('')
    },
    texts: (body) => body.messages.map((m) => (typeof m.content === 'string' ? m.content : m.content.map((b) => b.text ?? '').join(''))),
  },
  gemini: {
    model: 'gem/gemini-2.5-flash',
    vendor: 'gemini',
    ownCallIds: false, // Gemini has no call ids: the gateway makes them
    queueToolCall(name, args) {
      mock.enqueue('gemini', { body: {
        candidates: [{ content: { role: 'model', parts: [{ functionCall: { name, args: JSON.parse(args) } }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: 20, candidatesTokenCount: 8, totalTokenCount: 28 }, modelVersion: 'gemini-2.5-flash',
      } })
    },
    toolResult(body) {
      const part = body.contents.flatMap((c) => c.parts).find((p) => p.functionResponse)
      return part?.functionResponse.response.result
    },
    texts: (body) => body.contents.map((c) => c.parts.map((p) => p.text ?? '').join('')),
  },
  'openai responses': {
    model: 'resp/gpt-5',
    vendor: 'responses',
    native: true,
    queueToolCall(name, args, callId) {
      mock.enqueue('responses', { body: responsesObject({ id: 'resp_up', output: [responsesItems.functionCall(name, args, callId)] }) })
    },
    toolResult: (body, callId) => body.input.find((i) => i.type === 'function_call_output' && i.call_id === callId)?.output,
    // Relayed as the client sent it: a string input stays a string.
    texts: (body) => (typeof body.input === 'string' ? [body.input] : body.input).map((i) => typeof i === 'string' ? i : (typeof i.content === 'string' ? i.content : (i.content ?? []).map((p) => p.text ?? '').join(''))),
  },
}

const WEATHER_TOOL = { type: 'function', name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: false }

describe('the Responses vendor fake, checked with the official client first', () => {
  test('responses.create and responses.stream read its JSON and its events', async () => {
    const client = new OpenAI({ baseURL: mock.openaiBaseUrl, apiKey: 'sk-direct', maxRetries: 0 })
    const whole = await client.responses.create({ model: 'gpt-5', input: 'direct hello' })
    assert.equal(whole.output_text, 'echo: direct hello')
    assert.equal(whole.usage.total_tokens, 15)
    mock.enqueue('responses', { sse: responsesEvents({ output: [responsesItems.message('Let me look.'), responsesItems.functionCall('get_weather', '{"city":"Rome"}', 'call_d')] }) })
    const stream = client.responses.stream({ model: 'gpt-5', input: 'weather?', tools: [WEATHER_TOOL] })
    const snapshots = []
    stream.on('response.function_call_arguments.delta', (event) => snapshots.push(event.snapshot))
    const final = await stream.finalResponse()
    assert.equal(final.output_text, 'Let me look.')
    assert.equal(final.output[1].arguments, '{"city":"Rome"}')
    assert.equal(snapshots.at(-1), '{"city":"Rome"}')
    await assert.rejects(client.responses.create({ model: 'gpt-5', input: [{ type: 'foo' }] }), (error) => error instanceof OpenAI.BadRequestError && error.param === 'input[0].type')
  })
})

for (const engine of ENGINES) describe(`ferrogate serve (${engine}): POST /v1/responses`, () => {
  let server
  before(async () => {
    server = await startServe(config(), engine)
  })

  for (const [label, provider] of Object.entries(PROVIDERS)) {
    describe(`with the ${label} provider`, () => {
      test('responses.create answers a response object', async () => {
        const response = await server.client.responses.create({ model: provider.model, input: 'hello there', instructions: 'be brief', metadata: { team: 'a' } })
        assert.equal(response.object, 'response')
        assert.match(response.id, /^resp_/)
        assert.equal(response.status, 'completed')
        // A same-protocol vendor's answer is relayed as it sent it, its own model name included.
        assert.equal(response.model, provider.native ? 'gpt-5' : provider.model)
        assert.equal(response.instructions, 'be brief')
        assert.deepEqual(response.metadata, { team: 'a' })
        assert.equal(response.output[0].type, 'message')
        if (provider.vendor) {
          assert.equal(response.output_text, 'echo: hello there')
          assert.equal(response.usage.input_tokens, 10)
          assert.equal(response.usage.output_tokens, 5)
          assert.equal(response.usage.total_tokens, 15)
          assert.equal(provider.texts(lastRequest(provider.vendor).body).at(-1), 'hello there')
        } else {
          assert.ok(response.output_text.length > 0)
          assert.ok(response.usage.total_tokens > 0)
        }
      })

      test('responses.stream sends the typed events in order and ends with response.completed', async () => {
        const stream = server.client.responses.stream({ model: provider.model, input: 'stream this please' })
        const events = []
        for await (const event of stream) events.push(event)
        const final = await stream.finalResponse()
        assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i))
        const types = events.map((e) => e.type)
        assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'])
        assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed'])
        const deltas = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')
        assert.equal(final.output_text, deltas)
        assert.equal(final.status, 'completed')
        assert.ok(final.usage.total_tokens > 0)
        if (provider.vendor) assert.equal(deltas, 'echo: stream this please')
      })

      test('a function call round trip with function_call_output', async () => {
        const callId = `call_${label.replace(/\W/g, '')}_1`
        provider.queueToolCall?.('get_weather', '{"city":"Paris"}', callId)
        const input = [{ role: 'user', content: 'Weather in Paris?' }]
        const first = await server.client.responses.create({
          model: provider.model, input, tools: [WEATHER_TOOL], tool_choice: provider.vendor ? 'auto' : { type: 'function', name: 'get_weather' },
        })
        const call = first.output.find((item) => item.type === 'function_call')
        assert.ok(call, JSON.stringify(first.output))
        assert.equal(call.name, 'get_weather')
        if (provider.vendor) {
          if (provider.ownCallIds !== false) assert.equal(call.call_id, callId)
          assert.deepEqual(JSON.parse(call.arguments), { city: 'Paris' })
        }
        const second = await server.client.responses.create({
          model: provider.model, tools: [WEATHER_TOOL],
          input: [...input, ...first.output, { type: 'function_call_output', call_id: call.call_id, output: '18C and sunny' }],
        })
        assert.equal(second.status, 'completed')
        assert.equal(second.output[0].type, 'message')
        if (provider.vendor) assert.equal(provider.toolResult(lastRequest(provider.vendor).body, call.call_id), '18C and sunny')
      })
    })
  }

  test('a streamed function call has its arguments events and one output_item.done per item', async () => {
    mock.enqueue('responses', { sse: responsesEvents({ id: 'resp_up2', output: [responsesItems.message('Checking.', 'msg_up'), responsesItems.functionCall('get_weather', '{"city":"Oslo"}', 'call_s1')] }) })
    const stream = server.client.responses.stream({ model: 'resp/gpt-5', input: 'Weather in Oslo?', tools: [WEATHER_TOOL] })
    const events = []
    for await (const event of stream) events.push(event)
    const final = await stream.finalResponse()
    const types = events.map((e) => e.type)
    assert.equal(types.filter((t) => t === 'response.output_item.done').length, 2)
    assert.ok(types.includes('response.function_call_arguments.delta'))
    const done = events.find((e) => e.type === 'response.function_call_arguments.done')
    assert.equal(done.arguments, '{"city":"Oslo"}')
    assert.equal(final.output[1].type, 'function_call')
    assert.equal(final.output[1].call_id, 'call_s1')
    assert.equal(final.output_text, 'Checking.')
    assert.equal(lastRequest('responses').body.stream, true)
  })

  test('a custom tool (lark grammar) becomes a function upstream and its call comes back as a custom_tool_call', async () => {
    const tools = [{ type: 'custom', name: 'apply_patch', description: 'Apply a patch', format: { type: 'grammar', syntax: 'lark', definition: 'start: /.+/' } }, { type: 'web_search' }]
    PROVIDERS['openai chat'].queueToolCall('apply_patch', JSON.stringify({ input: '*** Begin Patch\n*** End Patch' }), 'call_patch')
    const input = [{ role: 'developer', content: 'You are a coding agent.' }, { role: 'user', content: 'patch it' }]
    const stream = server.client.responses.stream({ model: 'oai/gpt-4o-mini', input, tools, store: false })
    const types = []
    for await (const event of stream) types.push(event.type)
    const first = await stream.finalResponse()
    assert.deepEqual(types.slice(2), ['response.output_item.added', 'response.custom_tool_call_input.delta', 'response.custom_tool_call_input.done', 'response.output_item.done', 'response.completed'])
    const call = first.output[0]
    assert.equal(call.type, 'custom_tool_call')
    assert.equal(call.name, 'apply_patch')
    assert.equal(call.input, '*** Begin Patch\n*** End Patch')
    const upstream = lastRequest('openai').body
    assert.equal(upstream.messages[0].role, 'system')
    assert.equal(upstream.messages[0].content, 'You are a coding agent.')
    assert.deepEqual(upstream.tools.map((t) => t.function.name), ['apply_patch'])
    assert.deepEqual(upstream.tools[0].function.parameters.required, ['input'])
    const second = await server.client.responses.create({
      model: 'oai/gpt-4o-mini', tools,
      input: [...input, call, { type: 'custom_tool_call_output', call_id: 'call_patch', output: 'Done!' }],
    })
    assert.equal(second.status, 'completed')
    const back = lastRequest('openai').body.messages
    assert.deepEqual(JSON.parse(back.at(-2).tool_calls[0].function.arguments), { input: '*** Begin Patch\n*** End Patch' })
    assert.deepEqual(back.at(-1), { role: 'tool', tool_call_id: 'call_patch', content: 'Done!' })
  })

  test('previous_response_id continues the conversation on another provider; GET and DELETE', async () => {
    const first = await server.client.responses.create({ model: 'ant/claude-sonnet-4-5', input: 'My name is Ada.' })
    const second = await server.client.responses.create({ model: 'oai/gpt-4o-mini', input: 'What is my name?', previous_response_id: first.id })
    assert.deepEqual(PROVIDERS['openai chat'].texts(lastRequest('openai').body), ['My name is Ada.', 'echo: My name is Ada.', 'What is my name?'])
    assert.equal(second.previous_response_id, first.id)
    const got = await server.client.responses.retrieve(second.id)
    assert.equal(got.id, second.id)
    assert.equal(got.output_text, 'echo: What is my name?')
    const deleted = await server.client.responses.delete(first.id)
    assert.deepEqual(deleted, { id: first.id, object: 'response.deleted', deleted: true })
    await assert.rejects(server.client.responses.retrieve(first.id), (error) => {
      assert.ok(error instanceof OpenAI.NotFoundError, String(error))
      assert.equal(error.error.message, `Response with id '${first.id}' not found.`)
      return true
    })
    await assert.rejects(server.client.responses.delete(first.id), OpenAI.NotFoundError)
    const before = mock.requests.length
    await assert.rejects(server.client.responses.create({ model: 'oai/gpt-4o-mini', input: 'x', previous_response_id: first.id }), (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError, String(error))
      assert.equal(error.param, 'previous_response_id')
      return true
    })
    assert.equal(mock.requests.length, before, 'nothing reached the vendor')
  })

  test('a streamed response is stored before its response.completed reaches the client', async () => {
    const stream = server.client.responses.stream({ model: 'resp/gpt-5', input: 'Streamed fact: the sky is green.' })
    const first = await stream.finalResponse()
    const next = await server.client.responses.create({ model: 'oai/gpt-4o-mini', input: 'What colour?', previous_response_id: first.id })
    assert.equal(next.status, 'completed')
    assert.deepEqual(PROVIDERS['openai chat'].texts(lastRequest('openai').body), ['Streamed fact: the sky is green.', 'echo: Streamed fact: the sky is green.', 'What colour?'])
    assert.equal((await server.client.responses.retrieve(first.id)).output_text, 'echo: Streamed fact: the sky is green.')
  })

  test('store: false keeps nothing', async () => {
    const response = await server.client.responses.create({ model: 'mock/mock-1', input: 'forget me', store: false })
    assert.equal(response.store, false)
    await assert.rejects(server.client.responses.retrieve(response.id), OpenAI.NotFoundError)
  })

  test('bad input is a 400 naming the field, and nothing reaches the vendor', async () => {
    const before = mock.requests.length
    const cases = [
      [{ model: 'oai/gpt-4o-mini', input: [{ role: 'user', content: 'hi' }, { type: 'foo' }] }, "input[1].type: unknown item type 'foo'", 'input[1].type'],
      [{ model: 'oai/gpt-4o-mini' }, 'input: you must provide an input', 'input'],
      [{ model: 'oai/gpt-4o-mini', input: 'x', tools: [null] }, 'tools[0]: expected an object, got null', 'tools[0]'],
    ]
    for (const [body, message, param] of cases) {
      const res = await fetch(`${server.baseURL}/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
      assert.equal(res.status, 400)
      assert.deepEqual(await res.json(), { error: { message, type: 'invalid_request_error', param, code: 'invalid_request' } })
    }
    const malformed = await fetch(`${server.baseURL}/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' })
    assert.equal(malformed.status, 400)
    assert.match((await malformed.json()).error.message, /not valid JSON/)
    assert.equal(mock.requests.length, before)
  })

  test('a body over 16 MB is a 413 in OpenAI\'s shape', async () => {
    const before = mock.requests.length
    const res = await fetch(`${server.baseURL}/responses`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'oai/gpt-4o-mini', input: 'x'.repeat(17 * 1024 * 1024) }),
    })
    assert.equal(res.status, 413)
    assert.equal((await res.json()).error.type, 'invalid_request_error')
    assert.equal(mock.requests.length, before)
  })

  test('a vendor failure after the stream began is an error event, then response.failed', async () => {
    const first = 'data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"partial"},"finish_reason":null}]}\n\n'
    mock.enqueue('openai', { sse: [first, 'data: {"id":"chatcmpl-cut"'], destroyAfter: 2 })
    const stream = await server.client.responses.create({ model: 'oai/gpt-4o-mini', input: 'break please', stream: true })
    const events = []
    for await (const event of stream) events.push(event)
    const types = events.map((e) => e.type)
    assert.ok(types.includes('response.output_text.delta'), types.join())
    assert.deepEqual(types.slice(-2), ['error', 'response.failed'])
    const failed = events.at(-1).response
    assert.equal(failed.status, 'failed')
    assert.ok(failed.error.message.length > 0)
    assert.ok(!failed.error.message.includes('sk-chat-fake'))
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i))
  })

  test('unknown fields are dropped when translating and hosted tools left out', async () => {
    const response = await server.client.responses.create({
      model: 'oai/gpt-4o-mini', input: 'hi', tools: [{ type: 'web_search' }, WEATHER_TOOL],
      text: { format: { type: 'text' }, verbosity: 'low' }, reasoning: { effort: 'low' }, include: ['reasoning.encrypted_content'],
      prompt_cache_key: 'k1', parallel_tool_calls: true, some_future_field: { a: 1 },
    })
    assert.equal(response.status, 'completed')
    const upstream = lastRequest('openai').body
    assert.equal(upstream.some_future_field, undefined)
    assert.deepEqual(upstream.tools.map((t) => t.function.name), ['get_weather'])
  })

  test("the Python openai client's responses.create and stream (skipped when the package is absent)", async (t) => {
    try {
      await run('python3', ['-c', 'import openai'])
    } catch {
      t.skip('Python package openai is not installed (pip install openai)')
      return
    }
    const script = `
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
r = client.responses.create(model="oai/gpt-4o-mini", input="from python")
assert r.output_text == "echo: from python", r.output_text
n = client.responses.create(model="oai/gpt-4o-mini", input="again", previous_response_id=r.id)
types = []
with client.responses.stream(model="resp/gpt-5", input="py stream") as stream:
    for event in stream:
        types.append(event.type)
    final = stream.get_final_response()
assert final.output_text == "echo: py stream", final.output_text
assert types[0] == "response.created" and types[-1] == "response.completed", types
assert client.responses.retrieve(n.id).id == n.id
print("ok")
`
    const { stdout } = await run('python3', ['-c', script, server.baseURL])
    assert.equal(stdout.trim(), 'ok')
  })
})

describe('two serve processes sharing the response store in Redis', () => {
  test('previous_response_id made on one process continues on the other; GET and DELETE from either', async (t) => {
    const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await probe.connect()
    } catch {
      t.skip('no Redis on 127.0.0.1:6379')
      return
    } finally {
      probe.disconnect()
    }
    const options = config({ responses: { redisUrl: REDIS_URL, prefix: PREFIX, ttlSeconds: 120 } })
    const [a, b] = await Promise.all([startServe(options), startServe(options)])
    const first = await a.client.responses.create({ model: 'oai/gpt-4o-mini', input: 'Remember 42.' })
    const second = await b.client.responses.create({ model: 'ant/claude-sonnet-4-5', input: 'What number?', previous_response_id: first.id })
    assert.deepEqual(PROVIDERS.anthropic.texts(lastRequest('anthropic').body), ['Remember 42.', 'echo: Remember 42.', 'What number?'])
    assert.equal((await a.client.responses.retrieve(second.id)).output_text, 'echo: What number?')
    const redis = new Redis(REDIS_URL)
    try {
      assert.equal(await redis.exists(`${PREFIX}{${first.id}}`), 1, 'hash-tagged key under the prefix')
      assert.ok((await redis.pttl(`${PREFIX}{${first.id}}`)) <= 120_000)
    } finally {
      redis.disconnect()
    }
    assert.deepEqual(await b.client.responses.delete(first.id), { id: first.id, object: 'response.deleted', deleted: true })
    await assert.rejects(a.client.responses.retrieve(first.id), OpenAI.NotFoundError)
    await b.client.responses.delete(second.id)
  })
})
