// Loopback fake of AWS Bedrock Runtime's Converse (`POST /model/{modelId}/converse`) and ConverseStream
// (`/converse-stream`, `application/vnd.amazon.eventstream`), for node:test suites.
//
// Auth, as Bedrock checks it: a SigV4 `Authorization` header is verified by recomputing the signature with
// `@smithy/signature-v4` over the request as received (method, raw path, query, the headers it names as signed,
// the body bytes; `x-amz-content-sha256` is recomputed from the body, never trusted), with the fake's own
// credentials; a mismatch, an unknown access key, a wrong region or service, a clock more than 5 minutes off, a
// session token other than the credentials' own (or missing when they have one) is 403 with Bedrock's error shape.
// `Authorization: Bearer <apiKey>` is accepted when the fake has that `apiKey`.
//
// Each request body is validated as Converse validates it (roles alternate from `user`, every content block has
// exactly one known member, images are png/jpeg/gif/webp bytes, tool specs have a name and `inputSchema.json`, a
// conversation with toolUse/toolResult blocks needs toolConfig, cachePoint is `{ type: 'default' }`):
// anything else is 400 ValidationException. Every request is recorded in `requests` ({ modelId, stream, body,
// headers, auth: 'sigv4' | 'bearer' }), valid or not.
//
// Replies, queued with enqueue(reply) and taken in order by valid requests (else the default: the text
// `echo: <last user text>`, usage 10/5, streamed as three text deltas):
//   { converse: object }                       the Converse JSON (a stream request gets it as events)
//   { events: [[type, payload] | { exception, message } | Buffer, ...], corrupt?: n, split?: 'bytes' }
//       stream messages encoded with `@smithy/eventstream-codec`; `{ exception }` is an exception message
//       (`:message-type: exception`); corrupt: n flips a bit of message n's CRC; split: 'bytes' writes one byte
//       at a time
//   { status, errorType, message }              an HTTP error, as Bedrock answers one (x-amzn-ErrorType header,
//                                               `{ message }` body)

import crypto from 'node:crypto';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

import { EventStreamCodec } from '@smithy/eventstream-codec';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { fromUtf8, toUtf8 } from '@smithy/util-utf8';

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const MAX_SKEW_MS = 5 * 60 * 1000;
const BLOCK_KINDS = new Set(['text', 'image', 'toolUse', 'toolResult', 'cachePoint', 'document', 'reasoningContent']);
const IMAGE_FORMATS = new Set(['png', 'jpeg', 'gif', 'webp']);
const INFERENCE_KEYS = new Set(['maxTokens', 'temperature', 'topP', 'stopSequences']);

export const DEFAULT_USAGE = Object.freeze({ inputTokens: 10, outputTokens: 5, totalTokens: 15 });

/** One event-stream message, encoded as Bedrock sends it. */
export function eventMessage(type, payload) {
  return Buffer.from(
    codec.encode({
      headers: {
        ':event-type': { type: 'string', value: type },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'event' },
      },
      body: fromUtf8(JSON.stringify(payload)),
    }),
  );
}

/** An exception message (`throttlingException`, …) inside a stream. */
export function exceptionMessage(exception, message) {
  return Buffer.from(
    codec.encode({
      headers: {
        ':exception-type': { type: 'string', value: exception },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'exception' },
      },
      body: fromUtf8(JSON.stringify({ message })),
    }),
  );
}

/** The stream events a whole Converse answer is sent as: text in pieces of `piece` characters, tool input in two. */
export function converseEvents(converse, piece = 4) {
  const events = [['messageStart', { role: 'assistant' }]];
  const blocks = converse.output?.message?.content ?? [];
  blocks.forEach((block, index) => {
    if (block.text !== undefined) {
      for (let at = 0; at < block.text.length || at === 0; at += piece) {
        events.push(['contentBlockDelta', { contentBlockIndex: index, delta: { text: block.text.slice(at, at + piece) } }]);
      }
    } else if (block.toolUse) {
      const { toolUseId, name, input } = block.toolUse;
      events.push(['contentBlockStart', { contentBlockIndex: index, start: { toolUse: { toolUseId, name } } }]);
      const json = JSON.stringify(input);
      const half = Math.ceil(json.length / 2);
      for (const part of [json.slice(0, half), json.slice(half)]) {
        events.push(['contentBlockDelta', { contentBlockIndex: index, delta: { toolUse: { input: part } } }]);
      }
    }
    events.push(['contentBlockStop', { contentBlockIndex: index }]);
  });
  events.push(['messageStop', { stopReason: converse.stopReason }]);
  events.push(['metadata', { usage: converse.usage, metrics: { latencyMs: 12 } }]);
  return events;
}

function defaultConverse(body) {
  const lastUser = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user');
  const text = (lastUser?.content ?? []).filter((b) => typeof b.text === 'string').map((b) => b.text).join('');
  return {
    output: { message: { role: 'assistant', content: [{ text: `echo: ${text}` }] } },
    stopReason: 'end_turn',
    usage: { ...DEFAULT_USAGE },
    metrics: { latencyMs: 12 },
  };
}

class Refusal extends Error {
  constructor(status, errorType, message) {
    super(message);
    this.status = status;
    this.errorType = errorType;
  }
}

const invalid = (message) => new Refusal(400, 'ValidationException', message);

function validateBlock(block, where) {
  if (!block || typeof block !== 'object' || Array.isArray(block)) throw invalid(`${where} must be an object`);
  const members = Object.keys(block);
  if (members.length !== 1 || !BLOCK_KINDS.has(members[0])) {
    throw invalid(`${where} must have exactly one member of ${[...BLOCK_KINDS].join(', ')}; has ${members.join(', ') || 'none'}`);
  }
  const [kind] = members;
  const value = block[kind];
  if (kind === 'text' && typeof value !== 'string') throw invalid(`${where}.text must be a string`);
  if (kind === 'image') {
    if (!IMAGE_FORMATS.has(value?.format)) throw invalid(`${where}.image.format must be png, jpeg, gif or webp`);
    const bytes = value?.source?.bytes;
    if (typeof bytes !== 'string' || Buffer.from(bytes, 'base64').toString('base64') !== bytes) {
      throw invalid(`${where}.image.source.bytes must be base64`);
    }
  }
  if (kind === 'toolUse') {
    if (typeof value?.toolUseId !== 'string' || typeof value?.name !== 'string') throw invalid(`${where}.toolUse needs toolUseId and name`);
    if (!value.input || typeof value.input !== 'object' || Array.isArray(value.input)) throw invalid(`${where}.toolUse.input must be an object`);
  }
  if (kind === 'toolResult') {
    if (typeof value?.toolUseId !== 'string' || !Array.isArray(value?.content)) throw invalid(`${where}.toolResult needs toolUseId and content`);
  }
  if (kind === 'cachePoint' && value?.type !== 'default') throw invalid(`${where}.cachePoint.type must be 'default'`);
  return kind;
}

/** Converse's own checks of a request body. */
export function validateConverse(body) {
  if (!body || typeof body !== 'object') throw invalid('the body must be a JSON object');
  const known = new Set(['messages', 'system', 'inferenceConfig', 'toolConfig', 'additionalModelRequestFields', 'guardrailConfig', 'performanceConfig', 'requestMetadata']);
  for (const key of Object.keys(body)) if (!known.has(key)) throw invalid(`unknown field '${key}'`);
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw invalid('messages must be a non-empty array');
  let usesTools = false;
  body.messages.forEach((message, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant';
    if (message.role !== expected) throw invalid(`messages[${i}].role must be '${expected}' (roles alternate, starting with user)`);
    if (!Array.isArray(message.content) || message.content.length === 0) throw invalid(`messages[${i}].content must be a non-empty array`);
    message.content.forEach((block, j) => {
      const kind = validateBlock(block, `messages[${i}].content[${j}]`);
      if (kind === 'toolUse' || kind === 'toolResult') usesTools = true;
    });
  });
  if (body.system !== undefined) {
    if (!Array.isArray(body.system)) throw invalid('system must be an array');
    body.system.forEach((block, j) => {
      const kind = validateBlock(block, `system[${j}]`);
      if (kind !== 'text' && kind !== 'cachePoint') throw invalid(`system[${j}] must be text or cachePoint`);
    });
  }
  if (body.inferenceConfig !== undefined) {
    for (const key of Object.keys(body.inferenceConfig)) if (!INFERENCE_KEYS.has(key)) throw invalid(`unknown inferenceConfig field '${key}'`);
    const { maxTokens, stopSequences } = body.inferenceConfig;
    if (maxTokens !== undefined && !(Number.isInteger(maxTokens) && maxTokens >= 1)) throw invalid('inferenceConfig.maxTokens must be a positive integer');
    if (stopSequences !== undefined && !(Array.isArray(stopSequences) && stopSequences.every((s) => typeof s === 'string'))) {
      throw invalid('inferenceConfig.stopSequences must be an array of strings');
    }
  }
  if (body.toolConfig !== undefined) {
    const { tools, toolChoice } = body.toolConfig;
    if (!Array.isArray(tools) || tools.length === 0) throw invalid('toolConfig.tools must be a non-empty array');
    tools.forEach((tool, j) => {
      const members = Object.keys(tool);
      if (members.length !== 1 || !['toolSpec', 'cachePoint'].includes(members[0])) throw invalid(`toolConfig.tools[${j}] must be a toolSpec or a cachePoint`);
      if (tool.cachePoint) {
        if (tool.cachePoint.type !== 'default') throw invalid(`toolConfig.tools[${j}].cachePoint.type must be 'default'`);
        return;
      }
      const spec = tool.toolSpec;
      if (typeof spec.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(spec.name)) throw invalid(`toolConfig.tools[${j}].toolSpec.name is invalid`);
      if (!spec.inputSchema?.json || typeof spec.inputSchema.json !== 'object') throw invalid(`toolConfig.tools[${j}].toolSpec.inputSchema.json is required`);
    });
    if (toolChoice !== undefined) {
      const members = Object.keys(toolChoice);
      if (members.length !== 1 || !['auto', 'any', 'tool'].includes(members[0])) throw invalid('toolConfig.toolChoice must be one of auto, any, tool');
    }
  } else if (usesTools) {
    throw invalid('The toolConfig field must be defined when using toolUse and toolResult content blocks.');
  }
}

/** `20150830T123600Z` → Date. */
function parseAmzDate(text) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text ?? '');
  return m ? new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

/** Recomputes the request's SigV4 signature with @smithy/signature-v4; throws a 403 Refusal unless it matches. */
async function verifySigV4(req, rawPath, query, body, { credentials, region }) {
  const denied = (message) => new Refusal(403, 'UnrecognizedClientException', message);
  const mismatch = () => new Refusal(403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.');
  const auth = req.headers.authorization ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) throw new Refusal(403, 'IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature.');
  const [, accessKeyId, shortDate, scopeRegion, scopeService, signedList] = m;
  if (accessKeyId !== credentials.accessKeyId) throw denied('The security token included in the request is invalid.');
  if (scopeRegion !== region || scopeService !== 'bedrock') throw mismatch();
  const signingDate = parseAmzDate(req.headers['x-amz-date']);
  if (!signingDate || signingDate.toISOString().slice(0, 10).replaceAll('-', '') !== shortDate) throw mismatch();
  if (Math.abs(Date.now() - signingDate.getTime()) > MAX_SKEW_MS) throw new Refusal(403, 'InvalidSignatureException', 'Signature expired.');
  const signed = signedList.split(';');
  for (const required of ['host', 'x-amz-date']) if (!signed.includes(required)) throw mismatch();
  const token = req.headers['x-amz-security-token'];
  if ((credentials.sessionToken ?? undefined) !== token) throw denied('The security token included in the request is invalid.');
  if (token !== undefined && !signed.includes('x-amz-security-token')) throw mismatch();
  const headers = {};
  for (const name of signed) {
    if (name === 'x-amz-content-sha256') continue; // recomputed from the body by the signer
    const value = req.headers[name];
    if (value === undefined) throw mismatch();
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const signer = new SignatureV4({ credentials, region, service: 'bedrock', sha256: Hash.bind(null, 'sha256') });
  const host = req.headers.host ?? '';
  const signedRequest = await signer.sign(
    { method: req.method, protocol: 'http:', hostname: host.split(':')[0], path: rawPath, query, headers, body },
    { signingDate },
  );
  const expected = signedRequest.headers.authorization;
  const a = Buffer.from(expected);
  const b = Buffer.from(auth);
  if (a.length !== b.length || !crypto.timingSafeEqual(a, b)) throw mismatch();
}

export async function startBedrockFake({ credentials = null, apiKey = null, region = 'us-east-1' } = {}) {
  const requests = [];
  const queue = [];
  const sockets = new Set();

  const sendError = (res, status, errorType, message) => {
    res.writeHead(status, {
      'content-type': 'application/json',
      'x-amzn-errortype': `${errorType}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
      'x-amzn-requestid': crypto.randomUUID(),
    });
    res.end(JSON.stringify({ message }));
  };

  const writeStream = async (res, reply, body) => {
    let messages;
    if (reply?.events) {
      messages = reply.events.map((event) => {
        if (Buffer.isBuffer(event)) return event;
        if (event.exception) return exceptionMessage(event.exception, event.message ?? 'error');
        return eventMessage(event[0], event[1]);
      });
    } else {
      messages = converseEvents(reply?.converse ?? defaultConverse(body)).map(([type, payload]) => eventMessage(type, payload));
    }
    if (reply?.corrupt !== undefined) {
      const target = Buffer.from(messages[reply.corrupt]);
      target[target.length - 1] ^= 0x01;
      messages[reply.corrupt] = target;
    }
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': crypto.randomUUID() });
    for (const message of messages) {
      if (reply?.split === 'bytes') {
        for (const byte of message) {
          res.write(Buffer.from([byte]));
          await sleep(0);
        }
      } else {
        res.write(message);
        await sleep(1);
      }
    }
    res.end();
  };

  const handle = async (req, res, raw) => {
    const url = new URL(req.url, 'http://fake');
    const rawPath = req.url.split('?')[0];
    const match = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(rawPath);
    const record = { modelId: null, stream: false, body: null, headers: req.headers, auth: null };
    requests.push(record);
    if (req.method !== 'POST' || !match) return sendError(res, 404, 'UnknownOperationException', `no operation at ${req.method} ${rawPath}`);
    record.modelId = decodeURIComponent(match[1]);
    record.stream = match[2] === 'converse-stream';
    const query = Object.fromEntries(url.searchParams);
    const authorization = req.headers.authorization ?? '';
    if (authorization.startsWith('Bearer ')) {
      record.auth = 'bearer';
      if (!apiKey || authorization.slice(7) !== apiKey) throw new Refusal(403, 'UnrecognizedClientException', 'Invalid API Key format: Must start with pre-defined prefix');
    } else {
      record.auth = 'sigv4';
      if (!credentials) throw new Refusal(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      await verifySigV4(req, rawPath, query, new Uint8Array(raw), { credentials, region });
    }
    let body;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw invalid('the body is not JSON');
    }
    record.body = body;
    validateConverse(body);
    const reply = queue.shift();
    if (reply?.status) return sendError(res, reply.status, reply.errorType ?? 'InternalServerException', reply.message ?? 'error');
    if (record.stream) return writeStream(res, reply, body);
    const converse = reply?.converse ?? defaultConverse(body);
    res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-requestid': crypto.randomUUID() });
    res.end(JSON.stringify(converse));
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch((error) => {
        if (error instanceof Refusal) return sendError(res, error.status, error.errorType, error.message);
        sendError(res, 500, 'InternalServerException', String(error?.stack ?? error));
      });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    enqueue: (reply) => queue.push(reply),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
