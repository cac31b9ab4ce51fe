// The mock vendors the other suites rely on: they must reject what the real APIs reject
// (wrong auth header, missing fields, broken alternation, unanswered tool calls…), replay
// fixtures byte for byte and honour every reply option. Run as one file-level test.
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { fakeCountTokens, generateOpenAIStream, loadManifest, readFixture, startMockVendors } from './helpers/mock-vendors.mjs';

const mock = await startMockVendors({ apiKeys: { gemini: 'g-key' } });
const OA = { authorization: 'Bearer sk-test', 'content-type': 'application/json' };
const AN = { 'x-api-key': 'a-key', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
const GE = { 'x-goog-api-key': 'g-key', 'content-type': 'application/json' };

async function post(url, headers, body) {
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const bytes = Buffer.from(await res.arrayBuffer());
  let json;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    // SSE or raw body
  }
  return { status: res.status, headers: res.headers, bytes, text: bytes.toString('utf8'), json };
}
const oa = (body, headers = OA) => post(`${mock.openaiBaseUrl}/chat/completions`, headers, body);
const an = (body, headers = AN) => post(`${mock.anthropicBaseUrl}/v1/messages`, headers, body);
const ge = (body, { model = 'gemini-2.0-flash', stream = false, headers = GE, query = stream ? '?alt=sse' : '' } = {}) =>
  post(`${mock.geminiBaseUrl}/v1beta/models/${model}:${stream ? 'streamGenerateContent' : 'generateContent'}${query}`, headers, body);

const user = (content) => ({ role: 'user', content });
const oaBody = { model: 'gpt-4o-mini', messages: [user('hi there')] };
const anBody = { model: 'claude-haiku-4-5', max_tokens: 64, messages: [user('hi there')] };
const geBody = { contents: [{ role: 'user', parts: [{ text: 'hi there' }] }] };
const received = async (count) => {
  while (mock.requests.length < count) await new Promise((resolve) => setTimeout(resolve, 5));
};
let checks = 0;
const ok = (cond, msg) => {
  assert.ok(cond, msg);
  checks++;
};

// Default replies
{
  const r = await oa(oaBody);
  ok(r.status === 200 && r.json.choices[0].message.content === 'echo: hi there' && r.json.usage.total_tokens === 15, 'openai default');
  ok(r.headers.get('content-length') === String(r.bytes.length), 'json reply has content-length');
  const s = await oa({ ...oaBody, stream: true, stream_options: { include_usage: true } });
  ok(s.text.endsWith('data: [DONE]\n\n') && s.text.includes('"choices":[],') && s.headers.get('transfer-encoding') === 'chunked', 'openai default stream with usage');
  const s2 = await oa({ ...oaBody, stream: true });
  ok(!s2.text.includes('"usage"'), 'openai stream without include_usage has no usage');
  const a = await an(anBody);
  ok(a.status === 200 && a.json.content[0].text === 'echo: hi there' && a.json.usage.output_tokens === 5, 'anthropic default');
  const as = await an({ ...anBody, stream: true });
  ok(as.text.startsWith('event: message_start\n') && as.text.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n'), 'anthropic default stream');
  const g = await ge(geBody);
  ok(g.status === 200 && g.json.candidates[0].content.parts[0].text === 'echo: hi there' && g.json.modelVersion === 'gemini-2.0-flash', 'gemini default');
  const gs = await ge(geBody, { stream: true });
  ok(gs.text.split('\r\n\r\n').filter(Boolean).length === 3 && gs.text.includes('"finishReason":"STOP"'), 'gemini default stream');
}

// Recorded request bodies from the fixtures are accepted as-is
{
  for (const rel of ['openai/request-chat-completions-stream.json', 'openai/request-chat-completions-tools.json']) {
    const r = await oa(JSON.parse(readFixture(rel)).body);
    ok(r.status === 200, `accepts ${rel}: ${r.text.slice(0, 200)}`);
  }
  const a = await an(JSON.parse(readFixture('anthropic/request-messages-stream-tools.json')).body);
  ok(a.status === 200, `accepts anthropic request fixture: ${a.text.slice(0, 200)}`);
  const g = await ge(JSON.parse(readFixture('gemini/request-stream-generate-content.json')).body, { model: 'gemini-2.0-flash-exp', stream: true });
  ok(g.status === 200, `accepts gemini request fixture: ${g.text.slice(0, 200)}`);
}

// Valid multi-turn tool conversations
const oaTools = {
  model: 'gpt-4o', tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }], tool_choice: 'auto',
  messages: [
    { role: 'system', content: 'be brief' },
    user([{ type: 'text', text: 'weather?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }]),
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp":20}' },
  ],
};
const anTools = {
  ...anBody, system: 'be brief', tools: [{ name: 'get_weather', input_schema: { type: 'object' } }], tool_choice: { type: 'auto' },
  messages: [
    user([{ type: 'text', text: 'weather?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }]),
    { role: 'assistant', content: [{ type: 'text', text: 'checking' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
    user([{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: '{"temp":20}' }] }]),
  ],
};
const geTools = {
  systemInstruction: { parts: [{ text: 'be brief' }] },
  tools: [{ functionDeclarations: [{ name: 'get_weather', parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } }, anyOf: [{ type: 'OBJECT' }] } }] }],
  generationConfig: { maxOutputTokens: 100, temperature: 0.2, responseSchema: { type: 'OBJECT', items: { type: 'STRING' } } },
  contents: [
    { role: 'user', parts: [{ text: 'weather?' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }, { fileData: { fileUri: 'gs://b/f.png' } }] },
    { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
    { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp: 20 } } }] },
  ],
};
{
  const r = await oa(oaTools);
  ok(r.status === 200, `openai tool conversation: ${r.text}`);
  const a = await an(anTools);
  ok(a.status === 200, `anthropic tool conversation: ${a.text}`);
  const g = await ge(geTools);
  ok(g.status === 200, `gemini tool conversation: ${g.text}`);
}

// Validation errors
{
  const cases = [
    [() => oa(oaBody, { 'content-type': 'application/json' }), 401, (j) => j.error.code === 'invalid_api_key'],
    [() => oa({ messages: oaBody.messages }), 400, (j) => j.error.type === 'invalid_request_error'],
    [() => oa({ ...oaBody, messages: [] }), 400, (j) => j.error.param === 'messages'],
    [() => oa({ ...oaBody, messages: [{ role: 'bot', content: 'x' }] }), 400, (j) => j.error.param === 'messages[0].role'],
    [() => oa({ ...oaBody, messages: [user('x'), { role: 'tool', content: 'r' }] }), 400, (j) => j.error.message.includes('tool_call_id')],
    [() => oa({ ...oaBody, messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: {} } }] }, { role: 'tool', tool_call_id: 'c', content: 'r' }] }), 400, (j) => j.error.code === 'invalid_type'],
    [() => oa({ ...oaBody, messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }, user('y')] }), 400, (j) => j.error.message.includes('did not have response messages')],
    [() => oa({ ...oaBody, stream_options: { include_usage: true } }), 400, (j) => j.error.param === 'stream_options'],
    [() => oa({ ...oaBody, maxTokens: 5 }), 400, (j) => j.error.message.includes('Unrecognized request argument')],
    [() => oa({ ...oaBody, messages: [{ role: 'user', content: 'x', toolCallId: 'y' }] }), 400, (j) => j.error.message.includes('Additional properties')],
    [() => oa({ ...oaBody, messages: [user([{ type: 'image_url', image_url: { url: 'iVBORw0KGgo=' } }])] }), 400, (j) => j.error.code === 'invalid_value'],
    [() => oa('{not json'), 400, (j) => j.error.message.includes('could not parse the JSON body')],
    [() => an(anBody, { 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }), 401, (j) => j.type === 'error' && j.error.type === 'authentication_error' && j.error.message === 'invalid x-api-key'],
    [() => an(anBody, { 'x-api-key': 'k', 'content-type': 'application/json' }), 400, (j) => j.error.type === 'invalid_request_error'],
    [() => an({ ...anBody, max_tokens: 1.5 }), 400, (j) => j.error.message.startsWith('max_tokens')],
    [() => an({ model: 'c', messages: anBody.messages }), 400, (j) => j.error.message === 'max_tokens: Field required'],
    [() => an({ ...anBody, messages: [{ role: 'system', content: 's' }, user('x')] }), 400, (j) => j.error.message.includes('top-level `system`')],
    [() => an({ ...anBody, messages: [{ role: 'assistant', content: 'a' }] }), 400, (j) => j.error.message.includes('first message')],
    [() => an({ ...anBody, messages: [user('a'), user('b')] }), 400, (j) => j.error.message.includes('alternate')],
    [() => an({ ...anBody, messages: [user([{ type: 'tool_result', tool_use_id: 'toolu_x', content: 'r' }])] }), 400, (j) => j.error.message.includes('unexpected `tool_use_id`')],
    [() => an({ ...anBody, messages: [user('a'), { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'f', input: {} }] }, user('b')] }), 400, (j) => j.error.message.includes('without `tool_result`')],
    [() => an({ ...anBody, messages: [user('a'), { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'f', input: '{}' }] }] }), 400, (j) => j.error.message.includes('valid dictionary')],
    [() => an({ ...anBody, tools: [{ name: 'f' }] }), 400, (j) => j.error.message.includes('input_schema')],
    [() => an({ ...anBody, temperature: 1.5 }), 400, (j) => j.error.message.includes('less than or equal to 1')],
    [() => an({ ...anBody, stop: ['x'] }), 400, (j) => j.error.message === 'stop: Extra inputs are not permitted'],
    [() => an({ ...anBody, metadata: { tenant: 'x' } }), 400, (j) => j.error.message.includes('metadata.tenant')],
    [() => ge(geBody, { query: '?key=g-key' }), 400, (j) => j.error.status === 'INVALID_ARGUMENT'],
    [() => ge(geBody, { headers: { 'content-type': 'application/json' } }), 403, (j) => j.error.status === 'PERMISSION_DENIED'],
    [() => ge(geBody, { headers: { ...GE, 'x-goog-api-key': 'wrong' } }), 400, (j) => j.error.details[0].reason === 'API_KEY_INVALID'],
    [() => ge(geBody, { stream: true, query: '' }), 400, (j) => j.error.message.includes('alt=sse')],
    [() => ge({}), 400, (j) => j.error.code === 400 && j.error.status === 'INVALID_ARGUMENT'],
    [() => ge({ contents: [] }), 400, (j) => j.error.message.includes('contents is not specified')],
    [() => ge({ contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] }), 400, (j) => j.error.message.includes('valid role')],
    [() => ge({ contents: [{ role: 'user', parts: [{ foo: 1 }] }] }), 400, (j) => j.error.message.includes('Unknown name "foo"')],
    [() => ge({ contents: [{ role: 'user', parts: [{}] }] }), 400, (j) => j.error.message.includes("oneof field 'data'")],
    [() => ge({ contents: [{ role: 'user', parts: [{ text: 'a' }] }, { role: 'user', parts: [{ text: 'b' }] }] }), 400, (j) => j.error.message.includes('alternate')],
    [() => ge({ ...geBody, systemInstruction: 'be brief' }), 400, (j) => j.error.message.includes('system_instruction')],
    [() => ge({ ...geBody, generationConfig: { maxTokens: 5 } }), 400, (j) => j.error.message.includes('Unknown name "maxTokens"')],
    [() => ge({ ...geBody, tools: [{ functionDeclarations: [{ name: 'f', parameters: { type: 'object', additionalProperties: false } }] }] }), 400, (j) => j.error.message.includes('additionalProperties')],
    [() => ge({ contents: [geBody.contents[0], { role: 'model', parts: [{ functionCall: { name: 'f', args: {} } }, { functionCall: { name: 'f', args: {} } }] }, { role: 'user', parts: [{ functionResponse: { name: 'f', response: {} } }] }] }), 400, (j) => j.error.message.includes('number of function response parts')],
    [() => ge({ contents: [geBody.contents[0], { role: 'model', parts: [{ functionCall: { name: 'f' } }] }, { role: 'user', parts: [{ functionResponse: { name: 'f', response: 'sunny' } }] }] }), 400, (j) => j.error.message.includes('google.protobuf.Struct')],
    [() => post(`${mock.url}/v1/nope`, OA, {}), 404, (j) => j.error.message === 'Invalid URL (POST /v1/nope)'],
  ];
  for (const [send, status, check] of cases) {
    const r = await send();
    ok(r.status === status && r.json && check(r.json), `${send.toString()} -> ${r.status} ${r.text}`);
  }
  // a rejected request leaves the queue alone
  mock.enqueue('openai', { status: 200, body: { marker: true } });
  await oa({ messages: [] });
  ok((await oa(oaBody)).json.marker === true, 'queued reply survives a rejected request');
}

// Fixture replay: every non-request file, byte-exact, with status and recorded headers
{
  // Bedrock's files replay through its own fake (bedrock.test.mjs).
  const files = loadManifest().filter((f) => f.kind !== 'request' && f.kind !== 'headers' && f.provider !== 'bedrock');
  for (const f of files) {
    mock.enqueue(f.provider, { fixture: f.file });
    const r = f.provider === 'openai' ? await oa(oaBody) : f.provider === 'anthropic' ? await an(anBody) : await ge(geBody);
    ok(r.status === f.http_status, `${f.file} status ${r.status}`);
    ok(r.bytes.equals(readFixture(f.file)), `${f.file} bytes`);
    if (f.headers_file) {
      const recorded = JSON.parse(readFixture(f.headers_file)).headers;
      const [name, value] = Object.entries(recorded).find(([k]) => /^(x-|openai|cf-|server)/i.test(k)) ?? [];
      if (name) ok(r.headers.get(name) === value, `${f.file} header ${name}`);
    }
    ok(r.headers.get('content-type').startsWith(f.file.endsWith('.sse') ? 'text/event-stream' : 'application/json'), `${f.file} content-type`);
  }
  const vary = await (mock.enqueue('gemini', { fixture: 'gemini/stream-text-usage-changes.sse' }), ge(geBody));
  ok(vary.headers.get('vary') === 'Origin, X-Origin, Referer', 'array header values are sent as repeated headers');
}

// Splits
{
  const rel = 'anthropic/stream-utf8-emoji-compaction.sse';
  const expected = readFixture(rel);
  mock.enqueue('anthropic', { fixture: rel, split: 'bytes' });
  const started = performance.now();
  const res = await fetch(`${mock.anthropicBaseUrl}/v1/messages`, { method: 'POST', headers: AN, body: JSON.stringify(anBody) });
  const parts = [];
  for await (const part of res.body) parts.push(Buffer.from(part));
  const ms = performance.now() - started;
  ok(Buffer.concat(parts).equals(expected), 'bytes split is byte-exact');
  console.log(`bytes replay of ${rel} (${expected.length} bytes): ${ms.toFixed(0)} ms, client saw ${parts.length} reads`);

  mock.enqueue('openai', { fixture: 'openai/stream-text-no-usage-multibyte.sse', split: { at: [1, 100, 5000, 99999] } });
  const at = await fetch(`${mock.openaiBaseUrl}/chat/completions`, { method: 'POST', headers: OA, body: JSON.stringify(oaBody) });
  const atParts = [];
  for await (const part of at.body) atParts.push(Buffer.from(part));
  ok(Buffer.concat(atParts).equals(readFixture('openai/stream-text-no-usage-multibyte.sse')), 'at split is byte-exact');
  ok(atParts.length > 1, `at split gives several reads (${atParts.map((p) => p.length)})`);
}

// Raw, sse, delays, resets, hangs and disconnects
{
  mock.enqueue('openai', { status: 503, headers: { 'Retry-After': '2' }, body: { error: { message: 'busy' } } });
  const r = await oa(oaBody);
  ok(r.status === 503 && r.headers.get('retry-after') === '2' && r.json.error.message === 'busy', 'raw reply');

  mock.enqueue('openai', { sse: ['data: {"a":1}\n\n'] });
  ok((await oa(oaBody)).text === 'data: {"a":1}\n\ndata: [DONE]\n\n', 'openai sse gets [DONE] appended');
  mock.enqueue('openai', { sse: ['data: {"a":1}\n\n'], endWithoutTerminator: true });
  ok((await oa(oaBody)).text === 'data: {"a":1}\n\n', 'endWithoutTerminator');
  mock.enqueue('anthropic', { sse: ['event: error\ndata: {"type":"error"}\n\n'] });
  ok(!(await an(anBody)).text.includes('message_stop'), 'no message_stop after an error event');

  mock.enqueue('openai', { sse: ['data: 1\n\n', 'data: 2\n\n', 'data: 3\n\n'], destroyAfter: 2 });
  const res = await fetch(`${mock.openaiBaseUrl}/chat/completions`, { method: 'POST', headers: OA, body: JSON.stringify(oaBody) });
  let got = '';
  const error = await (async () => {
    for await (const part of res.body) got += Buffer.from(part).toString();
  })().catch((e) => e);
  ok(error instanceof Error && got === 'data: 1\n\ndata: 2\n\n', `destroyAfter: got ${JSON.stringify(got)}, error ${error}`);

  mock.enqueue('gemini', { sse: ['data: {}\r\n\r\n'], destroyAfter: 0 });
  const early = await fetch(`${mock.geminiBaseUrl}/v1beta/models/m:generateContent`, { method: 'POST', headers: GE, body: JSON.stringify(geBody) });
  ok(early.status === 200 && (await early.text().catch((e) => e)) instanceof Error, 'destroyAfter: 0 answers headers then resets');

  mock.enqueue('openai', { delayMs: 150 });
  let t = performance.now();
  ok((await oa(oaBody)).json.choices[0].message.content === 'echo: hi there' && performance.now() - t >= 140, 'delayed default reply');
  mock.enqueue('openai', { sse: ['data: 1\n\n', 'data: 2\n\n'], delayMs: 60 });
  t = performance.now();
  await oa(oaBody);
  ok(performance.now() - t >= 110, 'sse delayMs applies before each chunk');

  const before = mock.closedConnections();
  ok(before === 0, `no disconnects counted so far (${before})`);
  mock.enqueue('openai', { hang: true });
  const ac = new AbortController();
  const hangMark = mock.mark();
  const seen = mock.requests.length;
  const pending = fetch(`${mock.openaiBaseUrl}/chat/completions`, { method: 'POST', headers: OA, body: JSON.stringify(oaBody), signal: ac.signal }).catch((e) => e);
  await received(seen + 1);
  ac.abort();
  ok((await pending).name === 'AbortError', 'hang aborted by client');
  ok((await mock.waitForClose({ since: hangMark, timeoutMs: 1000 })) === 1 && mock.closedConnections() === 1, 'disconnect during hang observed');

  mock.enqueue('anthropic', { sse: ['event: ping\ndata: {"type":"ping"}\n\n'], hang: true });
  const ac2 = new AbortController();
  const streamMark = mock.mark();
  const res2 = await fetch(`${mock.anthropicBaseUrl}/v1/messages`, { method: 'POST', headers: AN, body: JSON.stringify(anBody), signal: ac2.signal });
  const reader = res2.body.getReader();
  ok(Buffer.from((await reader.read()).value).toString().includes('ping'), 'stalled stream delivered its chunks');
  const waiting = mock.waitForClose({ since: streamMark, timeoutMs: 1000 });
  ac2.abort();
  ok((await waiting) === 1 && mock.closedConnections() === 2, 'disconnect mid-stream observed');
  // An earlier request's disconnect never satisfies a wait for a later one.
  await assert.rejects(mock.waitForClose({ since: mock.mark(), timeoutMs: 50 }), /no client disconnect/);
  ok((await mock.waitForClose({ since: hangMark, timeoutMs: 50 })) === 2, 'both disconnects counted since the first mark');
  assert.throws(() => mock.waitForClose(1000), /since/);
  checks += 2;
}

// generateOpenAIStream
{
  const text = generateOpenAIStream({ chunks: 10_000 });
  const events = text.split('\n\n').filter(Boolean);
  ok(events.length === 10_000 + 4 && events.at(-1) === 'data: [DONE]', 'generated stream shape');
  const usage = JSON.parse(events.at(-2).slice(6));
  ok(usage.choices.length === 0 && usage.usage.completion_tokens === 10_000, 'generated usage chunk');
  const content = events.slice(1, -3).map((e) => JSON.parse(e.slice(6)).choices[0].delta.content).join('');
  ok(content.startsWith('tok0 tok1 ') && content.endsWith('tok9999 '), 'generated content');
  ok(!generateOpenAIStream({ chunks: 3, usage: false }).includes('usage'), 'generated stream without usage');
  mock.enqueue('openai', { sse: [text] });
  ok((await oa(oaBody)).text === text, 'generated stream replays without a second [DONE]');
}

// Robustness: mangled bodies never produce a 500 or an internal error
{
  const mangle = (v) => {
    if (Math.random() < 0.05) return [null, 1, 'x', [], {}, true, [1], { a: 1 }][Math.floor(Math.random() * 8)];
    if (Array.isArray(v)) return v.map(mangle).filter(() => Math.random() > 0.1);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(() => Math.random() > 0.1).map(([k, x]) => [k, mangle(x)]));
    return v;
  };
  const seeds = [
    [oa, JSON.parse(readFixture('openai/request-chat-completions-tools.json')).body],
    [an, JSON.parse(readFixture('anthropic/request-messages-stream-tools.json')).body],
    [(b) => ge(b), JSON.parse(readFixture('gemini/request-stream-generate-content.json')).body],
    [oa, oaTools],
    [an, anTools],
    [(b) => ge(b), geTools],
  ];
  const statuses = new Set();
  for (let i = 0; i < 3000; i++) {
    const [send, seed] = seeds[i % seeds.length];
    const r = await send(mangle(seed));
    statuses.add(r.status);
    ok(r.status !== 500, `500 for a mangled body: ${r.text}`);
  }
  ok(mock.errors.length === 0, `no internal errors: ${mock.errors}`);
  console.log('fuzz statuses', [...statuses]);
}

// count_tokens answers Anthropic's official client as Anthropic does, and refuses what Anthropic refuses
{
  // (this SDK sends its key as a bearer token; Anthropic's API key header is x-api-key)
  const client = new Anthropic({ apiKey: 'a-key', baseURL: mock.anthropicBaseUrl, maxRetries: 0, defaultHeaders: { 'x-api-key': 'a-key' } });
  const seen = mock.requests.length;
  const body = { model: 'claude-haiku-4-5', system: 'Be brief.', messages: [user('count these words')] };
  const counted = await client.messages.countTokens(body, { headers: { 'anthropic-beta': 'token-counting-2024-11-01' } });
  const [request] = mock.requests.slice(seen);
  ok(request.path === '/v1/messages/count_tokens' && request.api === 'count_tokens' && request.vendor === 'anthropic', 'count_tokens recorded');
  ok(request.headers['anthropic-beta'] === 'token-counting-2024-11-01', 'count_tokens headers recorded');
  ok(counted.input_tokens === fakeCountTokens(body) && Object.keys(counted).join() === 'input_tokens', 'count_tokens answers { input_tokens }');
  const refused = await client.messages.countTokens({ ...body, max_tokens: 5 }).catch((e) => e);
  ok(refused instanceof Anthropic.BadRequestError && refused.error.error.message === 'max_tokens: Extra inputs are not permitted', 'count_tokens takes no max_tokens');
  const broken = await client.messages.countTokens({ ...body, messages: [{ role: 'assistant', content: 'x' }] }).catch((e) => e);
  ok(broken instanceof Anthropic.BadRequestError && /first message must use the "user" role/.test(broken.error.error.message), 'count_tokens validates messages');
}

// close() is prompt even with a request hanging
{
  mock.enqueue('gemini', { hang: true });
  const seen = mock.requests.length;
  const pending = ge(geBody).catch((e) => e);
  await received(seen + 1);
  await mock.close();
  ok((await pending) instanceof Error, 'hanging client sees the connection close');
  ok(mock.closedConnections() === 2, 'server-side close is not counted as a client disconnect');
  assert.throws(() => mock.enqueue('mistral', {}), /unknown vendor/);
  assert.throws(() => mock.enqueue('openai', { fixture: 'openai/nope.json' }), /ENOENT/);
  assert.throws(() => mock.enqueue('openai', { fixtur: 'x' }), /unknown reply option/);
  checks += 3;
}
console.log(`self-check passed: ${checks} checks, ${mock.requests.length} requests recorded`);
