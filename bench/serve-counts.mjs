#!/usr/bin/env node
// `ferrogate serve` at concurrency 1, in counts rather than time: the serve process's syscalls
// (by name), context switches and CPU per request, over N requests of one kind. Counts hold
// still under machine load, where latency does not. Needs `perf` (and `strace` for the
// by-name table) with the right to attach to the serve process (root, or perf_event_paranoid
// low enough).
//
// Usage: node bench/serve-counts.mjs   Env: N (2000), KIND (chat | stream), CHUNKS (20),
//   FERROGATE_WORKER_THREADS (passed to serve; 1 unless set), STRACE (1: also the syscall table)
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { BENCH_DIR, REPO_DIR, sleep, freePort, waitUp, childrenKilledOnExit } from './lib.mjs';

const env = process.env;
const N = Number(env.N || 2000);
const KIND = env.KIND || 'chat';
const CHUNKS = Number(env.CHUNKS || 20);
const children = childrenKilledOnExit();

const mockPort = await freePort();
children.push(spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], { stdio: 'ignore', env: { ...env, PORT: String(mockPort), MOCK_CHUNKS: String(CHUNKS) } }));
const servePort = await freePort();
const serve = spawn(process.execPath, [path.join(REPO_DIR, 'bin', 'ferrogate.js'), 'serve', '--config', path.join(BENCH_DIR, 'serve-peers.json')], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...env, FERROGATE_WORKER_THREADS: env.FERROGATE_WORKER_THREADS || '1', PORT: String(servePort), UPSTREAM_BASE_URL: `http://127.0.0.1:${mockPort}/v1` },
});
children.push(serve);
await waitUp(mockPort);
await waitUp(servePort);

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], ...(KIND === 'stream' ? { stream: true } : {}) });
function once() {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: servePort, path: '/v1/chat/completions', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer bench' } }, (res) => {
      let n = 0;
      res.on('data', (c) => { n += c.length; });
      res.on('end', () => (res.statusCode === 200 && n > 0 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    r.on('error', reject);
    r.end(body);
  });
}
async function run(n) { for (let i = 0; i < n; i++) await once(); }

await run(500);
// perf stat attached for exactly the N requests: it prints when interrupted.
async function attached(command, args, parse) {
  const tool = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  tool.stderr.on('data', (c) => { err += c; });
  await sleep(300);
  await run(N);
  tool.kill('SIGINT');
  await new Promise((r) => tool.on('close', r));
  return parse(err);
}
const events = 'context-switches,raw_syscalls:sys_enter,task-clock';
const stat = await attached('perf', ['stat', '-x', ',', '-e', events, '-p', String(serve.pid)], (text) => {
  const out = {};
  for (const line of text.split('\n')) {
    const f = line.split(',');
    if (f.length > 3 && f[2]) out[f[2]] = Number(f[0]);
  }
  return out;
});
const perReq = (x) => (x / N).toFixed(2);
console.log(`serve ${KIND} (${KIND === 'stream' ? `${CHUNKS} chunks, ` : ''}workers ${env.FERROGATE_WORKER_THREADS || 1}), ${N} requests at concurrency 1, per request:`);
console.log(`  syscalls ${perReq(stat['raw_syscalls:sys_enter'])}  context switches ${perReq(stat['context-switches'])}  CPU ${(stat['task-clock'] * 1000 / N).toFixed(1)} µs (task-clock)`);
if (env.STRACE === '1') {
  const table = await attached('strace', ['-c', '-f', '-p', String(serve.pid)], (text) => text);
  const rows = table.split('\n').filter((l) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+/.test(l));
  for (const row of rows) {
    const f = row.trim().split(/\s+/);
    const calls = Number(f[3]);
    const name = f[f.length - 1];
    if (calls / N >= 0.05) console.log(`  ${name.padEnd(16)} ${(calls / N).toFixed(2)}`);
  }
}
spawnSync('true');
process.exit(0);
