// Point 4 of the foundation issue, one behaviour per test: deadlines, retries and their
// limits, cancellation end to end, callback errors, vendor error text, error shape, and
// that no API key escapes.
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { after, before, describe, test } from 'node:test'

import { FerrogateError, Gateway } from '../index.js'
import { generateOpenAIStream, startMockVendors } from './helpers/mock-vendors.mjs'

const SECRET = 'sk-test-SECRETSECRET-0123456789abcdef'
let vendors

before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

/** A gateway whose backoff is far too long for any test: a retry that succeeds proves
 *  the vendor's own wait hint was used. */
function gateway(overrides = {}) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 3,
    retryBaseDelayMs: 60_000,
    providers: { openai: { kind: 'openai', apiKey: SECRET, baseUrl: vendors.openaiBaseUrl } },
    ...overrides,
  })
}
const ask = (extra = {}) => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...extra })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)
const sent = () => vendors.requests.length

function assertErrorShape(error, code) {
  assert.ok(error instanceof FerrogateError, `a FerrogateError, got ${error}`)
  assert.ok(error instanceof Error)
  assert.equal(error.code, code)
  assert.equal(typeof error.status, 'number')
  assert.match(error.requestId, /^fg_[0-9a-f]{16}$/)
}

const openaiError = (status, message, extra = {}) => ({
  status,
  headers: { 'content-type': 'application/json', ...extra.headers },
  body: { error: { message, type: extra.type ?? 'server_error', param: null, code: extra.code ?? null } },
})

describe('timeouts', () => {
  test('timeoutMs bounds the whole call and rejects with TIMEOUT', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { hang: true })
    const error = await rejection(gateway({ timeoutMs: 200 }).chat(ask()))
    assertErrorShape(error, 'TIMEOUT')
    assert.equal(error.status, 504)
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 }) // the hung request was closed, not leaked
  })

  test('a per-request timeoutMs overrides the gateway default', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { hang: true })
    const error = await rejection(gateway({ timeoutMs: 60_000 }).chat(ask({ timeoutMs: 150 })))
    assertErrorShape(error, 'TIMEOUT')
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })

  test('a stream that stalls mid-way times out too', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', {
      sse: ['data: {"id":"c","choices":[{"index":0,"delta":{"content":"partial"}}]}\n\n'],
      hang: true,
      endWithoutTerminator: true,
    })
    const pieces = []
    const error = await rejection(gateway({ timeoutMs: 300 }).stream(ask(), (t) => pieces.push(t)))
    assertErrorShape(error, 'TIMEOUT')
    assert.deepEqual(pieces, ['partial'])
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })
})

describe('retries', () => {
  for (const status of [408, 409, 429, 500, 502, 503]) {
    test(`HTTP ${status} is retried`, async () => {
      vendors.enqueue('openai', openaiError(status, `transient ${status}`, { headers: { 'retry-after-ms': '5' } }))
      const before = sent()
      const response = await gateway().chat(ask())
      assert.equal(response.attempts, 2)
      assert.equal(sent() - before, 2)
    })
  }

  for (const status of [400, 401, 403, 404]) {
    test(`HTTP ${status} is never retried`, async () => {
      vendors.enqueue('openai', openaiError(status, `final ${status}`, { headers: { 'retry-after-ms': '5' } }))
      const before = sent()
      const error = await rejection(gateway().chat(ask()))
      assert.equal(sent() - before, 1)
      assert.equal(error.message, `final ${status}`, "the vendor's message is the message")
      assert.equal(error.status, status === 403 ? 403 : status === 401 ? 401 : status)
    })
  }

  test('Retry-After in seconds is honoured instead of the backoff', async () => {
    vendors.enqueue('openai', openaiError(429, 'slow down', { headers: { 'retry-after': '0' }, type: 'requests' }))
    const response = await gateway().chat(ask())
    assert.equal(response.attempts, 2)
  })

  test('Retry-After as an HTTP date is honoured', async () => {
    const soon = new Date(Date.now() + 1000).toUTCString()
    vendors.enqueue('openai', openaiError(503, 'busy', { headers: { 'retry-after': soon } }))
    const response = await gateway().chat(ask())
    assert.equal(response.attempts, 2)
  })

  test('a wait hint beyond the deadline fails at once with the vendor error and its retryAfterMs', async () => {
    vendors.enqueue('openai', openaiError(429, 'come back later', { headers: { 'retry-after': '30' }, type: 'tokens' }))
    const before = sent()
    const error = await rejection(gateway({ timeoutMs: 2000 }).chat(ask()))
    assertErrorShape(error, 'RATE_LIMITED')
    assert.equal(error.retryAfterMs, 30_000)
    assert.equal(sent() - before, 1)
  })

  test('absurd numbers in a wait hint or a timeout neither crash nor hang', async () => {
    vendors.enqueue('openai', openaiError(429, 'odd hint', { headers: { 'retry-after': '1e300' }, type: 'requests' }))
    const error = await rejection(gateway({ timeoutMs: 2000 }).chat(ask()))
    assertErrorShape(error, 'RATE_LIMITED')
    const response = await gateway().chat(ask({ timeoutMs: 1e300, maxRetries: 0 }))
    assert.equal(response.finishReason, 'stop')
  })

  test('insufficient_quota is a 429 that is not retried', async () => {
    vendors.enqueue('openai', openaiError(429, 'You exceeded your current quota', { code: 'insufficient_quota', type: 'insufficient_quota', headers: { 'retry-after-ms': '5' } }))
    const before = sent()
    const error = await rejection(gateway().chat(ask()))
    assertErrorShape(error, 'RATE_LIMITED')
    assert.equal(sent() - before, 1)
  })

  test('maxRetries bounds the attempts', async () => {
    for (let i = 0; i < 3; i++) vendors.enqueue('openai', openaiError(500, 'down', { headers: { 'retry-after-ms': '1' } }))
    const before = sent()
    const error = await rejection(gateway({ maxRetries: 2 }).chat(ask()))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.equal(error.status, 502)
    assert.equal(sent() - before, 3)
  })

  test('a connection reset before any text is retried', async () => {
    vendors.enqueue('openai', { sse: ['data: {"id":"c","choices":[]}\n\n'], destroyAfter: 1 })
    const response = await gateway({ retryBaseDelayMs: 1 }).stream(ask(), () => {})
    assert.equal(response.attempts, 2)
    assert.ok(response.content.length > 0)
  })

  test('a connection refused is retried, then reported as UPSTREAM_UNAVAILABLE', async () => {
    const closed = new Gateway({
      maxRetries: 1,
      retryBaseDelayMs: 1,
      providers: { local: { kind: 'openai', baseUrl: 'http://127.0.0.1:9/v1' } },
    })
    const error = await rejection(closed.chat({ ...ask(), model: 'local/m' }))
    assertErrorShape(error, 'UPSTREAM_UNAVAILABLE')
    assert.equal(error.status, 503)
    assert.ok(error.cause instanceof Error, 'the transport error is the cause')
  })

  test('a stream that already delivered text is never retried', async () => {
    vendors.enqueue('openai', {
      sse: ['data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n', 'data: {"id":"c","choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'],
      destroyAfter: 2,
    })
    const before = sent()
    const pieces = []
    const error = await rejection(gateway({ retryBaseDelayMs: 1 }).stream(ask(), (t) => pieces.push(t)))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.equal(pieces.join(''), 'Hello')
    assert.equal(sent() - before, 1)
  })

  test('an Anthropic overloaded_error before any text is retried', async () => {
    const anthropic = new Gateway({
      retryBaseDelayMs: 1,
      providers: { claude: { kind: 'anthropic', apiKey: SECRET, baseUrl: vendors.anthropicBaseUrl } },
    })
    vendors.enqueue('anthropic', {
      sse: [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
      ],
    })
    const response = await anthropic.stream({ ...ask(), model: 'claude/claude-haiku-4-5' }, () => {})
    assert.equal(response.attempts, 2)
  })
})

describe('cancellation', () => {
  test('an AbortSignal aborts a streaming call: the upstream sees its connection closed', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 200 }).split(/(?<=\n\n)/), delayMs: 20 })
    const controller = new AbortController()
    const pieces = []
    const call = gateway().stream(ask({ signal: controller.signal }), (t) => {
      pieces.push(t)
      if (pieces.length === 3) controller.abort()
    })
    const error = await rejection(call)
    assertErrorShape(error, 'ABORTED')
    assert.equal(error.status, 499)
    assert.equal(error.cause?.name, 'AbortError', "the signal's reason is the cause")
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })

  test('an AbortSignal aborts a non-streaming call waiting for headers', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { hang: true })
    const controller = new AbortController()
    const call = gateway().chat(ask({ signal: controller.signal }))
    setTimeout(() => controller.abort(), 50)
    assertErrorShape(await rejection(call), 'ABORTED')
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })

  test('an already-aborted signal sends nothing upstream', async () => {
    const before = sent()
    const error = await rejection(gateway().chat(ask({ signal: AbortSignal.abort() })))
    assertErrorShape(error, 'ABORTED')
    assert.equal(sent(), before)
  })

  test('breaking out of streamEvents() closes the upstream connection', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 200 }).split(/(?<=\n\n)/), delayMs: 20 })
    let seen = 0
    for await (const event of gateway().streamEvents(ask())) {
      if (event.type === 'text' && ++seen === 2) break
    }
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })

  test('close() aborts calls in flight and refuses new ones', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { hang: true })
    const gw = gateway()
    const pending = gw.chat(ask())
    setTimeout(() => gw.close(), 50)
    assertErrorShape(await rejection(pending), 'ABORTED')
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
    const before = sent()
    const late = await rejection(gw.chat(ask()))
    assertErrorShape(late, 'ABORTED')
    assert.match(late.message, /closed/)
    assert.equal(sent(), before)
  })
})

describe('callback errors', () => {
  test('an exception in onChunk stops the stream and rejects with CALLBACK_ERROR carrying it as cause', async () => {
    const mark = vendors.mark()
    vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 200 }).split(/(?<=\n\n)/), delayMs: 20 })
    const thrown = new RangeError('consumer exploded')
    let calls = 0
    const error = await rejection(
      gateway().stream(ask(), () => {
        calls++
        throw thrown
      }),
    )
    assertErrorShape(error, 'CALLBACK_ERROR')
    assert.equal(error.status, 500)
    assert.equal(error.cause, thrown)
    assert.equal(calls, 1, 'onChunk is not called again after it threw')
    await vendors.waitForClose({ since: mark, timeoutMs: 2000 })
  })
})

describe('SSE framing', () => {
  const chunk = (content) => JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content } }] })
  const finish = JSON.stringify({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })
  const usage = JSON.stringify({ id: 'c', choices: [], usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } })

  test('CRLF and CR line endings, comments, "data:" without a space, multi-line data, [DONE]', async () => {
    const wire = [
      ': keep-alive\r\n\r\n',
      `data: ${chunk('Hé')}\r\n\r\n`,
      `data:${chunk('llo')}\r\r`,
      // One JSON document split over two data lines is joined with a newline, as SSE says.
      `data: {"id":"c","choices":\ndata: [{"index":0,"delta":{"content":" wörld"}}]}\n\n`,
      `: ping\n\ndata: ${finish}\n\n`,
      `data: ${usage}\n\n`,
      'data: [DONE]\n\n',
    ]
    vendors.enqueue('openai', { sse: wire, split: 'bytes' })
    const pieces = []
    const response = await gateway().stream(ask(), (t) => pieces.push(t))
    assert.equal(pieces.join(''), 'Héllo wörld')
    assert.equal(response.content, 'Héllo wörld')
    assert.deepEqual([response.usage.promptTokens, response.usage.completionTokens, response.usage.estimated], [7, 3, false])
  })

  test('a multi-byte character split across reads arrives whole', async () => {
    const bytes = Buffer.from(`data: ${chunk('🧠→')}\n\ndata: ${finish}\n\ndata: [DONE]\n\n`)
    const cut = bytes.indexOf(Buffer.from('🧠')) + 2
    vendors.enqueue('openai', { sse: [bytes.subarray(0, cut), bytes.subarray(cut)], delayMs: 5 })
    const response = await gateway().stream(ask(), () => {})
    assert.equal(response.content, '🧠→')
  })

  test('tool-call argument deltas are assembled per index', async () => {
    const call = (index, fn) => JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { tool_calls: [{ index, ...fn }] } }] })
    const wire = [
      call(0, { id: 'a', type: 'function', function: { name: 'one', arguments: '' } }),
      call(1, { id: 'b', type: 'function', function: { name: 'two', arguments: '{"y"' } }),
      call(0, { function: { arguments: '{"x":' } }),
      call(1, { function: { arguments: ':2}' } }),
      call(0, { function: { arguments: '1}' } }),
      JSON.stringify({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }),
    ].map((d) => `data: ${d}\n\n`)
    vendors.enqueue('openai', { sse: wire })
    const deltas = []
    let response
    for await (const event of gateway().streamEvents(ask())) {
      if (event.type === 'tool_call') deltas.push([event.index, event.argumentsDelta])
      if (event.type === 'done') response = event.response
    }
    assert.deepEqual(response.toolCalls, [
      { id: 'a', name: 'one', arguments: '{"x":1}' },
      { id: 'b', name: 'two', arguments: '{"y":2}' },
    ])
    assert.equal(response.finishReason, 'tool_calls')
    assert.deepEqual(deltas.filter(([i]) => i === 1).map(([, d]) => d).join(''), '{"y":2}')
  })

  test('a stream without usage is counted with tiktoken and marked estimated', async () => {
    vendors.enqueue('openai', { sse: [`data: ${chunk('hello world')}\n\n`, `data: ${finish}\n\n`] })
    const response = await gateway().stream(ask(), () => {})
    // "hello world" is 2 tokens in o200k_base; the prompt is framed as OpenAI's cookbook says.
    assert.deepEqual([response.usage.completionTokens, response.usage.estimated], [2, true])
    assert.equal(response.usage.promptTokens, 8)
  })
})

describe('bad input from the vendor', () => {
  const streamOf = (chunks) => ({ sse: chunks, endWithoutTerminator: true })

  test('invalid UTF-8 in a stream is a PROVIDER_ERROR, not mojibake', async () => {
    vendors.enqueue('openai', streamOf([Buffer.from('data: {"id":"c","choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}\n\n', 'latin1')]))
    const error = await rejection(gateway({ maxRetries: 0 }).stream(ask(), () => {}))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.match(error.message, /UTF-8/)
  })

  test('malformed JSON in an event is a PROVIDER_ERROR naming the vendor', async () => {
    vendors.enqueue('openai', streamOf(['data: {"id": oops}\n\n']))
    const error = await rejection(gateway({ maxRetries: 0 }).stream(ask(), () => {}))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.match(error.message, /openai/)
  })

  test('a stream cut before its end is a PROVIDER_ERROR', async () => {
    vendors.enqueue('openai', streamOf(['data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n']))
    const error = await rejection(gateway({ maxRetries: 0 }).stream(ask(), () => {}))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.match(error.message, /ended before/)
  })

  test('a non-JSON 502 body from a proxy becomes a readable message', async () => {
    vendors.enqueue('openai', { status: 502, headers: { 'content-type': 'text/html' }, body: '<html>Bad Gateway</html>' })
    const error = await rejection(gateway({ maxRetries: 0 }).chat(ask()))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.match(error.message, /HTTP 502: <html>Bad Gateway<\/html>/)
  })

  test('an oversized response body is refused, not buffered without bound', async () => {
    const huge = Buffer.alloc(65 * 1024 * 1024, 0x20)
    vendors.enqueue('openai', { status: 200, headers: { 'content-type': 'application/json' }, body: huge })
    const error = await rejection(gateway({ maxRetries: 0 }).chat(ask()))
    assertErrorShape(error, 'PROVIDER_ERROR')
    assert.match(error.message, /larger than 67108864 bytes/)
  })

  test('a 200 with an unparseable body is a PROVIDER_ERROR', async () => {
    vendors.enqueue('openai', { status: 200, headers: { 'content-type': 'application/json' }, body: '{"choices": [' })
    assertErrorShape(await rejection(gateway({ maxRetries: 0 }).chat(ask())), 'PROVIDER_ERROR')
  })

  test('a 10,000-chunk stream arrives whole and in order', async () => {
    vendors.enqueue('openai', { sse: [generateOpenAIStream({ chunks: 10_000 })] })
    let pieces = 0
    const response = await gateway().stream(ask(), () => pieces++)
    assert.equal(pieces, 10_000)
    assert.ok(response.content.startsWith('tok0 tok1 '))
    assert.ok(response.content.endsWith('tok9999 '))
  })
})

describe('bad input from the caller', () => {
  test('an unknown provider is NOT_FOUND', async () => {
    const error = await rejection(gateway().chat({ ...ask(), model: 'nobody/model' }))
    assertErrorShape(error, 'NOT_FOUND')
    assert.equal(error.status, 404)
  })

  test('a malformed request is INVALID_REQUEST with the field named, and nothing is sent', async () => {
    const before = sent()
    for (const bad of [
      { ...ask(), messages: [] },
      { ...ask(), messages: [{ role: 'wizard', content: 'x' }] },
      { ...ask(), messages: [{ role: 'user', content: [{ type: 'image' }] }] },
      { ...ask(), toolChoice: 'sometimes' },
      { ...ask(), messages: 'hello' },
      { ...ask(), messages: [{ role: 'tool', content: 'result' }] },
    ]) {
      const error = await rejection(gateway().chat(bad))
      assertErrorShape(error, 'INVALID_REQUEST')
      assert.equal(error.status, 400)
      assert.match(error.message, /messages|toolChoice/)
    }
    assert.equal(sent(), before)
  })

  test('bad configuration is CONFIG, thrown by the constructor', () => {
    for (const options of [
      { providers: {} },
      { providers: { x: { kind: 'nope' } } },
      { providers: { x: { kind: 'openai', baseUrl: 'not a url' } } },
      { providers: { x: { kind: 'openai', baseUrl: 'ftp://host/v1' } } },
      { providers: { x: { kind: 7 } } },
      { providers: { x: { kind: 'mock' } }, timeoutMs: -1 },
    ]) {
      assert.throws(() => new Gateway(options), (e) => e instanceof FerrogateError && e.code === 'CONFIG' && e.status === 500)
    }
  })
})

describe('secrets', () => {
  test('an API key never appears in a message, a cause, or util.inspect', async () => {
    vendors.enqueue('openai', openaiError(401, `Incorrect API key provided: ${SECRET}.`, { type: 'invalid_request_error', code: 'invalid_api_key' }))
    const gw = gateway()
    const error = await rejection(gw.chat(ask()))
    assertErrorShape(error, 'AUTHENTICATION')
    assert.equal(error.status, 401)
    for (const text of [error.message, String(error.cause), inspect(error, { depth: 5 }), inspect(gw, { depth: 5, showHidden: true }), JSON.stringify(error)]) {
      assert.ok(!text.includes(SECRET), `leaked in: ${text}`)
    }
    assert.match(error.message, /\[REDACTED\]/)
  })

  test('credentials given as plain headers are redacted too', async () => {
    const token = 'proxy-token-0123456789abcdef'
    const proxied = new Gateway({
      maxRetries: 0,
      providers: { proxy: { kind: 'openai', baseUrl: vendors.openaiBaseUrl, headers: { Authorization: `Bearer ${token}` } } },
    })
    vendors.enqueue('openai', openaiError(403, `token ${token} may not use this model`, { type: 'permission_error' }))
    const error = await rejection(proxied.chat({ ...ask(), model: 'proxy/m' }))
    assertErrorShape(error, 'AUTHENTICATION')
    assert.equal(error.status, 403)
    assert.ok(!error.message.includes(token), error.message)
    assert.equal(vendors.requests.at(-1).headers.authorization, `Bearer ${token}`)
  })

  test('the key is sent upstream as a header, never in the URL', async () => {
    await gateway().chat(ask())
    const last = vendors.requests.at(-1)
    assert.equal(last.headers.authorization, `Bearer ${SECRET}`)
    assert.ok(!last.path.includes(SECRET) && !JSON.stringify(last.query).includes(SECRET))
  })
})
