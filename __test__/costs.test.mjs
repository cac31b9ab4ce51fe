// CostTracker: pricing lookup and overrides, costUsd on every response, the SQLite ledger
// (durable across a SIGKILL), hard budgets under concurrency, billing of aborted streams,
// and the three alert kinds, each once per crossing.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'

import { CostTracker, FerrogateError, Gateway, countTokens } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const DAY_MS = 86_400_000
let vendors
let tmp

before(async () => {
  vendors = await startMockVendors()
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-costs-'))
})
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true })
  return vendors.close()
})

const openai = () => ({ openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } })
const mock = () => ({ mock: { kind: 'mock', mockChunkDelayMs: 0 } })
const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hello' }], ...extra })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)
const close = (a, b, message) => assert.ok(Math.abs(a - b) < 1e-12, `${message ?? ''} ${a} ≈ ${b}`)
const perMillion = (tokens, usd) => (tokens * usd) / 1e6

describe('pricing', () => {
  test('the built-in table is dated and found by "provider/model", then the bare name', () => {
    const tracker = new CostTracker()
    assert.match(tracker.pricingDate, /^\d{4}-\d{2}-\d{2}$/)
    const mini = tracker.priceOf('openai/gpt-4o-mini')
    assert.deepEqual(mini, {
      inputPerMillion: 0.15,
      outputPerMillion: 0.6,
      cachedInputPerMillion: 0.075,
      maxOutputTokens: 16384,
      source: 'builtin',
    })
    assert.deepEqual(tracker.priceOf('gpt-4o-mini'), mini)
    assert.deepEqual(tracker.priceOf('my-openai/gpt-4o-mini-2024-07-18'), mini, 'dated ids resolve to their model')
    assert.equal(tracker.priceOf('anthropic/claude-sonnet-4-5-20250929').cacheWritePerMillion, 3.75)
    assert.equal(tracker.priceOf('gemini/gemini-2.5-flash').outputPerMillion, 2.5)
    assert.equal(tracker.priceOf('mock/demo'), null)
  })

  test('a pricing object wins over the built-in table whichever name form it uses', () => {
    const tracker = new CostTracker({
      pricing: {
        'gpt-4o-mini': { input_cost_per_token: 1e-6, output_cost_per_token: 3e-6, cache_read_input_token_cost: 5e-7 },
        'team/llama-3': { input_cost_per_token: 2e-7, output_cost_per_token: 4e-7, max_output_tokens: 2048 },
        'llama-3': { input_cost_per_token: 9e-7, output_cost_per_token: 9e-7 },
      },
    })
    const mini = tracker.priceOf('openai/gpt-4o-mini')
    assert.equal(mini.inputPerMillion, 1)
    assert.equal(mini.cachedInputPerMillion, 0.5)
    assert.equal(mini.source, 'pricing')
    assert.equal(tracker.priceOf('team/llama-3').inputPerMillion, 0.2, 'the full name first')
    assert.equal(tracker.priceOf('team/llama-3').maxOutputTokens, 2048)
    assert.equal(tracker.priceOf('other/llama-3').inputPerMillion, 0.9, 'then the bare name')
    assert.equal(tracker.priceOf('openai/gpt-4o').source, 'builtin', 'other models keep their built-in price')
    // record() prices with the override: 1000 × $1 + 1000 × $3 per million.
    close(tracker.record({ model: 'openai/gpt-4o-mini', promptTokens: 1000, completionTokens: 1000 }), 0.004)
  })

  test('a pricing file in LiteLLM format is read; a bad one is a CONFIG error', () => {
    const file = path.join(tmp, 'prices.json')
    fs.writeFileSync(
      file,
      JSON.stringify({
        sample_spec: { input_cost_per_token: 'documentation, skipped' },
        'openai/gpt-4o': { input_cost_per_token: 5e-6, output_cost_per_token: 1.5e-5, litellm_provider: 'openai', mode: 'chat' },
        'dall-e-3': { output_cost_per_image: 0.04, mode: 'image_generation' },
      }),
    )
    const tracker = new CostTracker({ pricing: file })
    assert.equal(tracker.priceOf('openai/gpt-4o').inputPerMillion, 5)
    assert.equal(tracker.priceOf('gpt-4o').source, 'builtin', 'a full-name override does not apply to another provider')

    const broken = path.join(tmp, 'broken.json')
    fs.writeFileSync(broken, '{ "m": { "input_cost_per_token": -1 } }')
    for (const pricing of [broken, path.join(tmp, 'missing.json'), { m: { input_cost_per_token: 'cheap' } }, 42]) {
      assert.throws(() => new CostTracker({ pricing }), (error) => error instanceof FerrogateError && error.code === 'CONFIG')
    }
  })

  test('every response carries costUsd; without a tracker the built-in table prices it', async () => {
    // The mock vendor reports 10 prompt and 5 completion tokens.
    const expected = perMillion(10, 0.15) + perMillion(5, 0.6)
    const plain = new Gateway({ providers: openai() })
    close((await plain.chat(ask('openai/gpt-4o-mini'))).costUsd, expected)
    const streamed = await plain.stream(ask('openai/gpt-4o-mini'), () => {})
    close(streamed.costUsd, expected)

    const tracker = new CostTracker({ pricing: { 'gpt-4o-mini': { input_cost_per_token: 1e-6, output_cost_per_token: 1e-6 } } })
    const tracked = new Gateway({ providers: openai(), costs: tracker })
    close((await tracked.chat(ask('openai/gpt-4o-mini', { user: 'ann' }))).costUsd, 15e-6)
    close(tracker.summary('ann').totalCost, 15e-6)
  })

  test('an unknown model costs 0, is counted as unpriced and never fails a call', async () => {
    const tracker = new CostTracker()
    // A real vendor's call (the mock provider's are free, not unpriced).
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    const response = await gateway.chat(ask('openai/nobody-knows-this-model', { user: 'ann' }))
    assert.equal(response.costUsd, 0)
    assert.ok(response.usage.totalTokens > 0)
    assert.equal(tracker.record({ user: 'ann', model: 'nobody/knows', promptTokens: 5, completionTokens: 5 }), 0)
    assert.equal(tracker.stats().unpriced, 2)
    const summary = tracker.summary('ann', { days: 1 })
    assert.equal(summary.unpricedRequests, 2)
    assert.equal(summary.totalRequests, 2)
    assert.equal(summary.totalCost, 0)
  })
})

describe('record and summary', () => {
  test('summary gives totals, cost by model and a daily trend', () => {
    const tracker = new CostTracker()
    tracker.record({ user: 'ann', model: 'openai/gpt-4o-mini', promptTokens: 1_000_000, completionTokens: 0 })
    tracker.record({ user: 'ann', model: 'openai/gpt-4o', promptTokens: 0, completionTokens: 100_000, timestamp: Date.now() - 2 * DAY_MS })
    tracker.record({ user: 'bob', model: 'openai/gpt-4o', promptTokens: 1, completionTokens: 1 })
    const summary = tracker.summary('ann', { days: 7 })
    close(summary.totalCost, 0.15 + 1.0)
    assert.equal(summary.totalRequests, 2)
    close(summary.averageCostPerRequest, 1.15 / 2)
    assert.deepEqual(Object.keys(summary.costByModel).sort(), ['openai/gpt-4o', 'openai/gpt-4o-mini'])
    assert.equal(summary.costTrend.length, 7)
    assert.deepEqual(summary.costTrend.map((p) => p.requests), [0, 0, 0, 0, 1, 0, 1])
    assert.equal(summary.costTrend.at(-1).date, new Date().toISOString().slice(0, 10))
    assert.equal(tracker.summary('ann', { days: 1 }).totalRequests, 1)
    assert.equal(tracker.summary(null, { days: 1 }).totalRequests, 2, 'everyone')
    assert.equal(tracker.summary('nobody').totalRequests, 0)
  })

  test('bad input is INVALID_REQUEST; a closed tracker refuses records with CONFIG', () => {
    const tracker = new CostTracker()
    const invalid = (error) => error instanceof FerrogateError && error.code === 'INVALID_REQUEST'
    assert.throws(() => tracker.record({ model: 'gpt-4o', promptTokens: -1, completionTokens: 0 }), invalid)
    assert.throws(() => tracker.record({ model: 'gpt-4o', promptTokens: 1.5, completionTokens: 0 }), invalid)
    assert.throws(() => tracker.record({ model: 'gpt-4o', promptTokens: 1, completionTokens: 0, cachedPromptTokens: 2 }), invalid)
    assert.throws(() => tracker.record({ promptTokens: 1, completionTokens: 0 }), invalid)
    assert.throws(() => tracker.summary('ann', { days: 0 }), invalid)
    assert.throws(() => tracker.setBudget('ann', { usd: -1, period: 'day' }), invalid)
    assert.throws(() => tracker.setBudget('ann', { usd: 1, period: 'week' }), invalid)
    assert.throws(() => new Gateway({ providers: mock(), costs: {} }), (e) => e.code === 'CONFIG')
    tracker.close()
    assert.throws(() => tracker.record({ model: 'gpt-4o', promptTokens: 1, completionTokens: 0 }), (e) => e.code === 'CONFIG')
  })
})

describe('ledger', () => {
  test('a process killed with SIGKILL loses nothing recorded over 100 ms before; a new process reads the same totals', async () => {
    const ledgerPath = path.join(tmp, 'killed.db')
    const child = spawn(process.execPath, [new URL('./helpers/ledger-child.mjs', import.meta.url).pathname, ledgerPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal)))
    let output = ''
    for await (const chunk of child.stdout) {
      output += chunk
      if (output.includes('\n')) break
    }
    const recorded = JSON.parse(output)
    await sleep(150)
    child.kill('SIGKILL')
    assert.equal(await exited, 'SIGKILL')

    const tracker = new CostTracker({ ledgerPath })
    const summary = tracker.summary('killed', { days: 1 })
    assert.equal(summary.totalRequests, recorded.totalRequests)
    assert.equal(summary.totalRequests, 320)
    assert.ok(Math.abs(summary.totalCost - recorded.totalCost) < 1e-9, `${summary.totalCost} vs ${recorded.totalCost}`)
    tracker.close()
  })

  test('an aborted stream is billed for its prompt and the text it delivered', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    const chunk = (content) =>
      `data: ${JSON.stringify({ id: 'chatcmpl-cut', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }] })}\n\n`
    const pieces = ['The answer ', 'begins here ', 'and then stalls']
    vendors.enqueue('openai', { sse: pieces.map(chunk), hang: true, endWithoutTerminator: true })
    const request = ask('openai/gpt-4o-mini', { user: 'cut' })
    const controller = new AbortController()
    let text = ''
    const error = await rejection(
      (async () => {
        for await (const event of gateway.streamEvents({ ...request, signal: controller.signal })) {
          if (event.type === 'text') text += event.text
          if (text === pieces.join('')) controller.abort()
        }
      })(),
    )
    assert.equal(error.code, 'ABORTED')
    const promptTokens = countTokens('gpt-4o-mini', request.messages)
    const completionTokens = countTokens('gpt-4o-mini', text)
    const summary = tracker.summary('cut', { days: 1 })
    assert.equal(summary.totalRequests, 1)
    close(summary.totalCost, perMillion(promptTokens, 0.15) + perMillion(completionTokens, 0.6))
  })

  test('a call the vendor refused is recorded at zero cost', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker, maxRetries: 0 })
    vendors.enqueue('openai', { status: 400, body: { error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } } })
    const refused = await rejection(gateway.chat(ask('openai/gpt-4o-mini', { user: 'err' })))
    assert.equal(refused.code, 'INVALID_REQUEST')
    const summary = tracker.summary('err', { days: 1 })
    assert.equal(summary.totalRequests, 1)
    assert.equal(summary.totalCost, 0)
  })
})

describe('budgets', () => {
  test('100 concurrent calls against a hard budget worth ~10 never pass it; the rest are BUDGET_EXCEEDED', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    const request = ask('openai/gpt-4o-mini', { user: 'capped', maxTokens: 20 })
    // Each call reserves its prompt plus maxTokens at gpt-4o-mini's prices.
    const reserved = perMillion(countTokens('gpt-4o-mini', request.messages), 0.15) + perMillion(20, 0.6)
    const budget = 10.5 * reserved
    tracker.setBudget('capped', { usd: budget, period: 'day', hard: true })
    const sentBefore = vendors.requests.length

    const results = await Promise.allSettled(Array.from({ length: 100 }, () => gateway.chat(request)))
    const ok = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason)
    assert.ok(ok.length >= 10, `at least the 10 calls that fit ran, got ${ok.length}`)
    assert.equal(ok.length + refused.length, 100)
    for (const error of refused) {
      assert.equal(error.code, 'BUDGET_EXCEEDED')
      assert.equal(error.status, 402)
    }
    assert.equal(vendors.requests.length - sentBefore, ok.length, 'refused calls never reached the vendor')
    const spent = tracker.summary('capped', { days: 1 }).totalCost
    assert.ok(spent <= budget, `spent ${spent} <= budget ${budget}`)
    close(spent, ok.reduce((sum, r) => sum + r.value.costUsd, 0))
    const status = tracker.budget('capped')
    assert.equal(status.reservedUsd, 0, 'every reservation was settled')
    close(status.spentUsd, spent)
  })

  test('a route alias reserves at its dearest target and bills the target that served it', async () => {
    const tracker = new CostTracker()
    const routes = { smart: [{ provider: 'openai', model: 'gpt-4o-mini', weight: 1e6 }, { provider: 'openai', model: 'gpt-4o', weight: 1e-6 }] }
    const gateway = new Gateway({ providers: openai(), routes, costs: tracker })
    const request = ask('smart', { user: 'routed', maxTokens: 100 })
    const prompt = countTokens('gpt-4o', request.messages)
    const atMini = perMillion(prompt, 0.15) + perMillion(100, 0.6)
    const atGpt4o = perMillion(prompt, 2.5) + perMillion(100, 10)
    tracker.setBudget('routed', { usd: (atMini + atGpt4o) / 2, period: 'day', hard: true })
    assert.equal((await rejection(gateway.chat(request))).code, 'BUDGET_EXCEEDED', 'gpt-4o may serve it: reserved at its price')
    tracker.setBudget('routed', { usd: atGpt4o * 1.01, period: 'day', hard: true })
    const response = await gateway.chat(request)
    assert.equal(response.model, 'gpt-4o-mini')
    close(response.costUsd, perMillion(10, 0.15) + perMillion(5, 0.6), 'billed at gpt-4o-mini')
    assert.deepEqual(Object.keys(tracker.summary('routed').costByModel), ['openai/gpt-4o-mini'])
  })

  test('without maxTokens the model\'s longest answer is reserved', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    // gpt-4o-mini may answer 16384 tokens: $0.0098 of output. A $0.005 budget cannot cover it.
    tracker.setBudget('long', { usd: 0.005, period: 'month', hard: true })
    const error = await rejection(gateway.chat(ask('openai/gpt-4o-mini', { user: 'long' })))
    assert.equal(error.code, 'BUDGET_EXCEEDED')
    assert.match(error.message, /monthly budget of \$0\.005/)
    await gateway.chat(ask('openai/gpt-4o-mini', { user: 'long', maxTokens: 100 }))
    assert.equal(tracker.budget('long').period, 'month')
  })
})

describe('alerts', () => {
  test('budget alerts fire once at 90% (warning) and once at 100% (critical); onAlert hears them off the call path', async () => {
    const tracker = new CostTracker({ pricing: { unit: { input_cost_per_token: 1e-6, output_cost_per_token: 1e-6 } } })
    const heard = []
    tracker.onAlert(() => {
      throw new Error('a throwing listener is counted, never fatal')
    })
    tracker.onAlert((alert) => heard.push(alert))
    tracker.setBudget('ann', { usd: 0.01, period: 'day' })
    // $0.001 per call.
    for (let i = 0; i < 8; i++) tracker.record({ user: 'ann', model: 'unit', promptTokens: 500, completionTokens: 500 })
    assert.deepEqual(tracker.alerts('ann'), [])
    tracker.record({ user: 'ann', model: 'unit', promptTokens: 500, completionTokens: 500 })
    assert.equal(heard.length, 0, 'listeners run after the call, on the event loop')
    for (let i = 0; i < 5; i++) tracker.record({ user: 'ann', model: 'unit', promptTokens: 500, completionTokens: 500 })
    const alerts = tracker.alerts('ann')
    assert.deepEqual(
      alerts.map((a) => [a.type, a.severity]),
      [
        ['budget_exceeded', 'warning'],
        ['budget_exceeded', 'critical'],
      ],
    )
    for (const alert of alerts) {
      assert.equal(alert.user, 'ann')
      assert.match(alert.message, /daily budget of \$0\.01/)
      assert.equal(alert.recommendations.length, 3)
    }
    while (heard.length < 2) await tick()
    await sleep(20)
    assert.equal(heard.length, 2)
    assert.equal(tracker.stats().alertCallbackErrors, 2)
    assert.equal(tracker.budget('ann').remainingUsd, 0)
  })

  test('a hard budget refusal raises the critical alert once', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    tracker.setBudget('zero', { usd: 0, period: 'day', hard: true })
    for (let i = 0; i < 3; i++) {
      assert.equal((await rejection(gateway.chat(ask('openai/gpt-4o-mini', { user: 'zero', maxTokens: 5 })))).code, 'BUDGET_EXCEEDED')
    }
    assert.deepEqual(tracker.alerts('zero').map((a) => [a.type, a.severity]), [['budget_exceeded', 'critical']])
    assert.equal(tracker.stats().budgetRefusals, 3)
  })

  test('unusual spending (last 7 days over twice the weekly average of the 4 weeks before) fires once', () => {
    const tracker = new CostTracker({ pricing: { unit: { input_cost_per_token: 1e-6, output_cost_per_token: 1e-6 } } })
    const now = Date.now()
    for (let week = 1; week <= 4; week++) {
      tracker.record({ user: 'spiky', model: 'unit', promptTokens: 1000, completionTokens: 0, timestamp: now - (week * 7 + 1) * DAY_MS })
    }
    // This week: $0.002 is exactly twice the weekly average of $0.001; not over it.
    tracker.record({ user: 'spiky', model: 'unit', promptTokens: 2000, completionTokens: 0 })
    assert.deepEqual(tracker.alerts('spiky'), [])
    for (let i = 0; i < 5; i++) tracker.record({ user: 'spiky', model: 'unit', promptTokens: 1000, completionTokens: 0 })
    const alerts = tracker.alerts('spiky')
    assert.deepEqual(alerts.map((a) => [a.type, a.severity]), [['unusual_spending', 'warning']])
    assert.match(alerts[0].message, /last 7 days/)
    close(alerts[0].thresholdUsd, 0.001)
  })

  test('a high-cost model alerts once per model and day, with a cheaper model and its price', async () => {
    const tracker = new CostTracker()
    const gateway = new Gateway({ providers: openai(), costs: tracker })
    await gateway.chat(ask('openai/gpt-4o-mini', { user: 'big' }))
    assert.deepEqual(tracker.alerts('big'), [])
    for (let i = 0; i < 3; i++) await gateway.chat(ask('openai/o1', { user: 'big' }))
    const alerts = tracker.alerts('big')
    assert.deepEqual(alerts.map((a) => [a.type, a.severity, a.model]), [['high_cost_model', 'warning', 'openai/o1']])
    assert.match(alerts[0].recommendations[0], /o4-mini \(\$1\.1\/\$4\.4 per million/)
    assert.match(alerts[0].recommendations[2], /ResponseCache/)
    // A lower threshold makes more models high-cost.
    const strict = new CostTracker({ highCostOutputPerMillion: 0.5 })
    strict.record({ user: 'big', model: 'openai/gpt-4o-mini', promptTokens: 1, completionTokens: 1 })
    assert.equal(strict.alerts('big').length, 1)
  })
})
