// SemanticCache (docs/API.md "Semantic cache"): paraphrases answered from cache, scoped to everything but the last
// user message, with the embedding call made through the gateway's own pipeline. The embeddings come from an
// OpenAI-kind /v1/embeddings fake on loopback that answers controlled vectors (helpers/fake-embeddings.mjs), the
// chat answers from the OpenAI fake of helpers/mock-vendors.mjs, which counts what reaches it. The shared part runs
// three child processes on a redis-server of the test's own (never the machine's 6379), which it stops mid-run.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { atCosine, startFakeEmbeddings } from './helpers/fake-embeddings.mjs'
import { startMockVendors } from './helpers/mock-vendors.mjs'
import { startOwnRedis } from './helpers/own-redis.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { FerrogateError, Gateway, SemanticCache } = require('../index.js')
const { gatewayRouter } = require('../lib/express.js')
const { startServe } = require('../lib/serve.js')

const CHILD = fileURLToPath(new URL('./helpers/semantic-child.mjs', import.meta.url))

let vendors
let embedder

before(async () => {
  vendors = await startMockVendors()
  embedder = await startFakeEmbeddings()
  // The question and its paraphrases, by cosine to it.
  embedder.set('How do I reset my password?', atCosine(1))
  embedder.set('How can I reset my password?', atCosine(0.97))
  embedder.set('What do I do to change my password?', atCosine(0.9))
})

after(async () => {
  await vendors.close()
  await embedder.close()
})

const providers = () => ({
  openai: { kind: 'openai', apiKey: 'sk-chat', baseUrl: vendors.openaiBaseUrl, models: ['gpt-4o-mini', 'gpt-4o'] },
  embedder: { kind: 'openai', apiKey: 'sk-embedder', baseUrl: embedder.baseUrl },
  mock: { kind: 'mock', models: ['demo'], mockChunkDelayMs: 0 },
})

function setup({ threshold = 0.95, scope, cache } = {}) {
  const records = []
  const semanticCache = new SemanticCache({ embeddingModel: 'embedder/text-embed', threshold, scope })
  const gateway = new Gateway({
    providers: providers(),
    maxRetries: 0,
    timeoutMs: 5000,
    cache,
    semanticCache,
    onCall: (record) => records.push(record),
  })
  return { gateway, semanticCache, records }
}

const marker = () => `m${Math.random().toString(36).slice(2)}`
const chatUpstream = (tag) => vendors.requests.filter((r) => JSON.stringify(r.body ?? '').includes(tag)).length
const ask = (text, { system, model = 'openai/gpt-4o-mini', earlier = [], ...rest } = {}) => ({
  model,
  messages: [...(system ? [{ role: 'system', content: system }] : []), ...earlier, { role: 'user', content: text }],
  ...rest,
})

test('a paraphrase at cosine 0.97 hits at threshold 0.95; one at 0.90 misses', async () => {
  const { gateway, semanticCache, records } = setup()
  const system = `support ${marker()}`
  const first = await gateway.chat(ask('How do I reset my password?', { system }))
  assert.equal(first.cached, false)
  assert.equal(first.cacheSimilarity, undefined)
  assert.equal(chatUpstream(system), 1)

  const paraphrase = await gateway.chat(ask('How can I reset my password?', { system }))
  assert.equal(paraphrase.cached, true)
  assert.ok(Math.abs(paraphrase.cacheSimilarity - 0.97) < 1e-3, String(paraphrase.cacheSimilarity))
  assert.equal(paraphrase.content, first.content)
  assert.equal(paraphrase.costUsd, 0)
  assert.equal(chatUpstream(system), 1, 'a hit makes no upstream chat call')

  const far = await gateway.chat(ask('What do I do to change my password?', { system }))
  assert.equal(far.cached, false)
  assert.equal(chatUpstream(system), 2)

  // Every embedding went through the gateway's pipeline, recorded as an embeddings call.
  await sleep(20)
  const embeddings = records.filter((r) => r.operation === 'embeddings')
  assert.equal(embeddings.length, 3)
  assert.ok(embeddings.every((r) => r.outcome === 'ok' && r.provider === 'embedder'))
  const hit = records.find((r) => r.operation === 'chat' && r.cached)
  assert.ok(Math.abs(hit.cacheSimilarity - 0.97) < 1e-3)
  const stats = semanticCache.stats()
  assert.deepEqual(
    { hits: stats.hits, misses: stats.misses, lookups: stats.lookups, entries: stats.entries, embedErrors: stats.embedErrors },
    { hits: 1, misses: 2, lookups: 3, entries: 2, embedErrors: 0 },
  )
  assert.ok(Math.abs(stats.p50SimilarityOfHits - 0.97) < 1e-3)
  await gateway.close()
})

test('a different system prompt, model or earlier turn with the same last message misses', async () => {
  const { gateway, semanticCache } = setup()
  const tag = marker()
  const system = `support ${tag}`
  assert.equal((await gateway.chat(ask('How do I reset my password?', { system }))).cached, false)
  assert.equal((await gateway.chat(ask('How do I reset my password?', { system: `${system} in French` }))).cached, false)
  assert.equal((await gateway.chat(ask('How do I reset my password?', { system, model: 'openai/gpt-4o' }))).cached, false)
  const earlier = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'hello' },
  ]
  assert.equal((await gateway.chat(ask('How do I reset my password?', { system, earlier }))).cached, false)
  assert.equal((await gateway.chat(ask('How do I reset my password?', { system, temperature: 0.1 }))).cached, false)
  assert.equal(chatUpstream(tag), 5)
  // The same scope again: a hit.
  assert.equal((await gateway.chat(ask('How can I reset my password?', { system, model: 'openai/gpt-4o' }))).cached, true)
  assert.equal(semanticCache.stats().hits, 1)
  await gateway.close()
})

test('cache: false, and more messages than scope.maxMessages, skip the semantic cache', async () => {
  const { gateway, semanticCache } = setup({ scope: { maxMessages: 4 } })
  const system = `support ${marker()}`
  await gateway.chat(ask('How do I reset my password?', { system }))
  const embedded = embedder.requests.length
  const skipped = await gateway.chat(ask('How can I reset my password?', { system, cache: false }))
  assert.equal(skipped.cached, false)
  assert.equal(embedder.requests.length, embedded, 'no embedding call for cache: false')

  const earlier = [
    { role: 'user', content: 'a' },
    { role: 'assistant', content: 'b' },
    { role: 'user', content: 'c' },
  ]
  // 4 messages (system + 3) then the question: 5 in all, more than 4.
  const long = await gateway.chat(ask('How can I reset my password?', { system, earlier }))
  assert.equal(long.cached, false)
  assert.equal(embedder.requests.length, embedded, 'no embedding call past maxMessages')
  assert.equal(semanticCache.stats().lookups, 1)
  await gateway.close()
})

test('a stream hit replays the stored answer as events', async () => {
  const { gateway } = setup()
  const system = `support ${marker()}`
  const chunks = []
  const first = await gateway.stream(ask('How do I reset my password?', { system }), (chunk) => chunks.push(chunk))
  assert.equal(first.cached, false)
  assert.ok(first.content.length > 0)
  const replayed = []
  const hit = await gateway.stream(ask('How can I reset my password?', { system }), (chunk) => replayed.push(chunk))
  assert.equal(hit.cached, true)
  assert.ok(hit.cacheSimilarity > 0.96)
  assert.equal(hit.content, first.content)
  assert.ok(replayed.length > 0)
  assert.equal(replayed.join(''), first.content)
  assert.equal(chunks.join(''), first.content)
  assert.equal(chatUpstream(system), 1)
  await gateway.close()
})

test('an embedding failure is a miss, never a failed call', async () => {
  const { gateway, semanticCache, records } = setup()
  const system = `support ${marker()}`
  embedder.failing = true
  try {
    const response = await gateway.chat(ask('How do I reset my password?', { system }))
    assert.equal(response.cached, false)
    assert.ok(response.content.length > 0)
  } finally {
    embedder.failing = false
  }
  const stats = semanticCache.stats()
  assert.equal(stats.embedErrors, 1)
  assert.equal(stats.misses, 1)
  await sleep(20)
  const failed = records.find((r) => r.operation === 'embeddings')
  assert.equal(failed.outcome, 'error')
  await gateway.close()
})

test('the exact cache answers first; the semantic cache only sees its misses', async () => {
  const { ResponseCache } = require('../index.js')
  const { gateway, semanticCache } = setup({ cache: new ResponseCache() })
  const system = `support ${marker()}`
  await gateway.chat(ask('How do I reset my password?', { system }))
  const exact = await gateway.chat(ask('How do I reset my password?', { system }))
  assert.equal(exact.cached, true)
  assert.equal(exact.cacheSimilarity, undefined)
  assert.equal(semanticCache.stats().lookups, 1)
  const semantic = await gateway.chat(ask('How can I reset my password?', { system }))
  assert.equal(semantic.cached, true)
  assert.ok(semantic.cacheSimilarity > 0.96)
  await gateway.close()
})

test('bad options are CONFIG errors', () => {
  for (const options of [{}, { embeddingModel: 'embedder/x', threshold: 1.5 }, { embeddingModel: 'embedder/x', maxEntries: 0 }, { embeddingModel: 'e/x', prefix: 'p:' }]) {
    assert.throws(() => new SemanticCache(options), (e) => e instanceof FerrogateError && e.code === 'CONFIG', JSON.stringify(options))
  }
  assert.throws(() => new Gateway({ providers: providers(), semanticCache: {} }), (e) => e.code === 'CONFIG')
})

describe('the x-ferrogate-cache header', () => {
  const read = async (url, body) => {
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const text = await res.text()
    return { status: res.status, header: res.headers.get('x-ferrogate-cache'), text }
  }
  const bodies = (system) => [
    { model: 'openai/gpt-4o-mini', messages: [{ role: 'system', content: system }, { role: 'user', content: 'How do I reset my password?' }] },
    { model: 'openai/gpt-4o-mini', messages: [{ role: 'system', content: system }, { role: 'user', content: 'How can I reset my password?' }] },
  ]

  test('gatewayRouter and serve name a semantic hit and its similarity, whole and streamed', async () => {
    const { gateway } = setup()
    const app = express()
    app.use(gatewayRouter(gateway, { log: false }))
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const served = await startServe(
      { providers: providers(), maxRetries: 0, semanticCache: { embeddingModel: 'embedder/text-embed', threshold: 0.95 } },
      { engine: 'native', host: '127.0.0.1', port: 0 },
    )
    try {
      for (const url of [`http://127.0.0.1:${server.address().port}`, served.url]) {
        const [question, paraphrase] = bodies(`support ${marker()}`)
        const miss = await read(url, question)
        assert.equal(miss.status, 200)
        assert.equal(miss.header, null)
        const hit = await read(url, paraphrase)
        assert.equal(hit.status, 200, hit.text)
        assert.equal(hit.header, 'semantic; similarity=0.97')
        const streamed = await read(url, { ...paraphrase, stream: true })
        assert.equal(streamed.header, 'semantic; similarity=0.97')
        assert.match(streamed.text, /data: \[DONE\]/)
      }
    } finally {
      server.closeAllConnections?.()
      await new Promise((resolve) => server.close(resolve))
      await served.close()
      await gateway.close()
    }
  })
})

/** A child process running helpers/semantic-child.mjs. */
async function startChild(redisUrl, prefix) {
  const proc = spawn(process.execPath, [CHILD, redisUrl, prefix, embedder.baseUrl], { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = new Map()
  let buffered = ''
  let ready
  const readyPromise = new Promise((resolve) => (ready = resolve))
  proc.stdout.on('data', (chunk) => {
    buffered += chunk
    let newline
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const message = JSON.parse(buffered.slice(0, newline))
      buffered = buffered.slice(newline + 1)
      if (message.ready) ready(message)
      else if (waiting.has(message.id)) {
        waiting.get(message.id)(message)
        waiting.delete(message.id)
      }
    }
  })
  let next = 0
  const send = (command) =>
    new Promise((resolve) => {
      const id = ++next
      waiting.set(id, resolve)
      proc.stdin.write(`${JSON.stringify({ id, ...command })}\n`)
    })
  await readyPromise
  return {
    chat: (text) => send({ op: 'chat', text }),
    stats: async () => (await send({ op: 'stats' })).stats,
    async kill() {
      proc.kill('SIGKILL')
      await once(proc, 'exit')
    },
    async close() {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.stdin.end()
      await once(proc, 'exit')
    },
  }
}

async function until(check, timeoutMs, what) {
  const started = Date.now()
  for (;;) {
    if (await check()) return Date.now() - started
    if (Date.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`)
    await sleep(10)
  }
}

describe('shared on Redis: three processes', () => {
  let redis
  before(async () => {
    redis = await startOwnRedis()
  })
  after(() => redis.stop())

  test('a hit in one is a hit in all within 1 s; a new process loads the entries; Redis down costs misses only', async () => {
    const prefix = `fgtest:semantic:${process.pid}:`
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => startChild(redis.url, prefix)))
    let d
    try {
      const question = 'How do I reset my password?'
      const paraphrase = 'How can I reset my password?'
      const stored = await a.chat(question)
      assert.equal(stored.cached, false, JSON.stringify(stored))
      // Every other process's index follows the write within a second.
      for (const peer of [b, c]) {
        const delay = await until(async () => (await peer.stats()).entries >= 1, 1000, 'the entry reached the peer')
        assert.ok(delay <= 1000)
        const hit = await peer.chat(paraphrase)
        assert.equal(hit.cached, true, JSON.stringify(hit))
        assert.equal(hit.content, stored.content)
        assert.ok(Math.abs(hit.cacheSimilarity - 0.97) < 1e-3)
      }

      // A process killed outright, and a new one in its place: it loads the live entries (open() waits for them).
      await b.kill()
      d = await startChild(redis.url, prefix)
      assert.ok((await d.stats()).entries >= 1)
      const loaded = await d.chat(paraphrase)
      assert.equal(loaded.cached, true, JSON.stringify(loaded))
      assert.equal(loaded.content, stored.content)

      // Redis goes away: lookups miss, calls succeed.
      await redis.stop()
      const whileDown = await c.chat(paraphrase)
      assert.equal(whileDown.cached, false, JSON.stringify(whileDown))
      assert.ok(whileDown.content.length > 0)
      const other = 'Where are my invoices?'
      const otherParaphrase = 'Where can I find my invoices?'
      embedder.set(other, [0, 0, 1, 0, 0, 0, 0, 0])
      embedder.set(otherParaphrase, [0, 0, 0.98, Math.sqrt(1 - 0.98 * 0.98), 0, 0, 0, 0])
      const storedWhileDown = await a.chat(other)
      assert.equal(storedWhileDown.cached, false)
      assert.ok((await c.stats()).storeErrors > 0)

      // Redis returns (empty: it keeps nothing on disk). The saves made while it was away (a's answer, and c's miss)
      // are written then, and d, which made neither, finds them: its index held 1 entry, now 3.
      await redis.start()
      await until(async () => (await d.stats()).entries >= 3, 5000, 'the index caught up')
      const caughtUp = await d.chat(otherParaphrase)
      assert.equal(caughtUp.cached, true, JSON.stringify(caughtUp))
      assert.equal(caughtUp.content, storedWhileDown.content)
      assert.ok(Math.abs(caughtUp.cacheSimilarity - 0.98) < 1e-3)
    } finally {
      await Promise.all([a, b, c, d].filter(Boolean).map((child) => child.close().catch(() => {})))
    }
  })
})
