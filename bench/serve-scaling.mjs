#!/usr/bin/env node
// `ferrogate serve` across cores: the same closed-loop load (bench/loadgen.mjs, non-streamed chats)
// against serve run with 1, 2, … tokio workers, each run pinned with `taskset` so that serve gets
// one core per worker and the load generator and the mock upstream stay on the cores given to them.
// Prints req/s, latency and serve's CPU per request per worker count, and the throughput ratio
// against one worker. On a machine with fewer cores than workers + load, the runs share cores:
// read the ratio, not the absolute figures.
//
// Usage: node bench/serve-scaling.mjs
// Env: WORKERS (1,2: worker counts), SERVE_CPUS (per count, ';'-separated taskset lists; default
//      core 1 for one worker, cores 0-1 for two), LOAD_CPUS (0: load generator and mock upstream),
//      CONC (64), DURATION (8 s per run), WARMUP (2 s), KIND (chat | stream)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, REPO_DIR, sleep, freePort, fmt, which } from './lib.mjs';

const env = process.env;
const WORKERS = (env.WORKERS || '1,2').split(',').map(Number);
const SERVE_CPUS = (env.SERVE_CPUS || '1;0-1').split(';');
const LOAD_CPUS = env.LOAD_CPUS || '0';
const CONC = Number(env.CONC || 64);
const DURATION = Number(env.DURATION || 8);
const WARMUP = Number(env.WARMUP || 2);
const KIND = env.KIND || 'chat';
if (!which('taskset')) throw new Error('taskset is needed (util-linux)');
const children = [];
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } });

const pinned = (cpus, args, options) => {
  const child = spawn('taskset', ['-c', cpus, process.execPath, ...args], options);
  children.push(child);
  return child;
};
async function waitUp(port) {
  for (let i = 0; i < 100; i++) {
    try { await fetch(`http://127.0.0.1:${port}/health`); return; } catch { await sleep(100); }
  }
  throw new Error(`nothing listening on ${port}`);
}
function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
function load(port, seconds) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], ...(KIND === 'stream' ? { stream: true } : {}) });
    const child = pinned(LOAD_CPUS, [path.join(BENCH_DIR, 'loadgen.mjs')], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...env, LOAD_URL: `http://127.0.0.1:${port}/v1/chat/completions`, LOAD_BODY: body, LOAD_CONC: String(CONC), LOAD_DURATION_S: String(seconds), LOAD_HEADERS: JSON.stringify({ authorization: 'Bearer bench' }) },
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', () => {
      const m = /LOADJSON (\{.*\})/.exec(out);
      return m ? resolve(JSON.parse(m[1])) : reject(new Error('the load generator printed no result'));
    });
  });
}

const mockPort = await freePort();
pinned(LOAD_CPUS, [path.join(BENCH_DIR, 'mock-upstream.mjs')], { stdio: 'ignore', env: { ...env, PORT: String(mockPort) } });
await waitUp(mockPort);
console.log(`serve across cores: ${KIND}, closed loop at concurrency ${CONC}, ${DURATION} s per run after ${WARMUP} s; load generator and mock upstream on CPU(s) ${LOAD_CPUS}; ${os.cpus().length} CPUs, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at the start.`);
console.log('');
console.log('| workers | serve CPUs | req/s | ratio vs 1 worker | p50 ms | p99 ms | errors | serve CPU ms/req | serve cores busy |');
console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
let base;
for (const [i, workers] of WORKERS.entries()) {
  const cpus = SERVE_CPUS[i] ?? SERVE_CPUS.at(-1);
  const port = await freePort();
  const serve = pinned(cpus, [path.join(REPO_DIR, 'bin', 'ferrogate.js'), 'serve', '--config', path.join(BENCH_DIR, 'serve-peers.json')], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { ...env, PORT: String(port), UPSTREAM_BASE_URL: `http://127.0.0.1:${mockPort}/v1`, FERROGATE_WORKER_THREADS: String(workers) },
  });
  await waitUp(port);
  await load(port, WARMUP);
  const cpu0 = cpuSeconds(serve.pid);
  const r = await load(port, DURATION);
  const cpu = cpuSeconds(serve.pid) - cpu0;
  serve.kill('SIGTERM');
  const reqs = r.requests;
  const rps = reqs / (r.duration_us / 1e6);
  base ??= rps;
  const errors = r.err_connect + r.err_read + r.err_status + r.err_timeout;
  console.log(`| ${workers} | ${cpus} | ${fmt(rps)} | ${fmt(rps / base, 2)}× | ${fmt(r.p50_us / 1000, 2)} | ${fmt(r.p99_us / 1000, 2)} | ${errors} | ${fmt((cpu * 1000) / Math.max(1, reqs), 3)} | ${fmt(cpu / DURATION, 2)} |`);
  await sleep(500);
}
console.log(`\nload average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
process.exit(0);
