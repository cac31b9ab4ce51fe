// Anthropic Messages ingress: the official @anthropic-ai/sdk (and Python `anthropic` when installed)
// against `ferrogate serve`, with the mock provider, an OpenAI-kind and a Gemini-kind vendor fake
// behind it. Every request is translated; what each vendor fake received is asserted.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'

import Anthropic from '@anthropic-ai/sdk'
import { fakeCountTokens, startMockVendors } from './helpers/mock-vendors.mjs'
import { ENGINES, startServe as startServeOn, stopServe } from './helpers/serve-engines.mjs'

const run = promisify(execFile)
const UPSTREAM_KEY = 'sk-upstream-messages-secret-313'
const CLIENT_KEY = 'vk-messages-client-1'
// A 1×1 PNG.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

let mock
let dir

before(async () => {
  mock = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-messages-'))
})

after(async () => {
  await mock?.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

function startServe(name, { keys = true, engine = 'native' } = {}) {
  return startServeOn({
    engine,
    file: path.join(dir, `${name}-${engine}.json`),
    config: {
      providers: {
        openai: { kind: 'openai', baseUrl: '${OPENAI_URL}', apiKey: '${UPSTREAM_KEY}' },
        gemini: { kind: 'gemini', baseUrl: '${GEMINI_URL}', apiKey: '${UPSTREAM_KEY}' },
        anthropic: { kind: 'anthropic', baseUrl: '${ANTHROPIC_URL}', apiKey: '${UPSTREAM_KEY}' },
        mock: { kind: 'mock', mockChunkDelayMs: 0 },
      },
      // count_tokens goes to a route's first usable target.
      routes: {
        'claude-first': [{ provider: 'anthropic', model: 'claude-sonnet-4-5' }, { provider: 'openai', model: 'gpt-4o-mini' }],
        'gpt-first': [{ provider: 'openai', model: 'gpt-4o-mini' }, { provider: 'anthropic', model: 'claude-sonnet-4-5' }],
      },
      maxRetries: 0,
      ...(keys ? { keys: [{ key: '${CLIENT_KEY}', user: 'svc-a', dailyTokenQuota: 1000000 }] } : {}),
    },
    env: { OPENAI_URL: mock.openaiBaseUrl, GEMINI_URL: mock.geminiBaseUrl, ANTHROPIC_URL: mock.anthropicBaseUrl, UPSTREAM_KEY, CLIENT_KEY },
  })
}

const openaiChunk = (delta, finish = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-t', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
const geminiToolAnswer = {
  candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] }, finishReason: 'STOP', index: 0 }],
  usageMetadata: { promptTokenCount: 20, candidatesTokenCount: 8, totalTokenCount: 28 },
  modelVersion: 'gemini-2.0-flash',
}

// What each target needs to answer with a get_weather call, and what it received.
const TARGETS = [
  {
    name: 'mock',
    model: 'mock/mock-1',
    textOf: (prompt) => new RegExp(prompt),
    // The mock provider calls a forced tool with an instance of its input_schema (a string is its
    // property's name: docs/API.md, "The mock provider").
    toolRequest: { tool_choice: { type: 'tool', name: 'get_weather' } },
    toolInput: () => ({ city: 'city' }),
    queueToolCall() {},
    lastBody: () => null,
  },
  {
    name: 'openai',
    model: 'openai/gpt-4o-mini',
    textOf: (prompt) => new RegExp(`^echo: ${prompt}$`),
    toolRequest: {},
    toolInput: () => ({ city: 'Paris' }),
    queueToolCall(stream) {
      if (stream) {
        mock.enqueue('openai', {
          sse: [
            openaiChunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '' } }] }),
            openaiChunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
            openaiChunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
            openaiChunk({}, 'tool_calls'),
          ],
        })
      } else {
        mock.enqueue('openai', {
          body: {
            id: 'chatcmpl-t', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
            choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }, finish_reason: 'tool_calls' }],
            usage: { prompt_tokens: 20, completion_tokens: 8, total_tokens: 28 },
          },
        })
      }
    },
    lastBody: () => mock.requests.filter((r) => r.vendor === 'openai').at(-1).body,
  },
  {
    name: 'gemini',
    model: 'gemini/gemini-2.0-flash',
    textOf: (prompt) => new RegExp(`^echo: ${prompt}$`),
    toolRequest: {},
    toolInput: () => ({ city: 'Paris' }),
    queueToolCall(stream) {
      mock.enqueue('gemini', stream ? { sse: [`data: ${JSON.stringify(geminiToolAnswer)}\r\n\r\n`] } : { body: geminiToolAnswer })
    },
    lastBody: () => mock.requests.filter((r) => r.vendor === 'gemini').at(-1).body,
  },
]

for (const engine of ENGINES) describe(`Anthropic Messages through ferrogate serve (${engine})`, () => {
  let running
  let client
  before(async () => {
    running = await startServe('messages', { engine })
    client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: running.url, maxRetries: 0 })
  })
  after(() => stopServe(running))

  for (const target of TARGETS) {
    test(`${target.name}: messages.create with system, stop_sequences and metadata`, async () => {
      const message = await client.messages.create({
        model: target.model,
        max_tokens: 64,
        system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: 'hello there' }],
        stop_sequences: ['END'],
        metadata: { user_id: 'body-user' },
        top_k: 5,
      })
      assert.match(message.id, /^msg_/)
      assert.equal(message.type, 'message')
      assert.equal(message.role, 'assistant')
      assert.equal(message.model, target.model)
      assert.equal(message.content.length, 1)
      assert.equal(message.content[0].type, 'text')
      assert.match(message.content[0].text, target.textOf('hello there'))
      assert.equal(message.stop_reason, 'end_turn')
      assert.equal(message.stop_sequence, null)
      assert.ok(message.usage.input_tokens > 0 && message.usage.output_tokens > 0)
      const body = target.lastBody()
      if (target.name === 'openai') {
        assert.deepEqual(body.messages[0], { role: 'system', content: 'Be brief.' })
        assert.deepEqual(body.stop, ['END'])
        assert.equal(body.user, 'svc-a', "the key's identity, not the body's user_id")
        assert.equal(body.max_tokens ?? body.max_completion_tokens, 64)
      }
      if (target.name === 'gemini') {
        assert.deepEqual(body.systemInstruction.parts, [{ text: 'Be brief.' }])
        assert.deepEqual(body.generationConfig.stopSequences, ['END'])
      }
    })

    test(`${target.name}: messages.stream text, every event in order`, async () => {
      const stream = client.messages.stream({ model: target.model, max_tokens: 64, messages: [{ role: 'user', content: 'stream me please' }] })
      const types = []
      let text = ''
      stream.on('streamEvent', (event) => types.push(event.type))
      stream.on('text', (delta) => (text += delta))
      const final = await stream.finalMessage()
      assert.equal(final.content[0].text, text)
      assert.match(text, target.textOf('stream me please'))
      assert.equal(final.stop_reason, 'end_turn')
      assert.ok(final.usage.input_tokens > 0 && final.usage.output_tokens > 0, JSON.stringify(final.usage))
      const squeezed = types.filter((t, i) => t !== 'ping' && t !== types[i - 1])
      assert.deepEqual(squeezed, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'])

      // The SDK hides pings: the raw bytes show every event, each `event:` naming its data's type.
      const raw = await fetch(`${running.url}/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({ model: target.model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'stream me please' }] }),
      })
      assert.equal(raw.headers.get('content-type'), 'text/event-stream; charset=utf-8')
      const frames = (await raw.text()).split('\n\n').filter(Boolean).map((frame) => {
        const [event, data, ...rest] = frame.split('\n')
        assert.deepEqual(rest, [])
        assert.equal(JSON.parse(data.slice('data: '.length)).type, event.slice('event: '.length))
        return event.slice('event: '.length)
      })
      assert.deepEqual(frames.filter((t, i) => t !== frames[i - 1]), ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'])
    })

    for (const streamed of [false, true]) {
      test(`${target.name}: a tool_use → tool_result round trip (${streamed ? 'stream' : 'JSON'})`, async () => {
        const prompt = 'weather in Paris'
        const request = { model: target.model, max_tokens: 64, tools: [WEATHER_TOOL], ...target.toolRequest, messages: [{ role: 'user', content: prompt }] }
        target.queueToolCall(streamed)
        const first = streamed ? await client.messages.stream(request).finalMessage() : await client.messages.create(request)
        assert.equal(first.stop_reason, 'tool_use')
        const call = first.content.find((block) => block.type === 'tool_use')
        assert.ok(call, JSON.stringify(first.content))
        assert.equal(call.name, 'get_weather')
        assert.deepEqual(call.input, target.toolInput(prompt))
        if (target.name === 'openai') assert.equal(target.lastBody().tools[0].function.name, 'get_weather')

        const second = {
          model: target.model,
          max_tokens: 64,
          tools: [WEATHER_TOOL],
          // The mock calls an offered tool unless the conversation ends with a tool result; here a user's
          // text follows the result, so it is told to answer in text.
          ...(target.name === 'mock' ? { tool_choice: { type: 'none' } } : {}),
          messages: [
            { role: 'user', content: prompt },
            { role: 'assistant', content: first.content },
            { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: [{ type: 'text', text: 'sunny, 21 C' }] }, { type: 'text', text: 'thanks' }] },
          ],
        }
        const answer = streamed ? await client.messages.stream(second).finalMessage() : await client.messages.create(second)
        assert.equal(answer.stop_reason, 'end_turn')
        assert.match(answer.content[0].text, target.textOf('thanks'))
        const body = target.lastBody()
        if (target.name === 'openai') {
          assert.deepEqual(body.messages.find((m) => m.role === 'tool'), { role: 'tool', tool_call_id: call.id, content: 'sunny, 21 C' })
          assert.equal(body.messages.find((m) => m.role === 'assistant').tool_calls[0].id, call.id)
        }
        if (target.name === 'gemini') {
          const response = body.contents.flatMap((c) => c.parts).find((p) => p.functionResponse)
          assert.equal(response.functionResponse.name, 'get_weather')
          assert.match(JSON.stringify(response.functionResponse.response), /sunny, 21 C/)
        }
      })
    }

    test(`${target.name}: an image block`, async () => {
      const message = await client.messages.create({
        model: target.model,
        max_tokens: 64,
        messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }, { type: 'text', text: 'what is this' }] }],
      })
      assert.match(message.content[0].text, target.textOf('what is this'))
      const body = target.lastBody()
      if (target.name === 'openai') {
        const parts = body.messages.at(-1).content
        assert.deepEqual(parts.find((p) => p.type === 'image_url').image_url.url, `data:image/png;base64,${PNG}`)
      }
      if (target.name === 'gemini') {
        const inline = body.contents.at(-1).parts.find((p) => p.inlineData ?? p.inline_data)
        assert.deepEqual(inline.inlineData ?? inline.inline_data, { mimeType: 'image/png', data: PNG })
      }
    })

    test(`${target.name}: messages.countTokens is counted by ferrogate (the vendor is not asked)`, async () => {
      const mark = mock.requests.length
      const small = await client.messages.countTokens({ model: target.model, messages: [{ role: 'user', content: 'hi' }] })
      const large = await client.messages.countTokens({
        model: target.model,
        system: 'You are a weather assistant who answers in one sentence.',
        tools: [WEATHER_TOOL],
        messages: [{ role: 'user', content: 'What is the weather like in Paris today, and should I take an umbrella?' }],
      })
      assert.ok(Number.isInteger(small.input_tokens) && small.input_tokens > 0, JSON.stringify(small))
      assert.ok(large.input_tokens > small.input_tokens + 20, `${small.input_tokens} < ${large.input_tokens}`)
      assert.deepEqual(mock.requests.slice(mark), [], 'no vendor request')
    })
  }

  const COUNTED = {
    system: 'You are a weather assistant who answers in one sentence.',
    tools: [WEATHER_TOOL],
    messages: [{ role: 'user', content: 'What is the weather like in Paris today, and should I take an umbrella?' }],
    thinking: { type: 'enabled', budget_tokens: 1024 },
  }
  const countTokensAsked = (mark) => mock.requests.slice(mark).filter((r) => r.api === 'count_tokens')

  test('anthropic target: messages.countTokens asks Anthropic with the renamed model and the beta header, and answers its count', async () => {
    const mark = mock.requests.length
    const counted = await client.messages.countTokens(
      { model: 'anthropic/claude-sonnet-4-5', ...COUNTED },
      { headers: { 'anthropic-beta': 'token-efficient-tools-2025-02-19' } },
    )
    const [asked, ...more] = countTokensAsked(mark)
    assert.equal(more.length, 0)
    assert.equal(asked.path, '/v1/messages/count_tokens')
    assert.deepEqual(asked.body, { model: 'claude-sonnet-4-5', ...COUNTED }, 'the client body, only the model renamed')
    assert.equal(asked.headers['anthropic-beta'], 'token-efficient-tools-2025-02-19')
    assert.equal(asked.headers['x-api-key'], UPSTREAM_KEY, 'the provider key, never the client key')
    assert.equal(counted.input_tokens, fakeCountTokens(asked.body), "the vendor's count")

    // The same request for another target is ferrogate's own count, which differs.
    const local = await client.messages.countTokens({ model: 'openai/gpt-4o-mini', ...COUNTED })
    assert.notEqual(local.input_tokens, counted.input_tokens)
    assert.equal(countTokensAsked(mark).length, 1)
  })

  test("count_tokens for a route alias asks its first usable target's vendor", async () => {
    const mark = mock.requests.length
    const viaRoute = await client.messages.countTokens({ model: 'claude-first', ...COUNTED })
    const [asked, ...more] = countTokensAsked(mark)
    assert.equal(more.length, 0)
    assert.equal(asked.body.model, 'claude-sonnet-4-5')
    assert.equal(viaRoute.input_tokens, fakeCountTokens(asked.body))
    const local = await client.messages.countTokens({ model: 'gpt-first', ...COUNTED })
    assert.equal(countTokensAsked(mark).length, 1, 'a route whose first target is openai is counted locally')
    assert.notEqual(local.input_tokens, viaRoute.input_tokens)
  })

  test("anthropic target: count_tokens' vendor errors come back in Anthropic's shape, without the provider key", async () => {
    mock.enqueue('anthropic', {
      status: 400,
      body: { type: 'error', error: { type: 'invalid_request_error', message: `prompt is too long (key ${UPSTREAM_KEY})` } },
    })
    const error = await client.messages.countTokens({ model: 'anthropic/claude-sonnet-4-5', ...COUNTED }).then(
      () => assert.fail('resolved'),
      (e) => e,
    )
    assert.ok(error instanceof Anthropic.BadRequestError, String(error))
    assert.equal(error.status, 400)
    assert.equal(error.error.type, 'error')
    assert.equal(error.error.error.type, 'invalid_request_error')
    assert.match(error.error.error.message, /prompt is too long/)
    assert.match(error.requestID ?? error.headers?.get?.('request-id') ?? '', /^req_/)
    assert.ok(!JSON.stringify(error.error).includes(UPSTREAM_KEY), JSON.stringify(error.error))

    // The vendor's own validation (count_tokens takes no max_tokens) reaches the client the same way.
    const refused = await client.messages.countTokens({ model: 'anthropic/claude-sonnet-4-5', max_tokens: 10, ...COUNTED }).then(
      () => assert.fail('resolved'),
      (e) => e,
    )
    assert.ok(refused instanceof Anthropic.BadRequestError, String(refused))
    // (the gateway's redaction takes any `…tokens: value` shape for a secret, so the message reads `max_tokens: [REDACTED] inputs…`)
    assert.match(refused.error.error.message, /max_tokens: .*inputs are not permitted/)
  })

  test('a Claude Code shaped request (beta endpoint, system turn after the user turn, server tool) is translated', async () => {
    // What Claude Code sends: POST /v1/messages?beta=true with betas, cached system blocks, a role: "system" message
    // with its own output_config after the user turn, a deferred tool, a server tool, thinking and context management.
    const stream = client.beta.messages.stream({
      model: 'openai/gpt-4o-mini',
      max_tokens: 64,
      betas: ['claude-code-20250219', 'interleaved-thinking-2025-05-14'],
      system: [
        { type: 'text', text: 'First.', cache_control: { type: 'ephemeral' } },
        { type: 'text', text: 'Second.', cache_control: { type: 'ephemeral' } },
      ],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'hi', cache_control: { type: 'ephemeral' } }] },
        { role: 'system', content: 'Third.', output_config: { effort: 'low' } },
      ],
      tools: [
        { ...WEATHER_TOOL, input_schema: { $schema: 'https://json-schema.org/draft/2020-12/schema', ...WEATHER_TOOL.input_schema } },
        { name: 'later', input_schema: { type: 'object' }, defer_loading: true },
        { type: 'web_search_20250305', name: 'web_search' },
      ],
      metadata: { user_id: JSON.stringify({ device_id: 'd', session_id: 's' }) },
      thinking: { type: 'adaptive' },
      output_config: { effort: 'high' },
      context_management: { edits: [] },
      something_unmodelled: true,
    })
    const final = await stream.finalMessage()
    assert.equal(final.content[0].text, 'echo: hi')
    const request = mock.requests.filter((r) => r.vendor === 'openai').at(-1)
    assert.deepEqual(request.body.messages, [{ role: 'system', content: 'First.\n\nSecond.\n\nThird.' }, { role: 'user', content: 'hi' }])
    assert.deepEqual(request.body.tools.map((t) => t.function.name), ['get_weather', 'later'])
    assert.equal(request.body.stream, true)
  })

  test('an anthropic target receives unmodelled fields and anthropic-beta as sent, and thinking comes back signed', async () => {
    const thinking = { type: 'thinking', thinking: 'The user wants a greeting.', signature: 'EqQBCkYIBRgCKkD+sig/0==' }
    mock.enqueue('anthropic', {
      body: {
        id: 'msg_native1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [thinking, { type: 'text', text: 'Hello!' }],
        stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 6 },
      },
    })
    const contextManagement = { edits: [{ type: 'clear_tool_uses_20250919', keep: { type: 'tool_uses', value: 3 } }] }
    const message = await client.messages.create(
      { model: 'anthropic/claude-sonnet-4-5', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, context_management: contextManagement, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'anthropic-beta': 'context-management-2025-06-27' } },
    )
    const upstream = mock.requests.filter((r) => r.vendor === 'anthropic').at(-1)
    assert.deepEqual(upstream.body.context_management, contextManagement, 'the unmodelled field reached the vendor unchanged')
    assert.equal(upstream.body.model, 'claude-sonnet-4-5', 'only the model is renamed')
    assert.equal(upstream.headers['anthropic-beta'], 'context-management-2025-06-27')
    assert.equal(upstream.headers['x-api-key'], UPSTREAM_KEY, 'the provider key, never the client key')
    assert.deepEqual(message.content[0], thinking, 'the thinking block and its signature come back unchanged')
    assert.equal(message.content[1].text, 'Hello!')

    // Streamed: the vendor's events are relayed, signature_delta included.
    const event = (data) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`
    mock.enqueue('anthropic', {
      sse: [
        event({ type: 'message_start', message: { id: 'msg_native2', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } } }),
        event({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }),
        event({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: thinking.thinking } }),
        event({ type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: thinking.signature } }),
        event({ type: 'content_block_stop', index: 0 }),
        event({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } }),
        event({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Hello!' } }),
        event({ type: 'content_block_stop', index: 1 }),
        event({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 6 } }),
        event({ type: 'message_stop' }),
      ],
    })
    const stream = client.messages.stream(
      { model: 'anthropic/claude-sonnet-4-5', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, context_management: contextManagement, messages: [{ role: 'user', content: 'hi' }] },
      { headers: { 'anthropic-beta': 'context-management-2025-06-27' } },
    )
    const final = await stream.finalMessage()
    const streamed = mock.requests.filter((r) => r.vendor === 'anthropic').at(-1)
    assert.equal(streamed.body.stream, true)
    assert.deepEqual(streamed.body.context_management, contextManagement)
    assert.equal(streamed.headers['anthropic-beta'], 'context-management-2025-06-27')
    assert.deepEqual(final.content[0], thinking)
    assert.equal(final.content[1].text, 'Hello!')
  })

  test('each error class the SDK maps, with request-id and retry-after', async () => {
    const sent = mock.requests.length
    const bad = await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'foo' }] }] }).catch((e) => e)
    assert.ok(bad instanceof Anthropic.BadRequestError, String(bad))
    assert.deepEqual(bad.error.error, { type: 'invalid_request_error', message: "messages[0].content[0].type: unknown block type 'foo'" })
    assert.match(bad.requestID, /^req_/)
    assert.equal(bad.error.request_id, bad.requestID)
    const noMax = await client.messages.create({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.ok(noMax instanceof Anthropic.BadRequestError)
    assert.equal(noMax.error.error.message, 'max_tokens: is required')
    const raw = await fetch(`${running.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json' }, body: '{"model":' })
    assert.equal(raw.status, 400)
    assert.equal((await raw.json()).error.message, 'the request body ended before its JSON was complete (line 1, column 9)')
    const doc = await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'x' } }] }] }).catch((e) => e)
    assert.ok(doc instanceof Anthropic.BadRequestError)
    assert.match(doc.error.error.message, /^messages\[0\]\.content\[0\] \(a 'document' block\) is not supported by the 'openai' provider this call went to: only a provider that speaks the client's protocol natively/)
    const huge = await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(20 * 1024 * 1024) }] }).catch((e) => e)
    assert.ok(huge instanceof Anthropic.ContentTooLargeError, String(huge))
    assert.equal(huge.error.error.type, 'request_too_large')
    assert.equal(mock.requests.length, sent, 'nothing invalid reached a vendor')

    const stranger = new Anthropic({ apiKey: 'vk-nope', baseURL: running.url, maxRetries: 0 })
    const unauthorized = await stranger.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.ok(unauthorized instanceof Anthropic.AuthenticationError, String(unauthorized))
    assert.equal(unauthorized.error.error.type, 'authentication_error')

    const unknown = await client.messages.create({ model: 'nowhere/model', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.ok(unknown instanceof Anthropic.NotFoundError, String(unknown))
    assert.equal(unknown.error.error.type, 'not_found_error')

    mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '2' } })
    const limited = await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.ok(limited instanceof Anthropic.RateLimitError, String(limited))
    assert.equal(limited.headers.get('retry-after'), '2')
    assert.equal(limited.error.error.type, 'rate_limit_error')

    mock.enqueue('gemini', { fixture: 'gemini/error-503-unavailable.json' })
    const overloaded = await client.messages.create({ model: 'gemini/gemini-2.0-flash', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.ok(overloaded instanceof Anthropic.OverloadedError, String(overloaded))
    assert.equal(overloaded.status, 529)
    assert.equal(overloaded.error.error.type, 'overloaded_error')

    // Before a stream's first event an error keeps its status; after it, it is an `error` event.
    mock.enqueue('gemini', { fixture: 'gemini/error-503-unavailable.json' })
    const refused = await client.messages.stream({ model: 'gemini/gemini-2.0-flash', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).finalMessage().catch((e) => e)
    assert.ok(refused instanceof Anthropic.OverloadedError, String(refused))
    mock.enqueue('openai', { sse: [openaiChunk({ role: 'assistant', content: 'partial ' })], endWithoutTerminator: true })
    let partial = ''
    const broken = client.messages.stream({ model: 'openai/gpt-4o-mini', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] })
    broken.on('text', (delta) => (partial += delta))
    const midstream = await broken.finalMessage().catch((e) => e)
    assert.ok(midstream instanceof Anthropic.APIError, String(midstream))
    assert.equal(midstream.error.error.type, 'api_error')
    assert.equal(partial, 'partial ')
    assert.ok(!running.output.includes(UPSTREAM_KEY) && !running.output.includes(CLIENT_KEY))
  })

  test('a client that leaves mid-stream stops the upstream request', async () => {
    const since = mock.mark()
    mock.enqueue('openai', { sse: Array.from({ length: 200 }, (_, i) => openaiChunk({ content: `t${i} ` })), delayMs: 20 })
    const controller = new AbortController()
    const stream = await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 500, stream: true, messages: [{ role: 'user', content: 'long' }] }, { signal: controller.signal })
    let received = 0
    try {
      for await (const event of stream) {
        if (event.type === 'content_block_delta') received++
        if (received === 2) controller.abort()
      }
    } catch {
      // the client's own abort
    }
    await mock.waitForClose({ since })
    assert.equal(received, 2)
  })

  test('Python anthropic client', async (t) => {
    const script = `
import json, sys, anthropic
client = anthropic.Anthropic(api_key=sys.argv[2], base_url=sys.argv[1], max_retries=0)
out = {}
m = client.messages.create(model="openai/gpt-4o-mini", max_tokens=32, messages=[{"role": "user", "content": "from python"}])
out["text"] = m.content[0].text
with client.messages.stream(model="gemini/gemini-2.0-flash", max_tokens=32, messages=[{"role": "user", "content": "python stream"}]) as s:
    out["streamed"] = "".join(s.text_stream)
    out["stop"] = s.get_final_message().stop_reason
out["tokens"] = client.messages.count_tokens(model="mock/m", messages=[{"role": "user", "content": "count me"}]).input_tokens
try:
    client.messages.create(model="nowhere/x", max_tokens=5, messages=[{"role": "user", "content": "x"}])
except anthropic.NotFoundError as e:
    out["not_found"] = e.body["error"]["type"]
print(json.dumps(out))
`
    const probe = await run('python3', ['-c', 'import anthropic']).then(() => null, (e) => e)
    if (probe) {
      t.skip(`python3 with the anthropic package is not available (${String(probe.stderr || probe.message).trim().split('\n').at(-1)}); pip install anthropic to run this check`)
      return
    }
    const { stdout } = await run('python3', ['-c', script, running.url, CLIENT_KEY])
    assert.deepEqual(JSON.parse(stdout), { text: 'echo: from python', streamed: 'echo: python stream', stop: 'end_turn', tokens: JSON.parse(stdout).tokens, not_found: 'not_found_error' })
    assert.ok(JSON.parse(stdout).tokens > 0)
  })
})

for (const engine of ENGINES) test(`without keys, metadata.user_id is the caller's user (${engine})`, async () => {
  const running = await startServe('no-keys', { keys: false, engine })
  try {
    const client = new Anthropic({ apiKey: 'anything', baseURL: running.url, maxRetries: 0 })
    await client.messages.create({ model: 'openai/gpt-4o-mini', max_tokens: 16, metadata: { user_id: 'user-42' }, messages: [{ role: 'user', content: 'hi' }] })
    assert.equal(mock.requests.filter((r) => r.vendor === 'openai').at(-1).body.user, 'user-42')
  } finally {
    await stopServe(running)
  }
})
