// Loopback fake of Google Vertex AI for node:test suites: a service account's OAuth token endpoint and the publisher
// model endpoints ferrogate's `vertex` kind calls.
//
// Token endpoint (`POST /token`, the key file's token_uri): the OAuth 2.0 JWT bearer grant as Google's
// oauth2.googleapis.com/token answers it. The assertion's RS256 signature is checked with the service account's public
// key (`jose`), and its claims: iss = the account's client_email, aud = the token_uri (or Google's own token URL, which
// Python google-auth always sends), a scope that includes
// cloud-platform, exp − iat ≤ 3600 and iat not in the future. A valid grant gets
// `{ access_token, expires_in, token_type: 'Bearer' }`; anything else Google's OAuth error body (`invalid_grant`,
// `invalid_scope`, `unsupported_grant_type`) with status 400.
//
// Model endpoints, `POST /v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{m}:{method}`:
//   google:    generateContent, streamGenerateContent (requires ?alt=sse), predict (embeddings)
//   anthropic: rawPredict, streamRawPredict (Messages bodies with anthropic_version 'vertex-2023-10-16', no model)
// Each needs `Authorization: Bearer <token>` with a token this fake issued, not expired and not revoked; otherwise 401
// UNAUTHENTICATED as Google answers it. Bodies are validated with mock-vendors.mjs's Gemini and Anthropic validators
// (Vertex serves the same wire formats) and answered with the next reply queued with enqueue('google' | 'anthropic',
// reply) (mock-vendors.mjs's reply options) or else the default echo reply, streamed as the vendor streams it.
//
// const fake = await startVertexFake({ project, location });
// const account = fake.writeKeyFile(dir)  // a fresh RSA service account whose token_uri is this fake
// fake.tokenRequests / fake.requests / fake.revokeTokens() / fake.refuseAllTokens = true / fake.tokenLifetimeSec = 2 /
// fake.enqueueToken({ status, body, delayMs })

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

import { fakeEmbedding, fakeEmbeddingTokens, planReply, Rejection, sendJson, vendorApis, writeBody, writeChunks } from './mock-vendors.mjs';

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
export const VERTEX_ANTHROPIC_VERSION = 'vertex-2023-10-16';
// Google's documented version, and the Messages API versions @anthropic-ai/vertex-sdk 1.x copies into the body from
// the core SDK's anthropic-version header.
const ANTHROPIC_VERSIONS_ON_VERTEX = [VERTEX_ANTHROPIC_VERSION, '2023-06-01', '2026-10-21'];
// The audience Google's token endpoint expects; Python google-auth always names it, whatever the key file's token_uri.
const GOOGLE_TOKEN_URI = 'https://oauth2.googleapis.com/token';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MAX_ASSERTION_LIFETIME_SEC = 3600;
const CLOCK_SKEW_SEC = 300;

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const oauthError = (error, description) => new Rejection(400, { error, error_description: description });
const googleError = (code, status, message) => new Rejection(code, { error: { code, message, status } });
const unauthenticated = () =>
  googleError(
    401,
    'UNAUTHENTICATED',
    'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
  );
const anthropicBad = (message) => new Rejection(400, { type: 'error', error: { type: 'invalid_request_error', message } });

const MODEL_ROUTE = /^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/(google|anthropic)\/models\/([^/:]+):([A-Za-z]+)$/;
const METHODS = {
  google: { generateContent: 'chat', streamGenerateContent: 'stream', predict: 'embeddings' },
  anthropic: { rawPredict: 'chat', streamRawPredict: 'stream' },
};

/** Answers a `:predict` embeddings body as Vertex does: one prediction per instance with its token count. */
function predict(body, model) {
  if (!Array.isArray(body.instances) || !body.instances.length) throw googleError(400, 'INVALID_ARGUMENT', 'instances must be a non-empty list');
  // gemini-embedding-001 takes a single instance per request; the text-embedding models up to 250.
  const limit = model.startsWith('gemini-embedding') ? 1 : 250;
  if (body.instances.length > limit) {
    throw googleError(400, 'INVALID_ARGUMENT', `Unable to submit request because the model supports up to ${limit} instances per request. Learn more: https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api`);
  }
  body.instances.forEach((instance, i) => {
    if (!isObj(instance) || typeof instance.content !== 'string') throw googleError(400, 'INVALID_ARGUMENT', `instances[${i}].content must be a string`);
  });
  const dimensions = body.parameters?.outputDimensionality;
  if (dimensions !== undefined && !(Number.isInteger(dimensions) && dimensions > 0)) {
    throw googleError(400, 'INVALID_ARGUMENT', 'parameters.outputDimensionality must be a positive integer');
  }
  const predictions = body.instances.map(({ content }) => ({
    embeddings: { statistics: { truncated: false, token_count: fakeEmbeddingTokens(content) }, values: Array.from(fakeEmbedding(content, dimensions)) },
  }));
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ predictions, metadata: { billableCharacterCount: 1 } })) };
}

// Prompt-caching breakpoints as Anthropic takes them, on Vertex too: { type: 'ephemeral', ttl?: '5m' | '1h' }, at most 4.
const MAX_CACHE_BREAKPOINTS = 4;
function validateCacheControl(body) {
  const found = [];
  const visit = (value, at) => {
    if (Array.isArray(value)) return value.forEach((v, k) => visit(v, `${at}.${k}`));
    if (!isObj(value)) return;
    for (const [key, v] of Object.entries(value)) {
      if (key === 'cache_control') found.push([v, `${at}.cache_control`]);
      else visit(v, at ? `${at}.${key}` : key);
    }
  };
  visit({ system: body.system, messages: body.messages, tools: body.tools }, '');
  for (const [control, at] of found) {
    if (!isObj(control) || control.type !== 'ephemeral') throw anthropicBad(`${at}.type: Input should be 'ephemeral'`);
    for (const key of Object.keys(control)) if (key !== 'type' && key !== 'ttl') throw anthropicBad(`${at}.${key}: Extra inputs are not permitted`);
    if (control.ttl !== undefined && control.ttl !== '5m' && control.ttl !== '1h') throw anthropicBad(`${at}.ttl: Input should be '5m' or '1h'`);
  }
  if (found.length > MAX_CACHE_BREAKPOINTS) throw anthropicBad(`A maximum of ${MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found ${found.length}.`);
}

/** Claude on Vertex: the Messages API with the version in the body and the model in the URL. */
function validateClaude(body, route) {
  if (body.anthropic_version === undefined) throw anthropicBad('anthropic_version: Field required');
  if (!ANTHROPIC_VERSIONS_ON_VERTEX.includes(body.anthropic_version)) throw anthropicBad(`anthropic_version: Input should be '${VERTEX_ANTHROPIC_VERSION}'`);
  if (body.model !== undefined) throw anthropicBad('vertex-fake: on Vertex the model goes in the URL; model: Extra inputs are not permitted');
  if (route.call === 'stream' && body.stream !== true) throw anthropicBad('vertex-fake: streamRawPredict needs stream: true in the body');
  validateCacheControl(body);
  const { anthropic_version: _version, ...messages } = body;
  const asMessages = { ...messages, model: route.model };
  vendorApis.anthropic.validate(asMessages, route, {});
  return asMessages;
}

export async function startVertexFake({ project = 'fake-project', location = 'us-east5' } = {}) {
  const accounts = new Map(); // client_email -> { publicKey, privateKeyId }
  const tokens = new Map(); // access token -> { expiresAt, revoked, email }
  const tokenRequests = [];
  const tokenReplies = [];
  const requests = [];
  const errors = [];
  const queues = { google: [], anthropic: [] };
  const sockets = new Set();
  let issued = 0;
  let served = 0;
  let url;

  const fake = {
    project,
    location,
    tokenLifetimeSec: 3600,
    /** While true every model request is answered 401, whatever its token (a key disabled mid-flight). */
    refuseAllTokens: false,
    tokenRequests,
    requests,
    errors,
    /** A fresh RSA service account trusted by this fake, written as a Google key file in `dir`. */
    writeKeyFile(dir, { name = `sa-${accounts.size + 1}`, keyFormat = 'pkcs8', overrides = {} } = {}) {
      const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const clientEmail = `${name}@${project}.iam.gserviceaccount.com`;
      const privateKeyId = crypto.randomBytes(20).toString('hex');
      accounts.set(clientEmail, { publicKey, privateKeyId });
      const file = {
        type: 'service_account',
        project_id: project,
        private_key_id: privateKeyId,
        private_key: privateKey.export({ type: keyFormat, format: 'pem' }),
        client_email: clientEmail,
        client_id: String(100000000000000000000n + BigInt(accounts.size)),
        auth_uri: 'https://accounts.google.com/o/oauth2/auth',
        token_uri: fake.tokenUri,
        auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
        client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(clientEmail)}`,
        universe_domain: 'googleapis.com',
        ...overrides,
      };
      const keyPath = path.join(dir, `${name}.json`);
      fs.writeFileSync(keyPath, JSON.stringify(file, null, 2));
      return { path: keyPath, clientEmail, privateKeyId, publicKey, privateKey, file };
    },
    /** Every token issued so far stops working (as a revoked key's tokens do). */
    revokeTokens() {
      for (const token of tokens.values()) token.revoked = true;
    },
    /** The next token request gets this reply instead of a token (after the assertion is checked). */
    enqueueToken(reply) {
      tokenReplies.push(reply);
    },
    enqueue(publisher, reply) {
      queues[publisher].push(planReply(publisher === 'google' ? 'gemini' : 'anthropic', reply));
    },
    isLiveToken(value) {
      if (fake.refuseAllTokens) return false;
      const token = tokens.get(value);
      return Boolean(token && !token.revoked && Date.now() < token.expiresAt);
    },
  };

  async function token(req, raw) {
    if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
      throw oauthError('invalid_request', 'Content-Type must be application/x-www-form-urlencoded');
    }
    const form = new URLSearchParams(raw);
    const grantType = form.get('grant_type');
    const assertion = form.get('assertion') ?? '';
    const record = { grantType, header: null, claims: null, at: Date.now() };
    tokenRequests.push(record);
    if (grantType !== JWT_BEARER) throw oauthError('unsupported_grant_type', `Invalid grant_type: ${grantType ?? ''}`);
    let claims;
    try {
      record.header = decodeProtectedHeader(assertion);
      claims = decodeJwt(assertion);
      record.claims = claims;
    } catch {
      throw oauthError('invalid_grant', 'Invalid JWT: could not be decoded.');
    }
    const account = accounts.get(claims.iss);
    if (!account) throw oauthError('invalid_grant', 'Invalid grant: account not found');
    if (record.header.kid !== undefined && record.header.kid !== account.privateKeyId) throw oauthError('invalid_grant', 'Invalid JWT Signature.');
    try {
      await jwtVerify(assertion, account.publicKey, { algorithms: ['RS256'], issuer: claims.iss, audience: [fake.tokenUri, GOOGLE_TOKEN_URI], clockTolerance: CLOCK_SKEW_SEC });
    } catch (err) {
      if (err.code === 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' || err.code === 'ERR_JOSE_ALG_NOT_ALLOWED' || err.code === 'ERR_JWS_INVALID') {
        throw oauthError('invalid_grant', 'Invalid JWT Signature.');
      }
      throw oauthError('invalid_grant', `Invalid JWT: ${err.message}`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (!Number.isInteger(claims.iat) || !Number.isInteger(claims.exp) || claims.exp - claims.iat > MAX_ASSERTION_LIFETIME_SEC || claims.iat > now + CLOCK_SKEW_SEC) {
      throw oauthError('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
    }
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
    if (!scopes.includes(CLOUD_PLATFORM_SCOPE)) throw oauthError('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    record.valid = true;
    const queued = tokenReplies.shift();
    if (queued) {
      if (queued.delayMs) await sleep(queued.delayMs);
      if (queued.status) return { status: queued.status, body: queued.body ?? {} };
    }
    const value = `ya29.fake-${++issued}-${crypto.randomBytes(12).toString('base64url')}`;
    tokens.set(value, { expiresAt: Date.now() + fake.tokenLifetimeSec * 1000, revoked: false, email: claims.iss });
    record.issued = value;
    return { status: 200, body: { access_token: value, expires_in: fake.tokenLifetimeSec, token_type: 'Bearer' } };
  }

  function modelRoute(pathname, query) {
    const m = MODEL_ROUTE.exec(pathname);
    if (!m) return null;
    const [, p, l, publisher, model, method] = m.map((s) => (s === undefined ? s : decodeURIComponent(s)));
    const call = METHODS[publisher][method];
    if (!call) throw googleError(404, 'NOT_FOUND', `vertex-fake: publishers/${publisher} has no method ${method}`);
    if (p !== project) throw googleError(403, 'PERMISSION_DENIED', `Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/${p}/locations/${l}/publishers/${publisher}/models/${model}' (or it may not exist).`);
    if (l !== location) throw googleError(404, 'NOT_FOUND', `Publisher Model \`projects/${p}/locations/${l}/publishers/${publisher}/models/${model}\` not found.`);
    if (publisher === 'google' && call === 'stream' && query.get('alt') !== 'sse') {
      throw googleError(400, 'INVALID_ARGUMENT', 'vertex-fake: streamGenerateContent without ?alt=sse answers one JSON array, not SSE; add alt=sse');
    }
    return { publisher, model, call, stream: call === 'stream' };
  }

  async function handle(req, res) {
    const aborter = new AbortController();
    res.on('close', () => aborter.abort());
    const reset = () => res.socket?.resetAndDestroy();
    try {
      const target = new URL(req.url, 'http://127.0.0.1');
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'POST' && target.pathname === '/token') {
        const answer = await token(req, raw);
        return sendJson(res, answer.status, answer.body);
      }
      let body = raw;
      try {
        body = JSON.parse(raw);
      } catch {
        // answered below as invalid JSON
      }
      const authorization = req.headers.authorization ?? '';
      const bearer = /^Bearer (\S+)$/.exec(authorization)?.[1];
      const record = { method: req.method, path: target.pathname, query: Object.fromEntries(target.searchParams), headers: req.headers, body, token: bearer ?? null };
      requests.push(record);
      const route = req.method === 'POST' ? modelRoute(target.pathname, target.searchParams) : null;
      if (!route) throw googleError(404, 'NOT_FOUND', `vertex-fake: no route for ${req.method} ${target.pathname}`);
      Object.assign(record, { publisher: route.publisher, model: route.model, call: route.call });
      if (!bearer || !fake.isLiveToken(bearer)) throw unauthenticated();
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '') || !isObj(body)) {
        throw googleError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received. Expected a JSON object.');
      }
      const n = ++served;
      let plan;
      if (route.call === 'embeddings') {
        plan = predict(body, route.model);
      } else if (route.publisher === 'google') {
        vendorApis.gemini.validate(body, route, req.headers);
        plan = queues.google.shift() ?? { ...vendorApis.gemini.defaultReply(body, route, n), split: 'whole' };
      } else {
        const asMessages = validateClaude(body, route);
        plan = queues.anthropic.shift() ?? { ...vendorApis.anthropic.defaultReply(asMessages, route, n), split: 'whole' };
      }
      if (plan.defaultReply) {
        const reply = route.publisher === 'google' ? vendorApis.gemini.defaultReply(body, route, n) : vendorApis.anthropic.defaultReply({ ...body, model: route.model }, route, n);
        plan = { ...plan, ...reply, headers: { ...reply.headers, ...plan.headers } };
      }
      plan.split ??= 'whole';
      if (plan.delayMs) await sleep(plan.delayMs, undefined, { signal: aborter.signal });
      if (plan.chunks) await writeChunks(res, plan, aborter.signal, reset);
      else await writeBody(res, plan, aborter.signal);
    } catch (err) {
      if (aborter.signal.aborted || req.socket.destroyed) return;
      if (err instanceof Rejection) return sendJson(res, err.status, err.body);
      errors.push(err);
      if (res.headersSent) reset();
      else sendJson(res, 500, { error: { code: 500, message: `vertex-fake internal error: ${err.message}`, status: 'INTERNAL' } });
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
  url = `http://127.0.0.1:${server.address().port}`;
  fake.url = url;
  fake.baseUrl = `${url}/v1`;
  fake.tokenUri = `${url}/token`;
  fake.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  return fake;
}
