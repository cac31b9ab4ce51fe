// Graceful shutdown keeps every billing row: `await gateway.close()` resolves only after the
// CostTracker has written what the calls recorded, so a process stopped (SIGTERM, no handler)
// right after it loses nothing. `ferrogate serve` on SIGTERM stops accepting, lets calls in
// progress finish, flushes, and exits 0 with one ledger row per answered call.
// PostgreSQL on 127.0.0.1:5432 (a schema of the test's own, dropped afterwards) and SQLite files
// in a temporary directory; the upstream is the mock vendors over loopback.
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { CostTracker } from '../index.js'
import { generateOpenAIStream, startMockVendors } from './helpers/mock-vendors.mjs'

const PG_URL = 'postgres://postgres@127.0.0.1:5432/postgres'
const CHILD = fileURLToPath(new URL('./helpers/shutdown-child.mjs', import.meta.url))
const BIN = fileURLToPath(new URL('../bin/ferrogate.js', import.meta.url))
const MODEL = 'openai/gpt-4o-mini'
const PRICING = { [MODEL]: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } }

let vendors
let dir
before(async () => {
  vendors = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-shutdown-'))
})
after(async () => {
  await vendors.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

const unique = (tag) => `fg_test_${tag}_${process.pid}_${randomBytes(4).toString('hex')}`

function psql(sql) {
  return execFileSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-tAq', '-c', sql], {
    encoding: 'utf8',
    env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
  }).trim()
}

function ownSchema(t, tag) {
  const schema = unique(tag)
  t.after(() => psql(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
  return schema
}

const pgRows = (schema) => Number(psql(`SELECT COUNT(*) FROM "${schema}".ferrogate_ledger`))

/** Reads a SQLite ledger's rows through a CostTracker of this process. */
async function sqliteRows(ledgerPath) {
  const tracker = new CostTracker({ ledgerPath, pricing: PRICING })
  try {
    return tracker.summary(null).totalRequests
  } finally {
    tracker.close()
  }
}

/** Runs a child; sends SIGTERM the moment it prints "closed"; resolves with its result. */
async function runAndTerminate(config) {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stderr.on('data', (chunk) => (err += chunk))
  child.stdout.on('data', (chunk) => {
    out += chunk
    if (out.includes('closed\n')) child.kill('SIGTERM')
  })
  const [code, signal] = await once(child, 'exit')
  assert.equal(signal, 'SIGTERM', `the child ended by SIGTERM (code ${code}): ${err}`)
  return JSON.parse(out.split('\n').find((line) => line.startsWith('{')))
}

const childConfig = (extra) => ({ baseUrl: vendors.openaiBaseUrl, pricing: PRICING, model: MODEL, user: 'shutdown', calls: 50, ...extra })

test('PostgreSQL ledger: 4 processes x 50 calls, close(), SIGTERM at once -> 200 rows', async (t) => {
  const schema = ownSchema(t, 'shutdown')
  // The first child creates the schema; the others then start together.
  const first = await runAndTerminate(childConfig({ postgresUrl: PG_URL, schema }))
  const rest = await Promise.all([1, 2, 3].map(() => runAndTerminate(childConfig({ postgresUrl: PG_URL, schema }))))
  const ok = [first, ...rest].reduce((sum, r) => sum + r.ok, 0)
  assert.equal(ok, 200)
  assert.equal(pgRows(schema), 200)
})

test('SQLite ledger (ledgerPath): 4 processes x 50 calls, close(), SIGTERM at once -> 200 rows', async () => {
  const paths = [0, 1, 2, 3].map((i) => path.join(dir, `ledger-${i}.sqlite`))
  const results = await Promise.all(paths.map((ledgerPath) => runAndTerminate(childConfig({ ledgerPath }))))
  assert.equal(results.reduce((sum, r) => sum + r.ok, 0), 200)
  let rows = 0
  for (const ledgerPath of paths) rows += await sqliteRows(ledgerPath)
  assert.equal(rows, 200)
})

/** POSTs a chat call to a serve URL; resolves with { status, text }. */
function post(url, body, agent) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode, text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

for (const engine of ['native', 'node']) {
  test(`serve (${engine}) on SIGTERM under load: stops accepting, finishes streams, exits 0, one row per answered call`, async (t) => {
    const schema = ownSchema(t, `serve_${engine}`)
    const config = path.join(dir, `serve-${engine}.json`)
    fs.writeFileSync(config, JSON.stringify({
      providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
      costs: { postgresUrl: PG_URL, postgresSchema: schema, pricing: PRICING },
      maxRetries: 0,
      server: { shutdownGraceMs: 10_000 },
    }))
    const child = spawn(process.execPath, [BIN, 'serve', '--config', config, '--port', '0', '--engine', engine], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stderr.on('data', (chunk) => (err += chunk))
    const url = await new Promise((resolve, reject) => {
      child.stdout.on('data', (chunk) => {
        out += chunk
        const found = /listening on (http:\/\/\S+)/.exec(out)
        if (found) resolve(found[1])
      })
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}: ${err}`)))
    })
    const exited = once(child, 'exit')
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
    // 30 streams slow enough (12 events, 50 ms apart) to be in progress when SIGTERM arrives.
    const CALLS = 30
    for (let i = 0; i < CALLS; i++) vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 10 }).split(/(?<=\n\n)/), delayMs: 50 })
    const stream = { model: MODEL, stream: true, messages: [{ role: 'user', content: 'shutdown under load' }] }
    const plain = { model: MODEL, messages: [{ role: 'user', content: 'after SIGTERM' }] }
    const mark = vendors.requests.length
    const calls = []
    for (let i = 0; i < CALLS; i++) calls.push(post(url, stream, agent).catch((error) => ({ error })))
    // SIGTERM once every stream has reached the upstream (each takes ~600 ms from there).
    const deadline = Date.now() + 30_000
    while (vendors.requests.length < mark + CALLS) {
      if (Date.now() > deadline) assert.fail(`only ${vendors.requests.length - mark} of ${CALLS} streams reached the upstream: ${err}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    child.kill('SIGTERM')
    const results = await Promise.all(calls)
    const [code] = await exited
    agent.destroy()
    assert.equal(code, 0, `serve exited with ${code}: ${err}`)
    const answered = results.filter((r) => r.status === 200)
    assert.equal(answered.length, CALLS, `every stream in progress was answered: ${JSON.stringify(results.filter((r) => r.status !== 200))}`)
    for (const r of answered) assert.ok(r.text.includes('data: [DONE]'), 'a stream in progress at SIGTERM ran to its end')
    assert.equal(pgRows(schema), CALLS, 'one ledger row per answered call')
    // It stopped accepting: a new connection is refused.
    await assert.rejects(post(url, plain), /ECONNREFUSED|ECONNRESET|socket hang up/)
  })
}

test('npm start (examples/server.js) on SIGTERM: a stream in progress runs to its end, then it exits 0', async () => {
  const env = { ...process.env, PORT: '0', OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: vendors.openaiBaseUrl }
  const server = spawn(process.execPath, [fileURLToPath(new URL('../examples/server.js', import.meta.url))], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  server.stdout.on('data', (chunk) => (out += chunk))
  server.stderr.on('data', (chunk) => (out += chunk))
  const url = await new Promise((resolve, reject) => {
    server.stdout.on('data', () => {
      const port = /listening on http:\/\/localhost:(\d+)/.exec(out)?.[1]
      if (port) resolve(`http://127.0.0.1:${port}`)
    })
    server.once('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)))
  })
  const exited = once(server, 'exit')
  vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 10 }).split(/(?<=\n\n)/), delayMs: 50 })
  const text = await new Promise((resolve, reject) => {
    http.get(`${url}/chat/stream?q=hello`, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.once('data', () => server.kill('SIGTERM')) // the stream has started
      res.on('data', (chunk) => (body += chunk))
      res.on('end', () => resolve(body))
      res.on('error', reject)
    }).on('error', reject)
  })
  const [code] = await exited
  assert.equal(code, 0, out)
  assert.ok(text.includes('tok9 '), text)
  assert.ok(text.includes('event: done'), text)
})
