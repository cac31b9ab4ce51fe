// Azure OpenAI (kind 'azure'). The fake in helpers/mock-vendors.mjs is checked first with the official
// `openai` package (AzureOpenAI for the classic deployment URLs, the plain OpenAI client for the v1 URL, as
// Microsoft's v1 docs use it), then ferrogate is checked against it: both URL shapes with api-version, api-key
// versus Bearer (a fixed token and an async token function), a deployment name with a '/', embeddings, and
// configuration mistakes refused at construction without key material in any message.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import OpenAI, { AzureOpenAI } from 'openai'

import { Gateway } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const KEY = 'az-key-0123456789abcdef'
const TOKEN = 'entra-token-0123456789'
const API_VERSION = '2024-10-21'
let mock

before(async () => {
  mock = await startMockVendors({ apiKeys: { azure: KEY } })
})
after(() => mock.close())

const since = () => {
  const start = mock.requests.length
  return () => mock.requests.slice(start)
}
const hi = [{ role: 'user', content: 'hi there' }]

describe('the Azure fake, checked with the official openai package', () => {
  test('AzureOpenAI (classic): chat, stream and embeddings at /openai/deployments/{d}/…?api-version= with api-key', async () => {
    const client = new AzureOpenAI({ endpoint: mock.url, apiKey: KEY, apiVersion: API_VERSION, deployment: 'gpt-4o-prod' })
    const seen = since()
    const answer = await client.chat.completions.create({ model: 'gpt-4o-prod', messages: hi })
    assert.equal(answer.choices[0].message.content, 'echo: hi there')
    assert.equal(answer.choices[0].content_filter_results.hate.filtered, false)
    const stream = await client.chat.completions.create({ model: 'gpt-4o-prod', messages: hi, stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    assert.equal(text, 'echo: hi there')
    const [chat, streamed] = seen()
    assert.equal(chat.path, '/openai/deployments/gpt-4o-prod/chat/completions')
    assert.equal(chat.query['api-version'], API_VERSION)
    assert.equal(chat.headers['api-key'], KEY)
    assert.equal(chat.headers.authorization, undefined)
    assert.equal(streamed.body.stream, true)

    const embedder = new AzureOpenAI({ endpoint: mock.url, apiKey: KEY, apiVersion: API_VERSION, deployment: 'emb-prod' })
    const vectors = await embedder.embeddings.create({ model: 'emb-prod', input: ['a', 'b'] })
    assert.equal(vectors.data.length, 2)
    assert.equal(seen().at(-1).path, '/openai/deployments/emb-prod/embeddings')
  })

  test('AzureOpenAI: an Entra ID token as Bearer; a wrong key is Azure 401; an escaped deployment with a / is one segment', async () => {
    const seen = since()
    const withToken = new AzureOpenAI({ endpoint: mock.url, azureADTokenProvider: async () => TOKEN, apiVersion: API_VERSION, deployment: 'd1' })
    await withToken.chat.completions.create({ model: 'd1', messages: hi })
    assert.equal(seen()[0].headers.authorization, `Bearer ${TOKEN}`)
    assert.equal(seen()[0].headers['api-key'], undefined)

    const wrong = new AzureOpenAI({ endpoint: mock.url, apiKey: 'not-the-key', apiVersion: API_VERSION, deployment: 'd1', maxRetries: 0 })
    await assert.rejects(wrong.chat.completions.create({ model: 'd1', messages: hi }), (e) => e instanceof OpenAI.AuthenticationError)

    const slashed = new AzureOpenAI({ endpoint: mock.url, apiKey: KEY, apiVersion: API_VERSION, deployment: encodeURIComponent('team/gpt-4o') })
    await slashed.chat.completions.create({ model: 'team/gpt-4o', messages: hi })
    assert.equal(seen().at(-1).deployment, 'team/gpt-4o')
    // Unescaped, the name is two segments: no such deployment URL.
    const unescaped = new AzureOpenAI({ endpoint: mock.url, apiKey: KEY, apiVersion: API_VERSION, deployment: 'team/gpt-4o', maxRetries: 0 })
    await assert.rejects(unescaped.chat.completions.create({ model: 'x', messages: hi }), (e) => e instanceof OpenAI.NotFoundError)
  })

  test('the plain OpenAI client at /openai/v1 (the model is the deployment); a classic URL without api-version is 404', async () => {
    const client = new OpenAI({ baseURL: mock.azureV1BaseUrl, apiKey: KEY })
    const seen = since()
    const answer = await client.chat.completions.create({ model: 'my-deployment', messages: hi })
    assert.equal(answer.choices[0].message.content, 'echo: hi there')
    assert.equal(seen()[0].path, '/openai/v1/chat/completions')
    assert.equal(seen()[0].body.model, 'my-deployment')

    const res = await fetch(`${mock.url}/openai/deployments/d1/chat/completions`, {
      method: 'POST',
      headers: { 'api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: hi }),
    })
    assert.equal(res.status, 404)
    assert.equal((await res.json()).error.code, '404')
  })
})

function gateway(provider, extra = {}) {
  return new Gateway({ providers: { az: { kind: 'azure', ...provider } }, maxRetries: 0, ...extra })
}

describe('ferrogate against the Azure fake', () => {
  test('classic URLs: deployment + apiVersion, api-key header, chat and stream', async () => {
    const gw = gateway({ baseUrl: mock.url, deployment: 'gpt-4o-prod', apiVersion: API_VERSION, apiKey: KEY })
    const seen = since()
    const answer = await gw.chat({ model: 'az/gpt-4o', messages: hi })
    assert.equal(answer.content, 'echo: hi there')
    assert.equal(answer.provider, 'az')
    assert.equal(answer.usage.totalTokens, 15)
    const chunks = []
    const streamed = await gw.stream({ model: 'az/gpt-4o', messages: hi }, (text) => chunks.push(text))
    assert.equal(chunks.join(''), 'echo: hi there')
    assert.equal(streamed.content, 'echo: hi there')
    for (const request of seen()) {
      assert.equal(request.path, '/openai/deployments/gpt-4o-prod/chat/completions')
      assert.equal(request.query['api-version'], API_VERSION)
      assert.equal(request.headers['api-key'], KEY)
      assert.equal(request.headers.authorization, undefined)
    }
    await gw.close()
  })

  test('the v1 URL: the model is the deployment, no api-version', async () => {
    const gw = gateway({ baseUrl: mock.azureV1BaseUrl, apiKey: KEY })
    const seen = since()
    const answer = await gw.chat({ model: 'az/my-deployment', messages: hi })
    assert.equal(answer.content, 'echo: hi there')
    const [request] = seen()
    assert.equal(request.path, '/openai/v1/chat/completions')
    assert.equal(request.body.model, 'my-deployment')
    assert.deepEqual(request.query, {})
    assert.equal(request.headers['api-key'], KEY)
    await gw.close()
  })

  test('a deployment name with a / is one escaped path segment', async () => {
    const gw = gateway({ baseUrl: mock.url, deployment: 'team/gpt-4o', apiVersion: API_VERSION, apiKey: KEY })
    const seen = since()
    await gw.chat({ model: 'az/gpt-4o', messages: hi })
    assert.equal(seen()[0].path, '/openai/deployments/team%2Fgpt-4o/chat/completions')
    assert.equal(seen()[0].deployment, 'team/gpt-4o')
    await gw.close()
  })

  test('azureAdToken: a string is sent as Bearer; a function is asked before every request', async () => {
    const fixed = gateway({ baseUrl: mock.url, deployment: 'd1', apiVersion: API_VERSION, azureAdToken: TOKEN })
    const seen = since()
    await fixed.chat({ model: 'az/d1', messages: hi })
    assert.equal(seen()[0].headers.authorization, `Bearer ${TOKEN}`)
    assert.equal(seen()[0].headers['api-key'], undefined)
    await fixed.close()

    let asked = 0
    const rotating = gateway({
      baseUrl: mock.url,
      deployment: 'd1',
      apiVersion: API_VERSION,
      azureAdToken: async () => `token-${++asked}`,
    })
    const later = since()
    await rotating.chat({ model: 'az/d1', messages: hi })
    await rotating.chat({ model: 'az/d1', messages: [{ role: 'user', content: 'again' }] })
    assert.equal(asked, 2)
    assert.deepEqual(later().map((r) => r.headers.authorization), ['Bearer token-1', 'Bearer token-2'])
    await rotating.close()
  })

  test('a token function that throws fails the call with AUTHENTICATION, naming nothing secret', async () => {
    const gw = gateway({
      baseUrl: mock.url,
      deployment: 'd1',
      apiVersion: API_VERSION,
      azureAdToken: async () => {
        throw new Error('credential chain exhausted')
      },
    })
    const before = mock.requests.length
    await assert.rejects(gw.chat({ model: 'az/d1', messages: hi }), (e) => {
      assert.equal(e.code, 'AUTHENTICATION')
      assert.match(e.message, /credential chain exhausted/)
      return true
    })
    assert.equal(mock.requests.length, before, 'nothing was sent without a token')
    await gw.close()
  })

  test('AZURE_OPENAI_API_KEY is the key when apiKey is not given; a wrong key is AUTHENTICATION without the key', async () => {
    const saved = process.env.AZURE_OPENAI_API_KEY
    process.env.AZURE_OPENAI_API_KEY = KEY
    try {
      const gw = gateway({ baseUrl: mock.azureV1BaseUrl })
      const seen = since()
      await gw.chat({ model: 'az/d1', messages: hi })
      assert.equal(seen()[0].headers['api-key'], KEY)
      await gw.close()
    } finally {
      if (saved === undefined) delete process.env.AZURE_OPENAI_API_KEY
      else process.env.AZURE_OPENAI_API_KEY = saved
    }
    const wrongKey = 'az-wrong-key-9876543210'
    const gw = gateway({ baseUrl: mock.azureV1BaseUrl, apiKey: wrongKey })
    await assert.rejects(gw.chat({ model: 'az/d1', messages: hi }), (e) => {
      assert.equal(e.code, 'AUTHENTICATION')
      assert.equal(e.status, 401)
      assert.ok(!JSON.stringify({ ...e, message: e.message }).includes(wrongKey), 'the key is not in the error')
      return true
    })
    await gw.close()
  })

  test('embeddings at the deployment, in OpenAI shape', async () => {
    const gw = gateway({ baseUrl: mock.url, deployment: 'emb-prod', apiVersion: API_VERSION, apiKey: KEY })
    const seen = since()
    const result = await gw.embed({ model: 'az/text-embedding-3-small', input: ['one', 'two', 'three'] })
    assert.equal(result.embeddings.length, 3)
    assert.ok(result.embeddings.every((v) => v instanceof Float32Array && v.length === 8))
    assert.equal(seen()[0].path, '/openai/deployments/emb-prod/embeddings')
    assert.equal(seen()[0].query['api-version'], API_VERSION)
    await gw.close()
  })

  test('configuration mistakes are CONFIG at construction, naming what is missing and no key', async () => {
    const refused = (provider, pattern) => {
      assert.throws(
        () => gateway(provider),
        (e) => {
          assert.equal(e.code, 'CONFIG')
          assert.match(e.message, pattern)
          assert.ok(!e.message.includes(KEY) && !e.message.includes(TOKEN), 'no key material')
          return true
        },
      )
    }
    const saved = process.env.AZURE_OPENAI_API_KEY
    const savedEndpoint = process.env.AZURE_OPENAI_ENDPOINT
    delete process.env.AZURE_OPENAI_API_KEY
    delete process.env.AZURE_OPENAI_ENDPOINT
    try {
      refused({ baseUrl: mock.url, deployment: 'd1', apiKey: KEY }, /deployment but no apiVersion/)
      refused({ baseUrl: mock.url, apiVersion: API_VERSION, apiKey: KEY }, /apiVersion but no deployment/)
      refused({ apiKey: KEY }, /no baseUrl and AZURE_OPENAI_ENDPOINT is not set/)
      refused({ baseUrl: mock.url, apiKey: KEY, azureAdToken: TOKEN }, /both apiKey and azureAdToken/)
      refused({ baseUrl: mock.azureV1BaseUrl }, /no apiKey or azureAdToken, and AZURE_OPENAI_API_KEY is not set/)
      refused({ baseUrl: mock.url, deployment: '', apiVersion: API_VERSION, apiKey: KEY }, /empty deployment/)
    } finally {
      if (saved !== undefined) process.env.AZURE_OPENAI_API_KEY = saved
      if (savedEndpoint !== undefined) process.env.AZURE_OPENAI_ENDPOINT = savedEndpoint
    }
  })
})
