// Prompt caching: `cache` on a message, a content part or a tool is a breakpoint, sent to Anthropic as
// `cache_control` on that block or tool (the Anthropic fake validates it as Anthropic does: ephemeral, ttl 5m or
// 1h, at most 4); `promptCacheKey` is OpenAI's `prompt_cache_key`; cache reads and writes come back in usage and
// are priced at their own rates (the built-in table's cache rates) in costUsd.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { CostTracker, Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

let mock
let gw
let costs

before(async () => {
  mock = await startMockVendors()
  costs = new CostTracker({})
  gw = new Gateway({
    providers: {
      anthropic: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-test' },
      openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-test' },
    },
    costs,
    maxRetries: 0,
  })
})
after(async () => {
  await gw.close()
  await mock.close()
})

const since = () => {
  const start = mock.requests.length
  return () => mock.requests.slice(start)
}
const document = 'A long reference document. '.repeat(20)
const lookup = { name: 'lookup', description: 'Looks a term up', parameters: { type: 'object', properties: { term: { type: 'string' } } } }

test('cache lands as cache_control on the system block, the part and the tool asked, in the body Anthropic receives', async () => {
  const seen = since()
  await gw.chat({
    model: 'anthropic/claude-haiku-4-5',
    messages: [
      { role: 'system', content: 'You answer from the document.', cache: true },
      {
        role: 'user',
        content: [
          { type: 'text', text: document, cache: { ttl: '1h' } },
          { type: 'text', text: 'What does it say?' },
        ],
      },
    ],
    tools: [{ ...lookup, cache: { ttl: '5m' } }],
    toolChoice: 'none',
  })
  const [request] = seen()
  assert.deepEqual(request.body.system, [{ type: 'text', text: 'You answer from the document.', cache_control: { type: 'ephemeral' } }])
  assert.deepEqual(request.body.messages[0].content, [
    { type: 'text', text: document, cache_control: { type: 'ephemeral', ttl: '1h' } },
    { type: 'text', text: 'What does it say?' },
  ])
  assert.deepEqual(request.body.tools[0].cache_control, { type: 'ephemeral', ttl: '5m' })
})

test("a message's breakpoint goes on its last block; without one nothing is marked", async () => {
  const seen = since()
  await gw.chat({
    model: 'anthropic/claude-haiku-4-5',
    messages: [
      { role: 'user', content: [{ type: 'text', text: document }, { type: 'text', text: 'Summarize.' }], cache: true },
    ],
  })
  await gw.chat({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'system', content: 'Plain.' }, { role: 'user', content: 'hi' }] })
  const [marked, plain] = seen()
  assert.equal(marked.body.messages[0].content[0].cache_control, undefined)
  assert.deepEqual(marked.body.messages[0].content[1].cache_control, { type: 'ephemeral' })
  assert.equal(plain.body.system, 'Plain.', 'no breakpoint: the system prompt stays a string')
  assert.ok(!JSON.stringify(plain.body).includes('cache_control'))
})

test('cache reads and writes from Anthropic are in usage and priced at the cache rates', async () => {
  mock.enqueue('anthropic', {
    body: {
      id: 'msg_cache', type: 'message', role: 'assistant', model: 'claude-haiku-4-5',
      content: [{ type: 'text', text: 'It says hello.' }], stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: 100, cache_creation_input_tokens: 200, cache_read_input_tokens: 1000, output_tokens: 50 },
    },
  })
  const answer = await gw.chat({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: document, cache: true }] })
  assert.equal(answer.usage.promptTokens, 1300)
  assert.equal(answer.usage.cachedPromptTokens, 1000)
  assert.equal(answer.usage.cacheWritePromptTokens, 200)
  // claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per million tokens.
  const price = costs.priceOf('claude-haiku-4-5')
  assert.equal(price.cachedInputPerMillion, 0.1)
  assert.equal(price.cacheWritePerMillion, 1.25)
  const expected = (100 * 1 + 1000 * 0.1 + 200 * 1.25 + 50 * 5) / 1e6
  assert.ok(Math.abs(answer.costUsd - expected) < 1e-12, `costUsd ${answer.costUsd} is ${expected}`)
  const uncached = (1300 * 1 + 50 * 5) / 1e6
  assert.ok(answer.costUsd < uncached / 2, 'cheaper than the same tokens at the input rate')
})

test('promptCacheKey goes to OpenAI as prompt_cache_key; cached tokens are priced at the cached rate', async () => {
  mock.enqueue('openai', {
    body: {
      id: 'chatcmpl-cache', object: 'chat.completion', created: 1_700_000_000, model: 'gpt-4o-mini',
      choices: [{ index: 0, message: { role: 'assistant', content: 'ok', refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 2000, completion_tokens: 10, total_tokens: 2010, prompt_tokens_details: { cached_tokens: 1536 } },
    },
  })
  const seen = since()
  const answer = await gw.chat({
    model: 'openai/gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi', cache: true }],
    promptCacheKey: 'tenant-42',
  })
  const [request] = seen()
  assert.equal(request.body.prompt_cache_key, 'tenant-42')
  assert.ok(!JSON.stringify(request.body).includes('cache_control'), 'OpenAI caches by itself: no breakpoints sent')
  assert.equal(answer.usage.cachedPromptTokens, 1536)
  const price = costs.priceOf('gpt-4o-mini')
  const expected = ((2000 - 1536) * price.inputPerMillion + 1536 * price.cachedInputPerMillion + 10 * price.outputPerMillion) / 1e6
  assert.ok(Math.abs(answer.costUsd - expected) < 1e-12, `costUsd ${answer.costUsd} is ${expected}`)
})

test("a bad ttl is INVALID_REQUEST here; more breakpoints than Anthropic takes is Anthropic's INVALID_REQUEST", async () => {
  const before = mock.requests.length
  await assert.rejects(
    gw.chat({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: 'hi', cache: { ttl: '2h' } }] }),
    (e) => e.code === 'INVALID_REQUEST' && /'5m' or '1h'/.test(e.message),
  )
  assert.equal(mock.requests.length, before, 'refused before any request')
  const five = Array.from({ length: 5 }, (_, i) => ({ type: 'text', text: `part ${i}`, cache: true }))
  await assert.rejects(
    gw.chat({ model: 'anthropic/claude-haiku-4-5', messages: [{ role: 'user', content: five }] }),
    (e) => e.code === 'INVALID_REQUEST' && /A maximum of 4 blocks with cache_control/.test(e.message),
  )
})
