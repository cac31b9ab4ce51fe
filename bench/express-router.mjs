#!/usr/bin/env node
// Contender "express+gatewayRouter": Express 5 with ferrogate/express's gatewayRouter (the front door:
// Chat Completions, Responses, Messages, Embeddings) over a Gateway whose defaultProvider is the mock
// upstream (plain model names work; Messages and Responses requests are translated to it).
// Loopback only. Env: PORT (default 18302), UPSTREAM_BASE_URL (default http://127.0.0.1:18080/v1).
import { createRequire } from 'node:module';
import path from 'node:path';
import { REPO_DIR, requireDep, requireFerrogate } from './lib.mjs';

const express = requireDep('express');
const { Gateway } = requireFerrogate();
const { gatewayRouter } = createRequire(path.join(REPO_DIR, 'noop.js'))(path.join(process.env.FERROGATE_MODULE || REPO_DIR, 'lib', 'express.js'));

const PORT = Number(process.env.PORT || 18302);
const gateway = new Gateway({
  providers: { openai: { kind: 'openai', baseUrl: process.env.UPSTREAM_BASE_URL || 'http://127.0.0.1:18080/v1', apiKey: 'bench' } },
  defaultProvider: 'openai',
  timeoutMs: 60_000,
  maxRetries: 0, // same as the express+openai baseline
});

const app = express();
app.disable('x-powered-by');
app.get('/health', (_req, res) => res.type('text/plain').send('ok'));
app.use(gatewayRouter(gateway));

const server = app.listen(PORT, '127.0.0.1', () => console.log(`express+gatewayRouter listening on http://127.0.0.1:${PORT}`));
server.keepAliveTimeout = 65_000;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); setTimeout(() => process.exit(0), 300).unref(); });
