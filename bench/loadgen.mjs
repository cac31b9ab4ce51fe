#!/usr/bin/env node
// Minimal closed-loop HTTP load generator (used when wrk is not installed): CONC connections
// (keep-alive), each sending the next POST as soon as the previous response has been read to
// the end, for DURATION seconds. Prints one line `LOADJSON {...}` (same fields as wrk-post.lua).
// Latency = request start to the last byte of the response (whole stream for SSE); ttfb = to
// the first body byte. It is a Node process and so competes with the apps for CPU: prefer wrk.
//
// Env: LOAD_URL, LOAD_BODY (JSON text), LOAD_CONC (16), LOAD_DURATION_S (10), LOAD_TIMEOUT_S (30),
//      LOAD_HEADERS (JSON object, optional)
import http from 'node:http';

const url = new URL(process.env.LOAD_URL);
if (!/^(127\.|localhost$|\[::1\]$)/.test(url.hostname)) throw new Error(`loopback only: ${url.hostname}`);
const body = Buffer.from(process.env.LOAD_BODY || '{}');
const conc = Number(process.env.LOAD_CONC || 16);
const durationMs = Number(process.env.LOAD_DURATION_S || 10) * 1000;
const timeoutMs = Number(process.env.LOAD_TIMEOUT_S || 30) * 1000;
const headers = { 'content-type': 'application/json', 'content-length': body.length, ...JSON.parse(process.env.LOAD_HEADERS || '{}') };
const agent = new http.Agent({ keepAlive: true, maxSockets: conc });

const lat = []; // µs
const ttfb = [];
let bytes = 0;
const err = { connect: 0, read: 0, status: 0, timeout: 0 };

function once() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    let first = 0n;
    const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
      if (res.statusCode < 200 || res.statusCode > 399) err.status++;
      res.on('data', (c) => { if (!first) first = process.hrtime.bigint(); bytes += c.length; });
      res.on('end', () => {
        const t1 = process.hrtime.bigint();
        lat.push(Number(t1 - t0) / 1000);
        if (first) ttfb.push(Number(first - t0) / 1000);
        resolve(true);
      });
      res.on('error', () => { err.read++; resolve(false); });
    });
    req.setTimeout(timeoutMs, () => { err.timeout++; req.destroy(new Error('timeout')); });
    req.on('error', (e) => {
      if (e.message !== 'timeout') err[e.code === 'ECONNREFUSED' ? 'connect' : 'read']++; // timeouts counted above
      resolve(false);
    });
    req.end(body);
  });
}

const start = Date.now();
const deadline = start + durationMs;
async function worker() {
  while (Date.now() < deadline) {
    if (!(await once())) await new Promise((r) => setTimeout(r, 10)); // no hot loop on a dead server
  }
}
// hard stop: never outlive DURATION + TIMEOUT
setTimeout(() => { console.error('loadgen: hard stop'); process.exit(3); }, durationMs + timeoutMs + 5000).unref();
await Promise.all(Array.from({ length: conc }, worker));
const elapsedUs = (Date.now() - start) * 1000;
agent.destroy();

const pct = (arr, p) => {
  if (!arr.length) return 0;
  return arr[Math.min(arr.length - 1, Math.max(0, Math.ceil((p / 100) * arr.length) - 1))];
};
lat.sort((a, b) => a - b);
ttfb.sort((a, b) => a - b);
console.log(`LOADJSON ${JSON.stringify({
  requests: lat.length, duration_us: elapsedUs, bytes,
  p50_us: pct(lat, 50), p90_us: pct(lat, 90), p99_us: pct(lat, 99), max_us: lat.at(-1) || 0,
  mean_us: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : 0,
  ttfb_p50_us: pct(ttfb, 50), ttfb_p99_us: pct(ttfb, 99),
  err_connect: err.connect, err_read: err.read, err_write: 0, err_status: err.status, err_timeout: err.timeout,
})}`);
