// Defects of the foundation issue (section 2), one describe per defect; each test failed
// before its fix. Vendors are the loopback mock (port 0) or small node:http(s) servers.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { FerrogateError, Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const KEY = 'sk-test-HARDENING-0123456789abcdef'
let vendors

before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)
const sent = () => vendors.requests.length
const ask = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hello' }], ...extra })

function assertError(error, code) {
  assert.ok(error instanceof FerrogateError, `a FerrogateError, got ${error?.stack ?? error}`)
  assert.equal(error.code, code, `${error.code}: ${error.message}`)
}

/** Every kind against the mock vendors; retries fast, so a wrongly retried error shows as extra requests. */
function gateway(overrides = {}) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 2,
    retryBaseDelayMs: 1,
    providers: {
      openai: { kind: 'openai', apiKey: KEY, baseUrl: vendors.openaiBaseUrl },
      anthropic: { kind: 'anthropic', apiKey: KEY, baseUrl: vendors.anthropicBaseUrl },
      gemini: { kind: 'gemini', apiKey: KEY, baseUrl: vendors.geminiBaseUrl },
    },
    ...overrides,
  })
}

/** A plain HTTP server on port 0 that records requests and answers with `reply(req, res)`. */
async function startServer(reply, { tls } = {}) {
  const requests = []
  const handler = (req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body })
      reply(req, res)
    })
  }
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler)
  const handshakeFailures = []
  server.on('tlsClientError', (error) => handshakeFailures.push(error))
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const scheme = tls ? 'https' : 'http'
  return {
    url: `${scheme}://127.0.0.1:${server.address().port}`,
    requests,
    handshakeFailures,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.()
        server.close(() => resolve())
      }),
  }
}

const openaiCompletion = (content) =>
  JSON.stringify({
    id: 'chatcmpl-x',
    object: 'chat.completion',
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  })

describe('1. redirects are not followed', () => {
  for (const kind of ['openai', 'anthropic', 'gemini']) {
    test(`${kind}: a 307 is PROVIDER_ERROR naming the Location, and the key never reaches the other host`, async () => {
      const other = await startServer((_req, res) => res.end(openaiCompletion('from the other host')))
      const target = `${other.url}/steal`
      const first = await startServer((_req, res) => {
        res.writeHead(307, { location: target })
        res.end()
      })
      try {
        const gw = new Gateway({
          maxRetries: 2,
          retryBaseDelayMs: 1,
          providers: { p: { kind, apiKey: KEY, baseUrl: kind === 'openai' ? `${first.url}/v1` : first.url } },
        })
        const error = await rejection(gw.chat(ask('p/model')))
        assertError(error, 'PROVIDER_ERROR')
        assert.ok(error.message.includes(target), error.message)
        assert.equal(other.requests.length, 0, 'nothing reached the host the redirect named')
        assert.equal(first.requests.length, 1, 'a redirect is not retried')
      } finally {
        await Promise.all([first.close(), other.close()])
      }
    })
  }
})

describe('2. errors inside a stream are classified like the same error over HTTP', () => {
  const openaiError = (error) => ({ sse: [`data: ${JSON.stringify({ error })}\n\n`], endWithoutTerminator: true })

  for (const [label, error] of [
    ['vLLM (numeric code)', { object: 'error', message: 'max_tokens is too large', type: 'BadRequestError', param: null, code: 400 }],
    ['LiteLLM (string code)', { message: 'litellm.BadRequestError: bad', type: null, param: null, code: '400' }],
    ['OpenAI (type only)', { message: 'bad request', type: 'invalid_request_error', param: null, code: null }],
  ]) {
    test(`an OpenAI-compatible in-stream 400, ${label}, is INVALID_REQUEST and not retried`, async () => {
      vendors.enqueue('openai', openaiError(error))
      const before = sent()
      const failure = await rejection(gateway().stream(ask('openai/m'), () => {}))
      assertError(failure, 'INVALID_REQUEST')
      assert.equal(failure.status, 400)
      assert.match(failure.message, new RegExp(error.message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      assert.equal(sent() - before, 1)
    })
  }

  test('an OpenAI-compatible in-stream 429 is RATE_LIMITED and retried before any text', async () => {
    vendors.enqueue('openai', openaiError({ message: 'slow down', type: 'rate_limit_error', code: 429 }))
    const before = sent()
    const response = await gateway().stream(ask('openai/m'), () => {})
    assert.equal(response.attempts, 2)
    assert.equal(sent() - before, 2)
  })

  test('an Anthropic in-stream invalid_request_error is INVALID_REQUEST and not retried', async () => {
    vendors.enqueue('anthropic', {
      sse: ['event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}\n\n'],
    })
    const before = sent()
    const failure = await rejection(gateway().stream(ask('anthropic/claude'), () => {}))
    assertError(failure, 'INVALID_REQUEST')
    assert.match(failure.message, /prompt is too long/)
    assert.equal(sent() - before, 1)
  })

  test('an Anthropic in-stream overloaded_error is UPSTREAM_UNAVAILABLE once text was delivered', async () => {
    vendors.enqueue('anthropic', {
      sse: [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}\n\n',
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
      ],
    })
    const before = sent()
    const failure = await rejection(gateway().stream(ask('anthropic/claude'), () => {}))
    assertError(failure, 'UPSTREAM_UNAVAILABLE')
    assert.equal(sent() - before, 1, 'never retried once text reached the caller')
  })

  test('a Gemini in-stream INVALID_ARGUMENT is INVALID_REQUEST and not retried', async () => {
    vendors.enqueue('gemini', {
      sse: ['data: {"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}\n\n'],
    })
    const before = sent()
    const failure = await rejection(gateway().stream(ask('gemini/gemini-2.5-flash'), () => {}))
    assertError(failure, 'INVALID_REQUEST')
    assert.equal(sent() - before, 1)
  })
})

describe('3. counts and durations are validated, never wrapped or replaced', () => {
  const mock = (extra = {}) => ({ kind: 'mock', ...extra })

  test('bad numbers in the options are CONFIG naming the field', () => {
    for (const [options, field] of [
      [{ maxRetries: -1 }, 'maxRetries'],
      [{ maxRetries: 1.5 }, 'maxRetries'],
      [{ maxRetries: Number.NaN }, 'maxRetries'],
      [{ timeoutMs: 0 }, 'timeoutMs'],
      [{ timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs'],
      [{ retryBaseDelayMs: -5 }, 'retryBaseDelayMs'],
      [{ providers: { m: mock({ timeoutMs: 0 }) } }, 'timeoutMs'],
      [{ providers: { m: mock({ timeoutMs: -1 }) } }, 'timeoutMs'],
      [{ providers: { m: mock({ maxRetries: -1 }) } }, 'maxRetries'],
      [{ providers: { m: mock({ mockChunkDelayMs: -1 }) } }, 'mockChunkDelayMs'],
    ]) {
      assert.throws(
        () => new Gateway({ providers: { m: mock() }, ...options }),
        (e) => e instanceof FerrogateError && e.code === 'CONFIG' && e.message.includes(field),
        JSON.stringify(options),
      )
    }
  })

  test('bad numbers in a request are INVALID_REQUEST naming the field, and nothing is sent', async () => {
    const gw = gateway()
    const before = sent()
    for (const [extra, field] of [
      [{ maxTokens: -1 }, 'maxTokens'],
      [{ maxTokens: 2.5 }, 'maxTokens'],
      [{ maxTokens: 2 ** 40 }, 'maxTokens'],
      [{ maxRetries: -1 }, 'maxRetries'],
      [{ maxRetries: Number.POSITIVE_INFINITY }, 'maxRetries'],
      [{ timeoutMs: 0 }, 'timeoutMs'],
      [{ timeoutMs: -100 }, 'timeoutMs'],
      [{ timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs'],
      [{ timeoutMs: Number.NaN }, 'timeoutMs'],
      [{ temperature: Number.NaN }, 'temperature'],
    ]) {
      const error = await rejection(gw.chat(ask('openai/m', extra)))
      assertError(error, 'INVALID_REQUEST')
      assert.ok(error.message.includes(field), `${JSON.stringify(extra)}: ${error.message}`)
    }
    assert.equal(sent(), before)
  })

  test('a duration too large to represent is no practical deadline', async () => {
    const response = await gateway({ timeoutMs: 1e300 }).chat(ask('openai/m', { timeoutMs: 1e300 }))
    assert.equal(response.finishReason, 'stop')
  })
})

describe('4. bad header values', () => {
  test('an organization or a header value with a newline is CONFIG at construction', () => {
    for (const provider of [
      { kind: 'openai', apiKey: KEY, organization: 'a\nb' },
      { kind: 'openai', apiKey: KEY, headers: { 'x-team': 'a\r\nb' } },
      { kind: 'anthropic', apiKey: KEY, headers: { 'bad header': 'v' } },
    ]) {
      assert.throws(
        () => new Gateway({ providers: { p: provider } }),
        (e) => e instanceof FerrogateError && e.code === 'CONFIG',
        JSON.stringify(provider),
      )
    }
  })
})

describe('5. close()', () => {
  test('resolves only after calls in flight have settled, with ABORTED saying the gateway closed', async () => {
    // Either call may take either reply: both send a first piece of text, then hang.
    const hanging = { sse: ['data: {"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'], hang: true, endWithoutTerminator: true }
    vendors.enqueue('openai', hanging)
    vendors.enqueue('openai', hanging)
    const gw = gateway()
    const before = sent()
    const outcomes = []
    const track = (promise) => promise.then((v) => outcomes.push(['ok', v]), (e) => outcomes.push(['error', e]))
    track(gw.chat(ask('openai/m')))
    let first
    const streamed = new Promise((resolve) => (first = resolve))
    track(gw.stream(ask('openai/m'), first))
    await streamed
    while (sent() - before < 2) await new Promise((r) => setTimeout(r, 5))
    const closing = gw.close()
    const refused = await rejection(gw.chat(ask('openai/m')))
    assertError(refused, 'ABORTED')
    assert.match(refused.message, /gateway is closed/, 'a call after close() is refused at once')
    await closing
    assert.equal(outcomes.length, 2, 'both calls settled before close() resolved')
    for (const [kind, error] of outcomes) {
      assert.equal(kind, 'error')
      assertError(error, 'ABORTED')
      assert.match(error.message, /gateway (was )?closed/)
      assert.doesNotMatch(error.message, /signal/)
    }
    await gw.close() // closing twice is harmless
    assert.equal(sent() - before, 2, 'nothing was sent after close()')
  })
})

describe('6. an already-aborted signal', () => {
  test('sends nothing upstream, and the signal reason is the cause', async () => {
    const gw = gateway()
    const before = sent()
    const reason = new Error('caller gave up')
    const errors = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        rejection(i % 2 ? gw.chat(ask('openai/m', { signal: AbortSignal.abort(reason) })) : gw.stream(ask('openai/m', { signal: AbortSignal.abort(reason) }), () => {})),
      ),
    )
    for (const error of errors) {
      assertError(error, 'ABORTED')
      assert.equal(error.cause, reason)
    }
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(sent(), before)
  })
})

describe('7. redaction', () => {
  // Its own server: the mock vendors would refuse a request without their expected key
  // before the echo could be served.
  let echoServer
  let echoText = ''
  before(async () => {
    echoServer = await startServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: { message: echoText, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }))
    })
  })
  after(() => echoServer.close())

  const rejected = async (provider, echoed) => {
    echoText = echoed
    const gw = new Gateway({ maxRetries: 0, providers: { p: { kind: 'openai', baseUrl: `${echoServer.url}/v1`, ...provider } } })
    const error = await rejection(gw.chat(ask('p/m')))
    assertError(error, 'AUTHENTICATION')
    return error
  }

  test('a short API key is redacted where it appears as a word', async () => {
    const short = 'k7x'
    const error = await rejected({ apiKey: short }, `Incorrect API key provided: ${short}. Check your key`)
    assert.ok(!error.message.includes(short), error.message)
    assert.match(error.message, /Check your key/, 'ordinary words survive')
  })

  for (const [name, value, secret] of [
    ['X-Client-Secret', 'client-shh-0000', 'client-shh-0000'],
    ['Authorization', 'bearer lower-case-token-1234', 'lower-case-token-1234'],
    ['Proxy-Authorization', 'BASIC dXNlcjpwYXNzd29yZA==', 'dXNlcjpwYXNzd29yZA=='],
    ['Cookie', 'session=cookie-value-5678; theme=dark', 'cookie-value-5678'],
    ['X-Access-TOKEN', 'tok9', 'tok9'],
  ]) {
    test(`a credential header ${name} is redacted from echoed errors`, async () => {
      const error = await rejected({ headers: { [name]: value } }, `denied for ${secret} sorry`)
      assert.ok(!error.message.includes(secret), error.message)
      assert.ok(!String(error.cause?.message).includes(secret), String(error.cause?.message))
      assert.equal(echoServer.requests.at(-1).headers[name.toLowerCase()], value, 'the header itself is sent as given')
    })
  }
})

describe('9. Gemini tool calls and model names', () => {
  const signature = 'CiIBVKhc7vB+vaaq6rA/opaque=='

  test('thoughtSignature of a functionCall is kept on the tool call and sent back on the next turn', async () => {
    vendors.enqueue('gemini', {
      status: 200,
      body: {
        candidates: [
          {
            content: { role: 'model', parts: [{ functionCall: { name: 'now', args: {} }, thoughtSignature: signature }] },
            finishReason: 'STOP',
            index: 0,
          },
        ],
        usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 2, totalTokenCount: 7 },
      },
    })
    const gw = gateway()
    const first = await gw.chat(ask('gemini/gemini-3-pro'))
    assert.equal(first.toolCalls.length, 1)
    assert.equal(first.toolCalls[0].thoughtSignature, signature)
    await gw.chat({
      model: 'gemini/gemini-3-pro',
      messages: [
        { role: 'user', content: 'what time is it?' },
        { role: 'assistant', content: '', toolCalls: first.toolCalls },
        { role: 'tool', toolCallId: first.toolCalls[0].id, content: '{"time":"noon"}' },
      ],
    })
    const parts = vendors.requests.at(-1).body.contents[1].parts
    assert.deepEqual(parts, [{ functionCall: { name: 'now', args: {} }, thoughtSignature: signature }])
  })

  test('a streamed functionCall keeps its thoughtSignature too', async () => {
    const chunk = {
      candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: 'now', args: {} }, thoughtSignature: signature }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 2, totalTokenCount: 7 },
    }
    vendors.enqueue('gemini', { sse: [`data: ${JSON.stringify(chunk)}\r\n\r\n`] })
    const response = await gateway().stream(ask('gemini/gemini-3-pro'), () => {})
    assert.equal(response.toolCalls[0].thoughtSignature, signature)
  })

  test('model names are escaped in the URL path: no query, fragment or traversal', async () => {
    const gw = gateway()
    for (const [model, path] of [
      ['a?b#c', '/v1beta/models/a%3Fb%23c:generateContent'],
      ['../../v1/chat/completions', '/v1beta/models/..%2F..%2Fv1%2Fchat%2Fcompletions:generateContent'],
    ]) {
      await gw.chat(ask(`gemini/${model}`)).catch(() => {})
      const last = vendors.requests.at(-1)
      assert.equal(last.vendor, 'gemini', `${model} went to ${last.path}`)
      assert.deepEqual(last.query, {})
      assert.equal(last.path, path)
    }
  })
})

describe('10. private certificate authorities', () => {
  const tlsDir = fileURLToPath(new URL('./fixtures/tls/', import.meta.url))
  const caPath = `${tlsDir}ca.pem`
  let server

  before(async () => {
    server = await startServer((_req, res) => res.end(openaiCompletion('over TLS')), {
      tls: { key: fs.readFileSync(`${tlsDir}server.key`), cert: fs.readFileSync(`${tlsDir}server.pem`) },
    })
  })
  after(() => server.close())

  const provider = (extra = {}) => ({ kind: 'openai', apiKey: KEY, baseUrl: `${server.url}/v1`, ...extra })

  test('an untrusted certificate is a TLS error, not a retried UPSTREAM_UNAVAILABLE', async () => {
    const before = server.handshakeFailures.length
    const gw = new Gateway({ maxRetries: 3, retryBaseDelayMs: 1, providers: { p: provider() } })
    const error = await rejection(gw.chat(ask('p/m')))
    assert.ok(error instanceof FerrogateError)
    assert.notEqual(error.code, 'UPSTREAM_UNAVAILABLE')
    assert.match(error.message, /TLS/)
    assert.equal(server.handshakeFailures.length - before, 1, 'one handshake, no retries')
    assert.equal(server.requests.length, 0)
  })

  test('caCertPath trusts a private CA', async () => {
    const gw = new Gateway({ providers: { p: provider({ caCertPath: caPath }) } })
    const response = await gw.chat(ask('p/m'))
    assert.equal(response.content, 'over TLS')
  })

  test('a caCertPath that is missing or holds no certificate is CONFIG', () => {
    for (const caCertPath of [`${tlsDir}missing.pem`, `${tlsDir}README.md`]) {
      assert.throws(
        () => new Gateway({ providers: { p: provider({ caCertPath }) } }),
        (e) => e instanceof FerrogateError && e.code === 'CONFIG' && e.message.includes('caCertPath'),
        caCertPath,
      )
    }
  })

  const inChild = async (env) => {
    const script = `
      const { Gateway } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))})
      new Gateway({ maxRetries: 0, providers: { p: { kind: 'openai', apiKey: 'k', baseUrl: ${JSON.stringify(`${server.url}/v1`)} } } })
        .chat({ model: 'p/m', messages: [{ role: 'user', content: 'hi' }] })
        .then((r) => console.log(JSON.stringify({ content: r.content })), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { env: { ...process.env, ...env } })
    return JSON.parse(stdout)
  }

  test('NODE_EXTRA_CA_CERTS is trusted', async () => {
    assert.deepEqual(await inChild({ NODE_EXTRA_CA_CERTS: caPath }), { content: 'over TLS' })
  })

  test('the system store is trusted (SSL_CERT_FILE points it at the CA)', async () => {
    assert.deepEqual(await inChild({ SSL_CERT_FILE: caPath }), { content: 'over TLS' })
  })
})

describe('11. a message without content', () => {
  test('is INVALID_REQUEST naming the message, and nothing is sent', async () => {
    const gw = gateway()
    const before = sent()
    for (const messages of [
      [{ role: 'user' }],
      [{ role: 'user', content: undefined }],
      [{ role: 'user', content: null }],
      [{ role: 'system', content: 'be brief' }, { role: 'assistant' }],
    ]) {
      const error = await rejection(gw.chat({ model: 'openai/m', messages }))
      assertError(error, 'INVALID_REQUEST')
      assert.match(error.message, /messages\[\d\]\.content/)
    }
    assert.equal(sent(), before)
  })

  test('an assistant message that carries tool calls may have no content, or null as OpenAI sends it', async () => {
    for (const content of [undefined, null]) {
      const response = await gateway().chat({
        model: 'openai/m',
        messages: [
          { role: 'user', content: 'time?' },
          { role: 'assistant', content, toolCalls: [{ id: 'call_1', name: 'now', arguments: '{}' }] },
          { role: 'tool', toolCallId: 'call_1', content: 'noon' },
        ],
      })
      assert.equal(response.finishReason, 'stop')
    }
  })
})

describe('12. error bodies in another vendor’s shape', () => {
  for (const [kind, model, status, body, code, message] of [
    ['gemini', 'gemini/g', 400, { error: { message: 'Invalid model name', type: 'invalid_request_error', param: null, code: '400' } }, 'INVALID_REQUEST', 'Invalid model name'],
    ['openai', 'openai/m', 529, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, 'UPSTREAM_UNAVAILABLE', 'Overloaded'],
    ['anthropic', 'anthropic/c', 429, { error: { code: 429, message: 'Quota exceeded', status: 'RESOURCE_EXHAUSTED' } }, 'RATE_LIMITED', 'Quota exceeded'],
    ['anthropic', 'anthropic/c', 404, { detail: 'Model not found' }, 'NOT_FOUND', 'Model not found'],
  ]) {
    test(`${kind} with ${JSON.stringify(body).slice(0, 40)}… is ${code} with the vendor's message, the raw body as cause`, async () => {
      vendors.enqueue(kind, { status, headers: { 'content-type': 'application/json' }, body })
      const error = await rejection(gateway({ maxRetries: 0 }).chat(ask(model)))
      assertError(error, code)
      assert.equal(error.message, message)
      assert.ok(String(error.cause?.message).includes(JSON.stringify(body).slice(0, 30)), String(error.cause?.message))
    })
  }
})

describe('smaller', () => {
  test('TIMEOUT keeps the last vendor error as its cause', async () => {
    vendors.enqueue('openai', { status: 500, headers: { 'content-type': 'application/json', 'retry-after-ms': '10' }, body: { error: { message: 'first attempt failed', type: 'server_error' } } })
    vendors.enqueue('openai', { hang: true })
    const error = await rejection(gateway({ timeoutMs: 400 }).chat(ask('openai/m')))
    assertError(error, 'TIMEOUT')
    assert.match(String(error.cause?.message), /first attempt failed/)
  })

  test('a non-streamed Gemini answer with no candidates fails like the streamed one', async () => {
    vendors.enqueue('gemini', { status: 200, body: { usageMetadata: { promptTokenCount: 3, totalTokenCount: 3 }, modelVersion: 'g' } })
    const error = await rejection(gateway({ maxRetries: 0 }).chat(ask('gemini/g')))
    assertError(error, 'PROVIDER_ERROR')
  })
})
