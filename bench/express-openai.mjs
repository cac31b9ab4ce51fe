#!/usr/bin/env node
// Baseline contender "express+openai": Express 5 forwarding OpenAI-compatible chat completions
// through the official `openai` SDK (baseURL = the mock upstream). Same code as
// /work/shared/bench/peers/express-openai.mjs; only the dependency lookup differs (repo
// devDependencies first, see lib.mjs). Loopback only.
// Env: PORT (default 18300), UPSTREAM_BASE_URL (default http://127.0.0.1:18080/v1).
import { requireDep, loadOpenAI } from './lib.mjs';

const express = requireDep('express');
const OpenAI = loadOpenAI();

const PORT = Number(process.env.PORT || 18300);
const client = new OpenAI({
  baseURL: process.env.UPSTREAM_BASE_URL || 'http://127.0.0.1:18080/v1',
  apiKey: process.env.UPSTREAM_API_KEY || 'sk-mock',
  maxRetries: 0,
  timeout: 60_000,
});

const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '10mb' }));

app.get('/health', (_req, res) => res.type('text/plain').send('ok'));
app.get('/v1/models', async (_req, res) => {
  try {
    const page = await client.models.list();
    res.json({ object: 'list', data: page.data });
  } catch (e) {
    res.status(e.status || 502).json({ error: { message: String(e.message || e), type: 'upstream_error' } });
  }
});

app.post('/v1/chat/completions', async (req, res) => {
  const body = req.body || {};
  try {
    if (body.stream) {
      const stream = await client.chat.completions.create(body);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.on('close', () => { if (!res.writableFinished) stream.controller.abort(); });
      for await (const chunk of stream) res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      res.end('data: [DONE]\n\n');
    } else {
      res.json(await client.chat.completions.create(body));
    }
  } catch (e) {
    if (res.headersSent) return res.destroy();
    res.status(e.status || 502).json({ error: { message: String(e.message || e), type: 'upstream_error' } });
  }
});

const server = app.listen(PORT, '127.0.0.1', () => console.log(`express+openai listening on http://127.0.0.1:${PORT}`));
server.keepAliveTimeout = 65_000;
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); setTimeout(() => process.exit(0), 300).unref(); });
