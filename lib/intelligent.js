'use strict'
// ferrogate/intelligent: the seed's AI-assisted middleware (intent recognition, smart
// validation, route suggestion), an error handler that adds a model's analysis, and a code
// generator. Rule for everything here: a model call never makes the host app slower or less
// available than it is without it. Each call has a time budget; when it fails, times out or
// is refused (budget, rate limit), the request goes on exactly as it would without AI, and a
// miss is counted.

const { requirePeer, requirePeers } = require('./peers.js')

requirePeers('ferrogate/intelligent', ['ajv', 'ajv-formats', 'prettier', 'yaml'])

const { describeError, sendError } = require('./express.js')
const { configError } = require('./errors.js')
const { requireGateway } = require('./shapes.js')
const {
  duration,
  fraction,
  requireModel,
  structuredCall,
  missReason,
  newMissCounters,
  TtlCache,
  safely,
  redact,
} = require('./model-call.js')
const { CodeGenerator } = require('./codegen.js')

const MAX_CONTENT_CHARS = 4000
// describeError()'s message for an error whose own message stays on the server.
const HIDDEN_MESSAGE = 'Internal server error'

// ------------------------------------------------------------------------------ intentRecognition

function intentSchema(intents) {
  return {
    type: 'object',
    properties: {
      intent: intents ? { type: 'string', enum: intents } : { type: 'string', minLength: 1 },
      entities: {
        type: 'array',
        items: {
          type: 'object',
          properties: { type: { type: 'string' }, value: { type: 'string' } },
          required: ['type', 'value'],
          additionalProperties: false,
        },
      },
      confidence: { type: 'number', minimum: 0, maximum: 1 },
      suggestedAction: { type: 'string' },
    },
    required: ['intent', 'entities', 'confidence', 'suggestedAction'],
    additionalProperties: false,
  }
}

/** The text to classify: `body.message`, `body.query`, then `?q=`. */
function contentOf(req) {
  const body = req.body
  for (const candidate of [body?.message, body?.query]) {
    if (typeof candidate === 'string' && candidate.trim() !== '') return candidate
  }
  let q = req.query?.q
  if (q === undefined && typeof req.url === 'string' && req.url.includes('?')) {
    q = new URLSearchParams(req.url.slice(req.url.indexOf('?') + 1)).get('q') ?? undefined
  }
  if (Array.isArray(q)) q = q[0]
  return typeof q === 'string' && q.trim() !== '' ? q : undefined
}

// Header values must be visible ASCII; a free-form intent from the model may not be.
const headerSafe = (text) => String(text).replace(/[^\x20-\x7e]/g, '').slice(0, 200)

function checkIntentAnswer(value, intents) {
  const invalid = (why) => Object.assign(new Error(`the model's intent answer ${why}`), { code: 'INVALID_ANSWER' })
  if (value == null || typeof value !== 'object' || Array.isArray(value)) throw invalid('is not an object')
  const { intent, confidence } = value
  if (typeof intent !== 'string' || intent === '') throw invalid('has no intent')
  if (intents && !intents.includes(intent)) throw invalid(`names an intent outside the list: ${intent}`)
  if (typeof confidence !== 'number' || !(confidence >= 0 && confidence <= 1)) throw invalid('has no confidence from 0 to 1')
  const entities = Array.isArray(value.entities)
    ? value.entities
        .filter((e) => e != null && typeof e === 'object' && typeof e.type === 'string' && typeof e.value === 'string')
        .map((e) => ({ type: e.type, value: e.value }))
    : []
  const suggestedAction = typeof value.suggestedAction === 'string' ? value.suggestedAction : ''
  return { intent, entities, confidence, suggestedAction }
}

function checkIntents(intents) {
  if (intents === undefined) return undefined
  if (!Array.isArray(intents) || intents.length === 0 || intents.some((i) => typeof i !== 'string' || i === '')) {
    throw configError('intentRecognition intents must be a non-empty array of non-empty strings')
  }
  return [...new Set(intents)]
}

/**
 * Sets `req.aiContext = { intent, entities, confidence, suggestedAction }` from one
 * structured-output call, and `X-AI-Intent` / `X-AI-Confidence` when confidence reaches
 * `minConfidence`. Calls `next()` within `timeoutMs` whatever the model does.
 */
function intentRecognition(options = {}) {
  const who = 'intentRecognition'
  requireGateway(options.gateway, who)
  requireModel(options.model, who)
  const { gateway, model } = options
  const intents = checkIntents(options.intents)
  const minConfidence = fraction(options.minConfidence, 'minConfidence', 0.8)
  const timeoutMs = duration(options.timeoutMs, 'timeoutMs', 1500)
  const cacheTtlSeconds = options.cacheTtlSeconds ?? 300
  if (typeof cacheTtlSeconds !== 'number' || !(cacheTtlSeconds >= 0)) throw configError('cacheTtlSeconds must be a number ≥ 0')
  const cache = new TtlCache({ ttlMs: cacheTtlSeconds * 1000, maxEntries: options.maxCacheEntries ?? 1000 })
  const userOf = typeof options.user === 'function' ? options.user : (req) => req.ai?.user
  const schema = intentSchema(intents)
  const system = [
    "You classify a message sent to a web application's API.",
    intents ? `The intent is one of: ${intents.join(', ')}.` : 'Name the intent in a few words, snake_case.',
    'List the entities the message mentions as { type, value } pairs,',
    'give your confidence from 0 to 1, and a short snake_case action the application could take (suggestedAction).',
  ].join(' ')
  const counters = { requests: 0, recognized: 0, cacheHits: 0, skipped: 0, misses: 0, missReasons: newMissCounters() }

  const recognize = (content, user) =>
    structuredCall(gateway, {
      model,
      name: 'intent',
      schema,
      system,
      prompt: redact(content),
      user,
      timeoutMs,
      maxTokens: 300,
      feature: 'intentRecognition',
    }).then(({ value }) => checkIntentAnswer(value, intents))

  const apply = (req, res, context) => {
    req.aiContext = { ...context, entities: context.entities.map((e) => ({ ...e })) }
    if (context.confidence >= minConfidence && !res.headersSent) {
      res.setHeader('X-AI-Intent', headerSafe(context.intent))
      res.setHeader('X-AI-Confidence', String(context.confidence))
    }
  }

  function middleware(req, res, next) {
    let content = contentOf(req)
    if (content === undefined) {
      counters.skipped++
      return next()
    }
    counters.requests++
    content = content.slice(0, MAX_CONTENT_CHARS)
    const cached = cache.get(content)
    if (cached !== undefined) {
      counters.cacheHits++
      apply(req, res, cached)
      return next()
    }
    let settled = false
    const proceed = (context, error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (context) {
        counters.recognized++
        apply(req, res, context)
      } else {
        const reason = missReason(error)
        counters.misses++
        counters.missReasons[reason]++
        safely(options.onMiss, reason, error, req)
      }
      next()
    }
    // Our own timer, not the call's: a request that joined a call already in flight waits
    // no longer than its own timeoutMs either.
    const timer = setTimeout(() => proceed(undefined, { code: 'TIMEOUT' }), timeoutMs)
    let user
    try {
      user = userOf(req)
    } catch {
      user = undefined
    }
    cache.shared(content, () => recognize(content, user)).then(
      (context) => proceed(context),
      (error) => proceed(undefined, error),
    )
  }
  middleware.stats = () => ({ ...counters, missReasons: { ...counters.missReasons }, cacheEntries: cache.size })
  return middleware
}

// ------------------------------------------------------------------------------ smartValidation

let ajvModules
function loadAjv() {
  if (!ajvModules) {
    const Ajv = requirePeer('ferrogate/intelligent', 'ajv')
    const addFormats = requirePeer('ferrogate/intelligent', 'ajv-formats')
    ajvModules = { Ajv: Ajv.default ?? Ajv, addFormats: addFormats.default ?? addFormats }
  }
  return ajvModules
}

function newAjv() {
  const { Ajv, addFormats } = loadAjv()
  const ajv = new Ajv({ allErrors: true, strict: false })
  addFormats(ajv)
  return ajv
}

const pathOf = (error) => {
  const base = error.instancePath || ''
  if (error.keyword === 'required') return `${base}/${error.params.missingProperty}`
  if (error.keyword === 'additionalProperties') return `${base}/${error.params.additionalProperty}`
  return base || '/'
}

/** One fix per failed check, worded for a human; what is said when the model is not asked. */
function ruleSuggestion(error) {
  const at = error.instancePath ? `'${error.instancePath.slice(1).replace(/\//g, '.')}'` : 'the body'
  const params = error.params ?? {}
  switch (error.keyword) {
    case 'required':
      return `Add the required field '${[error.instancePath.slice(1).replace(/\//g, '.'), params.missingProperty].filter(Boolean).join('.')}'.`
    case 'additionalProperties':
      return `Remove the field '${params.additionalProperty}': it is not expected here.`
    case 'type':
      return `Send ${at} as ${params.type}.`
    case 'enum':
      return `Use one of ${(params.allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ')} for ${at}.`
    case 'format':
      return `Send ${at} as a valid ${params.format}.`
    default:
      return `Fix ${at}: it ${error.message}.`
  }
}

const suggestionSchema = {
  type: 'object',
  properties: { suggestions: { type: 'array', items: { type: 'string' }, maxItems: 5 } },
  required: ['suggestions'],
  additionalProperties: false,
}

/**
 * Validates `req.body` against the JSON Schema of `req.aiContext.intent` (when the intent
 * is trusted: confidence ≥ minConfidence). A failure answers 400 `{ error: 'Validation
 * failed', details, suggestions }`; with a gateway the suggestions come from the model
 * within `suggestionTimeoutMs`, else (or when it misses) from the failed checks.
 */
function smartValidation(options = {}) {
  const who = 'smartValidation'
  const { schemas } = options
  if (schemas == null || typeof schemas !== 'object') throw configError(`${who} needs schemas: { [intent]: JSONSchema }`)
  if (options.gateway !== undefined) {
    requireGateway(options.gateway, who)
    requireModel(options.model, who)
  }
  const minConfidence = fraction(options.minConfidence, 'minConfidence', 0.7)
  const suggestionTimeoutMs = duration(options.suggestionTimeoutMs, 'suggestionTimeoutMs', 1000)
  const ajv = newAjv()
  const validators = new Map()
  for (const [intent, schema] of Object.entries(schemas)) {
    try {
      validators.set(intent, { validate: ajv.compile(schema), schema })
    } catch (error) {
      throw configError(`${who}: the schema for intent '${intent}' does not compile: ${error.message}`)
    }
  }
  const cache = new TtlCache({ ttlMs: (options.cacheTtlSeconds ?? 300) * 1000, maxEntries: 500 })
  const counters = { validated: 0, failed: 0, modelSuggestions: 0, misses: 0, missReasons: newMissCounters() }

  async function suggestionsFor(intent, schema, details, rules, user) {
    if (!options.gateway) return rules
    const signature = `${intent}\n${details.map((d) => `${d.keyword} ${d.path}`).sort().join('\n')}`
    const cached = cache.get(signature)
    if (cached) return cached
    try {
      // Only the failed checks and the schema go to the model, never the body's values.
      const { value } = await structuredCall(options.gateway, {
        model: options.model,
        name: 'validation_suggestions',
        schema: suggestionSchema,
        system: 'A request body failed JSON Schema validation. Suggest short, concrete fixes the API client can make, one per problem.',
        prompt: redact(JSON.stringify({ intent, schema, problems: details })),
        user,
        timeoutMs: suggestionTimeoutMs,
        maxTokens: 300,
        feature: 'smartValidation',
      })
      const suggestions = Array.isArray(value?.suggestions) ? value.suggestions.filter((s) => typeof s === 'string' && s !== '').slice(0, 5) : []
      if (suggestions.length === 0) throw Object.assign(new Error('no suggestions'), { code: 'INVALID_ANSWER' })
      counters.modelSuggestions++
      cache.set(signature, suggestions)
      return suggestions
    } catch (error) {
      const reason = missReason(error)
      counters.misses++
      counters.missReasons[reason]++
      safely(options.onMiss, reason, error)
      return rules
    }
  }

  function middleware(req, res, next) {
    const context = req.aiContext
    if (!context || typeof context.intent !== 'string' || !(context.confidence >= minConfidence)) return next()
    const entry = validators.get(context.intent)
    if (!entry) return next()
    counters.validated++
    if (entry.validate(req.body ?? {})) return next()
    counters.failed++
    const errors = entry.validate.errors ?? []
    const details = errors.map((e) => ({ path: pathOf(e), keyword: e.keyword, message: e.message ?? 'is invalid', params: e.params }))
    const rules = [...new Set(errors.map(ruleSuggestion))]
    let user
    try {
      user = req.ai?.user
    } catch {
      user = undefined
    }
    suggestionsFor(context.intent, entry.schema, details, rules, user).then((suggestions) => {
      if (res.headersSent) return
      res.statusCode = 400
      res.setHeader('Content-Type', 'application/json; charset=utf-8')
      res.end(JSON.stringify({ error: 'Validation failed', details, suggestions }))
    }, next)
  }
  middleware.stats = () => ({ ...counters, missReasons: { ...counters.missReasons } })
  return middleware
}

// ------------------------------------------------------------------------------ routeSuggestion

/** `X-Suggested-Route` when `req.aiContext.suggestedAction` maps to a path other than this one. */
function routeSuggestion(map) {
  if (map == null || typeof map !== 'object') throw configError('routeSuggestion needs a map { [action]: path }')
  const routes = new Map(Object.entries(map).filter(([, path]) => typeof path === 'string' && path !== ''))
  return function routeSuggestionMiddleware(req, res, next) {
    const action = req.aiContext?.suggestedAction
    const target = typeof action === 'string' ? routes.get(action) : undefined
    if (target !== undefined && !res.headersSent) {
      const here = (req.originalUrl ?? req.url ?? '').split('?')[0]
      if (here !== target) res.setHeader('X-Suggested-Route', headerSafe(target))
    }
    next()
  }
}

// ------------------------------------------------------------------------------ aiErrorHandler

const SEVERITIES = ['low', 'medium', 'high', 'critical']
const analysisSchema = {
  type: 'object',
  properties: {
    errorType: { type: 'string' },
    severity: { type: 'string', enum: SEVERITIES },
    suggestions: { type: 'array', items: { type: 'string' }, maxItems: 5 },
  },
  required: ['errorType', 'severity', 'suggestions'],
  additionalProperties: false,
}

// Text a client may have chosen (quoted values, ids, numbers) blanked, after redaction: what
// remains is the error's kind, the same for every client that meets it.
const canonical = (text) =>
  redact(text)
    .replace(/"[^"]*"|'[^']*'|`[^`]*`/g, '""')
    .replace(/\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b/gi, '#')
    .replace(/\d+(?:\.\d+)?/g, '#')
    .replace(/\s+/g, ' ')
    .trim()

/**
 * What the model is told about an error, and the key its analysis is cached under: the same
 * text, so an analysis is only ever served for an error the model saw word for word. Secrets
 * are redacted and client-chosen values blanked first (canonical); the route is the matched
 * Express route pattern (`/users/:id`), never the URL the client sent.
 */
function errorSignature(error, described = describeError(error), req = undefined) {
  const stack =
    typeof error?.stack === 'string'
      ? error.stack
          .split('\n')
          .filter((line) => /^\s*at\s/.test(line))
          .slice(0, 5)
          .map((line) => canonical(line).slice(0, 300))
      : []
  const routePath = typeof req?.route?.path === 'string' ? `${typeof req.baseUrl === 'string' ? req.baseUrl : ''}${req.route.path}` : undefined
  return JSON.stringify({
    name: canonical(String(error?.name ?? typeof error)).slice(0, 100),
    code: typeof error?.code === 'string' ? canonical(error.code).slice(0, 100) : described.code,
    status: described.status,
    message: canonical(String(error?.message ?? error).slice(0, 2000)).slice(0, 500),
    stack,
    route: routePath === undefined ? undefined : `${req.method ?? ''} ${canonical(routePath).slice(0, 200)}`.trim(),
  })
}

// A link, a domain or an address in what the model wrote: it could send a developer (or the
// client the analysis reaches) anywhere, so such a suggestion is dropped.
const URL_LIKE =
  /\b[a-z][a-z0-9+.-]*:\/\/|\bwww\.|\bxn--|\bmailto:|\b(?:[a-z0-9-]+\.)+(?:com|net|org|io|co|dev|app|ai|xyz|info|biz|me|ru|cn|tk|top|site|online|link|click|live|pro|us|uk|de|page|cloud)\b|\b(?:[a-z0-9-]+\.)+[a-z]{2,}\/|\b\d{1,3}(?:\.\d{1,3}){3}\b|\[[0-9a-f:]*:[0-9a-f:]*\]/i

function checkAnalysis(value) {
  if (value == null || typeof value !== 'object' || typeof value.errorType !== 'string' || !SEVERITIES.includes(value.severity) || URL_LIKE.test(value.errorType)) {
    throw Object.assign(new Error("the model's analysis is incomplete"), { code: 'INVALID_ANSWER' })
  }
  const suggestions = Array.isArray(value.suggestions) ? value.suggestions.filter((s) => typeof s === 'string' && !URL_LIKE.test(s)).slice(0, 5) : []
  // The model never saw a secret, but what it writes goes to a client: redact it all the same.
  return { errorType: redact(value.errorType), severity: value.severity, suggestions: suggestions.map(redact) }
}

/**
 * errorHandler()'s answer, plus `analysis: { errorType, severity, suggestions }` when the
 * model answers within `budgetMs`. Analyses are cached per error signature; the message and
 * stack are redacted before the prompt is built.
 */
function aiErrorHandler(options = {}) {
  const who = 'aiErrorHandler'
  requireGateway(options.gateway, who)
  requireModel(options.model, who)
  const { gateway, model } = options
  const budgetMs = duration(options.budgetMs, 'budgetMs', 1500)
  const log = options.log === undefined ? (line) => console.error(line) : options.log
  const analyze = typeof options.analyze === 'function' ? options.analyze : () => true
  const cache = new TtlCache({ ttlMs: (options.cacheTtlSeconds ?? 3600) * 1000, maxEntries: options.maxCacheEntries ?? 500 })
  const counters = { errors: 0, analyzed: 0, cacheHits: 0, misses: 0, missReasons: newMissCounters() }
  const system =
    'You analyse an error raised by a Node.js web application. Classify it (errorType, a short snake_case name), ' +
    'rate its severity (low, medium, high, critical) and suggest up to three concrete fixes for the developers.'

  const analyze5xx = options.analyze5xx === true
  // An analysis is shown next to the error, so it may say no more than the error does: never
  // for an error whose message is hidden (a plain 500), and for other 5xx only when asked.
  const analysisShown = (described) => {
    if (described.code === 'INTERNAL' && described.message === HIDDEN_MESSAGE) return false
    return described.status < 500 || analyze5xx
  }

  const analysisWithin = (error, described, req) =>
    new Promise((resolve) => {
      let signature
      try {
        signature = errorSignature(error, described, req)
      } catch {
        return resolve(undefined) // an error object that cannot even be read: answered without analysis
      }
      const cached = cache.get(signature)
      if (cached) {
        counters.cacheHits++
        return resolve(cached)
      }
      let settled = false
      const finish = (analysis, failure) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (!analysis) {
          const reason = missReason(failure)
          counters.misses++
          counters.missReasons[reason]++
          safely(options.onMiss, reason, failure)
        } else counters.analyzed++
        resolve(analysis)
      }
      const timer = setTimeout(() => finish(undefined, { code: 'TIMEOUT' }), budgetMs)
      // The model sees exactly the cache key: nothing a cached analysis was not written for.
      const prompt = signature
      cache
        .shared(signature, () =>
          structuredCall(gateway, { model, name: 'error_analysis', schema: analysisSchema, system, prompt, timeoutMs: budgetMs, maxTokens: 400, feature: 'aiErrorHandler' }).then(
            ({ value }) => checkAnalysis(value),
          ),
        )
        .then(
          (analysis) => finish(analysis),
          (failure) => finish(undefined, failure),
        )
    })

  function handler(error, req, res, next) {
    counters.errors++
    const described = describeError(error)
    let wanted = false
    try {
      wanted = !res.headersSent && analysisShown(described) && analyze(error, req) !== false
    } catch {
      wanted = false
    }
    if (!wanted) return sendError(res, error, { log, described })
    analysisWithin(error, described, req).then((analysis) => {
      sendError(res, error, { log, described, extra: analysis ? { analysis } : undefined })
    })
  }
  handler.stats = () => ({ ...counters, missReasons: { ...counters.missReasons }, cacheEntries: cache.size })
  return handler
}

module.exports = {
  intentRecognition,
  smartValidation,
  routeSuggestion,
  aiErrorHandler,
  CodeGenerator,
  errorSignature,
}
