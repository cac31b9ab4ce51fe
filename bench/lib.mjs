// Shared helpers for the ferrogate benches: dependency resolution, free ports, /proc readers,
// child-process bookkeeping. Linux only (/proc), loopback only.
import { createRequire } from 'node:module';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = path.dirname(BENCH_DIR);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves once something answers GET /health on 127.0.0.1:`port` (10 s at most). */
export async function waitUp(port) {
  for (let i = 0; i < 100; i++) {
    try { await fetch(`http://127.0.0.1:${port}/health`); return; } catch { await sleep(100); }
  }
  throw new Error(`nothing listening on ${port}`);
}

/** The child processes of a bench, killed when it exits however it ends. */
export function childrenKilledOnExit() {
  const children = [];
  process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch {} } });
  return children;
}

// express / openai are devDependencies of the repo. When they are not installed there, the
// bench also looks in $BENCH_NODE_DIR and in the shared peers cache ($PEERS_NODE_DIR, or
// $PEERS_CACHE/node, which /work/shared/bench/peers/run.sh exports).
const searchDirs = () => [
  BENCH_DIR,
  process.env.BENCH_NODE_DIR,
  process.env.PEERS_NODE_DIR,
  process.env.PEERS_CACHE && path.join(process.env.PEERS_CACHE, 'node'),
].filter(Boolean);

export function requireDep(name) {
  const errors = [];
  for (const dir of searchDirs()) {
    try {
      return createRequire(path.join(dir, 'noop.js'))(name);
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
      errors.push(dir);
    }
  }
  throw new Error(`cannot find '${name}': run \`npm install\` in ${REPO_DIR}, or set BENCH_NODE_DIR to a folder whose node_modules has it (searched ${errors.join(', ')})`);
}

// A package only a bench needs and whose install builds native code (hnswlib-node runs node-gyp): it is no
// dependency of the repository, so `npm ci` never builds it. Installed on first use into
// $FERROGATE_BENCH_DEPS (default ~/.cache/ferrogate-bench), outside the repository.
export function requireBenchOnly(name) {
  try {
    return requireDep(name);
  } catch {}
  const dir = process.env.FERROGATE_BENCH_DEPS || path.join(process.env.HOME || '/tmp', '.cache', 'ferrogate-bench');
  const load = () => createRequire(path.join(dir, 'noop.js'))(name);
  try {
    return load();
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
  }
  console.error(`installing ${name} into ${dir} (bench only)`);
  fs.mkdirSync(dir, { recursive: true });
  const installed = spawnSync('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--no-save', name], { stdio: 'inherit' });
  if (installed.status !== 0) throw new Error(`npm install ${name} into ${dir} failed`);
  return load();
}

export function depVersion(name) {
  for (const dir of searchDirs()) {
    try {
      // resolve the entry point (package.json is not always in "exports"), then walk up to it
      let d = path.dirname(createRequire(path.join(dir, 'noop.js')).resolve(name));
      for (; d !== path.dirname(d); d = path.dirname(d)) {
        const f = path.join(d, 'package.json');
        if (!fs.existsSync(f)) continue;
        const pkg = JSON.parse(fs.readFileSync(f, 'utf8'));
        if (pkg.name === name) return pkg.version;
      }
    } catch {}
  }
  return null;
}

// The addon under test: the repo itself (`require('ferrogate')` for users), or $FERROGATE_MODULE.
export function requireFerrogate() {
  return createRequire(import.meta.url)(process.env.FERROGATE_MODULE || REPO_DIR);
}

/**
 * A gateway on an OpenAI-compatible `upstream` with the stages the CPU benches turn on: `cache` (a
 * ResponseCache of 10,000 entries), `limiter` (a RateLimiter never reached), `costs` (a CostTracker
 * with an SQLite ledger in a temp file, removed at exit, and a hard daily budget never reached).
 */
export function gatewayWithStages(upstream, stages) {
  const { Gateway, ResponseCache, RateLimiter, CostTracker } = requireFerrogate();
  let costs;
  if (stages.has('costs')) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fg-stages-'));
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    costs = new CostTracker({ ledgerPath: path.join(dir, 'ledger.sqlite') });
    costs.setBudget('anonymous', { usd: 1e9, period: 'day', hard: true });
  }
  return new Gateway({
    providers: { openai: { kind: 'openai', baseUrl: upstream, apiKey: 'bench' } },
    maxRetries: 0,
    cache: stages.has('cache') ? new ResponseCache({ maxEntries: 10_000 }) : undefined,
    rateLimiter: stages.has('limiter') ? new RateLimiter({ requestsPerMinute: 1e9, tokensPerMinute: 1e12 }) : undefined,
    costs,
  });
}

export function loadOpenAI() {
  const mod = requireDep('openai');
  return mod.OpenAI || mod.default || mod;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts bench/mock-upstream.mjs on a free loopback port, in a process group of its own (stopped
 * when this process exits), and resolves once it answers /health. `env` adds mock settings; with
 * `MOCK_TLS: '1'` the mock serves https (h2 and HTTP/1.1) and `caPath` is the CA to trust.
 * `getJson(path)` reads one of the mock's JSON endpoints (`/__mock/stats`) over either scheme.
 */
export async function startMockUpstream(env = {}) {
  const port = await freePort();
  const tls = env.MOCK_TLS === '1';
  const tlsDir = tls ? fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-mock-tls-')) : undefined;
  const caPath = tls ? path.join(tlsDir, 'ca.pem') : undefined;
  const child = spawn(process.execPath, [path.join(BENCH_DIR, 'mock-upstream.mjs')], {
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ...env, ...(tls ? { MOCK_TLS_DIR: tlsDir } : {}) },
  });
  const stop = () => {
    try { process.kill(-child.pid, 'SIGTERM'); } catch {}
    if (tlsDir) fs.rmSync(tlsDir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  const scheme = tls ? 'https' : 'http';
  // node:https rather than fetch: fetch cannot be handed a CA per request.
  const get = (urlPath) => new Promise((resolve, reject) => {
    const options = { host: '127.0.0.1', port, path: urlPath, agent: false, ...(tls ? { ca: fs.readFileSync(caPath) } : {}) };
    (tls ? https : http).get(options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
  for (let i = 0; ; i++) {
    try {
      if (tls && !fs.existsSync(caPath)) throw new Error('no certificate yet');
      await get('/health');
      break;
    } catch (error) {
      if (i > 75) {
        stop();
        throw new Error(`mock upstream did not start: ${error.message}`);
      }
    }
    await sleep(200);
  }
  const getJson = async (urlPath) => JSON.parse(await get(urlPath));
  return { port, child, stop, scheme, caPath, baseUrl: `${scheme}://127.0.0.1:${port}/v1`, getJson };
}

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim() || 100);

function statTicks(file) {
  try {
    const s = fs.readFileSync(file, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] = field 3 (state)
    return { ticks: Number(f[11]) + Number(f[12]), threads: Number(f[17]) }; // utime + stime, num_threads
  } catch { return null; }
}

// CPU seconds of the whole process (all threads: JS main thread, libuv pool, V8 GC, tokio
// workers…) and of the main thread alone (/proc/<pid>/task/<pid>/stat), plus RSS and peak RSS.
export function procUsage(pid) {
  const all = statTicks(`/proc/${pid}/stat`);
  if (!all) return null;
  const main = statTicks(`/proc/${pid}/task/${pid}/stat`);
  // main thread: schedstat has ns resolution (stat has clock ticks, usually 10 ms)
  let mainNs = NaN;
  try { mainNs = Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]); } catch {}
  let rssKb = NaN, hwmKb = NaN;
  try {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    rssKb = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1]);
    hwmKb = Number(/VmHWM:\s+(\d+)/.exec(st)?.[1]);
  } catch {}
  return {
    cpuS: all.ticks / CLK_TCK,
    mainCpuS: Number.isFinite(mainNs) ? mainNs / 1e9 : main ? main.ticks / CLK_TCK : NaN,
    threads: all.threads,
    rssMb: rssKb / 1024,
    peakRssMb: hwmKb / 1024,
  };
}

// Resets VmHWM (peak RSS) of a process we own, so the next read is the peak since now.
export function resetPeakRss(pid) {
  try { fs.writeFileSync(`/proc/${pid}/clear_refs`, '5'); return true; } catch { return false; }
}

export function which(bin) {
  const r = spawnSync('bash', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return (r.stdout || '').trim() || null;
}

export const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
