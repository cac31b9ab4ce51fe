// Key pools (`apiKeys`): a provider uses its first key until a key rests. A key answered 429 rests for the
// vendor's retry delay, one answered 401/403 until restart, and the call moves to the next key at once, inside
// the same attempt (`attempts` stays 1). health() and the metrics name each key by a short hash, never the key.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, test } from 'node:test'

import { Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const KEYS = ['sk-pool-key-one-0000000001', 'sk-pool-key-two-0000000002', 'sk-pool-key-three-000000003']
const hi = [{ role: 'user', content: 'hi there' }]
const shortHash = (key) => `k-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`
let mock

before(async () => {
  mock = await startMockVendors()
})
after(() => mock.close())

const since = () => {
  const start = mock.requests.length
  return () => mock.requests.slice(start)
}
const bearerOf = (request) => request.headers.authorization?.replace(/^Bearer /, '')
const rateLimited = (seconds) => ({
  status: 429,
  headers: { 'retry-after': String(seconds) },
  body: { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } },
})

function pooled(extra = {}) {
  return new Gateway({
    providers: { pool: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKeys: KEYS, ...extra } },
    routes: { smart: [{ provider: 'pool', model: 'gpt-4o-mini' }] },
    maxRetries: 0,
  })
}

test('a 429 with retry-after: 30 moves the call to the second key at once (attempts 1); the first key then rests', async () => {
  const gw = pooled()
  const seen = since()
  mock.enqueue('openai', rateLimited(30))
  const answer = await gw.chat({ model: 'smart', messages: hi })
  assert.equal(answer.content, 'echo: hi there')
  assert.equal(answer.attempts, 1, 'moving to another key is not a retry')
  assert.deepEqual(seen().map(bearerOf), [KEYS[0], KEYS[1]])

  const next = since()
  await gw.chat({ model: 'smart', messages: [{ role: 'user', content: 'next' }] })
  assert.deepEqual(next().map(bearerOf), [KEYS[1]], 'the resting key is skipped')

  const [target] = gw.health()
  assert.deepEqual(
    target.keys.map((k) => [k.id, k.state]),
    [
      [shortHash(KEYS[0]), 'resting'],
      [shortHash(KEYS[1]), 'active'],
      [shortHash(KEYS[2]), 'active'],
    ],
  )
  const restEnds = target.keys[0].restingUntil - Date.now()
  assert.ok(restEnds > 25_000 && restEnds <= 30_000, `rests for the vendor's 30 s (${restEnds} ms left)`)
  const metrics = gw.metrics()
  assert.match(metrics, new RegExp(`ferrogate_provider_key_state\\{provider="pool",key="${shortHash(KEYS[0])}"\\} 1`))
  assert.match(metrics, new RegExp(`ferrogate_provider_key_state\\{provider="pool",key="${shortHash(KEYS[1])}"\\} 0`))
  const shown = JSON.stringify(gw.health()) + metrics
  for (const key of KEYS) assert.ok(!shown.includes(key), 'no key in health() or metrics')
  await gw.close()
})

test('a key answered 401 rests until restart; streams move to the next key too', async () => {
  const gw = pooled()
  const seen = since()
  mock.enqueue('openai', { status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } })
  const chunks = []
  const answer = await gw.stream({ model: 'smart', messages: hi }, (text) => chunks.push(text))
  assert.equal(chunks.join(''), 'echo: hi there')
  assert.equal(answer.attempts, 1)
  assert.deepEqual(seen().map(bearerOf), [KEYS[0], KEYS[1]])
  assert.equal(gw.health()[0].keys[0].state, 'revoked')
  assert.equal(gw.health()[0].keys[0].restingUntil, undefined)
  await gw.close()
})

test('when every key rests the call fails RATE_LIMITED with the earliest rest as its retry delay, naming no key', async () => {
  // Called as "provider/model": a route's target would also cool down after the 429 that failed the call.
  const gw = pooled()
  const seen = since()
  mock.enqueue('openai', rateLimited(20))
  mock.enqueue('openai', rateLimited(5))
  mock.enqueue('openai', rateLimited(40))
  await assert.rejects(gw.chat({ model: 'pool/gpt-4o-mini', messages: hi }), (e) => {
    assert.equal(e.code, 'RATE_LIMITED')
    assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 40_000, `retryAfterMs ${e.retryAfterMs}`)
    for (const key of KEYS) assert.ok(!e.message.includes(key))
    return true
  })
  assert.equal(seen().length, 3, 'each key was tried once')
  const after = since()
  await assert.rejects(gw.chat({ model: 'pool/gpt-4o-mini', messages: hi }), (e) => {
    assert.equal(e.code, 'RATE_LIMITED')
    assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 5_000, 'the earliest rest ends first')
    assert.match(e.message, /every key of provider 'pool' is resting/)
    return true
  })
  assert.equal(after().length, 0, 'no request while every key rests')
  await gw.close()
})

test('other kinds send the pool key in their own header (anthropic x-api-key)', async () => {
  const gw = new Gateway({
    providers: { claude: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKeys: KEYS.slice(0, 2) } },
    maxRetries: 0,
  })
  const seen = since()
  await gw.chat({ model: 'claude/claude-haiku-4-5', messages: hi })
  assert.equal(seen()[0].headers['x-api-key'], KEYS[0])
  await gw.close()
})

test('bad pools are CONFIG at construction, naming what is wrong and no key', () => {
  const refused = (provider, pattern) =>
    assert.throws(
      () => new Gateway({ providers: { p: provider } }),
      (e) => {
        assert.equal(e.code, 'CONFIG')
        assert.match(e.message, pattern)
        for (const key of KEYS) assert.ok(!e.message.includes(key))
        return true
      },
    )
  refused({ kind: 'openai', apiKey: KEYS[0], apiKeys: KEYS }, /both apiKey and apiKeys/)
  refused({ kind: 'openai', apiKeys: [KEYS[0], ''] }, /apiKeys\[1\] is empty/)
  refused({ kind: 'openai', apiKeys: [`${KEYS[0]}\n`] }, /apiKeys\[0\] is not a valid HTTP header/)
  refused({ kind: 'mock', apiKeys: KEYS }, /kind 'mock' takes no key/)
  refused({ kind: 'azure', baseUrl: mock.azureV1BaseUrl, azureAdToken: async () => 't', apiKeys: KEYS }, /both apiKeys and azureAdToken/)
})
