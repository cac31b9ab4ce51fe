// RateLimiter alone (check/acquire arithmetic against the configured rates, never against
// the wall clock) and in the gateway (keyed by user, tokens estimated then settled with
// the real usage), against the loopback mock vendors.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { FerrogateError, Gateway, RateLimiter, ResponseCache, countTokens } from '../index.js'
import { DEFAULT_USAGE, startMockVendors } from './helpers/mock-vendors.mjs'

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

let markers = 0
const newMarker = () => `limits-test-${process.pid}-${++markers}`
const upstreamCalls = (marker) => vendors.requests.filter((r) => JSON.stringify(r.body ?? '').includes(marker)).length
const ask = (marker, extra = {}) => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `hello ${marker}` }], ...extra })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

function gateway(rateLimiter, overrides = {}) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 0,
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    rateLimiter,
    ...overrides,
  })
}

describe('RateLimiter class', () => {
  for (const [requestsPerMinute, burst] of [[100, undefined], [600, 50], [7, undefined]]) {
    test(`1,000 check() calls admit the configured count ±1 (${requestsPerMinute}/min, burst ${burst ?? 'default'})`, () => {
      const limiter = new RateLimiter({ requestsPerMinute, burst })
      let admitted = 0
      for (let i = 0; i < 1000; i++) if (limiter.check('k').allowed) admitted++
      const expected = burst ?? requestsPerMinute
      assert.ok(Math.abs(admitted - expected) <= 1, `admitted ${admitted}, expected ${expected} ±1`)
    })
  }

  test('keys are limited separately', () => {
    const limiter = new RateLimiter({ requestsPerMinute: 2 })
    assert.equal(limiter.check('a').allowed, true)
    assert.equal(limiter.check('a').allowed, true)
    assert.equal(limiter.check('a').allowed, false)
    assert.equal(limiter.check('b').allowed, true)
  })

  test('retryAfterMs is the time to the next cell at the configured rate', () => {
    const limiter = new RateLimiter({ requestsPerMinute: 60, burst: 1 })
    const started = performance.now()
    const first = limiter.check('k')
    const refused = limiter.check('k')
    const elapsed = performance.now() - started
    assert.deepEqual([first.allowed, first.retryAfterMs, first.remainingRequests], [true, 0, 0])
    assert.equal(refused.allowed, false)
    // One request per second: the next is due 1000 ms after the first, less what has passed.
    assert.ok(refused.retryAfterMs <= 1000, `${refused.retryAfterMs} <= 1000`)
    assert.ok(refused.retryAfterMs >= 1000 - elapsed - 1, `${refused.retryAfterMs} >= ${1000 - elapsed - 1}`)
    assert.equal(refused.remainingTokens, Infinity)
  })

  test('tokens: a request is admitted while its tokens fit, and a refusal consumes nothing', async () => {
    // 60 tokens per minute refill one per second; the bucket holds 1000.
    const limiter = new RateLimiter({ tokensPerMinute: 60, burst: 1000 })
    const first = limiter.check('k', 700)
    assert.deepEqual([first.allowed, first.remainingTokens], [true, 300])
    const refused = limiter.check('k', 500)
    assert.equal(refused.allowed, false)
    assert.equal(refused.remainingTokens, 300)
    // 200 tokens missing at one per second.
    assert.ok(refused.retryAfterMs > 199_000 && refused.retryAfterMs <= 200_000, `${refused.retryAfterMs}`)
    const acquired = await limiter.acquire('k', 300)
    assert.deepEqual([acquired.allowed, acquired.remainingTokens], [true, 0])
  })

  test('requests and tokens together: both must admit', () => {
    const limiter = new RateLimiter({ requestsPerMinute: 10, tokensPerMinute: 100 })
    assert.equal(limiter.check('k', 90).allowed, true)
    const refused = limiter.check('k', 20)
    assert.equal(refused.allowed, false)
    assert.equal(refused.remainingRequests, 9, 'the refused request was not counted')
    assert.equal(limiter.check('k', 10).allowed, true)
  })

  test('bad options are CONFIG errors, bad token counts INVALID_REQUEST', () => {
    for (const options of [{}, { requestsPerMinute: 0 }, { tokensPerMinute: -5 }, { requestsPerMinute: 10, burst: Number.NaN }]) {
      assert.throws(() => new RateLimiter(options), (e) => e instanceof FerrogateError && e.code === 'CONFIG', JSON.stringify(options))
    }
    const limiter = new RateLimiter({ requestsPerMinute: 10 })
    assert.throws(() => limiter.check('k', -1), (e) => e.code === 'INVALID_REQUEST')
    assert.throws(() => limiter.check('k', 1.5), (e) => e.code === 'INVALID_REQUEST')
  })
})

describe('rate limits in the gateway', () => {
  test('a refusal is RATE_LIMITED, 429, with retryAfterMs, and never reaches the vendor', async () => {
    const gw = gateway(new RateLimiter({ requestsPerMinute: 2 }))
    const marker = newMarker()
    await gw.chat(ask(marker, { user: 'alice' }))
    await gw.chat(ask(marker, { user: 'alice' }))
    const error = await rejection(gw.chat(ask(marker, { user: 'alice' })))
    assert.ok(error instanceof FerrogateError)
    assert.equal(error.code, 'RATE_LIMITED')
    assert.equal(error.status, 429)
    assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 30_000, `${error.retryAfterMs}`)
    assert.equal(error.provider, undefined, 'our limiter, not the vendor')
    assert.equal(upstreamCalls(marker), 2)
    // Another user has a bucket of their own; no user means "anonymous".
    await gw.chat(ask(marker, { user: 'bob' }))
    await gw.chat(ask(marker))
    assert.equal(upstreamCalls(marker), 4)
    const stats = gw.stats()
    assert.equal(stats.limiterRefusals, 1)
    assert.equal(stats.callsByErrorCode.RATE_LIMITED, 1)
  })

  test('streams are limited too', async () => {
    const gw = gateway(new RateLimiter({ requestsPerMinute: 1 }))
    const marker = newMarker()
    await gw.stream(ask(marker), () => {})
    const error = await rejection(gw.stream(ask(marker), () => {}))
    assert.equal(error.code, 'RATE_LIMITED')
  })

  test('tokens are estimated before the call (prompt + maxTokens) and settled with the real usage', async () => {
    // The bucket holds 1000 tokens and refills one per minute: nothing refills during the test.
    const limiter = new RateLimiter({ tokensPerMinute: 1, burst: 1000 })
    const gw = gateway(limiter, { cache: new ResponseCache() })
    const marker = newMarker()
    const request = ask(marker, { user: 'carol', maxTokens: 900 })
    const prompt = countTokens('gpt-4o-mini', request.messages)
    assert.ok(prompt + 900 <= 1000, 'the estimate fits the bucket')
    assert.ok(prompt + 900 + 200 > 1000, 'two estimates would not')
    await gw.chat(request)
    const used = DEFAULT_USAGE.promptTokens + DEFAULT_USAGE.completionTokens
    // Without settling, only 1000 - prompt - 900 would be left.
    assert.equal(limiter.check('carol', 0).remainingTokens, 1000 - used)
    // A cache hit charges no tokens once settled.
    assert.equal((await gw.chat(request)).cached, true)
    assert.equal(limiter.check('carol', 0).remainingTokens, 1000 - used)
    // An estimate that does not fit is refused before the call.
    const tooBig = await rejection(gw.chat(ask(`${marker}-big`, { user: 'carol', maxTokens: 990 })))
    assert.equal(tooBig.code, 'RATE_LIMITED')
    assert.equal(upstreamCalls(`${marker}-big`), 0)
  })

  test('a failed call gives its estimated tokens back', async () => {
    const limiter = new RateLimiter({ tokensPerMinute: 1, burst: 1000 })
    const gw = gateway(limiter)
    vendors.enqueue('openai', { status: 400, body: { error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } } })
    const error = await rejection(gw.chat(ask(newMarker(), { user: 'dave', maxTokens: 500 })))
    assert.equal(error.code, 'INVALID_REQUEST')
    assert.equal(limiter.check('dave', 0).remainingTokens, 1000)
  })
})
