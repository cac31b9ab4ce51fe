// RateLimiter, ResponseCache, CostTracker budgets and the Responses store on a Redis Cluster (redisUrl: the
// seed nodes, comma-separated): several Node processes act as one gateway, clear() reaches every primary, and a
// primary failing over mid-run costs no more than the calls in flight at that moment.
// Each suite starts a cluster of its own on spare loopback ports (__test__/helpers/own-cluster.mjs) and kills it
// at the end, also on failure; the shared Redis on 6379 is never touched. The children are the ones the
// single-Redis suites use (shared-state-child.mjs, shared-costs-child.mjs).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'

import OpenAI from 'openai'

import { CostTracker, FerrogateError, Gateway, RateLimiter, ResponseCache } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'
import { redisCli, startOwnCluster } from './helpers/own-cluster.mjs'
import { startServe, stopServe } from './helpers/serve-engines.mjs'

const STATE_CHILD = fileURLToPath(new URL('./helpers/shared-state-child.mjs', import.meta.url))
const COSTS_CHILD = fileURLToPath(new URL('./helpers/shared-costs-child.mjs', import.meta.url))
const MODEL = 'openai/gpt-4o-mini'
// The mock bills 10 prompt + 5 completion tokens: $0.00002 a call at these prices (as in shared-costs.test.mjs).
const PRICING = { [MODEL]: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } }
const CALL_USD = 0.00002

// Any rejection or exception nobody handled fails the run (checked last).
const unhandled = []
process.on('unhandledRejection', (reason) => unhandled.push(reason))
process.on('uncaughtException', (error) => unhandled.push(error))

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(async () => {
  await vendors.close()
  assert.deepEqual(unhandled, [], 'no unhandled rejection or uncaught exception')
})

const newPrefix = (what) => `fgtest:${what}:${process.pid}:${Math.random().toString(36).slice(2)}:`

/** Spawns a child helper; `lines` resolves with the JSON lines it printed once it exits with 0. */
function spawnChild(script, args) {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let signalReady
  const ready = new Promise((resolve) => (signalReady = resolve))
  proc.stdout.on('data', (chunk) => {
    out += chunk
    if (out.includes('ready')) signalReady()
  })
  proc.stderr.on('data', (chunk) => (err += chunk))
  const lines = once(proc, 'exit').then(([code]) => {
    assert.equal(code, 0, `child ${args[0]} exited with ${code}: ${err}`)
    return out.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line))
  })
  return { proc, ready, lines }
}

describe('on a 3-primary Redis Cluster', () => {
  let cluster
  before(async () => {
    cluster = await startOwnCluster({ primaries: 3, replicas: 0 })
  })
  after(async () => {
    await cluster?.stop()
  })

  test('4 processes with 500 concurrent acquire() each share one 600 requests/minute limit', async (t) => {
    const prefix = newPrefix('limit')
    const children = Array.from({ length: 4 }, () => spawnChild(STATE_CHILD, ['limit', cluster.url, prefix, '500']))
    await Promise.all(children.map((c) => c.ready))
    const go = performance.now()
    for (const { proc } of children) proc.stdin.write('go\n')
    const results = (await Promise.all(children.map((c) => c.lines))).map((lines) => lines.at(-1))
    const elapsedMs = performance.now() - go
    const admitted = results.reduce((sum, r) => sum + r.admitted, 0)
    assert.equal(results.reduce((sum, r) => sum + r.admitted + r.refused, 0), 2000)
    t.diagnostic(`admitted ${admitted} of 2,000 in ${Math.round(elapsedMs)} ms (per process: ${results.map((r) => r.admitted).join(', ')})`)
    // The burst is the whole minute: 600 at once, then one more every 100 ms while the calls last (the children's
    // connections are made after "go", and a debug build on a loaded machine takes a while): at most that many.
    const ceiling = 600 + Math.ceil(elapsedMs / 100)
    assert.ok(admitted >= 594 && admitted <= ceiling, `admitted ${admitted} of 2,000 (600 to ${ceiling})`)
    for (const r of results) assert.equal(r.stats.storeErrors, 0)
    // The bucket is one hash, hash-tagged by the limiter key, on the primary that owns that tag's slot.
    const owner = await cluster.primaryOf('{shared-key}')
    assert.deepEqual(await cluster.keysOn(owner, `${prefix}*`), [`${prefix}rl:{shared-key}`])
  })

  test('a hard budget shared by 4 processes with 100 calls in flight is never passed', async (t) => {
    const prefix = newPrefix('budget')
    const budgetUsd = 10 * CALL_USD
    const startFile = path.join(os.tmpdir(), `${prefix.replaceAll(':', '_')}go`)
    const config = {
      redisUrl: cluster.url, prefix, baseUrl: vendors.openaiBaseUrl, pricing: PRICING, model: MODEL, maxTokens: 5,
      message: 'please answer this question about the shared budget with a short reply',
      user: 'shared', budgetUsd, calls: 50, concurrency: 25, startFile,
    }
    const children = Array.from({ length: 4 }, () => spawnChild(COSTS_CHILD, [JSON.stringify(config)]))
    await Promise.all(children.map((c) => c.ready))
    fs.writeFileSync(startFile, 'go')
    let results
    try {
      results = (await Promise.all(children.map((c) => c.lines))).map((lines) => lines.at(-1))
    } finally {
      fs.rmSync(startFile, { force: true })
    }
    const ok = results.reduce((sum, r) => sum + r.ok, 0)
    const refused = results.reduce((sum, r) => sum + (r.codes.BUDGET_EXCEEDED ?? 0), 0)
    // A reservation the store did not answer within its command timeout fails closed (UPSTREAM_UNAVAILABLE, the
    // documented policy): on a loaded machine a few of the 100 overlapping first calls may; more is a fault.
    const failedClosed = results.reduce((sum, r) => sum + (r.codes.UPSTREAM_UNAVAILABLE ?? 0), 0)
    const others = results.flatMap((r) => Object.keys(r.codes).filter((code) => !['BUDGET_EXCEEDED', 'UPSTREAM_UNAVAILABLE'].includes(code)).map((code) => `${code}: ${r.messages[code]}`))
    assert.deepEqual(others, [], 'only budget refusals (and fail-closed timeouts)')
    assert.ok(failedClosed <= 4, `${failedClosed} calls failed closed: ${results.map((r) => r.messages.UPSTREAM_UNAVAILABLE).filter(Boolean)}`)
    assert.equal(ok + refused + failedClosed, 200)
    assert.ok(refused > 0 && ok >= 5, `served ${ok}, refused ${refused}`)
    const budgetNanos = Math.round(budgetUsd * 1e9)
    const servedNanos = Math.round(results.reduce((sum, r) => sum + r.costUsd, 0) * 1e9)
    assert.ok(servedNanos <= budgetNanos, `spend ${servedNanos} ≤ budget ${budgetNanos}`)
    // Each settlement script gets the user's day and month hashes at once (it adds to those that exist: a day
    // budget creates the day's); they share the user's tag, so the script runs on one slot and its spend lands.
    const day = new Date().toISOString().slice(0, 10)
    const owner = await cluster.primaryOf('{shared}')
    const keys = await cluster.keysOn(owner, `${prefix}*`)
    assert.deepEqual(keys, [`${prefix}budget:{shared}:day:${day}`])
    const redisSpent = Number(await redisCli(owner, 'hget', keys[0], 'spent'))
    assert.equal(redisSpent, servedNanos, 'Redis and the calls agree')
    t.diagnostic(`served ${ok}, refused ${refused}, failed closed ${failedClosed}, spent ${servedNanos} of ${budgetNanos} nanodollars`)
  })

  test('a response cached by one process is a hit in another', async () => {
    const prefix = newPrefix('cache')
    const prompt = `cluster-cache-${process.pid}-${Math.random()}`
    const [first] = await spawnChild(STATE_CHILD, ['cache', cluster.url, prefix, vendors.openaiBaseUrl, prompt]).lines
    const [second] = await spawnChild(STATE_CHILD, ['cache', cluster.url, prefix, vendors.openaiBaseUrl, prompt]).lines
    assert.equal(first.cached, false)
    assert.equal(second.cached, true)
    assert.equal(second.sharedHits, 1)
    assert.equal(second.content, first.content)
  })

  test('clear() removes a namespace wherever its slot lives, on every primary, and nothing else', async () => {
    const prefix = newPrefix('clear')
    const namespaces = Array.from({ length: 12 }, (_, i) => `tenant-${i}`)
    const caches = namespaces.map((namespace) => new ResponseCache({ redisUrl: cluster.url, prefix, namespace }))
    await Promise.all(caches.flatMap((cache) => Array.from({ length: 5 }, (_, k) => cache.set(`k${k}`, { content: `v${k}` }, 120))))
    const primaries = (await cluster.nodes()).filter((node) => node.primary).map((node) => node.port)
    const perNode = async () => Promise.all(primaries.map(async (port) => (await cluster.keysOn(port, `${prefix}*`)).length))
    const before = await perNode()
    assert.equal(before.reduce((a, b) => a + b, 0), 60)
    assert.ok(before.every((count) => count > 0), `keys on every primary: ${before}`)
    // Clear every other namespace: each primary loses some keys and keeps others.
    for (const [i, cache] of caches.entries()) if (i % 2 === 0) await cache.clear()
    const left = await perNode()
    assert.equal(left.reduce((a, b) => a + b, 0), 30)
    for (const [i, cache] of caches.entries()) {
      const elsewhere = new ResponseCache({ redisUrl: cluster.url, prefix, namespace: namespaces[i] })
      assert.equal((await elsewhere.get('k0'))?.content, i % 2 === 0 ? undefined : 'v0', namespaces[i])
      await elsewhere.close()
      await cache.clear()
      await cache.close()
    }
    assert.deepEqual(await perNode(), primaries.map(() => 0))
  })

  test('a Responses conversation stored by one serve process continues in another', async () => {
    const prefix = newPrefix('responses')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-cluster-responses-'))
    const config = {
      providers: { oai: { kind: 'openai', baseUrl: vendors.openaiBaseUrl, apiKey: 'sk-chat-fake' } },
      maxRetries: 0,
      responses: { redisUrl: cluster.url, prefix, ttlSeconds: 120 },
    }
    const servers = []
    try {
      for (const i of [0, 1]) servers.push(await startServe({ engine: 'native', file: path.join(dir, `config-${i}.json`), config }))
      const [a, b] = servers.map((server) => new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 }))
      const first = await a.responses.create({ model: 'oai/gpt-4o-mini', input: 'Remember 42.' })
      const second = await b.responses.create({ model: 'oai/gpt-4o-mini', input: 'What number?', previous_response_id: first.id })
      assert.equal(second.previous_response_id, first.id)
      const sent = vendors.requests.findLast((r) => r.vendor === 'openai').body.messages.map((m) => m.content)
      assert.deepEqual(sent, ['Remember 42.', 'echo: Remember 42.', 'What number?'])
      assert.equal((await a.responses.retrieve(second.id)).output_text, 'echo: What number?')
      const owner = await cluster.primaryOf(`{${first.id}}`)
      assert.deepEqual(await cluster.keysOn(owner, `${prefix}{${first.id}}`), [`${prefix}{${first.id}}`])
      await b.responses.delete(first.id)
      await assert.rejects(a.responses.retrieve(first.id), OpenAI.NotFoundError)
    } finally {
      await Promise.all(servers.map(stopServe))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a cluster URL with an unreachable seed list is a clear error without the password', async () => {
    const limiter = new RateLimiter({ requestsPerMinute: 60, redisUrl: 'redis://:hunter2@127.0.0.1:1,redis://:hunter2@127.0.0.1:2' })
    const error = await limiter.open().then(() => assert.fail('expected a rejection'), (e) => e)
    assert.ok(error instanceof FerrogateError)
    assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
    assert.match(error.message, /redis:\/\/127\.0\.0\.1:1,redis:\/\/127\.0\.0\.1:2/)
    assert.doesNotMatch(error.message, /hunter2/)
    limiter.close()
    assert.throws(() => new RateLimiter({ requestsPerMinute: 60, redisUrl: 'redis://127.0.0.1:1,http://x' }), { code: 'CONFIG' })
  })
})

describe('on a 3-primary cluster with one replica each', () => {
  let cluster
  before(async () => {
    cluster = await startOwnCluster({ primaries: 3, replicas: 1 })
  })
  after(async () => {
    await cluster?.stop()
  })

  test('a primary failing over mid-run: limiter, cache and budget calls continue on the promoted replica', async (t) => {
    const prefix = newPrefix('failover')
    const key = 'failover-key'
    // The primary that owns the limiter's key, and its replica; a cache namespace and a user whose keys live there
    // too (the namespace's tag is `{<length>:<namespace>}`, the user's `{<user>}`).
    const primaryPort = await cluster.primaryOf(`{${key}}`)
    const on = async (make) => {
      for (let i = 0; ; i++) if ((await cluster.primaryOf(make(i).tag)) === primaryPort) return make(i).name
    }
    const namespace = await on((i) => ({ name: `ns-${i}`, tag: `{${`ns-${i}`.length}:ns-${i}}` }))
    const user = await on((i) => ({ name: `user-${i}`, tag: `{user-${i}}` }))
    const nodes = await cluster.nodes()
    const primaryId = nodes.find((node) => node.port === primaryPort).id
    const replicaPort = nodes.find((node) => !node.primary && node.primaryId === primaryId).port

    const limiter = new RateLimiter({ requestsPerMinute: 1_000_000, redisUrl: cluster.url, prefix, failOpen: false })
    const cache = new ResponseCache({ redisUrl: cluster.url, prefix, namespace })
    const tracker = await CostTracker.open({ redisUrl: cluster.url, prefix, pricing: PRICING })
    tracker.setBudget(user, { usd: 1, period: 'day', hard: true })
    const gateway = new Gateway({
      providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
      costs: tracker,
      maxRetries: 0,
    })
    await Promise.all([limiter.open(), cache.open()])

    // The first chat loads the tokenizer (seconds in a debug build): before the clock starts.
    await gateway.chat({ model: MODEL, user, maxTokens: 5, messages: [{ role: 'user', content: 'warm up' }] })
    const outcomes = []
    let failedOverAt = null
    const started = Date.now()
    const failover = (async () => {
      await sleep(700)
      failedOverAt = outcomes.length
      assert.equal(await redisCli(replicaPort, 'cluster', 'failover'), 'OK')
    })()
    while (Date.now() - started < 4000) {
      const i = outcomes.length
      try {
        assert.equal((await limiter.acquire(key)).allowed, true)
        await cache.set(`k${i}`, { content: `v${i}` }, 60)
        assert.equal((await cache.get(`k${i}`))?.content, `v${i}`)
        await gateway.chat({ model: MODEL, user, maxTokens: 5, messages: [{ role: 'user', content: `round ${i}` }] })
        outcomes.push('ok')
      } catch (error) {
        assert.ok(error instanceof FerrogateError, String(error))
        outcomes.push(error.code)
      }
    }
    await failover
    const promoted = (await cluster.nodes()).find((node) => node.port === replicaPort)
    assert.equal(promoted.primary, true, 'the replica was promoted')
    const errors = outcomes.filter((outcome) => outcome !== 'ok')
    t.diagnostic(`${outcomes.length} rounds, failover at round ${failedOverAt}, errors: ${JSON.stringify(errors)}`)
    // Calls resumed: the last rounds, well after the promotion, all succeeded, on the new primary.
    assert.ok(outcomes.length - failedOverAt > 20, `rounds after the failover: ${outcomes.length - failedOverAt}`)
    assert.deepEqual(outcomes.slice(-20), Array(20).fill('ok'))
    assert.ok(errors.length <= 3, `at most the calls in flight at the switch fail: ${errors}`)
    // What was written before and after the switch is on the promoted replica: every cache entry (60 s TTL).
    const stored = (await cluster.keysOn(replicaPort, `${prefix}cache:*`)).length
    assert.ok(stored >= outcomes.length - errors.length, `${stored} cache entries on the promoted replica`)
    await gateway.close()
    await tracker.close()
    // Every served call was settled into the user's day hash, now on the promoted replica.
    const day = new Date().toISOString().slice(0, 10)
    const spent = Number(await redisCli(replicaPort, 'hget', `${prefix}budget:{${user}}:day:${day}`, 'spent'))
    assert.equal(spent, Math.round((outcomes.filter((o) => o === 'ok').length + 1) * CALL_USD * 1e9))
    limiter.close()
    await cache.close()
  })
})
