'use strict'
// OpenTelemetry GenAI spans and metrics for gateway calls (docs/API.md, "Telemetry").
//
// `@opentelemetry/api` is an optional peer: it is looked for once, on the first call. A call
// then costs one read of the api's global registry to learn that neither a tracer provider nor
// a meter provider is registered (bench/cpu-per-call.mjs measures it), and nothing else.
//
// With a tracer provider, each call gets a CLIENT span in the active context; its W3C context
// goes to the native call as `traceparent`, which every upstream request carries. The native
// side notes each attempt (target, start, end, error) and hands a report over just before the
// call's end (delivery kind 7); the call span and, when the call retried or fell back, one child
// span per attempt are made from it, with the attempts' own times.

const SPAN_KIND_CLIENT = 2 // api.SpanKind.CLIENT
const STATUS_ERROR = 2 // api.SpanStatusCode.ERROR

// The delivery kinds of lib/delivery.js's dispatch (src/binding/pump.rs) this module reads.
const DONE = 2
const FAILED = 3
const HEAD = 4
const END = 6
const TRACE = 7

// The GenAI semantic conventions' advised bucket boundaries.
const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]

// `gen_ai.provider.name` per provider kind (the conventions' well-known values).
const PROVIDER_NAMES = { openai: 'openai', anthropic: 'anthropic', gemini: 'gcp.gemini', mock: 'ferrogate.mock' }

// The front door's call routes: the operation each one is.
const INGRESS_OPERATIONS = {
  '/v1/chat/completions': 'chat',
  '/v1/responses': 'chat',
  '/v1/messages': 'chat',
  '/v1/embeddings': 'embeddings',
}

let api // undefined until looked for; null when not installed
// Where api 1.x keeps what was registered globally: no `trace` and no `metrics` entry means no
// provider of either kind, which is all a call needs to know in the common case.
const REGISTRY = Symbol.for('opentelemetry.js.api.1')
let NoopTracerProvider
let NoopMeter
let seenTracerDelegate
let tracer = null // the registered provider's tracer; null while none is registered
let seenMeterProvider
let instruments = null // { duration, tokens } of the registered meter provider, or null
let captureContent = false
let version

function load() {
  try {
    api = require('@opentelemetry/api')
  } catch (error) {
    if (error?.code !== 'MODULE_NOT_FOUND') throw error
    api = null
    return
  }
  NoopTracerProvider = new api.ProxyTracerProvider().getDelegate().constructor
  NoopMeter = api.createNoopMeter().constructor
  captureContent = /^true$/i.test(process.env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT ?? '')
  version = require('../package.json').version
}

/** True when a tracer or meter provider is registered: the call is then observed. */
function observed() {
  if (api === undefined) load()
  if (api === null) return false
  const registry = globalThis[REGISTRY]
  if (registry === undefined || (registry.trace === undefined && registry.metrics === undefined)) return false
  const provider = api.trace.getTracerProvider()
  const delegate = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider
  if (delegate !== seenTracerDelegate) {
    seenTracerDelegate = delegate
    tracer = delegate instanceof NoopTracerProvider ? null : delegate.getTracer('ferrogate', version)
  }
  const meterProvider = api.metrics.getMeterProvider()
  if (meterProvider !== seenMeterProvider) {
    seenMeterProvider = meterProvider
    instruments = makeInstruments(meterProvider)
  }
  return tracer !== null || instruments !== null
}

function makeInstruments(meterProvider) {
  const meter = meterProvider.getMeter('ferrogate', version)
  if (meter instanceof NoopMeter) return null
  return {
    duration: meter.createHistogram('gen_ai.client.operation.duration', {
      description: 'GenAI operation duration',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    }),
    tokens: meter.createHistogram('gen_ai.client.token.usage', {
      description: 'Number of input and output tokens used',
      unit: '{token}',
      valueType: api.ValueType.INT,
      advice: { explicitBucketBoundaries: TOKEN_BUCKETS },
    }),
  }
}

/** The context a call made now would nest under (undefined when nothing observes calls). */
function activeContext() {
  return observed() && tracer !== null ? api.context.active() : undefined
}

const now = () => performance.timeOrigin + performance.now()

const traceparentOf = (spanContext) =>
  `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags & 0xff).toString(16).padStart(2, '0')}`

/** One observed call: its span (when a tracer provider is registered) and its metrics. */
class CallTelemetry {
  constructor(operation, model, stream, parent, request) {
    this.operation = operation
    this.model = model
    this.stream = stream
    this.request = request
    this.started = now()
    this.report = null
    this.ended = false
    this.span = null
    this.traceparent = undefined
    if (tracer !== null) {
      const attributes = { 'gen_ai.operation.name': operation, 'gen_ai.request.stream': stream }
      if (model) attributes['gen_ai.request.model'] = model
      try {
        this.span = tracer.startSpan(
          model ? `${operation} ${model}` : operation,
          { kind: SPAN_KIND_CLIENT, startTime: this.started, attributes },
          parent ?? api.context.active(),
        )
        const spanContext = this.span.spanContext()
        if (api.isSpanContextValid(spanContext)) this.traceparent = traceparentOf(spanContext)
      } catch {
        // As in end(): a throwing span processor leaves the call untraced, never failed.
        this.span = null
      }
    }
  }

  /** A delivery of this call (lib/delivery.js's dispatch), before the call itself sees it. */
  delivered(kind, payload) {
    if (kind === TRACE) this.report = payload
    else if (kind === DONE) this.end(payload, undefined)
    else if (kind === FAILED) this.end(undefined, payload.code)
    else if (kind === END) this.end(undefined, undefined)
    else if (kind === HEAD && payload.body !== undefined) this.end(undefined, payload.status >= 400 ? String(payload.status) : undefined)
  }

  /** The caller left early (a stream's consumer broke out, onChunk threw): the call is aborted. */
  abandoned() {
    this.end(undefined, 'ABORTED')
  }

  /** The call could not start: ends the span with `code` and hands `error` back for the caller to throw. */
  refused(error, code) {
    this.end(undefined, code)
    return error
  }

  /** An embeddings outcome `{ response, error, trace }`. */
  settled(outcome) {
    if (outcome.trace) this.report = outcome.trace
    this.end(outcome.response, outcome.error?.code)
  }

  end(response, errorCode) {
    if (this.ended) return
    this.ended = true
    try {
      this.#record(response, errorCode)
    } catch {
      // A throwing span processor or exporter never fails the call it observes.
    }
  }

  #record(response, errorCode) {
    const endTime = now()
    const report = this.report
    // The pipeline's own code, else what the caller learned (an abort, a refusal, an HTTP status).
    errorCode = report?.errorCode ?? errorCode
    const model = report?.model ?? this.model
    // "provider/model": the vendor's model name is what was asked of it.
    const requestModel = report?.provider && model?.startsWith(`${report.provider}/`) ? model.slice(report.provider.length + 1) : model
    const providerName = report ? (PROVIDER_NAMES[report.providerKind] ?? report.provider) : undefined
    const common = { 'gen_ai.operation.name': this.operation }
    if (providerName) common['gen_ai.provider.name'] = providerName
    if (requestModel) common['gen_ai.request.model'] = requestModel
    if (report?.responseModel) common['gen_ai.response.model'] = report.responseModel
    if (report?.serverAddress) {
      common['server.address'] = report.serverAddress
      if (report.serverPort) common['server.port'] = report.serverPort
    }
    if (errorCode) common['error.type'] = errorCode
    if (this.span !== null) this.#endSpan(report, common, requestModel, response, errorCode, endTime)
    if (instruments !== null) {
      instruments.duration.record((endTime - this.started) / 1000, common)
      if (report && (report.inputTokens > 0 || report.outputTokens > 0)) {
        const attributes = { ...common }
        delete attributes['error.type']
        instruments.tokens.record(report.inputTokens, { ...attributes, 'gen_ai.token.type': 'input' })
        if (this.operation !== 'embeddings') {
          instruments.tokens.record(report.outputTokens, { ...attributes, 'gen_ai.token.type': 'output' })
        }
      }
    }
  }

  #endSpan(report, common, requestModel, response, errorCode, endTime) {
    const span = this.span
    if (requestModel && requestModel !== this.model) span.updateName(`${this.operation} ${requestModel}`)
    const attributes = { ...common }
    if (report) {
      if (report.responseId) attributes['gen_ai.response.id'] = report.responseId
      if (report.finishReason) attributes['gen_ai.response.finish_reasons'] = [report.finishReason]
      if (!errorCode || report.inputTokens > 0) {
        attributes['gen_ai.usage.input_tokens'] = report.inputTokens
        if (this.operation !== 'embeddings') attributes['gen_ai.usage.output_tokens'] = report.outputTokens
        if (report.cacheReadTokens > 0) attributes['gen_ai.usage.cache_read.input_tokens'] = report.cacheReadTokens
      }
      if (report.maxTokens != null) attributes['gen_ai.request.max_tokens'] = report.maxTokens
      if (report.temperature != null) attributes['gen_ai.request.temperature'] = report.temperature
      if (report.topP != null) attributes['gen_ai.request.top_p'] = report.topP
      attributes['gen_ai.request.stream'] = report.stream
      if (report.stream && report.ttftMs != null) attributes['gen_ai.response.time_to_first_chunk'] = report.ttftMs / 1000
      attributes['ferrogate.cost_usd'] = report.costUsd
      attributes['ferrogate.cached'] = report.cached
      attributes['ferrogate.attempts'] = report.attempts
      if (report.route) attributes['ferrogate.route'] = report.route
      if (report.requestId) attributes['ferrogate.request_id'] = report.requestId
    }
    if (captureContent) this.#content(attributes, response)
    span.setAttributes(attributes)
    if (errorCode) span.setStatus({ code: STATUS_ERROR, message: errorCode })
    // One child span per attempt when the call retried or fell back, with the attempts' own times.
    const attempts = report?.attemptSpans ?? []
    if (attempts.length > 1) {
      const parent = api.trace.setSpan(api.context.active(), span)
      attempts.forEach((attempt, index) => {
        const attemptAttributes = {
          'ferrogate.attempt': index + 1,
          'gen_ai.operation.name': this.operation,
          'gen_ai.provider.name': PROVIDER_NAMES[attempt.providerKind] ?? attempt.provider,
          'gen_ai.request.model': attempt.model,
        }
        if (attempt.serverAddress) attemptAttributes['server.address'] = attempt.serverAddress
        if (attempt.serverPort) attemptAttributes['server.port'] = attempt.serverPort
        if (attempt.errorCode) attemptAttributes['error.type'] = attempt.errorCode
        const child = tracer.startSpan(
          `attempt ${attempt.provider}/${attempt.model}`,
          { kind: SPAN_KIND_CLIENT, startTime: this.started + attempt.startMs, attributes: attemptAttributes },
          parent,
        )
        if (attempt.errorCode) child.setStatus({ code: STATUS_ERROR, message: attempt.errorCode })
        child.end(this.started + (attempt.endMs ?? attempt.startMs))
      })
    }
    span.end(endTime)
  }

  // Opt-in (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true): the conversation as the
  // conventions' gen_ai.input.messages / gen_ai.output.messages JSON.
  #content(attributes, response) {
    const messages = this.request?.messages
    if (Array.isArray(messages)) {
      attributes['gen_ai.input.messages'] = JSON.stringify(messages.map((message) => ({ role: message.role, parts: parts(message.content) })))
    }
    if (response && typeof response.content === 'string') {
      const output = { role: 'assistant', parts: parts(response.content) }
      if (Array.isArray(response.toolCalls)) {
        for (const call of response.toolCalls) {
          output.parts.push({ type: 'tool_call', id: call.id, name: call.name, arguments: call.arguments })
        }
      }
      if (response.finishReason) output.finish_reason = response.finishReason
      attributes['gen_ai.output.messages'] = JSON.stringify([output])
    }
  }
}

function parts(content) {
  if (typeof content === 'string') return [{ type: 'text', content }]
  if (!Array.isArray(content)) return []
  return content.map((part) => (part?.type === 'text' ? { type: 'text', content: part.text } : { type: part?.type ?? 'unknown' }))
}

/**
 * A library call about to start: its telemetry, or null when nothing observes calls (then the
 * call costs this check only). `parent` is the context to nest under (default: the active one).
 */
function startCall(operation, body, stream, parent) {
  if (!observed()) return null
  return new CallTelemetry(operation, typeof body?.model === 'string' ? body.model : undefined, stream, parent, body)
}

/**
 * A front-door request (gatewayRouter) about to be handed over: its telemetry and the headers
 * to hand over, whose `traceparent` is the call span's (a client's own `traceparent` then is
 * the parent of the server span the call nests under). `rawHeaders`: name, value, name, …
 */
function startIngress(method, path, rawHeaders) {
  if (!observed() || method !== 'POST') return null
  const route = String(path).split('?')[0].replace(/\/+$/, '')
  const operation = INGRESS_OPERATIONS[route]
  if (operation === undefined) return null
  const telemetry = new CallTelemetry(operation, undefined, false, undefined, undefined)
  if (telemetry.traceparent !== undefined) {
    const headers = []
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      if (String(rawHeaders[i]).toLowerCase() !== 'traceparent') headers.push(rawHeaders[i], rawHeaders[i + 1])
    }
    headers.push('traceparent', telemetry.traceparent)
    telemetry.headers = headers
  }
  return telemetry
}

module.exports = { startCall, startIngress, activeContext }
