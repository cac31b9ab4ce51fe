'use strict'
// The shapes of what JS hands the native layer (GatewayOptions, ProviderConfig, ChatRequest and
// the options of the classes a gateway takes), for errors a caller can act on.
//
// When napi meets a value of the wrong type, its own message names Rust types ("rust type f64")
// and can quote the value itself: a key given as `{ value: 'sk-…' }` or as a Buffer would end up
// in a log. So that message is never shown: `shapeProblem()` walks the value against its shape
// and words the first wrong field as "temperature must be a number (got a string)". It names the
// field, the type it needs and the type it got, never the value.
//
// The same field lists tell `ferrogate serve` which config keys exist (`unknownKeys`).

const { FerrogateError, newRequestId, configError } = require('./errors.js')

/** The type of a value in words ("a string", "an array", "null"), never the value. */
function typeOf(value) {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return 'binary data'
  switch (typeof value) {
    case 'object':
      return 'an object'
    case 'undefined':
      return 'nothing'
    case 'number':
      return Number.isNaN(value) ? 'NaN' : 'a number'
    default:
      return `a ${typeof value}`
  }
}

const isPlainObject = (value) => value != null && typeof value === 'object' && !Array.isArray(value) && !ArrayBuffer.isView(value)

// A shape is { expect: 'words for what it needs', test(value) → bool } plus, for containers,
// what their members are.
const string = { expect: 'a string', test: (v) => typeof v === 'string' }
const number = { expect: 'a number', test: (v) => typeof v === 'number' }
const boolean = { expect: 'true or false', test: (v) => typeof v === 'boolean' }
const func = { expect: 'a function', test: (v) => typeof v === 'function' }
const anything = { expect: 'any value', test: () => true }
const jsonObject = { expect: 'an object (a JSON Schema)', test: isPlainObject }

const arrayOf = (item, expect) => ({ expect, test: Array.isArray, item })
/** An array of strings, judged whole: "stop must be a string or an array of strings" reads better than "stop[3] …". */
const strings = { expect: 'an array of strings', test: (v) => Array.isArray(v) && v.every((s) => typeof s === 'string') }
const recordOf = (value, expect) => ({ expect, test: isPlainObject, value })
/** An object with known `fields`; `required` lists the ones that must be present. */
const object = (fields, { required = [], expect = 'an object' } = {}) => ({ expect, test: isPlainObject, fields, required })
const oneOf = (expect, ...shapes) => ({ expect, test: (v) => shapes.some((s) => s.test(v)), shapes })

/** A prompt-caching breakpoint: `true` or `{ ttl: '5m' | '1h' }`. */
const cacheBreakpoint = oneOf(
  "true or an object { ttl: '5m' | '1h' }",
  boolean,
  object({ ttl: oneOf("'5m' or '1h'", { expect: "'5m'", test: (v) => v === '5m' }, { expect: "'1h'", test: (v) => v === '1h' }) }),
)
const contentPart = object(
  { type: string, text: string, data: string, mimeType: string, url: string, cache: cacheBreakpoint },
  { required: ['type'], expect: 'an object { type, text | data | url }' },
)
const toolCall = object(
  { id: string, name: string, arguments: string, thoughtSignature: string },
  { required: ['id', 'name', 'arguments'], expect: 'an object { id, name, arguments }' },
)
const message = object(
  {
    role: string,
    content: oneOf('a string, an array of parts or null', string, arrayOf(contentPart, 'an array of parts'), { expect: 'null', test: (v) => v === null }),
    toolCallId: string,
    toolCalls: arrayOf(toolCall, 'an array of tool calls { id, name, arguments }'),
    cache: cacheBreakpoint,
  },
  { required: ['role'], expect: 'an object { role, content }' },
)
const toolDefinition = object({ name: string, description: string, parameters: jsonObject, cache: cacheBreakpoint }, { required: ['name'], expect: 'an object { name, description?, parameters? }' })

const CHAT_REQUEST = object(
  {
    model: string,
    messages: arrayOf(message, 'an array of messages { role, content }'),
    temperature: number,
    topP: number,
    maxTokens: number,
    stop: oneOf('a string or an array of strings', string, strings),
    responseFormat: object({ type: string, name: string, schema: jsonObject }, { required: ['type'], expect: "an object { type: 'text' | 'json_object' | 'json_schema', schema? }" }),
    tools: arrayOf(toolDefinition, 'an array of tools { name, description?, parameters? }'),
    toolChoice: oneOf("'auto', 'none', 'required' or an object { name }", string, object({ name: string }, { required: ['name'] })),
    user: string,
    metadata: recordOf(string, 'an object of strings'),
    cache: boolean,
    timeoutMs: number,
    maxRetries: number,
    priority: number,
    promptCacheKey: string,
    signal: { expect: 'an AbortSignal', test: (v) => typeof v?.aborted === 'boolean' && typeof v.addEventListener === 'function' },
  },
  { required: ['model', 'messages'], expect: 'an object { model, messages }' },
)

const PROVIDER_CONFIG = object(
  {
    kind: string,
    apiKey: string,
    baseUrl: string,
    models: strings,
    headers: recordOf(string, 'an object of strings'),
    organization: string,
    timeoutMs: number,
    maxRetries: number,
    mockChunkDelayMs: number,
    caCertPath: string,
    api: oneOf("'chat' or 'responses'", { expect: "'chat'", test: (v) => v === 'chat' }, { expect: "'responses'", test: (v) => v === 'responses' }),
    apiKeys: strings,
    deployment: string,
    apiVersion: string,
    azureAdToken: oneOf('a string or an async function returning one', string, func),
    region: string,
    credentials: object(
      { accessKeyId: string, secretAccessKey: string, sessionToken: string },
      { required: ['accessKeyId', 'secretAccessKey'], expect: 'an object { accessKeyId, secretAccessKey, sessionToken? }' },
    ),
    project: string,
    location: string,
    credentialsPath: string,
  },
  { required: ['kind'], expect: "an object { kind: 'openai' | 'anthropic' | 'gemini' | 'azure' | 'bedrock' | 'vertex' | 'mock' | a preset, … }" },
)

const ROUTE_TARGET = object(
  { provider: string, model: string, weight: number, maxConcurrent: number, healthCheck: boolean },
  { required: ['provider', 'model'], expect: 'an object { provider, model, weight? }' },
)

const ROUTING_OPTIONS = object({
  consecutiveFailures: number,
  errorRate: number,
  errorRateWindow: number,
  cooldownMs: number,
  healthCheckIntervalMs: number,
  queueLimit: number,
})

const RESPONSE_CACHE_OPTIONS = object({
  maxEntries: number,
  maxBytes: number,
  ttlSeconds: number,
  namespace: string,
  redisUrl: string,
  prefix: string,
  maxValueBytes: number,
})

const SEMANTIC_CACHE_OPTIONS = object(
  {
    embeddingModel: string,
    threshold: number,
    maxEntries: number,
    ttlSeconds: number,
    namespace: string,
    scope: object({ maxMessages: number }),
    redisUrl: string,
    prefix: string,
  },
  { required: ['embeddingModel'], expect: 'an options object { embeddingModel }' },
)

const RATE_LIMITER_OPTIONS = object({
  requestsPerMinute: number,
  tokensPerMinute: number,
  burst: number,
  redisUrl: string,
  failOpen: boolean,
  prefix: string,
})

const COST_TRACKER_OPTIONS = object({
  pricing: oneOf('a file path or an object of prices', string, recordOf(anything, 'an object of prices')),
  ledgerPath: string,
  highCostOutputPerMillion: number,
  postgresUrl: string,
  postgresSchema: string,
  ledgerBufferRows: number,
  redisUrl: string,
  prefix: string,
})

const RESPONSES_OPTIONS = object({
  redisUrl: string,
  prefix: string,
  ttlSeconds: number,
  maxEntries: number,
  maxBytes: number,
})

/** One guardrail (GatewayOptions.guardrails.input / .output); the native side checks the values. */
const GUARDRAIL = object(
  {
    type: string,
    name: string,
    entities: strings,
    action: string,
    pattern: string,
    limit: number,
    check: func,
    timeoutMs: number,
    onError: string,
  },
  { required: ['type'], expect: "an object { type: 'pii' | 'regex' | 'maxInputTokens' | 'custom', … }" },
)
const GUARDRAILS = object({
  input: arrayOf(GUARDRAIL, 'an array of guardrails'),
  output: arrayOf(GUARDRAIL, 'an array of guardrails'),
})

/** serve's connection layer (the config's `server` object). */
const SERVER_OPTIONS = object({
  headersTimeoutMs: number,
  bodyTimeoutMs: number,
  keepAliveTimeoutMs: number,
  maxConnections: number,
  shutdownGraceMs: number,
})

const instanceOrFalse = (expect) => ({ expect, test: (v) => v === false || isPlainObject(v) })

/** The fields of GatewayOptions the native gateway reads, and those JS handles (instances, hooks). */
const GATEWAY_OPTIONS = object(
  {
    providers: recordOf(PROVIDER_CONFIG, 'an object of providers by name'),
    routes: recordOf(arrayOf(ROUTE_TARGET, 'an array of targets { provider, model }'), 'an object of routes by alias'),
    routing: ROUTING_OPTIONS,
    timeoutMs: number,
    maxRetries: number,
    retryBaseDelayMs: number,
    defaultProvider: string,
    cache: instanceOrFalse('a ResponseCache or false'),
    semanticCache: instanceOrFalse('a SemanticCache or false'),
    rateLimiter: instanceOrFalse('a RateLimiter'),
    costs: instanceOrFalse('a CostTracker'),
    responses: RESPONSES_OPTIONS,
    guardrails: GUARDRAILS,
    onCall: func,
    onAnomaly: func,
  },
  { required: ['providers'], expect: 'an options object { providers }' },
)

/** `ferrogate serve`'s config: GatewayOptions as JSON (the class instances as their options) plus the server's keys. */
const SERVE_CONFIG = object(
  {
    ...GATEWAY_OPTIONS.fields,
    cache: oneOf('ResponseCache options or false', RESPONSE_CACHE_OPTIONS, { expect: 'false', test: (v) => v === false }),
    semanticCache: oneOf('SemanticCache options or false', SEMANTIC_CACHE_OPTIONS, { expect: 'false', test: (v) => v === false }),
    rateLimiter: RATE_LIMITER_OPTIONS,
    costs: COST_TRACKER_OPTIONS,
    host: string,
    port: number,
    engine: string,
    server: SERVER_OPTIONS,
    keys: arrayOf(object({ key: string, user: string, dailyTokenQuota: number }, { required: ['key'], expect: 'an object { key, user?, dailyTokenQuota? }' }), 'an array of { key, user?, dailyTokenQuota? }'),
  },
  { required: ['providers'], expect: 'a JSON object { providers, … }' },
)
// JS functions have no place in a JSON file.
delete SERVE_CONFIG.fields.onCall
delete SERVE_CONFIG.fields.onAnomaly

const join = (at, key) => (at === '' ? key : /^[A-Za-z_$][\w$]*$/.test(key) ? `${at}.${key}` : `${at}[${JSON.stringify(key)}]`)

/**
 * The first field of `value` whose type does not fit `shape`, in words ("temperature must be a
 * number (got a string)"), or undefined when every field fits. Absent optional fields fit.
 */
function shapeProblem(shape, value, at = '') {
  const name = at === '' ? 'the value' : at
  if (!shape.test(value)) return `${name} must be ${shape.expect} (got ${typeOf(value)})`
  if (shape.shapes) {
    // The first alternative that fits decides which members to check.
    const fitting = shape.shapes.find((s) => s.test(value))
    return fitting ? shapeProblem(fitting, value, at) : undefined
  }
  if (shape.item) {
    for (let i = 0; i < value.length; i++) {
      const problem = shapeProblem(shape.item, value[i], `${at}[${i}]`)
      if (problem) return problem
    }
  }
  if (shape.value) {
    for (const [key, member] of Object.entries(value)) {
      const problem = shapeProblem(shape.value, member, join(at, key))
      if (problem) return problem
    }
  }
  if (shape.fields) {
    for (const key of shape.required) {
      if (value[key] === undefined) return `${join(at, key)} is required (${shape.fields[key].expect})`
    }
    for (const [key, field] of Object.entries(shape.fields)) {
      const member = value[key]
      // null stands for "not given", as the native layer reads it.
      if (member === undefined || (member === null && !shape.required.includes(key))) continue
      const problem = shapeProblem(field, member, join(at, key))
      if (problem) return problem
    }
  }
  return undefined
}

/**
 * Whether every top-level field of `value` has the right type, without looking inside
 * arrays and objects: cheap enough for every call. napi checks what is inside, but some
 * top-level mistakes (a number where an object of strings belongs) it lets through as empty.
 */
function topLevelFits(shape, value) {
  for (const key in value) {
    const field = shape.fields[key]
    const member = value[key]
    if (field !== undefined && member != null && !field.test(member)) return false
  }
  return true
}

/** Keys of `value` (and of its known nested objects) that `shape` does not know, with their paths. */
function unknownKeys(shape, value, at = '') {
  if (!isPlainObject(value) && !Array.isArray(value)) return []
  if (shape.shapes) {
    const fitting = shape.shapes.find((s) => s.test(value))
    return fitting ? unknownKeys(fitting, value, at) : []
  }
  const found = []
  if (shape.item && Array.isArray(value)) value.forEach((member, i) => found.push(...unknownKeys(shape.item, member, `${at}[${i}]`)))
  if (shape.value && isPlainObject(value)) {
    for (const [key, member] of Object.entries(value)) found.push(...unknownKeys(shape.value, member, join(at, key)))
  }
  if (shape.fields && isPlainObject(value)) {
    for (const [key, member] of Object.entries(value)) {
      if (!Object.hasOwn(shape.fields, key)) found.push({ path: join(at, key), key, known: Object.keys(shape.fields) })
      else found.push(...unknownKeys(shape.fields[key], member, join(at, key)))
    }
  }
  return found
}

/** Edit distance, for "did you mean" (case differences count as half an edit). */
function distance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]
      const same = a[i - 1] === b[j - 1] ? 0 : a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0.5 : 1
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + same)
      diagonal = above
    }
  }
  return row[b.length]
}

/** The known name closest to `name`, when it is close enough to be a likely misspelling. */
function closest(name, known) {
  let best
  let bestDistance = Infinity
  for (const candidate of known) {
    const d = distance(name, candidate)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined
}

// How napi words a value it could not convert (these may quote the value).
const NAPI_WORDING = /Failed to convert|Failed to get|rust type|napi value|JavaScript value|Missing field|Expect value to be|is not an? (?:String|Number|Boolean|Object|Array)\b/i

/** A native failure that is napi's conversion of a wrong type, rather than one of our own messages. */
const isNapiTypeError = (error) => NAPI_WORDING.test(String(error?.message ?? error ?? ''))

/**
 * napi's own words for a wrong type, reduced to what is safe and useful: the field it names,
 * never the value or the Rust type. Any other native message (our own words) is kept.
 */
function plainNapiMessage(message) {
  const text = String(message ?? '')
  if (!NAPI_WORDING.test(text)) return text
  const field = /\bon ([A-Za-z]+\.[A-Za-z_$][\w$]*)/.exec(text)?.[1]
  return field ? `${field} has a value of the wrong type` : 'a field has a value of the wrong type'
}

// The checks that throw: a class's options, a request napi refused, a gateway an add-on needs.

/** Options of a class, checked before its native constructor sees them: a CONFIG error naming the field. */
function checkOptions(shape, options, what) {
  const problem = shapeProblem(shape, options)
  if (problem !== undefined) throw configError(`invalid ${what} options: ${problem}`)
}

// napi's own type check refused a value: its text names Rust types and may quote the value
// (a key in the wrong field), so it is never shown, nor kept as the cause. The message
// names the field and the type it needs instead.
function wrongShape(error, shape, value) {
  return shapeProblem(shape, value) ?? plainNapiMessage(error?.message)
}

/** INVALID_REQUEST for a chat request napi (or topLevelFits) refused. */
const invalidRequestShape = (error, request) =>
  new FerrogateError({
    code: 'INVALID_REQUEST',
    status: 400,
    message: `invalid request: ${wrongShape(error, CHAT_REQUEST, request)}`,
    requestId: newRequestId(),
  })

/** The gateway an add-on (intelligent, codegen, queue, realtime) works over: anything with the method it calls. */
function requireGateway(gateway, who, method = 'chat') {
  if (gateway == null || typeof gateway[method] !== 'function') throw configError(`${who} needs { gateway }: a ferrogate Gateway`)
}

module.exports = {
  checkOptions,
  wrongShape,
  invalidRequestShape,
  requireGateway,
  typeOf,
  shapeProblem,
  topLevelFits,
  unknownKeys,
  closest,
  plainNapiMessage,
  isNapiTypeError,
  CHAT_REQUEST,
  GATEWAY_OPTIONS,
  PROVIDER_CONFIG,
  ROUTE_TARGET,
  ROUTING_OPTIONS,
  GUARDRAIL,
  RESPONSE_CACHE_OPTIONS,
  SEMANTIC_CACHE_OPTIONS,
  RATE_LIMITER_OPTIONS,
  COST_TRACKER_OPTIONS,
  SERVE_CONFIG,
}
