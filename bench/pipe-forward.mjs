#!/usr/bin/env node
// Contender "pipe-forward": the floor for any Node forwarder. Express 5 reads the request body
// and pipes the upstream's response bytes back unchanged (node:http, keep-alive agent): no
// parsing, no re-encoding. Loopback only.
// Env: PORT (default 18303), UPSTREAM_BASE_URL (default http://127.0.0.1:18080/v1).
import http from 'node:http';
import { requireDep } from './lib.mjs';

const express = requireDep('express');
const PORT = Number(process.env.PORT || 18303);
const upstream = new URL(`${process.env.UPSTREAM_BASE_URL || 'http://127.0.0.1:18080/v1'}/chat/completions`);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const app = express();
app.disable('x-powered-by');
app.get('/health', (_req, res) => res.type('text/plain').send('ok'));
app.post('/v1/chat/completions', (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const up = http.request(upstream, {
      method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': body.length, authorization: 'Bearer bench' },
    }, (upRes) => {
      res.writeHead(upRes.statusCode, { 'content-type': upRes.headers['content-type'] ?? 'application/json' });
      upRes.pipe(res);
    });
    up.on('error', () => { if (!res.headersSent) res.status(502).end(); else res.destroy(); });
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    up.end(body);
  });
});

const server = app.listen(PORT, '127.0.0.1', () => console.log(`pipe-forward listening on http://127.0.0.1:${PORT}`));
server.keepAliveTimeout = 65_000;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); setTimeout(() => process.exit(0), 300).unref(); });
