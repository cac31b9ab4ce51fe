#!/usr/bin/env node
// Memory and CPU per open stream: N streams held open at once, each 20 chunks 400 ms apart from
// one bench/mock-upstream.mjs (MOCK_CHUNK_DELAY_MS), through
//   ferrogate   in-process, `gw.streamEvents()`;
//   openai      in-process, the openai SDK's stream (the baseline);
//   serve       `ferrogate serve` (native engine) as a proxy: a client process holds N streams
//               open through it (node:http), and the serve process is measured (client
//               connection plus upstream connection).
// Each contender runs in a fresh process after a warm-up of WARMUP streams. Reported per
// contender: RSS per stream = (peak RSS while the N streams are open − RSS before, after a GC) / N;
// the JS heap's share of it; CPU per stream (the measured process, all threads); the time each
// stream took against the ideal (CHUNKS × DELAY_MS); errors (a stream that failed or lost
// chunks). The mock's own work is not counted.
//
// TLS=1: the mock serves https with HTTP/2 offered by ALPN beside HTTP/1.1, as vendors' edges do
// (a private CA made at startup). ferrogate (in-process and serve) trusts it through the provider's
// `caCertPath` and negotiates h2, so its streams share connections; openai-node trusts it through
// NODE_EXTRA_CA_CERTS and speaks HTTP/1.1 (undici's fetch offers no h2 by default), one connection
// per stream. The protocol each contender's requests arrived over, and on how many TLS connections
// and h2 sessions, is read from the mock (`/__mock/stats`). H2_MAX_STREAMS sets the mock's
// SETTINGS_MAX_CONCURRENT_STREAMS (real edges advertise 100-256).
//
// Usage: node bench/concurrent-streams.mjs [contender ...]   (default: ferrogate openai serve)
// Env: N (10000), CHUNKS (20), DELAY_MS (400), WARMUP (200), SERVE_N (N, at most 9500: serve holds
//      two sockets per stream and this machine's hard limit on open files is 20,000), TLS (0),
//      H2_MAX_STREAMS (the mock's default, 2^32-1)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';
import { BENCH_DIR, REPO_DIR, sleep, freePort, requireFerrogate, loadOpenAI, startMockUpstream, fmt, depVersion } from './lib.mjs';

const env = process.env;
const N = Number(env.N || 10_000);
const CHUNKS = Number(env.CHUNKS || 20);
const DELAY_MS = Number(env.DELAY_MS || 400);
const WARMUP = Number(env.WARMUP || 200);
const TLS = env.TLS === '1';
const FD_LIMIT_STREAMS = 9500;
const SERVE_N = Math.min(Number(env.SERVE_N || N), FD_LIMIT_STREAMS);
const IDEAL_MS = CHUNKS * DELAY_MS;
const KB = 1024;
const SELF = fileURLToPath(import.meta.url);
const body = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream to the benchmark.' }] };

function status(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN) * KB;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}
function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, CLK_TCK 100
}
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

/** Starts `count` streams at once through `open`, which resolves with the chunks it saw; samples `pid`. */
async function holdStreams(count, open, pid, { beforeSample } = {}) {
  let peak = 0;
  let peakHeap = 0;
  let openNow = 0;
  let allOpenRss = 0;
  const sampler = setInterval(() => {
    const { rss } = status(pid);
    if (rss > peak) peak = rss;
    if (beforeSample) peakHeap = Math.max(peakHeap, beforeSample());
  }, 200);
  const times = [];
  let errors = 0;
  let firstError;
  const runs = Array.from({ length: count }, async () => {
    const t0 = performance.now();
    try {
      const chunks = await open(() => {
        if (++openNow === count) allOpenRss = status(pid).rss;
      });
      if (chunks !== CHUNKS) throw new Error(`${chunks} of ${CHUNKS} chunks`);
      times.push(performance.now() - t0);
    } catch (error) {
      errors++;
      firstError ??= error;
    }
  });
  await Promise.all(runs);
  clearInterval(sampler);
  peak = Math.max(peak, status(pid).rss);
  times.sort((a, b) => a - b);
  return { peak, peakHeap, allOpenRss, times, errors, firstError: firstError && `${firstError.code ?? ''} ${firstError.message}`.trim() };
}

async function inProcess(kind, baseURL, caPath, count) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  let open;
  if (kind === 'ferrogate') {
    const { Gateway } = requireFerrogate();
    const gw = new Gateway({ providers: { up: { kind: 'openai', baseUrl: baseURL, apiKey: 'bench', ...(caPath ? { caCertPath: caPath } : {}) } }, maxRetries: 0, timeoutMs: 600_000 });
    open = async (first) => {
      let chunks = 0;
      for await (const event of gw.streamEvents({ ...body, model: 'up/gpt-4o-mini' })) {
        if (event.type === 'text' && event.text && ++chunks === 1) first();
      }
      return chunks;
    };
  } else {
    const OpenAI = loadOpenAI();
    const sdk = new OpenAI({ baseURL, apiKey: 'bench', maxRetries: 0, timeout: 600_000 });
    open = async (first) => {
      let chunks = 0;
      for await (const chunk of await sdk.chat.completions.create({ ...body, stream: true })) {
        if (chunk.choices[0]?.delta?.content) {
          if (++chunks === 1) first();
        }
      }
      return chunks;
    };
  }
  await holdStreams(Math.min(WARMUP, count), open, process.pid);
  gc();
  const before = process.memoryUsage();
  const cpu0 = process.cpuUsage();
  const held = await holdStreams(count, open, process.pid, { beforeSample: () => process.memoryUsage().heapUsed });
  const cpu = process.cpuUsage(cpu0);
  return { ...held, before: before.rss, heapBefore: before.heapUsed, cpuS: (cpu.user + cpu.system) / 1e6 };
}

function serveClient(port, first) {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ ...body, stream: true });
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), authorization: 'Bearer bench' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
      let chunks = 0;
      let tail = '';
      res.setEncoding('utf8');
      res.on('data', (text) => {
        const lines = (tail + text).split('\n');
        tail = lines.pop();
        for (const line of lines) if (line.includes('"content":"tok')) { if (++chunks === 1) first(); }
      });
      res.on('end', () => resolve(chunks));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function runServe(baseURL, caPath, count) {
  const port = await freePort();
  // The peers config, with room for every stream's connection (serve closes connections past
  // `server.maxConnections`, 1,024 by default).
  const config = JSON.parse(fs.readFileSync(path.join(BENCH_DIR, 'serve-peers.json'), 'utf8'));
  config.server = { ...config.server, maxConnections: count + WARMUP + 100 };
  if (caPath) config.providers.openai.caCertPath = caPath;
  const configPath = path.join(os.tmpdir(), `ferrogate-streams-${process.pid}.json`);
  fs.writeFileSync(configPath, JSON.stringify(config));
  process.on('exit', () => fs.rmSync(configPath, { force: true }));
  const serve = spawn(process.execPath, [path.join(REPO_DIR, 'bin', 'ferrogate.js'), 'serve', '--config', configPath], {
    stdio: ['ignore', 'ignore', 'inherit'], env: { ...env, PORT: String(port), UPSTREAM_BASE_URL: baseURL },
  });
  process.on('exit', () => serve.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    try { await fetch(`http://127.0.0.1:${port}/health`); break; } catch { if (i > 100) throw new Error('serve did not start'); await sleep(100); }
  }
  // The client is this process: the serve process alone is measured.
  await holdStreams(Math.min(WARMUP, count), (first) => serveClient(port, first), serve.pid);
  await sleep(500);
  const before = status(serve.pid).rss;
  const cpu0 = cpuSeconds(serve.pid);
  const held = await holdStreams(count, (first) => serveClient(port, first), serve.pid);
  const cpuS = cpuSeconds(serve.pid) - cpu0;
  serve.kill('SIGTERM');
  return { ...held, before, cpuS, workers: env.FERROGATE_WORKER_THREADS || String(os.availableParallelism()) };
}

if (process.argv[2] === '--child') {
  const [, , , kind, baseURL, count, caPath] = process.argv;
  const result = kind === 'serve' ? await runServe(baseURL, caPath, Number(count)) : await inProcess(kind, baseURL, caPath, Number(count));
  console.log(`CHILDJSON ${JSON.stringify(result)}`);
  process.exit(0);
}

const contenders = process.argv.slice(2).length ? process.argv.slice(2) : ['ferrogate', 'openai', 'serve'];
const mock = await startMockUpstream({
  MOCK_CHUNKS: String(CHUNKS),
  MOCK_CHUNK_DELAY_MS: String(DELAY_MS),
  ...(TLS ? { MOCK_TLS: '1' } : {}),
  ...(env.H2_MAX_STREAMS ? { MOCK_H2_MAX_STREAMS: env.H2_MAX_STREAMS } : {}),
});
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const upstream = TLS ? `https (h2 or HTTP/1.1 by ALPN${env.H2_MAX_STREAMS ? `, ${env.H2_MAX_STREAMS} streams per h2 connection` : ''})` : 'plain HTTP/1.1';
console.log(`Concurrent streams: ${N.toLocaleString('en-US')} held open at once (serve: ${SERVE_N.toLocaleString('en-US')}), ${CHUNKS} chunks ${DELAY_MS} ms apart (ideal ${IDEAL_MS} ms), after ${WARMUP} warm-up streams; upstream ${upstream}; Node ${process.version}, openai ${depVersion('openai')}, ${os.cpus().length} CPUs, load average ${load()} at the start.`);
console.log('');
console.log('| contender | streams | upstream requests (TLS connections, h2 sessions, most streams on one) | RSS before MB | peak RSS MB | RSS per stream KB | JS heap per stream KB | CPU ms per stream | time p50 / ideal | time p99 / ideal | max / ideal | errors |');
console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
const results = {};
/** What reached the mock between two `/__mock/stats` reads: requests by protocol, connections. */
function protocolsUsed(a, b) {
  const parts = Object.keys(b.requests).filter((p) => b.requests[p] > a.requests[p]).map((p) => `${p} ×${(b.requests[p] - a.requests[p]).toLocaleString('en-US')}`);
  const most = b.maxStreamsPerSession > a.maxStreamsPerSession ? `, ≤${b.maxStreamsPerSession.toLocaleString('en-US')} streams on one` : '';
  const connections = TLS ? ` (${(b.tlsConnections - a.tlsConnections).toLocaleString('en-US')}, ${(b.h2Sessions - a.h2Sessions).toLocaleString('en-US')}${most})` : '';
  const resets = Object.entries(b.h2Resets ?? {}).map(([code, n]) => [code, n - (a.h2Resets?.[code] ?? 0)]).filter(([, n]) => n > 0);
  const broken = b.h2Errors > a.h2Errors ? `; the mock saw ${b.h2Errors - a.h2Errors} h2 errors (${b.firstH2Error})` : '';
  const reset = resets.length ? `; streams reset: ${resets.map(([code, n]) => `${n} with code ${code}`).join(', ')}` : '';
  return `${parts.join(' + ') || 'none'}${connections}${broken}${reset}`;
}
for (const kind of contenders) {
  const count = kind === 'serve' ? SERVE_N : N;
  const statsBefore = await mock.getJson('/__mock/stats');
  const out = await new Promise((resolve) => {
    // openai-node trusts the mock's CA as a Node app would (the gateway is handed caCertPath).
    const childEnv = TLS && kind === 'openai' ? { ...env, NODE_EXTRA_CA_CERTS: mock.caPath } : env;
    const args = [SELF, '--child', kind, mock.baseUrl, String(count), ...(TLS ? [mock.caPath] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv });
    let s = '';
    child.stdout.on('data', (d) => { s += d; });
    child.on('close', () => resolve(s));
  });
  const used = protocolsUsed(statsBefore, await mock.getJson('/__mock/stats'));
  const m = /CHILDJSON (\{.*\})/.exec(out);
  if (!m) { console.log(`| ${kind} | failed | ${used} | | | | | | | | | |`); continue; }
  const r = JSON.parse(m[1]);
  results[kind] = r;
  const perStream = (r.peak - r.before) / count / KB;
  const heap = r.peakHeap ? fmt((r.peakHeap - r.heapBefore) / count / KB, 1) : '–';
  const label = kind === 'serve' ? `serve (${r.workers} workers)` : kind;
  const ratio = (ms) => (ms === undefined ? 'n/a' : `${fmt(ms / IDEAL_MS, 3)}`);
  console.log(`| ${label} | ${count.toLocaleString('en-US')} | ${used} | ${fmt(r.before / KB / KB, 1)} | ${fmt(r.peak / KB / KB, 1)} | ${fmt(perStream, 1)} | ${heap} | ${fmt((r.cpuS * 1000) / count, 3)} | ${ratio(pct(r.times, 0.5))} | ${ratio(pct(r.times, 0.99))} | ${ratio(r.times.at(-1))} | ${r.errors}${r.firstError ? ` (${r.firstError})` : ''} |`);
}
if (results.ferrogate && results.openai) {
  const per = (r) => (r.peak - r.before) / N;
  console.log('');
  console.log(`ferrogate ÷ openai: RSS per stream ${fmt(per(results.ferrogate) / per(results.openai), 2)}×, CPU per stream ${fmt(results.ferrogate.cpuS / results.openai.cpuS, 2)}×.`);
}
console.log(`\nload average at the end ${load()}`);
mock.stop();
process.exit(0);
