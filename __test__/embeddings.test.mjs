// gateway.embed() against the mock provider and the OpenAI and Gemini vendor fakes, and the
// official `openai` client's embeddings.create against `ferrogate serve` (POST /v1/embeddings).
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

import OpenAI from 'openai'
import { CostTracker, FerrogateError, Gateway, RateLimiter, ResponseCache } from '../index.js'
import {
  GEMINI_EMBEDDING_BATCH_LIMIT,
  OPENAI_EMBEDDING_BATCH_LIMIT,
  fakeEmbedding,
  fakeEmbeddingTokens,
  startMockVendors,
} from './helpers/mock-vendors.mjs'
import { ENGINES, startServe } from './helpers/serve-engines.mjs'

const UPSTREAM_KEY = 'sk-upstream-embed-secret-4242'
// Built-in list prices, USD per token.
const SMALL_PRICE = 0.02e-6
const GEMINI_PRICE = 0.15e-6

let mock
before(async () => {
  mock = await startMockVendors()
})
after(async () => {
  await mock?.close()
})

function gateway(extra = {}) {
  return new Gateway({
    providers: {
      mock: { kind: 'mock' },
      openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: UPSTREAM_KEY },
      gemini: { kind: 'gemini', baseUrl: mock.geminiBaseUrl, apiKey: UPSTREAM_KEY },
      claude: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: UPSTREAM_KEY },
    },
    maxRetries: 0,
    ...extra,
  })
}

const norm = (v) => Math.sqrt(v.reduce((sum, x) => sum + x * x, 0))
const texts = (n, prefix = 'doc') => Array.from({ length: n }, (_, i) => `${prefix} ${i}: the quick brown fox ${i * 7}`)
const requestsSince = (mark, api = 'embeddings') => mock.requests.slice(mark).filter((r) => r.api === api)

describe('the vendor fakes speak the embeddings APIs as the vendors do', () => {
  test('OpenAI /v1/embeddings, checked with the official client: float, base64, the batch limit', async () => {
    const client = new OpenAI({ apiKey: 'sk-fake', baseURL: mock.openaiBaseUrl, maxRetries: 0 })
    const float = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'], encoding_format: 'float' })
    assert.deepEqual(float.data.map((d) => d.embedding), [Array.from(fakeEmbedding('a')), Array.from(fakeEmbedding('b'))])
    assert.deepEqual(float.usage, { prompt_tokens: 2, total_tokens: 2 })
    // Without encoding_format the client asks for base64 and decodes the f32 bytes itself.
    const decoded = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 3 })
    assert.equal(mock.requests.at(-1).body.encoding_format, 'base64')
    assert.deepEqual(decoded.data.map((d) => Array.from(d.embedding)), [Array.from(fakeEmbedding('a', 3)), Array.from(fakeEmbedding('b', 3))])
    const tooMany = await client.embeddings.create({ model: 'm', input: Array(OPENAI_EMBEDDING_BATCH_LIMIT + 1).fill('x') }).catch((e) => e)
    assert.ok(tooMany instanceof OpenAI.BadRequestError)
    assert.match(tooMany.message, /maximum length 2048/)
  })

  test('Gemini batchEmbedContents: one vector per request, at most 100, the model named in each', async () => {
    const url = (model) => `${mock.geminiBaseUrl}/v1beta/models/${model}:batchEmbedContents`
    const post = (model, body) =>
      fetch(url(model), { method: 'POST', headers: { 'x-goog-api-key': 'g', 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const request = (text, model = 'models/gemini-embedding-001') => ({ model, content: { parts: [{ text }] }, outputDimensionality: 4 })
    const ok = await post('gemini-embedding-001', { requests: [request('a'), request('b')] })
    assert.equal(ok.status, 200)
    assert.deepEqual((await ok.json()).embeddings.map((e) => e.values), [Array.from(fakeEmbedding('a', 4)), Array.from(fakeEmbedding('b', 4))])
    const tooMany = await post('gemini-embedding-001', { requests: Array.from({ length: GEMINI_EMBEDDING_BATCH_LIMIT + 1 }, () => request('x')) })
    assert.equal(tooMany.status, 400)
    assert.equal((await tooMany.json()).error.status, 'INVALID_ARGUMENT')
    const wrongModel = await post('gemini-embedding-001', { requests: [request('a', 'models/other')] })
    assert.equal(wrongModel.status, 400)
  })
})

describe('gateway.embed with the mock provider', () => {
  test('deterministic unit vectors as Float32Arrays, dimensions honoured', async (t) => {
    const gw = gateway()
    t.after(() => gw.close())
    const one = await gw.embed({ model: 'mock/text-embedding-3-small', input: 'hello' })
    assert.equal(one.embeddings.length, 1)
    assert.ok(one.embeddings[0] instanceof Float32Array)
    assert.equal(one.embeddings[0].length, 256)
    assert.ok(Math.abs(norm(one.embeddings[0]) - 1) < 1e-5)
    assert.equal(one.provider, 'mock')
    assert.equal(one.model, 'text-embedding-3-small')
    assert.match(one.requestId, /^fg_/)
    assert.equal(one.cached, false)
    assert.ok(one.usage.promptTokens > 0)
    assert.equal(one.usage.totalTokens, one.usage.promptTokens)
    // The mock provider is free unless a CostTracker's pricing names the model.
    assert.equal(one.costUsd, 0)
    const priced = gateway({ costs: new CostTracker({ pricing: { 'mock/text-embedding-3-small': { input_cost_per_token: SMALL_PRICE, output_cost_per_token: 0 } } }) })
    t.after(() => priced.close())
    const billed = await priced.embed({ model: 'mock/text-embedding-3-small', input: 'hello' })
    assert.ok(Math.abs(billed.costUsd - billed.usage.promptTokens * SMALL_PRICE) < 1e-15, `${billed.costUsd}`)

    const many = await gw.embed({ model: 'mock/e', input: ['hello', 'world', 'hello'], dimensions: 32 })
    assert.equal(many.embeddings.length, 3)
    assert.ok(many.embeddings.every((v) => v.length === 32 && Math.abs(norm(v) - 1) < 1e-5))
    assert.deepEqual(many.embeddings[0], many.embeddings[2])
    assert.notDeepEqual(many.embeddings[0], many.embeddings[1])
    const again = await gw.embed({ model: 'mock/e', input: 'world', dimensions: 32 })
    assert.deepEqual(again.embeddings[0], many.embeddings[1])
  })

  test('bad input is INVALID_REQUEST, and nothing is sent', async (t) => {
    const gw = gateway()
    t.after(() => gw.close())
    for (const request of [
      { model: 'mock/e', input: [] },
      { model: 'mock/e', input: 'x', dimensions: 0 },
      { model: 'mock/e', input: 'x', dimensions: 1.5 },
      { model: 'mock/e', input: 42 },
    ]) {
      await assert.rejects(gw.embed(request), (error) => error instanceof FerrogateError && error.code === 'INVALID_REQUEST', JSON.stringify(request))
    }
    await assert.rejects(gw.embed({ model: 'nobody/e', input: 'x' }), { code: 'NOT_FOUND' })
    await assert.rejects(gw.embed(null), { code: 'INVALID_REQUEST' })
  })
})

describe('gateway.embed against the vendor fakes', () => {
  test('OpenAI: 2,500 inputs go out as 2,048 + 452 and come back in order; usage, cost, ledger, onCall', async (t) => {
    const records = []
    const tracker = new CostTracker()
    const gw = gateway({ costs: tracker, onCall: (record) => records.push(record) })
    t.after(() => gw.close())
    const input = texts(2500)
    const mark = mock.mark()
    const response = await gw.embed({ model: 'openai/text-embedding-3-small', input, dimensions: 16, user: 'ann', metadata: { team: 'search' } })

    const sent = requestsSince(mark)
    assert.deepEqual(sent.map((r) => r.body.input.length), [OPENAI_EMBEDDING_BATCH_LIMIT, 2500 - OPENAI_EMBEDDING_BATCH_LIMIT])
    assert.deepEqual(sent.flatMap((r) => r.body.input), input)
    for (const r of sent) {
      assert.equal(r.path, '/v1/embeddings')
      assert.equal(r.headers.authorization, `Bearer ${UPSTREAM_KEY}`)
      assert.deepEqual(
        { model: r.body.model, dimensions: r.body.dimensions, encoding_format: r.body.encoding_format },
        { model: 'text-embedding-3-small', dimensions: 16, encoding_format: 'float' },
      )
      assert.equal(r.body.user, 'ann'
      )
    }
    assert.equal(response.embeddings.length, 2500)
    response.embeddings.forEach((vector, i) => assert.deepEqual(vector, fakeEmbedding(input[i], 16), `vector ${i}`))
    const tokens = input.reduce((sum, text) => sum + fakeEmbeddingTokens(text), 0)
    assert.deepEqual(response.usage, { promptTokens: tokens, totalTokens: tokens })
    assert.ok(Math.abs(response.costUsd - tokens * SMALL_PRICE) < 1e-12, `${response.costUsd}`)
    assert.equal(response.provider, 'openai')

    const summary = tracker.summary('ann')
    assert.equal(summary.requestsByModel['openai/text-embedding-3-small'], 1)
    assert.ok(Math.abs(summary.costByModel['openai/text-embedding-3-small'] - response.costUsd) < 1e-12)

    await gw.chat({ model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] })
    await sleep(20)
    assert.deepEqual(records.map((r) => r.operation), ['embeddings', 'chat'])
    const record = records[0]
    assert.equal(record.outcome, 'ok')
    assert.equal(record.requestId, response.requestId)
    assert.equal(record.vendorModel, 'text-embedding-3-small')
    assert.equal(record.usage.promptTokens, tokens)
    assert.equal(record.costUsd, response.costUsd)
    assert.deepEqual(record.metadata, { team: 'search' })
    assert.equal(record.user, 'ann')
  })

  test('Gemini: batchEmbedContents in batches of 100, model named in every request, key in the header', async (t) => {
    const gw = gateway()
    t.after(() => gw.close())
    const input = texts(250, 'gem')
    const mark = mock.mark()
    const response = await gw.embed({ model: 'gemini/gemini-embedding-001', input, dimensions: 12 })
    const sent = requestsSince(mark)
    assert.deepEqual(sent.map((r) => r.body.requests.length), [GEMINI_EMBEDDING_BATCH_LIMIT, GEMINI_EMBEDDING_BATCH_LIMIT, 50])
    for (const r of sent) {
      assert.equal(r.path, '/v1beta/models/gemini-embedding-001:batchEmbedContents')
      assert.equal(r.headers['x-goog-api-key'], UPSTREAM_KEY)
      assert.deepEqual(Object.keys(r.query), [])
      assert.ok(r.body.requests.every((q) => q.model === 'models/gemini-embedding-001' && q.outputDimensionality === 12))
    }
    assert.deepEqual(sent.flatMap((r) => r.body.requests.map((q) => q.content.parts[0].text)), input)
    response.embeddings.forEach((vector, i) => assert.deepEqual(vector, fakeEmbedding(input[i], 12), `vector ${i}`))
    // Gemini reports no usage: the gateway counts the inputs' tokens and prices them.
    assert.ok(response.usage.promptTokens >= 250)
    assert.ok(Math.abs(response.costUsd - response.usage.promptTokens * GEMINI_PRICE) < 1e-12)
  })

  test('the exact cache answers a repeated batch without a vendor call', async (t) => {
    const gw = gateway({ cache: new ResponseCache() })
    t.after(() => gw.close())
    const request = { model: 'openai/text-embedding-3-small', input: ['cache me', 'and me'] }
    const first = await gw.embed(request)
    const mark = mock.mark()
    const second = await gw.embed(request)
    assert.equal(requestsSince(mark).length, 0)
    assert.equal(second.cached, true)
    assert.equal(second.costUsd, 0)
    assert.deepEqual(second.embeddings, first.embeddings)
    assert.notEqual(second.requestId, first.requestId)
    const other = await gw.embed({ ...request, dimensions: 4 })
    assert.equal(other.cached, false)
    const bypass = await gw.embed({ ...request, cache: false })
    assert.equal(bypass.cached, false)
    assert.equal(gw.stats().cacheHits, 1)
  })

  test('token limits and hard budgets hold embeddings like chat', async (t) => {
    // 100 tokens a minute: a batch estimated above what is left is refused before the vendor.
    const limited = gateway({ rateLimiter: new RateLimiter({ tokensPerMinute: 100 }) })
    t.after(() => limited.close())
    await limited.embed({ model: 'openai/text-embedding-3-small', input: texts(4), user: 'lim' })
    const mark = mock.mark()
    await assert.rejects(limited.embed({ model: 'openai/text-embedding-3-small', input: texts(40), user: 'lim' }), { code: 'RATE_LIMITED' })
    assert.equal(requestsSince(mark).length, 0)

    const tracker = new CostTracker()
    tracker.setBudget('tight', { usd: 0.000001, period: 'day', hard: true })
    const budgeted = gateway({ costs: tracker })
    t.after(() => budgeted.close())
    // 1e-6 USD buys 50 tokens of text-embedding-3-small: 200 texts of ~9 tokens cannot fit.
    await assert.rejects(budgeted.embed({ model: 'openai/text-embedding-3-small', input: texts(200), user: 'tight' }), { code: 'BUDGET_EXCEEDED' })
    assert.equal(requestsSince(mark).length, 0)
    const small = await budgeted.embed({ model: 'openai/text-embedding-3-small', input: 'tiny', user: 'tight' })
    assert.ok(small.costUsd > 0 && small.costUsd <= 0.000001)
  })

  test('an abort by signal ends the call and closes the upstream request', async (t) => {
    const gw = gateway()
    t.after(() => gw.close())
    mock.enqueue('openai', { delayMs: 10_000 })
    const controller = new AbortController()
    const mark = mock.mark()
    const call = gw.embed({ model: 'openai/text-embedding-3-small', input: 'slow', signal: controller.signal })
    while (requestsSince(mark).length === 0) await sleep(5)
    controller.abort(new Error('user left'))
    await assert.rejects(call, (error) => error.code === 'ABORTED' && error.cause?.message === 'user left')
    assert.equal(await mock.waitForClose({ since: mark }), 1)
    const already = AbortSignal.abort()
    await assert.rejects(gw.embed({ model: 'mock/e', input: 'x', signal: already }), { code: 'ABORTED' })
  })

  test('vendor errors are mapped; anthropic has no embeddings API', async (t) => {
    const gw = gateway()
    t.after(() => gw.close())
    mock.enqueue('openai', { status: 401, body: { error: { message: 'Incorrect API key provided: sk-upstr**********4242.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } })
    await assert.rejects(gw.embed({ model: 'openai/text-embedding-3-small', input: 'x' }), (error) => {
      assert.equal(error.code, 'AUTHENTICATION')
      assert.equal(error.provider, 'openai')
      assert.ok(!error.message.includes(UPSTREAM_KEY))
      return true
    })
    mock.enqueue('gemini', { status: 429, body: { error: { code: 429, message: 'Resource has been exhausted', status: 'RESOURCE_EXHAUSTED' } } })
    await assert.rejects(gw.embed({ model: 'gemini/gemini-embedding-001', input: 'x' }), { code: 'RATE_LIMITED' })
    const mark = mock.mark()
    await assert.rejects(gw.embed({ model: 'claude/claude-haiku-4-5', input: 'x' }), (error) => {
      assert.equal(error.code, 'INVALID_REQUEST')
      assert.match(error.message, /anthropic has no embeddings API/)
      return true
    })
    assert.equal(mock.mark(), mark, 'nothing reached a vendor')
  })
})

for (const engine of ENGINES) describe(`POST /v1/embeddings on ferrogate serve (${engine})`, () => {
  const CLIENT_KEY = 'vk-embed-client-1'
  let dir
  let server
  let baseURL
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-embed-'))
    server = await startServe({
      engine,
      file: path.join(dir, 'ferrogate.json'),
      config: {
        providers: {
          mock: { kind: 'mock' },
          openai: { kind: 'openai', baseUrl: '${UPSTREAM_URL}', apiKey: '${UPSTREAM_KEY}' },
        },
        maxRetries: 0,
        keys: [{ key: '${CLIENT_KEY}', user: 'svc-embed', dailyTokenQuota: 1000000 }],
      },
      env: { UPSTREAM_URL: mock.openaiBaseUrl, UPSTREAM_KEY, CLIENT_KEY },
    })
    baseURL = `${server.url}/v1`
  })
  after(async () => {
    await server?.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test('the openai client: float, base64 (decoded by us and by the client), the same vectors', async () => {
    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL, maxRetries: 0 })
    const input = ['first text', 'second text', 'third']
    const float = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input, encoding_format: 'float' })
    assert.equal(float.object, 'list')
    assert.equal(float.model, 'openai/text-embedding-3-small')
    assert.deepEqual(float.data.map((d) => [d.object, d.index]), [['embedding', 0], ['embedding', 1], ['embedding', 2]])
    // Floats are written as the shortest text of each f32 (as OpenAI does): read back as f32, they are exact.
    const asF32 = (numbers) => numbers.map(Math.fround)
    float.data.forEach((d, i) => assert.deepEqual(asF32(d.embedding), Array.from(fakeEmbedding(input[i]))))
    const tokens = input.reduce((sum, text) => sum + fakeEmbeddingTokens(text), 0)
    assert.deepEqual(float.usage, { prompt_tokens: tokens, total_tokens: tokens })
    const upstream = mock.requests.at(-1)
    assert.equal(upstream.body.user, 'svc-embed', 'the key decides the user')
    assert.equal(upstream.headers.authorization, `Bearer ${UPSTREAM_KEY}`)

    const base64 = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input, encoding_format: 'base64' })
    const decoded = base64.data.map((d) => {
      assert.equal(typeof d.embedding, 'string')
      const bytes = Buffer.from(d.embedding, 'base64')
      return Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4))
    })
    assert.deepEqual(decoded, float.data.map((d) => asF32(d.embedding)))

    // Without encoding_format the client asks for base64 and decodes it itself.
    const byClient = await client.embeddings.create({ model: 'openai/text-embedding-3-small', input })
    assert.deepEqual(byClient.data.map((d) => Array.from(d.embedding)), float.data.map((d) => asF32(d.embedding)))

    const mocked = await client.embeddings.create({ model: 'mock/e', input: 'unit', dimensions: 64 })
    assert.equal(mocked.data[0].embedding.length, 64)
    assert.ok(Math.abs(norm(mocked.data[0].embedding) - 1) < 1e-5)
  })

  test('errors in OpenAI shape: the field named, a vendor error, a missing key', async () => {
    const post = (body, key = CLIENT_KEY) =>
      fetch(`${baseURL}/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      })
    const mark = mock.mark()
    for (const [body, param] of [
      [{ model: 'mock/e', input: [[1, 2, 3]] }, 'input'],
      [{ model: 'mock/e', input: [1, 2] }, 'input'],
      [{ input: 'x' }, 'model'],
      [{ model: 'mock/e', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      ['{not json', null],
    ]) {
      const res = await post(body)
      assert.equal(res.status, 400, JSON.stringify(body))
      const json = await res.json()
      assert.equal(json.error.type, 'invalid_request_error')
      assert.equal(json.error.param, param)
    }
    assert.equal(mock.mark(), mark, 'nothing reached the vendor')
    const unauthenticated = await post({ model: 'mock/e', input: 'x' }, null)
    assert.equal(unauthenticated.status, 401)

    const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL, maxRetries: 0 })
    mock.enqueue('openai', { status: 429, headers: { 'retry-after': '3' }, body: { error: { message: 'Rate limit reached', type: 'requests', param: null, code: 'rate_limit_exceeded' } } })
    await assert.rejects(client.embeddings.create({ model: 'openai/text-embedding-3-small', input: 'x' }), (error) => {
      assert.ok(error instanceof OpenAI.RateLimitError)
      assert.equal(error.headers.get('retry-after'), '3')
      return true
    })
  })

  test('the Python openai client, when installed', async (t) => {
    const python = await promisify(execFile)('python3', ['-c', 'import openai; print(openai.__version__)']).catch(() => null)
    if (!python) {
      t.skip('Python openai is not installed (pip install openai)')
      console.log('# skipped: Python `openai` is not installed (pip install openai)')
      return
    }
    const script = `
import json, struct, sys, openai
f32 = lambda v: [struct.unpack("<f", struct.pack("<f", x))[0] for x in v]
client = openai.OpenAI(api_key=sys.argv[2], base_url=sys.argv[1], max_retries=0)
f = client.embeddings.create(model="mock/e", input=["a", "b"], encoding_format="float", dimensions=8)
d = client.embeddings.create(model="mock/e", input=["a", "b"], dimensions=8)
print(json.dumps({"float": [f32(e.embedding) for e in f.data], "default": [list(e.embedding) for e in d.data], "usage": f.usage.total_tokens}))
`
    const { stdout } = await promisify(execFile)('python3', ['-c', script, baseURL, CLIENT_KEY])
    const answer = JSON.parse(stdout)
    assert.equal(answer.float.length, 2)
    assert.equal(answer.float[0].length, 8)
    assert.deepEqual(answer.default, answer.float)
    assert.ok(answer.usage > 0)
  })
})
