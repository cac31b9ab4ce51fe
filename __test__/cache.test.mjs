// ResponseCache, alone and in the gateway, against the loopback mock vendors (which record
// every request they get, so "no upstream call" is counted, not assumed). Each test asks
// with its own marker text and counts only the upstream requests that carry it.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { FerrogateError, Gateway, ResponseCache } from '../index.js'
import { startMockVendors } from './helpers/mock-vendors.mjs'

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

let markers = 0
const newMarker = () => `cache-test-${process.pid}-${++markers}`
const upstreamCalls = (marker) => vendors.requests.filter((r) => JSON.stringify(r.body ?? '').includes(marker)).length
const ask = (marker, extra = {}) => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `hello ${marker}` }], ...extra })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

function gateway(cache, overrides = {}) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 0,
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    cache,
    ...overrides,
  })
}

describe('cache in the gateway', () => {
  test('a repeated request is answered from the cache: no upstream call, cached: true, costUsd 0', async () => {
    const cache = new ResponseCache()
    const gw = gateway(cache)
    const marker = newMarker()
    const first = await gw.chat(ask(marker))
    const second = await gw.chat(ask(marker))
    assert.equal(upstreamCalls(marker), 1)
    assert.equal(first.cached, false)
    assert.equal(second.cached, true)
    assert.equal(second.costUsd, 0)
    assert.equal(second.attempts, 0)
    assert.equal(second.content, first.content)
    assert.deepEqual(second.usage, first.usage)
    assert.notEqual(second.requestId, first.requestId)
    assert.deepEqual(cache.stats(), { hits: 1, misses: 1, entries: 1, bytes: cache.stats().bytes })
    const stats = gw.stats()
    assert.equal(stats.cacheHits, 1)
    assert.equal(stats.cacheMisses, 1)
    // A different prompt is a miss.
    await gw.chat(ask(`${marker}-other`))
    assert.equal(upstreamCalls(`${marker}-other`), 1)
  })

  test('the key ignores user, metadata, timeouts and retries', async () => {
    const gw = gateway(new ResponseCache())
    const marker = newMarker()
    await gw.chat(ask(marker, { user: 'alice', metadata: { a: '1' } }))
    const again = await gw.chat(ask(marker, { user: 'bob', metadata: { b: '2' }, timeoutMs: 4000, maxRetries: 1 }))
    assert.equal(again.cached, true)
    assert.equal(upstreamCalls(marker), 1)
  })

  test('entries expire after ttlSeconds', async () => {
    const gw = gateway(new ResponseCache({ ttlSeconds: 0.2 }))
    const marker = newMarker()
    await gw.chat(ask(marker))
    assert.equal((await gw.chat(ask(marker))).cached, true)
    await sleep(400)
    assert.equal((await gw.chat(ask(marker))).cached, false)
    assert.equal(upstreamCalls(marker), 2)
  })

  test('maxBytes evicts the least recently used answers', async () => {
    const cache = new ResponseCache({ maxBytes: 8000 })
    const gw = gateway(cache)
    const marker = newMarker()
    const filler = 'x'.repeat(1500) // echoed back, so each answer is > 1.5 kB
    for (let i = 0; i < 10; i++) await gw.chat(ask(`${marker}-${i} ${filler}`))
    const { entries, bytes } = cache.stats()
    assert.ok(bytes <= 8000, `bytes ${bytes} within maxBytes`)
    assert.ok(entries >= 1 && entries < 10, `entries ${entries}`)
    // The newest answer is kept, the oldest went.
    assert.equal((await gw.chat(ask(`${marker}-9 ${filler}`))).cached, true)
    assert.equal((await gw.chat(ask(`${marker}-0 ${filler}`))).cached, false)
    assert.equal(upstreamCalls(`${marker}-0 `), 2)
  })

  test('maxEntries bounds the number of answers', async () => {
    const cache = new ResponseCache({ maxEntries: 3 })
    const gw = gateway(cache)
    const marker = newMarker()
    for (let i = 0; i < 8; i++) await gw.chat(ask(`${marker}-${i}`))
    assert.ok(cache.stats().entries <= 3)
  })

  test('50 identical concurrent requests make one upstream call and all get its answer', async () => {
    const gw = gateway(new ResponseCache())
    const marker = newMarker()
    vendors.enqueue('openai', { delayMs: 200 })
    const answers = await Promise.all(Array.from({ length: 50 }, () => gw.chat(ask(marker))))
    assert.equal(upstreamCalls(marker), 1)
    assert.equal(new Set(answers.map((a) => a.content)).size, 1)
    assert.equal(answers.filter((a) => !a.cached).length, 1)
    const stats = gw.stats()
    assert.equal(stats.cacheMisses, 1)
    assert.equal(stats.cacheCoalesced + stats.cacheHits, 49)
    assert.ok(stats.cacheCoalesced > 0, 'the others joined the call in flight')
  })

  test('concurrent identical requests all get the upstream error, and it is not cached', async () => {
    const gw = gateway(new ResponseCache())
    const marker = newMarker()
    vendors.enqueue('openai', {
      delayMs: 200,
      status: 500,
      body: { error: { message: 'upstream broke', type: 'server_error', param: null, code: null } },
    })
    const errors = await Promise.all(Array.from({ length: 10 }, () => rejection(gw.chat(ask(marker)))))
    assert.equal(upstreamCalls(marker), 1)
    for (const error of errors) {
      assert.ok(error instanceof FerrogateError)
      assert.equal(error.code, 'PROVIDER_ERROR')
    }
    const retried = await gw.chat(ask(marker))
    assert.equal(retried.cached, false)
    assert.equal(upstreamCalls(marker), 2)
  })

  test('a caller that aborts while leading does not fail the callers waiting on it', async () => {
    const gw = gateway(new ResponseCache())
    const marker = newMarker()
    vendors.enqueue('openai', { hang: true })
    const leader = new AbortController()
    const led = rejection(gw.chat(ask(marker, { signal: leader.signal })))
    await sleep(50)
    const follower = gw.chat(ask(marker))
    await sleep(50)
    leader.abort()
    assert.equal((await led).code, 'ABORTED')
    const answer = await follower
    assert.equal(answer.cached, false, 'the follower went upstream itself')
    assert.equal(upstreamCalls(marker), 2)
  })

  test('a cached answer is streamed again, text and tool calls, with no upstream call', async () => {
    const gw = gateway(new ResponseCache())
    const marker = newMarker()
    const first = await gw.chat(ask(marker))
    let streamed = ''
    const viaCallback = await gw.stream(ask(marker), (text) => {
      streamed += text
    })
    assert.equal(streamed, first.content)
    assert.equal(viaCallback.cached, true)
    const events = []
    for await (const event of gw.streamEvents(ask(marker))) events.push(event)
    assert.deepEqual(events.map((e) => e.type), ['text', 'done'])
    assert.equal(events[0].text, first.content)
    assert.equal(events[1].response.cached, true)
    assert.equal(upstreamCalls(marker), 1)

    const toolMarker = newMarker()
    vendors.enqueue('openai', {
      body: {
        id: 'chatcmpl-tools', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
        choices: [{
          index: 0, finish_reason: 'tool_calls', logprobs: null,
          message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }] },
        }],
        usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
      },
    })
    const tools = [{ name: 'lookup', parameters: { type: 'object', properties: { q: { type: 'string' } } } }]
    await gw.chat(ask(toolMarker, { tools }))
    const replay = []
    for await (const event of gw.streamEvents(ask(toolMarker, { tools }))) replay.push(event)
    assert.deepEqual(replay[0], { type: 'tool_call', index: 0, id: 'call_1', name: 'lookup', argumentsDelta: '{"q":"x"}' })
    assert.equal(replay.at(-1).response.finishReason, 'tool_calls')
    assert.equal(upstreamCalls(toolMarker), 1)
  })

  test('cache: false on a request neither reads nor writes the cache', async () => {
    const cache = new ResponseCache()
    const gw = gateway(cache)
    const marker = newMarker()
    await gw.chat(ask(marker, { cache: false }))
    await gw.chat(ask(marker, { cache: false }))
    assert.equal(upstreamCalls(marker), 2)
    assert.equal(cache.stats().entries, 0)
    await gw.chat(ask(marker))
    assert.equal(upstreamCalls(marker), 3)
  })

  test('a gateway without a cache (or with cache: false) always goes upstream', async () => {
    const marker = newMarker()
    for (const gw of [gateway(undefined), gateway(false)]) {
      await gw.chat(ask(marker))
    }
    assert.equal(upstreamCalls(marker), 2)
    assert.throws(() => gateway({ get() {} }), (e) => e.code === 'CONFIG')
  })

  test('a route alias is cached under the alias, and its record names the route', async () => {
    const records = []
    const gw = gateway(new ResponseCache(), {
      routes: { smart: [{ provider: 'openai', model: 'gpt-4o-mini', healthCheck: false }] },
      onCall: (record) => records.push(record),
    })
    const marker = newMarker()
    const first = await gw.chat(ask(marker, { model: 'smart' }))
    const second = await gw.chat(ask(marker, { model: 'smart' }))
    assert.deepEqual([first.cached, second.cached], [false, true])
    assert.equal(upstreamCalls(marker), 1)
    for (let i = 0; i < 200 && records.length < 2; i++) await sleep(10)
    assert.deepEqual(records.map((r) => [r.route, r.provider, r.vendorModel]), [
      ['smart', 'openai', 'gpt-4o-mini'],
      ['smart', 'openai', 'gpt-4o-mini'],
    ])
  })

  test('answers stored through the class API are served by the gateway, and the other way round', async () => {
    const cache = new ResponseCache()
    const gw = gateway(cache)
    const marker = newMarker()
    cache.set(ResponseCache.keyFor(ask(marker)), { content: 'planted', usage: { promptTokens: 1, completionTokens: 2 } })
    const planted = await gw.chat(ask(marker))
    assert.equal(planted.content, 'planted')
    assert.equal(planted.cached, true)
    assert.equal(upstreamCalls(marker), 0)

    const other = newMarker()
    const answer = await gw.chat(ask(other))
    assert.equal(cache.get(ResponseCache.keyFor(ask(other))).content, answer.content)
  })
})

describe('ResponseCache class', () => {
  const answer = (content) => ({ content, finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 4 } })

  test('get, set, delete, clear and stats', () => {
    const cache = new ResponseCache({ maxEntries: 10 })
    assert.equal(cache.get('k'), undefined)
    cache.set('k', answer('v'))
    const found = cache.get('k')
    assert.equal(found.content, 'v')
    assert.equal(found.usage.totalTokens, 7)
    assert.equal(cache.delete('k'), true)
    assert.equal(cache.delete('k'), false)
    cache.set('a', answer('1'))
    cache.set('b', answer('2'))
    assert.equal(cache.stats().entries, 2)
    cache.clear()
    const stats = cache.stats()
    assert.deepEqual([stats.entries, stats.bytes], [0, 0])
    assert.deepEqual([stats.hits, stats.misses], [1, 1])
  })

  test('a per-entry ttlSeconds overrides the default', async () => {
    const cache = new ResponseCache({ ttlSeconds: 3600 })
    cache.set('short', answer('s'), 0.1)
    cache.set('long', answer('l'))
    await sleep(300)
    assert.equal(cache.get('short'), undefined)
    assert.equal(cache.get('long').content, 'l')
  })

  test('bad options are CONFIG errors, bad values INVALID_REQUEST', () => {
    for (const options of [{ maxEntries: 0 }, { maxEntries: 1.5 }, { maxBytes: -1 }, { ttlSeconds: 0 }, { ttlSeconds: Number.NaN }]) {
      assert.throws(() => new ResponseCache(options), (e) => e instanceof FerrogateError && e.code === 'CONFIG', JSON.stringify(options))
    }
    const cache = new ResponseCache()
    assert.throws(() => cache.set('k', { content: 'x', finishReason: 'nope' }), (e) => e.code === 'INVALID_REQUEST')
    assert.throws(() => cache.set('k', {}), (e) => e.code === 'INVALID_REQUEST')
    assert.throws(() => ResponseCache.keyFor({ model: 'm', messages: [] }), (e) => e.code === 'INVALID_REQUEST')
  })

  test('keyFor is stable under JSON key order and ignores what does not change the answer', () => {
    const base = {
      model: 'openai/gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ name: 't', parameters: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'number' } } } }],
      responseFormat: { type: 'json_schema', name: 's', schema: { type: 'object', required: ['a'], properties: { a: {} } } },
    }
    const key = ResponseCache.keyFor(base)
    assert.match(key, /^fg1:[0-9a-f]{64}$/)
    const reordered = {
      responseFormat: { schema: { properties: { a: {} }, required: ['a'], type: 'object' }, name: 's', type: 'json_schema' },
      tools: [{ parameters: { properties: { b: { type: 'number' }, a: { type: 'string' } }, type: 'object' }, name: 't' }],
      messages: [{ content: 'hi', role: 'user' }],
      model: 'openai/gpt-4o-mini',
    }
    assert.equal(ResponseCache.keyFor(reordered), key)
    const ignored = { user: 'u', metadata: { x: 'y' }, timeoutMs: 10, maxRetries: 2, priority: 3, cache: false, signal: new AbortController().signal }
    assert.equal(ResponseCache.keyFor({ ...base, ...ignored }), key)
  })

  test('keyFor changes with every field that changes the answer', () => {
    const base = { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }
    const key = ResponseCache.keyFor(base)
    const variants = {
      provider: { model: 'other/gpt-4o-mini' },
      model: { model: 'openai/gpt-4o' },
      messages: { messages: [{ role: 'user', content: 'hi!' }] },
      role: { messages: [{ role: 'system', content: 'hi' }] },
      temperature: { temperature: 0.3 },
      topP: { topP: 0.5 },
      maxTokens: { maxTokens: 100 },
      stop: { stop: ['END'] },
      tools: { tools: [{ name: 't', parameters: { type: 'object' } }] },
      toolChoice: { toolChoice: 'required' },
      responseFormat: { responseFormat: { type: 'json_object' } },
    }
    const keys = new Set([key])
    for (const [field, change] of Object.entries(variants)) {
      const changed = ResponseCache.keyFor({ ...base, ...change })
      assert.notEqual(changed, key, `${field} must change the key`)
      keys.add(changed)
    }
    assert.equal(keys.size, Object.keys(variants).length + 1)
  })
})
