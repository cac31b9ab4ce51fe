#!/usr/bin/env node
// What shared state on Redis adds per call: the same non-streamed chat through a gateway with the Redis
// RateLimiter + Redis ResponseCache and through one with the embedded ones, against one mock upstream
// (bench/mock-upstream.mjs, its own process) and the Redis at REDIS_URL, in one run.
//
// Four ways, interleaved call by call so that drift (CPU contention, JIT warm-up) hits them alike:
//   embedded miss   in-memory limiter + moka cache, a new prompt every call (goes upstream)
//   redis miss      Redis limiter + Redis-tiered cache, a new prompt every call: the limiter's script, the
//                   cache's lookup in Redis, the upstream call, the store in Redis
//   embedded hit    the same prompt again: answered by moka
//   redis hit       a prompt another cache instance (another process, as far as this one knows) stored:
//                   moka misses, Redis answers, moka is filled
// Sequential calls (one in flight), so the numbers are per-call latency, not throughput.
//
//   node bench/shared-state.mjs       N=2000 calls per way, WARMUP=200
// Env: N, WARMUP, REDIS_URL (default redis://127.0.0.1:6379/).
import { requireFerrogate, startMockUpstream } from './lib.mjs';

const N = Number(process.env.N || 2000);
const WARMUP = Number(process.env.WARMUP || 200);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379/';
const WAYS = ['embedded miss', 'redis miss', 'embedded hit', 'redis hit'];

const { Gateway, RateLimiter, ResponseCache } = requireFerrogate();

const { port, stop: stopMock } = await startMockUpstream();

const prefix = `ferrogate-bench:${process.pid}:`;
// A limit that never refuses: every call pays for the check, none is turned away.
const limits = { requestsPerMinute: 1e9 };
const providers = { up: { kind: 'openai', apiKey: 'sk-bench', baseUrl: `http://127.0.0.1:${port}/v1` } };
const embedded = new Gateway({ providers, rateLimiter: new RateLimiter(limits), cache: new ResponseCache() });
const redisCache = new ResponseCache({ redisUrl: REDIS_URL, prefix });
const redisLimiter = new RateLimiter({ ...limits, redisUrl: REDIS_URL, prefix });
const shared = new Gateway({ providers, rateLimiter: redisLimiter, cache: redisCache });
// The other process's cache: stores the answers `redis hit` then finds in Redis.
const peerCache = new ResponseCache({ redisUrl: REDIS_URL, prefix });
const peer = new Gateway({ providers, cache: peerCache });

const request = (content) => ({ model: 'up/gpt-4o-mini', messages: [{ role: 'user', content }], maxTokens: 16 });
let fresh = 0;
const gatewayOf = { 'embedded miss': embedded, 'redis miss': shared, 'embedded hit': embedded, 'redis hit': shared };

async function timed(way, content) {
  const start = process.hrtime.bigint();
  const response = await gatewayOf[way].chat(request(content));
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const wantCached = way.endsWith('hit');
  if (response.cached !== wantCached) throw new Error(`${way}: cached ${response.cached}`);
  return ms;
}

async function prompts(count) {
  // Stored by the peer beforehand, so `redis hit` finds each in Redis and never in this process's moka.
  const peerPrompts = [];
  for (let i = 0; i < count; i++) {
    const content = `peer prompt ${process.pid} ${i}`;
    await peer.chat(request(content));
    peerPrompts.push(content);
  }
  return peerPrompts;
}

await embedded.chat(request('the repeated prompt'));
await shared.chat(request('the repeated prompt'));
const samples = Object.fromEntries(WAYS.map((way) => [way, []]));
const peerPrompts = await prompts(WARMUP + N);

async function one(i, record) {
  for (const way of WAYS) {
    const content = way.endsWith('miss') ? `new prompt ${process.pid} ${fresh++}` : way === 'redis hit' ? peerPrompts[i] : 'the repeated prompt';
    const ms = await timed(way, content);
    if (record) samples[way].push(ms);
  }
}
for (let i = 0; i < WARMUP; i++) await one(i, false);
for (let i = 0; i < N; i++) await one(WARMUP + i, true);

await redisCache.clear();
await Promise.all([embedded.close(), shared.close(), peer.close()]);
await redisCache.close();
redisLimiter.close();
await peerCache.close();
stopMock();

const quantile = (values, q) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const us = (ms) => Math.round(ms * 1000);
const row = (way) => ({ p50: quantile(samples[way], 0.5), p99: quantile(samples[way], 0.99) });
const stats = Object.fromEntries(WAYS.map((way) => [way, row(way)]));

console.log(`shared-state bench: ${N} sequential calls per way (after ${WARMUP} warm-up), Redis ${REDIS_URL.replace(/\/\/[^@]*@/, '//')}`);
console.log(`addon: ${process.env.FERROGATE_MODULE || 'repo root'}; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('');
console.log('| way | p50 µs | p99 µs |');
console.log('|---|---:|---:|');
for (const way of WAYS) console.log(`| ${way} | ${us(stats[way].p50)} | ${us(stats[way].p99)} |`);
console.log('');
for (const kind of ['miss', 'hit']) {
  const added = (q) => us(stats[`redis ${kind}`][q] - stats[`embedded ${kind}`][q]);
  console.log(`added by Redis (${kind}): p50 ${added('p50')} µs, p99 ${added('p99')} µs (goal: p99 ≤ 300 µs)`);
}
console.log(`redis limiter stats: ${JSON.stringify(redisLimiter.stats())}; cache stats: ${JSON.stringify(redisCache.stats())}`);
