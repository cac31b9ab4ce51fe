#!/usr/bin/env node
// The CPU each pipeline stage adds to a chat call, measured A/B in one process: a plain gateway and
// a gateway with the stages on take turns, BATCH calls each, PAIRS times, on one mock upstream
// (bench/mock-upstream.mjs in its own process, not counted). Each batch's CPU is the whole
// process's (JS thread, tokio worker, ledger writer: process.cpuUsage), so a stage's work on any
// thread is counted. Turns cancel the drift of a shared machine that separate processes
// (bench/cpu-per-call.mjs) cannot: the figure is the median over pairs of (B − A) / A.
//
// Usage: node bench/stages-ab.mjs [variant ...]   variants: cache limiter costs stages (default: all)
// Env: BATCH (2000), PAIRS (20), CONC (32)
//   cache    a ResponseCache of 10,000 entries, every call a miss (a unique prompt);
//   limiter  a RateLimiter never reached (requests and tokens per minute);
//   costs    a CostTracker with an SQLite ledger in a temp file and a hard daily budget never reached;
//   stages   all three.
import fs from 'node:fs';
import { gatewayWithStages, startMockUpstream, fmt } from './lib.mjs';

const env = process.env;
const BATCH = Number(env.BATCH || 2000);
const PAIRS = Number(env.PAIRS || 20);
const CONC = Number(env.CONC || 32);
const VARIANTS = process.argv.slice(2).length ? process.argv.slice(2) : ['cache', 'limiter', 'costs', 'stages'];
const mock = await startMockUpstream();
const upstream = `http://127.0.0.1:${mock.port}/v1`;

let served = 0;
// Both sides send unique prompts, so the plain side pays for the same string building.
const request = () => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `Say hello to the benchmark in one short sentence. #${++served}` }] });

async function batch(gw) {
  let next = 0;
  const c0 = process.cpuUsage();
  await Promise.all(Array.from({ length: CONC }, async () => { while (next++ < BATCH) await gw.chat(request()); }));
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / BATCH;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
console.log(`Stage cost A/B: ${PAIRS} pairs of ${BATCH} calls at concurrency ${CONC}; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
console.log('');
console.log('| stages on | plain µs/call | with stages µs/call | added (median of pairs) | pairs with B > A |');
console.log('|---|---:|---:|---:|---:|');
for (const variant of VARIANTS) {
  const stages = new Set(variant === 'stages' ? ['cache', 'limiter', 'costs'] : [variant]);
  const plain = gatewayWithStages(upstream, new Set());
  const staged = gatewayWithStages(upstream, stages);
  for (let i = 0; i < 2; i++) { await batch(plain); await batch(staged); } // warm-up: JIT, connections, the ledger file
  const a = [];
  const b = [];
  const added = [];
  for (let i = 0; i < PAIRS; i++) {
    // Alternate which side goes first, so neither always follows the other's garbage.
    let pa;
    let pb;
    if (i % 2) {
      pb = await batch(staged);
      pa = await batch(plain);
    } else {
      pa = await batch(plain);
      pb = await batch(staged);
    }
    a.push(pa);
    b.push(pb);
    added.push((pb - pa) / pa);
  }
  const wins = added.filter((r) => r > 0).length;
  console.log(`| ${variant} | ${fmt(median(a), 1)} | ${fmt(median(b), 1)} | ${added.length ? `${median(added) >= 0 ? '+' : ''}${fmt(median(added) * 100, 1)}%` : 'n/a'} | ${wins}/${PAIRS} |`);
}
mock.stop?.();
process.exit(0);
