'use strict'
// The seed's StreamingAIService: a Server-Sent Events channel with streamed answers and batches
// (ferrogate/realtime's sseChat mounted on Express).
//
//   npm run example:sse
//   curl -N 'http://127.0.0.1:3001/events?clientId=me'                      # the channel (keep it open)
//   curl http://127.0.0.1:3001/events/me -H 'content-type: application/json' -d '{"message":"Hello!"}'
//   curl http://127.0.0.1:3001/events/me/batch -H 'content-type: application/json' \
//        -d '{"requests":[{"id":"a","message":"One"},{"id":"b","message":"Two"}]}'
//
// Env: OPENAI_API_KEY (else the built-in mock provider answers), OPENAI_BASE_URL, PORT (3001; 0 picks a free
// port), HOST (127.0.0.1), HEARTBEAT_MS (15000).
const express = require('express')
const { Gateway } = require('ferrogate')
const { sseChat } = require('ferrogate/realtime')

const { OPENAI_API_KEY, OPENAI_BASE_URL } = process.env
const PORT = process.env.PORT ? Number(process.env.PORT) : 3001
const HOST = process.env.HOST || '127.0.0.1'

let gateway, defaultModel
if (OPENAI_API_KEY) {
  const openai = { kind: 'openai', apiKey: OPENAI_API_KEY }
  if (OPENAI_BASE_URL) openai.baseUrl = OPENAI_BASE_URL
  gateway = new Gateway({ providers: { openai }, maxRetries: 2 })
  defaultModel = 'openai/gpt-4o-mini'
  console.log(`using OpenAI, model ${defaultModel}`) // never the key
} else {
  gateway = new Gateway({ providers: { mock: { kind: 'mock' } } })
  defaultModel = 'mock/mock-1'
  console.log('no OPENAI_API_KEY: using the built-in mock provider')
}

const app = express()
app.disable('x-powered-by')
const events = sseChat({ gateway, defaultModel, heartbeatMs: Number(process.env.HEARTBEAT_MS || 15_000) })
app.use('/events', events)

const server = app.listen(PORT, HOST, () => {
  const { port } = server.address()
  console.log(`SSE chat listening on http://${HOST}:${port}/events`)
})

function shutdown() {
  events.close()
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
