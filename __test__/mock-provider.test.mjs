// The mock provider as documented in docs/API.md ("The mock provider"): it calls an offered
// tool with arguments valid against the tool's schema (checked with ajv), answers in text once
// the tool's result comes back, costs nothing unless `pricing` names its model, and its
// aborted calls are labelled in the metrics with the provider and model they resolved to.
import assert from 'node:assert/strict'
import { test } from 'node:test'

import Ajv from 'ajv'
import addFormats from 'ajv-formats'

import { CostTracker, Gateway } from '../index.js'

const ajv = addFormats(new Ajv({ strict: false, allErrors: true }))

const TOOLS = [
  {
    name: 'create_order',
    description: 'Place an order',
    parameters: {
      type: 'object',
      properties: {
        sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' },
        quantity: { type: 'integer', minimum: 1, maximum: 99 },
        price: { type: 'number', exclusiveMinimum: 0 },
        gift: { type: 'boolean' },
        channel: { enum: ['web', 'store', 'phone'] },
        email: { type: 'string', format: 'email' },
        placedAt: { type: 'string', format: 'date-time' },
        tags: { type: 'array', items: { type: 'string', minLength: 2 }, minItems: 1, uniqueItems: true },
        address: {
          type: 'object',
          properties: { street: { type: 'string' }, zip: { type: 'string', minLength: 5, maxLength: 5 } },
          required: ['street', 'zip'],
          additionalProperties: false,
        },
        note: { type: ['string', 'null'] },
      },
      required: ['sku', 'quantity', 'price', 'gift', 'channel', 'email', 'placedAt', 'tags', 'address'],
      additionalProperties: false,
    },
  },
  {
    name: 'lookup_weather',
    parameters: { type: 'object', properties: { city: { type: 'string', minLength: 1 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city'] },
  },
]

const ASK = [{ role: 'user', content: 'Order three red mugs to Oslo, please' }]
const mockGateway = (extra = {}) => new Gateway({ providers: { mock: { kind: 'mock', mockChunkDelayMs: 0 } }, ...extra })

test('offered tools are called unless toolChoice is none, with arguments valid against the tool schema', async () => {
  const gateway = mockGateway()
  try {
    for (const toolChoice of [undefined, 'auto', 'required', { name: 'lookup_weather' }]) {
      const response = await gateway.chat({ model: 'mock/gpt-4o', messages: ASK, tools: TOOLS, toolChoice })
      assert.equal(response.finishReason, 'tool_calls', `toolChoice ${JSON.stringify(toolChoice)}`)
      assert.equal(response.toolCalls.length, 1)
      const [call] = response.toolCalls
      const tool = TOOLS.find((t) => t.name === call.name)
      assert.equal(call.name, toolChoice?.name ?? 'create_order')
      const validate = ajv.compile(tool.parameters)
      const args = JSON.parse(call.arguments)
      assert.ok(validate(args), `${call.name} ${call.arguments}: ${ajv.errorsText(validate.errors)}`)
    }
    // Streamed, the same call arrives as tool_call events.
    let streamed = ''
    for await (const event of gateway.streamEvents({ model: 'mock/gpt-4o', messages: ASK, tools: TOOLS })) {
      if (event.type === 'tool_call') streamed += event.argumentsDelta ?? ''
      if (event.type === 'done') assert.equal(event.response.finishReason, 'tool_calls')
    }
    assert.ok(ajv.validate(TOOLS[0].parameters, JSON.parse(streamed)), ajv.errorsText())
    const none = await gateway.chat({ model: 'mock/gpt-4o', messages: ASK, tools: TOOLS, toolChoice: 'none' })
    assert.equal(none.toolCalls.length, 0)
    assert.equal(none.finishReason, 'stop')
    assert.ok(none.content.length > 0)
  } finally {
    await gateway.close()
  }
})

test('a tool loop ends: once the tool result comes back, the mock answers in text', async () => {
  const gateway = mockGateway()
  try {
    const messages = [...ASK]
    const first = await gateway.chat({ model: 'mock/gpt-4o', messages, tools: TOOLS })
    const [call] = first.toolCalls
    messages.push({ role: 'assistant', content: null, toolCalls: first.toolCalls })
    messages.push({ role: 'tool', toolCallId: call.id, content: JSON.stringify({ orderId: 'ord_42', status: 'placed' }) })
    const second = await gateway.chat({ model: 'mock/gpt-4o', messages, tools: TOOLS })
    assert.equal(second.finishReason, 'stop')
    assert.equal(second.toolCalls.length, 0)
    assert.match(second.content, /ord_42/)
  } finally {
    await gateway.close()
  }
})

test('mock calls cost nothing and reserve nothing against a budget, unless pricing names the model', async () => {
  const free = new CostTracker()
  free.setBudget('ann', { usd: 0.01, period: 'day', hard: true })
  const gateway = mockGateway({ costs: free })
  try {
    // "gpt-4o" is in the built-in price table: a real call would reserve far more than $0.01.
    const response = await gateway.chat({ model: 'mock/gpt-4o', messages: ASK, user: 'ann', maxTokens: 100000 })
    assert.equal(response.costUsd, 0)
    assert.equal(free.budget('ann').spentUsd, 0)
    assert.equal(free.stats().unpriced, 0)
  } finally {
    await gateway.close()
  }
  const priced = new CostTracker({ pricing: { 'mock/gpt-4o': { input_cost_per_token: 0.001, output_cost_per_token: 0.002 } } })
  const pricedGateway = mockGateway({ costs: priced })
  try {
    const response = await pricedGateway.chat({ model: 'mock/gpt-4o', messages: ASK })
    const expected = response.usage.promptTokens * 0.001 + response.usage.completionTokens * 0.002
    assert.ok(Math.abs(response.costUsd - expected) < 1e-9, `${response.costUsd} vs ${expected}`)
  } finally {
    await pricedGateway.close()
  }
  // Without a tracker too.
  const bare = mockGateway()
  try {
    assert.equal((await bare.chat({ model: 'mock/gpt-4o', messages: ASK })).costUsd, 0)
  } finally {
    await bare.close()
  }
})

test('an aborted call is labelled in the metrics with the provider and model it resolved to', async () => {
  const gateway = new Gateway({ providers: { local: { kind: 'mock', mockChunkDelayMs: 50 } } })
  try {
    const controller = new AbortController()
    const call = gateway.stream({ model: 'local/gpt-4o', messages: ASK, signal: controller.signal }, () => controller.abort())
    await assert.rejects(call, { code: 'ABORTED' })
    const metrics = gateway.metrics()
    assert.match(metrics, /ferrogate_requests_total\{provider="local",model="gpt-4o",outcome="aborted",code="ABORTED"\} 1/)
    assert.doesNotMatch(metrics, /unresolved/)
  } finally {
    await gateway.close()
  }
})
