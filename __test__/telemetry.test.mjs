// OpenTelemetry GenAI spans and metrics (docs/API.md, "Telemetry"). The traced process is a child
// (__test__/helpers/telemetry-app.cjs): instrumentation-http must be registered before `http` is
// first loaded, and a tracer provider registered once per process. It serves an Express app whose
// routes call the gateway and gatewayRouter, each request sent with a client's own traceparent,
// and prints the finished spans, the metrics and what the vendor fake received.
// This process registers no provider: the untraced calls below run here.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { createRequire } from 'node:module'

import { Gateway, NATIVE_SERVE } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const app = fileURLToPath(new URL('./helpers/telemetry-app.cjs', import.meta.url))
const SPAN_KIND = { INTERNAL: 0, SERVER: 1, CLIENT: 2 }
const STATUS_ERROR = 2
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/

async function observe(env = {}) {
  const { stdout } = await promisify(execFile)(process.execPath, [app], {
    env: { ...process.env, ...env },
    timeout: 120_000,
    maxBuffer: 64 * 1024 * 1024,
  })
  return JSON.parse(stdout.trim().split('\n').at(-1))
}

let run
before(async () => {
  run = await observe()
})

// The spans of one scenario: the Express server span and what nests under it.
function scenario(name) {
  const trace = run.traces[name]
  assert.ok(trace, `scenario ${name} ran`)
  const spans = run.spans.filter((span) => span.traceId === trace.traceId)
  const server = spans.find((span) => span.kind === SPAN_KIND.SERVER)
  assert.ok(server, `${name}: instrumentation-http made the server span`)
  assert.equal(server.parentSpanId, trace.clientSpanId, `${name}: the server span continues the client's traceparent`)
  const calls = spans.filter((span) => span.scope === 'ferrogate' && !span.name.startsWith('attempt '))
  assert.equal(calls.length, 1, `${name}: one call span (${spans.map((span) => span.name)})`)
  const attempts = spans.filter((span) => span.name.startsWith('attempt ')).sort((a, b) => a.attributes['ferrogate.attempt'] - b.attributes['ferrogate.attempt'])
  return { trace, server, call: calls[0], attempts }
}

function assertUpstreamContinues(name, call, trace) {
  assert.ok(trace.vendorRequests.length > 0, `${name}: the vendor was called`)
  for (const request of trace.vendorRequests) {
    const [, traceId, parentId] = TRACEPARENT.exec(request.traceparent ?? '') ?? []
    assert.equal(traceId, trace.traceId, `${name}: the upstream request carries the client's trace id`)
    assert.equal(parentId, call.spanId, `${name}: its parent is the call span`)
  }
}

describe('spans of library calls made in an Express route', () => {
  test('chat: CLIENT span named "chat {model}" under the request\'s server span, attributes per the conventions', () => {
    const { trace, server, call, attempts } = scenario('chat')
    assert.equal(trace.status, 200)
    const response = JSON.parse(trace.body)
    assert.equal(call.name, 'chat gpt-4o-mini')
    assert.equal(call.kind, SPAN_KIND.CLIENT)
    assert.equal(call.parentSpanId, server.spanId, "the chat span's parent is the server span of the request that made it")
    assert.ok(call.start >= server.start && call.end <= server.end, 'it lies within the request')
    assert.deepEqual(
      { ...call.attributes, 'server.port': undefined },
      {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.response.model': 'gpt-4o-mini',
        'gen_ai.response.id': response.id,
        'gen_ai.response.finish_reasons': ['stop'],
        'gen_ai.usage.input_tokens': response.usage.promptTokens,
        'gen_ai.usage.output_tokens': response.usage.completionTokens,
        'gen_ai.request.max_tokens': 50,
        'gen_ai.request.temperature': 0.2,
        'gen_ai.request.top_p': 0.9,
        'gen_ai.request.stream': false,
        'server.address': '127.0.0.1',
        'server.port': undefined,
        'ferrogate.cost_usd': response.costUsd,
        'ferrogate.cached': false,
        'ferrogate.attempts': 1,
        'ferrogate.request_id': response.requestId,
      },
    )
    assert.ok(Number.isInteger(call.attributes['server.port']) && call.attributes['server.port'] > 0)
    assert.equal(call.status.code, 0)
    assert.equal(attempts.length, 0, 'a call that neither retried nor fell back has no attempt spans')
    assert.equal(call.attributes['gen_ai.input.messages'], undefined, 'no message content without the opt-in')
    assertUpstreamContinues('chat', call, trace)
  })

  test('a retried call (500, then 200) has two attempt spans, the first with error.type', () => {
    const { trace, call, attempts } = scenario('retry')
    assert.equal(trace.status, 200)
    assert.equal(trace.vendorRequests.length, 2)
    assert.equal(call.attributes['ferrogate.attempts'], 2)
    assert.equal(call.attributes['error.type'], undefined, 'the call itself succeeded')
    assert.deepEqual(
      attempts.map((span) => [span.name, span.parentSpanId, span.attributes['ferrogate.attempt'], span.attributes['error.type']]),
      [
        ['attempt openai/gpt-4o-mini', call.spanId, 1, 'PROVIDER_ERROR'],
        ['attempt openai/gpt-4o-mini', call.spanId, 2, undefined],
      ],
    )
    assert.equal(attempts[0].status.code, STATUS_ERROR)
    assert.ok(attempts[0].end <= attempts[1].start, 'the attempts follow each other')
    for (const attempt of attempts) {
      assert.ok(attempt.start >= call.start - 1 && attempt.end <= call.end + 1, 'each attempt lies within the call span')
      assert.equal(attempt.attributes['server.address'], '127.0.0.1')
    }
    assertUpstreamContinues('retry', call, trace)
  })

  test("a stream's span ends when the stream ends, with time to first chunk", () => {
    const { trace, call } = scenario('stream')
    assert.equal(trace.body, 'tok0 tok1 tok2 tok3 ')
    assert.equal(call.attributes['gen_ai.request.stream'], true)
    const ttfc = call.attributes['gen_ai.response.time_to_first_chunk']
    assert.ok(ttfc >= 0.035 && ttfc < (call.end - call.start) / 1000, `time to first chunk in seconds (${ttfc})`)
    // Four chunks, 40 ms before each: the span covers them all, and ends as stream() resolves.
    assert.ok(call.end - call.start >= 150, `the span lasts as long as the stream (${call.end - call.start} ms)`)
    assert.ok(Math.abs(call.end - run.seen.streamEndedAt) < 50, 'it ends when the stream ends')
    assert.equal(call.attributes['ferrogate.request_id'], run.seen.streamRequestId)
    assert.equal(call.attributes['gen_ai.usage.output_tokens'], 4)
    assertUpstreamContinues('stream', call, trace)
  })

  test('streamEvents: the span nests under the route that iterates it', () => {
    const { server, call, trace } = scenario('events')
    assert.equal(call.parentSpanId, server.spanId)
    assert.equal(call.attributes['gen_ai.request.stream'], true)
    assert.ok(call.attributes['gen_ai.response.time_to_first_chunk'] > 0)
    assert.ok(call.end <= run.seen.eventsEndedAt + 50)
    assertUpstreamContinues('events', call, trace)
  })

  test('an abort sets error.type (and the span status) to ABORTED', () => {
    const { trace, call } = scenario('abort')
    assert.equal(run.seen.abortCode, 'ABORTED')
    assert.equal(trace.status, 499)
    assert.equal(call.attributes['error.type'], 'ABORTED')
    assert.equal(call.status.code, STATUS_ERROR)
    assertUpstreamContinues('abort', call, trace)
  })

  test('the AI SDK provider (ai 6 generateText): its gateway call is a span under the route', () => {
    const { trace, server, call } = scenario('aiSdk')
    assert.equal(trace.status, 200, trace.body)
    const answer = JSON.parse(trace.body)
    assert.equal(call.name, 'chat gpt-4o-mini')
    assert.equal(call.parentSpanId, server.spanId)
    assert.equal(call.attributes['gen_ai.request.max_tokens'], 30)
    assert.equal(call.attributes['ferrogate.request_id'], answer.requestId)
    assertUpstreamContinues('aiSdk', call, trace)
  })

  test('embed: an "embeddings {model}" span with input tokens', () => {
    const { trace, call } = scenario('embed')
    const response = JSON.parse(trace.body)
    assert.equal(call.name, 'embeddings text-embedding-3-small')
    assert.equal(call.attributes['gen_ai.operation.name'], 'embeddings')
    assert.equal(call.attributes['gen_ai.usage.input_tokens'], response.usage.promptTokens)
    assert.equal(call.attributes['gen_ai.usage.output_tokens'], undefined)
    assert.equal(call.attributes['gen_ai.response.id'], undefined, 'an embeddings answer has no vendor id')
    assertUpstreamContinues('embed', call, trace)
  })
})

describe('spans of gatewayRouter calls, every ingress protocol', () => {
  const cases = [
    ['routerChat', 'chat gpt-4o-mini', 'openai', false],
    ['routerStream', 'chat gpt-4o-mini', 'openai', true],
    ['routerMessages', 'chat claude-sonnet-4-5', 'anthropic', false],
    ['routerResponses', 'chat gpt-4o-mini', 'openai', false],
    ['routerEmbeddings', 'embeddings text-embedding-3-small', 'openai', false],
  ]
  for (const [name, spanName, providerName, stream] of cases) {
    test(`${name}: "${spanName}" under the server span; the client's trace continues upstream`, () => {
      const { trace, server, call } = scenario(name)
      assert.equal(trace.status, 200, trace.body)
      assert.equal(call.name, spanName)
      assert.equal(call.kind, SPAN_KIND.CLIENT)
      assert.equal(call.parentSpanId, server.spanId)
      assert.equal(call.attributes['gen_ai.provider.name'], providerName)
      assert.equal(call.attributes['gen_ai.request.stream'], stream)
      assert.ok(call.attributes['gen_ai.usage.input_tokens'] > 0)
      assert.match(call.attributes['ferrogate.request_id'], /^(fg|req)_/)
      if (stream) assert.ok(call.attributes['gen_ai.response.time_to_first_chunk'] > 0)
      assertUpstreamContinues(name, call, trace)
    })
  }

  test('a request without traceparent: the router still sends its call span upstream', () => {
    assert.equal(run.seen.untracedStatus, 200)
    assert.match(run.seen.untracedVendorTraceparent ?? '', TRACEPARENT)
  })
})

describe('metrics through the registered meter provider', () => {
  const metric = (name) => run.metrics.find((m) => m.name === name && m.scope === 'ferrogate')

  test('gen_ai.client.operation.duration: seconds, the conventions\' buckets, one count per call', () => {
    const duration = metric('gen_ai.client.operation.duration')
    assert.ok(duration, 'recorded')
    assert.equal(duration.unit, 's')
    for (const point of duration.points) {
      assert.deepEqual(point.boundaries, [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92])
    }
    const calls = (filter) => duration.points.filter((point) => filter(point.attributes)).reduce((sum, point) => sum + point.count, 0)
    // chat, retry, stream, events, abort, aiSdk, routerChat, routerStream, routerResponses, the untraced router call.
    assert.equal(calls((a) => a['gen_ai.operation.name'] === 'chat' && a['gen_ai.provider.name'] === 'openai'), 10)
    assert.equal(calls((a) => a['error.type'] === 'ABORTED'), 1)
    assert.equal(calls((a) => a['gen_ai.operation.name'] === 'embeddings'), 2)
    const chat = duration.points.find((point) => point.attributes['gen_ai.request.model'] === 'gpt-4o-mini' && !point.attributes['error.type'])
    assert.ok(chat.sum > 0 && chat.sum < 60, 'in seconds')
  })

  test('gen_ai.client.token.usage: a histogram by gen_ai.token.type', () => {
    const tokens = metric('gen_ai.client.token.usage')
    assert.ok(tokens, 'recorded')
    assert.equal(tokens.unit, '{token}')
    assert.equal(tokens.points[0].boundaries[0], 1)
    const sum = (type, model) =>
      tokens.points
        .filter((point) => point.attributes['gen_ai.token.type'] === type && point.attributes['gen_ai.request.model'] === model)
        .reduce((total, point) => total + point.sum, 0)
    // The Anthropic fake bills 10 input and 5 output tokens for the one Messages call.
    assert.equal(sum('input', 'claude-sonnet-4-5'), 10)
    assert.equal(sum('output', 'claude-sonnet-4-5'), 5)
    assert.ok(sum('input', 'text-embedding-3-small') > 0)
    assert.equal(sum('output', 'text-embedding-3-small'), 0, 'embeddings have input tokens only')
  })
})

test('message content is captured only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true', async () => {
  const captured = await observe({ OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true', TELEMETRY_SCENARIOS: 'chat' })
  const trace = captured.traces.chat
  const call = captured.spans.find((span) => span.traceId === trace.traceId && span.scope === 'ferrogate')
  assert.deepEqual(JSON.parse(call.attributes['gen_ai.input.messages']), [{ role: 'user', parts: [{ type: 'text', content: 'Say hello' }] }])
  assert.deepEqual(JSON.parse(call.attributes['gen_ai.output.messages']), [
    { role: 'assistant', parts: [{ type: 'text', content: 'echo: Say hello' }], finish_reason: 'stop' },
  ])
})

describe('without a tracer provider (this process)', () => {
  let vendors
  let gateway
  before(async () => {
    vendors = await startMockVendors()
    gateway = new Gateway({ providers: { openai: { kind: 'openai', baseUrl: vendors.openaiBaseUrl, apiKey: 'sk-test' } }, maxRetries: 0 })
  })
  after(async () => {
    await gateway?.close()
    await vendors?.close()
  })

  test('a call sends no traceparent of its own', async () => {
    const mark = vendors.mark()
    await gateway.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    assert.equal(vendors.requests.slice(mark).length, 1)
    assert.equal(vendors.requests.at(-1).headers.traceparent, undefined)
  })

  test('a span processor that throws as a span ends never fails the call it observes', { timeout: 20_000 }, async () => {
    const api = require('@opentelemetry/api')
    const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base')
    const throwing = {
      onStart() {},
      onEnd() {
        throw new Error('processor broke on end')
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    }
    assert.ok(api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [throwing] })))
    try {
      const response = await gateway.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      assert.equal(response.content, 'echo: hi')
      assert.match(vendors.requests.at(-1).headers.traceparent ?? '', TRACEPARENT, 'the call was traced')
    } finally {
      api.trace.disable()
    }
  })

  test("serve forwards a client's traceparent upstream, and only a valid one", async () => {
    const server = await gateway[NATIVE_SERVE]({ host: '127.0.0.1', port: 0 })
    try {
      const ask = (traceparent) =>
        fetch(`http://127.0.0.1:${server.port}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(traceparent ? { traceparent } : {}) },
          body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
        }).then(async (response) => {
          await response.text()
          return vendors.requests.at(-1).headers.traceparent
        })
      const client = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
      assert.equal(await ask(client), client)
      assert.equal(await ask('00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'), undefined, 'upper-case hex is not W3C')
      assert.equal(await ask('not a traceparent'), undefined)
      assert.equal(await ask(undefined), undefined)
    } finally {
      await server.close()
    }
  })
})
