#!/usr/bin/env node
// ferrogate vs the official `openai` SDK, both inside the same Express 5 app, in ONE run against
// ONE mock upstream. `npm run bench` = `node bench/run.mjs`. See bench/README.md.
//
// Starts bench/mock-upstream.mjs, then each contender app as a child process (own process group,
// 127.0.0.1, free ports), checks it (one JSON and one SSE request), then per scenario: warm-up,
// measured load run (wrk when installed, else bench/loadgen.mjs), CPU and RSS of the app from
// /proc. Prints markdown tables, writes bench/results/latest.{json,md}; app logs go to
// bench/results/logs/. Finally runs bench/long-stream.mjs (LONG_STREAM=0 skips it).
// Everything is bounded: each load run has a kill timer and the whole run a hard deadline;
// only the process groups started here are signalled.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, REPO_DIR, sleep, freePort, procUsage, resetPeakRss, which, depVersion, fmt } from './lib.mjs';

const env = process.env;
const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
const DURATION = num(env.DURATION, 10);
const WARMUP = num(env.WARMUP, 2);
const CHAT_CONC = num(env.CHAT_CONC, 32);
const STREAM_CONC = num(env.STREAM_CONC, 16);
const STREAM_CHUNKS = num(env.STREAM_CHUNKS, 100);
const PACED_CONC = num(env.PACED_CONC, 200);
const PACED_CHUNKS = num(env.PACED_CHUNKS, 50);
const PACED_DELAY_MS = num(env.PACED_DELAY_MS, 20);
const SCENARIO_NAMES = (env.SCENARIOS || 'chat,stream,paced,messages-stream,responses-stream').split(',').map((s) => s.trim()).filter(Boolean);
const LOADGEN = env.LOADGEN || (which('wrk') ? 'wrk' : 'node');
const APP_NODE = env.BENCH_APP_NODE || process.execPath;
const RESULTS_DIR = env.RESULTS_DIR || path.join(BENCH_DIR, 'results');
const LOG_DIR = path.join(RESULTS_DIR, 'logs');
const MODEL = 'gpt-4o-mini';
const log = (...a) => console.error('[bench]', ...a);
fs.mkdirSync(LOG_DIR, { recursive: true });
if (!['wrk', 'node'].includes(LOADGEN)) throw new Error(`LOADGEN must be wrk or node, not ${LOADGEN}`);

const prompt = [{ role: 'user', content: 'Say hello to the benchmark.' }];
const SCENARIOS = {
  chat: { conc: CHAT_CONC, chunks: STREAM_CHUNKS, body: { model: MODEL, messages: prompt } },
  stream: { conc: STREAM_CONC, chunks: STREAM_CHUNKS, streamed: true, body: { model: MODEL, messages: prompt, stream: true } },
  // Real model traffic: many concurrent answers, each a token every PACED_DELAY_MS. The mock
  // waits the delay before every content chunk, so a stream cannot end sooner than idealMs.
  paced: {
    conc: PACED_CONC, chunks: PACED_CHUNKS, delayMs: PACED_DELAY_MS, idealMs: PACED_CHUNKS * PACED_DELAY_MS, streamed: true,
    body: { model: MODEL, messages: prompt, stream: true },
  },
  // The same 100-chunk stream asked for by an Anthropic Messages client and by an OpenAI Responses client: the
  // front door translates to the (Chat Completions) upstream and encodes each protocol's events. Only contenders
  // that serve those protocols run them.
  'messages-stream': {
    conc: STREAM_CONC, chunks: STREAM_CHUNKS, streamed: true, path: '/v1/messages', only: ['express+gatewayRouter'],
    body: { model: MODEL, max_tokens: 1024, messages: prompt, stream: true },
  },
  'responses-stream': {
    conc: STREAM_CONC, chunks: STREAM_CHUNKS, streamed: true, path: '/v1/responses', only: ['express+gatewayRouter'],
    body: { model: MODEL, input: prompt[0].content, stream: true, store: false },
  },
};
for (const s of SCENARIO_NAMES) if (!SCENARIOS[s]) throw new Error(`unknown scenario ${s} (have ${Object.keys(SCENARIOS)})`);

const ALL_CONTENDERS = [
  { name: 'express+openai', script: 'express-openai.mjs', baseline: true },
  { name: 'express+bare', script: 'express-bare.mjs' }, // forwards the body with node:http, pipes the answer back
  { name: 'express+ferrogate', script: 'express-ferrogate.mjs', env: { FERROGATE_STREAM_API: 'events' } },
  // same app with a ResponseCache (every request unique: all misses), a RateLimiter that never refuses
  // and a CostTracker (SQLite ledger, hard budget never reached)
  { name: 'express+ferrogate+cache+limiter+costs', script: 'express-ferrogate.mjs', env: { FERROGATE_STREAM_API: 'events', FERROGATE_CACHE: 'miss', FERROGATE_LIMITER: '1', FERROGATE_COSTS: '1' } },
  // same app, gw.stream(req, onChunk) instead of `for await (gw.streamEvents())`; streaming only
  { name: 'express+ferrogate-cb', script: 'express-ferrogate.mjs', env: { FERROGATE_STREAM_API: 'callback' }, scenarios: ['stream', 'paced'] },
  // ferrogate/express's gatewayRouter (measured against express+bare, the app that only pipes bytes)
  { name: 'express+gatewayRouter', script: 'express-router.mjs' },
];
const wanted = env.CONTENDERS ? env.CONTENDERS.split(',').map((s) => s.trim()) : ALL_CONTENDERS.map((c) => c.name);
for (const w of wanted) if (!ALL_CONTENDERS.some((c) => c.name === w)) throw new Error(`unknown contender ${w} (have ${ALL_CONTENDERS.map((c) => c.name)})`);
const contenders = ALL_CONTENDERS.filter((c) => wanted.includes(c.name));
const baselineName = ALL_CONTENDERS[0].name;

// ---------------------------------------------------------------- process bookkeeping
const groups = new Map(); // pgid -> name (children started detached: pgid = pid)
const loaders = new Set(); // load-generator child processes
function startApp(name, script, extraEnv) {
  const logFile = path.join(LOG_DIR, `${name.replace(/[^\w.+-]+/g, '_')}.log`);
  const fd = fs.openSync(logFile, 'w');
  const child = spawn(APP_NODE, [path.join(BENCH_DIR, script)], {
    cwd: REPO_DIR, detached: true, stdio: ['ignore', fd, fd], env: { ...env, ...extraEnv },
  });
  fs.closeSync(fd);
  const rec = { name, pid: child.pid, logFile, exited: false };
  child.on('exit', (code, sig) => { rec.exited = true; rec.exit = `code=${code} sig=${sig}`; });
  groups.set(child.pid, name);
  return rec;
}
async function stopApp(rec) {
  if (!rec || !groups.has(rec.pid)) return;
  groups.delete(rec.pid);
  try { process.kill(-rec.pid, 'SIGTERM'); } catch { return; }
  for (let i = 0; i < 30 && !rec.exited; i++) await sleep(100);
  if (!rec.exited) { try { process.kill(-rec.pid, 'SIGKILL'); } catch {} }
}
function killAll() {
  for (const pgid of groups.keys()) { try { process.kill(-pgid, 'SIGKILL'); } catch {} }
  groups.clear();
  for (const ch of loaders) { try { ch.kill('SIGTERM'); } catch {} } // wrk, loadgen.mjs, long-stream.mjs (stops its children)
  loaders.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { log(`${sig}: stopping`); killAll(); process.exit(130); });

const LONG_BUDGET_S = env.LONG_STREAM === '0' ? 0 : 300;
const budgetS = contenders.reduce((a, c) => a + 30 + (c.scenarios || SCENARIO_NAMES).length * (DURATION + WARMUP + 50), 60) + LONG_BUDGET_S;
const hardTimer = setTimeout(() => { log(`hard deadline (${budgetS}s) passed: killing everything`); killAll(); process.exit(3); }, budgetS * 1000);

// ---------------------------------------------------------------- HTTP helpers
async function post(port, body, timeoutMs = 15_000) {
  const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, text: await res.text() };
}
let mockPort;
async function mockConfig(q) {
  const res = await fetch(`http://127.0.0.1:${mockPort}/__mock/config?${new URLSearchParams(q)}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  return res.json();
}
// the first error line of an app's log (else its last lines), for the report
function logTail(rec) {
  let lines;
  try { lines = fs.readFileSync(rec.logFile, 'utf8').trim().split('\n'); } catch { return ''; }
  const i = lines.findIndex((l) => /^\w*Error\b.*:/.test(l));
  return (i >= 0 ? [lines[i]] : lines.slice(-3)).map((l) => l.trim()).join(' / ');
}
async function waitReady(port, rec, timeoutS) {
  const deadline = Date.now() + timeoutS * 1000;
  let last = '';
  while (Date.now() < deadline) {
    if (rec?.exited) return `process exited (${rec.exit}): ${logTail(rec).slice(0, 600)}`;
    try {
      const r = await post(port, { model: MODEL, messages: prompt }, 5000);
      if (r.status === 200) return null;
      last = `HTTP ${r.status}: ${r.text.slice(0, 200)}`;
    } catch (e) { last = String(e.cause?.code || e.message); }
    await sleep(200);
  }
  return `not ready after ${timeoutS}s: ${last}`;
}
async function sanity(port) {
  await mockConfig({ chunks: STREAM_CHUNKS, delay: 0, latency: 0 });
  const a = await post(port, { model: MODEL, messages: prompt });
  if (a.status !== 200) return `non-stream HTTP ${a.status}: ${a.text.slice(0, 200)}`;
  if (!JSON.parse(a.text).choices?.[0]?.message?.content) return `non-stream: no choices[0].message.content: ${a.text.slice(0, 200)}`;
  const b = await post(port, { model: MODEL, messages: prompt, stream: true });
  if (b.status !== 200) return `stream HTTP ${b.status}: ${b.text.slice(0, 200)}`;
  const datas = b.text.split('\n').filter((l) => l.startsWith('data:'));
  const content = datas.filter((l) => /"content":"tok\d+/.test(l)).length;
  if (!datas.at(-1)?.includes('[DONE]')) return `stream: no final data: [DONE] (${datas.length} data lines)`;
  if (content !== STREAM_CHUNKS) return `stream: ${content} content chunks, expected ${STREAM_CHUNKS}`;
  return null;
}

// ---------------------------------------------------------------- load generation
function runChild(cmd, args, childEnv, hardMs, { liveStderr = false } = {}) {
  return new Promise((resolve) => {
    const ch = spawn(cmd, args, { stdio: ['ignore', 'pipe', liveStderr ? 'inherit' : 'pipe'], env: { ...env, ...childEnv } });
    loaders.add(ch);
    let out = '', errOut = '';
    ch.stdout.on('data', (d) => { out += d; });
    ch.stderr?.on('data', (d) => { errOut += d; });
    // SIGTERM first: long-stream.mjs then stops its own children; SIGKILL if still alive
    let t = setTimeout(() => { ch.kill('SIGTERM'); t = setTimeout(() => ch.kill('SIGKILL'), 3000); }, hardMs);
    ch.on('close', (code) => { clearTimeout(t); loaders.delete(ch); resolve({ code, out, errOut }); });
    ch.on('error', (e) => { clearTimeout(t); loaders.delete(ch); resolve({ code: -1, out, errOut: String(e) }); });
  });
}
async function runLoad(port, scen, seconds) {
  const url = `http://127.0.0.1:${port}${scen.path ?? '/v1/chat/completions'}`;
  const body = JSON.stringify(scen.body);
  const hardMs = (seconds + 45) * 1000;
  const r = LOADGEN === 'wrk'
    ? await runChild('wrk', ['-t', String(Math.min(2, scen.conc)), '-c', String(scen.conc), '-d', `${seconds}s`, '--timeout', '30s', '-s', path.join(BENCH_DIR, 'wrk-post.lua'), url], { WRK_BODY: body, WRK_AUTH: '', WRK_HEADERS: '' }, hardMs)
    : await runChild(process.execPath, [path.join(BENCH_DIR, 'loadgen.mjs')], { LOAD_URL: url, LOAD_BODY: body, LOAD_CONC: String(scen.conc), LOAD_DURATION_S: String(seconds), LOAD_TIMEOUT_S: '30' }, hardMs);
  const m = /(?:WRKJSON|LOADJSON) (\{.*\})/.exec(r.out);
  if (!m) return { error: `${LOADGEN} failed (exit ${r.code}): ${(r.errOut || r.out).slice(0, 300)}` };
  const w = JSON.parse(m[1]);
  return {
    requests: w.requests, rps: w.requests / (w.duration_us / 1e6), bytes: w.bytes,
    p50: w.p50_us / 1000, p90: w.p90_us / 1000, p99: w.p99_us / 1000, max: w.max_us / 1000,
    ...(w.ttfb_p50_us !== undefined ? { ttfbP50: w.ttfb_p50_us / 1000, ttfbP99: w.ttfb_p99_us / 1000 } : {}),
    errors: w.err_connect + w.err_read + w.err_write + w.err_timeout, non2xx: w.err_status,
  };
}

// ---------------------------------------------------------------- main
const pkgVersion = (() => { try { return JSON.parse(fs.readFileSync(path.join(REPO_DIR, 'package.json'), 'utf8')).version; } catch { return null; } })();
const gitRev = spawnSync('git', ['-C', REPO_DIR, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || null;
const meta = {
  date: new Date().toISOString(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version,
  loadgen: LOADGEN === 'wrk' ? (spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout || '').split('\n')[0].split(' [')[0] || 'wrk' : 'node loadgen.mjs',
  express: depVersion('express'), openai: depVersion('openai'), ferrogate: pkgVersion, gitRev,
  durationS: DURATION, warmupS: WARMUP, chatConc: CHAT_CONC, streamConc: STREAM_CONC, streamChunks: STREAM_CHUNKS,
  pacedConc: PACED_CONC, pacedChunks: PACED_CHUNKS, pacedDelayMs: PACED_DELAY_MS,
  loadAvgBefore: os.loadavg(),
};
log(JSON.stringify(meta));

mockPort = await freePort();
const upstream = `http://127.0.0.1:${mockPort}/v1`;
const mock = startApp('mock-upstream', 'mock-upstream.mjs', { PORT: String(mockPort), HOST: '127.0.0.1', MOCK_CHUNKS: String(STREAM_CHUNKS) });
{
  const err = await waitReady(mockPort, mock, 15);
  if (err) { log(`mock upstream failed: ${err}`); process.exit(1); }
}

const results = [];
for (const c of contenders) {
  const row = { name: c.name, baseline: !!c.baseline, scen: {} };
  results.push(row);
  let rec;
  try {
    const port = await freePort();
    rec = startApp(c.name, c.script, { PORT: String(port), UPSTREAM_BASE_URL: upstream, NODE_ENV: 'production', ...(c.env || {}) });
    const t0 = Date.now();
    const err = await waitReady(port, rec, 30);
    if (err) throw new Error(`start: ${err}`);
    row.startS = (Date.now() - t0) / 1000;
    log(`${c.name} ready in ${row.startS.toFixed(1)}s on :${port} (pid ${rec.pid})`);
    const bad = await sanity(port);
    if (bad) throw new Error(`sanity: ${bad}`);
    row.rssIdleMb = procUsage(rec.pid)?.rssMb;
    for (const s of c.scenarios || SCENARIO_NAMES) {
      if (!SCENARIO_NAMES.includes(s)) continue;
      const scen = SCENARIOS[s];
      if (scen.only && !scen.only.includes(c.name)) continue;
      await mockConfig({ chunks: scen.chunks, delay: scen.delayMs ?? 0, latency: 0 });
      if (WARMUP > 0) await runLoad(port, scen, WARMUP);
      const peakReset = resetPeakRss(rec.pid);
      const u0 = procUsage(rec.pid);
      log(`${c.name} / ${s}: c=${scen.conc} ${DURATION}s (${LOADGEN}) ...`);
      const r = await runLoad(port, scen, DURATION);
      const u1 = procUsage(rec.pid);
      r.conc = scen.conc;
      if (!u1) r.error = r.error || `app died: ${logTail(rec).slice(0, 200)}`;
      if (u0 && u1) {
        r.cpuS = u1.cpuS - u0.cpuS;
        r.mainCpuS = u1.mainCpuS - u0.mainCpuS;
        r.cpuMsPerReq = r.requests ? (r.cpuS * 1000) / r.requests : NaN;
        r.mainCpuMsPerReq = r.requests ? (r.mainCpuS * 1000) / r.requests : NaN;
        if (scen.streamed) {
          // every completed stream carried STREAM_CHUNKS content chunks (checked by sanity())
          r.chunks = r.requests * scen.chunks;
          r.cpuUsPerChunk = r.chunks ? (r.cpuS * 1e6) / r.chunks : NaN;
          r.mainCpuUsPerChunk = r.chunks ? (r.mainCpuS * 1e6) / r.chunks : NaN;
          r.chunksPerS = r.chunks / (r.requests / r.rps);
        }
        if (scen.idealMs) {
          r.idealMs = scen.idealMs;
          r.overIdealP50 = r.p50 - scen.idealMs;
          r.overIdealP99 = r.p99 - scen.idealMs;
        }
        r.threads = u1.threads;
        r.rssAfterMb = u1.rssMb;
        r.rssPeakMb = peakReset ? u1.peakRssMb : NaN;
      }
      row.scen[s] = r;
      log(`${c.name} / ${s}: ${r.error || `${fmt(r.rps)} req/s p50 ${fmt(r.p50, 2)}ms p99 ${fmt(r.p99, 2)}ms err ${r.errors}/${r.non2xx} cpu ${fmt(r.cpuS, 2)}s (main ${fmt(r.mainCpuS, 2)}s)`}`);
    }
    row.rssAfterMb = procUsage(rec.pid)?.rssMb;
  } catch (e) {
    row.error = String(e.message || e);
    log(`${c.name}: ${row.error}`);
  } finally {
    await stopApp(rec);
  }
}
await mockConfig({ chunks: STREAM_CHUNKS, delay: 0, latency: 0 }).catch(() => {});
await stopApp(mock);

// ---------------------------------------------------------------- report
const clean = (s, n) => String(s).replace(/\|/g, '/').replace(/\s+/g, ' ').slice(0, n);
const lines = [];
lines.push(`ferrogate ${meta.ferrogate ?? '?'}${meta.gitRev ? ` (${meta.gitRev})` : ''} vs express ${meta.express} + openai ${meta.openai}; Node ${meta.node}; ${meta.cpus} CPUs shared by load generator (${meta.loadgen}), app and mock upstream; loopback; ${DURATION}s per run after ${WARMUP}s warm-up; load average ${meta.loadAvgBefore.map((l) => l.toFixed(2)).join(' ')} at the start, ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end.`);
lines.push(`Scenarios: chat = non-stream, c=${CHAT_CONC}; stream = SSE of ${STREAM_CHUNKS} content chunks (no delay), c=${STREAM_CONC}; paced = SSE of ${PACED_CHUNKS} chunks ${PACED_DELAY_MS} ms apart, c=${PACED_CONC}; latency = whole stream. CPU = app process (all threads) / main thread only, from /proc during the measured run.`);
lines.push('');
lines.push('| contender | scenario | conc | req/s | p50 ms | p99 ms | errors / non-2xx | CPU ms/req | CPU µs/chunk | main-thread ms/req | main-thread µs/chunk | RSS idle MB | RSS peak MB |');
lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const row of results) {
  if (row.error && !Object.keys(row.scen).length) {
    lines.push(`| ${row.name} | FAILED: ${clean(row.error, 200)} | | | | | | | | | | | |`);
    continue;
  }
  for (const [s, r] of Object.entries(row.scen)) {
    if (r.error && !r.requests) { lines.push(`| ${row.name} | ${s} | ${r.conc} | ${clean(r.error, 160)} | | | | | | | | | |`); continue; }
    lines.push(`| ${row.name} | ${s} | ${r.conc} | ${fmt(r.rps)} | ${fmt(r.p50, 2)} | ${fmt(r.p99, 2)} | ${r.errors} / ${r.non2xx} | ${fmt(r.cpuMsPerReq, 3)} | ${r.chunks ? fmt(r.cpuUsPerChunk, 1) : '–'} | ${fmt(r.mainCpuMsPerReq, 3)} | ${r.chunks ? fmt(r.mainCpuUsPerChunk, 1) : '–'} | ${fmt(row.rssIdleMb)} | ${fmt(r.rssPeakMb ?? r.rssAfterMb)} |`);
  }
  if (row.error) lines.push(`| ${row.name} | ERROR after runs: ${clean(row.error, 200)} | | | | | | | | | | | |`);
}

// ratios against the baseline (and against the bare forwarding app) measured in this same run
const ratios = [];
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const x = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a');
for (const refName of [baselineName, 'express+bare']) {
  const base = results.find((r) => r.name === refName && !r.error);
  if (!base) continue;
  for (const row of results) {
    if (row === base || row.baseline || row.name === 'express+bare') continue;
    for (const [s, r] of Object.entries(row.scen)) {
      const b = base.scen[s];
      if (!b || r.error || b.error) continue;
      ratios.push({
        contender: row.name, vs: refName, scenario: s,
        rps: ratio(r.rps, b.rps), p50: ratio(r.p50, b.p50), p99: ratio(r.p99, b.p99),
        cpuPerReq: ratio(r.cpuMsPerReq, b.cpuMsPerReq), mainCpuPerReq: ratio(r.mainCpuMsPerReq, b.mainCpuMsPerReq),
        rssPeak: ratio(r.rssPeakMb ?? r.rssAfterMb, b.rssPeakMb ?? b.rssAfterMb),
      });
    }
  }
}
if (ratios.length) {
  lines.push('');
  lines.push('Ratios (same run; contender ÷ reference: req/s higher is better, the rest lower is better):');
  lines.push('');
  lines.push('| contender | vs | scenario | req/s | p50 | p99 | CPU/req (= CPU/chunk) | main-thread CPU/req | RSS peak |');
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|');
  for (const q of ratios) lines.push(`| ${q.contender} | ${q.vs} | ${q.scenario} | ${x(q.rps)} | ${x(q.p50)} | ${x(q.p99)} | ${x(q.cpuPerReq)} | ${x(q.mainCpuPerReq)} | ${x(q.rssPeak)} |`);
}

// the paced scenario: what matters is CPU per stream and how late streams end
const pacedRows = results.flatMap((row) => (row.scen.paced && !row.scen.paced.error ? [[row.name, row.scen.paced]] : []));
if (pacedRows.length) {
  const basePaced = results.find((r) => r.name === baselineName)?.scen.paced;
  lines.push('');
  lines.push(`Paced: ${PACED_CONC} concurrent streams of ${PACED_CHUNKS} chunks ${PACED_DELAY_MS} ms apart (ideal ${PACED_CHUNKS * PACED_DELAY_MS} ms per stream).`);
  lines.push('');
  lines.push('| contender | streams/s | chunks/s | CPU ms/stream | CPU µs/chunk | CPU/stream vs openai | p50 over ideal ms | p99 over ideal ms | RSS peak MB |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [name, r] of pacedRows) {
    lines.push(`| ${name} | ${fmt(r.rps, 1)} | ${fmt(r.chunksPerS)} | ${fmt(r.cpuMsPerReq, 3)} | ${fmt(r.cpuUsPerChunk, 1)} | ${x(ratio(r.cpuMsPerReq, basePaced?.cpuMsPerReq))} | ${fmt(r.overIdealP50, 1)} | ${fmt(r.overIdealP99, 1)} | ${fmt(r.rssPeakMb ?? r.rssAfterMb)} |`);
  }
}

// ---------------------------------------------------------------- long stream (in-process)
let longStream = null;
if (env.LONG_STREAM !== '0') {
  log('long-stream: one long stream per API, in-process (bench/long-stream.mjs) ...');
  const jsonOut = path.join(RESULTS_DIR, 'long-stream.json');
  try { fs.rmSync(jsonOut); } catch {}
  const r = await runChild(process.execPath, [path.join(BENCH_DIR, 'long-stream.mjs')], { LONG_JSON_OUT: jsonOut }, (LONG_BUDGET_S - 10) * 1000, { liveStderr: true });
  try { longStream = JSON.parse(fs.readFileSync(jsonOut, 'utf8')); } catch { longStream = { error: `long-stream.mjs exit ${r.code}` }; }
  lines.push('');
  lines.push(r.out.trim() || `long-stream: failed (exit ${r.code}), see the log above`);
}

meta.loadAvgAfter = os.loadavg();
lines.push('', `Load average (1/5/15 min) before: ${meta.loadAvgBefore.map((l) => l.toFixed(2)).join(' ')}, after: ${meta.loadAvgAfter.map((l) => l.toFixed(2)).join(' ')} on ${meta.cpus} CPUs.`);
const md = lines.join('\n');
fs.writeFileSync(path.join(RESULTS_DIR, 'latest.md'), md + '\n');
fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), JSON.stringify({ meta, results, ratios, longStream }, null, 2) + '\n');
console.log(md);
log(`wrote ${path.join(RESULTS_DIR, 'latest.json')} (+ latest.md); app logs in ${LOG_DIR}/`);
clearTimeout(hardTimer);
