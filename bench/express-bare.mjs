#!/usr/bin/env node
// Contender "express+bare": the same Express 5 app, but the handler only forwards the request
// body to the upstream with node:http (keep-alive agent) and pipes the answer back unchanged:
// no SDK, no parsing of the answer. The floor for any Express app that calls a model server.
// Loopback only. Env: PORT (default 18302), UPSTREAM_BASE_URL (default http://127.0.0.1:18080/v1).
import http from 'node:http';
import { requireDep } from './lib.mjs';

const express = requireDep('express');

const PORT = Number(process.env.PORT || 18302);
const upstream = new URL(`${(process.env.UPSTREAM_BASE_URL || 'http://127.0.0.1:18080/v1').replace(/\/+$/, '')}/chat/completions`);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '10mb' }));

app.get('/health', (_req, res) => res.type('text/plain').send('ok'));

app.post('/v1/chat/completions', (req, res) => {
  const body = JSON.stringify(req.body || {});
  const up = http.request(upstream, {
    method: 'POST',
    agent,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: 'Bearer bench' },
  }, (answer) => {
    res.writeHead(answer.statusCode, { 'content-type': answer.headers['content-type'] || 'application/json' });
    answer.pipe(res);
  });
  up.on('error', (e) => {
    if (res.headersSent) return res.destroy();
    res.status(502).json({ error: { message: String(e.message || e), type: 'upstream_error' } });
  });
  res.on('close', () => { if (!res.writableFinished) up.destroy(); }); // client left: stop the upstream call
  up.end(body);
});

const server = app.listen(PORT, '127.0.0.1', () => console.log(`express+bare listening on http://127.0.0.1:${PORT}`));
server.keepAliveTimeout = 65_000;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); setTimeout(() => process.exit(0), 300).unref(); });
