#!/usr/bin/env node
// `ferrogate serve` as a proxy at concurrency 1: the latency it adds over calling the mock
// upstream directly, and the serve process's CPU per request. One client (node:http, keep-alive,
// one socket per target) alternates requests between the mock directly and the proxy, so both
// see the same machine load; the difference of the percentiles is what the proxy adds.
// The client's own cost is in both columns and cancels out.
//
// Usage: node bench/serve-latency.mjs        Env: N (3000 per target and kind), KINDS (chat,stream),
//   CHUNKS (20 per stream), ENGINE (native | node), WARMUP (300),
//   BARE (1: also the bare proxy of bench/rust/bare_proxy.rs, the same transport with no pipeline,
//   built by `cargo build --release --example bare_proxy`; or the path of its executable),
//   COMPARE (the folder of another ferrogate checkout with its addon built: its serve joins the
//   rotation as `serve B`, so two builds are compared under the same load)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, REPO_DIR, freePort, fmt, waitUp, childrenKilledOnExit } from './lib.mjs';

const env = process.env;
const N = Number(env.N || 3000);
const WARMUP = Number(env.WARMUP || 300);
const CHUNKS = Number(env.CHUNKS || 20);
const KINDS = (env.KINDS || 'chat,stream').split(',');
const ENGINE = env.ENGINE || 'native';
const children = childrenKilledOnExit();

const mockPort = await freePort();
children.push(spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], { stdio: 'ignore', env: { ...env, PORT: String(mockPort), MOCK_CHUNKS: String(CHUNKS) } }));
function startServe(repoDir, port) {
  const child = spawn(process.execPath, [path.join(repoDir, 'bin', 'ferrogate.js'), 'serve', '--engine', ENGINE, '--config', path.join(BENCH_DIR, 'serve-peers.json')], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { ...env, PORT: String(port), UPSTREAM_BASE_URL: `http://127.0.0.1:${mockPort}/v1` },
  });
  children.push(child);
  return child;
}
// Every target but `direct` is a proxy in front of the mock; `pid` is whose CPU is counted.
const targets = [{ name: 'direct', port: mockPort }];
const servePort = await freePort();
targets.push({ name: 'serve', port: servePort, pid: startServe(REPO_DIR, servePort).pid });
if (env.COMPARE) {
  const port = await freePort();
  targets.push({ name: 'serve B', port, pid: startServe(path.resolve(env.COMPARE), port).pid });
}
if (env.BARE) {
  const port = await freePort();
  const exe = env.BARE === '1' ? path.join(REPO_DIR, 'target', 'release', 'examples', 'bare_proxy') : env.BARE;
  const bare = spawn(exe, [], { stdio: 'ignore', env: { ...env, PORT: String(port), UPSTREAM: `http://127.0.0.1:${mockPort}`, WORKERS: env.FERROGATE_WORKER_THREADS || '1' } });
  children.push(bare);
  targets.push({ name: 'bare proxy', port, pid: bare.pid });
}
await waitUp(mockPort);
for (const t of targets) await waitUp(t.port);

function cpuTicks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
const CLK_TCK = 100;

for (const t of targets) t.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function once(target, body) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const r = http.request({ host: '127.0.0.1', port: target.port, path: '/v1/chat/completions', method: 'POST', agent: target.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer bench' } }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => (res.statusCode === 200 && n > 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1000) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    r.on('error', reject);
    r.end(body);
  });
}
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(a.length * p))];

console.log(`serve (${ENGINE}) vs direct at concurrency 1: ${N} requests per target, in turn (${targets.map((t) => t.name).join(', ')}); streams of ${CHUNKS} chunks. load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log('');
console.log('| kind | target | p50 µs | p99 µs | added p50 µs | added p99 µs | CPU µs/req |');
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const kind of KINDS) {
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], ...(kind === 'stream' ? { stream: true } : {}) });
  for (let i = 0; i < WARMUP; i++) for (const t of targets) await once(t, body);
  for (const t of targets) { t.lat = []; t.cpu = 0; }
  for (let i = 0; i < N; i++) {
    for (const t of targets) {
      const c0 = t.pid ? cpuTicks(t.pid) : 0;
      t.lat.push(await once(t, body));
      if (t.pid) t.cpu += cpuTicks(t.pid) - c0;
    }
  }
  for (const t of targets) t.lat.sort((a, b) => a - b);
  const [direct] = targets;
  for (const t of targets) {
    const p50 = pct(t.lat, 0.5), p99 = pct(t.lat, 0.99);
    const added = t === direct ? ['–', '–'] : [fmt(p50 - pct(direct.lat, 0.5)), fmt(p99 - pct(direct.lat, 0.99))];
    console.log(`| ${kind} | ${t.name} | ${fmt(p50)} | ${fmt(p99)} | ${added[0]} | ${added[1]} | ${t.pid ? fmt((t.cpu / CLK_TCK) * 1e6 / N, 1) : '–'} |`);
  }
}
console.log(`\nload average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
process.exit(0);
