// ferrogate/express pieces in an Express app: aiMiddleware identity, rateLimit headers, the
// error handler's statuses and redaction, /metrics as Prometheus text, sse(), the anomaly callback.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, test } from 'node:test'

import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { Gateway, FerrogateError } = require('../index.js')
const { aiMiddleware, rateLimit, errorHandler, metricsHandler, sse, redact } = require('../lib/express.js')

const UPSTREAM_KEY = 'sk-upstream-secret-abcdef'
let mock
const servers = []
const gateways = []

before(async () => {
  mock = await startMockVendors()
})

after(async () => {
  for (const server of servers) {
    server.closeAllConnections()
    server.close()
  }
  for (const gateway of gateways) await gateway.close()
  await mock.close()
})

function newGateway(extra = {}) {
  const gateway = new Gateway({
    providers: { openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: UPSTREAM_KEY } },
    maxRetries: 0,
    ...extra,
  })
  gateways.push(gateway)
  return gateway
}

async function listen(app) {
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await once(server, 'listening')
  return `http://127.0.0.1:${server.address().port}`
}

const hello = [{ role: 'user', content: 'hello' }]

test('aiMiddleware binds every call to the caller identity', async () => {
  const gateway = newGateway()
  const app = express()
  app.use(express.json())
  app.use(aiMiddleware(gateway, { user: (req) => req.get('x-user-id') }))
  app.post('/ask', async (req, res, next) => {
    try {
      // A body that names another user cannot spoof the identity.
      const answer = await req.ai.chat({ model: 'openai/gpt-4o-mini', messages: hello, user: 'someone-else' })
      let streamed = ''
      await req.ai.stream({ model: 'openai/gpt-4o-mini', messages: hello }, (t) => (streamed += t))
      for await (const event of req.ai.streamEvents({ model: 'openai/gpt-4o-mini', messages: hello })) {
        if (event.type === 'text') streamed += event.text
      }
      res.json({ user: req.ai.user, content: answer.content, streamed })
    } catch (error) {
      next(error)
    }
  })
  app.use(errorHandler({ log: false }))
  const url = await listen(app)
  const before = mock.requests.length
  const reply = await fetch(`${url}/ask`, { method: 'POST', headers: { 'x-user-id': 'alice' } })
  assert.equal(reply.status, 200)
  assert.deepEqual(await reply.json(), { user: 'alice', content: 'echo: hello', streamed: 'echo: helloecho: hello' })
  const users = mock.requests.slice(before).map((r) => r.body.user)
  assert.deepEqual(users, ['alice', 'alice', 'alice'])
})

test('rateLimit answers 429 with Retry-After and X-RateLimit headers, and passes allowed calls', async () => {
  // Stands in for the RateLimiter (same check() shape as API.md) until it is on main.
  const limit = 2
  const used = new Map()
  const limiter = {
    options: { requestsPerMinute: limit },
    check(key, tokens) {
      const n = (used.get(key) ?? 0) + 1
      used.set(key, n)
      const allowed = n <= limit
      return { allowed, retryAfterMs: allowed ? 0 : 12_500, remainingRequests: Math.max(0, limit - n), remainingTokens: 1000 - tokens }
    },
  }
  const app = express()
  app.use(rateLimit(limiter, { key: (req) => req.get('x-user-id'), tokens: () => 5 }))
  app.get('/', (req, res) => res.send('ok'))
  const url = await listen(app)
  const get = () => fetch(url, { headers: { 'x-user-id': 'bob' } })
  const first = await get()
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-ratelimit-limit'), '2')
  assert.equal(first.headers.get('x-ratelimit-remaining'), '1')
  assert.match(first.headers.get('x-ratelimit-reset'), /^\d+$/)
  assert.equal((await get()).headers.get('x-ratelimit-remaining'), '0')
  const refused = await get()
  assert.equal(refused.status, 429)
  assert.equal(refused.headers.get('retry-after'), '13')
  assert.equal(refused.headers.get('x-ratelimit-remaining'), '0')
  assert.equal(refused.headers.get('x-ratelimit-reset'), '13')
  const body = await refused.json()
  assert.equal(body.error.code, 'RATE_LIMITED')
  assert.equal(body.error.type, 'rate_limit_error')
  assert.match(body.error.id, /^fg_/)

  // An async limiter (acquire only) works the same way.
  const asyncApp = express()
  asyncApp.use(rateLimit({ acquire: async () => ({ allowed: false, retryAfterMs: 1000, remainingRequests: 0, remainingTokens: 0 }) }, { limit: 9 }))
  asyncApp.get('/', (req, res) => res.send('ok'))
  const asyncRefused = await fetch(await listen(asyncApp))
  assert.equal(asyncRefused.status, 429)
  assert.equal(asyncRefused.headers.get('x-ratelimit-limit'), '9')
  assert.equal(asyncRefused.headers.get('retry-after'), '1')
})

test('errorHandler: ferrogate statuses, a generic 500 otherwise, secrets redacted from body and log', async () => {
  const gateway = newGateway()
  const logged = []
  const app = express()
  app.get('/upstream-429', async (req, res, next) => {
    mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '4' } })
    gateway.chat({ model: 'openai/gpt-4o-mini', messages: hello }).catch(next)
  })
  app.get('/not-found', (req, res, next) => gateway.chat({ model: 'nobody/x', messages: hello }).catch(next))
  app.get('/invalid', (req, res, next) => gateway.chat({ model: 'openai/x', messages: [] }).catch(next))
  app.get('/leaky', () => {
    throw new FerrogateError({
      code: 'PROVIDER_ERROR',
      status: 502,
      requestId: 'fg_1',
      message: 'failed with Authorization: Bearer abc.def-123 at https://x.test/v1?api_key=sk-live-1234567890 reading /home/app/secrets/key.pem',
    })
  })
  app.get('/crash', () => {
    throw new Error('database password=hunter2 at /var/lib/db/sock')
  })
  app.use(errorHandler({ log: (line) => logged.push(line) }))
  const url = await listen(app)

  const limited = await fetch(`${url}/upstream-429`)
  assert.equal(limited.status, 429)
  assert.equal(limited.headers.get('retry-after'), '4')
  const limitedBody = await limited.json()
  assert.deepEqual(Object.keys(limitedBody.error).sort(), ['code', 'id', 'message', 'type'])
  assert.equal(limitedBody.error.code, 'RATE_LIMITED')
  assert.ok(!JSON.stringify(limitedBody).includes(UPSTREAM_KEY))

  assert.equal((await fetch(`${url}/not-found`)).status, 404)
  const invalid = await fetch(`${url}/invalid`)
  assert.equal(invalid.status, 400)
  assert.equal((await invalid.json()).error.code, 'INVALID_REQUEST')

  const leaky = await fetch(`${url}/leaky`)
  assert.equal(leaky.status, 502)
  const leakyText = (await leaky.json()).error.message
  for (const secret of ['abc.def-123', 'sk-live-1234567890', '/home/app/secrets']) {
    assert.ok(!leakyText.includes(secret), `${secret} leaked into ${leakyText}`)
  }
  assert.match(leakyText, /Bearer \[REDACTED\]/)
  assert.match(leakyText, /api_key=\[REDACTED\]/)

  const crash = await fetch(`${url}/crash`)
  assert.equal(crash.status, 500)
  const crashBody = await crash.json()
  assert.equal(crashBody.error.message, 'Internal server error')
  assert.equal(crashBody.error.code, 'INTERNAL')
  const log = logged.join('\n')
  assert.match(log, /password=\[REDACTED\]/)
  assert.ok(!log.includes('hunter2') && !log.includes('/var/lib/db') && !log.includes('abc.def-123'))
})

test('redact keeps ordinary text and URLs, removes keys, tokens and absolute paths', () => {
  assert.equal(redact('POST https://api.openai.com/v1/chat/completions failed'), 'POST https://api.openai.com/v1/chat/completions failed')
  assert.equal(redact('key=abc&x=1 token: xyz'), 'key=[REDACTED]&x=1 token: [REDACTED]')
  assert.equal(redact('open /etc/ferrogate/config.json'), 'open [PATH]')
  assert.equal(redact('at C:\\Users\\me\\key.txt'), 'at [PATH]')
  assert.equal(redact('x-api-key: sk-ant-api03-abcdefgh'), 'x-api-key: [REDACTED]')
})

test('metricsHandler serves Prometheus text with the listed series', async () => {
  const gateway = newGateway()
  await gateway.chat({ model: 'openai/gpt-4o-mini', messages: hello })
  let streamed = ''
  await gateway.stream({ model: 'openai/gpt-4o-mini', messages: hello }, (t) => (streamed += t))
  mock.enqueue('openai', { fixture: 'openai/error-500-server-error.json' })
  await assert.rejects(gateway.chat({ model: 'openai/gpt-4o-mini', messages: hello }))
  await assert.rejects(gateway.chat({ model: 'nowhere/x', messages: hello }))

  const app = express()
  app.get('/metrics', metricsHandler(gateway))
  const res = await fetch(`${await listen(app)}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await res.text()
  const families = Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]))
  const expected = {
    ferrogate_requests_total: 'COUNTER',
    ferrogate_request_duration_seconds: 'HISTOGRAM',
    ferrogate_time_to_first_token_seconds: 'HISTOGRAM',
    ferrogate_tokens_total: 'COUNTER',
    ferrogate_cost_usd_total: 'COUNTER',
    ferrogate_cache_hits_total: 'COUNTER',
    ferrogate_cache_misses_total: 'COUNTER',
    ferrogate_rate_limit_refusals_total: 'COUNTER',
    ferrogate_budget_refusals_total: 'COUNTER',
    ferrogate_circuit_state: 'GAUGE',
    ferrogate_latency_anomalies_total: 'COUNTER',
  }
  for (const [name, type] of Object.entries(expected)) {
    assert.ok(families[name], `${name} is exposed`)
    assert.equal(families[name].type, type, name)
  }
  const requests = families.ferrogate_requests_total.metrics
  const count = (labels) =>
    requests.filter((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v)).reduce((n, m) => n + Number(m.value), 0)
  assert.equal(count({ provider: 'openai', model: 'gpt-4o-mini', outcome: 'ok' }), 2)
  assert.equal(count({ provider: 'openai', outcome: 'error', code: 'PROVIDER_ERROR' }), 1)
  assert.equal(count({ model: 'unresolved', code: 'NOT_FOUND' }), 1)
  assert.equal(families.ferrogate_request_duration_seconds.metrics[0].buckets['+Inf'], '2')
  // Time to first token is measured on streams only.
  assert.equal(families.ferrogate_time_to_first_token_seconds.metrics[0].buckets['+Inf'], '1')
  assert.match(text, /^ferrogate_request_duration_seconds_count\{provider="openai",model="gpt-4o-mini"\} 2$/m)
  const tokens = families.ferrogate_tokens_total.metrics
  assert.equal(tokens.find((m) => m.labels.type === 'prompt').value, '20')

  // Strict line grammar: every line is a comment or `name{labels} value`.
  for (const line of text.trimEnd().split('\n')) {
    assert.match(line, /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? [-+0-9.eEInfNa]+)$/, line)
  }
})

test('onAnomaly is called with severity when a provider turns slow', async () => {
  const anomalies = []
  const gateway = newGateway({ onAnomaly: (a) => anomalies.push(a) })
  // A steady 50 ms baseline: the detector's spread floor is then 5 ms (10% of the mean), so a scheduling
  // hiccup of a few ms on a loaded machine is not an anomaly, while 600 ms is one by any measure.
  for (let i = 0; i < 15; i++) {
    mock.enqueue('openai', { delayMs: 50 })
    await gateway.chat({ model: 'openai/gpt-4o-mini', messages: hello })
  }
  assert.deepEqual(anomalies, [])
  mock.enqueue('openai', { delayMs: 600 })
  await gateway.chat({ model: 'openai/gpt-4o-mini', messages: hello })
  assert.equal(anomalies.length, 1)
  const [anomaly] = anomalies
  assert.equal(anomaly.provider, 'openai')
  assert.equal(anomaly.model, 'gpt-4o-mini')
  assert.ok(['warning', 'critical'].includes(anomaly.severity))
  assert.ok(anomaly.zScore >= 3)
  assert.ok(anomaly.latencyMs > anomaly.expectedMs)
  assert.match(gateway.metrics(), /ferrogate_latency_anomalies_total\{provider="openai",model="gpt-4o-mini",severity="(warning|critical)"\} 1/)
})

test('sse writes events with heartbeats and stops the upstream call when the client leaves', async () => {
  const gateway = newGateway()
  const app = express()
  app.get('/events', (req, res, next) => {
    sse(res, (signal) => gateway.streamEvents({ model: 'openai/gpt-4o-mini', messages: hello, signal }), { done: '[DONE]' }).catch(next)
  })
  app.get('/ticks', (req, res, next) => {
    async function* ticks() {
      yield 'one'
      await new Promise((r) => setTimeout(r, 80))
      yield { event: 'tick', data: { n: 2 } }
    }
    sse(res, ticks(), { heartbeatMs: 20 }).catch(next)
  })
  const url = await listen(app)
  const events = await fetch(`${url}/events`)
  assert.match(events.headers.get('content-type'), /^text\/event-stream/)
  assert.equal(events.headers.get('cache-control'), 'no-cache')
  const frames = (await events.text()).split('\n\n').filter(Boolean)
  assert.equal(frames.at(-1), 'data: [DONE]')
  const parsed = frames.slice(0, -1).map((f) => JSON.parse(f.slice('data: '.length)))
  assert.equal(parsed.filter((e) => e.type === 'text').map((e) => e.text).join(''), 'echo: hello')
  assert.equal(parsed.at(-1).type, 'done')

  const ticks = await (await fetch(`${url}/ticks`)).text()
  assert.match(ticks, /^data: one\n\n/)
  assert.match(ticks, /: heartbeat\n\n/)
  assert.match(ticks, /event: tick\ndata: \{"n":2\}\n\n$/)

  const since = mock.mark()
  mock.enqueue('openai', { sse: Array.from({ length: 100 }, (_, i) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: `t${i}` }, finish_reason: null }] })}\n\n`), delayMs: 30 })
  const controller = new AbortController()
  const leaving = await fetch(`${url}/events`, { signal: controller.signal })
  const reader = leaving.body.getReader()
  await reader.read()
  controller.abort()
  await mock.waitForClose({ since })
})

test('ferrogate/express loads with import and require (package exports), types beside it', async () => {
  const esm = await import('ferrogate/express')
  const cjs = require('ferrogate/express')
  for (const name of ['aiMiddleware', 'openaiRouter', 'rateLimit', 'errorHandler', 'metricsHandler', 'sse']) {
    assert.equal(typeof esm[name], 'function', name)
    assert.equal(esm[name], cjs[name], name)
  }
  const { exports } = require('../package.json')
  assert.ok(require('node:fs').existsSync(new URL(`../${exports['./express'].types}`, import.meta.url)))
})

test('metrics: route targets expose their circuit state, and the route alias labels its calls', async () => {
  const gateway = newGateway({ routes: { smart: [{ provider: 'openai', model: 'gpt-4o-mini' }] } })
  await gateway.chat({ model: 'smart', messages: hello })
  const families = Object.fromEntries(parsePrometheusTextFormat(gateway.metrics()).map((f) => [f.name, f]))
  assert.deepEqual(families.ferrogate_circuit_state.metrics, [{ labels: { route: 'smart', provider: 'openai', model: 'gpt-4o-mini' }, value: '0' }])
  assert.equal(families.ferrogate_requests_total.metrics.find((m) => m.labels.outcome === 'ok').labels.provider, 'openai')
})

test('rateLimit with the real RateLimiter: headers from its options, 429 once the minute is spent', async () => {
  const { RateLimiter } = require('../index.js')
  const app = express()
  app.use(rateLimit(new RateLimiter({ requestsPerMinute: 2 }), { key: () => 'carol' }))
  app.get('/', (req, res) => res.send('ok'))
  const url = await listen(app)
  const first = await fetch(url)
  assert.equal(first.status, 200)
  assert.equal(first.headers.get('x-ratelimit-limit'), '2')
  assert.equal(first.headers.get('x-ratelimit-remaining'), '1')
  assert.equal((await fetch(url)).status, 200)
  const refused = await fetch(url)
  assert.equal(refused.status, 429)
  assert.ok(Number(refused.headers.get('retry-after')) >= 1)
  assert.equal(refused.headers.get('x-ratelimit-remaining'), '0')
})
