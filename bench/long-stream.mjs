#!/usr/bin/env node
// One long stream (10,000 chunks by default) consumed in-process through gw.streamEvents() and
// through gw.stream(), against a local mock upstream (a separate process, so its work does not
// count). Samples process.memoryUsage() rss/heapUsed every 100 ms and the event-loop delay with
// perf_hooks.monitorEventLoopDelay, then prints a markdown table: memory must stay bounded (no
// growth with stream length) and the loop responsive (no long synchronous stretch).
// The official `openai` SDK is measured the same way as a reference when it is installed.
//
// Each case runs in a fresh child process (`--case <api> <mode>`, with --expose-gc) so one case's
// heap does not pollute the next. Modes: burst = chunks sent back to back (the consumer is the
// bottleneck: shows buffering/backpressure); paced = LONG_DELAY_MS between chunks (default 1).
// Env: LONG_CHUNKS (10000), LONG_APIS (streamEvents,stream,openai-sdk), LONG_MODES (burst,paced),
//      LONG_DELAY_MS (1), LONG_CASE_TIMEOUT_S (120), LONG_JSON_OUT (bench/results/long-stream.json)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BENCH_DIR, sleep, freePort, procUsage, resetPeakRss, requireFerrogate, loadOpenAI, depVersion, fmt } from './lib.mjs';

const env = process.env;
const CHUNKS = Number(env.LONG_CHUNKS || 10_000);
const DELAY_MS = Number(env.LONG_DELAY_MS || 1);
const MODEL = 'gpt-4o-mini';
const MB = 1024 * 1024;
const LOOP_RESOLUTION_MS = 10;
const log = (...a) => console.error('[long-stream]', ...a);
const mockConfig = async (port, q) => {
  const res = await fetch(`http://127.0.0.1:${port}/__mock/config?${new URLSearchParams(q)}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  return res.json();
};

if (process.argv[2] === '--case') await runCase(process.argv[3], process.argv[4]);
else await orchestrate();

// ---------------------------------------------------------------- one case, in a fresh process
async function runCase(api, mode) {
  const mockPort = Number(env.LONG_MOCK_PORT);
  const upstream = `http://127.0.0.1:${mockPort}/v1`;
  const messages = [{ role: 'user', content: 'Count to ten thousand.' }];
  let consume; // () => Promise<{ events, chars }>
  try {
    if (api === 'openai-sdk') {
      const OpenAI = loadOpenAI();
      const client = new OpenAI({ baseURL: upstream, apiKey: 'bench', maxRetries: 0, timeout: 300_000 });
      consume = async () => {
        let events = 0, chars = 0;
        const s = await client.chat.completions.create({ model: MODEL, messages, stream: true });
        for await (const c of s) {
          const t = c.choices[0]?.delta?.content;
          if (t) { events++; chars += t.length; }
        }
        return { events, chars };
      };
    } else {
      const { Gateway } = requireFerrogate();
      const gw = new Gateway({ providers: { openai: { kind: 'openai', baseUrl: upstream, apiKey: 'bench' } }, timeoutMs: 300_000, maxRetries: 0 });
      const req = { model: `openai/${MODEL}`, messages };
      if (api === 'streamEvents') {
        consume = async () => {
          let events = 0, chars = 0, done = false;
          for await (const ev of gw.streamEvents(req)) {
            if (ev.type === 'text') { events++; chars += ev.text.length; } else if (ev.type === 'done') done = true;
          }
          if (!done) throw new Error('no done event');
          return { events, chars };
        };
      } else if (api === 'stream') {
        consume = async () => {
          let events = 0, chars = 0;
          await gw.stream(req, (t) => { events++; chars += t.length; });
          return { events, chars };
        };
      } else throw new Error(`unknown api ${api}`);
    }

    // warm-up (connection, lazy init) with a short stream, then the real one
    await mockConfig(mockPort, { chunks: 5, delay: 0, latency: 0 });
    await consume();
    await mockConfig(mockPort, { chunks: CHUNKS, delay: mode === 'paced' ? DELAY_MS : 0, latency: 0 });
    for (let i = 0; i < 3; i++) { global.gc?.(); await sleep(50); }

    const m0 = process.memoryUsage();
    const samples = [];
    const t0 = performance.now();
    const sample = () => { const m = process.memoryUsage(); samples.push({ tMs: Math.round(performance.now() - t0), rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB }); };
    const h = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    const lateMs = (ns) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS);
    const hwmReset = resetPeakRss(process.pid); // VmHWM then holds the exact peak between samples
    const cpu0 = process.cpuUsage();
    const p0 = procUsage(process.pid);
    h.enable();
    sample();
    const timer = setInterval(sample, 100);
    const got = await consume();
    clearInterval(timer);
    sample();
    h.disable();
    const elapsedS = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const p1 = procUsage(process.pid);
    global.gc?.();
    const mEnd = process.memoryUsage();

    let expectedChars = 0;
    for (let i = 0; i < CHUNKS; i++) expectedChars += `tok${i} `.length;
    const peakRss = Math.max(...samples.map((s) => s.rssMb), hwmReset && p1 ? p1.peakRssMb : 0);
    const peakHeap = Math.max(...samples.map((s) => s.heapUsedMb));
    out({
      api, mode, chunks: CHUNKS, delayMs: mode === 'paced' ? DELAY_MS : 0,
      events: got.events, complete: got.chars === expectedChars, elapsedS, chunksPerS: CHUNKS / elapsedS,
      cpuUsPerChunk: ((cpu.user + cpu.system) / CHUNKS),
      mainCpuUsPerChunk: p0 && p1 ? ((p1.mainCpuS - p0.mainCpuS) * 1e6) / CHUNKS : NaN,
      rssStartMb: m0.rss / MB, peakRssDeltaMb: peakRss - m0.rss / MB, endRssDeltaMb: samples.at(-1).rssMb - m0.rss / MB,
      heapStartMb: m0.heapUsed / MB, peakHeapDeltaMb: peakHeap - m0.heapUsed / MB, heapAfterGcDeltaMb: (mEnd.heapUsed - m0.heapUsed) / MB,
      // the histogram records the whole timer interval; the delay is what exceeds the resolution
      loopDelayP50Ms: lateMs(h.percentile(50)), loopDelayP99Ms: lateMs(h.percentile(99)), loopDelayMaxMs: lateMs(h.max),
      samples,
    });
  } catch (e) {
    out({ api, mode, error: `${e.code ? `${e.code}: ` : ''}${String(e.message || e).split('\n')[0]}` });
  }
  process.exit(0); // do not wait for keep-alive sockets or the gateway's runtime
}
function out(obj) { console.log(`CASEJSON ${JSON.stringify(obj)}`); }

// ---------------------------------------------------------------- orchestrator
async function orchestrate() {
  const apis = (env.LONG_APIS || 'streamEvents,stream,openai-sdk').split(',').map((s) => s.trim()).filter(Boolean)
    .filter((a) => a !== 'openai-sdk' || depVersion('openai') || (log('openai SDK not installed: skipping its reference rows'), false));
  const modes = (env.LONG_MODES || 'burst,paced').split(',').map((s) => s.trim()).filter(Boolean);
  const caseTimeoutMs = Number(env.LONG_CASE_TIMEOUT_S || 120) * 1000;
  const children = new Set();
  const killAll = () => { for (const ch of children) { try { process.kill(-ch.pid, 'SIGKILL'); } catch {} } children.clear(); };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { killAll(); process.exit(130); });

  const mockPort = await freePort();
  const mock = spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], {
    detached: true, stdio: 'ignore', env: { ...env, PORT: String(mockPort), HOST: '127.0.0.1' },
  });
  children.add(mock);
  for (let i = 0; ; i++) {
    try { await mockConfig(mockPort, {}); break; } catch (e) { if (i > 75) throw new Error(`mock upstream did not start: ${e.message}`); await sleep(200); }
  }

  const rows = [];
  for (const mode of modes) {
    for (const api of apis) {
      log(`${api} / ${mode}: ${CHUNKS} chunks${mode === 'paced' ? `, ${DELAY_MS} ms apart` : ''} ...`);
      const r = await new Promise((resolve) => {
        const ch = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--case', api, mode], {
          detached: true, stdio: ['ignore', 'pipe', 'inherit'], env: { ...env, LONG_MOCK_PORT: String(mockPort) },
        });
        children.add(ch);
        let stdout = '';
        ch.stdout.on('data', (d) => { stdout += d; });
        const t = setTimeout(() => { try { process.kill(-ch.pid, 'SIGKILL'); } catch {} }, caseTimeoutMs);
        ch.on('close', (code, sig) => {
          clearTimeout(t);
          children.delete(ch);
          const m = /CASEJSON (\{.*\})/.exec(stdout);
          resolve(m ? JSON.parse(m[1]) : { api, mode, error: sig === 'SIGKILL' ? `timed out after ${caseTimeoutMs / 1000}s` : `exit code=${code} sig=${sig}` });
        });
      });
      log(`${api} / ${mode}: ${r.error || `${fmt(r.elapsedS, 1)}s, peak RSS +${fmt(r.peakRssDeltaMb, 1)} MB, loop delay max ${fmt(r.loopDelayMaxMs, 1)} ms`}`);
      rows.push(r);
    }
  }
  try { process.kill(-mock.pid, 'SIGTERM'); } catch {}
  children.delete(mock);

  const lines = [];
  lines.push(`Long stream, in-process: ${CHUNKS.toLocaleString('en-US')} chunks per stream; burst = no delay between chunks, paced = ${DELAY_MS} ms apart. Memory sampled every 100 ms; RSS/heap deltas from the start of the stream (after GC); loop delay = how late monitorEventLoopDelay's ${LOOP_RESOLUTION_MS} ms timer fired.`);
  lines.push('');
  lines.push('| API | upstream | complete | time s | chunks/s | CPU µs/chunk | main-thread µs/chunk | peak RSS Δ MB | end RSS Δ MB | peak heap Δ MB | loop delay p99 ms | loop delay max ms | samples |');
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const apiName = (a) => (a === 'openai-sdk' ? 'openai SDK (reference)' : `gw.${a}()`);
  for (const r of rows) {
    if (r.error) { lines.push(`| ${apiName(r.api)} | ${r.mode} | FAILED: ${String(r.error).replace(/\|/g, '/').replace(/\s+/g, ' ').slice(0, 160)} | | | | | | | | | | |`); continue; }
    lines.push(`| ${apiName(r.api)} | ${r.mode} | ${r.complete ? 'yes' : `NO (${r.events} events)`} | ${fmt(r.elapsedS, 2)} | ${fmt(r.chunksPerS)} | ${fmt(r.cpuUsPerChunk, 1)} | ${fmt(r.mainCpuUsPerChunk, 1)} | ${fmt(r.peakRssDeltaMb, 1)} | ${fmt(r.endRssDeltaMb, 1)} | ${fmt(r.peakHeapDeltaMb, 1)} | ${fmt(r.loopDelayP99Ms, 1)} | ${fmt(r.loopDelayMaxMs, 1)} | ${r.samples.length} |`);
  }
  const md = lines.join('\n');
  const jsonOut = env.LONG_JSON_OUT || path.join(BENCH_DIR, 'results', 'long-stream.json');
  fs.mkdirSync(path.dirname(jsonOut), { recursive: true });
  fs.writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), node: process.version, chunks: CHUNKS, delayMs: DELAY_MS, rows }, null, 2) + '\n');
  console.log(md);
  log(`wrote ${jsonOut}`);
}
