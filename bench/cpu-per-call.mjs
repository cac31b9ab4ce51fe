#!/usr/bin/env node
// CPU per call, in-process, by thread: N calls at a fixed concurrency through one client
// (ferrogate chat/stream/streamEvents, the openai SDK, or plain node:http), against the mock
// upstream in a separate process (its work is not counted). Prints the process CPU per call
// (process.cpuUsage: all threads) and each thread's share (/proc/self/task/*/schedstat, ns),
// grouped by thread name: the JS main thread, ferrogate-io (the addon's tokio worker), V8 and
// libuv helpers. No Express, no load generator: less noise than `npm run bench` on a busy box.
//
// Usage: node bench/cpu-per-call.mjs [client ...]   clients: ferrogate-chat, ferrogate-stream,
//   ferrogate-events, openai-chat, openai-stream, http-chat (default: all). A ferrogate client
//   takes the gateway's stages as suffixes, as the Express bench turns them on:
//   `+cache` (a ResponseCache, every call a miss: a counter makes each prompt unique),
//   `+limiter` (requests and tokens per minute, never refusing), `+costs` (a CostTracker with
//   an SQLite ledger in a temp file and a hard daily budget never reached); `+stages` is all three.
//   e.g. `node bench/cpu-per-call.mjs ferrogate-chat ferrogate-chat+stages`
//   Telemetry (lib/telemetry.js): by default `@opentelemetry/api` is installed and no provider is
//   registered. `+no-telemetry` replaces lib/telemetry.js with stubs that observe nothing (the
//   baseline: no telemetry code at all), `+no-otel-api` makes `@opentelemetry/api` unresolvable,
//   `+otel` registers a tracer and a meter provider (spans and metrics made, then dropped).
//   The client `telemetry-check` (same suffixes) times only what a call adds: the check at its
//   start and the one per delivery, CALLS × 1000 times, with no gateway.
//   e.g. `node bench/cpu-per-call.mjs ferrogate-chat+no-telemetry ferrogate-chat ferrogate-chat+no-otel-api`
// Env: CALLS (2000), CONC (32), CHUNKS (20, per stream), DELAY_MS (0, between chunks), ROUNDS (3)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { BENCH_DIR, REPO_DIR, sleep, freePort, loadOpenAI, gatewayWithStages, fmt } from './lib.mjs';

const env = process.env;
const CALLS = Number(env.CALLS || 2000);
const CONC = Number(env.CONC || 32);
const CHUNKS = Number(env.CHUNKS || 20);
const DELAY_MS = Number(env.DELAY_MS || 0);
const ROUNDS = Number(env.ROUNDS || 3);
const ALL = ['ferrogate-chat', 'ferrogate-stream', 'ferrogate-events', 'openai-chat', 'openai-stream', 'http-chat'];
const messages = [{ role: 'user', content: 'Say hello to the benchmark.' }];
const TELEMETRY_MODES = ['no-telemetry', 'no-otel-api', 'otel'];

if (process.argv[2] === '--client') await runClient(process.argv[3]);
else await orchestrate(process.argv.slice(2).length ? process.argv.slice(2) : ALL);

function threadTimes() {
  const out = new Map();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const ns = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const name = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      // each time a thread sleeps and is woken again (or is preempted) is one switch
      const status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
      const switches = [...status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
      out.set(tid, { name: tid === String(process.pid) ? 'main (JS)' : name, ns, switches });
    } catch {}
  }
  return out;
}

// Sets up the telemetry condition a client runs under, before the package is loaded.
function telemetryCondition(modes) {
  const require = createRequire(import.meta.url);
  const Module = require('node:module');
  if (modes.has('no-telemetry')) {
    const file = path.join(path.dirname(require.resolve(env.FERROGATE_MODULE || REPO_DIR)), 'lib', 'telemetry.js');
    const stub = new Module(file);
    stub.filename = file;
    stub.loaded = true;
    stub.exports = { startCall: () => null, startIngress: () => null, activeContext: () => undefined };
    Module._cache[file] = stub;
  }
  if (modes.has('no-otel-api')) {
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (request === '@opentelemetry/api') throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
  }
  if (modes.has('otel')) {
    const api = require('@opentelemetry/api');
    const { BasicTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
    const { MeterProvider } = require('@opentelemetry/sdk-metrics');
    const dropped = { export: (spans, done) => done({ code: 0 }), shutdown: async () => {} };
    api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(dropped)] }));
    api.metrics.setGlobalMeterProvider(new MeterProvider());
  }
}

// What telemetry adds to one call, without the call: the check as it starts and, per delivery,
// the one in lib/delivery.js's dispatch (a chat call has two deliveries: its trace report is sent only
// when it is traced).
function telemetryCheck() {
  const require = createRequire(import.meta.url);
  const telemetry = require(path.join(path.dirname(require.resolve(env.FERROGATE_MODULE || REPO_DIR)), 'lib', 'telemetry.js'));
  const body = { model: 'openai/gpt-4o-mini', messages };
  const holder = { telemetry: null };
  let observed = 0;
  return () => {
    for (let i = 0; i < 1000; i++) {
      holder.telemetry = telemetry.startCall('chat', body, false);
      if (holder.telemetry !== null) observed++;
      if (holder.telemetry !== null) holder.telemetry.delivered(2, {});
    }
    return observed;
  };
}

async function runClient(client) {
  const upstream = `http://127.0.0.1:${env.MOCK_PORT}/v1`;
  let once;
  const [clientName, ...clientSuffixes] = client.split('+');
  telemetryCondition(new Set(clientSuffixes.filter((s) => TELEMETRY_MODES.includes(s))));
  if (clientName === 'telemetry-check') {
    const check = telemetryCheck();
    once = async () => check();
  } else if (client.startsWith('ferrogate')) {
    const [api, ...suffixes] = client.split('+');
    const stages = new Set(suffixes.flatMap((s) => (s === 'stages' ? ['cache', 'limiter', 'costs'] : TELEMETRY_MODES.includes(s) ? [] : [s])));
    for (const s of stages) if (!['cache', 'limiter', 'costs'].includes(s)) throw new Error(`unknown stage +${s}`);
    const gw = gatewayWithStages(upstream, stages);
    let served = 0;
    // With a cache, every prompt is unique (as in the Express bench's FERROGATE_CACHE=miss).
    const req = stages.has('cache')
      ? () => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `${messages[0].content} #${++served}` }] })
      : () => ({ model: 'openai/gpt-4o-mini', messages });
    if (api === 'ferrogate-chat') once = () => gw.chat(req());
    else if (api === 'ferrogate-stream') once = () => gw.stream(req(), () => {});
    else if (api === 'ferrogate-events') once = async () => { for await (const ev of gw.streamEvents(req())) if (ev.type === 'done') return; };
    else throw new Error(`unknown client ${client}`);
  } else if (client.startsWith('openai')) {
    const OpenAI = loadOpenAI();
    const sdk = new OpenAI({ baseURL: upstream, apiKey: 'bench', maxRetries: 0 });
    if (client === 'openai-chat') once = () => sdk.chat.completions.create({ model: 'gpt-4o-mini', messages });
    else once = async () => { for await (const c of await sdk.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })) void c; };
  } else if (client === 'http-chat') {
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages });
    once = () => new Promise((resolve, reject) => {
      const r = http.request(`${upstream}/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        const parts = [];
        res.on('data', (c) => parts.push(c));
        res.on('end', () => { JSON.parse(Buffer.concat(parts).toString()); resolve(); });
      });
      r.on('error', reject);
      r.end(body);
    });
  } else throw new Error(`unknown client ${client}`);
  const run = async (n) => {
    let next = 0;
    await Promise.all(Array.from({ length: CONC }, async () => { while (next++ < n) await once(); }));
  };
  await run(Number(env.WARMUP_CALLS || Math.min(500, CALLS))); // warm-up: JIT, connections
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = threadTimes();
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    await run(CALLS);
    const wall = performance.now() - w0;
    const c = process.cpuUsage(c0);
    const t1 = threadTimes();
    const perCall = clientName === 'telemetry-check' ? CALLS * 1000 : CALLS; // telemetry-check: 1000 checks per round trip
    const byName = {};
    const switchesByName = {};
    for (const [tid, { name, ns, switches }] of t1) {
      const key = /^(ferrogate-io|tokio-r)/.test(name) ? 'tokio' : name === 'main (JS)' ? 'main' : /^V8|^node$/.test(name) ? 'V8/node' : name;
      byName[key] = (byName[key] || 0) + (ns - (t0.get(tid)?.ns || 0)) / 1000 / perCall;
      switchesByName[key] = (switchesByName[key] || 0) + (switches - (t0.get(tid)?.switches || 0)) / perCall;
    }
    rounds.push({ cpuUsPerCall: (c.user + c.system) / perCall, callsPerS: perCall / (wall / 1000), threadsUsPerCall: byName, switchesPerCall: switchesByName });
  }
  console.log(`CLIENTJSON ${JSON.stringify({ client, rounds })}`);
  process.exit(0);
}

async function orchestrate(clients) {
  const mockPort = await freePort();
  const mock = spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], { stdio: 'ignore', env: { ...env, PORT: String(mockPort), MOCK_CHUNKS: String(CHUNKS), MOCK_CHUNK_DELAY_MS: String(DELAY_MS) } });
  process.on('exit', () => mock.kill());
  for (let i = 0; ; i++) {
    try { await fetch(`http://127.0.0.1:${mockPort}/health`); break; } catch { if (i > 50) throw new Error('mock did not start'); await sleep(100); }
  }
  console.log(`CPU per call: ${CALLS} calls at concurrency ${CONC}, ${ROUNDS} rounds (median shown); streams of ${CHUNKS} chunks ${DELAY_MS} ms apart. load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  console.log('');
  console.log('| client | calls/s | CPU µs/call | main (JS) | tokio | V8/node + other | thread switches/call (main + tokio) |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const client of clients) {
    const out = await new Promise((resolve) => {
      const ch = spawn(process.execPath, [fileURLToPath(import.meta.url), '--client', client], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...env, MOCK_PORT: String(mockPort) } });
      let s = '';
      ch.stdout.on('data', (d) => { s += d; });
      ch.on('close', () => resolve(s));
    });
    const m = /CLIENTJSON (\{.*\})/.exec(out);
    if (!m) { console.log(`| ${client} | failed | | | | | |`); continue; }
    const { rounds } = JSON.parse(m[1]);
    rounds.sort((a, b) => a.cpuUsPerCall - b.cpuUsPerCall);
    const r = rounds[Math.floor(rounds.length / 2)];
    const t = r.threadsUsPerCall;
    const other = Object.entries(t).filter(([k]) => k !== 'main' && k !== 'tokio').reduce((a, [, v]) => a + v, 0);
    const sw = r.switchesPerCall ?? {};
    if (env.VERBOSE) console.error(client, JSON.stringify({ threadsUsPerCall: t, switchesPerCall: sw }));
    const digits = client.startsWith('telemetry-check') ? 4 : 1;
    console.log(`| ${client} | ${fmt(r.callsPerS)} | ${fmt(r.cpuUsPerCall, digits)} | ${fmt(t.main, digits)} | ${fmt(t.tokio ?? 0, digits)} | ${fmt(other, digits)} | ${fmt((sw.main ?? 0) + (sw.tokio ?? 0), 2)} (${fmt(sw.main ?? 0, 2)} + ${fmt(sw.tokio ?? 0, 2)}) |`);
  }
  console.log(`\nload average at the end ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  mock.kill();
}
