// One of several Node processes sharing state through Redis (__test__/shared-state.test.mjs).
//   node shared-state-child.mjs limit <redisUrl> <prefix> <count>
//     A RateLimiter of 600 requests/minute on Redis. Prints "ready", waits for a line on stdin, then fires
//     <count> acquire() calls for one key at once and prints {"admitted": n, "refused": m}.
//   node shared-state-child.mjs cache <redisUrl> <prefix> <openaiBaseUrl> <prompt>
//     A Gateway with a Redis ResponseCache asks <prompt> once and prints {"cached": bool, "content": "..."}.
import readline from 'node:readline'

import { Gateway, RateLimiter, ResponseCache } from '../../index.js'

const [mode, redisUrl, prefix, ...rest] = process.argv.slice(2)
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)

if (mode === 'limit') {
  const count = Number(rest[0])
  const limiter = new RateLimiter({ requestsPerMinute: 600, redisUrl, prefix })
  print('ready')
  const lines = readline.createInterface({ input: process.stdin })
  for await (const _ of lines) break
  const decisions = await Promise.all(Array.from({ length: count }, () => limiter.acquire('shared-key')))
  const admitted = decisions.filter((d) => d.allowed).length
  print({ admitted, refused: count - admitted, stats: limiter.stats() })
  limiter.close()
  lines.close()
} else if (mode === 'cache') {
  const [baseUrl, prompt] = rest
  const cache = new ResponseCache({ redisUrl, prefix })
  const gateway = new Gateway({
    timeoutMs: 5000,
    maxRetries: 0,
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl } },
    cache,
  })
  const response = await gateway.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: prompt }] })
  print({ cached: response.cached, content: response.content, sharedHits: cache.stats().sharedHits })
  await gateway.close()
  // Answers reach Redis off the call's path: close() waits for the write.
  await cache.close()
} else {
  throw new Error(`unknown mode ${mode}`)
}
