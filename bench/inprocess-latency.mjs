#!/usr/bin/env node
// The latency an in-process call adds at concurrency 1: `gw.chat()` against a bare node:http
// request (keep-alive, one socket) to the same mock upstream, one at a time and interleaved call
// by call, so both see the same machine load. Prints p50/p99 of both and their difference (what
// the gateway adds over the bare call). `STAGES=1` adds the cache (every call a miss), the
// limiter and an in-memory CostTracker with a hard budget, as a third interleaved way.
//
// Usage: node bench/inprocess-latency.mjs      Env: N (3000 per way), WARMUP (300), STAGES (0)
import http from 'node:http';
import os from 'node:os';
import { requireFerrogate, startMockUpstream, fmt } from './lib.mjs';

const env = process.env;
const N = Number(env.N || 3000);
const WARMUP = Number(env.WARMUP || 300);
const { Gateway, ResponseCache, RateLimiter, CostTracker } = requireFerrogate();
const mock = await startMockUpstream();
const baseUrl = `http://127.0.0.1:${mock.port}/v1`;
const messages = [{ role: 'user', content: 'Say hello to the benchmark.' }];

const plain = new Gateway({ providers: { up: { kind: 'openai', baseUrl, apiKey: 'bench' } }, maxRetries: 0 });
let staged;
if (env.STAGES === '1') {
  const costs = new CostTracker({});
  costs.setBudget('anonymous', { usd: 1e9, period: 'day', hard: true });
  staged = new Gateway({
    providers: { up: { kind: 'openai', baseUrl, apiKey: 'bench' } },
    maxRetries: 0,
    cache: new ResponseCache({ maxEntries: 10_000 }),
    rateLimiter: new RateLimiter({ requestsPerMinute: 1e12, tokensPerMinute: 1e15 }),
    costs,
  });
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: 'gpt-4o-mini', messages });
const bare = () => new Promise((resolve, reject) => {
  const req = http.request(`${baseUrl}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
    const parts = [];
    res.on('data', (c) => parts.push(c));
    res.on('end', () => { JSON.parse(Buffer.concat(parts).toString()); resolve(); });
  });
  req.on('error', reject);
  req.end(body);
});
let n = 0;
const ways = {
  'node:http (bare)': bare,
  'gw.chat()': () => plain.chat({ model: 'up/gpt-4o-mini', messages }),
  ...(staged ? { 'gw.chat() + stages': () => staged.chat({ model: 'up/gpt-4o-mini', messages: [{ role: 'user', content: `${messages[0].content} #${++n}` }] }) } : {}),
};
const names = Object.keys(ways);
const lat = Object.fromEntries(names.map((k) => [k, []]));
for (let i = 0; i < WARMUP + N; i++) {
  for (const name of names) {
    const t0 = process.hrtime.bigint();
    await ways[name]();
    if (i >= WARMUP) lat[name].push(Number(process.hrtime.bigint() - t0) / 1000);
  }
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];
console.log(`In-process latency at concurrency 1: ${N} calls per way after ${WARMUP}, interleaved; Node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the end.`);
console.log('');
console.log('| way | p50 µs | p99 µs | added p50 µs | added p99 µs |');
console.log('|---|---:|---:|---:|---:|');
const [base] = names;
for (const name of names) lat[name].sort((a, b) => a - b);
for (const name of names) {
  const p50 = pct(lat[name], 0.5);
  const p99 = pct(lat[name], 0.99);
  const added = name === base ? ['–', '–'] : [fmt(p50 - pct(lat[base], 0.5)), fmt(p99 - pct(lat[base], 0.99))];
  console.log(`| ${name} | ${fmt(p50)} | ${fmt(p99)} | ${added[0]} | ${added[1]} |`);
}
mock.stop();
process.exit(0);
