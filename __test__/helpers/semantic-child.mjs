// One process of the shared semantic cache test: a Gateway whose SemanticCache lives on Redis.
// argv: redisUrl prefix embeddingsBaseUrl. Reads JSON commands from stdin, one a line:
// { id, op: 'chat', text } | { id, op: 'stats' }, and prints one JSON answer a line: first
// { ready: true }, then { id, ... } per command.
import { createRequire } from 'node:module'
import readline from 'node:readline'

const require = createRequire(import.meta.url)
const { Gateway, SemanticCache } = require('../../index.js')

const [redisUrl, prefix, embeddingsBaseUrl] = process.argv.slice(2)
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)

const cache = new SemanticCache({ embeddingModel: 'embedder/text-embed', threshold: 0.95, redisUrl, prefix })
const gateway = new Gateway({
  providers: {
    mock: { kind: 'mock', models: ['demo'], mockChunkDelayMs: 0 },
    embedder: { kind: 'openai', apiKey: 'sk-embedder', baseUrl: embeddingsBaseUrl },
  },
  maxRetries: 0,
  timeoutMs: 5000,
  semanticCache: cache,
})
try {
  await cache.open()
} catch (error) {
  print({ openError: error.code })
}
print({ ready: true, pid: process.pid })

for await (const line of readline.createInterface({ input: process.stdin })) {
  const command = JSON.parse(line)
  if (command.op === 'stats') {
    print({ id: command.id, stats: cache.stats() })
    continue
  }
  try {
    const response = await gateway.chat({ model: 'mock/demo', messages: [{ role: 'user', content: command.text }] })
    print({ id: command.id, cached: response.cached, cacheSimilarity: response.cacheSimilarity ?? null, content: response.content })
  } catch (error) {
    print({ id: command.id, error: error.code ?? String(error) })
  }
}
await gateway.close()
await cache.close()
