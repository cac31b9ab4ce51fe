#!/usr/bin/env node
// Event-loop delay while the networked constructors connect: a RateLimiter and a ResponseCache
// with `redisUrl` pointing at a server that accepts and never answers (the worst case: only the
// 3 s connect timeout ends a blocking connect). Prints how long the constructors took and the
// largest event-loop delay seen meanwhile (perf_hooks monitorEventLoopDelay).
//
// Usage: node bench/constructor-event-loop.mjs [path to ferrogate's index.js]
import { once } from 'node:events'
import net from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'

const entry = process.argv[2] ? pathToFileURL(process.argv[2]).href : new URL('../index.js', import.meta.url).href
const { RateLimiter, ResponseCache } = await import(entry)
const silent = net.createServer((socket) => socket.on('error', () => {})).listen(0, '127.0.0.1')
await once(silent, 'listening')
const url = `redis://:secret@127.0.0.1:${silent.address().port}/`
const delay = monitorEventLoopDelay({ resolution: 10 })
delay.enable()
await new Promise((resolve) => setTimeout(resolve, 50)) // the sampling timer starts on the next turn
const started = performance.now()
const thrown = []
for (const build of [() => new RateLimiter({ requestsPerMinute: 10, redisUrl: url }), () => new ResponseCache({ redisUrl: url })]) {
  try {
    build()
  } catch (error) {
    thrown.push(error.code)
  }
}
const constructorsMs = Math.round(performance.now() - started)
await new Promise((resolve) => setTimeout(resolve, 100))
delay.disable()
console.log(JSON.stringify({ constructorsMs, maxEventLoopDelayMs: Math.round(delay.max / 1e6), thrown }))
process.exit(0)
