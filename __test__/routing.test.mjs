// Routing (issue 8): route aliases over several deployments, fallback, circuit breaking,
// priority admission, batch, health. Three fault-injecting OpenAI-compatible upstreams stand
// for the deployments; the mock vendors helper supplies an Anthropic-kind one. Assertions are
// on counts and order, never on timings.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, afterEach, before, describe, test } from 'node:test'

import { FerrogateError, Gateway } from '../index.js'
import { startFaultUpstream } from './helpers/fault-upstream.mjs'
import { startMockVendors } from './helpers/mock-vendors.mjs'

let a, b, c, vendors

before(async () => {
  ;[a, b, c] = await Promise.all(['a', 'b', 'c'].map(startFaultUpstream))
  vendors = await startMockVendors()
})
after(() => Promise.all([a, b, c, vendors].map((u) => u.close())))
afterEach(() => {
  for (const upstream of [a, b, c]) upstream.reset()
})

const provider = (upstream, extra = {}) => ({ kind: 'openai', apiKey: 'sk-test', baseUrl: upstream.baseUrl, ...extra })

function gateway({ routes, routing, providers = {}, ...rest }) {
  return new Gateway({
    timeoutMs: 10_000,
    maxRetries: 3,
    retryBaseDelayMs: 1,
    providers: { a: provider(a), b: provider(b), c: provider(c), ...providers },
    routes,
    routing,
    ...rest,
  })
}
const target = (name, extra = {}) => ({ provider: name, model: `${name}-model`, ...extra })
const ask = (content, extra = {}) => ({ model: 'smart', messages: [{ role: 'user', content }], ...extra })
const rejection = (promise) => promise.then((v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`), (e) => e)
const healthOf = (gw, name) => gw.health().find((h) => h.provider === name)

/** Polls `check` until it holds; the suite's own timeout bounds the wait. */
async function until(check) {
  while (!check()) await sleep(10)
}

/** n chats, at most `concurrency` at a time; returns the responses in order. */
async function chats(gw, n, concurrency = 1, extra = {}) {
  const items = await gw.batch(Array.from({ length: n }, (_, i) => ask(`call ${i}`, extra)), { concurrency })
  return items.map((item) => {
    if (!item.ok) throw item.error
    return item.response
  })
}

describe('route aliases', () => {
  test('a route alias picks a target; the response names the provider and model used', async () => {
    const gw = gateway({ routes: { smart: [target('a'), target('b')] } })
    const responses = await chats(gw, 20)
    for (const r of responses) {
      assert.ok(['a', 'b'].includes(r.provider), r.provider)
      assert.equal(r.model, `${r.provider}-model`)
      assert.equal(r.content, `${r.provider}: ${r.content.split(': ')[1]}`)
      assert.equal(r.attempts, 1)
    }
    assert.equal(a.requests.length + b.requests.length, 20)
  })

  test('"provider/model" keeps working beside routes', async () => {
    const gw = gateway({ routes: { smart: [target('a')] } })
    const r = await gw.chat({ model: 'c/direct', messages: [{ role: 'user', content: 'hi' }] })
    assert.equal(r.provider, 'c')
    assert.equal(r.content, 'c: hi')
  })

  test('models() lists the aliases first, then every provider/model', () => {
    const gw = gateway({
      routes: { smart: [target('a'), target('b')], cheap: [target('c')] },
      providers: { c: provider(c, { models: ['extra'] }) },
    })
    assert.deepEqual(gw.models(), ['cheap', 'smart', 'a/a-model', 'b/b-model', 'c/c-model', 'c/extra'])
  })

  test('bad routes are CONFIG errors at construction', () => {
    const cases = [
      [target('nope')],
      [target('a', { weight: 0 })],
      [target('a', { weight: -2 })],
      [target('a', { weight: Number.NaN })],
      [target('a', { weight: Infinity })],
      [target('a', { maxConcurrent: 0 })],
      [target('a', { maxConcurrent: 1.5 })],
      [],
    ]
    for (const targets of cases) {
      assert.throws(() => gateway({ routes: { smart: targets } }), (e) => e instanceof FerrogateError && e.code === 'CONFIG', JSON.stringify(targets))
    }
    assert.throws(() => gateway({ routes: { smart: [target('a')] }, routing: { errorRate: 2 } }), { code: 'CONFIG' })
    assert.throws(() => gateway({ routes: { smart: [target('a')] }, routing: { cooldownMs: -1 } }), { code: 'CONFIG' })
  })
})

describe('selection', () => {
  test('traffic shares follow the weights within ±4 points over 2,000 calls', async () => {
    const gw = gateway({ routes: { smart: [target('a', { weight: 5 }), target('b', { weight: 3 }), target('c', { weight: 2 })] } })
    const responses = await chats(gw, 2000)
    const share = (name) => responses.filter((r) => r.provider === name).length / responses.length
    for (const [name, expected] of [['a', 0.5], ['b', 0.3], ['c', 0.2]]) {
      assert.ok(Math.abs(share(name) - expected) <= 0.04, `${name}: ${share(name)} against ${expected}`)
    }
  })

  test('a slow target gets less traffic', async () => {
    const gw = gateway({ routes: { smart: [target('a'), target('b'), target('c')] } })
    c.setFault({ delayMs: 150 })
    await chats(gw, 90)
    const [fast1, fast2, slow] = [a, b, c].map((u) => u.requests.length)
    assert.ok(slow >= 1, 'the slow target was tried')
    assert.ok(slow < fast1 && slow < fast2, `slow ${slow}, fast ${fast1} and ${fast2}`)
    assert.ok(healthOf(gw, 'c').ewmaLatencyMs > healthOf(gw, 'a').ewmaLatencyMs)
  })
})

describe('fallback and circuit breaking', () => {
  test('one target failing every request: 200 calls succeed through the others; it is ejected, then probed', async () => {
    const gw = gateway({
      routes: { smart: [target('a'), target('b'), target('c')] },
      routing: { consecutiveFailures: 3, cooldownMs: 2000 },
    })
    a.setFault({ status: 500 })
    const started = Date.now()
    const responses = await chats(gw, 200, 4)
    const elapsed = Date.now() - started
    assert.equal(responses.length, 200)
    assert.ok(responses.every((r) => r.provider !== 'a'))
    // Three failures eject it. Calls already sent to a when the third failure lands (up to
    // the concurrency less one) still fail there; after that, at most one probe per cooldown.
    const concurrency = 4
    assert.ok(a.requests.length >= 3, `a saw ${a.requests.length}`)
    assert.ok(
      a.requests.length <= 3 + (concurrency - 1) + Math.ceil(elapsed / 2000),
      `a saw ${a.requests.length} in ${elapsed} ms`,
    )
    const retried = responses.filter((r) => r.attempts > 1)
    assert.equal(retried.length, a.requests.length, 'every failure on a cost exactly one extra attempt')
    assert.equal(healthOf(gw, 'a').state, 'ejected')
    assert.ok(healthOf(gw, 'a').ejectedUntil > Date.now())

    await until(() => healthOf(gw, 'a').state === 'half_open')
    const seen = a.requests.length
    const probed = await gw.chat(ask('after the cooldown'))
    assert.equal(a.requests.length, seen + 1, 'exactly one probe went to a')
    assert.equal(probed.attempts, 2)
    assert.notEqual(probed.provider, 'a')
    assert.equal(healthOf(gw, 'a').state, 'ejected', 'the failed probe ejects it again')

    a.setFault(null)
    await until(() => healthOf(gw, 'a').state === 'half_open')
    const recovered = await gw.chat(ask('recovered'))
    assert.equal(recovered.provider, 'a', 'the probe goes first')
    assert.equal(healthOf(gw, 'a').state, 'healthy')
  })

  test('a 429 with Retry-After cools that target for the hinted time and the call moves on', async () => {
    const gw = gateway({ routes: { smart: [target('a', { weight: 1000 }), target('b', { weight: 0.001 })] } })
    a.setFault({ status: 429, retryAfter: 30 })
    const first = await gw.chat(ask('first'))
    assert.equal(first.provider, 'b')
    assert.equal(first.attempts, 2)
    const health = healthOf(gw, 'a')
    assert.equal(health.state, 'ejected')
    assert.ok(health.ejectedUntil > Date.now() + 20_000, 'cooling for about the hinted 30 s')
    await chats(gw, 20)
    assert.equal(a.requests.length, 1, 'no call went to a while it cools down')
  })

  test('hangs, connection resets and 5xx fall back across targets within maxRetries', async () => {
    const gw = gateway({
      routes: { smart: [target('a'), target('b'), target('c')] },
      providers: { a: provider(a, { timeoutMs: 200 }) },
      routing: { consecutiveFailures: 1000 },
    })
    a.setFault({ hang: true })
    b.setFault({ reset: true })
    c.setFault({ status: 503 })
    const error = await rejection(gw.chat(ask('nobody answers', { maxRetries: 2 })))
    assert.equal(a.requests.length + b.requests.length + c.requests.length, 3, 'three attempts: one per target')
    assert.equal(a.requests.length, 1)
    assert.ok(['PROVIDER_ERROR', 'UPSTREAM_UNAVAILABLE', 'TIMEOUT'].includes(error.code), error.code)

    c.setFault(null)
    const r = await gw.chat(ask('c answers'))
    assert.equal(r.provider, 'c')
    assert.ok(r.attempts >= 1 && r.attempts <= 3)
    assert.equal(r.attempts, a.requests.length + b.requests.length + c.requests.length - 3)
  })

  test('a 400 is not retried, not sent elsewhere, and never ejects', async () => {
    const gw = gateway({ routes: { smart: [target('a', { weight: 1000 }), target('b', { weight: 0.001 })] }, routing: { consecutiveFailures: 2 } })
    a.setFault({ status: 400 })
    for (let i = 0; i < 5; i++) {
      const error = await rejection(gw.chat(ask('bad')))
      assert.equal(error.code, 'INVALID_REQUEST')
      assert.equal(error.provider, 'a')
    }
    assert.equal(b.requests.length, 0)
    assert.equal(healthOf(gw, 'a').state, 'healthy')
    assert.equal(healthOf(gw, 'a').errorRate, 0)

    a.setFault({ status: 401 })
    const auth = await rejection(gw.chat(ask('bad key')))
    assert.equal(auth.code, 'AUTHENTICATION')
    assert.equal(b.requests.length, 0)
  })

  test('a stream that fails before its first event falls back across vendors', async () => {
    const gw = gateway({
      providers: { claude: { kind: 'anthropic', apiKey: 'sk-ant-test', baseUrl: vendors.anthropicBaseUrl } },
      routes: { smart: [{ provider: 'claude', model: 'claude-sonnet-4-5', weight: 1e6 }, target('a', { weight: 1e-6 })] },
    })
    const before = vendors.requests.length
    vendors.enqueue('anthropic', { sse: [], destroyAfter: 0 })
    const chunks = []
    const r = await gw.stream(ask('stream please'), (text) => chunks.push(text))
    assert.equal(vendors.requests.length, before + 1, 'claude was tried first')
    assert.equal(r.provider, 'a')
    assert.equal(r.attempts, 2)
    assert.equal(chunks.join(''), 'a: stream please')
    assert.equal(r.content, chunks.join(''))

    vendors.enqueue('anthropic', { status: 529, body: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } })
    const overloaded = await gw.stream(ask('again'), () => {})
    assert.equal(overloaded.provider, 'a')
  })

  test('a stream that fails after delivering text is not retried and reports the error', async () => {
    const gw = gateway({ routes: { smart: [target('a', { weight: 1e6 }), target('b', { weight: 1e-6 })] } })
    a.setFault({ streamResetAfter: 2 })
    const chunks = []
    const error = await rejection(gw.stream(ask('one two three four'), (text) => chunks.push(text)))
    assert.equal(error.code, 'PROVIDER_ERROR')
    assert.equal(chunks.join(''), 'a: one ')
    assert.equal(b.requests.length, 0)
  })

  test('active health checks bring an ejected target back; a target can opt out', async () => {
    const gw = gateway({
      routes: { smart: [target('a'), target('b', { healthCheck: false })] },
      routing: { consecutiveFailures: 1, cooldownMs: 600_000, healthCheckIntervalMs: 50 },
    })
    a.setFault({ status: 500 })
    await until(() => healthOf(gw, 'a')?.state === 'ejected' || (gw.chat(ask('x')).catch(() => {}), false))
    a.setFault(null)
    await until(() => healthOf(gw, 'a').state === 'healthy')
    // openai-kind targets are checked with GET /models.
    const isCheck = (r) => r.path === '/v1/models'
    assert.ok(a.requests.filter(isCheck).length >= 1)
    assert.equal(b.requests.filter(isCheck).length, 0)
    await gw.close()
  })
})

describe('admission', () => {
  test('when every target is full, calls wait; higher priority first, FIFO within one', async () => {
    const gw = gateway({ routes: { smart: [target('a', { maxConcurrent: 1 })] } })
    let open
    const gate = new Promise((resolve) => (open = resolve))
    a.setFault((body) => (body.messages[0].content === 'holder' ? { gate } : null))
    const holder = gw.chat(ask('holder'))
    await until(() => a.requests.length === 1)
    const labels = [['low-1', 0], ['high-1', 5], ['low-2', 0], ['high-2', 5], ['mid', 1]]
    const calls = []
    for (const [label, priority] of labels) {
      calls.push(gw.chat(ask(label, { priority })))
      await until(() => healthOf(gw, 'a').queued === calls.length)
    }
    assert.equal(healthOf(gw, 'a').inFlight, 1)
    open()
    await Promise.all([holder, ...calls])
    assert.deepEqual(a.requests.map((r) => r.content), ['holder', 'high-1', 'high-2', 'mid', 'low-1', 'low-2'])
    assert.equal(a.maxInFlight, 1)
  })

  test('a call still queued at its timeoutMs fails cleanly with UPSTREAM_UNAVAILABLE', async () => {
    const gw = gateway({ routes: { smart: [target('a', { maxConcurrent: 1 })] } })
    let open
    const gate = new Promise((resolve) => (open = resolve))
    a.setFault((body) => (body.messages[0].content === 'holder' ? { gate } : null))
    const holder = gw.chat(ask('holder'))
    await until(() => a.requests.length === 1)
    const error = await rejection(gw.chat(ask('queued', { timeoutMs: 100 })))
    assert.ok(error instanceof FerrogateError)
    assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
    assert.equal(error.status, 503)
    assert.ok(error.retryAfterMs > 0)
    assert.equal(healthOf(gw, 'a').queued, 0, 'the timed-out call left the queue')
    assert.equal(a.requests.length, 1, 'it never reached the upstream')
    open()
    await holder
    const next = await gw.chat(ask('next'))
    assert.equal(next.content, 'a: next')
    assert.equal(healthOf(gw, 'a').inFlight, 0)
  })

  test('priority must be a whole number', async () => {
    const gw = gateway({ routes: { smart: [target('a')] } })
    const error = await rejection(gw.chat(ask('x', { priority: 1.5 })))
    assert.equal(error.code, 'INVALID_REQUEST')
  })
})

describe('batch', () => {
  test('keeps input order, isolates errors and bounds concurrency', async () => {
    const gw = gateway({ routes: { smart: [target('a')] } })
    // Later items answer sooner, so completion order is the reverse of input order.
    a.setFault((body) => ({ delayMs: 5 * (12 - Number(body.messages[0].content.split(' ')[1])) }))
    const requests = Array.from({ length: 12 }, (_, i) => ask(`item ${i}`))
    requests[3] = { model: 'smart', messages: [] }
    requests[7] = { model: 'nope/x', messages: [{ role: 'user', content: 'item 7' }] }
    const items = await gw.batch(requests, { concurrency: 3 })
    assert.equal(items.length, 12)
    items.forEach((item, i) => {
      if (i === 3 || i === 7) {
        assert.equal(item.ok, false)
        assert.ok(item.error instanceof FerrogateError)
        assert.equal(item.error.code, i === 3 ? 'INVALID_REQUEST' : 'NOT_FOUND')
      } else {
        assert.equal(item.ok, true)
        assert.equal(item.response.content, `a: item ${i}`)
      }
    })
    assert.ok(a.maxInFlight <= 3, `max in flight ${a.maxInFlight}`)
    assert.ok(a.maxInFlight >= 2, 'items ran concurrently')
  })

  test('bad arguments reject with INVALID_REQUEST', async () => {
    const gw = gateway({ routes: { smart: [target('a')] } })
    assert.equal((await rejection(gw.batch('nope'))).code, 'INVALID_REQUEST')
    assert.equal((await rejection(gw.batch([], { concurrency: 0 }))).code, 'INVALID_REQUEST')
    assert.deepEqual(await gw.batch([]), [])
  })
})
