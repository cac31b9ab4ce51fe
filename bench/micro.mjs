#!/usr/bin/env node
// Micro-benchmarks from JS: ferrogate's native ResponseCache / RateLimiter (/ CostTracker when
// the package has one) against the same work done by popular JS packages, in one process,
// interleaved rounds, median ops/s. `node bench/micro.mjs` (MICRO_MS per round, ROUNDS).
//
//  cache hit          ResponseCache.get(key)                 vs lru-cache get(key)
//  lookup by request  ResponseCache.get(keyFor(req))         vs lru-cache get(sha256(canonical JSON of req))
//  limiter check      RateLimiter.check(key)                 vs `limiter` TokenBucket per key, and a JS GCRA
//  cost record        CostTracker.record(usage)              (only when CostTracker is exported)
//
// Every side does the same logical work on the same 1,000 keys (all hits / all admitted).
// Prints a markdown table and the load average; writes bench/results/micro.json.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, requireDep, requireFerrogate, depVersion } from './lib.mjs';

const MICRO_MS = Number(process.env.MICRO_MS || 1000);
const ROUNDS = Number(process.env.ROUNDS || 5);
const KEYS = 1000;

const ferrogate = requireFerrogate();
const { LRUCache } = requireDep('lru-cache');
const { TokenBucket } = requireDep('limiter');

// ------------------------------------------------------------------ the work
const requests = Array.from({ length: KEYS }, (_, i) => ({
  model: 'openai/gpt-4o-mini',
  messages: [
    { role: 'system', content: 'You are a helpful assistant. Answer briefly.' },
    { role: 'user', content: `What is the capital of country number ${i}?` },
  ],
  temperature: 0.2,
  maxTokens: 256,
}));
const answer = {
  id: 'chatcmpl-bench', provider: 'openai', model: 'gpt-4o-mini', content: 'Paris. '.repeat(20), toolCalls: [],
  finishReason: 'stop', usage: { promptTokens: 30, completionTokens: 40, totalTokens: 70 },
};

// JS reference key: a canonical (sorted-keys) JSON of the answer-changing fields, SHA-256.
const canonical = (v) => (Array.isArray(v) ? `[${v.map(canonical).join(',')}]`
  : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`
    : JSON.stringify(v));
const jsKeyFor = ({ model, messages, temperature, topP, maxTokens, stop, tools, toolChoice, responseFormat }) =>
  createHash('sha256').update(canonical({ model, messages, temperature, topP, maxTokens, stop, tools, toolChoice, responseFormat })).digest('hex');

// A GCRA in plain JS, per key, the same algorithm ferrogate runs natively.
class JsGcra {
  constructor(perMinute, burst = perMinute) { this.interval = 60_000 / perMinute; this.window = burst * this.interval; this.tat = new Map(); }
  check(key) {
    const now = performance.now();
    const base = Math.max(this.tat.get(key) ?? 0, now);
    const next = base + this.interval;
    if (next - now > this.window) return { allowed: false, retryAfterMs: next - now - this.window };
    this.tat.set(key, next);
    return { allowed: true, retryAfterMs: 0 };
  }
}

const keys = requests.map((r) => ferrogate.ResponseCache.keyFor(r));
const userKeys = Array.from({ length: KEYS }, (_, i) => `user-${i}`);

const nativeCache = new ferrogate.ResponseCache({ maxEntries: 10_000 });
for (const key of keys) nativeCache.set(key, answer);
// lru-cache holds both key forms, so both of its cases hit.
const lru = new LRUCache({ max: 10_000 });
for (const r of requests) lru.set(jsKeyFor(r), answer);
for (const key of keys) lru.set(key, answer);

const HUGE = 1e12; // nothing is ever refused: every side measures its admit path
const nativeLimiter = new ferrogate.RateLimiter({ requestsPerMinute: HUGE });
const buckets = new Map();
const bucketFor = (key) => {
  let bucket = buckets.get(key);
  if (!bucket) buckets.set(key, (bucket = new TokenBucket({ bucketSize: HUGE, tokensPerInterval: HUGE, interval: 'minute' })));
  return bucket;
};
const jsGcra = new JsGcra(HUGE);

const cases = [
  {
    name: 'cache hit (get by key)',
    ferrogate: (i) => nativeCache.get(keys[i % KEYS]),
    js: { 'lru-cache': (i) => lru.get(keys[i % KEYS]) },
  },
  {
    name: 'cache lookup from a request (key + get)',
    ferrogate: (i) => nativeCache.get(ferrogate.ResponseCache.keyFor(requests[i % KEYS])),
    js: { 'lru-cache + sha256(canonical JSON)': (i) => lru.get(jsKeyFor(requests[i % KEYS])) },
  },
  {
    name: 'limiter check',
    ferrogate: (i) => nativeLimiter.check(userKeys[i % KEYS]),
    js: {
      'limiter (TokenBucket per key)': (i) => bucketFor(userKeys[i % KEYS]).tryRemoveTokens(1),
      'JS GCRA (Map per key)': (i) => jsGcra.check(userKeys[i % KEYS]),
    },
  },
];

if (typeof ferrogate.CostTracker === 'function') {
  const tracker = new ferrogate.CostTracker({});
  cases.push({
    name: 'cost record',
    ferrogate: (i) => tracker.record({ user: userKeys[i % KEYS], model: 'openai/gpt-4o-mini', promptTokens: 30, completionTokens: 40 }),
    js: {},
  });
}

// ------------------------------------------------------------------ measuring
let sink = 0;
function opsPerSecond(fn) {
  const end = performance.now() + MICRO_MS;
  let ops = 0;
  let i = 0;
  while (performance.now() < end) {
    for (let j = 0; j < 256; j++) {
      if (fn(i++)) sink++;
    }
    ops += 256;
  }
  return ops / (MICRO_MS / 1000);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmtOps = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);

const load = os.loadavg();
const rows = [];
for (const c of cases) {
  const contenders = [['ferrogate', c.ferrogate], ...Object.entries(c.js)];
  for (const [, fn] of contenders) opsPerSecond(fn); // warm-up (JIT)
  const samples = new Map(contenders.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, fn] of contenders) samples.get(name).push(opsPerSecond(fn));
  }
  const native = median(samples.get('ferrogate'));
  for (const [name] of contenders) {
    const ops = median(samples.get(name));
    rows.push({ case: c.name, contender: name, opsPerSecond: Math.round(ops), vsFerrogate: native / ops });
  }
}

const versions = { 'lru-cache': depVersion('lru-cache'), limiter: depVersion('limiter'), node: process.version };
const lines = [
  `| case | implementation | ops/s | ferrogate ÷ this |`,
  `|---|---|---:|---:|`,
  ...rows.map((r) => `| ${r.case} | ${r.contender} | ${fmtOps(r.opsPerSecond)} | ${r.contender === 'ferrogate' ? '—' : `${r.vsFerrogate.toFixed(2)}×`} |`),
];
console.log(lines.join('\n'));
console.log(`\nmedian of ${ROUNDS} interleaved rounds of ${MICRO_MS} ms; load average before: ${load.map((l) => l.toFixed(2)).join(' ')}; after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${os.cpus().length} CPUs; ${JSON.stringify(versions)}`);
if (typeof ferrogate.CostTracker !== 'function') console.log('cost record: skipped (this build has no CostTracker)');
const resultsDir = process.env.RESULTS_DIR || path.join(BENCH_DIR, 'results');
fs.mkdirSync(resultsDir, { recursive: true });
fs.writeFileSync(path.join(resultsDir, 'micro.json'), JSON.stringify({ rows, load, versions, microMs: MICRO_MS, rounds: ROUNDS, sink }, null, 2));
