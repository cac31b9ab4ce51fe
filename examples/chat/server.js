'use strict'
// The seed's real-time chat: a plain HTML + JS page and its WebSocket server (ferrogate/realtime).
//
//   npm run example:chat            # then open http://127.0.0.1:3000/
//
// Env: OPENAI_API_KEY (else the built-in mock provider answers), OPENAI_BASE_URL, PORT (3000; 0 picks a
// free port), HOST (127.0.0.1), REDIS_URL (keep chat history in Redis, so a restart resumes it).
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const { Gateway } = require('ferrogate')
const { attachChat } = require('ferrogate/realtime')

const { OPENAI_API_KEY, OPENAI_BASE_URL, REDIS_URL } = process.env
const PORT = process.env.PORT ? Number(process.env.PORT) : 3000
const HOST = process.env.HOST || '127.0.0.1'

let gateway, models
if (OPENAI_API_KEY) {
  const openai = { kind: 'openai', apiKey: OPENAI_API_KEY }
  if (OPENAI_BASE_URL) openai.baseUrl = OPENAI_BASE_URL
  gateway = new Gateway({ providers: { openai }, maxRetries: 2 })
  models = ['openai/gpt-4o-mini', 'openai/gpt-4o']
  console.log(`using OpenAI, models ${models.join(', ')}`) // never the key
} else {
  gateway = new Gateway({ providers: { mock: { kind: 'mock' } } })
  models = ['mock/mock-1', 'mock/mock-2']
  console.log('no OPENAI_API_KEY: using the built-in mock provider')
}

const PUBLIC = path.join(__dirname, 'public')
const FILES = { '/': ['index.html', 'text/html; charset=utf-8'], '/app.js': ['app.js', 'text/javascript; charset=utf-8'] }

const server = http.createServer((req, res) => {
  const file = req.method === 'GET' ? FILES[new URL(req.url, 'http://localhost').pathname] : undefined
  if (!file) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
  fs.readFile(path.join(PUBLIC, file[0]), (error, body) => {
    if (error) return res.writeHead(500, { 'content-type': 'text/plain' }).end('cannot read the page')
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' }).end(body)
  })
})

const chat = attachChat(server, {
  gateway,
  models,
  systemPrompt: 'You are a helpful, concise assistant.',
  history: REDIS_URL ? { redisUrl: REDIS_URL } : undefined,
})

server.listen(PORT, HOST, () => {
  const { port } = server.address()
  console.log(`chat page listening on http://${HOST}:${port}/ (WebSocket at /ws/chat${REDIS_URL ? ', history in Redis' : ''})`)
})

async function shutdown() {
  await chat.close()
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
