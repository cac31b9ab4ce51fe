// kind 'vertex': Gemini and Claude on Google Vertex AI with service-account auth. The fake (helpers/vertex-fake.mjs)
// is checked first with Google's and Anthropic's own clients (Python google-auth for the token exchange, @google/genai
// and @anthropic-ai/vertex-sdk for the model endpoints), then ferrogate runs against it.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

import { AnthropicVertex } from '@anthropic-ai/vertex-sdk'
import { GoogleGenAI } from '@google/genai'
import { OAuth2Client } from 'google-auth-library'
import { SignJWT } from 'jose'

import { fakeEmbeddingTokens } from './helpers/mock-vendors.mjs'
import { CLOUD_PLATFORM_SCOPE, startVertexFake } from './helpers/vertex-fake.mjs'

const run = promisify(execFile)
const PROJECT = 'ferrogate-test'
const LOCATION = 'us-east5'
const GEMINI = 'gemini-2.5-flash'
const CLAUDE = 'claude-sonnet-4@20250514'

let fake
let dir
let account

before(async () => {
  fake = await startVertexFake({ project: PROJECT, location: LOCATION })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-vertex-'))
  account = fake.writeKeyFile(dir)
})

after(async () => {
  await fake?.close()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

/** POSTs a JWT bearer grant to the fake's token endpoint. */
async function exchange(assertion) {
  const res = await fetch(fake.tokenUri, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion }),
  })
  return { status: res.status, body: await res.json() }
}

/** An assertion as a service account signs it, with `claims` changed. */
function assertion({ key = account.privateKey, claims = {}, audience = fake.tokenUri, lifetimeSec = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ scope: CLOUD_PLATFORM_SCOPE, ...claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: account.privateKeyId })
    .setIssuer(account.clientEmail)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + lifetimeSec)
    .sign(key)
}

/** A token from the fake, for the SDKs (which would otherwise ask Google's real endpoint). */
async function accessToken() {
  const { status, body } = await exchange(await assertion())
  assert.equal(status, 200, JSON.stringify(body))
  return body.access_token
}

function authClientWith(token) {
  const client = new OAuth2Client()
  client.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 })
  return client
}

const weatherTool = {
  name: 'get_weather',
  description: 'Weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}

describe('the Vertex fake, checked with the official clients', () => {
  test('its token endpoint gives Python google-auth a token for a key file whose token_uri is the fake', async (t) => {
    const script = [
      'import json, sys',
      'from google.oauth2 import service_account',
      'from google.auth.transport.requests import Request',
      `creds = service_account.Credentials.from_service_account_file(sys.argv[1], scopes=['${CLOUD_PLATFORM_SCOPE}'])`,
      'creds.refresh(Request())',
      'print(json.dumps({"token": creds.token, "valid": creds.valid}))',
    ].join('\n')
    let out
    try {
      out = await run('python3', ['-c', script, account.path])
    } catch (err) {
      if (/No module named '(google|requests)'/.test(String(err.stderr))) {
        t.skip('Python google-auth is not installed (pip install google-auth requests)')
        return
      }
      throw err
    }
    const { token, valid } = JSON.parse(out.stdout)
    assert.ok(valid && fake.isLiveToken(token), 'google-auth holds a token the fake issued')
    const request = fake.tokenRequests.at(-1)
    assert.equal(request.claims.iss, account.clientEmail)
    assert.equal(request.claims.scope, CLOUD_PLATFORM_SCOPE)
    assert.equal(request.header.kid, account.privateKeyId)

    // A key the fake does not trust: google-auth's refresh fails with the OAuth error.
    const stranger = fake.writeKeyFile(dir, { name: 'stranger' })
    const forged = JSON.parse(fs.readFileSync(stranger.path, 'utf8'))
    forged.client_email = account.clientEmail
    forged.private_key_id = account.privateKeyId
    const forgedPath = path.join(dir, 'forged.json')
    fs.writeFileSync(forgedPath, JSON.stringify(forged))
    await assert.rejects(run('python3', ['-c', script, forgedPath]), (err) => /invalid_grant/.test(String(err.stderr)) && /Invalid JWT Signature/.test(String(err.stderr)))
  })

  test('its token endpoint refuses a bad signature, audience, scope, lifetime or grant type', async () => {
    const { privateKey: otherKey } = (await import('node:crypto')).generateKeyPairSync('rsa', { modulusLength: 2048 })
    const cases = [
      [await assertion({ key: otherKey }), 'invalid_grant', /Invalid JWT Signature/],
      [await assertion({ audience: 'https://example.com/token' }), 'invalid_grant', /aud/],
      [await assertion({ claims: { scope: 'https://www.googleapis.com/auth/userinfo.email' } }), 'invalid_scope', /scope/],
      [await assertion({ lifetimeSec: 7200 }), 'invalid_grant', /short-lived/],
    ]
    for (const [jwt, error, description] of cases) {
      const { status, body } = await exchange(jwt)
      assert.equal(status, 400)
      assert.equal(body.error, error)
      assert.match(body.error_description, description)
    }
    const res = await fetch(fake.tokenUri, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', assertion: await assertion() }),
    })
    assert.equal(res.status, 400)
    assert.equal((await res.json()).error, 'unsupported_grant_type')
  })

  test('@google/genai in vertexai mode: chat, stream and a tool call, and 401 without a live token', async () => {
    const ai = new GoogleGenAI({
      vertexai: true,
      project: PROJECT,
      location: LOCATION,
      httpOptions: { baseUrl: fake.url, apiVersion: 'v1' },
      googleAuthOptions: { authClient: authClientWith(await accessToken()) },
    })
    const reply = await ai.models.generateContent({ model: GEMINI, contents: 'hello vertex' })
    assert.equal(reply.text, 'echo: hello vertex')
    const last = fake.requests.at(-1)
    assert.equal(last.path, `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/${GEMINI}:generateContent`)

    let streamed = ''
    for await (const chunk of await ai.models.generateContentStream({ model: GEMINI, contents: 'stream me' })) streamed += chunk.text ?? ''
    assert.equal(streamed, 'echo: stream me')
    assert.equal(fake.requests.at(-1).query.alt, 'sse')

    fake.enqueue('google', {
      body: {
        candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: 12, candidatesTokenCount: 5, totalTokenCount: 17 },
        modelVersion: GEMINI,
      },
    })
    const call = await ai.models.generateContent({
      model: GEMINI,
      contents: 'weather in Paris?',
      config: { tools: [{ functionDeclarations: [{ name: weatherTool.name, description: weatherTool.description, parametersJsonSchema: weatherTool.parameters }] }] },
    })
    assert.deepEqual(call.functionCalls, [{ name: 'get_weather', args: { city: 'Paris' } }])

    const stale = new GoogleGenAI({
      vertexai: true,
      project: PROJECT,
      location: LOCATION,
      httpOptions: { baseUrl: fake.url, apiVersion: 'v1' },
      googleAuthOptions: { authClient: authClientWith('ya29.never-issued') },
    })
    await assert.rejects(stale.models.generateContent({ model: GEMINI, contents: 'hi' }), /UNAUTHENTICATED|401/)
  })

  test('@anthropic-ai/vertex-sdk: chat, stream and a tool call through rawPredict / streamRawPredict', async () => {
    const client = new AnthropicVertex({ projectId: PROJECT, region: LOCATION, baseURL: fake.baseUrl, authClient: authClientWith(await accessToken()) })
    const message = await client.messages.create({ model: CLAUDE, max_tokens: 64, messages: [{ role: 'user', content: 'hello claude' }] })
    assert.equal(message.content[0].text, 'echo: hello claude')
    const sent = fake.requests.at(-1)
    assert.equal(sent.path, `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/anthropic/models/${CLAUDE}:rawPredict`)
    // vertex-sdk 1.x copies the core SDK's anthropic-version into the body; the fake takes it as Vertex does.
    assert.equal(typeof sent.body.anthropic_version, 'string')
    assert.equal(sent.body.model, undefined)

    let streamed = ''
    const stream = client.messages.stream({ model: CLAUDE, max_tokens: 64, messages: [{ role: 'user', content: 'stream claude' }] })
    stream.on('text', (text) => {
      streamed += text
    })
    await stream.finalMessage()
    assert.equal(streamed, 'echo: stream claude')
    assert.match(fake.requests.at(-1).path, /:streamRawPredict$/)

    fake.enqueue('anthropic', {
      body: {
        id: 'msg_vrtx_01',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-20250514',
        content: [{ type: 'tool_use', id: 'toolu_vrtx_01', name: 'get_weather', input: { city: 'Paris' } }],
        stop_reason: 'tool_use',
        stop_sequence: null,
        usage: { input_tokens: 20, output_tokens: 8 },
      },
    })
    const toolUse = await client.messages.create({
      model: CLAUDE,
      max_tokens: 64,
      tools: [{ name: weatherTool.name, description: weatherTool.description, input_schema: weatherTool.parameters }],
      messages: [{ role: 'user', content: 'weather in Paris?' }],
    })
    assert.equal(toolUse.stop_reason, 'tool_use')
    assert.deepEqual(toolUse.content[0].input, { city: 'Paris' })

    // What the fake refuses, as Vertex does: a missing version, a model in the body.
    const token = await accessToken()
    const url = `${fake.baseUrl}/projects/${PROJECT}/locations/${LOCATION}/publishers/anthropic/models/${CLAUDE}:rawPredict`
    const post = (body) => fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const messages = [{ role: 'user', content: 'hi' }]
    assert.equal((await post({ max_tokens: 8, messages })).status, 400)
    assert.equal((await post({ anthropic_version: 'vertex-2023-10-16', model: CLAUDE, max_tokens: 8, messages })).status, 400)
    assert.equal((await post({ anthropic_version: 'vertex-2023-10-16', max_tokens: 8, messages })).status, 200)
  })
})

// ------------------------------------------------------------------------------------------ ferrogate

const { FerrogateError, Gateway } = await import('../index.js')

function vertexGateway({ credentialsPath = account.path, ...options } = {}) {
  return new Gateway({
    maxRetries: 0,
    providers: { vx: { kind: 'vertex', project: PROJECT, location: LOCATION, baseUrl: fake.baseUrl, credentialsPath, ...options } },
  })
}

const ask = (model, content, extra = {}) => ({ model: `vx/${model}`, messages: [{ role: 'user', content }], ...extra })
const countSince = (list, mark) => list.length - mark

async function streamed(gateway, request) {
  let text = ''
  const args = []
  let response
  for await (const event of gateway.streamEvents(request)) {
    if (event.type === 'text') text += event.text
    else if (event.type === 'tool_call') args[event.index] = (args[event.index] ?? '') + event.argumentsDelta
    else if (event.type === 'done') response = event.response
  }
  return { text, args, response }
}

const weather = weatherTool
const geminiSse = (...responses) => responses.map((r) => `data: ${JSON.stringify(r)}\r\n\r\n`)

describe('kind vertex', () => {
  test('Gemini on Vertex: chat, stream and tools through publishers/google with a service-account token', async () => {
    const gateway = vertexGateway()
    const reply = await gateway.chat(ask(GEMINI, 'hello gemini', { messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello gemini' }] }))
    assert.equal(reply.content, 'echo: hello gemini')
    assert.equal(reply.provider, 'vx')
    const sent = fake.requests.at(-1)
    assert.equal(sent.path, `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/${GEMINI}:generateContent`)
    assert.ok(fake.isLiveToken(sent.token), 'a token the fake issued')
    assert.deepEqual(sent.body.systemInstruction, { parts: [{ text: 'be brief' }] })
    assert.equal(fake.tokenRequests.at(-1).claims.iss, account.clientEmail)

    const stream = await streamed(gateway, ask(GEMINI, 'stream gemini'))
    assert.equal(stream.text, 'echo: stream gemini')
    assert.equal(fake.requests.at(-1).query.alt, 'sse')
    assert.match(fake.requests.at(-1).path, /:streamGenerateContent$/)

    const call = { candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: 20, candidatesTokenCount: 6, totalTokenCount: 26 }, modelVersion: GEMINI }
    fake.enqueue('google', { body: call })
    const tool = await gateway.chat(ask(GEMINI, 'weather in Paris?', { tools: [weather] }))
    assert.equal(tool.finishReason, 'tool_calls')
    assert.equal(tool.toolCalls[0].name, 'get_weather')
    assert.deepEqual(JSON.parse(tool.toolCalls[0].arguments), { city: 'Paris' })
    assert.equal(fake.requests.at(-1).body.tools[0].functionDeclarations[0].name, 'get_weather')

    fake.enqueue('google', { sse: geminiSse({ candidates: [{ content: { role: 'model', parts: [{ text: 'Checking. ' }] }, index: 0 }], modelVersion: GEMINI }, call) })
    const toolStream = await streamed(gateway, ask(GEMINI, 'weather in Paris?', { tools: [weather] }))
    assert.equal(toolStream.text, 'Checking. ')
    assert.deepEqual(JSON.parse(toolStream.args[0]), { city: 'Paris' })
    assert.equal(toolStream.response.finishReason, 'tool_calls')

    // The tool result goes back as a functionResponse turn the fake accepts.
    const followUp = await gateway.chat({
      model: `vx/${GEMINI}`,
      tools: [weather],
      messages: [
        { role: 'user', content: 'weather in Paris?' },
        { role: 'assistant', content: '', toolCalls: [{ id: tool.toolCalls[0].id, name: 'get_weather', arguments: '{"city":"Paris"}' }] },
        { role: 'tool', toolCallId: tool.toolCalls[0].id, content: '{"celsius":21}' },
      ],
    })
    assert.equal(followUp.finishReason, 'stop')
  })

  test('Claude on Vertex: chat, stream and tools through rawPredict / streamRawPredict, version in the body, no model', async () => {
    const gateway = vertexGateway()
    const reply = await gateway.chat(ask(CLAUDE, 'hello claude'))
    assert.equal(reply.content, 'echo: hello claude')
    const sent = fake.requests.at(-1)
    assert.equal(sent.path, `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/anthropic/models/${CLAUDE}:rawPredict`)
    assert.equal(sent.body.anthropic_version, 'vertex-2023-10-16')
    assert.equal('model' in sent.body, false)
    assert.equal(sent.headers['x-api-key'], undefined)
    assert.match(sent.headers.authorization, /^Bearer ya29\.fake-/)

    const stream = await streamed(gateway, ask(CLAUDE, 'stream claude'))
    assert.equal(stream.text, 'echo: stream claude')
    assert.match(fake.requests.at(-1).path, /:streamRawPredict$/)
    assert.equal(fake.requests.at(-1).body.stream, true)
    assert.equal(fake.requests.at(-1).body.anthropic_version, 'vertex-2023-10-16')

    fake.enqueue('anthropic', {
      body: { id: 'msg_vrtx_01', type: 'message', role: 'assistant', model: 'claude-sonnet-4-20250514', content: [{ type: 'tool_use', id: 'toolu_vrtx_01', name: 'get_weather', input: { city: 'Paris' } }], stop_reason: 'tool_use', stop_sequence: null, usage: { input_tokens: 30, output_tokens: 9 } },
    })
    const tool = await gateway.chat(ask(CLAUDE, 'weather in Paris?', { tools: [weather] }))
    assert.equal(tool.finishReason, 'tool_calls')
    assert.deepEqual(tool.toolCalls.map((c) => [c.id, c.name, JSON.parse(c.arguments)]), [['toolu_vrtx_01', 'get_weather', { city: 'Paris' }]])
    assert.equal(fake.requests.at(-1).body.tools[0].input_schema.type, 'object')

    // Vertex's own recorded stream: text, then a tool_use whose arguments arrive split mid-key.
    fake.enqueue('anthropic', { fixture: 'vertex/claude-stream-text-then-tool-use.sse', split: 'bytes' })
    const toolStream = await streamed(gateway, ask(CLAUDE, 'weather in Florence?', { tools: [weather] }))
    assert.equal(toolStream.text, "I'll help you check the weather in Florence, Italy. Let me get that information for you right away.")
    assert.deepEqual(JSON.parse(toolStream.args[0]), { location: 'Florence,Italy' })
    assert.equal(toolStream.response.toolCalls[0].id, 'toolu_vrtx_01JhPy9eXqgjLWmUpoCiEkCs')
    assert.equal(toolStream.response.usage.promptTokens, 394)

    const followUp = await gateway.chat({
      model: `vx/${CLAUDE}`,
      tools: [weather],
      messages: [
        { role: 'user', content: 'weather in Paris?' },
        { role: 'assistant', content: '', toolCalls: [{ id: 'toolu_vrtx_01', name: 'get_weather', arguments: '{"city":"Paris"}' }] },
        { role: 'tool', toolCallId: 'toolu_vrtx_01', content: '21 C' },
      ],
    })
    assert.equal(followUp.finishReason, 'stop')
    assert.equal(fake.requests.at(-1).body.messages[2].content[0].type, 'tool_result')
  })

  test('prompt caching: cache_control lands where asked in the Claude body; Gemini on Vertex ignores it', async () => {
    const gateway = vertexGateway()
    fake.enqueue('anthropic', {
      body: {
        id: 'msg_vrtx_cache', type: 'message', role: 'assistant', model: 'claude-sonnet-4-20250514', content: [{ type: 'text', text: 'cached' }],
        stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 12, cache_creation_input_tokens: 0, cache_read_input_tokens: 2048, output_tokens: 3 },
      },
    })
    const request = {
      model: `vx/${CLAUDE}`,
      tools: [{ ...weatherTool, cache: { ttl: '1h' } }],
      messages: [
        { role: 'system', content: 'A long, stable system prompt.', cache: true },
        { role: 'user', content: [{ type: 'text', text: 'A long document.', cache: { ttl: '5m' } }, { type: 'text', text: 'The question.' }] },
      ],
    }
    const reply = await gateway.chat(request)
    assert.equal(reply.usage.cachedPromptTokens, 2048)
    assert.equal(reply.usage.promptTokens, 12 + 2048)
    const body = fake.requests.at(-1).body
    assert.deepEqual(body.system, [{ type: 'text', text: 'A long, stable system prompt.', cache_control: { type: 'ephemeral' } }])
    assert.deepEqual(body.tools[0].cache_control, { type: 'ephemeral', ttl: '1h' })
    assert.deepEqual(body.messages[0].content, [
      { type: 'text', text: 'A long document.', cache_control: { type: 'ephemeral', ttl: '5m' } },
      { type: 'text', text: 'The question.' },
    ])
    assert.equal(body.anthropic_version, 'vertex-2023-10-16')

    await gateway.chat({ ...request, model: `vx/${GEMINI}` })
    assert.doesNotMatch(JSON.stringify(fake.requests.at(-1).body), /cache_control|"cache"/)
  })

  test('20 concurrent calls share one token request', async () => {
    const gateway = vertexGateway()
    const tokensBefore = fake.tokenRequests.length
    const requestsBefore = fake.requests.length
    fake.enqueueToken({ delayMs: 200 }) // the token arrives late: every call is waiting for it
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => gateway.chat(ask(i % 2 ? CLAUDE : GEMINI, `call ${i}`))))
    assert.deepEqual(replies.map((r) => r.content), Array.from({ length: 20 }, (_, i) => `echo: call ${i}`))
    assert.equal(countSince(fake.tokenRequests, tokensBefore), 1, 'exactly one token request')
    const tokens = new Set(fake.requests.slice(requestsBefore).map((r) => r.token))
    assert.equal(tokens.size, 1, 'every call carried that one token')
    assert.equal(countSince(fake.requests, requestsBefore), 20)
  })

  test('an expired token is fetched again before the call, not refused first', async () => {
    const gateway = vertexGateway()
    fake.tokenLifetimeSec = 2
    try {
      const tokensBefore = fake.tokenRequests.length
      await gateway.chat(ask(GEMINI, 'first'))
      const first = fake.requests.at(-1).token
      await gateway.chat(ask(GEMINI, 'still fresh'))
      assert.equal(fake.requests.at(-1).token, first, 'the token is reused while fresh')
      await sleep(2200) // the fake now refuses the first token as expired
      assert.equal(fake.isLiveToken(first), false)
      const requestsBefore = fake.requests.length
      const reply = await gateway.chat(ask(GEMINI, 'after expiry'))
      assert.equal(reply.content, 'echo: after expiry')
      assert.equal(countSince(fake.tokenRequests, tokensBefore), 2)
      assert.equal(countSince(fake.requests, requestsBefore), 1, 'no request went out with the expired token')
      assert.notEqual(fake.requests.at(-1).token, first)
    } finally {
      fake.tokenLifetimeSec = 3600
    }
  })

  test('a 401 costs exactly one refresh and one retry, and is not counted as an attempt', async () => {
    const gateway = vertexGateway()
    await gateway.chat(ask(CLAUDE, 'warm up'))
    const revoked = fake.requests.at(-1).token
    fake.revokeTokens()
    const tokensBefore = fake.tokenRequests.length
    const requestsBefore = fake.requests.length
    const reply = await gateway.chat(ask(CLAUDE, 'after revocation'))
    assert.equal(reply.content, 'echo: after revocation')
    assert.equal(reply.attempts, 1)
    assert.equal(countSince(fake.tokenRequests, tokensBefore), 1, 'one refresh')
    const sent = fake.requests.slice(requestsBefore)
    assert.deepEqual(sent.map((r) => r.token === revoked), [true, false], 'the refused token, then the new one')

    // Streams too: the 401 comes before any byte of the answer.
    fake.revokeTokens()
    const stream = await streamed(gateway, ask(GEMINI, 'stream after revocation'))
    assert.equal(stream.text, 'echo: stream after revocation')

    // Refused again after the refresh: the call fails, after one refresh and one retry only.
    fake.refuseAllTokens = true
    try {
      const tokens = fake.tokenRequests.length
      const requests = fake.requests.length
      await assert.rejects(gateway.chat(ask(GEMINI, 'never')), (err) => err instanceof FerrogateError && err.code === 'AUTHENTICATION')
      assert.equal(countSince(fake.tokenRequests, tokens), 1)
      assert.equal(countSince(fake.requests, requests), 2)
    } finally {
      fake.refuseAllTokens = false
    }
  })

  test('a key file in PKCS#1 works too; the token endpoint refusing is AUTHENTICATION without the JWT', async () => {
    const pkcs1 = fake.writeKeyFile(dir, { name: 'pkcs1', keyFormat: 'pkcs1' })
    assert.match(pkcs1.file.private_key, /BEGIN RSA PRIVATE KEY/)
    const gateway = vertexGateway({ credentialsPath: pkcs1.path })
    assert.equal((await gateway.chat(ask(GEMINI, 'pkcs1'))).content, 'echo: pkcs1')

    const refused = vertexGateway()
    fake.enqueueToken({ status: 400, body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' } })
    const error = await refused.chat(ask(GEMINI, 'refused')).then(() => null, (err) => err)
    assert.equal(error?.code, 'AUTHENTICATION')
    assert.match(error.message, /invalid_grant: Invalid JWT Signature\./)
    assert.match(error.message, new RegExp(account.clientEmail.replace(/[.@]/g, '\\$&')))
    const jwt = fake.tokenRequests.at(-1)
    assert.ok(jwt.valid, 'the assertion itself was valid')
    assert.doesNotMatch(JSON.stringify({ message: error.message, cause: error.cause?.message ?? error.cause }), /eyJ/, 'no JWT in the error')
  })

  test('an access token the vendor echoes in an error never reaches the caller', async () => {
    const gateway = vertexGateway()
    await gateway.chat(ask(GEMINI, 'warm up'))
    const token = fake.requests.at(-1).token
    fake.enqueue('google', { status: 400, body: { error: { code: 400, message: `Bad request with credentials Bearer ${token}`, status: 'INVALID_ARGUMENT' } } })
    const error = await gateway.chat(ask(GEMINI, 'echo my token')).then(() => null, (err) => err)
    assert.equal(error?.code, 'INVALID_REQUEST')
    assert.ok(!JSON.stringify({ m: error.message, c: String(error.cause ?? '') }).includes(token), error.message)
    assert.match(error.message, /\[REDACTED\]/)
  })

  test('embeddings on Vertex: one :predict instance per text, token counts from the statistics', async () => {
    const gateway = vertexGateway()
    const answer = await gateway.embed({ model: 'vx/gemini-embedding-001', input: ['one text', 'another text'], dimensions: 8 })
    assert.equal(answer.embeddings.length, 2)
    assert.equal(answer.embeddings[0].length, 8)
    const predicts = fake.requests.filter((r) => r.call === 'embeddings').slice(-2)
    assert.deepEqual(predicts.map((r) => r.body.instances), [[{ content: 'one text' }], [{ content: 'another text' }]])
    assert.equal(predicts[0].body.parameters.outputDimensionality, 8)
    // Vertex's own counts (the fake bills ceil(bytes / 4) per text), not ferrogate's estimate.
    assert.equal(answer.usage.promptTokens, fakeEmbeddingTokens('one text') + fakeEmbeddingTokens('another text'))
  })

  test('bad configuration is CONFIG at construction, naming what is wrong and never the key', () => {
    const configError = (options, pattern) =>
      assert.throws(() => vertexGateway(options), (err) => err instanceof FerrogateError && err.code === 'CONFIG' && pattern.test(err.message) && !/MII/.test(err.message), pattern.source)
    const write = (name, content) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content))
      return file
    }
    configError({ credentialsPath: path.join(dir, 'absent.json') }, /credentials file '.*absent\.json' could not be read/)
    configError({ credentialsPath: write('broken.json', '{"type": "service_account",') }, /is not a JSON key file/)
    configError({ credentialsPath: write('user.json', { type: 'authorized_user', client_id: 'x', refresh_token: 'y' }) }, /holds 'authorized_user' credentials/)
    configError({ credentialsPath: write('no-email.json', { ...account.file, client_email: undefined }) }, /has no 'client_email'/)
    configError({ credentialsPath: write('bad-key.json', { ...account.file, private_key: account.file.private_key.slice(0, 200) }) }, /private_key is not a PEM private key|not a PEM private key/)
    configError({ credentialsPath: write('no-key.json', { ...account.file, private_key: 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC' }) }, /not a PEM private key/)
    configError({ location: 'us-east5.evil.com' }, /is not a Google Cloud location/)
    const without = (key, pattern) =>
      assert.throws(
        () => new Gateway({ providers: { vx: { kind: 'vertex', project: PROJECT, location: LOCATION, credentialsPath: account.path, [key]: undefined } } }),
        (err) => err.code === 'CONFIG' && pattern.test(err.message),
        pattern.source,
      )
    if (!process.env.GOOGLE_APPLICATION_CREDENTIALS) without('credentialsPath', /no credentialsPath and GOOGLE_APPLICATION_CREDENTIALS is not set/)
    if (!process.env.GOOGLE_CLOUD_LOCATION) without('location', /has no location/)
    assert.throws(() => vertexGateway({ project: 42 }), (err) => err.code === 'CONFIG' && /providers\.vx\.project must be a string/.test(err.message))
  })

  test("Vertex's recorded answers decode through ferrogate as the fixtures' manifest says", async () => {
    const manifest = JSON.parse(fs.readFileSync(new URL('./fixtures/providers/vertex/manifest.json', import.meta.url), 'utf8'))
    const gateway = vertexGateway()
    for (const entry of manifest.files) {
      const publisher = entry.model.startsWith('claude') ? 'anthropic' : 'google'
      fake.enqueue(publisher, { fixture: entry.file })
      const request = ask(entry.model, 'replay')
      const response = entry.kind === 'stream' ? (await streamed(gateway, request)).response : await gateway.chat(request)
      const want = entry.expected
      assert.equal(response.content, want.text ?? '', `${entry.file}: text`)
      assert.equal(response.finishReason, want.finish_reason, `${entry.file}: finish reason`)
      assert.equal(response.usage.promptTokens, want.prompt_tokens, `${entry.file}: prompt tokens`)
      assert.equal(response.usage.completionTokens, want.completion_tokens, `${entry.file}: completion tokens`)
      assert.deepEqual(response.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)]), want.tool_calls.map((c) => [c.name, c.arguments]), `${entry.file}: tool calls`)
    }
  })
})
