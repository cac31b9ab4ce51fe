// RateLimiter and ResponseCache on Redis (redisUrl): several Node processes act as one gateway, and a Redis
// that goes away mid-run costs only what the fault policy says (docs/API.md "Shared state on Redis").
// Against the real Redis on 127.0.0.1:6379 (each test under its own key prefix, removed afterwards) and, for
// the outage, a redis-server of the test's own that it kills and restarts.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

import { Redis } from 'ioredis'

import { FerrogateError, Gateway, RateLimiter, ResponseCache } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'
import { startOwnRedis } from './helpers/own-redis.mjs'

const REDIS_URL = 'redis://127.0.0.1:6379/'
const CHILD = fileURLToPath(new URL('./helpers/shared-state-child.mjs', import.meta.url))

// Any rejection or exception nobody handled fails the suite (checked last).
const unhandled = []
process.on('unhandledRejection', (reason) => unhandled.push(reason))
process.on('uncaughtException', (error) => unhandled.push(error))

let vendors
let admin
const prefixes = []
const newPrefix = (what) => {
  const prefix = `fgtest:${what}:${process.pid}:${Math.random().toString(36).slice(2)}:`
  prefixes.push(prefix)
  return prefix
}

before(async () => {
  vendors = await startMockVendors()
  admin = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await admin.connect()
})

after(async () => {
  for (const prefix of prefixes) {
    let cursor = '0'
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      if (keys.length > 0) await admin.del(...keys)
      cursor = next
    } while (cursor !== '0')
  }
  await admin.quit()
  await vendors.close()
})

const upstreamCalls = (marker) => vendors.requests.filter((r) => JSON.stringify(r.body ?? '').includes(marker)).length
const ask = (prompt, user = 'anyone') => ({ model: 'openai/gpt-4o-mini', user, messages: [{ role: 'user', content: prompt }] })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

function gateway(options) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 0,
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    ...options,
  })
}

/** Runs the child helper; resolves with the JSON lines it printed. `onLine` sees each as it comes. */
function child(args, onLine = () => {}) {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const lines = []
  proc.stdout.on('data', (chunk) => {
    out += chunk
    let newline
    while ((newline = out.indexOf('\n')) >= 0) {
      const line = JSON.parse(out.slice(0, newline))
      out = out.slice(newline + 1)
      lines.push(line)
      onLine(line, proc)
    }
  })
  proc.stderr.on('data', (chunk) => (err += chunk))
  const done = once(proc, 'exit').then(([code]) => {
    assert.equal(code, 0, `child ${args[0]} exited with ${code}: ${err}`)
    return lines
  })
  return { proc, done }
}

async function sparePort() {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('shared across processes', () => {
  test('4 processes with 500 concurrent acquire() each share one 600 requests/minute limit', async (t) => {
    const prefix = newPrefix('limit')
    const ready = []
    const children = Array.from({ length: 4 }, () => {
      let signal
      ready.push(new Promise((resolve) => (signal = resolve)))
      return child(['limit', REDIS_URL, prefix, '500'], (line) => line === 'ready' && signal())
    })
    await Promise.all(ready)
    for (const { proc } of children) proc.stdin.write('go\n')
    const results = (await Promise.all(children.map((c) => c.done))).map((lines) => lines.at(-1))
    const admitted = results.reduce((sum, r) => sum + r.admitted, 0)
    const refused = results.reduce((sum, r) => sum + r.refused, 0)
    assert.equal(admitted + refused, 2000)
    t.diagnostic(`admitted ${admitted} of 2,000 (per process: ${results.map((r) => r.admitted).join(', ')})`)
    // The burst is the whole minute: 600 at once, then one more every 100 ms the burst lasts (a debug build
    // on a busy machine takes a few hundred ms for 2,000 calls). The goal is within 1% of 600.
    assert.ok(admitted >= 594 && admitted <= 606, `admitted ${admitted} of 2,000 (goal 600 ±1%)`)
    for (const r of results) assert.equal(r.stats.storeErrors, 0)
  })

  test('a response cached by one process is a hit in another', async () => {
    const prefix = newPrefix('cache')
    const prompt = `shared-cache-${process.pid}-${Math.random()}`
    const [first] = await child(['cache', REDIS_URL, prefix, vendors.openaiBaseUrl, prompt]).done
    const [second] = await child(['cache', REDIS_URL, prefix, vendors.openaiBaseUrl, prompt]).done
    assert.equal(first.cached, false)
    assert.equal(second.cached, true)
    assert.equal(second.sharedHits, 1)
    assert.equal(second.content, first.content)
    assert.equal(upstreamCalls(prompt), 1)
    // Another prefix is another namespace: a miss there.
    const [elsewhere] = await child(['cache', REDIS_URL, newPrefix('cache'), vendors.openaiBaseUrl, prompt]).done
    assert.equal(elsewhere.cached, false)
    assert.equal(upstreamCalls(prompt), 2)
  })
})

describe('ResponseCache with redisUrl, from JS', () => {
  test('get/set/delete/clear return Promises and reach Redis; stats count the shared tier', async () => {
    const prefix = newPrefix('js-cache')
    const one = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'tenant' })
    const two = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'tenant' })
    assert.equal(one.synchronous, false)
    const pending = one.set('k1', { content: 'hello', usage: { promptTokens: 3, completionTokens: 2 } }, 60)
    assert.ok(pending instanceof Promise)
    await pending
    const ttl = await admin.pttl(`${prefix}cache:{6:tenant}:k1`)
    assert.ok(ttl > 50_000 && ttl <= 60_000, `PTTL ${ttl}`)
    const hit = await two.get('k1')
    assert.equal(hit.content, 'hello')
    assert.equal(hit.usage.totalTokens, 5)
    assert.deepEqual(two.stats(), { hits: 1, misses: 0, entries: 1, bytes: two.stats().bytes, sharedHits: 1, sharedErrors: 0, sharedSkipped: 0 })
    assert.equal(await two.get('absent'), undefined)
    assert.equal(await one.delete('k1'), true)
    assert.equal(await admin.exists(`${prefix}cache:{6:tenant}:k1`), 0)
    await one.set('k2', { content: 'x' })
    await one.set('k3', { content: 'y' })
    await one.clear()
    assert.deepEqual(await admin.keys(`${prefix}*`), [])
    // Bad arguments reject (never throw synchronously) with INVALID_REQUEST.
    const bad = await rejection(one.set('k', { notContent: true }))
    assert.ok(bad instanceof FerrogateError)
    assert.equal(bad.code, 'INVALID_REQUEST')
    await one.close()
    await two.close()
  })

  test('a namespace that extends another with a colon neither reads nor clears the other (acme vs acme:eu)', async () => {
    const prefix = newPrefix('js-ns')
    const acme = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'acme' })
    const acmeEu = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'acme:eu' })
    await acmeEu.set('k', { content: 'for acme:eu only' }, 60)
    // Another process (no local tier) of tenant acme asks for "eu:k".
    const acmeElsewhere = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'acme' })
    assert.equal(await acmeElsewhere.get('eu:k'), undefined)
    await acme.set('mine', { content: 'for acme' }, 60)
    await acme.clear()
    const eu = new ResponseCache({ redisUrl: REDIS_URL, prefix, namespace: 'acme:eu' })
    assert.equal((await eu.get('k'))?.content, 'for acme:eu only')
    assert.equal(await eu.get('mine'), undefined)
    // Both namespaces' keys carry a hash tag: one namespace, one Redis Cluster slot.
    assert.deepEqual((await admin.keys(`${prefix}*`)).sort(), [`${prefix}cache:{7:acme:eu}:k`])
    await acmeEu.clear()
    assert.deepEqual(await admin.keys(`${prefix}*`), [])
    for (const cache of [acme, acmeEu, acmeElsewhere, eu]) await cache.close()
  })

  test('answers larger than maxValueBytes stay in the process that made them', async () => {
    const prefix = newPrefix('js-cap')
    const cache = new ResponseCache({ redisUrl: REDIS_URL, prefix, maxValueBytes: 1000 })
    await cache.set('big', { content: 'x'.repeat(5000) })
    await cache.set('small', { content: 'x' })
    assert.equal((await cache.get('big')).content.length, 5000)
    assert.deepEqual(await admin.keys(`${prefix}*`), [`${prefix}cache:{0:}:small`])
    assert.equal(cache.stats().sharedSkipped, 1)
    await cache.close()
  })
})

describe('RateLimiter with redisUrl, from JS', () => {
  test('acquire() enforces the limit; check() throws CONFIG pointing to acquire()', async () => {
    const prefix = newPrefix('js-limit')
    const limiter = new RateLimiter({ requestsPerMinute: 60, burst: 3, redisUrl: REDIS_URL, prefix })
    assert.equal(limiter.synchronous, false)
    const decisions = []
    for (let i = 0; i < 5; i++) decisions.push(await limiter.acquire('alice'))
    assert.deepEqual(decisions.map((d) => d.allowed), [true, true, true, false, false])
    assert.deepEqual(decisions.map((d) => d.remainingRequests), [2, 1, 0, 0, 0])
    assert.ok(decisions[3].retryAfterMs > 0 && decisions[3].retryAfterMs <= 1000, `${decisions[3].retryAfterMs}`)
    assert.equal(decisions[0].remainingTokens, Infinity)
    const ttl = await admin.pttl(`${prefix}rl:{alice}`)
    assert.ok(ttl > 0 && ttl <= 3001, `PTTL ${ttl}`)
    const error = (() => {
      try {
        limiter.check('alice')
      } catch (e) {
        return e
      }
    })()
    assert.ok(error instanceof FerrogateError)
    assert.equal(error.code, 'CONFIG')
    assert.match(error.message, /acquire/)
    assert.deepEqual(limiter.stats(), { backend: 'redis', storeErrors: 0, failOpenAdmissions: 0 })
    limiter.close()
    assert.equal((await rejection(limiter.acquire('alice'))).code, 'CONFIG')
  })

  test('limits and tokens hold through the gateway', async () => {
    const prefix = newPrefix('gw-limit')
    const limiter = new RateLimiter({ requestsPerMinute: 2, tokensPerMinute: 100_000, redisUrl: REDIS_URL, prefix })
    const gw = gateway({ rateLimiter: limiter })
    const marker = `gw-limit-${process.pid}`
    await gw.chat(ask(`${marker} 1`, 'bob'))
    await gw.chat(ask(`${marker} 2`, 'bob'))
    const refused = await rejection(gw.chat(ask(`${marker} 3`, 'bob')))
    assert.equal(refused.code, 'RATE_LIMITED')
    assert.ok(refused.retryAfterMs > 0)
    assert.equal(upstreamCalls(`${marker} 3`), 0)
    await gw.close()
    limiter.close()
  })

  test('with both on Redis, a refused call never gets the cached answer, and its lookup is not counted', async () => {
    const prefix = newPrefix('gw-limit-cache')
    const limiter = new RateLimiter({ requestsPerMinute: 1, redisUrl: REDIS_URL, prefix })
    const cache = new ResponseCache({ redisUrl: REDIS_URL, prefix })
    const gw = gateway({ rateLimiter: limiter, cache })
    const marker = `gw-limit-cache-${process.pid}`
    const first = await gw.chat(ask(marker, 'carol'))
    assert.equal(first.cached, false)
    const refused = await rejection(gw.chat(ask(marker, 'carol')))
    assert.equal(refused.code, 'RATE_LIMITED')
    assert.deepEqual([cache.stats().hits, cache.stats().misses], [0, 1])
    // Another user is admitted and gets the stored answer from the same lookup path.
    const hit = await gw.chat(ask(marker, 'dave'))
    assert.equal(hit.cached, true)
    assert.equal(hit.content, first.content)
    assert.deepEqual([cache.stats().hits, cache.stats().misses], [1, 1])
    assert.equal(upstreamCalls(marker), 1)
    await gw.close()
    await cache.close()
    limiter.close()
  })
})

describe('construction errors', () => {
  test('an unreachable Redis: open() and fail-closed calls are UPSTREAM_UNAVAILABLE naming the server, never the password', async () => {
    const port = await sparePort()
    const url = `redis://:hunter2-secret@127.0.0.1:${port}/`
    const limiter = new RateLimiter({ requestsPerMinute: 10, redisUrl: url })
    const cache = new ResponseCache({ redisUrl: url })
    const errors = [
      await rejection(limiter.open()),
      await rejection(cache.open()),
      // Calls follow the fault policy: the limiter (failOpen: false) refuses; the cache misses.
      await rejection(limiter.acquire('k')),
    ]
    assert.equal(await cache.get('k'), undefined)
    for (const error of errors) {
      assert.ok(error instanceof FerrogateError, String(error))
      assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
      assert.equal(error.status, 503)
      assert.ok(error.message.includes(`redis://127.0.0.1:${port}/`), error.message)
      assert.ok(!error.message.includes('hunter2'), error.message)
      assert.ok(!String(error.stack).includes('hunter2'))
    }
    limiter.close()
    await cache.close()
  })

  test('the constructors never block the event loop while they connect (a server that accepts and never answers)', async () => {
    // Accepts connections and never answers: the worst case, where only the connect timeout (3 s) ends the wait.
    const accepted = new Set()
    const silent = net.createServer((socket) => {
      accepted.add(socket)
      socket.on('error', () => {})
    })
    silent.listen(0, '127.0.0.1')
    await once(silent, 'listening')
    const url = `redis://:hunter2-secret@127.0.0.1:${silent.address().port}/`
    const CONNECT_TIMEOUT_MS = 3_000
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    await sleep(50) // the sampling timer runs from the next turn of the loop
    const started = performance.now()
    const limiter = new RateLimiter({ requestsPerMinute: 10, redisUrl: url, failOpen: true })
    const cache = new ResponseCache({ redisUrl: url })
    const constructing = performance.now() - started
    await sleep(100)
    delay.disable()
    const maxDelayMs = delay.max / 1e6
    // Wide margins: blocking for the connect timeout would take 3 s (twice, once per constructor).
    assert.ok(constructing < CONNECT_TIMEOUT_MS / 2, `the constructors took ${constructing} ms`)
    assert.ok(maxDelayMs < CONNECT_TIMEOUT_MS / 2, `event loop blocked for ${maxDelayMs} ms`)
    // A call made before the connection is up waits for it, then follows the fault policy (failOpen admits).
    const decision = await limiter.acquire('k')
    assert.equal(decision.allowed, true)
    assert.equal(limiter.stats().failOpenAdmissions, 1)
    const error = await rejection(cache.open())
    assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
    assert.ok(!error.message.includes('hunter2'), error.message)
    limiter.close()
    await cache.close()
    // The sockets this server accepted would keep the test process alive: end them with it.
    for (const socket of accepted) socket.destroy()
    silent.close()
  })

  test('calls made right after the constructor wait for the connection and reach Redis', async () => {
    const prefix = newPrefix('lazy')
    const limiter = new RateLimiter({ requestsPerMinute: 2, redisUrl: REDIS_URL, prefix })
    const cache = new ResponseCache({ redisUrl: REDIS_URL, prefix })
    const [first, second, third] = [await limiter.acquire('u'), await limiter.acquire('u'), await limiter.acquire('u')]
    assert.deepEqual([first.allowed, second.allowed, third.allowed], [true, true, false])
    await cache.set('k', { content: 'stored before open()' })
    assert.equal(await cache.open(), cache)
    assert.equal(await limiter.open(), limiter)
    assert.equal(limiter.stats().storeErrors, 0)
    assert.equal(cache.stats().sharedErrors, 0)
    assert.equal((await admin.keys(`${prefix}cache:*`)).length, 1)
    limiter.close()
    await cache.close()
  })

  test('a URL that is not Redis, or wrong options, are CONFIG', () => {
    const codeOf = (build) => {
      try {
        build()
      } catch (e) {
        return [e.code, e.message]
      }
      return ['no error', '']
    }
    const [code, message] = codeOf(() => new ResponseCache({ redisUrl: 'http://user:pw@example.test/' }))
    assert.equal(code, 'CONFIG')
    assert.ok(!message.includes('pw@'), message)
    assert.equal(codeOf(() => new RateLimiter({ requestsPerMinute: 10, redisUrl: 'not a url' }))[0], 'CONFIG')
    // Wrong limits are reported before any connection is tried (port 1: nothing listens).
    assert.equal(codeOf(() => new RateLimiter({ requestsPerMinute: -1, redisUrl: 'redis://127.0.0.1:1/' }))[0], 'CONFIG')
    assert.equal(codeOf(() => new ResponseCache({ maxValueBytes: 0, redisUrl: 'redis://127.0.0.1:1/' }))[0], 'CONFIG')
    // Shared-store options without redisUrl would silently do nothing: they are refused.
    const [limiterCode, limiterMessage] = codeOf(() => new RateLimiter({ requestsPerMinute: 10, failOpen: true }))
    assert.equal(limiterCode, 'CONFIG')
    assert.match(limiterMessage, /need redisUrl/)
    assert.equal(codeOf(() => new RateLimiter({ requestsPerMinute: 10, prefix: 'app:' }))[0], 'CONFIG')
    assert.equal(codeOf(() => new ResponseCache({ prefix: 'app:' }))[0], 'CONFIG')
    assert.equal(codeOf(() => new ResponseCache({ maxValueBytes: 1024 }))[0], 'CONFIG')
  })
})

/** Polls `probe` until it returns true (Redis is back and the connection re-established). */
async function until(probe, what) {
  const deadline = Date.now() + 15_000
  while (!(await probe())) {
    if (Date.now() > deadline) assert.fail(`${what} did not resume within 15 s`)
    await sleep(50)
  }
}

describe('Redis stops mid-run and comes back', () => {
  let redis
  before(async () => {
    redis = await startOwnRedis()
  })
  after(() => redis.stop())

  for (const failOpen of [true, false]) {
    test(`failOpen ${failOpen}: the policy holds while Redis is down, and service resumes after`, async () => {
      const prefix = `fgtest:outage:${process.pid}:${failOpen}:`
      const limiter = new RateLimiter({ requestsPerMinute: 3, redisUrl: redis.url, failOpen, prefix })
      const cache = new ResponseCache({ redisUrl: redis.url, prefix })
      const otherProcessCache = new ResponseCache({ redisUrl: redis.url, prefix })
      const gw = gateway({ rateLimiter: limiter, cache })
      const cacheOnly = gateway({ cache })
      const peer = gateway({ cache: otherProcessCache })
      const marker = `outage-${failOpen}-${process.pid}`
      const user = `user-${failOpen}`

      // Up: three calls pass, the fourth is refused; the second of two identical calls is a hit.
      assert.equal((await gw.chat(ask(`${marker} a`, user))).cached, false)
      assert.equal((await gw.chat(ask(`${marker} a`, user))).cached, true)
      assert.equal((await gw.chat(ask(`${marker} b`, user))).cached, false)
      assert.equal((await rejection(gw.chat(ask(`${marker} c`, user)))).code, 'RATE_LIMITED')

      await redis.stop()
      const before = { limiter: limiter.stats(), cache: cache.stats() }
      if (failOpen) {
        // Admitted unchecked (the limit of 3 is already spent), answered from upstream: a miss.
        for (const n of [1, 2, 3]) {
          const response = await gw.chat(ask(`${marker} down ${n}`, user))
          assert.equal(response.cached, false)
        }
        assert.equal(limiter.stats().failOpenAdmissions - before.limiter.failOpenAdmissions, 3)
        assert.ok((await limiter.acquire(user)).allowed)
      } else {
        for (const n of [1, 2, 3]) {
          const error = await rejection(gw.chat(ask(`${marker} down ${n}`, `fresh-${n}`)))
          assert.ok(error instanceof FerrogateError)
          assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
          assert.equal(error.status, 503)
          assert.match(error.message, /unreachable/)
          assert.equal(upstreamCalls(`${marker} down ${n}`), 0)
        }
        assert.equal((await rejection(limiter.acquire(user))).code, 'UPSTREAM_UNAVAILABLE')
        assert.equal(limiter.stats().failOpenAdmissions, 0)
        // The cache alone still answers: misses go upstream.
        assert.equal((await cacheOnly.chat(ask(`${marker} cache-only`))).cached, false)
      }
      assert.ok(limiter.stats().storeErrors > before.limiter.storeErrors)
      assert.ok(cache.stats().sharedErrors > before.cache.sharedErrors)
      // From JS: a miss, never a rejection; an explicit invalidation reports the outage.
      assert.equal(await cache.get('nothing-here'), undefined)
      await cache.set('while-down', { content: 'kept locally' })
      assert.equal((await cache.get('while-down')).content, 'kept locally')
      assert.equal((await rejection(cache.delete('while-down'))).code, 'UPSTREAM_UNAVAILABLE')

      // Back (empty: the server keeps nothing on disk). The connection comes back by itself.
      await redis.start()
      await until(async () => {
        const decision = await limiter.acquire('probe').catch(() => null)
        return decision != null && decision.remainingRequests !== Infinity
      }, 'the limiter')
      const errorsAfterRestart = cache.stats().sharedErrors
      await until(async () => {
        const seen = cache.stats().sharedErrors
        await cache.set('probe', { content: 'probe' })
        return cache.stats().sharedErrors === seen
      }, 'the cache')
      // The limit holds again: a fresh bucket of 3 for this user, then RATE_LIMITED.
      for (const n of [1, 2, 3]) await gw.chat(ask(`${marker} back ${n}`, user))
      assert.equal((await rejection(gw.chat(ask(`${marker} back 4`, user)))).code, 'RATE_LIMITED')
      // Shared hits again: what this process stored is a hit for another.
      assert.equal((await peer.chat(ask(`${marker} back 1`))).cached, true)
      assert.ok(otherProcessCache.stats().sharedHits >= 1)
      assert.ok(cache.stats().sharedErrors >= errorsAfterRestart)

      await Promise.all([gw.close(), cacheOnly.close(), peer.close()])
      limiter.close()
      await cache.close()
      await otherProcessCache.close()
    })
  }

  test('no unhandled rejection or uncaught exception anywhere in this file', async () => {
    // Whatever the native side left pending settles within a few turns.
    await sleep(100)
    assert.deepEqual(unhandled, [])
  })
})
