// OpenAI-compatible presets: `kind: 'groq'` (and the others) is kind 'openai' with the vendor's base URL and key
// variable filled in; an explicit baseUrl / apiKey wins; an unknown kind is CONFIG naming it.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'

import { Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

let mock
before(async () => {
  mock = await startMockVendors()
})
after(() => mock.close())
const hi = [{ role: 'user', content: 'hi there' }]

function withEnv(name, value, fn) {
  const saved = process.env[name]
  if (value === undefined) delete process.env[name]
  else process.env[name] = value
  try {
    return fn()
  } finally {
    if (saved === undefined) delete process.env[name]
    else process.env[name] = saved
  }
}

test("a preset's key comes from its own variable; an explicit apiKey wins; baseUrl overrides the vendor's", async () => {
  const fromEnv = withEnv('GROQ_API_KEY', 'gsk-from-env-0001', () =>
    new Gateway({ providers: { groq: { kind: 'groq', baseUrl: mock.openaiBaseUrl } }, maxRetries: 0 }),
  )
  const explicit = withEnv('GROQ_API_KEY', 'gsk-from-env-0001', () =>
    new Gateway({ providers: { groq: { kind: 'groq', baseUrl: mock.openaiBaseUrl, apiKey: 'gsk-explicit-0002' } }, maxRetries: 0 }),
  )
  const start = mock.requests.length
  const answer = await fromEnv.chat({ model: 'groq/llama-3.3-70b-versatile', messages: hi })
  await explicit.chat({ model: 'groq/llama-3.3-70b-versatile', messages: hi })
  assert.equal(answer.content, 'echo: hi there')
  assert.equal(answer.provider, 'groq')
  assert.deepEqual(
    mock.requests.slice(start).map((r) => r.headers.authorization),
    ['Bearer gsk-from-env-0001', 'Bearer gsk-explicit-0002'],
  )
  await fromEnv.close()
  await explicit.close()
})

test('ollama is local and takes no key', async () => {
  const gw = new Gateway({ providers: { local: { kind: 'ollama', baseUrl: mock.openaiBaseUrl } }, maxRetries: 0 })
  const start = mock.requests.length
  // The mock wants a key like OpenAI; a local server does not, so none is sent.
  await assert.rejects(gw.chat({ model: 'local/llama3.2', messages: hi }), (e) => e.code === 'AUTHENTICATION')
  assert.equal(mock.requests[start].headers.authorization, undefined)
  await gw.close()
})

test('a preset without its key, and an unknown kind, are CONFIG naming what is missing', () => {
  withEnv('MISTRAL_API_KEY', undefined, () =>
    assert.throws(
      () => new Gateway({ providers: { m: { kind: 'mistral' } } }),
      (e) => e.code === 'CONFIG' && /MISTRAL_API_KEY/.test(e.message),
    ),
  )
  assert.throws(
    () => new Gateway({ providers: { x: { kind: 'groqq', apiKey: 'k' } } }),
    (e) => e.code === 'CONFIG' && /unknown kind 'groqq'/.test(e.message) && /groq, mistral/.test(e.message),
  )
})
