// CostTracker shared by several processes: the ledger in PostgreSQL (127.0.0.1:5432) and hard
// budgets in Redis (127.0.0.1:6379, or a redis-server of the test's own to stop mid-run).
// Every test uses its own schema and key prefix (pid + random) and removes them afterwards.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

import { CostTracker, FerrogateError, Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'
import { startOwnRedis } from './helpers/own-redis.mjs'

const PG_URL = 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = 'redis://127.0.0.1:6379/'
const CHILD = fileURLToPath(new URL('./helpers/shared-costs-child.mjs', import.meta.url))
const PROXY = fileURLToPath(new URL('./helpers/tcp-proxy-child.mjs', import.meta.url))
const MODEL = 'openai/gpt-4o-mini'
// The mock bills 10 prompt + 5 completion tokens: $0.00002 a call at these prices.
const PRICING = { [MODEL]: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } }
const CALL_USD = 0.00002
// Longer than the 10 prompt tokens the mock bills, so each reservation (prompt counted here +
// maxTokens 5) covers the real cost, and the budget bound is exact.
const MESSAGE = 'please answer this question about the shared budget with a short reply'

const failures = []
const onFailure = (error) => failures.push(error)
let vendors

before(async () => {
  process.on('unhandledRejection', onFailure)
  process.on('uncaughtException', onFailure)
  vendors = await startMockVendors()
})

after(async () => {
  process.off('unhandledRejection', onFailure)
  process.off('uncaughtException', onFailure)
  await vendors.close()
  assert.deepEqual(failures, [], 'no unhandled rejection or uncaught exception')
})

const unique = (tag) => `fg_test_${tag}_${process.pid}_${randomBytes(4).toString('hex')}`

function psql(sql) {
  return execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-tAq', '-c', sql], {
    encoding: 'utf8',
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  }).trim()
}

function redisCli(...args) {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', '6379', ...args], { encoding: 'utf8' }).trim()
}

/** A schema and a key prefix of the test's own, dropped when the test ends. */
function isolation(t, tag) {
  const schema = unique(tag)
  const prefix = `${schema}:`
  t.after(() => {
    psql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    const keys = redisCli('--scan', '--pattern', `${prefix}*`).split('\n').filter(Boolean)
    if (keys.length > 0) redisCli('DEL', ...keys)
  })
  return { schema, prefix }
}

const ledgerCount = (schema, where = 'true') =>
  psql(`SELECT COUNT(*) || ',' || COUNT(DISTINCT request_id) || ',' || COALESCE(SUM(cost_nanos), 0) FROM "${schema}".ferrogate_ledger WHERE ${where}`)
    .split(',')
    .map(Number)

/** Runs the child helper; resolves with its JSON result line. */
async function runChild(config) {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk) => (out += chunk))
  child.stderr.on('data', (chunk) => (err += chunk))
  const ready = new Promise((resolve) => {
    const check = () => out.includes('ready\n') && resolve()
    child.stdout.on('data', check)
  })
  const done = once(child, 'exit').then(([code]) => {
    assert.equal(code, 0, `child exited with ${code}: ${err}`)
    const line = out.split('\n').filter((l) => l.startsWith('{')).pop()
    return JSON.parse(line)
  })
  return { ready, done }
}

/** Starts `n` children, releases them together, and collects their results. */
async function runChildren(n, config) {
  const startFile = path.join(os.tmpdir(), `${unique('start')}.go`)
  const children = []
  for (let i = 0; i < n; i++) children.push(await runChild({ ...config, startFile }))
  await Promise.all(children.map((c) => c.ready))
  fs.writeFileSync(startFile, 'go')
  try {
    return await Promise.all(children.map((c) => c.done))
  } finally {
    fs.rmSync(startFile, { force: true })
  }
}

const childConfig = (schema, extra) => ({
  postgresUrl: PG_URL,
  schema,
  baseUrl: vendors.openaiBaseUrl,
  pricing: PRICING,
  model: MODEL,
  maxTokens: 5,
  message: MESSAGE,
  ...extra,
})

test('a hard budget shared by 4 processes with 200 concurrent calls is never passed', async (t) => {
  const { schema, prefix } = isolation(t, 'budget')
  const budgetUsd = 10 * CALL_USD
  const results = await runChildren(4, childConfig(schema, { redisUrl: REDIS_URL, prefix, user: 'shared', budgetUsd, calls: 50, concurrency: 50 }))
  const ok = results.reduce((sum, r) => sum + r.ok, 0)
  const refused = results.reduce((sum, r) => sum + (r.codes.BUDGET_EXCEEDED ?? 0), 0)
  const other = results.flatMap((r) => Object.keys(r.codes).filter((code) => code !== 'BUDGET_EXCEEDED'))
  assert.deepEqual(other, [], 'only budget refusals')
  assert.equal(ok + refused, 200)
  assert.ok(refused > 0, 'some calls refused')
  assert.ok(ok >= 5, `the budget was used (${ok} calls served)`)
  const budgetNanos = Math.round(budgetUsd * 1e9)
  const [rows, , spentNanos] = ledgerCount(schema, "user_id = 'shared'")
  assert.equal(rows, ok, 'one ledger row per served call')
  assert.ok(spentNanos <= budgetNanos, `ledger spend ${spentNanos} ≤ budget ${budgetNanos}`)
  const day = new Date().toISOString().slice(0, 10)
  const redisSpent = Number(redisCli('HGET', `${prefix}budget:{shared}:day:${day}`, 'spent'))
  assert.ok(redisSpent <= budgetNanos, `Redis spend ${redisSpent} ≤ budget ${budgetNanos}`)
  assert.equal(redisSpent, spentNanos, 'Redis and the ledger agree')
  t.diagnostic(`served ${ok}, refused ${refused}, spent ${spentNanos} of ${budgetNanos} nanodollars`)
})

test('1,000 calls across 4 processes: exactly one ledger row per call, and summary() sees them all', async (t) => {
  const { schema } = isolation(t, 'rows')
  const results = await runChildren(4, childConfig(schema, { user: 'many', calls: 250, concurrency: 50 }))
  assert.deepEqual(
    results.map((r) => [r.ok, r.stats.ledgerWritten, r.stats.ledgerDropped]),
    Array(4).fill([250, 250, 0]),
  )
  assert.deepEqual(ledgerCount(schema).slice(0, 2), [1000, 1000])

  // Another process (this one) sees every process's spend.
  const tracker = new CostTracker({ postgresUrl: PG_URL, postgresSchema: schema, pricing: PRICING })
  const summary = await tracker.summary(null, { days: 1 })
  assert.equal(summary.totalRequests, 1000)
  assert.ok(Math.abs(summary.totalCost - 1000 * CALL_USD) < 1e-9, `${summary.totalCost}`)
  tracker.record({ user: 'here', model: MODEL, promptTokens: 10, completionTokens: 5 })
  const mine = await tracker.summary('here', { days: 1 })
  assert.equal(mine.totalRequests, 1, 'summary() waits for this process\'s own rows')
  assert.equal((await tracker.summary(null, { days: 1 })).requestsByModel[MODEL], 1001)
  await tracker.close()
  assert.equal(ledgerCount(schema)[0], 1001)
})

/** A TCP proxy to PostgreSQL (in a child process) that the test can cut (connections destroyed, port closed) and restore. */
async function pgProxy() {
  const child = spawn(process.execPath, [PROXY, '5432'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const port = Number((await lines.next()).value)
  const command = async (name) => {
    child.stdin.write(`${name}\n`)
    assert.equal((await lines.next()).value, name)
  }
  return {
    url: `postgres://postgres:not-the-password@127.0.0.1:${port}/postgres`,
    cut: () => command('cut'),
    restore: () => command('restore'),
    async close() {
      child.stdin.end()
      if (child.exitCode === null) await once(child, 'exit')
    },
  }
}

const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

async function until(check, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('PostgreSQL without Redis: a soft budget alerts on every process\'s spend, read again every few seconds', async (t) => {
  const { schema } = isolation(t, 'softalert')
  const options = { postgresUrl: PG_URL, postgresSchema: schema, pricing: PRICING }
  // Two trackers on one ledger table act as two processes: each has its own connection and its own view.
  const mine = new CostTracker(options)
  const other = new CostTracker(options)
  t.after(async () => {
    await mine.close()
    await other.close()
  })
  mine.setBudget('ann', { usd: 10 * CALL_USD, period: 'day', hard: false })
  const gateway = new Gateway({
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    costs: mine,
    maxRetries: 0,
  })
  t.after(() => gateway.close())
  const ask = () => gateway.chat({ model: MODEL, user: 'ann', maxTokens: 5, messages: [{ role: 'user', content: MESSAGE }] })
  await ask()
  for (let i = 0; i < 9; i++) other.record({ user: 'ann', model: MODEL, promptTokens: 10, completionTokens: 5 })
  await other.flush()
  // This process made 1 call (10% of the budget); with the other's 9 the period holds 100%.
  await new Promise((resolve) => setTimeout(resolve, 5200))
  await ask()
  const budgetAlerts = mine.alerts('ann').filter((a) => a.type === 'budget_exceeded')
  assert.ok(budgetAlerts.length > 0, `alerts: ${JSON.stringify(mine.alerts('ann'))}`)
  assert.ok(budgetAlerts.some((a) => a.severity === 'critical'), 'the 100% alert fired')
})

test('PostgreSQL down mid-run: rows are buffered, then land exactly once; beyond the bound they are dropped and counted', async (t) => {
  const { schema } = isolation(t, 'down')
  const proxy = await pgProxy()
  t.after(() => proxy.close())
  const tracker = new CostTracker({ postgresUrl: proxy.url, postgresSchema: schema, pricing: PRICING })
  const record = (user, n) => {
    for (let i = 0; i < n; i++) tracker.record({ user, model: MODEL, promptTokens: 10, completionTokens: 5 })
  }
  record('before', 5)
  await tracker.flush()
  assert.equal(tracker.stats().ledgerWritten, 5)

  await proxy.cut()
  record('during', 20)
  await until(() => tracker.stats().ledgerBuffered === 20, 'rows buffered')
  const flushError = await rejection(tracker.flush())
  assert.ok(flushError instanceof FerrogateError)
  assert.equal(flushError.code, 'UPSTREAM_UNAVAILABLE')
  assert.equal(flushError.status, 503)
  assert.match(flushError.message, /20 rows still buffered/)
  assert.ok(!flushError.message.includes('not-the-password'), flushError.message)
  const summaryError = await rejection(tracker.summary(null))
  assert.equal(summaryError.code, 'UPSTREAM_UNAVAILABLE')
  assert.equal(tracker.stats().ledgerBuffered, 20, 'still buffered after failed tries')

  await proxy.restore()
  await tracker.flush()
  const stats = tracker.stats()
  assert.deepEqual([stats.ledgerWritten, stats.ledgerBuffered, stats.ledgerDropped, stats.ledgerFailed], [25, 0, 0, 0])
  assert.deepEqual(ledgerCount(schema).slice(0, 1), [25])
  assert.equal(psql(`SELECT COUNT(DISTINCT id) FROM "${schema}".ferrogate_ledger`), '25')
  assert.equal((await tracker.summary('during', { days: 1 })).totalRequests, 20)
  await tracker.close()

  // A bound of 5 rows: the rest of an outage is dropped and counted.
  const small = new CostTracker({ postgresUrl: proxy.url, postgresSchema: schema, pricing: PRICING, ledgerBufferRows: 5 })
  await proxy.cut()
  for (let i = 0; i < 12; i++) small.record({ user: 'bounded', model: MODEL, promptTokens: 10, completionTokens: 5 })
  let s = small.stats()
  assert.deepEqual([s.ledgerBuffered, s.ledgerDropped], [5, 7])
  await proxy.restore()
  await small.flush()
  s = small.stats()
  assert.deepEqual([s.ledgerWritten, s.ledgerBuffered, s.ledgerDropped], [5, 0, 7])
  assert.equal(ledgerCount(schema, "user_id = 'bounded'")[0], 5)
  await small.close()
})

test('Redis stopped mid-run: hard budgets fail closed (503), others are served; after a restart calls resume under the budget', async (t) => {
  const { schema, prefix } = isolation(t, 'redis')
  const redis = await startOwnRedis()
  t.after(() => redis.stop())
  const budgetUsd = 8 * CALL_USD
  const tracker = new CostTracker({ postgresUrl: PG_URL, postgresSchema: schema, redisUrl: redis.url, prefix, pricing: PRICING })
  tracker.setBudget('capped', { usd: budgetUsd, period: 'day', hard: true })
  const gateway = new Gateway({
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    costs: tracker,
    maxRetries: 0,
  })
  t.after(() => gateway.close())
  const chat = (user) => gateway.chat({ model: MODEL, user, maxTokens: 5, messages: [{ role: 'user', content: MESSAGE }] })

  for (let i = 0; i < 3; i++) await chat('capped')
  await tracker.flush()

  await redis.stop()
  const refused = await rejection(chat('capped'))
  assert.equal(refused.code, 'UPSTREAM_UNAVAILABLE')
  assert.equal(refused.status, 503)
  assert.match(refused.message, /hard budgets fail closed/)
  assert.ok(refused.message.includes(`127.0.0.1:${redis.port}`), refused.message)
  // A user without a hard budget does not need Redis.
  const free = await chat('free')
  assert.ok(free.costUsd > 0)
  assert.ok(tracker.stats().budgetStoreRefusals >= 1)
  // Spend recorded while Redis is away is queued, not lost.
  tracker.record({ user: 'capped', model: MODEL, promptTokens: 10, completionTokens: 5 })
  assert.ok(tracker.stats().budgetSettlementsPending >= 1)

  await redis.start()
  // The connection comes back by itself; the first call after may still find it reconnecting.
  let served = 0
  await until(async () => {
    try {
      await chat('capped')
      served++
      return true
    } catch (error) {
      if (error.code !== 'UPSTREAM_UNAVAILABLE') throw error
      return false
    }
  }, 'a hard-budget call served after the restart')
  // The restarted server had lost the period's spend: it was seeded again from the ledger.
  let refusals = 0
  for (let i = 0; i < 10; i++) {
    try {
      await chat('capped')
      served++
    } catch (error) {
      assert.equal(error.code, 'BUDGET_EXCEEDED')
      refusals++
    }
  }
  assert.ok(refusals > 0, 'the budget still holds after the restart')
  await tracker.flush()
  assert.equal(tracker.stats().budgetSettlementsPending, 0)
  const [rows, , spent] = ledgerCount(schema, "user_id = 'capped'")
  assert.equal(rows, 3 + 1 + served)
  assert.ok(spent <= Math.round(budgetUsd * 1e9), `spend ${spent} ≤ budget`)
  await tracker.close()
})

test('unreachable or malformed postgresUrl / redisUrl at construction: a clear error without the password', () => {
  const unreachable = [
    ['postgresUrl', 'postgres://app:s3cret-pw@127.0.0.1:1/ledger', 'postgres://127.0.0.1:1/ledger'],
    ['redisUrl', 'redis://:s3cret-pw@127.0.0.1:1/', 'redis://127.0.0.1:1/'],
  ]
  for (const [option, url, shown] of unreachable) {
    const error = captured(() => new CostTracker({ [option]: url }))
    assert.ok(error instanceof FerrogateError)
    assert.equal(error.code, 'UPSTREAM_UNAVAILABLE', error.message)
    assert.equal(error.status, 503)
    assert.ok(error.message.includes(shown), error.message)
    assert.ok(!error.message.includes('s3cret-pw'), error.message)
  }
  for (const options of [{ postgresUrl: 'http://example.com' }, { redisUrl: 'http://example.com' }, { postgresUrl: PG_URL, postgresSchema: 'bad name' }, { prefix: 'x:' }]) {
    const error = captured(() => new CostTracker(options))
    assert.equal(error.code, 'CONFIG', `${JSON.stringify(options)}: ${error.message}`)
  }
})

function captured(fn) {
  try {
    fn()
  } catch (error) {
    return error
  }
  assert.fail('expected a throw')
}

test('CostTracker.open connects off the event loop: timers keep firing while a server does not answer, and an open tracker works', async (t) => {
  // A server that accepts and never answers: only the connect timeout (3 s) ends the attempt.
  const accepted = new Set()
  const silent = net.createServer((socket) => {
    accepted.add(socket)
    socket.on('error', () => {})
  }).listen(0, '127.0.0.1')
  await once(silent, 'listening')
  // The sockets this server accepted would keep the test process alive: end them with it.
  t.after(() => {
    for (const socket of accepted) socket.destroy()
    silent.close()
  })
  const url = `postgres://postgres:hunter2-secret@127.0.0.1:${silent.address().port}/postgres`
  let ticks = 0
  const timer = setInterval(() => ticks++, 100)
  const failed = await rejection(CostTracker.open({ postgresUrl: url }))
  clearInterval(timer)
  assert.equal(failed.code, 'UPSTREAM_UNAVAILABLE')
  assert.doesNotMatch(failed.message, /hunter2-secret/)
  // About 30 ticks in the 3 s connect timeout; a blocked event loop would give none.
  assert.ok(ticks >= 10, `the event loop ran while connecting (${ticks} ticks of 100 ms)`)

  const { schema } = isolation(t, 'open')
  const tracker = await CostTracker.open({ postgresUrl: PG_URL, postgresSchema: schema, pricing: PRICING })
  tracker.record({ user: 'opened', model: MODEL, promptTokens: 10, completionTokens: 5 })
  assert.equal((await tracker.summary('opened', { days: 1 })).totalRequests, 1)
  await tracker.close()
  assert.equal(ledgerCount(schema)[0], 1)
})
