// One conversation — system prompt, a user turn with an image, a tool call, the tool's
// result, the final answer — against each mock vendor. The mock vendors validate every
// request as the real APIs do (roles, alternation, tool ids, auth header), so a mapping
// mistake fails here; the normalized results must be the same for all three.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

// A 1×1 PNG.
const PIXEL = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
const ANSWER = 'It is 18°C and sunny in Paris ☀️.'
const WEATHER_TOOL = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

let vendors
let gateway
before(async () => {
  vendors = await startMockVendors()
  gateway = new Gateway({
    maxRetries: 0,
    providers: {
      openai: { kind: 'openai', apiKey: 'k-openai-1234', baseUrl: vendors.openaiBaseUrl },
      anthropic: { kind: 'anthropic', apiKey: 'k-anthropic-1234', baseUrl: vendors.anthropicBaseUrl },
      gemini: { kind: 'gemini', apiKey: 'k-gemini-1234', baseUrl: vendors.geminiBaseUrl },
    },
  })
})
after(() => vendors.close())

/** The vendor's own wire answer for "call get_weather(Paris)" and for the final text. */
const replies = {
  openai: {
    toolCall: {
      id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o-mini',
      choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] } }],
      usage: { prompt_tokens: 120, completion_tokens: 15, total_tokens: 135 },
    },
    answer: {
      id: 'chatcmpl-2', object: 'chat.completion', model: 'gpt-4o-mini',
      choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: ANSWER } }],
      usage: { prompt_tokens: 160, completion_tokens: 12, total_tokens: 172 },
    },
  },
  anthropic: {
    toolCall: {
      id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', stop_reason: 'tool_use',
      content: [{ type: 'tool_use', id: 'toolu_abc', name: 'get_weather', input: { city: 'Paris' } }],
      usage: { input_tokens: 100, cache_read_input_tokens: 20, cache_creation_input_tokens: 0, output_tokens: 15 },
    },
    answer: {
      id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', stop_reason: 'end_turn',
      content: [{ type: 'text', text: ANSWER }],
      usage: { input_tokens: 160, output_tokens: 12 },
    },
  },
  gemini: {
    toolCall: {
      candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 120, candidatesTokenCount: 15, totalTokenCount: 135 },
      modelVersion: 'gemini-2.5-flash',
    },
    answer: {
      candidates: [{ content: { role: 'model', parts: [{ text: ANSWER }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 160, candidatesTokenCount: 12, totalTokenCount: 172 },
      modelVersion: 'gemini-2.5-flash',
    },
  },
}
const models = { openai: 'openai/gpt-4o-mini', anthropic: 'anthropic/claude-haiku-4-5', gemini: 'gemini/gemini-2.5-flash' }

async function converse(vendor) {
  const messages = [
    { role: 'system', content: 'You are a terse weather assistant.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is the weather where this photo was taken? It is Paris.' },
        { type: 'image', data: PIXEL, mimeType: 'image/png' },
      ],
    },
  ]
  vendors.enqueue(vendor, { status: 200, body: replies[vendor].toolCall })
  const first = await gateway.chat({ model: models[vendor], messages, tools: [WEATHER_TOOL], toolChoice: 'auto', maxTokens: 256 })
  const firstRequest = vendors.requests.at(-1)
  messages.push({ role: 'assistant', content: first.content, toolCalls: first.toolCalls })
  for (const call of first.toolCalls) {
    messages.push({ role: 'tool', toolCallId: call.id, content: JSON.stringify({ tempC: 18, sky: 'sunny' }) })
  }
  vendors.enqueue(vendor, { status: 200, body: replies[vendor].answer })
  const final = await gateway.chat({ model: models[vendor], messages, tools: [WEATHER_TOOL], maxTokens: 256 })
  return { first, final, firstRequest, finalRequest: vendors.requests.at(-1) }
}

const normalized = ({ first, final }) => ({
  first: {
    finishReason: first.finishReason,
    content: first.content,
    calls: first.toolCalls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) })),
    usage: [first.usage.promptTokens, first.usage.completionTokens, first.usage.totalTokens, first.usage.estimated],
  },
  final: {
    finishReason: final.finishReason,
    content: final.content,
    calls: final.toolCalls.length,
    usage: [final.usage.promptTokens, final.usage.completionTokens, final.usage.totalTokens, final.usage.estimated],
  },
})

describe('one conversation, three vendors', () => {
  const results = {}
  for (const vendor of ['openai', 'anthropic', 'gemini']) {
    test(`${vendor}: tool call, tool result, final answer`, async () => {
      results[vendor] = await converse(vendor)
      assert.deepEqual(vendors.errors, [], 'the mock vendor hit no internal error')
      assert.equal(results[vendor].first.provider, vendor)
    })
  }

  test('all three give the same normalized results', () => {
    const expected = {
      first: { finishReason: 'tool_calls', content: '', calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }], usage: [120, 15, 135, false] },
      final: { finishReason: 'stop', content: ANSWER, calls: 0, usage: [160, 12, 172, false] },
    }
    for (const vendor of ['openai', 'anthropic', 'gemini']) {
      assert.deepEqual(normalized(results[vendor]), expected, vendor)
    }
  })

  test('openai received OpenAI-shaped messages', () => {
    const { firstRequest, finalRequest } = results.openai
    assert.equal(firstRequest.path, '/v1/chat/completions')
    assert.equal(firstRequest.body.messages[0].role, 'system')
    assert.deepEqual(firstRequest.body.messages[1].content[1], { type: 'image_url', image_url: { url: `data:image/png;base64,${PIXEL}` } })
    assert.equal(firstRequest.body.tools[0].function.name, 'get_weather')
    assert.equal(firstRequest.body.tool_choice, 'auto')
    const tool = finalRequest.body.messages.at(-1)
    assert.deepEqual([tool.role, tool.tool_call_id], ['tool', 'call_abc'])
    assert.equal(finalRequest.body.messages.at(-2).tool_calls[0].function.arguments, '{"city":"Paris"}')
  })

  test('anthropic received a top-level system, base64 image, tool_use and tool_result blocks', () => {
    const { firstRequest, finalRequest } = results.anthropic
    assert.equal(firstRequest.path, '/v1/messages')
    assert.equal(firstRequest.headers['x-api-key'], 'k-anthropic-1234')
    assert.equal(firstRequest.headers['anthropic-version'], '2023-06-01')
    assert.equal(firstRequest.body.system, 'You are a terse weather assistant.')
    assert.deepEqual(firstRequest.body.messages[0].content[1], { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PIXEL } })
    assert.equal(firstRequest.body.tools[0].input_schema.required[0], 'city')
    assert.deepEqual(firstRequest.body.tool_choice, { type: 'auto' })
    const [user, assistant, toolTurn] = finalRequest.body.messages
    assert.equal(user.role, 'user')
    assert.deepEqual(assistant.content, [{ type: 'tool_use', id: 'toolu_abc', name: 'get_weather', input: { city: 'Paris' } }])
    assert.equal(toolTurn.role, 'user')
    assert.equal(toolTurn.content[0].type, 'tool_result')
    assert.equal(toolTurn.content[0].tool_use_id, 'toolu_abc')
  })

  test('gemini received systemInstruction, inlineData, functionCall and a named functionResponse', () => {
    const { firstRequest, finalRequest } = results.gemini
    assert.equal(firstRequest.path, '/v1beta/models/gemini-2.5-flash:generateContent')
    assert.equal(firstRequest.headers['x-goog-api-key'], 'k-gemini-1234')
    assert.deepEqual(firstRequest.body.systemInstruction, { parts: [{ text: 'You are a terse weather assistant.' }] })
    assert.deepEqual(firstRequest.body.contents[0].parts[1], { inlineData: { mimeType: 'image/png', data: PIXEL } })
    assert.equal(firstRequest.body.tools[0].functionDeclarations[0].name, 'get_weather')
    assert.deepEqual(firstRequest.body.toolConfig, { functionCallingConfig: { mode: 'AUTO' } })
    assert.equal(firstRequest.body.generationConfig.maxOutputTokens, 256)
    const [, model, toolTurn] = finalRequest.body.contents
    assert.deepEqual(model, { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] })
    assert.deepEqual(toolTurn, { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { tempC: 18, sky: 'sunny' } } }] })
  })
})
