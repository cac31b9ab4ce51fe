#!/usr/bin/env node
// Contender "express+ferrogate": the same Express 5 app as express-openai.mjs, but the upstream
// call goes through a ferrogate Gateway (Rust, in-process) instead of the `openai` SDK.
// OpenAI-compatible: POST /v1/chat/completions answers OpenAI-shaped JSON, or with
// `stream: true` OpenAI SSE chunks `data: {...choices:[{delta:{content}}]}` ending with
// `data: [DONE]`. It therefore also works as an EXTRA_CONTENDER for /work/shared/bench/peers.
// Loopback only.
//
// Env: PORT (default 18301), UPSTREAM_BASE_URL (default http://127.0.0.1:18080/v1; OpenAI-style,
//      version included), FERROGATE_STREAM_API = events (default: `for await` over
//      gw.streamEvents()) | callback (gw.stream(req, onChunk); text only, no tool-call deltas).
//      FERROGATE_CACHE=miss: a ResponseCache on the gateway, and every request made unique (a
//      counter appended to its last message) so every call is a miss: lookup, coalescing
//      table, upstream call and insert, the cache's whole cost. FERROGATE_LIMITER=1: a
//      RateLimiter (requests and tokens per minute, so tokens are counted before each call and
//      settled after) whose limits are never reached. FERROGATE_COSTS=1: a CostTracker with an
//      SQLite ledger in a temp file and a hard daily budget per user that is never reached, so
//      every call is reserved, priced, recorded and settled.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDep, requireFerrogate } from './lib.mjs';

const express = requireDep('express');
const { Gateway, ResponseCache, RateLimiter, CostTracker } = requireFerrogate();

const PORT = Number(process.env.PORT || 18301);
const PROVIDER = 'openai';
const STREAM_API = process.env.FERROGATE_STREAM_API === 'callback' ? 'callback' : 'events';

const costs = process.env.FERROGATE_COSTS === '1'
  ? new CostTracker({ ledgerPath: join(mkdtempSync(join(tmpdir(), 'fg-bench-')), 'ledger.sqlite') })
  : undefined;
costs?.setBudget('anonymous', { usd: 1e9, period: 'day', hard: true });
const gw = new Gateway({
  providers: {
    [PROVIDER]: { kind: 'openai', baseUrl: process.env.UPSTREAM_BASE_URL || 'http://127.0.0.1:18080/v1', apiKey: 'bench' },
  },
  timeoutMs: 60_000,
  maxRetries: 0, // same as the express+openai baseline
  cache: process.env.FERROGATE_CACHE === 'miss' ? new ResponseCache({ maxEntries: 10_000 }) : undefined,
  rateLimiter: process.env.FERROGATE_LIMITER === '1' ? new RateLimiter({ requestsPerMinute: 1e9, tokensPerMinute: 1e12 }) : undefined,
  costs,
});
const UNIQUE = process.env.FERROGATE_CACHE === 'miss';
let served = 0;

// ---------------------------------------------------------------- OpenAI wire format -> ChatRequest
function toPart(p) {
  if (p?.type === 'image_url') return { type: 'image_url', url: p.image_url?.url ?? p.url };
  if (p?.type === 'text') return { type: 'text', text: p.text };
  return p;
}
function toMessage(m) {
  const out = { role: m.role, content: Array.isArray(m.content) ? m.content.map(toPart) : (m.content ?? '') };
  if (m.tool_call_id) out.toolCallId = m.tool_call_id;
  if (m.tool_calls) out.toolCalls = m.tool_calls.map((tc) => ({ id: tc.id, name: tc.function?.name, arguments: tc.function?.arguments ?? '' }));
  return out;
}
function toChatRequest(b, signal) {
  const model = String(b.model || '');
  const req = {
    model: model.includes('/') ? model : `${PROVIDER}/${model}`,
    messages: (b.messages || []).map(toMessage),
    signal,
  };
  if (b.temperature != null) req.temperature = b.temperature;
  if (b.top_p != null) req.topP = b.top_p;
  const max = b.max_completion_tokens ?? b.max_tokens;
  if (max != null) req.maxTokens = max;
  if (b.stop != null) req.stop = Array.isArray(b.stop) ? b.stop : [b.stop];
  if (b.user) req.user = b.user;
  if (b.tools) {
    req.tools = b.tools.map((t) => {
      const f = t.function || t;
      return { name: f.name, ...(f.description ? { description: f.description } : {}), parameters: f.parameters ?? {} };
    });
  }
  if (b.tool_choice) req.toolChoice = typeof b.tool_choice === 'string' ? b.tool_choice : { name: b.tool_choice.function?.name };
  const rf = b.response_format;
  if (rf) req.responseFormat = rf.type === 'json_schema' ? { type: 'json_schema', name: rf.json_schema?.name, schema: rf.json_schema?.schema } : { type: rf.type };
  return req;
}

// ---------------------------------------------------------------- ChatResponse -> OpenAI wire format
const openaiUsage = (u) => ({ prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.totalTokens });
const toolCallsOut = (tcs) => tcs.map((tc) => ({ id: tc.id, type: 'function', function: { name: tc.name, arguments: tc.arguments } }));

function completion(r) {
  const message = { role: 'assistant', content: r.content || (r.toolCalls?.length ? null : ''), refusal: null };
  if (r.toolCalls?.length) message.tool_calls = toolCallsOut(r.toolCalls);
  return {
    id: r.id, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: r.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: r.finishReason || 'stop' }],
    usage: openaiUsage(r.usage),
  };
}

const ERROR_TYPES = { RATE_LIMITED: 'rate_limit_error', INVALID_REQUEST: 'invalid_request_error', NOT_FOUND: 'not_found_error', AUTHENTICATION: 'authentication_error' };
const errorBody = (e) => ({ error: { message: String(e.message || e), type: ERROR_TYPES[e.code] || 'upstream_error', code: e.code ?? null } });

// ---------------------------------------------------------------- app
const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '10mb' }));

app.get('/health', (_req, res) => res.type('text/plain').send('ok'));
app.get('/v1/models', (_req, res) => {
  res.json({ object: 'list', data: gw.models().map((id) => ({ id, object: 'model', created: 0, owned_by: 'ferrogate' })) });
});

app.post('/v1/chat/completions', async (req, res) => {
  const body = req.body || {};
  const ac = new AbortController();
  res.on('close', () => { if (!res.writableFinished) ac.abort(); }); // client left: stop the upstream call
  const chatReq = toChatRequest(body, ac.signal);
  if (UNIQUE) {
    const last = chatReq.messages.at(-1);
    if (last && typeof last.content === 'string') last.content += ` #${++served}`;
  }
  if (!body.stream) {
    try {
      res.json(completion(await gw.chat(chatReq)));
    } catch (e) {
      if (!ac.signal.aborted) res.status(e.status || 502).json(errorBody(e));
    }
    return;
  }

  // SSE. Headers go out with the first event, so an error before any output gets a real HTTP status.
  const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(String(body.model || ''))},"choices":[{"index":0,"delta":`;
  const chunk = (delta, finish = 'null') => `${head}${delta},"logprobs":null,"finish_reason":${finish}}]}\n\n`;
  let started = false;
  const start = () => {
    started = true;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(chunk('{"role":"assistant","content":""}'));
  };
  // Like the baseline, writes do not wait for 'drain' (the bench client reads as fast as it can).
  const onText = (text) => {
    if (!started) start();
    res.write(chunk(`{"content":${JSON.stringify(text)}}`));
  };
  try {
    let final;
    if (STREAM_API === 'callback') {
      final = await gw.stream(chatReq, onText);
    } else {
      for await (const ev of gw.streamEvents(chatReq)) {
        if (ev.type === 'text') onText(ev.text);
        else if (ev.type === 'tool_call') {
          if (!started) start();
          const call = { index: ev.index, ...(ev.id ? { id: ev.id, type: 'function' } : {}), function: { ...(ev.name ? { name: ev.name } : {}), arguments: ev.argumentsDelta ?? '' } };
          res.write(chunk(JSON.stringify({ tool_calls: [call] })));
        } else if (ev.type === 'done') final = ev.response;
      }
    }
    if (!started) start();
    res.write(chunk('{}', JSON.stringify(final?.finishReason || 'stop')));
    if (body.stream_options?.include_usage && final?.usage) {
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: body.model, choices: [], usage: openaiUsage(final.usage) })}\n\n`);
    }
    res.end('data: [DONE]\n\n');
  } catch (e) {
    if (ac.signal.aborted) return; // the client is gone; nothing to answer
    if (!started) return res.status(e.status || 502).json(errorBody(e));
    res.end(`data: ${JSON.stringify(errorBody(e))}\n\n`); // what OpenAI sends when a stream fails midway
  }
});

const server = app.listen(PORT, '127.0.0.1', () => console.log(`express+ferrogate (${STREAM_API}) listening on http://127.0.0.1:${PORT}`));
server.keepAliveTimeout = 65_000;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    Promise.resolve(gw.close?.()).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 300).unref();
  });
}
