// ferrogate/intelligent: the mock provider's structured output checked by a real JSON Schema
// validator (ajv), and the middleware and error handler driven over loopback with the mock
// provider and with an upstream that fails, hangs or refuses on budget. The rule under test: a
// model call never keeps a request from being served.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import Ajv2020 from 'ajv/dist/2020.js'
import Ajv from 'ajv'
import addFormats from 'ajv-formats'
import express from 'express'
import ferrogate, { FerrogateError, Gateway } from 'ferrogate'
import { aiErrorHandler, CodeGenerator, errorSignature, intentRecognition, routeSuggestion, smartValidation } from 'ferrogate/intelligent'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const MOCK_MODEL = 'mock/mock-1'
const VENDOR_MODEL = 'vendor/gpt-4o-mini'
// Far above any normal answer on a loaded machine, far below "waited for the hanging call".
const GENEROUS_MS = 10_000
const HANG_BUDGET_MS = 300

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

const gateways = []
after(() => Promise.all(gateways.map((g) => g.close())))
function newGateway(extra = {}) {
  const gateway = new Gateway({
    providers: {
      mock: { kind: 'mock', mockChunkDelayMs: 1 },
      vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl },
    },
    maxRetries: 0,
    ...extra,
  })
  gateways.push(gateway)
  return gateway
}

/** The vendor's non-streamed answer whose content is `value` as JSON. */
const jsonAnswer = (value) => ({
  body: {
    id: 'chatcmpl-json',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: JSON.stringify(value), refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 },
  },
})
// Each helper names its answer schema: that tells its upstream requests apart.
const SCHEMA_NAME = { intentRecognition: 'intent', smartValidation: 'validation_suggestions', aiErrorHandler: 'error_analysis' }
const requestsFor = (feature) => vendors.requests.filter((r) => r.body?.response_format?.json_schema?.name === SCHEMA_NAME[feature])

async function serve(app) {
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${server.address().port}`
  return {
    url,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

/** POSTs `body` and reports the status, headers, JSON and how long the answer took. */
async function post(url, body) {
  const started = performance.now()
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const json = await res.json()
  return { status: res.status, headers: res.headers, json, ms: performance.now() - started }
}

/** An app whose handler reports what the middleware chain left on the request. */
function echoApp(...middleware) {
  const app = express()
  app.use(express.json())
  app.post('/echo', ...middleware, (req, res) => res.json({ aiContext: req.aiContext ?? null }))
  return app
}

// ------------------------------------------------------------------------------ mock structured output

const SCHEMAS = {
  flat: {
    type: 'object',
    properties: {
      intent: { type: 'string', enum: ['refund', 'order', 'question'] },
      confidence: { type: 'number', minimum: 0, maximum: 1 },
      count: { type: 'integer', minimum: 3, maximum: 9 },
      ratio: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 0.5 },
      step: { type: 'number', minimum: 7, multipleOf: 5 },
      active: { type: 'boolean' },
      nothing: { type: 'null' },
      label: { type: 'string', minLength: 12, maxLength: 20 },
      short: { type: 'string', maxLength: 2 },
    },
    required: ['intent', 'confidence', 'count', 'ratio', 'step', 'active', 'nothing', 'label', 'short'],
    additionalProperties: false,
  },
  formats: {
    type: 'object',
    properties: Object.fromEntries(
      ['date-time', 'date', 'time', 'email', 'uri', 'uuid', 'hostname', 'ipv4', 'ipv6', 'uri-reference', 'duration'].map((format) => [format, { type: 'string', format }]),
    ),
    required: ['date-time', 'date', 'time', 'email', 'uri', 'uuid', 'hostname', 'ipv4', 'ipv6', 'uri-reference', 'duration'],
  },
  nested: {
    type: 'object',
    properties: {
      customer: {
        type: 'object',
        properties: { name: { type: 'string', minLength: 1 }, tags: { type: 'array', items: { type: 'string' }, minItems: 3, uniqueItems: true } },
        required: ['name', 'tags'],
        additionalProperties: false,
      },
      lines: {
        type: 'array',
        minItems: 2,
        uniqueItems: true,
        items: {
          type: 'object',
          properties: { sku: { type: 'string', pattern: '^[a-z-0-9]+$' }, qty: { type: 'integer', minimum: 1 } },
          required: ['sku', 'qty'],
        },
      },
      matrix: { type: 'array', items: { type: 'array', items: { type: 'integer' }, minItems: 2 } },
      optional: { type: 'string' },
    },
    required: ['customer', 'lines', 'matrix'],
    additionalProperties: false,
  },
  refs: {
    $defs: {
      address: { type: 'object', properties: { city: { type: 'string' }, zip: { type: 'string', minLength: 5 } }, required: ['city', 'zip'] },
      tree: {
        type: 'object',
        properties: { label: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/tree' } } },
        required: ['label', 'children'],
      },
    },
    type: 'object',
    properties: {
      home: { $ref: '#/$defs/address' },
      work: { allOf: [{ $ref: '#/$defs/address' }, { properties: { floor: { type: 'integer', minimum: 1 } }, required: ['floor'] }] },
      tree: { $ref: '#/$defs/tree' },
      either: { anyOf: [{ type: 'null' }, { type: 'integer', minimum: 10 }] },
      one: { oneOf: [{ const: 'fixed' }, { type: 'number' }] },
      nullable: { type: ['null', 'string'], format: 'email' },
    },
    required: ['home', 'work', 'tree', 'either', 'one', 'nullable'],
  },
  draft07: {
    $schema: 'http://json-schema.org/draft-07/schema#',
    definitions: { point: { type: 'array', items: [{ type: 'number' }, { type: 'number' }], additionalItems: false, minItems: 2 } },
    type: 'object',
    properties: { at: { $ref: '#/definitions/point' }, count: { type: 'integer', exclusiveMinimum: 0 } },
    required: ['at', 'count'],
  },
  tuple2020: {
    type: 'array',
    prefixItems: [{ type: 'string', enum: ['a', 'b'] }, { type: 'integer', minimum: 2 }],
    items: false,
  },
  minProperties: {
    type: 'object',
    properties: { a: { type: 'string' }, b: { type: 'integer' }, c: { type: 'boolean' } },
    minProperties: 2,
  },
  intent: {
    type: 'object',
    properties: {
      intent: { type: 'string', enum: ['billing', 'support'] },
      entities: { type: 'array', items: { type: 'object', properties: { type: { type: 'string' }, value: { type: 'string' } }, required: ['type', 'value'], additionalProperties: false } },
      confidence: { type: 'number', minimum: 0, maximum: 1 },
      suggestedAction: { type: 'string' },
    },
    required: ['intent', 'entities', 'confidence', 'suggestedAction'],
    additionalProperties: false,
  },
}

function validatorFor(schema) {
  const ajv = schema.prefixItems ? new Ajv2020({ strict: false }) : new Ajv({ strict: false })
  addFormats(ajv)
  return ajv.compile(schema)
}

describe('mock provider: json_schema answers', () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    test(`${name}: the answer validates against its schema, streamed or not, the same every time`, async () => {
      const gateway = newGateway()
      const request = { model: MOCK_MODEL, messages: [{ role: 'user', content: `schema ${name}` }], responseFormat: { type: 'json_schema', name, schema } }
      const response = await gateway.chat(request)
      const answer = JSON.parse(response.content)
      const validate = validatorFor(schema)
      assert.ok(validate(answer), `${JSON.stringify(answer)}\n${JSON.stringify(validate.errors, null, 1)}`)
      const chunks = []
      const streamed = await gateway.stream(request, (text) => chunks.push(text))
      assert.equal(chunks.join(''), response.content)
      assert.equal(streamed.content, response.content)
      if (response.content.length > 24) assert.ok(chunks.length > 1, 'a JSON answer streams in more than one chunk')
      assert.equal((await gateway.chat(request)).content, response.content)
    })
  }

  test('an enum gives its first value and a bounded number its minimum (the documented rule)', async () => {
    const answer = JSON.parse((await newGateway().chat({ model: MOCK_MODEL, messages: [{ role: 'user', content: 'x' }], responseFormat: { type: 'json_schema', name: 'flat', schema: SCHEMAS.flat } })).content)
    assert.equal(answer.intent, 'refund')
    assert.equal(answer.confidence, 0)
    assert.equal(answer.count, 3)
    assert.ok(answer.ratio > 0 && answer.ratio < 0.5)
    assert.equal(answer.step, 10)
  })

  test('json_object gets a small JSON object', async () => {
    const response = await newGateway().chat({ model: MOCK_MODEL, messages: [{ role: 'user', content: 'give "json"' }], responseFormat: { type: 'json_object' } })
    const answer = JSON.parse(response.content)
    assert.equal(typeof answer, 'object')
    assert.equal(answer.echo, 'give "json"')
  })
})

// ------------------------------------------------------------------------------ intentRecognition

describe('intentRecognition', () => {
  test('with the mock provider: aiContext from the schema, headers at or above minConfidence', async () => {
    const gateway = newGateway()
    const recognize = intentRecognition({ gateway, model: MOCK_MODEL, intents: ['billing', 'support'], minConfidence: 0 })
    const app = await serve(echoApp(recognize))
    try {
      const { status, headers, json } = await post(`${app.url}/echo`, { message: 'I was charged twice' })
      assert.equal(status, 200)
      assert.deepEqual(json.aiContext, { intent: 'billing', entities: [{ type: 'type', value: 'value' }], confidence: 0, suggestedAction: 'suggestedAction' })
      assert.equal(headers.get('x-ai-intent'), 'billing')
      assert.equal(headers.get('x-ai-confidence'), '0')
    } finally {
      await app.close()
    }
  })

  test('below minConfidence: aiContext but no headers; no content: no model call', async () => {
    const recognize = intentRecognition({ gateway: newGateway(), model: MOCK_MODEL })
    const app = await serve(echoApp(recognize))
    try {
      const low = await post(`${app.url}/echo`, { query: 'where is my order' })
      assert.equal(low.json.aiContext.confidence, 0)
      assert.equal(low.headers.get('x-ai-intent'), null)
      const none = await post(`${app.url}/echo`, { other: 1 })
      assert.equal(none.json.aiContext, null)
      assert.deepEqual({ requests: recognize.stats().requests, skipped: recognize.stats().skipped }, { requests: 1, skipped: 1 })
    } finally {
      await app.close()
    }
  })

  test('identical content is answered from the cache: one upstream call; ?q= is read too', async () => {
    const recognize = intentRecognition({ gateway: newGateway(), model: VENDOR_MODEL, intents: ['billing', 'support'] })
    const app = express()
    app.use(express.json())
    app.get('/search', recognize, (req, res) => res.json({ aiContext: req.aiContext ?? null }))
    app.post('/echo', recognize, (req, res) => res.json({ aiContext: req.aiContext ?? null }))
    const server = await serve(app)
    const before = requestsFor('intentRecognition').length
    vendors.enqueue('openai', jsonAnswer({ intent: 'support', entities: [{ type: 'product', value: 'router' }], confidence: 0.93, suggestedAction: 'open_ticket' }))
    try {
      const first = await post(`${server.url}/echo`, { message: 'my router is broken' })
      assert.equal(first.headers.get('x-ai-intent'), 'support')
      assert.equal(first.headers.get('x-ai-confidence'), '0.93')
      const res = await fetch(`${server.url}/search?q=${encodeURIComponent('my router is broken')}`)
      const second = await res.json()
      assert.deepEqual(second.aiContext, first.json.aiContext)
      assert.equal(res.headers.get('x-ai-intent'), 'support')
      assert.equal(requestsFor('intentRecognition').length - before, 1)
      const upstream = requestsFor('intentRecognition').at(-1).body
      assert.deepEqual(upstream.response_format.json_schema.schema.properties.intent.enum, ['billing', 'support'])
      assert.equal(recognize.stats().cacheHits, 1)
    } finally {
      await server.close()
    }
  })

  test('an intent outside the list is a miss, not a context', async () => {
    const recognize = intentRecognition({ gateway: newGateway(), model: VENDOR_MODEL, intents: ['billing'] })
    const app = await serve(echoApp(recognize))
    vendors.enqueue('openai', jsonAnswer({ intent: 'weather', entities: [], confidence: 1, suggestedAction: '' }))
    try {
      const { json } = await post(`${app.url}/echo`, { message: 'is it raining' })
      assert.equal(json.aiContext, null)
      assert.equal(recognize.stats().missReasons.invalid, 1)
    } finally {
      await app.close()
    }
  })

  test('a failing provider: every request is served, without aiContext, and the miss is counted', async () => {
    const misses = []
    const recognize = intentRecognition({ gateway: newGateway(), model: VENDOR_MODEL, onMiss: (reason) => misses.push(reason) })
    const app = await serve(echoApp(recognize))
    vendors.enqueue('openai', { status: 500, body: { error: { message: 'boom', type: 'server_error' } } })
    vendors.enqueue('openai', { status: 503, body: { error: { message: 'overloaded', type: 'server_error' } } })
    try {
      for (const message of ['first failure', 'second failure']) {
        const { status, json } = await post(`${app.url}/echo`, { message })
        assert.equal(status, 200)
        assert.equal(json.aiContext, null)
      }
      assert.equal(recognize.stats().misses, 2)
      assert.equal(recognize.stats().missReasons.error, 2)
      assert.deepEqual(misses, ['error', 'error'])
    } finally {
      await app.close()
    }
  })

  test('a provider that hangs past timeoutMs: next() is called after about timeoutMs, without aiContext', async () => {
    const recognize = intentRecognition({ gateway: newGateway(), model: VENDOR_MODEL, timeoutMs: HANG_BUDGET_MS })
    const app = await serve(echoApp(recognize))
    vendors.enqueue('openai', { hang: true })
    vendors.enqueue('openai', { hang: true })
    try {
      const results = await Promise.all([post(`${app.url}/echo`, { message: 'hang one' }), post(`${app.url}/echo`, { message: 'hang two' })])
      for (const { status, json, ms } of results) {
        assert.equal(status, 200)
        assert.equal(json.aiContext, null)
        assert.ok(ms < GENEROUS_MS, `served after ${ms} ms`)
      }
      assert.equal(recognize.stats().missReasons.timeout, 2)
    } finally {
      await app.close()
    }
  })

  test('over budget: the refusal is a miss and the request is served', async () => {
    let gateway
    if (typeof ferrogate.CostTracker === 'function') {
      // The real thing: a hard budget that the first reservation already passes.
      const costs = new ferrogate.CostTracker({ pricing: { 'gpt-4o-mini': { input_cost_per_token: 1, output_cost_per_token: 1 } } })
      costs.setBudget('tight', { usd: 0.000001, period: 'day', hard: true })
      gateway = newGateway({ costs })
    } else {
      // Until CostTracker is in the build: a gateway that refuses like it will.
      gateway = {
        chat: async () => {
          throw new FerrogateError({ code: 'BUDGET_EXCEEDED', status: 402, message: 'budget for tight exceeded', requestId: 'fg_test' })
        },
      }
    }
    const recognize = intentRecognition({ gateway, model: VENDOR_MODEL, user: () => 'tight' })
    const app = await serve(echoApp(recognize))
    try {
      const { status, json, ms } = await post(`${app.url}/echo`, { message: 'spend money' })
      assert.equal(status, 200)
      assert.equal(json.aiContext, null)
      assert.ok(ms < GENEROUS_MS)
      assert.equal(recognize.stats().missReasons.budget, 1)
    } finally {
      await app.close()
    }
  })

  test('a gateway that throws synchronously still lets the request through', async () => {
    const gateway = {
      chat() {
        throw new Error('exploded')
      },
    }
    const recognize = intentRecognition({ gateway, model: 'x', timeoutMs: 200 })
    const app = await serve(echoApp(recognize))
    try {
      const { status, json } = await post(`${app.url}/echo`, { message: 'anything' })
      assert.equal(status, 200)
      assert.equal(json.aiContext, null)
    } finally {
      await app.close()
    }
  })

  test('secrets in the content are redacted before the prompt; bad options are CONFIG errors', async () => {
    const recognize = intentRecognition({ gateway: newGateway(), model: VENDOR_MODEL })
    const app = await serve(echoApp(recognize))
    vendors.enqueue('openai', jsonAnswer({ intent: 'x', entities: [], confidence: 0.5, suggestedAction: '' }))
    try {
      await post(`${app.url}/echo`, { message: 'my key is sk-live-abcdefghijklmnop please rotate' })
      const prompt = JSON.stringify(requestsFor('intentRecognition').at(-1).body.messages)
      assert.ok(!prompt.includes('sk-live-abcdefghijklmnop'), prompt)
      assert.match(prompt, /REDACTED/)
    } finally {
      await app.close()
    }
    assert.throws(() => intentRecognition({ gateway: newGateway(), model: MOCK_MODEL, timeoutMs: -1 }), { code: 'CONFIG' })
    assert.throws(() => intentRecognition({ model: MOCK_MODEL }), { code: 'CONFIG' })
    assert.throws(() => intentRecognition({ gateway: newGateway(), model: MOCK_MODEL, intents: [] }), { code: 'CONFIG' })
  })
})

// ------------------------------------------------------------------------------ smartValidation, routeSuggestion

const ORDER_SCHEMA = {
  type: 'object',
  properties: { sku: { type: 'string', minLength: 1 }, qty: { type: 'integer', minimum: 1 }, email: { type: 'string', format: 'email' } },
  required: ['sku', 'qty'],
  additionalProperties: false,
}
const withContext = (context) => (req, res, next) => {
  req.aiContext = context
  next()
}

describe('smartValidation', () => {
  test('a body that fails its intent schema → 400 with details and rule suggestions; a valid one passes', async () => {
    const validate = smartValidation({ schemas: { order: ORDER_SCHEMA } })
    const app = await serve(echoApp(withContext({ intent: 'order', entities: [], confidence: 0.9, suggestedAction: '' }), validate))
    try {
      const bad = await post(`${app.url}/echo`, { qty: 'two', email: 'nope', extra: true })
      assert.equal(bad.status, 400)
      assert.equal(bad.json.error, 'Validation failed')
      const paths = bad.json.details.map((d) => `${d.keyword} ${d.path}`).sort()
      assert.deepEqual(paths, ['additionalProperties /extra', 'format /email', 'required /sku', 'type /qty'])
      assert.ok(bad.json.suggestions.includes("Add the required field 'sku'."), bad.json.suggestions.join('\n'))
      const good = await post(`${app.url}/echo`, { sku: 'a-1', qty: 2 })
      assert.equal(good.status, 200)
      assert.deepEqual(validate.stats(), { validated: 2, failed: 1, modelSuggestions: 0, misses: 0, missReasons: { timeout: 0, budget: 0, rateLimited: 0, invalid: 0, error: 0 } })
    } finally {
      await app.close()
    }
  })

  test('an untrusted or unknown intent is not validated', async () => {
    const validate = smartValidation({ schemas: { order: ORDER_SCHEMA } })
    const app = await serve(echoApp(withContext({ intent: 'order', entities: [], confidence: 0.2, suggestedAction: '' }), validate))
    try {
      assert.equal((await post(`${app.url}/echo`, { nothing: true })).status, 200)
    } finally {
      await app.close()
    }
  })

  test('with a gateway the suggestions come from the model; the body values are not sent', async () => {
    const validate = smartValidation({ schemas: { order: ORDER_SCHEMA }, gateway: newGateway(), model: VENDOR_MODEL })
    const app = await serve(echoApp(withContext({ intent: 'order', entities: [], confidence: 1, suggestedAction: '' }), validate))
    vendors.enqueue('openai', jsonAnswer({ suggestions: ['Send qty as a whole number, e.g. 2.'] }))
    try {
      const bad = await post(`${app.url}/echo`, { sku: 'secret-sku-value', qty: 'two' })
      assert.equal(bad.status, 400)
      assert.deepEqual(bad.json.suggestions, ['Send qty as a whole number, e.g. 2.'])
      const prompt = JSON.stringify(requestsFor('smartValidation').at(-1).body.messages)
      assert.ok(!prompt.includes('secret-sku-value'))
      assert.ok(!prompt.includes('two'))
    } finally {
      await app.close()
    }
  })

  test('a model that hangs past the suggestion budget: rule suggestions, answered', async () => {
    const validate = smartValidation({ schemas: { order: ORDER_SCHEMA }, gateway: newGateway(), model: VENDOR_MODEL, suggestionTimeoutMs: HANG_BUDGET_MS })
    const app = await serve(echoApp(withContext({ intent: 'order', entities: [], confidence: 1, suggestedAction: '' }), validate))
    vendors.enqueue('openai', { hang: true })
    try {
      const bad = await post(`${app.url}/echo`, { qty: 0 })
      assert.equal(bad.status, 400)
      assert.ok(bad.json.suggestions.some((s) => s.includes("'sku'")))
      assert.ok(bad.ms < GENEROUS_MS)
      assert.equal(validate.stats().missReasons.timeout, 1)
    } finally {
      await app.close()
    }
  })

  test('with intentRecognition on the mock provider, end to end', async () => {
    const gateway = newGateway()
    const app = await serve(
      echoApp(
        intentRecognition({ gateway, model: MOCK_MODEL, intents: ['order', 'question'] }),
        smartValidation({ schemas: { order: ORDER_SCHEMA }, gateway, model: MOCK_MODEL, minConfidence: 0 }),
      ),
    )
    try {
      const bad = await post(`${app.url}/echo`, { message: 'two of a-1 please' })
      assert.equal(bad.status, 400)
      // The mock's instance of { suggestions: string[] }: one item, named after the property.
      assert.deepEqual(bad.json.suggestions, ['suggestion'])
    } finally {
      await app.close()
    }
  })

  test('a schema that does not compile is a CONFIG error', () => {
    assert.throws(() => smartValidation({ schemas: { bad: { type: 'nonsense' } } }), { code: 'CONFIG' })
  })
})

describe('routeSuggestion', () => {
  test('X-Suggested-Route when the suggested action maps to another path only', async () => {
    const suggest = routeSuggestion({ open_ticket: '/support/tickets', refund: '/echo' })
    const app = express()
    app.use(express.json())
    app.post('/echo', (req, res, next) => {
      req.aiContext = { intent: 'x', entities: [], confidence: 1, suggestedAction: req.body.action }
      next()
    }, suggest, (req, res) => res.json({}))
    const server = await serve(app)
    try {
      assert.equal((await post(`${server.url}/echo`, { action: 'open_ticket' })).headers.get('x-suggested-route'), '/support/tickets')
      assert.equal((await post(`${server.url}/echo`, { action: 'refund' })).headers.get('x-suggested-route'), null)
      assert.equal((await post(`${server.url}/echo`, { action: 'unknown' })).headers.get('x-suggested-route'), null)
    } finally {
      await server.close()
    }
  })
})

// ------------------------------------------------------------------------------ aiErrorHandler

// An error whose message the client sees (a 4xx the app marked as the client's): the kind
// aiErrorHandler analyses by default.
const badRequest = (message) => Object.assign(new Error(message), { status: 400, expose: true })

function failingApp(handler, makeError) {
  const app = express()
  app.use(express.json())
  app.post('/fail', (req) => {
    throw makeError(req)
  })
  app.use(handler)
  return app
}

describe('aiErrorHandler', () => {
  test("with the mock provider: errorHandler()'s answer plus the analysis", async () => {
    const handler = aiErrorHandler({ gateway: newGateway(), model: MOCK_MODEL, log: false })
    const app = await serve(failingApp(handler, () => badRequest('the order has no lines')))
    try {
      const { status, json } = await post(`${app.url}/fail`, {})
      assert.equal(status, 400)
      assert.equal(json.error.code, 'INVALID_REQUEST')
      assert.equal(json.error.message, 'the order has no lines')
      assert.deepEqual(json.analysis, { errorType: 'errorType', severity: 'low', suggestions: ['suggestion'] })
    } finally {
      await app.close()
    }
  })

  test('ferrogate errors keep their status, code and Retry-After', async () => {
    const handler = aiErrorHandler({ gateway: newGateway(), model: MOCK_MODEL, log: false })
    const app = await serve(
      failingApp(handler, () => new FerrogateError({ code: 'RATE_LIMITED', status: 429, message: 'slow down', requestId: 'fg_1', retryAfterMs: 2000 })),
    )
    try {
      const { status, headers, json } = await post(`${app.url}/fail`, {})
      assert.equal(status, 429)
      assert.equal(headers.get('retry-after'), '2')
      assert.equal(json.error.id, 'fg_1')
      assert.equal(json.error.code, 'RATE_LIMITED')
      assert.ok(json.analysis)
    } finally {
      await app.close()
    }
  })

  test('a hanging model: the plain error answer, after about budgetMs', async () => {
    const handler = aiErrorHandler({ gateway: newGateway(), model: VENDOR_MODEL, budgetMs: HANG_BUDGET_MS, log: false })
    const app = await serve(failingApp(handler, () => badRequest('disk full')))
    vendors.enqueue('openai', { hang: true })
    try {
      const { status, json, ms } = await post(`${app.url}/fail`, {})
      assert.equal(status, 400)
      assert.deepEqual(Object.keys(json), ['error'])
      assert.equal(json.error.code, 'INVALID_REQUEST')
      assert.ok(ms < GENEROUS_MS, `answered after ${ms} ms`)
      assert.equal(handler.stats().missReasons.timeout, 1)
    } finally {
      await app.close()
    }
  })

  test('a key in the error message never reaches the model; analyses are cached per signature', async () => {
    const handler = aiErrorHandler({ gateway: newGateway(), model: VENDOR_MODEL, log: false })
    const key = 'sk-proj-Zx81mQ0aLk29dPq7'
    const app = await serve(failingApp(handler, (req) => badRequest(`upstream rejected api_key=${key} for order ${req.body.order} (Authorization: Bearer ${key}) at /home/app/src/pay.js`)))
    vendors.enqueue('openai', jsonAnswer({ errorType: 'authentication_failure', severity: 'high', suggestions: ['Rotate the key'] }))
    const before = requestsFor('aiErrorHandler').length
    try {
      const first = await post(`${app.url}/fail`, { order: 41 })
      assert.deepEqual(first.json.analysis, { errorType: 'authentication_failure', severity: 'high', suggestions: ['Rotate the key'] })
      const sent = requestsFor('aiErrorHandler').slice(before)
      assert.equal(sent.length, 1)
      const upstream = JSON.stringify(sent[0].body)
      assert.ok(!upstream.includes(key), upstream)
      assert.ok(!upstream.includes('Zx81mQ0aLk29dPq7'), upstream)
      assert.ok(!upstream.includes('/home/app'), upstream)
      assert.match(upstream, /REDACTED/)
      // Same error, another order number: same signature, answered from the cache.
      const second = await post(`${app.url}/fail`, { order: 977 })
      assert.deepEqual(second.json.analysis, first.json.analysis)
      assert.equal(requestsFor('aiErrorHandler').length - before, 1)
      assert.equal(handler.stats().cacheHits, 1)
      assert.ok(!JSON.stringify(second.json).includes(key))
    } finally {
      await app.close()
    }
  })

  test('a failing model: the plain answer; analyze() can skip the model', async () => {
    const handler = aiErrorHandler({ gateway: newGateway(), model: VENDOR_MODEL, log: false, analyze: (error) => !error.message.includes('skip') })
    const app = await serve(failingApp(handler, (req) => badRequest(req.body.text)))
    vendors.enqueue('openai', { status: 500, body: { error: { message: 'down', type: 'server_error' } } })
    const before = requestsFor('aiErrorHandler').length
    try {
      const failed = await post(`${app.url}/fail`, { text: 'model down case' })
      assert.equal(failed.status, 400)
      assert.equal(failed.json.analysis, undefined)
      const skipped = await post(`${app.url}/fail`, { text: 'skip this one' })
      assert.equal(skipped.json.analysis, undefined)
      assert.equal(requestsFor('aiErrorHandler').length - before, 1)
    } finally {
      await app.close()
    }
  })

  test('error signatures ignore ids, numbers and quoted values', () => {
    assert.equal(errorSignature(new Error('user 42 not found in "orders"')), errorSignature(new Error('user 977 not found in "carts"')))
    assert.notEqual(errorSignature(new Error('user 42 not found')), errorSignature(new TypeError('user 42 not found')))
  })
})

// ------------------------------------------------------------------------------ entry points

describe('entry points', () => {
  test('require and import give the same functions', async () => {
    const cjs = require('ferrogate/intelligent')
    const esm = await import('ferrogate/intelligent')
    for (const name of ['intentRecognition', 'smartValidation', 'routeSuggestion', 'aiErrorHandler', 'CodeGenerator']) {
      assert.equal(typeof cjs[name], 'function', name)
      assert.equal(esm[name], cjs[name], name)
    }
    assert.equal(CodeGenerator, cjs.CodeGenerator)
  })
})
