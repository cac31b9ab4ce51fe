// Micro-benchmark: CostTracker.record() ops/s from JS, against the same work done in
// plain JS (a price-table lookup, the cost sum, a row pushed to an array). There is no
// popular npm cost-tracking package to compare with; the plain-JS version is the floor a
// hand-written tracker would start from, without persistence.
//
//   node bench/micro-costs.mjs            # DURATION=2 seconds per case
//
// Measured, never asserted. Cases: ferrogate with an in-memory ledger, ferrogate with a
// SQLite file ledger (WAL, group commit on the writer thread), and the plain-JS floor.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { requireFerrogate } from './lib.mjs'

const { CostTracker } = requireFerrogate()
const DURATION_MS = Number(process.env.DURATION ?? 2) * 1000
const USERS = Array.from({ length: 100 }, (_, i) => `user-${i}`)
const MODELS = ['openai/gpt-4o-mini', 'anthropic/claude-sonnet-4-5', 'gemini/gemini-2.5-flash']

function usage(i) {
  return {
    user: USERS[i % USERS.length],
    model: MODELS[i % MODELS.length],
    promptTokens: 500 + (i % 300),
    completionTokens: 200 + (i % 100),
    latencyMs: 120,
  }
}

function measure(name, record) {
  // Warm-up, then count whole batches until the time is up.
  for (let i = 0; i < 20_000; i++) record(usage(i))
  let ops = 0
  const started = process.hrtime.bigint()
  const deadline = started + BigInt(DURATION_MS) * 1_000_000n
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 1000; i++) record(usage(ops + i))
    ops += 1000
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  return { name, opsPerSecond: Math.round(ops / seconds), ops }
}

function plainJs() {
  // Per-token prices (USD), the same three models.
  const prices = new Map([
    ['gpt-4o-mini', { input: 0.15e-6, output: 0.6e-6 }],
    ['claude-sonnet-4-5', { input: 3e-6, output: 15e-6 }],
    ['gemini-2.5-flash', { input: 0.3e-6, output: 2.5e-6 }],
  ])
  const rows = []
  return (u) => {
    const price = prices.get(u.model) ?? prices.get(u.model.slice(u.model.indexOf('/') + 1))
    const cost = price ? u.promptTokens * price.input + u.completionTokens * price.output : 0
    rows.push({ at: Date.now(), user: u.user, model: u.model, promptTokens: u.promptTokens, completionTokens: u.completionTokens, cost })
    if (rows.length > 1_000_000) rows.length = 0
    return cost
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-micro-costs-'))
const results = []
try {
  const memory = new CostTracker()
  results.push(measure('ferrogate record() — in-memory ledger', (u) => memory.record(u)))
  memory.close()
  const file = new CostTracker({ ledgerPath: path.join(dir, 'ledger.db') })
  results.push(measure('ferrogate record() — SQLite file ledger', (u) => file.record(u)))
  const flushStarted = process.hrtime.bigint()
  file.flush()
  const flushMs = Number(process.hrtime.bigint() - flushStarted) / 1e6
  const stats = file.stats()
  file.close()
  results.push(measure('plain JS (Map lookup + push, no persistence)', plainJs()))
  console.log(`| case | ops/s |\n|---|---:|`)
  for (const r of results) console.log(`| ${r.name} | ${r.opsPerSecond.toLocaleString('en-US')} |`)
  console.log(`\nfile ledger: ${stats.ledgerWritten} rows written, ${stats.ledgerFailed} failed; flush after the run took ${flushMs.toFixed(1)} ms`)
} finally {
  fs.rmSync(dir, { recursive: true, force: true })
}
