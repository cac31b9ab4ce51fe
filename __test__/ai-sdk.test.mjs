// ferrogate/ai-sdk under the Vercel AI SDK itself, major 6 and major 7 (dev dependencies `ai6` and `ai7`,
// aliases of `ai@6` and `ai@7`): the same `fg(id)` object drives generateText, streamText with a two-step
// tool loop, structured output with a zod schema, abort, and embeddings, through a native Gateway whose
// upstreams are the loopback vendor fakes and the built-in mock provider.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { z } from 'zod'
import { Gateway } from '../index.js'
import { createFerrogate } from '../lib/ai-sdk.mjs'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const NODE_MAJOR = Number(process.versions.node.split('.')[0])
const MAJORS = [
  { name: 'ai 6', pkg: 'ai6' },
  // ai 7 declares engines.node >= 22.
  { name: 'ai 7', pkg: 'ai7', skip: NODE_MAJOR < 22 && 'ai 7 requires Node 22 (engines.node >= 22)' },
]

let vendors
let gateway
const records = []

before(async () => {
  vendors = await startMockVendors()
  gateway = new Gateway({
    timeoutMs: 10_000,
    maxRetries: 0,
    providers: {
      openai: { kind: 'openai', apiKey: 'sk-test-ai-sdk', baseUrl: vendors.openaiBaseUrl },
      mock: { kind: 'mock' },
    },
    onCall: (record) => records.push(record),
  })
})
after(async () => {
  await gateway?.close()
  await vendors?.close()
})

/** The onCall record of a request id (records arrive on a later turn of the event loop). */
async function recordOf(requestId) {
  for (let i = 0; i < 200; i++) {
    const found = records.find((r) => r.requestId === requestId)
    if (found) return found
    await sleep(10)
  }
  assert.fail(`no onCall record for ${requestId}`)
}

function openaiToolCallStream(name, input) {
  const base = { id: 'chatcmpl-aisdk', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini' }
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
  const json = JSON.stringify(input)
  return [
    chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_weather_1', type: 'function', function: { name, arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: json.slice(0, 4) } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: json.slice(4) } }] }),
    chunk({}, 'tool_calls'),
  ]
}

function textStream(words) {
  const base = { id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini' }
  return words.map((word) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`)
}

for (const major of MAJORS) {
  describe(`ferrogate/ai-sdk under ${major.name}`, { skip: major.skip }, () => {
    const ai = major.skip ? null : require(major.pkg)
    const fg = () => createFerrogate({ gateway })

    test('generateText: the answer, usage and providerMetadata.ferrogate match the gateway\'s own record', async () => {
      const result = await ai.generateText({ model: fg()('openai/gpt-4o-mini'), prompt: 'Say hi', maxOutputTokens: 50 })
      assert.equal(result.text, 'echo: Say hi')
      assert.equal(result.finishReason, 'stop')
      const meta = result.providerMetadata.ferrogate
      const record = await recordOf(meta.requestId)
      assert.equal(record.provider, 'openai')
      assert.equal(meta.costUsd, record.costUsd)
      assert.ok(meta.costUsd > 0, 'gpt-4o-mini is priced')
      assert.equal(result.usage.inputTokens, record.usage.promptTokens)
      assert.equal(result.usage.outputTokens, record.usage.completionTokens)
      const sent = vendors.requests.at(-1).body
      assert.equal(sent.max_tokens ?? sent.max_completion_tokens, 50, 'maxOutputTokens reached the vendor')
    })

    test('streamText: a two-step tool loop (the tool runs, its result goes back, the model answers)', async () => {
      const since = vendors.requests.length
      vendors.enqueue('openai', { sse: openaiToolCallStream('weather', { city: 'Paris' }) })
      const ran = []
      const result = ai.streamText({
        model: fg()('openai/gpt-4o-mini'),
        prompt: 'What is the weather in Paris?',
        tools: {
          weather: ai.tool({
            description: 'The weather in a city',
            inputSchema: z.object({ city: z.string() }),
            execute: async ({ city }) => {
              ran.push(city)
              return { city, celsius: 21 }
            },
          }),
        },
        stopWhen: ai.stepCountIs(2),
      })
      const parts = []
      for await (const part of result.fullStream) parts.push(part.type)
      assert.deepEqual(ran, ['Paris'])
      assert.equal(await result.text, 'echo: What is the weather in Paris?')
      assert.ok(parts.includes('tool-input-start') && parts.includes('tool-input-delta') && parts.includes('tool-call'))
      const calls = vendors.requests.slice(since).filter((r) => r.vendor === 'openai')
      assert.equal(calls.length, 2)
      const toolMessage = calls[1].body.messages.find((m) => m.role === 'tool')
      assert.equal(toolMessage.tool_call_id, 'call_weather_1')
      assert.match(JSON.stringify(toolMessage.content), /21/)
      const steps = await result.steps
      assert.equal(steps[0].finishReason, 'tool-calls')
      assert.equal(steps[0].toolCalls[0].input.city, 'Paris')
    })

    test('structured output with a zod schema (json_schema to the model)', async () => {
      const schema = z.object({ name: z.string(), age: z.number().int().min(0).max(150), tags: z.array(z.string()) })
      const result = ai.Output?.object
        ? await ai.generateText({ model: fg()('mock/ferrogate-mock'), prompt: 'A person', output: ai.Output.object({ schema }) })
        : await ai.generateObject({ model: fg()('mock/ferrogate-mock'), prompt: 'A person', schema })
      const object = result.output ?? result.object
      assert.deepEqual(schema.parse(object), object)
    })

    test('abort mid-stream frees the upstream (the vendor sees the disconnect)', async () => {
      const mark = vendors.mark()
      vendors.enqueue('openai', { sse: textStream(['one ', 'two ', 'three ', 'four ', 'five ']), delayMs: 150 })
      const controller = new AbortController()
      const result = ai.streamText({ model: fg()('openai/gpt-4o-mini'), prompt: 'Count', abortSignal: controller.signal })
      const seen = []
      try {
        for await (const delta of result.textStream) {
          seen.push(delta)
          controller.abort()
        }
      } catch (error) {
        // ai 6 and 7 end an aborted textStream either quietly or with an AbortError; both are fine here.
        assert.equal(error.name, 'AbortError', String(error))
      }
      assert.equal(await vendors.waitForClose({ since: mark }), 1)
      assert.ok(!seen.join('').includes('five'))
    })

    test('embed and embedMany through the gateway (mock provider: deterministic unit vectors)', async (t) => {
      if (typeof gateway.embed !== 'function') return t.skip('this build has no gateway.embed()')
      const model = fg().embeddingModel('mock/embed-mock')
      const one = await ai.embed({ model, value: 'hello' })
      const many = await ai.embedMany({ model, values: ['hello', 'world'] })
      assert.deepEqual(many.embeddings[0], one.embedding)
      assert.notDeepEqual(many.embeddings[1], one.embedding)
      const norm = Math.hypot(...one.embedding)
      assert.ok(Math.abs(norm - 1) < 1e-5, `unit vector (norm ${norm})`)
    })

    test('settings a vendor ignores come back as warnings; bad input is a clear error', async () => {
      const result = await ai.generateText({ model: fg()('openai/gpt-4o-mini'), prompt: 'hi', topK: 5, seed: 3 })
      const features = result.warnings.map((w) => w.feature ?? w.setting)
      assert.ok(features.includes('topK') && features.includes('seed'), JSON.stringify(result.warnings))
      assert.throws(() => fg()(''), /modelId must be a non-empty string/)
      assert.throws(() => createFerrogate({}), /gateway must be a ferrogate Gateway/)
      await assert.rejects(ai.generateText({ model: fg()('nowhere/model'), prompt: 'hi', maxRetries: 0 }), (e) => {
        const error = e.lastError ?? e
        return error.code === 'NOT_FOUND'
      })
    })
  })
}
