'use strict'
// The process __test__/telemetry.test.mjs observes: OpenTelemetry set up the way an application
// sets it up (the async-hooks context manager, W3C propagation, a tracer provider exporting to
// memory, a meter provider read into memory, and instrumentation-http registered before `http`
// is first required), then Express serving routes that call the gateway, and gatewayRouter.
// Each scenario is one request a client sends with its own `traceparent` (a fresh trace id), so
// the test finds its spans by trace id. It prints one JSON line: spans, metrics, the requests
// the vendor fake received, and what the routes saw.

const api = require('@opentelemetry/api')
const { AsyncHooksContextManager } = require('@opentelemetry/context-async-hooks')
const { W3CTraceContextPropagator } = require('@opentelemetry/core')
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base')
const { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics')
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http')

api.context.setGlobalContextManager(new AsyncHooksContextManager().enable())
api.propagation.setGlobalPropagator(new W3CTraceContextPropagator())
const spans = new InMemorySpanExporter()
api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }))
const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 })
api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }))
let vendorPort = -1
// The vendor fake runs in this process too: its own server spans would only be noise.
new HttpInstrumentation({ ignoreIncomingRequestHook: (req) => req.socket?.localPort === vendorPort })

// Only now: express requires http, which instrumentation-http patches as it is loaded.
const express = require('express')
const { Gateway, countTokens } = require('../../index.js')
const { gatewayRouter } = require('../../lib/express.js')
const { createFerrogate } = require('../../lib/ai-sdk.js')
const ai = require('ai6')

const hrMillis = (time) => time[0] * 1000 + time[1] / 1e6
const randomHex = (bytes) => require('node:crypto').randomBytes(bytes).toString('hex')

async function main() {
  const { startMockVendors, generateOpenAIStream } = await import('./mock-vendors.mjs')
  const vendors = await startMockVendors()
  vendorPort = Number(new URL(vendors.url).port)
  const gateway = new Gateway({
    providers: {
      openai: { kind: 'openai', baseUrl: vendors.openaiBaseUrl, apiKey: 'sk-test-telemetry' },
      claude: { kind: 'anthropic', baseUrl: vendors.anthropicBaseUrl, apiKey: 'sk-ant-test' },
    },
    retryBaseDelayMs: 5,
  })
  // What an aborted stream delivered is counted with the tokenizer; loading it takes seconds in a
  // debug build, which would otherwise fall inside the abort scenario.
  countTokens('gpt-4o-mini', 'warm up')
  const seen = {}
  const messages = [{ role: 'user', content: 'Say hello' }]
  const app = express()
  app.use('/api', express.json())
  app.post('/api/chat', async (req, res) => {
    try {
      res.json(await gateway.chat({ model: 'openai/gpt-4o-mini', messages, maxTokens: 50, temperature: 0.2, topP: 0.9 }))
    } catch (error) {
      res.status(error.status ?? 500).json({ code: error.code })
    }
  })
  app.post('/api/stream', async (req, res) => {
    const response = await gateway.stream({ model: 'openai/gpt-4o-mini', messages }, (text) => res.write(text))
    seen.streamEndedAt = Date.now()
    seen.streamRequestId = response.requestId
    res.end()
  })
  app.post('/api/events', async (req, res) => {
    for await (const event of gateway.streamEvents({ model: 'openai/gpt-4o-mini', messages })) {
      if (event.type === 'text') res.write(event.text)
    }
    seen.eventsEndedAt = Date.now()
    res.end()
  })
  app.post('/api/abort', async (req, res) => {
    const controller = new AbortController()
    try {
      for await (const event of gateway.streamEvents({ model: 'openai/gpt-4o-mini', messages, signal: controller.signal })) {
        if (event.type === 'text') controller.abort()
      }
      res.status(500).end('not aborted')
    } catch (error) {
      seen.abortCode = error.code ?? error.name
      res.status(499).end()
    }
  })
  app.post('/api/embed', async (req, res) => {
    res.json(await gateway.embed({ model: 'openai/text-embedding-3-small', input: ['one', 'two'] }))
  })
  app.post('/api/ai-sdk', async (req, res) => {
    const fg = createFerrogate({ gateway })
    const result = await ai.generateText({ model: fg('openai/gpt-4o-mini'), prompt: 'Say hi', maxOutputTokens: 30 })
    res.json({ text: result.text, requestId: result.providerMetadata?.ferrogate?.requestId })
  })
  app.use(gatewayRouter(gateway, { log: false }))
  const server = await new Promise((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening))
  })
  const base = `http://127.0.0.1:${server.address().port}`

  // A client's request, in a trace of its own: `traceparent` names the client's span.
  const traces = {}
  // TELEMETRY_SCENARIOS=chat,… runs only those.
  const only = process.env.TELEMETRY_SCENARIOS?.split(',')
  async function send(name, path, body, prepare) {
    if (only && !only.includes(name)) return
    prepare?.()
    const trace = { traceId: randomHex(16), clientSpanId: randomHex(8), vendorMark: vendors.mark() }
    traces[name] = trace
    const response = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${trace.traceId}-${trace.clientSpanId}-01` },
      body: JSON.stringify(body ?? {}),
    })
    trace.status = response.status
    trace.body = await response.text()
    trace.vendorRequests = vendors.requests.slice(trace.vendorMark).map((request) => ({ path: request.path, traceparent: request.headers.traceparent ?? null }))
  }

  const openaiError = (status) => ({ status, headers: { 'content-type': 'application/json' }, body: { error: { message: `transient ${status}`, type: 'server_error', param: null, code: null } } })
  await send('chat', '/api/chat')
  await send('retry', '/api/chat', undefined, () => vendors.enqueue('openai', openaiError(500)))
  await send('stream', '/api/stream', undefined, () =>
    vendors.enqueue('openai', { sse: generateOpenAIStream({ chunks: 4 }).split(/(?<=\n\n)/), delayMs: 40 }),
  )
  await send('events', '/api/events')
  await send('abort', '/api/abort', undefined, () =>
    vendors.enqueue('openai', { sse: ['data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"first"},"finish_reason":null}]}\n\n'], hang: true, endWithoutTerminator: true }),
  )
  await send('embed', '/api/embed')
  await send('aiSdk', '/api/ai-sdk')
  await send('routerChat', '/v1/chat/completions', { model: 'openai/gpt-4o-mini', messages, max_tokens: 40 })
  await send('routerStream', '/v1/chat/completions', { model: 'openai/gpt-4o-mini', messages, stream: true, stream_options: { include_usage: true } })
  await send('routerMessages', '/v1/messages', { model: 'claude/claude-sonnet-4-5', max_tokens: 30, messages })
  await send('routerResponses', '/v1/responses', { model: 'openai/gpt-4o-mini', input: 'Say hello' })
  await send('routerEmbeddings', '/v1/embeddings', { model: 'openai/text-embedding-3-small', input: 'one' })
  // A client without a traceparent: the router's server span starts the trace.
  if (!only) await sendUntraced()
  async function sendUntraced() {
  const untraced = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/gpt-4o-mini', messages }),
  })
  seen.untracedStatus = untraced.status
  await untraced.text()
  seen.untracedVendorTraceparent = vendors.requests.at(-1).headers.traceparent ?? null
  }

  await reader.forceFlush()
  const metrics = []
  for (const { scopeMetrics } of metricExporter.getMetrics()) {
    for (const scope of scopeMetrics) {
      for (const metric of scope.metrics) {
        metrics.push({
          scope: scope.scope.name,
          name: metric.descriptor.name,
          unit: metric.descriptor.unit,
          points: metric.dataPoints.map((point) => ({
            attributes: point.attributes,
            count: point.value.count,
            sum: point.value.sum,
            boundaries: point.value.buckets?.boundaries,
          })),
        })
      }
    }
  }
  const finished = spans.getFinishedSpans().map((span) => ({
    name: span.name,
    kind: span.kind,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext?.spanId ?? span.parentSpanId ?? null,
    start: hrMillis(span.startTime),
    end: hrMillis(span.endTime),
    attributes: span.attributes,
    status: span.status,
    scope: span.instrumentationScope?.name ?? span.instrumentationLibrary?.name,
  }))
  process.stdout.write(`${JSON.stringify({ traces, spans: finished, metrics, seen, vendorErrors: vendors.errors.map(String) })}\n`)
  server.close()
  server.closeAllConnections?.()
  await gateway.close()
  await vendors.close()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
