// Errors at the JS boundary in plain words: every field of ChatRequest, GatewayOptions and
// ProviderConfig given a wrongly typed value gets a message naming the field and the type it
// needs, with no napi or Rust wording and never the value itself (a key in the wrong place
// must not reach a log). The field lists are read from index.d.ts, so a new field is walked too.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import { test } from 'node:test'
import { inspect } from 'node:util'

import { Gateway, KeyVault, ResponseCache } from '../index.js'

const SECRET = 'sk-live-PLAINWORDS-0123456789'
const FORBIDDEN = [/napi/i, /rust type/i, /serde/i, /line 1 column/i, /\bf64\b/, /\bu32\b/, /String\b.*into/, new RegExp(SECRET)]
const SECRET_BYTES = [...Buffer.from(SECRET)].join(',')

const dts = fs.readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')

/** The fields of every `export interface <name> { … }` block of index.d.ts (they may be split). */
function fieldsOf(name) {
  const fields = new Map()
  for (const block of dts.matchAll(new RegExp(`export interface ${name} \\{([\\s\\S]*?)\\n\\}`, 'g'))) {
    const body = block[1].replace(/\/\*[\s\S]*?\*\//g, '')
    for (const m of body.matchAll(/^ {2}([A-Za-z_$][\w$]*)(\?)?: (.+)$/gm)) fields.set(m[1], { optional: m[2] === '?', type: m[3] })
  }
  assert.ok(fields.size > 0, `index.d.ts has interface ${name}`)
  return fields
}

/** Values of the wrong type for a field declared as `type`: a key-like secret wrapped so napi would quote it. */
function wrongValues(type) {
  const takesString = /\bstring\b|'/.test(type)
  const takesObject = /Record<|\{|Array<|\b[A-Z][A-Za-z]+\b/.test(type.replace(/\bAbortSignal\b/, ''))
  const values = []
  if (!takesObject) values.push({ value: SECRET }, Buffer.from(SECRET))
  if (!takesString) values.push(`${SECRET} as text`)
  if (takesObject && takesString) values.push(42)
  return values
}

function assertPlain(message, field) {
  for (const forbidden of FORBIDDEN) assert.doesNotMatch(message, forbidden, `${field}: ${message}`)
  assert.ok(!message.includes(SECRET_BYTES), `${field}: bytes of the key in ${message}`)
  assert.match(message, new RegExp(`\\b${field.replace(/[.[\]]/g, '\\$&')}\\b (must be|is required)`), `${field}: ${message}`)
  assert.match(message, /\(got (a|an|null|binary data|nothing)\b/, `${field}: ${message}`)
}

function assertPlainError(error, field) {
  assert.equal(error.name, 'FerrogateError', `${field}: ${error}`)
  assertPlain(error.message, field)
  // Nothing hides the value one level down either: inspect shows the cause chain.
  const shown = inspect(error, { depth: 5 })
  assert.ok(!shown.includes(SECRET), `${field}: the key in ${shown}`)
  assert.ok(!shown.includes(SECRET_BYTES), `${field}: the key's bytes in ${shown}`)
}

const MOCK = { providers: { mock: { kind: 'mock', mockChunkDelayMs: 0 } } }
const REQUEST = { model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] }

test('every ChatRequest field with a wrongly typed value is named with the type it needs', async () => {
  const gateway = new Gateway(MOCK)
  try {
    const fields = fieldsOf('ChatRequest')
    assert.ok(fields.has('temperature') && fields.has('signal') && fields.has('stop'))
    for (const [field, { type }] of fields) {
      for (const wrong of wrongValues(type)) {
        for (const call of ['chat', 'stream', 'streamEvents']) {
          const request = { ...REQUEST, [field]: wrong }
          const error = await (async () => {
            if (call === 'chat') return gateway.chat(request)
            if (call === 'stream') return gateway.stream(request, () => {})
            for await (const event of gateway.streamEvents(request)) void event
          })().then(
            () => assert.fail(`${call} accepted ${field}: ${inspect(wrong)}`),
            (e) => e,
          )
          assert.equal(error.code, 'INVALID_REQUEST', `${field}: ${error.message}`)
          assertPlainError(error, field)
        }
      }
    }
  } finally {
    await gateway.close()
  }
})

test('the words the issue quotes: temperature, and stop given as one string is accepted as OpenAI does', async () => {
  const gateway = new Gateway(MOCK)
  try {
    await assert.rejects(gateway.chat({ ...REQUEST, temperature: 'hot' }), { message: 'invalid request: temperature must be a number (got a string)' })
    await assert.rejects(gateway.chat({ ...REQUEST, stop: [1, 2] }), { message: 'invalid request: stop must be a string or an array of strings (got an array)' })
    await assert.rejects(gateway.chat({ ...REQUEST, stop: 7 }), { message: 'invalid request: stop must be a string or an array of strings (got a number)' })
    const one = await gateway.chat({ ...REQUEST, stop: 'END' })
    const several = await gateway.chat({ ...REQUEST, stop: ['END'] })
    assert.equal(one.content, several.content)
    // Nested fields are named by their path.
    await assert.rejects(gateway.chat({ ...REQUEST, messages: [{ role: 'user', content: 5 }] }), { message: /messages\[0\]\.content must be a string, an array of parts or null \(got a number\)/ })
    await assert.rejects(gateway.chat({ ...REQUEST, tools: [{ name: 'f', parameters: 'x' }] }), { message: /tools\[0\]\.parameters must be an object/ })
    await assert.rejects(gateway.chat({ model: 'mock/m' }), { message: /messages is required/ })
  } finally {
    await gateway.close()
  }
})

test('every GatewayOptions and ProviderConfig field with a wrongly typed value is a CONFIG error naming it', () => {
  const gatewayFields = fieldsOf('GatewayOptions')
  assert.ok(gatewayFields.has('providers') && gatewayFields.has('onCall') && gatewayFields.has('costs') && gatewayFields.has('onAnomaly'))
  for (const [field, { type }] of gatewayFields) {
    for (const wrong of wrongValues(type)) {
      const options = field === 'providers' ? { providers: wrong } : { ...MOCK, [field]: wrong }
      const error = (() => {
        try {
          new Gateway(options)
        } catch (e) {
          return e
        }
        assert.fail(`Gateway accepted ${field}: ${inspect(wrong)}`)
      })()
      assert.equal(error.code, 'CONFIG', `${field}: ${error.message}`)
      assertPlainError(error, field)
    }
  }
  for (const [field, { type }] of fieldsOf('ProviderConfig')) {
    for (const wrong of wrongValues(type)) {
      const error = (() => {
        try {
          new Gateway({ providers: { local: { kind: 'openai', apiKey: 'k', baseUrl: 'http://127.0.0.1:9/v1', [field]: wrong } } })
        } catch (e) {
          return e
        }
        assert.fail(`Gateway accepted providers.local.${field}: ${inspect(wrong)}`)
      })()
      assert.equal(error.code, 'CONFIG', `${field}: ${error.message}`)
      assertPlainError(error, `providers.local.${field}`)
    }
  }
  for (const [field, { type }] of fieldsOf('RouteTarget')) {
    for (const wrong of wrongValues(type)) {
      const target = { provider: 'mock', model: 'm', [field]: wrong }
      assert.throws(() => new Gateway({ ...MOCK, routes: { smart: [target] } }), (e) => {
        assertPlainError(e, `routes.smart[0].${field}`)
        return true
      })
    }
  }
})

test('defect 10: a key of the wrong type is never echoed (an object holding it, a Buffer of it)', () => {
  for (const apiKey of [{ value: SECRET }, Buffer.from(SECRET), [SECRET]]) {
    assert.throws(
      () => new Gateway({ providers: { openai: { kind: 'openai', apiKey } } }),
      (error) => {
        assert.equal(error.code, 'CONFIG')
        assertPlainError(error, 'providers.openai.apiKey')
        assert.match(error.message, /providers\.openai\.apiKey must be a string/)
        return true
      },
    )
  }
  // The vault holds provider keys too.
  const vault = new KeyVault({ secret: 'vault-secret' })
  for (const key of [{ value: SECRET }, Buffer.from(SECRET)]) {
    assert.throws(
      () => vault.add('team-a', { provider: 'openai', key }),
      (error) => {
        const shown = inspect(error, { depth: 5 })
        assert.ok(!shown.includes(SECRET) && !shown.includes(SECRET_BYTES), shown)
        assert.doesNotMatch(error.message, /rust type|napi/i)
        return true
      },
    )
  }
  // A class's options object: its fields are checked the same way.
  assert.throws(() => new ResponseCache({ redisUrl: { value: SECRET } }), (error) => {
    assertPlainError(error, 'redisUrl')
    return true
  })
})

test('a connection failure names the provider as configured and its host, not its kind', async () => {
  const server = net.createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  const gateway = new Gateway({ providers: { local: { kind: 'openai', apiKey: 'k', baseUrl: `http://user:${SECRET}@127.0.0.1:${port}/v1` } }, maxRetries: 0 })
  try {
    const error = await gateway.chat({ ...REQUEST, model: 'local/m' }).then(() => assert.fail('connected'), (e) => e)
    assert.equal(error.code, 'UPSTREAM_UNAVAILABLE')
    assert.equal(error.message, `could not connect to provider 'local' at 127.0.0.1:${port}`)
    assert.ok(!inspect(error, { depth: 5 }).includes(SECRET))
  } finally {
    await gateway.close()
  }
})
