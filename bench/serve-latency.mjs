#!/usr/bin/env node
// `ferrogate serve` as a proxy at concurrency 1: the latency it adds over calling the mock
// upstream directly, and the serve process's CPU per request. One client (node:http, keep-alive,
// one socket per target) alternates requests between the mock directly and the proxy, so both
// see the same machine load; the difference of the percentiles is what the proxy adds.
// The client's own cost is in both columns and cancels out.
//
// Usage: node bench/serve-latency.mjs        Env: N (3000 per target and kind), KINDS (chat,stream),
//   CHUNKS (20 per stream), ENGINE (native | node), WARMUP (300)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, REPO_DIR, sleep, freePort, fmt } from './lib.mjs';

const env = process.env;
const N = Number(env.N || 3000);
const WARMUP = Number(env.WARMUP || 300);
const CHUNKS = Number(env.CHUNKS || 20);
const KINDS = (env.KINDS || 'chat,stream').split(',');
const ENGINE = env.ENGINE || 'native';
const children = [];
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } });

async function waitUp(port) {
  for (let i = 0; i < 100; i++) {
    try { await fetch(`http://127.0.0.1:${port}/health`); return; } catch { await sleep(100); }
  }
  throw new Error(`nothing listening on ${port}`);
}

const mockPort = await freePort();
children.push(spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], { stdio: 'ignore', env: { ...env, PORT: String(mockPort), MOCK_CHUNKS: String(CHUNKS) } }));
const servePort = await freePort();
const serve = spawn(process.execPath, [path.join(REPO_DIR, 'bin', 'ferrogate.js'), 'serve', '--engine', ENGINE, '--config', path.join(BENCH_DIR, 'serve-peers.json')], {
  stdio: ['ignore', 'ignore', 'inherit'], env: { ...env, PORT: String(servePort), UPSTREAM_BASE_URL: `http://127.0.0.1:${mockPort}/v1` },
});
children.push(serve);
await waitUp(mockPort);
await waitUp(servePort);

function cpuTicks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
const CLK_TCK = 100;

const agents = { direct: new http.Agent({ keepAlive: true, maxSockets: 1 }), serve: new http.Agent({ keepAlive: true, maxSockets: 1 }) };
const ports = { direct: mockPort, serve: servePort };
function once(target, body) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const r = http.request({ host: '127.0.0.1', port: ports[target], path: '/v1/chat/completions', method: 'POST', agent: agents[target], headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer bench' } }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => (res.statusCode === 200 && n > 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1000) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    r.on('error', reject);
    r.end(body);
  });
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];

console.log(`serve (${ENGINE}) vs direct at concurrency 1: ${N} requests per target, alternating; streams of ${CHUNKS} chunks. load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log('');
console.log('| kind | direct p50 µs | direct p99 µs | serve p50 µs | serve p99 µs | added p50 µs | added p99 µs | serve CPU µs/req |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const kind of KINDS) {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], ...(kind === 'stream' ? { stream: true } : {}) });
  for (let i = 0; i < WARMUP; i++) { await once('direct', body); await once('serve', body); }
  const lat = { direct: [], serve: [] };
  let serveCpu = 0;
  for (let i = 0; i < N; i++) {
    lat.direct.push(await once('direct', body));
    const c0 = cpuTicks(serve.pid);
    lat.serve.push(await once('serve', body));
    serveCpu += cpuTicks(serve.pid) - c0;
  }
  for (const k of ['direct', 'serve']) lat[k].sort((a, b) => a - b);
  const d50 = pct(lat.direct, 0.5), d99 = pct(lat.direct, 0.99), s50 = pct(lat.serve, 0.5), s99 = pct(lat.serve, 0.99);
  console.log(`| ${kind} | ${fmt(d50)} | ${fmt(d99)} | ${fmt(s50)} | ${fmt(s99)} | ${fmt(s50 - d50)} | ${fmt(s99 - d99)} | ${fmt((serveCpu / CLK_TCK) * 1e6 / N, 1)} |`);
}
console.log(`\nload average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
process.exit(0);
