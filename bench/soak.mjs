#!/usr/bin/env node
// Memory over a long run with every stage on: non-streamed chats in-process through one Gateway
// with a ResponseCache (every call a miss: each prompt is unique), a RateLimiter (never refusing)
// and a CostTracker (in memory unless LEDGER=sqlite; a hard daily budget never reached), against
// bench/mock-upstream.mjs in another process. Prints RSS (after a full GC) at every tenth of the
// run, its minimum after warm-up (the first tenth: the cache fills to its bound, JIT, connections)
// and the growth from the 10% mark to the end, per call; checks the tracker counted every call.
//
// Usage: node bench/soak.mjs                  1,000,000 calls
//        DURATION=90 node bench/soak.mjs      90 s instead of a call count
// Env: CALLS (1000000), DURATION (s; overrides CALLS), CONC (32), STAGES (cache,limiter,costs),
//      LEDGER (memory | sqlite: a ledger file in a temp folder), USERS (1: distinct users, round robin)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { requireFerrogate, startMockUpstream, fmt } from './lib.mjs';

const env = process.env;
const DURATION_S = Number(env.DURATION || 0);
const CALLS = DURATION_S ? Infinity : Number(env.CALLS || 1_000_000);
const CONC = Number(env.CONC || 32);
const USERS = Number(env.USERS || 1);
const STAGES = new Set((env.STAGES ?? 'cache,limiter,costs').split(',').filter(Boolean));
const LEDGER = env.LEDGER || 'memory';
const MB = 1024 * 1024;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const { Gateway, ResponseCache, RateLimiter, CostTracker } = requireFerrogate();
const mock = await startMockUpstream();
let costs;
let dir;
if (STAGES.has('costs')) {
  let ledgerPath;
  if (LEDGER === 'sqlite') {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-soak-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    ledgerPath = path.join(dir, 'ledger.sqlite');
  }
  costs = new CostTracker({ ledgerPath, pricing: { 'gpt-4o-mini': { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7 } } });
  for (let u = 0; u < USERS; u++) costs.setBudget(`user-${u}`, { usd: 1e9, period: 'day', hard: true });
}
const cache = STAGES.has('cache') ? new ResponseCache({ maxEntries: 10_000 }) : undefined;
const gw = new Gateway({
  providers: { up: { kind: 'openai', baseUrl: `http://127.0.0.1:${mock.port}/v1`, apiKey: 'bench' } },
  maxRetries: 0,
  cache,
  rateLimiter: STAGES.has('limiter') ? new RateLimiter({ requestsPerMinute: 1e12, tokensPerMinute: 1e15 }) : undefined,
  costs,
});

const samples = [];
const row = (s) => `| ${s.label} | ${s.calls.toLocaleString('en-US')} | ${fmt(s.tS, 1)} | ${fmt(s.rss / MB, 1)} | ${fmt(s.heap / MB, 1)} | ${fmt(s.external / MB, 1)} |`;
const sample = (label, calls) => {
  gc();
  const m = process.memoryUsage();
  samples.push({ label, calls, tS: (performance.now() - t0) / 1000, rss: m.rss, heap: m.heapUsed, external: m.external });
  // As it goes, so a run cut short still tells something.
  if (env.PROGRESS !== '0') console.error(`soak: ${row(samples.at(-1))}`);
};

let started = 0;
let done = 0;
let errors = 0;
let firstError;
const t0 = performance.now();
const deadline = DURATION_S ? t0 + DURATION_S * 1000 : Infinity;
const more = () => (DURATION_S ? performance.now() < deadline : started < CALLS);
// Checkpoints: every tenth of the calls, or of the duration.
let nextMark = 1;
const markReached = () => (DURATION_S ? performance.now() - t0 >= (nextMark / 10) * DURATION_S * 1000 : done >= (nextMark / 10) * CALLS);
let marking = Promise.resolve();

async function worker() {
  while (more()) {
    const n = ++started;
    try {
      await gw.chat({ model: 'up/gpt-4o-mini', user: `user-${n % USERS}`, messages: [{ role: 'user', content: `Say hello to the soak, call #${n}.` }] });
    } catch (error) {
      errors++;
      firstError ??= error;
    }
    done++;
    if (nextMark < 10 && markReached()) {
      const mark = nextMark++;
      // One sample at a time; the other workers keep going meanwhile.
      marking = marking.then(() => sample(`${mark * 10}%`, done));
    }
  }
}
await Promise.all(Array.from({ length: CONC }, worker));
await marking;
sample('100%', done);
const elapsed = (performance.now() - t0) / 1000;

let counted = null;
if (costs) counted = Array.from({ length: USERS }, (_, u) => costs.summary(`user-${u}`, { days: 2 }).totalRequests).reduce((a, b) => a + b, 0);

const afterWarmup = samples.filter((s) => s.calls >= samples[0].calls);
const minRss = Math.min(...afterWarmup.map((s) => s.rss));
const at10 = samples[0];
const at100 = samples.at(-1);
console.log(`Soak: ${done.toLocaleString('en-US')} non-streamed chats in ${fmt(elapsed, 1)} s (${fmt(done / elapsed)} calls/s), concurrency ${CONC}, stages ${[...STAGES].join('+') || 'none'}${costs ? ` (ledger: ${LEDGER}, hard budget)` : ''}, ${USERS} user(s); ${os.cpus().length} CPUs, load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} at the end.`);
console.log('');
console.log('| at | calls | s | RSS MB | heap used MB | external MB |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const s of samples) console.log(row(s));
console.log('');
console.log(`RSS at 10%: ${fmt(at10.rss / MB, 1)} MB; at 100%: ${fmt(at100.rss / MB, 1)} MB; minimum after warm-up ${fmt(minRss / MB, 1)} MB; end − minimum ${fmt((at100.rss - minRss) / MB, 1)} MB; growth from 10% to 100%: ${fmt((at100.rss - at10.rss) / Math.max(1, at100.calls - at10.calls), 1)} bytes per call.`);
console.log(`Errors: ${errors}${firstError ? ` (first: ${firstError.code ?? ''} ${firstError.message})` : ''}.${costs ? ` Tracker: ${counted.toLocaleString('en-US')} calls in summary() (of ${done.toLocaleString('en-US')}).` : ''}${cache ? ` Cache: ${cache.stats().entries} entries.` : ''}`);
mock.stop();
process.exit(errors || (costs && counted !== done) ? 1 : 0);
