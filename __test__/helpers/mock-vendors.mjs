// Loopback mock of the upstream vendor APIs (OpenAI Chat Completions, OpenAI Responses, Anthropic Messages, Gemini
// generateContent) for node:test suites. OpenAI Responses is the vendor 'responses' (POST /v1/responses): JSON and
// the typed SSE events (`event:` lines, `sequence_number`, no terminator); responsesObject(), responsesEvents() and
// responsesItems build replies for enqueue('responses', { body } | { sse }).
//
// Every request is recorded in `requests`, then validated the way the real vendor would validate it (same HTTP
// status and error body shape), so a malformed request from the gateway fails the test that sent it. A request
// refused by validation does not consume a queued reply. A valid request gets the next reply queued for its
// vendor with enqueue(), or else a default success: the text `echo: <text of the last user message>` with usage
// DEFAULT_USAGE, streamed when the request asked for a stream (OpenAI sends the usage chunk only when
// stream_options.include_usage is set, as the real API does).
//
// Replies passed to enqueue(vendor, reply):
//   { fixture: 'openai/response-text.json', status?, headers? }  replay a recorded file byte for byte, with the
//       manifest's http_status and the headers of its sibling <name>.headers.json (framing headers dropped)
//   { status?, headers?, body? }      raw reply; body string | Buffer | object (sent as JSON)
//   { delayMs?, headers? }            the default reply, delayed and/or with extra headers
//   { hang: true }                    never send a status line
//   these take split: 'whole' (default) | 'bytes' (one write per byte) | { at: [byteOffset, ...] }, and
//   delayMs: wait before the status line.
//   { sse: [chunk, ...], status?, headers?, delayMs?, endWithoutTerminator?, destroyAfter?, hang? }
//       headers at once, then the chunks (strings or Buffers) one by one, waiting delayMs before each. The
//       vendor's end of stream (OpenAI `data: [DONE]`, Anthropic `message_stop`) is appended unless
//       endWithoutTerminator is set, the chunks already contain it, or (Anthropic) they contain an
//       `event: error`. destroyAfter: n resets the connection (TCP RST) after n chunks; hang: true keeps the
//       stream open after the chunks.
//
// Embeddings: OpenAI `POST /v1/embeddings` (float and base64, as OpenAI answers them; at most 2048 inputs) and Gemini
// `POST /v1beta/models/{m}:batchEmbedContents` (at most 100 requests, each naming `models/{m}`). The default reply
// embeds each text as fakeEmbedding(text, dimensions) (8 values unless the request asks for a size) and bills
// fakeEmbeddingTokens(text) per input (OpenAI usage; Gemini reports none, as the real API). Recorded in `requests`
// with `api: 'embeddings'`; replies queued with enqueue('openai' | 'gemini', …) serve embeddings requests too.
//
// Token counting: Anthropic `POST /v1/messages/count_tokens` (a Messages body without max_tokens, stream or
// sampling fields, validated like Messages) answers `{ input_tokens: fakeCountTokens(body) }`, a count from the
// body's JSON length that no tokenizer produces. Recorded in `requests` with `api: 'count_tokens'`; replies queued
// with enqueue('anthropic', …) serve it too.
//
// Azure OpenAI (vendor 'azure'): see the azure section below.
//
// startMockVendors({ apiKeys: { openai?, anthropic?, gemini?, azure? }, azureAdToken? }): a vendor given a key refuses any other key the
// way it refuses a wrong key; otherwise any non-empty key is accepted. Besides the documented fields the mock
// exposes `errors`, the exceptions its own handlers threw (each answered 500, or a reset once streaming).
// mark() numbers the next request to arrive. waitForClose({ since: mark, timeoutMs }) resolves with how many
// requests that arrived at or after `mark` the client disconnected (at least one; a disconnect that happened
// before the call counts), so a test waits for its own request's disconnect, never for one an earlier test left.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const VENDORS = ['openai', 'anthropic', 'gemini', 'responses', 'azure'];
const CREATED = 1_700_000_000;
const SPLIT_PAUSE_MS = 5;
const REPLY_KEYS = new Set(['fixture', 'status', 'headers', 'body', 'sse', 'hang', 'split', 'delayMs', 'endWithoutTerminator', 'destroyAfter']);
// Node frames the body itself; recorded framing headers would contradict the chunking we choose.
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive']);

export const DEFAULT_USAGE = Object.freeze({ promptTokens: 10, completionTokens: 5 });

// ---------------------------------------------------------------------------------------------- fixtures

const FIXTURES_DIR = process.env.FIXTURES_DIR
  ? path.resolve(process.env.FIXTURES_DIR)
  : fileURLToPath(new URL('../fixtures/providers', import.meta.url));

export function fixturePath(rel) {
  return path.join(FIXTURES_DIR, rel);
}

export function readFixture(rel) {
  return fs.readFileSync(fixturePath(rel));
}

let manifestFiles;
export function loadManifest() {
  manifestFiles ??= JSON.parse(readFixture('manifest.json').toString('utf8')).files;
  return manifestFiles;
}

function fixtureReply(rel) {
  const body = readFixture(rel);
  const entry = loadManifest().find((f) => f.file === rel);
  const headersFile = rel.replace(/\.(json|sse)$/, '.headers.json');
  const recorded = fs.existsSync(fixturePath(headersFile)) ? JSON.parse(readFixture(headersFile).toString('utf8')) : {};
  const headers = { 'content-type': rel.endsWith('.sse') ? 'text/event-stream' : 'application/json' };
  for (const [name, value] of Object.entries(recorded.headers ?? {})) {
    if (!FRAMING_HEADERS.has(name.toLowerCase())) headers[name.toLowerCase()] = value;
  }
  return { status: entry?.http_status ?? recorded.status ?? 200, headers, body };
}

// ------------------------------------------------------------------------------------------------ helpers

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const typeName = (v) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);
const lowerKeys = (h = {}) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
const toBuffer = (b) => (Buffer.isBuffer(b) ? b : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b)));
const words = (text) => text.match(/\S+\s*|\s+/g);
const echo = (text) => `echo: ${text}`;
const json = (obj) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: toBuffer(obj) });
const eventStream = (text) => ({ status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8' }, body: Buffer.from(text) });
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A request the vendor would refuse: answered with `status` and the vendor's error `body`. */
class Rejection extends Error {
  constructor(status, body) {
    super(JSON.stringify(body));
    this.status = status;
    this.body = body;
  }
}

// ------------------------------------------------------------------------------------------------- openai

const OPENAI_PARAMS = new Set([
  'model', 'messages', 'audio', 'frequency_penalty', 'function_call', 'functions', 'logit_bias', 'logprobs',
  'max_completion_tokens', 'max_tokens', 'metadata', 'modalities', 'n', 'parallel_tool_calls', 'prediction',
  'presence_penalty', 'prompt_cache_key', 'reasoning_effort', 'response_format', 'safety_identifier', 'seed',
  'service_tier', 'stop', 'store', 'stream', 'stream_options', 'temperature', 'tool_choice', 'tools',
  'top_logprobs', 'top_p', 'user', 'verbosity', 'web_search_options',
]);
const OPENAI_MESSAGE_KEYS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'refusal', 'audio', 'function_call']);
const OPENAI_PART_TYPES = {
  system: ['text'], developer: ['text'], tool: ['text'], user: ['text', 'image_url'], assistant: ['text', 'refusal'],
};

const openaiBad = (message, param = null, code = null) =>
  new Rejection(400, { error: { message, type: 'invalid_request_error', param, code } });
const oaMissing = (param) => openaiBad(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter');
const oaType = (param, expected, v) =>
  openaiBad(`Invalid type for '${param}': expected ${expected}, but got ${typeName(v)} instead.`, param, 'invalid_type');
const oaEmpty = (param) =>
  openaiBad(`Invalid '${param}': empty array. Expected an array with minimum length 1, but got an empty array instead.`, param, 'empty_array');
const oaUnanswered = (ids, i) =>
  openaiBad(
    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. " +
      `The following tool_call_ids did not have response messages: ${[...ids].join(', ')}`,
    `messages.[${i}].role`,
  );

function openaiUsage({ promptTokens, completionTokens }) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

function openaiStream({ id, model, deltas, usage }) {
  // With include_usage the real API puts "usage": null on every chunk before the final usage chunk.
  const chunk = (choices, extra = usage ? { usage: null } : {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created: CREATED, model, system_fingerprint: 'fp_mock', choices, ...extra })}\n\n`;
  const choice = (delta, finishReason = null) => [{ index: 0, delta, logprobs: null, finish_reason: finishReason }];
  return [
    chunk(choice({ role: 'assistant', content: '', refusal: null })),
    ...deltas.map((content) => chunk(choice({ content }))),
    chunk(choice({}, 'stop')),
    ...(usage ? [chunk([], { usage: openaiUsage(usage) })] : []),
    'data: [DONE]\n\n',
  ].join('');
}

export function generateOpenAIStream({ chunks, text = (i) => `tok${i} `, usage = true, model = 'gpt-4o-mini' }) {
  return openaiStream({
    id: 'chatcmpl-mockstream',
    model,
    deltas: Array.from({ length: chunks }, (_, i) => text(i)),
    usage: usage ? { promptTokens: DEFAULT_USAGE.promptTokens, completionTokens: chunks } : null,
  });
}

function validateOpenAIContent(m, at) {
  const c = m.content;
  if (c === undefined || c === null) {
    if (m.role === 'assistant' && (m.tool_calls !== undefined || typeof m.refusal === 'string')) return;
    throw m.role === 'assistant'
      ? openaiBad("Invalid value for 'content': expected a string, got null.", `${at}.content`)
      : oaMissing(`${at}.content`);
  }
  if (typeof c === 'string') return;
  if (!Array.isArray(c)) throw oaType(`${at}.content`, 'one of a string or array of objects', c);
  if (!c.length) throw oaEmpty(`${at}.content`);
  const allowed = OPENAI_PART_TYPES[m.role];
  c.forEach((p, j) => {
    const pat = `${at}.content[${j}]`;
    if (!isObj(p)) throw oaType(pat, 'an object', p);
    if (!allowed.includes(p.type)) {
      throw openaiBad(`Invalid value: '${p.type}'. Supported values are: ${allowed.map((t) => `'${t}'`).join(' and ')}.`, `${pat}.type`, 'invalid_value');
    }
    if (p.type === 'text' && typeof p.text !== 'string') throw oaMissing(`${pat}.text`);
    if (p.type === 'refusal' && typeof p.refusal !== 'string') throw oaMissing(`${pat}.refusal`);
    if (p.type === 'image_url') {
      if (!isObj(p.image_url) || typeof p.image_url.url !== 'string') throw oaMissing(`${pat}.image_url.url`);
      if (!/^(https?:\/\/|data:image\/[\w.+-]+;base64,)/.test(p.image_url.url)) {
        throw openaiBad(`Invalid '${pat}.image_url.url'. Expected a valid URL, but got a value with an invalid format.`, `${pat}.image_url.url`, 'invalid_value');
      }
    }
  });
}

/** Returns the ids of the calls, which the following tool messages must answer. */
function validateOpenAIToolCalls(calls, at) {
  if (!Array.isArray(calls)) throw oaType(`${at}.tool_calls`, 'an array', calls);
  if (!calls.length) throw oaEmpty(`${at}.tool_calls`);
  return calls.map((tc, k) => {
    const tat = `${at}.tool_calls[${k}]`;
    if (!isObj(tc)) throw oaType(tat, 'an object', tc);
    if (typeof tc.id !== 'string') throw oaMissing(`${tat}.id`);
    if (tc.type !== 'function') {
      throw tc.type === undefined ? oaMissing(`${tat}.type`) : openaiBad(`Invalid value: '${tc.type}'. Supported values are: 'function'.`, `${tat}.type`, 'invalid_value');
    }
    if (!isObj(tc.function)) throw oaMissing(`${tat}.function`);
    if (typeof tc.function.name !== 'string') throw oaMissing(`${tat}.function.name`);
    if (tc.function.arguments === undefined) throw oaMissing(`${tat}.function.arguments`);
    if (typeof tc.function.arguments !== 'string') throw oaType(`${tat}.function.arguments`, 'a string', tc.function.arguments);
    return tc.id;
  });
}

function validateOpenAI(b) {
  for (const k of Object.keys(b)) if (!OPENAI_PARAMS.has(k)) throw openaiBad(`Unrecognized request argument supplied: ${k}`);
  if (b.model === undefined) throw openaiBad('you must provide a model parameter');
  if (typeof b.model !== 'string') throw oaType('model', 'a string', b.model);
  if (b.messages === undefined) throw oaMissing('messages');
  if (!Array.isArray(b.messages)) throw oaType('messages', 'an array', b.messages);
  if (!b.messages.length) throw oaEmpty('messages');

  let awaiting = null; // ids of the previous assistant tool_calls not yet answered by a tool message
  b.messages.forEach((m, i) => {
    const at = `messages[${i}]`;
    if (!isObj(m)) throw oaType(at, 'an object', m);
    for (const k of Object.keys(m)) {
      if (!OPENAI_MESSAGE_KEYS.has(k)) throw openaiBad(`Additional properties are not allowed ('${k}' was unexpected) - '${at}'`, at);
    }
    if (!Object.hasOwn(OPENAI_PART_TYPES, m.role)) {
      throw openaiBad(`Invalid value: '${m.role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`, `${at}.role`, 'invalid_value');
    }
    if (m.role === 'tool') {
      if (typeof m.tool_call_id !== 'string') {
        throw openaiBad("Missing parameter 'tool_call_id': messages with role 'tool' must have a 'tool_call_id'.", `messages.[${i}].tool_call_id`);
      }
      if (!awaiting) {
        throw openaiBad("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.", `messages.[${i}].role`);
      }
      if (!awaiting.delete(m.tool_call_id)) {
        throw openaiBad(`Invalid parameter: 'tool_call_id' of '${m.tool_call_id}' not found in 'tool_calls' of previous message.`, `messages.[${i}].tool_call_id`);
      }
    } else {
      if (awaiting?.size) throw oaUnanswered(awaiting, i);
      awaiting = null;
    }
    validateOpenAIContent(m, at);
    if (m.tool_calls !== undefined) {
      if (m.role !== 'assistant') throw openaiBad(`Additional properties are not allowed ('tool_calls' was unexpected) - '${at}'`, at);
      awaiting = new Set(validateOpenAIToolCalls(m.tool_calls, at));
    }
  });
  if (awaiting?.size) throw oaUnanswered(awaiting, b.messages.length - 1);

  if (b.stream !== undefined && typeof b.stream !== 'boolean') throw oaType('stream', 'a boolean', b.stream);
  if (b.stream_options != null) {
    if (b.stream !== true) throw openaiBad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options');
    if (!isObj(b.stream_options)) throw oaType('stream_options', 'an object', b.stream_options);
  }
  for (const [name, max] of [['temperature', 2], ['top_p', 1]]) {
    const v = b[name];
    if (v == null) continue;
    if (typeof v !== 'number') throw oaType(name, 'a decimal', v);
    if (v < 0) throw openaiBad(`Invalid '${name}': decimal below minimum value. Expected a value >= 0, but got ${v} instead.`, name, 'decimal_below_min_value');
    if (v > max) throw openaiBad(`Invalid '${name}': decimal above maximum value. Expected a value <= ${max}, but got ${v} instead.`, name, 'decimal_above_max_value');
  }
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) throw oaType('tools', 'an array', b.tools);
    b.tools.forEach((t, k) => {
      const tat = `tools[${k}]`;
      if (!isObj(t)) throw oaType(tat, 'an object', t);
      if (t.type !== 'function') throw t.type === undefined ? oaMissing(`${tat}.type`) : openaiBad(`Invalid value: '${t.type}'. Supported values are: 'function' and 'custom'.`, `${tat}.type`, 'invalid_value');
      if (!isObj(t.function)) throw oaMissing(`${tat}.function`);
      if (typeof t.function.name !== 'string') throw oaMissing(`${tat}.function.name`);
      if (!/^[a-zA-Z0-9_-]{1,64}$/.test(t.function.name)) {
        throw openaiBad(`Invalid '${tat}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.`, `${tat}.function.name`, 'invalid_value');
      }
      if (t.function.parameters !== undefined && !isObj(t.function.parameters)) throw oaType(`${tat}.function.parameters`, 'an object', t.function.parameters);
    });
  }
  if (b.tool_choice != null) {
    if (!b.tools?.length) throw openaiBad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", 'tool_choice');
    const tc = b.tool_choice;
    const ok = ['none', 'auto', 'required'].includes(tc) || (isObj(tc) && tc.type === 'function' && typeof tc.function?.name === 'string');
    if (!ok) throw openaiBad(`Invalid value for 'tool_choice': ${JSON.stringify(tc)}.`, 'tool_choice', 'invalid_value');
  }
  if (b.response_format != null) {
    const rf = b.response_format;
    if (!isObj(rf) || !['text', 'json_object', 'json_schema'].includes(rf.type)) {
      throw openaiBad(`Invalid value: '${rf?.type}'. Supported values are: 'text', 'json_object', and 'json_schema'.`, 'response_format.type', 'invalid_value');
    }
    if (rf.type === 'json_schema' && typeof rf.json_schema?.name !== 'string') throw oaMissing('response_format.json_schema.name');
  }
}

const openai = {
  check(headers, _query, _route, expectedKey) {
    const auth = /^Bearer (\S+)$/.exec(headers.authorization ?? '');
    if (!auth) {
      throw new Rejection(401, { error: {
        message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        type: 'invalid_request_error', param: null, code: 'invalid_api_key',
      } });
    }
    if (expectedKey !== undefined && auth[1] !== expectedKey) {
      const key = auth[1];
      throw new Rejection(401, { error: {
        message: `Incorrect API key provided: ${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: 'invalid_request_error', param: null, code: 'invalid_api_key',
      } });
    }
  },
  invalidJson: () =>
    openaiBad("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"),
  validate: validateOpenAI,
  defaultReply(b, _route, n) {
    const last = b.messages.findLast((m) => m.role === 'user');
    const content = last?.content ?? '';
    const text = echo(typeof content === 'string' ? content : content.filter((p) => p.type === 'text').map((p) => p.text).join(''));
    const id = `chatcmpl-mock${n}`;
    if (b.stream) {
      return eventStream(openaiStream({ id, model: b.model, deltas: words(text), usage: b.stream_options?.include_usage ? DEFAULT_USAGE : null }));
    }
    return json({
      id, object: 'chat.completion', created: CREATED, model: b.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
      usage: openaiUsage(DEFAULT_USAGE), service_tier: 'default', system_fingerprint: 'fp_mock',
    });
  },
};

// ---------------------------------------------------------------------------------------------- anthropic

const ANTHROPIC_PARAMS = new Set([
  'model', 'messages', 'max_tokens', 'system', 'metadata', 'stop_sequences', 'stream', 'temperature', 'top_p', 'top_k',
  'tools', 'tool_choice', 'thinking', 'service_tier', 'container', 'mcp_servers', 'context_management', 'output_format', 'output_config',
]);
const ANTHROPIC_BLOCKS = {
  user: ['text', 'image', 'tool_result'], assistant: ['text', 'tool_use', 'thinking', 'redacted_thinking'], tool_result: ['text', 'image'], system: ['text'],
};
const IMAGE_MEDIA_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];

const anthropicError = (status, type, message) => new Rejection(status, { type: 'error', error: { type, message } });
const anthropicBad = (message) => anthropicError(400, 'invalid_request_error', message);
const tagError = (at, tag, allowed) =>
  anthropicBad(`${at}: Input tag '${tag}' found using 'type' does not match any of the expected tags: ${allowed.map((t) => `'${t}'`).join(', ')}`);

function validateImageSource(src, at) {
  if (!isObj(src)) throw anthropicBad(`${at}: Field required`);
  if (src.type === 'base64') {
    if (!IMAGE_MEDIA_TYPES.includes(src.media_type)) {
      throw anthropicBad(`${at}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'`);
    }
    if (typeof src.data !== 'string' || !BASE64.test(src.data)) throw anthropicBad(`${at}.base64.data: invalid base64 data`);
  } else if (src.type === 'url') {
    if (typeof src.url !== 'string' || !/^https?:\/\//.test(src.url)) throw anthropicBad(`${at}.url.url: Input should be a valid URL`);
  } else {
    throw tagError(at, src.type, ['base64', 'url']);
  }
}

// Prompt caching: `cache_control: { type: 'ephemeral', ttl?: '5m' | '1h' }` on blocks and tools, at most 4 in a
// request (Anthropic's limit and message).
function validateCacheControl(control, at) {
  if (control === undefined || control === null) return 0;
  if (!isObj(control)) throw anthropicBad(`${at}.cache_control: Input should be a valid dictionary`);
  if (control.type !== 'ephemeral') throw anthropicBad(`${at}.cache_control.ephemeral.type: Input should be 'ephemeral'`);
  for (const k of Object.keys(control)) if (k !== 'type' && k !== 'ttl') throw anthropicBad(`${at}.cache_control.ephemeral.${k}: Extra inputs are not permitted`);
  if (control.ttl !== undefined && control.ttl !== '5m' && control.ttl !== '1h') throw anthropicBad(`${at}.cache_control.ephemeral.ttl: Input should be '5m' or '1h'`);
  return 1;
}

function countCacheControls(b) {
  let count = 0;
  const visit = (blk, at) => {
    if (!isObj(blk)) return;
    count += validateCacheControl(blk.cache_control, at);
    if (Array.isArray(blk.content)) blk.content.forEach((c, k) => visit(c, `${at}.content.${k}`));
  };
  if (Array.isArray(b.system)) b.system.forEach((blk, k) => visit(blk, `system.${k}`));
  b.messages.forEach((m, i) => Array.isArray(m.content) && m.content.forEach((blk, j) => visit(blk, `messages.${i}.content.${j}`)));
  if (Array.isArray(b.tools)) b.tools.forEach((t, k) => visit(t, `tools.${k}`));
  if (count > 4) throw anthropicBad(`A maximum of 4 blocks with cache_control may be provided. Found ${count}.`);
}

function validateAnthropicBlock(blk, at, owner) {
  if (!isObj(blk)) throw anthropicBad(`${at}: Input should be a valid dictionary`);
  if (!ANTHROPIC_BLOCKS[owner].includes(blk.type)) throw tagError(at, blk.type, ANTHROPIC_BLOCKS[owner]);
  switch (blk.type) {
    case 'text':
      if (typeof blk.text !== 'string') throw anthropicBad(`${at}.text.text: Field required`);
      if (!blk.text) throw anthropicBad(`${at}: text content blocks must be non-empty`);
      break;
    case 'image':
      validateImageSource(blk.source, `${at}.image.source`);
      break;
    case 'thinking':
      if (typeof blk.thinking !== 'string') throw anthropicBad(`${at}.thinking.thinking: Field required`);
      if (typeof blk.signature !== 'string' || !blk.signature) throw anthropicBad(`${at}.thinking.signature: Field required`);
      break;
    case 'redacted_thinking':
      if (typeof blk.data !== 'string') throw anthropicBad(`${at}.redacted_thinking.data: Field required`);
      break;
    case 'tool_use':
      if (typeof blk.id !== 'string' || !/^[a-zA-Z0-9_-]+$/.test(blk.id)) throw anthropicBad(`${at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'`);
      if (typeof blk.name !== 'string' || !blk.name) throw anthropicBad(`${at}.tool_use.name: Field required`);
      if (!isObj(blk.input)) throw anthropicBad(`${at}.tool_use.input: Input should be a valid dictionary`);
      break;
    case 'tool_result':
      if (typeof blk.tool_use_id !== 'string') throw anthropicBad(`${at}.tool_result.tool_use_id: Field required`);
      if (blk.content !== undefined && typeof blk.content !== 'string') {
        if (!Array.isArray(blk.content)) throw anthropicBad(`${at}.tool_result.content: Input should be a valid string or a valid list`);
        blk.content.forEach((c, k) => validateAnthropicBlock(c, `${at}.tool_result.content.${k}`, 'tool_result'));
      }
      if (blk.is_error !== undefined && typeof blk.is_error !== 'boolean') throw anthropicBad(`${at}.tool_result.is_error: Input should be a valid boolean`);
      break;
  }
}

const toolUseIds = (m) => (Array.isArray(m.content) ? m.content.filter((b) => b.type === 'tool_use').map((b) => b.id) : []);

function validateAnthropicMessage(m, i, all, perTurnControl) {
  const at = `messages.${i}`;
  if (!isObj(m)) throw anthropicBad(`${at}: Input should be a valid dictionary`);
  if (m.role === 'system' && perTurnControl && i > 0) {
    // The per-turn-control beta (Claude Code 2.1 sends it) takes system turns after the first user turn, each
    // with its own text blocks and output_config; they do not take part in the user/assistant alternation.
    for (const k of Object.keys(m)) if (!['role', 'content', 'output_config'].includes(k)) throw anthropicBad(`${at}.${k}: Extra inputs are not permitted`);
    if (typeof m.content !== 'string' && !Array.isArray(m.content)) throw anthropicBad(`${at}.content: Input should be a valid string or a valid list`);
    if (Array.isArray(m.content)) m.content.forEach((blk, j) => validateAnthropicBlock(blk, `${at}.content.${j}`, 'system'));
    return;
  }
  for (const k of Object.keys(m)) if (k !== 'role' && k !== 'content') throw anthropicBad(`${at}.${k}: Extra inputs are not permitted`);
  if (m.role === 'system') {
    throw anthropicBad('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.');
  }
  if (m.role !== 'user' && m.role !== 'assistant') throw anthropicBad(`${at}.role: Input should be 'user' or 'assistant'`);
  if (i === 0 && m.role !== 'user') throw anthropicBad('messages: first message must use the "user" role');
  const previous = all.slice(0, i).findLast((turn) => turn.role !== 'system');
  if (previous && previous.role === m.role) {
    throw anthropicBad(`messages: roles must alternate between "user" and "assistant", but found multiple "${m.role}" roles in a row`);
  }
  if (m.content === undefined) throw anthropicBad(`${at}.content: Field required`);
  if (typeof m.content !== 'string' && !Array.isArray(m.content)) throw anthropicBad(`${at}.content: Input should be a valid string or a valid list`);
  if (!m.content.length && !(m.role === 'assistant' && i === all.length - 1)) {
    throw anthropicBad(`${at}: all messages must have non-empty content except for the optional final assistant message`);
  }
  const blocks = typeof m.content === 'string' ? [] : m.content;
  blocks.forEach((blk, j) => validateAnthropicBlock(blk, `${at}.content.${j}`, m.role));

  const expected = previous ? toolUseIds(previous) : [];
  const answered = new Set();
  blocks.forEach((blk, j) => {
    if (blk.type !== 'tool_result') return;
    if (!expected.includes(blk.tool_use_id)) {
      throw anthropicBad(`${at}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` blocks: ${blk.tool_use_id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`);
    }
    answered.add(blk.tool_use_id);
  });
  const unanswered = expected.filter((id) => !answered.has(id));
  if (unanswered.length) {
    throw anthropicBad(`messages.${i - 1}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${unanswered.join(', ')}. Each \`tool_use\` block must have a corresponding \`tool_result\` block in the next message.`);
  }
}

function validateAnthropic(b, _route, headers = {}) {
  const perTurnControl = String(headers['anthropic-beta'] ?? '').split(',').some((beta) => beta.trim().startsWith('per-turn-control-'));
  for (const k of Object.keys(b)) if (!ANTHROPIC_PARAMS.has(k)) throw anthropicBad(`${k}: Extra inputs are not permitted`);
  if (b.model === undefined) throw anthropicBad('model: Field required');
  if (typeof b.model !== 'string') throw anthropicBad('model: Input should be a valid string');
  if (b.max_tokens === undefined) throw anthropicBad('max_tokens: Field required');
  if (!Number.isInteger(b.max_tokens)) throw anthropicBad('max_tokens: Input should be a valid integer');
  if (b.max_tokens < 1) throw anthropicBad('max_tokens: Input should be greater than or equal to 1');
  if (b.messages === undefined) throw anthropicBad('messages: Field required');
  if (!Array.isArray(b.messages)) throw anthropicBad('messages: Input should be a valid list');
  if (!b.messages.length) throw anthropicBad('messages: at least one message is required');
  b.messages.forEach((m, i, all) => validateAnthropicMessage(m, i, all, perTurnControl));

  if (b.system !== undefined && typeof b.system !== 'string') {
    if (!Array.isArray(b.system)) throw anthropicBad('system: Input should be a valid string or a valid list');
    b.system.forEach((blk, k) => validateAnthropicBlock(blk, `system.${k}`, 'system'));
  }
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) throw anthropicBad('tools: Input should be a valid list');
    b.tools.forEach((t, k) => {
      if (!isObj(t)) throw anthropicBad(`tools.${k}: Input should be a valid dictionary`);
      if (t.type !== undefined && t.type !== 'custom') {
        if (typeof t.type === 'string' && /_\d{8}$/.test(t.type)) return; // versioned server tool, e.g. web_search_20250305
        throw tagError(`tools.${k}`, t.type, ['custom', 'bash_20250124', 'text_editor_20250728', 'web_search_20250305']);
      }
      if (typeof t.name !== 'string') throw anthropicBad(`tools.${k}.custom.name: Field required`);
      if (!/^[a-zA-Z0-9_-]{1,128}$/.test(t.name)) throw anthropicBad(`tools.${k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`);
      if (!isObj(t.input_schema)) throw anthropicBad(`tools.${k}.custom.input_schema: Field required`);
      if (t.input_schema.type !== 'object') throw anthropicBad(`tools.${k}.custom.input_schema.type: Input should be 'object'`);
    });
  }
  countCacheControls(b);
  if (b.tool_choice !== undefined) {
    const tc = b.tool_choice;
    if (!isObj(tc)) throw anthropicBad('tool_choice: Input should be a valid dictionary or object to extract fields from');
    if (!['auto', 'any', 'tool', 'none'].includes(tc.type)) throw tagError('tool_choice', tc.type, ['auto', 'any', 'tool', 'none']);
    if (tc.type === 'tool' && typeof tc.name !== 'string') throw anthropicBad('tool_choice.tool.name: Field required');
  }
  for (const name of ['temperature', 'top_p']) {
    const v = b[name];
    if (v === undefined) continue;
    if (typeof v !== 'number') throw anthropicBad(`${name}: Input should be a valid number`);
    if (v < 0) throw anthropicBad(`${name}: Input should be greater than or equal to 0`);
    if (v > 1) throw anthropicBad(`${name}: Input should be less than or equal to 1`);
  }
  if (b.top_k !== undefined && !Number.isInteger(b.top_k)) throw anthropicBad('top_k: Input should be a valid integer');
  if (b.stop_sequences !== undefined && !(Array.isArray(b.stop_sequences) && b.stop_sequences.every((s) => typeof s === 'string'))) {
    throw anthropicBad('stop_sequences: Input should be a valid list of strings');
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') throw anthropicBad('stream: Input should be a valid boolean');
  if (b.metadata !== undefined) {
    if (!isObj(b.metadata)) throw anthropicBad('metadata: Input should be a valid dictionary');
    for (const k of Object.keys(b.metadata)) if (k !== 'user_id') throw anthropicBad(`metadata.${k}: Extra inputs are not permitted`);
  }
}

function anthropicStream({ id, model, deltas, usage }) {
  const event = (data) => `event: ${data.type}\ndata: ${JSON.stringify(data)}\n\n`;
  return [
    event({ type: 'message_start', message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
    event({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
    event({ type: 'ping' }),
    ...deltas.map((text) => event({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } })),
    event({ type: 'content_block_stop', index: 0 }),
    event({ type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }),
    event({ type: 'message_stop' }),
  ].join('');
}

// The API versions Anthropic's clients send: 2023-06-01 (Claude Code, most SDKs) and the one @anthropic-ai/sdk 1.x sends.
const ANTHROPIC_VERSIONS = ['2023-01-01', '2023-06-01', '2026-10-21'];

const anthropic = {
  check(headers, _query, _route, expectedKey) {
    const key = headers['x-api-key'];
    if (!key || (expectedKey !== undefined && key !== expectedKey)) throw anthropicError(401, 'authentication_error', 'invalid x-api-key');
    const version = headers['anthropic-version'];
    if (version === undefined) throw anthropicBad('anthropic-version: header is required');
    if (!ANTHROPIC_VERSIONS.includes(version)) throw anthropicBad(`anthropic-version: unknown version ${JSON.stringify(version)}`);
  },
  invalidJson: () => anthropicBad('There was an error parsing the body of your request: expected a JSON object'),
  validate: validateAnthropic,
  defaultReply(b, _route, n) {
    const last = b.messages.findLast((m) => m.role === 'user');
    const content = last.content;
    const text = echo(typeof content === 'string' ? content : content.filter((p) => p.type === 'text').map((p) => p.text).join(''));
    const id = `msg_mock${n}`;
    const usage = { input_tokens: DEFAULT_USAGE.promptTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: DEFAULT_USAGE.completionTokens };
    if (b.stream) return eventStream(anthropicStream({ id, model: b.model, deltas: words(text), usage }));
    return json({ id, type: 'message', role: 'assistant', model: b.model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage });
  },
};

// What Anthropic's count_tokens takes: the Messages parameters that shape the prompt, nothing that shapes the answer.
const COUNT_TOKENS_PARAMS = new Set(['model', 'messages', 'system', 'tools', 'tool_choice', 'thinking', 'mcp_servers', 'context_management', 'output_format', 'output_config']);

/** The fake vendor's count for a count_tokens body: 3 plus one per 5 characters of its JSON. */
export const fakeCountTokens = (body) => 3 + Math.ceil(JSON.stringify(body).length / 5);

const anthropicCountTokens = {
  validate(b, route, headers) {
    for (const k of Object.keys(b)) if (!COUNT_TOKENS_PARAMS.has(k)) throw anthropicBad(`${k}: Extra inputs are not permitted`);
    validateAnthropic({ ...b, max_tokens: 1 }, route, headers);
  },
  defaultReply: (b) => json({ input_tokens: fakeCountTokens(b) }),
};

// ------------------------------------------------------------------------------------------------- gemini

const GEMINI_PARAMS = ['contents', 'tools', 'toolConfig', 'safetySettings', 'systemInstruction', 'generationConfig', 'cachedContent'];
const GEMINI_GENERATION_CONFIG = [
  'stopSequences', 'responseMimeType', 'responseSchema', 'responseJsonSchema', 'responseModalities', 'candidateCount',
  'maxOutputTokens', 'temperature', 'topP', 'topK', 'seed', 'presencePenalty', 'frequencyPenalty', 'responseLogprobs',
  'logprobs', 'enableEnhancedCivicAnswers', 'speechConfig', 'thinkingConfig', 'imageConfig', 'mediaResolution',
];
const GEMINI_PART_DATA = ['text', 'inlineData', 'fileData', 'functionCall', 'functionResponse'];
const GEMINI_PART_KEYS = [...GEMINI_PART_DATA, 'thought', 'thoughtSignature', 'videoMetadata', 'partMetadata'];
const GEMINI_TOOL_KEYS = ['functionDeclarations', 'googleSearch', 'googleSearchRetrieval', 'codeExecution', 'urlContext', 'retrieval', 'fileSearch', 'computerUse', 'googleMaps'];
const GEMINI_DECLARATION_KEYS = ['name', 'description', 'parameters', 'parametersJsonSchema', 'response', 'responseJsonSchema', 'behavior'];
// The OpenAPI subset Gemini accepts in `parameters` / `responseSchema`: JSON Schema keywords such as
// additionalProperties or $schema are rejected (use parametersJsonSchema / responseJsonSchema for those).
const GEMINI_SCHEMA_KEYS = [
  'type', 'format', 'title', 'description', 'nullable', 'enum', 'maxItems', 'minItems', 'properties', 'required',
  'minProperties', 'maxProperties', 'minLength', 'maxLength', 'pattern', 'example', 'anyOf', 'propertyOrdering',
  'default', 'items', 'minimum', 'maximum',
];

// Google's JSON parser accepts each field under its lowerCamelCase and its snake_case name.
const snake = (s) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const field = (obj, name) => obj[name] ?? obj[snake(name)];

const googleError = (code, status, message, details) => new Rejection(code, { error: { code, message, status, ...(details ? { details } : {}) } });
const googleBad = (message) => googleError(400, 'INVALID_ARGUMENT', message);
const invalidValue = (at, type, v) => googleBad(`Invalid value at '${at}' (${type}), ${JSON.stringify(v)}`);

function rejectUnknown(obj, known, at) {
  for (const k of Object.keys(obj)) {
    if (!known.includes(camel(k))) throw googleBad(`Invalid JSON payload received. Unknown name "${k}"${at ? ` at '${at}'` : ''}: Cannot find field.`);
  }
}

function validateGeminiSchema(schema, at) {
  if (!isObj(schema)) throw invalidValue(at, 'type.googleapis.com/google.ai.generativelanguage.v1beta.Schema', schema);
  rejectUnknown(schema, GEMINI_SCHEMA_KEYS, at);
  for (const [name, sub] of Object.entries(schema.properties ?? {})) validateGeminiSchema(sub, `${at}.properties[${JSON.stringify(name)}].value`);
  if (schema.items !== undefined) validateGeminiSchema(schema.items, `${at}.items`);
  const anyOf = field(schema, 'anyOf');
  if (anyOf !== undefined && !Array.isArray(anyOf)) throw invalidValue(`${at}.any_of`, 'type.googleapis.com/google.ai.generativelanguage.v1beta.Schema', anyOf);
  anyOf?.forEach((sub, k) => validateGeminiSchema(sub, `${at}.any_of[${k}]`));
}

function validateGeminiPart(p, at) {
  if (!isObj(p)) throw invalidValue(at, 'type.googleapis.com/google.ai.generativelanguage.v1beta.Part', p);
  rejectUnknown(p, GEMINI_PART_KEYS, at);
  const present = GEMINI_PART_DATA.filter((k) => field(p, k) !== undefined);
  if (!present.length) throw googleBad(`* GenerateContentRequest.${at}.data: required oneof field 'data' must have one initialized field\n`);
  if (present.length > 1) throw googleBad(`Invalid value at '${at}' (oneof), oneof field 'data' is already set. Cannot set '${present[1]}'`);
  const kind = present[0];
  const v = field(p, kind);
  const vat = `${at}.${snake(kind)}`;
  switch (kind) {
    case 'text':
      if (typeof v !== 'string') throw invalidValue(vat, 'TYPE_STRING', v);
      break;
    case 'inlineData':
      if (!isObj(v) || typeof field(v, 'mimeType') !== 'string') throw googleBad(`* GenerateContentRequest.${vat}.mime_type: mime_type must be specified\n`);
      if (typeof v.data !== 'string' || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(v.data)) {
        throw googleBad(`Invalid value at '${vat}.data' (TYPE_BYTES), Base64 decoding failed for ${JSON.stringify(String(v.data).slice(0, 40))}`);
      }
      break;
    case 'fileData':
      if (!isObj(v) || typeof field(v, 'fileUri') !== 'string') throw googleBad(`* GenerateContentRequest.${vat}.file_uri: file_uri must be specified\n`);
      break;
    case 'functionCall':
    case 'functionResponse':
      if (!isObj(v) || typeof v.name !== 'string' || !v.name) throw googleBad(`* GenerateContentRequest.${vat}.name: Name cannot be empty.\n`);
      if (kind === 'functionCall' && v.args !== undefined && !isObj(v.args)) throw invalidValue(`${vat}.args`, 'type.googleapis.com/google.protobuf.Struct', v.args);
      if (kind === 'functionResponse' && !isObj(v.response)) throw invalidValue(`${vat}.response`, 'type.googleapis.com/google.protobuf.Struct', v.response);
      break;
  }
}

const countParts = (content, kind) => content.parts.filter((p) => field(p, kind) !== undefined).length;

function validateGemini(b) {
  rejectUnknown(b, GEMINI_PARAMS, '');
  const contents = field(b, 'contents');
  if (contents === undefined || (Array.isArray(contents) && !contents.length)) throw googleBad('* GenerateContentRequest.contents: contents is not specified\n');
  if (!Array.isArray(contents)) throw invalidValue('contents', 'type.googleapis.com/google.ai.generativelanguage.v1beta.Content', contents);
  contents.forEach((c, i) => {
    const at = `contents[${i}]`;
    if (!isObj(c)) throw invalidValue(at, 'type.googleapis.com/google.ai.generativelanguage.v1beta.Content', c);
    rejectUnknown(c, ['role', 'parts'], at);
    if (c.role !== 'user' && c.role !== 'model') throw googleBad('Please use a valid role: user, model.');
    // The live API merges consecutive same-role turns; we refuse them to catch mapping bugs in the gateway.
    if (i > 0 && contents[i - 1].role === c.role) throw googleBad('Please ensure that multiturn requests alternate between user and model.');
    if (!Array.isArray(c.parts) || !c.parts.length) throw googleBad(`* GenerateContentRequest.${at}.parts: contents.parts must not be empty.\n`);
    c.parts.forEach((p, j) => validateGeminiPart(p, `${at}.parts[${j}]`));
    const responses = countParts(c, 'functionResponse');
    const calls = i > 0 && contents[i - 1].role === 'model' ? countParts(contents[i - 1], 'functionCall') : 0;
    if (responses && !calls) throw googleBad('Please ensure that function response turn comes immediately after a function call turn.');
    if (calls && responses !== calls) {
      throw googleBad('Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.');
    }
  });

  const si = field(b, 'systemInstruction');
  if (si !== undefined) {
    const ok = isObj(si) && Array.isArray(si.parts) && si.parts.length > 0 && si.parts.every((p) => isObj(p) && typeof p.text === 'string');
    if (!ok) throw invalidValue('system_instruction', 'type.googleapis.com/google.ai.generativelanguage.v1beta.Content', si);
    rejectUnknown(si, ['role', 'parts'], 'system_instruction');
  }
  const gc = field(b, 'generationConfig');
  if (gc !== undefined) {
    if (!isObj(gc)) throw invalidValue('generation_config', 'type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig', gc);
    rejectUnknown(gc, GEMINI_GENERATION_CONFIG, 'generation_config');
    const schema = field(gc, 'responseSchema');
    if (schema !== undefined) validateGeminiSchema(schema, 'generation_config.response_schema');
  }
  const tools = field(b, 'tools');
  if (tools !== undefined) {
    if (!Array.isArray(tools)) throw invalidValue('tools', 'type.googleapis.com/google.ai.generativelanguage.v1beta.Tool', tools);
    tools.forEach((t, k) => {
      const tat = `tools[${k}]`;
      if (!isObj(t)) throw invalidValue(tat, 'type.googleapis.com/google.ai.generativelanguage.v1beta.Tool', t);
      rejectUnknown(t, GEMINI_TOOL_KEYS, tat);
      const declarations = field(t, 'functionDeclarations') ?? [];
      if (!Array.isArray(declarations)) throw invalidValue(`${tat}.function_declarations`, 'type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionDeclaration', declarations);
      declarations.forEach((d, j) => {
        const dat = `${tat}.function_declarations[${j}]`;
        if (!isObj(d)) throw invalidValue(dat, 'type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionDeclaration', d);
        rejectUnknown(d, GEMINI_DECLARATION_KEYS, dat);
        if (typeof d.name !== 'string' || !/^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$/.test(d.name)) {
          throw googleBad(`* GenerateContentRequest.${dat}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64.\n`);
        }
        if (d.parameters !== undefined) validateGeminiSchema(d.parameters, `${dat}.parameters`);
      });
    });
  }
}

const gemini = {
  check(headers, query, route, expectedKey) {
    // The gateway must send the key as a header: a key in the URL ends up in logs and error messages.
    if (query.has('key')) throw googleBad('mock-vendors: API key passed in the URL (?key=); send it in the x-goog-api-key header');
    const key = headers['x-goog-api-key'];
    if (!key) {
      throw googleError(403, 'PERMISSION_DENIED', "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.");
    }
    if (expectedKey !== undefined && key !== expectedKey) {
      throw googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } },
      ]);
    }
    if (route.stream && query.get('alt') !== 'sse') {
      throw googleBad('mock-vendors: streamGenerateContent without ?alt=sse answers one JSON array, not SSE; add alt=sse');
    }
  },
  invalidJson: () => googleBad('Invalid JSON payload received. Expected a JSON object.'),
  validate: validateGemini,
  defaultReply(b, route, n) {
    const contents = field(b, 'contents');
    const last = contents.findLast((c) => c.role === 'user');
    const text = echo((last?.parts ?? []).map((p) => (typeof p.text === 'string' ? p.text : '')).join(''));
    const responseId = `mock${n}`;
    const { promptTokens, completionTokens } = DEFAULT_USAGE;
    const usageMetadata = { promptTokenCount: promptTokens, candidatesTokenCount: completionTokens, totalTokenCount: promptTokens + completionTokens };
    const response = (part, last) => ({
      candidates: [{ content: { parts: [{ text: part }], role: 'model' }, ...(last ? { finishReason: 'STOP' } : {}), index: 0 }],
      usageMetadata: last ? usageMetadata : { promptTokenCount: promptTokens, totalTokenCount: promptTokens },
      modelVersion: route.model,
      responseId,
    });
    if (!route.stream) return json(response(text, true));
    const deltas = words(text);
    return eventStream(deltas.map((d, k) => `data: ${JSON.stringify(response(d, k === deltas.length - 1))}\r\n\r\n`).join(''));
  },
};

// --------------------------------------------------------------------------------------------- embeddings

export const FAKE_EMBEDDING_DIMENSIONS = 8;
export const OPENAI_EMBEDDING_BATCH_LIMIT = 2048;
export const GEMINI_EMBEDDING_BATCH_LIMIT = 100;

/** The fakes' vector for a text: deterministic values in [-1, 1) from a hash of the text, as float32s. */
export function fakeEmbedding(text, dimensions = FAKE_EMBEDDING_DIMENSIONS) {
  let h = 2166136261;
  for (const byte of Buffer.from(text)) h = Math.imul(h ^ byte, 16777619) >>> 0;
  const out = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) {
    h = (Math.imul(h, 1664525) + 1013904223) >>> 0;
    out[i] = h / 2 ** 31 - 1;
  }
  return out;
}

/** What the OpenAI fake bills per input. */
export const fakeEmbeddingTokens = (text) => Math.max(1, Math.ceil(Buffer.byteLength(text) / 4));

const OPENAI_EMBEDDING_PARAMS = new Set(['input', 'model', 'dimensions', 'encoding_format', 'user']);

function validateOpenAIEmbeddings(b) {
  for (const k of Object.keys(b)) if (!OPENAI_EMBEDDING_PARAMS.has(k)) throw openaiBad(`Unrecognized request argument supplied: ${k}`);
  if (b.model === undefined) throw oaMissing('model');
  if (typeof b.model !== 'string') throw oaType('model', 'a string', b.model);
  if (b.input === undefined) throw oaMissing('input');
  const inputs = typeof b.input === 'string' ? [b.input] : b.input;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((t) => typeof t === 'string' && t.length > 0)) {
    // The fake, like the gateway, only sends text; token arrays would be valid at OpenAI.
    throw openaiBad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.");
  }
  if (inputs.length > OPENAI_EMBEDDING_BATCH_LIMIT) {
    throw openaiBad(`Invalid 'input': array too long. Expected an array with maximum length ${OPENAI_EMBEDDING_BATCH_LIMIT}, but got an array with length ${inputs.length} instead.`, 'input', 'array_above_max_length');
  }
  if (b.encoding_format !== undefined && !['float', 'base64'].includes(b.encoding_format)) {
    throw openaiBad(`Invalid value: '${b.encoding_format}'. Supported values are: 'float' and 'base64'.`, 'encoding_format', 'invalid_value');
  }
  if (b.dimensions !== undefined && !(Number.isInteger(b.dimensions) && b.dimensions >= 1)) {
    throw openaiBad(`Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got ${b.dimensions} instead.`, 'dimensions', 'integer_below_min_value');
  }
}

const openaiEmbeddings = {
  validate: validateOpenAIEmbeddings,
  defaultReply(b) {
    const inputs = typeof b.input === 'string' ? [b.input] : b.input;
    const data = inputs.map((text, index) => {
      const vector = fakeEmbedding(text, b.dimensions);
      const embedding = b.encoding_format === 'base64' ? Buffer.from(vector.buffer).toString('base64') : Array.from(vector);
      return { object: 'embedding', index, embedding };
    });
    const tokens = inputs.reduce((sum, text) => sum + fakeEmbeddingTokens(text), 0);
    return json({ object: 'list', data, model: b.model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
  },
};

const geminiEmbeddings = {
  validate(b, route) {
    rejectUnknown(b, ['requests'], '');
    const requests = field(b, 'requests');
    if (!Array.isArray(requests) || requests.length === 0) throw googleBad('* BatchEmbedContentsRequest.requests: requests is required\n');
    if (requests.length > GEMINI_EMBEDDING_BATCH_LIMIT) {
      throw googleBad(`* BatchEmbedContentsRequest.requests: at most ${GEMINI_EMBEDDING_BATCH_LIMIT} requests can be in one batch\n`);
    }
    requests.forEach((r, i) => {
      if (!isObj(r)) throw invalidValue(`requests[${i}]`, 'type.googleapis.com/google.ai.generativelanguage.v1beta.EmbedContentRequest', r);
      rejectUnknown(r, ['model', 'content', 'taskType', 'title', 'outputDimensionality'], `requests[${i}]`);
      if (r.model !== `models/${route.model}`) {
        throw googleBad(`* BatchEmbedContentsRequest.requests[${i}].model: Model names should match the model in the URL (models/${route.model}), got ${JSON.stringify(r.model)}\n`);
      }
      const parts = r.content?.parts;
      if (!Array.isArray(parts) || parts.length === 0 || !parts.every((p) => typeof p.text === 'string')) {
        throw googleBad(`* BatchEmbedContentsRequest.requests[${i}].content.parts: contents must have text parts\n`);
      }
      const size = field(r, 'outputDimensionality');
      if (size !== undefined && !(Number.isInteger(size) && size >= 1)) throw invalidValue(`requests[${i}].output_dimensionality`, 'TYPE_INT32', size);
    });
  },
  defaultReply(b) {
    const embeddings = field(b, 'requests').map((r) => ({
      values: Array.from(fakeEmbedding(r.content.parts.map((p) => p.text).join(''), field(r, 'outputDimensionality'))),
    }));
    return json({ embeddings });
  },
};

const EMBEDDING_APIS = { openai: openaiEmbeddings, gemini: geminiEmbeddings };
// Operations besides chat, by route.api, then vendor.
const OPERATIONS = { embeddings: EMBEDDING_APIS, count_tokens: { anthropic: anthropicCountTokens } };

// ------------------------------------------------------------------------------------ openai responses

const RESPONSES_PARAMS = new Set([
  'model', 'input', 'instructions', 'tools', 'tool_choice', 'text', 'max_output_tokens', 'max_tool_calls', 'temperature',
  'top_p', 'top_logprobs', 'user', 'stream', 'stream_options', 'store', 'metadata', 'previous_response_id', 'reasoning',
  'include', 'parallel_tool_calls', 'prompt_cache_key', 'truncation', 'background', 'service_tier', 'safety_identifier',
  'conversation', 'prompt',
  // Codex CLI sends it on every request to OpenAI's Responses API (fixtures/clients/codex-0.171.0.responses.json).
  'client_metadata',
]);
const RESPONSES_PART_TYPES = ['input_text', 'input_image', 'input_file', 'output_text', 'refusal'];
const RESPONSES_ITEM_TYPES = ['message', 'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', 'reasoning', 'item_reference'];

function validateResponses(b) {
  for (const k of Object.keys(b)) if (!RESPONSES_PARAMS.has(k)) throw openaiBad(`Unknown parameter: '${k}'.`, k, 'unknown_parameter');
  if (b.model === undefined) throw oaMissing('model');
  if (typeof b.model !== 'string') throw oaType('model', 'a string', b.model);
  if (b.input === undefined && b.previous_response_id === undefined) throw oaMissing('input');
  if (b.input !== undefined && typeof b.input !== 'string' && !Array.isArray(b.input)) throw oaType('input', 'a string or an array', b.input);
  const calls = new Set();
  for (const [i, item] of (Array.isArray(b.input) ? b.input : []).entries()) {
    const at = `input[${i}]`;
    if (!isObj(item)) throw oaType(at, 'an object', item);
    const type = item.type ?? (item.role !== undefined ? 'message' : undefined);
    if (!RESPONSES_ITEM_TYPES.includes(type)) {
      throw openaiBad(`Invalid value: '${type}'. Supported values are: ${RESPONSES_ITEM_TYPES.map((t) => `'${t}'`).join(', ')}.`, `${at}.type`, 'invalid_value');
    }
    const str = (k) => {
      if (typeof item[k] !== 'string') throw item[k] === undefined ? oaMissing(`${at}.${k}`) : oaType(`${at}.${k}`, 'a string', item[k]);
    };
    if (type === 'message') {
      if (!['user', 'assistant', 'system', 'developer'].includes(item.role)) {
        throw openaiBad(`Invalid value: '${item.role}'. Supported values are: 'user', 'assistant', 'system', and 'developer'.`, `${at}.role`, 'invalid_value');
      }
      if (typeof item.content !== 'string') {
        if (!Array.isArray(item.content)) throw oaType(`${at}.content`, 'a string or an array', item.content);
        item.content.forEach((p, j) => {
          if (!isObj(p) || !RESPONSES_PART_TYPES.includes(p.type)) {
            throw openaiBad(`Invalid value: '${p?.type}'. Supported values are: ${RESPONSES_PART_TYPES.map((t) => `'${t}'`).join(', ')}.`, `${at}.content[${j}].type`, 'invalid_value');
          }
        });
      }
    } else if (type === 'function_call' || type === 'custom_tool_call') {
      str('call_id');
      str('name');
      str(type === 'function_call' ? 'arguments' : 'input');
      calls.add(item.call_id);
    } else if (type === 'function_call_output' || type === 'custom_tool_call_output') {
      str('call_id');
      if (typeof item.output !== 'string' && !Array.isArray(item.output)) throw oaType(`${at}.output`, 'a string or an array', item.output);
      if (!calls.has(item.call_id)) throw openaiBad(`No tool call found for function call output with call_id ${item.call_id}.`, 'input');
    }
  }
  if (b.tools !== undefined) {
    if (!Array.isArray(b.tools)) throw oaType('tools', 'an array', b.tools);
    b.tools.forEach((t, i) => {
      if (!isObj(t)) throw oaType(`tools[${i}]`, 'an object', t);
      if (typeof t.type !== 'string') throw oaMissing(`tools[${i}].type`);
      if ((t.type === 'function' || t.type === 'custom') && typeof t.name !== 'string') throw oaMissing(`tools[${i}].name`);
    });
  }
  if (b.max_output_tokens !== undefined && !(Number.isInteger(b.max_output_tokens) && b.max_output_tokens >= 16)) {
    throw openaiBad(`Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got ${b.max_output_tokens} instead.`, 'max_output_tokens', 'integer_below_min_value');
  }
}

function responsesUsage({ promptTokens, completionTokens }) {
  return {
    input_tokens: promptTokens, input_tokens_details: { cached_tokens: 0 },
    output_tokens: completionTokens, output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: promptTokens + completionTokens,
  };
}

/** A whole Responses `response` object with these output items (each a finished item). */
export function responsesObject({ id = 'resp_mock', model = 'gpt-5', output, usage = DEFAULT_USAGE, status = 'completed', request = {} }) {
  return {
    id, object: 'response', created_at: CREATED, status, background: false, error: null,
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: request.instructions ?? null, max_output_tokens: request.max_output_tokens ?? null, model,
    output, parallel_tool_calls: true, previous_response_id: null, reasoning: { effort: null, summary: null },
    service_tier: 'default', store: request.store ?? true, temperature: 1, text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto', tools: request.tools ?? [], top_p: 1, truncation: 'disabled',
    usage: status === 'in_progress' ? null : responsesUsage(usage), user: null, metadata: request.metadata ?? {},
  };
}

export const responsesItems = {
  message: (text, id = 'msg_mock') => ({ id, type: 'message', status: 'completed', content: [{ type: 'output_text', annotations: [], logprobs: [], text }], role: 'assistant' }),
  functionCall: (name, args, callId = 'call_mock', id = 'fc_mock') => ({ id, type: 'function_call', status: 'completed', arguments: args, call_id: callId, name }),
  customToolCall: (name, input, callId = 'call_mock', id = 'ctc_mock') => ({ id, type: 'custom_tool_call', status: 'completed', call_id: callId, input, name }),
};

/** The typed SSE events OpenAI sends for a response with these output items, one string per event. */
export function responsesEvents({ id = 'resp_mock', model = 'gpt-5', output, usage = DEFAULT_USAGE, request = {} }) {
  let seq = 0;
  const events = [];
  const emit = (type, fields) => events.push(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...fields })}\n\n`);
  const start = responsesObject({ id, model, output: [], usage, status: 'in_progress', request });
  emit('response.created', { response: start });
  emit('response.in_progress', { response: start });
  output.forEach((item, output_index) => {
    if (item.type === 'message') {
      const text = item.content.map((p) => p.text ?? '').join('');
      const part = { type: 'output_text', annotations: [], logprobs: [], text: '' };
      emit('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', content: [] } });
      emit('response.content_part.added', { item_id: item.id, output_index, content_index: 0, part });
      for (const delta of words(text) ?? []) emit('response.output_text.delta', { item_id: item.id, output_index, content_index: 0, delta, logprobs: [] });
      emit('response.output_text.done', { item_id: item.id, output_index, content_index: 0, text, logprobs: [] });
      emit('response.content_part.done', { item_id: item.id, output_index, content_index: 0, part: { ...part, text } });
    } else if (item.type === 'function_call') {
      emit('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', arguments: '' } });
      const half = Math.ceil(item.arguments.length / 2);
      for (const delta of [item.arguments.slice(0, half), item.arguments.slice(half)].filter(Boolean)) {
        emit('response.function_call_arguments.delta', { item_id: item.id, output_index, delta, obfuscation: 'x' });
      }
      emit('response.function_call_arguments.done', { item_id: item.id, output_index, arguments: item.arguments });
    } else if (item.type === 'custom_tool_call') {
      emit('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', input: '' } });
      emit('response.custom_tool_call_input.delta', { item_id: item.id, output_index, delta: item.input });
      emit('response.custom_tool_call_input.done', { item_id: item.id, output_index, input: item.input });
    }
    emit('response.output_item.done', { output_index, item });
  });
  emit('response.completed', { response: responsesObject({ id, model, output, usage, request }) });
  return events;
}

const responses = {
  check: openai.check,
  invalidJson: openai.invalidJson,
  validate: validateResponses,
  defaultReply(b, _route, n) {
    const items = typeof b.input === 'string' ? [{ role: 'user', content: b.input }] : b.input ?? [];
    const last = items.findLast((item) => (item.type ?? 'message') === 'message' && item.role === 'user');
    const content = last?.content ?? '';
    const text = echo(typeof content === 'string' ? content : content.filter((p) => p.type === 'input_text').map((p) => p.text).join(''));
    const args = { id: `resp_mock${n}`, model: b.model, output: [responsesItems.message(text, `msg_mock${n}`)], request: b };
    return b.stream ? eventStream(responsesEvents(args).join('')) : json(responsesObject(args));
  },
};


// ------------------------------------------------------------------------------------------------- azure

// Azure OpenAI: OpenAI's bodies at Azure's URLs. The v1 API `POST /openai/v1/chat/completions` and
// `/openai/v1/embeddings` (the body's model is the deployment); the classic API
// `POST /openai/deployments/{deployment}/chat/completions?api-version=…` and `…/embeddings?api-version=…`
// (the deployment is one path segment: a `/` in its name arrives as %2F; the body's model is optional). The key
// is the `api-key` header, or an Entra ID token as `Authorization: Bearer`; a missing key is Azure's 401, a
// classic URL without api-version its 404. Answers carry Azure's content-filter results, and a stream starts
// with Azure's prompt_filter_results chunk (empty choices). startMockVendors({ apiKeys: { azure }, azureAdToken })
// accepts only that key / token.
const AZURE_API_VERSION = /^\d{4}-\d{2}-\d{2}(-preview)?$/;
const azureError = (status, code, message) => new Rejection(status, { error: { code, message } });
const AZURE_FILTERS = { hate: { filtered: false, severity: 'safe' }, self_harm: { filtered: false, severity: 'safe' }, sexual: { filtered: false, severity: 'safe' }, violence: { filtered: false, severity: 'safe' } };

const azure = {
  check(headers, query, route, expectedKey, expectedToken) {
    const bearer = /^Bearer (\S+)$/.exec(headers.authorization ?? '')?.[1];
    const key = headers['api-key'];
    if (!key && !bearer) {
      throw azureError(401, '401', 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.');
    }
    if (key && expectedKey !== undefined && key !== expectedKey) {
      throw azureError(401, '401', 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.');
    }
    if (!key && expectedToken !== undefined && bearer !== expectedToken) {
      throw azureError(401, 'invalid_token', 'The token is expired or invalid.');
    }
    if (route.classic) {
      const version = query.get('api-version');
      if (!version) throw azureError(404, '404', 'Resource not found');
      if (!AZURE_API_VERSION.test(version)) throw azureError(400, 'BadRequest', `API version not supported`);
    } else if (query.has('api-version') && query.get('api-version') !== 'preview' && query.get('api-version') !== 'latest') {
      throw azureError(400, 'BadRequest', 'API version not supported');
    }
  },
  invalidJson: () => openai.invalidJson(),
  validate(b, route) {
    // Classic URLs name the deployment in the path; the body's model may be left out.
    validateOpenAI(route.classic && b.model === undefined ? { ...b, model: route.deployment } : b);
  },
  defaultReply(b, route, n) {
    const model = 'gpt-4o-2024-11-20';
    const reply = openai.defaultReply({ ...b, model }, route, n);
    const promptFilter = [{ prompt_index: 0, content_filter_results: AZURE_FILTERS }];
    if (b.stream) {
      const first = `data: ${JSON.stringify({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: promptFilter })}\n\n`;
      return { ...reply, body: Buffer.concat([Buffer.from(first), reply.body]) };
    }
    const body = JSON.parse(reply.body);
    body.prompt_filter_results = promptFilter;
    for (const choice of body.choices) choice.content_filter_results = AZURE_FILTERS;
    return json(body);
  },
};

const azureEmbeddings = {
  validate(b, route) {
    openaiEmbeddings.validate(route.classic && b.model === undefined ? { ...b, model: route.deployment } : b, route);
  },
  defaultReply(b, route, n) {
    return openaiEmbeddings.defaultReply({ ...b, model: b.model ?? route.deployment }, route, n);
  },
};

EMBEDDING_APIS.azure = azureEmbeddings;
const VENDOR_APIS = { openai, anthropic, gemini, responses, azure };

// For fakes of other hosts serving these wire formats (vertex-fake.mjs): the same validation and replies.
export { VENDOR_APIS as vendorApis, Rejection, planReply, writeBody, writeChunks, sendJson };

// ------------------------------------------------------------------------------------------------- server

function matchRoute(method, pathname) {
  if (method !== 'POST') return null;
  if (pathname === '/openai/v1/chat/completions') return { vendor: 'azure' };
  if (pathname === '/openai/v1/embeddings') return { vendor: 'azure', api: 'embeddings' };
  const deployment = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/.exec(pathname);
  if (deployment) {
    return { vendor: 'azure', classic: true, deployment: decodeURIComponent(deployment[1]), ...(deployment[2] === 'embeddings' ? { api: 'embeddings' } : {}) };
  }
  if (pathname === '/v1/chat/completions') return { vendor: 'openai' };
  if (pathname === '/v1/embeddings') return { vendor: 'openai', api: 'embeddings' };
  const batch = /^\/v1beta\/models\/([^/:]+):batchEmbedContents$/.exec(pathname);
  if (batch) return { vendor: 'gemini', model: batch[1], api: 'embeddings' };
  if (pathname === '/v1/messages') return { vendor: 'anthropic' };
  if (pathname === '/v1/messages/count_tokens') return { vendor: 'anthropic', api: 'count_tokens' };
  if (pathname === '/v1/responses') return { vendor: 'responses' };
  const m = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(pathname);
  return m ? { vendor: 'gemini', model: m[1], stream: m[2] === 'streamGenerateContent' } : null;
}

function notFound(method, pathname) {
  if (pathname.startsWith('/v1beta/')) return googleError(404, 'NOT_FOUND', `mock-vendors: no route for ${method} ${pathname}`);
  return new Rejection(404, { error: { message: `Invalid URL (${method} ${pathname})`, type: 'invalid_request_error', param: null, code: null } });
}

const TERMINATORS = {
  openai: { chunk: 'data: [DONE]\n\n', marker: '[DONE]' },
  azure: { chunk: 'data: [DONE]\n\n', marker: '[DONE]' },
  anthropic: { chunk: 'event: message_stop\ndata: {"type":"message_stop"}\n\n', marker: 'message_stop' },
};

function withTerminator(vendor, chunks, endWithoutTerminator) {
  const term = TERMINATORS[vendor];
  if (!term || endWithoutTerminator) return chunks;
  const sent = chunks.join('');
  const ended = sent.includes(term.marker) || (vendor === 'anthropic' && sent.includes('event: error'));
  return ended ? chunks : [...chunks, term.chunk];
}

/** Turns an enqueue() argument into a plan, failing fast (at enqueue time) on a malformed reply. */
function planReply(vendor, reply) {
  if (!VENDORS.includes(vendor)) throw new TypeError(`mock-vendors: unknown vendor ${JSON.stringify(vendor)} (expected ${VENDORS.join(', ')})`);
  if (!isObj(reply)) throw new TypeError('mock-vendors: a reply must be an object');
  for (const k of Object.keys(reply)) if (!REPLY_KEYS.has(k)) throw new TypeError(`mock-vendors: unknown reply option ${JSON.stringify(k)}`);
  const split = reply.split ?? 'whole';
  if (!(split === 'whole' || split === 'bytes' || (Array.isArray(split?.at) && split.at.every(Number.isInteger)))) {
    throw new TypeError(`mock-vendors: split must be 'whole', 'bytes' or { at: [offsets] }, got ${JSON.stringify(split)}`);
  }
  if (reply.status !== undefined && !(Number.isInteger(reply.status) && reply.status >= 100 && reply.status <= 999)) {
    throw new TypeError(`mock-vendors: invalid status ${JSON.stringify(reply.status)}`);
  }
  if (reply.delayMs !== undefined && !(Number.isFinite(reply.delayMs) && reply.delayMs >= 0)) throw new TypeError('mock-vendors: delayMs must be a number >= 0');
  if (reply.destroyAfter !== undefined && !(Number.isInteger(reply.destroyAfter) && reply.destroyAfter >= 0)) {
    throw new TypeError('mock-vendors: destroyAfter must be an integer >= 0');
  }
  const headers = lowerKeys(reply.headers);
  if (reply.sse) {
    if (!Array.isArray(reply.sse) || !reply.sse.every((c) => typeof c === 'string' || Buffer.isBuffer(c))) {
      throw new TypeError('mock-vendors: sse must be an array of strings or Buffers');
    }
    return {
      delayMs: 0,
      status: reply.status ?? 200,
      headers: { 'content-type': 'text/event-stream; charset=utf-8', ...headers },
      chunks: withTerminator(vendor, reply.sse, reply.endWithoutTerminator),
      chunkDelayMs: reply.delayMs ?? 0,
      destroyAfter: reply.destroyAfter,
      hangAfter: Boolean(reply.hang),
    };
  }
  const plan = { delayMs: reply.delayMs ?? 0, split, hang: Boolean(reply.hang), headers };
  if (reply.fixture !== undefined) {
    const recorded = fixtureReply(reply.fixture);
    return { ...plan, status: reply.status ?? recorded.status, headers: { ...recorded.headers, ...headers }, body: reply.body === undefined ? recorded.body : toBuffer(reply.body) };
  }
  if (reply.status !== undefined || reply.body !== undefined) {
    return { ...plan, status: reply.status ?? 200, headers: { 'content-type': 'application/json', ...headers }, body: toBuffer(reply.body ?? '') };
  }
  return { ...plan, defaultReply: true };
}

const untilAborted = (signal) => new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', resolve, { once: true })));
const isEventStream = (headers) => /text\/event-stream/i.test(headers['content-type'] ?? '');

function sendJson(res, status, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

async function writeBody(res, plan, signal) {
  const { body, split } = plan;
  if (split === 'whole') {
    // Streams go out chunked, as a streaming server sends them; other bodies with a content-length.
    res.writeHead(plan.status, isEventStream(plan.headers) ? plan.headers : { 'content-length': body.length, ...plan.headers });
    res.end(body);
    return;
  }
  res.writeHead(plan.status, plan.headers);
  res.socket?.setNoDelay(true);
  res.flushHeaders();
  const ends = split === 'bytes'
    ? Array.from({ length: body.length }, (_, i) => i + 1)
    : [...new Set([...split.at.filter((k) => k > 0 && k < body.length), body.length])].sort((a, b) => a - b);
  let start = 0;
  for (const end of ends) {
    if (signal.aborted) return;
    res.write(body.subarray(start, end));
    start = end;
    await (split === 'bytes' ? tick() : sleep(SPLIT_PAUSE_MS, undefined, { signal }));
  }
  res.end();
}

async function writeChunks(res, plan, signal, reset) {
  res.writeHead(plan.status, plan.headers);
  res.flushHeaders();
  // Wait until the headers are on the wire, so that destroyAfter: 0 resets an answered request.
  await new Promise((resolve) => res.socket.write('', resolve));
  const count = Math.min(plan.destroyAfter ?? Infinity, plan.chunks.length);
  for (const chunk of plan.chunks.slice(0, count)) {
    await (plan.chunkDelayMs ? sleep(plan.chunkDelayMs, undefined, { signal }) : tick());
    if (signal.aborted) return;
    await new Promise((resolve) => res.write(chunk, resolve));
  }
  if (plan.destroyAfter !== undefined) reset();
  else if (plan.hangAfter) await untilAborted(signal);
  else res.end();
}

export async function startMockVendors(opts = {}) {
  const apiKeys = opts.apiKeys ?? {};
  const queues = Object.fromEntries(VENDORS.map((v) => [v, []]));
  const requests = [];
  const errors = [];
  const sockets = new Set();
  const waiters = new Set();
  let closing = false;
  let closePromise;
  let served = 0;
  let arrived = 0; // requests numbered in order of arrival, for mark() and waitForClose()
  const disconnected = []; // arrival numbers of the requests the client disconnected

  const disconnectsSince = (since) => disconnected.filter((n) => n >= since).length;

  function settleWaiters() {
    for (const w of waiters) {
      const count = disconnectsSince(w.since);
      if (count === 0) continue;
      waiters.delete(w);
      clearTimeout(w.timer);
      w.resolve(count);
    }
  }

  async function handle(req, res) {
    const arrival = arrived++;
    const aborter = new AbortController();
    let serverCut = false;
    res.on('close', () => {
      aborter.abort();
      if (!res.writableEnded && !serverCut && !closing) {
        disconnected.push(arrival);
        settleWaiters();
      }
    });
    const reset = () => {
      serverCut = true;
      res.socket?.resetAndDestroy();
    };
    try {
      const url = new URL(req.url, 'http://127.0.0.1');
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = raw;
      try {
        if (raw) body = JSON.parse(raw);
      } catch {
        // keep the raw string: the vendor validation answers it with a parse error
      }
      const route = matchRoute(req.method, url.pathname);
      requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body, vendor: route?.vendor ?? null, api: route?.api ?? 'chat', ...(route?.deployment === undefined ? {} : { deployment: route.deployment }) });
      if (!route) throw notFound(req.method, url.pathname);

      const api = VENDOR_APIS[route.vendor];
      api.check(req.headers, url.searchParams, route, apiKeys[route.vendor], opts.azureAdToken);
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '') || !isObj(body)) throw api.invalidJson();
      const operation = OPERATIONS[route.api]?.[route.vendor] ?? api;
      operation.validate(body, route, req.headers);

      const n = ++served;
      let plan = queues[route.vendor].shift() ?? { delayMs: 0, split: 'whole', headers: {}, defaultReply: true };
      if (plan.defaultReply) {
        const reply = operation.defaultReply(body, route, n);
        plan = { ...plan, ...reply, headers: { ...reply.headers, ...plan.headers } };
      }
      if (plan.delayMs) await sleep(plan.delayMs, undefined, { signal: aborter.signal });
      if (plan.hang) return await untilAborted(aborter.signal);
      if (plan.chunks) await writeChunks(res, plan, aborter.signal, reset);
      else await writeBody(res, plan, aborter.signal);
    } catch (err) {
      if (aborter.signal.aborted || req.socket.destroyed) return;
      if (err instanceof Rejection) return sendJson(res, err.status, err.body);
      errors.push(err);
      if (res.headersSent) reset();
      else sendJson(res, 500, { error: { message: `mock-vendors internal error: ${err.message}`, type: 'mock_error' } });
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => errors.push(err));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;

  return {
    url,
    openaiBaseUrl: `${url}/v1`,
    anthropicBaseUrl: url,
    geminiBaseUrl: url,
    azureBaseUrl: url,
    azureV1BaseUrl: `${url}/openai/v1`,
    requests,
    errors,
    enqueue(vendor, reply) {
      const plan = planReply(vendor, reply);
      queues[vendor].push(plan);
    },
    closedConnections: () => disconnected.length,
    mark: () => arrived,
    waitForClose({ since, timeoutMs = 5000 } = {}) {
      if (!Number.isInteger(since)) {
        throw new TypeError('waitForClose({ since: mock.mark() }): say from which request on, so an earlier disconnect cannot count');
      }
      return new Promise((resolve, reject) => {
        const waiter = {
          since,
          resolve,
          reject,
          timer: setTimeout(() => {
            waiters.delete(waiter);
            reject(new Error(`mock-vendors: no client disconnect of a request since #${since} within ${timeoutMs}ms`));
          }, timeoutMs),
        };
        waiters.add(waiter);
        settleWaiters();
      });
    },
    close() {
      closePromise ??= new Promise((resolve) => {
        closing = true;
        for (const w of waiters) {
          clearTimeout(w.timer);
          w.reject(new Error('mock-vendors: closed while waiting for a client disconnect'));
        }
        waiters.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closePromise;
    },
  };
}
