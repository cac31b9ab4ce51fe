#!/usr/bin/env node
// What routing adds per call: the same chat through a route alias and as "provider/model",
// against one mock upstream (bench/mock-upstream.mjs, its own process), in one run.
//
// Three ways in, interleaved call by call so that drift (CPU contention, JIT warm-up) hits them alike:
//   direct   "up/gpt-4o-mini"                     no route stage work
//   route-1  alias over one target (up)          selection, slot, stats, breaker bookkeeping
//   route-3  alias over three targets (up1..up3, three provider names for the same upstream)
// Phases: sequential (one call at a time) and concurrent (CONC calls in flight per mode).
//
//   node bench/routing.mjs          N=3000 sequential calls per mode, CONC=32, ROUNDS=100
// Env: N, CONC, ROUNDS (concurrent rounds of CONC calls per mode), WARMUP (calls per mode).
import { requireFerrogate, startMockUpstream } from './lib.mjs';

const N = Number(process.env.N || 3000);
const CONC = Number(process.env.CONC || 32);
const ROUNDS = Number(process.env.ROUNDS || 100);
const WARMUP = Number(process.env.WARMUP || 300);
const MODES = ['direct', 'route-1', 'route-3'];

const { Gateway } = requireFerrogate();

const { port, stop: stopMock } = await startMockUpstream();

const baseUrl = `http://127.0.0.1:${port}/v1`;
const upstream = { kind: 'openai', apiKey: 'sk-bench', baseUrl };
const gw = new Gateway({
  providers: { up: upstream, up1: upstream, up2: upstream, up3: upstream },
  routes: {
    one: [{ provider: 'up', model: 'gpt-4o-mini' }],
    three: ['up1', 'up2', 'up3'].map((provider) => ({ provider, model: 'gpt-4o-mini' })),
  },
});
const modelOf = { direct: 'up/gpt-4o-mini', 'route-1': 'one', 'route-3': 'three' };
const request = (mode) => ({ model: modelOf[mode], messages: [{ role: 'user', content: 'Say hello.' }], maxTokens: 16 });

async function timed(mode) {
  const start = process.hrtime.bigint();
  await gw.chat(request(mode));
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const samples = { sequential: {}, concurrent: {} };
for (const phase of Object.keys(samples)) for (const mode of MODES) samples[phase][mode] = [];

for (let i = 0; i < WARMUP; i++) for (const mode of MODES) await timed(mode);

for (let i = 0; i < N; i++) {
  for (const mode of MODES) samples.sequential[mode].push(await timed(mode));
}
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of MODES) {
    const latencies = await Promise.all(Array.from({ length: CONC }, () => timed(mode)));
    samples.concurrent[mode].push(...latencies);
  }
}
stopMock();

const quantile = (values, q) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const fmt = (ms) => `${(ms * 1000).toFixed(0)} µs`;
const signed = (ms) => `${ms >= 0 ? '+' : '−'}${(Math.abs(ms) * 1000).toFixed(0)} µs`;

const lines = [
  `Routing overhead per call: ${N} sequential calls per mode, then ${ROUNDS} rounds of ${CONC} concurrent calls per mode; modes interleaved; one mock upstream (non-streamed chat).`,
  '',
  '| phase | mode | p50 | p99 | p50 vs direct | p99 vs direct |',
  '|---|---|---|---|---|---|',
];
const results = {};
for (const phase of Object.keys(samples)) {
  const d50 = quantile(samples[phase].direct, 0.5);
  const d99 = quantile(samples[phase].direct, 0.99);
  for (const mode of MODES) {
    const p50 = quantile(samples[phase][mode], 0.5);
    const p99 = quantile(samples[phase][mode], 0.99);
    results[`${phase}/${mode}`] = { p50Ms: p50, p99Ms: p99, calls: samples[phase][mode].length };
    const vs = mode === 'direct' ? ['–', '–'] : [signed(p50 - d50), signed(p99 - d99)];
    lines.push(`| ${phase} | ${mode} | ${fmt(p50)} | ${fmt(p99)} | ${vs[0]} | ${vs[1]} |`);
  }
}
console.log(lines.join('\n'));
console.log(`\nJSON ${JSON.stringify(results)}`);
process.exit(0);
