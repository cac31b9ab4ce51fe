// `npm start` with no API key: the demo server says it uses the mock provider, and
// `curl -N 'localhost:PORT/chat/stream?q=hi'` streams tokens.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const serverPath = fileURLToPath(new URL('../examples/server.js', import.meta.url))
let server
let baseUrl
let output = ''

before(async () => {
  const env = { ...process.env, PORT: '0' }
  delete env.OPENAI_API_KEY
  server = spawn(process.execPath, [serverPath], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  server.stdout.setEncoding('utf8')
  server.stderr.setEncoding('utf8')
  server.stderr.on('data', (d) => (output += d))
  baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${output}`)), 10_000)
    server.stdout.on('data', (d) => {
      output += d
      const port = output.match(/listening on http:\/\/localhost:(\d+)/)?.[1]
      if (port) {
        clearTimeout(timer)
        resolve(`http://127.0.0.1:${port}`)
      }
    })
    server.once('exit', (code) => reject(new Error(`server exited with ${code}: ${output}`)))
  })
})
after(async () => {
  server.kill('SIGTERM')
  await once(server, 'exit')
})

test('says it uses the mock provider when no key is set', () => {
  assert.match(output, /no OPENAI_API_KEY: using the built-in mock provider/)
})

test('GET /chat/stream streams tokens as Server-Sent Events, then a done event', async () => {
  const response = await fetch(`${baseUrl}/chat/stream?q=hi`)
  assert.equal(response.status, 200)
  assert.match(response.headers.get('content-type'), /^text\/event-stream/)
  const reads = []
  const decoder = new TextDecoder()
  for await (const chunk of response.body) reads.push(decoder.decode(chunk, { stream: true }))
  const body = reads.join('')
  const texts = [...body.matchAll(/^data: (\{"text":.*\})$/gm)].map((m) => JSON.parse(m[1]).text)
  assert.ok(texts.length > 5, `several token events, got ${texts.length}`)
  assert.ok(reads.length > 1, 'tokens arrive over several reads, not one buffered body')
  assert.match(texts.join(''), /"hi"/)
  assert.match(body, /event: done\ndata: .*"finishReason":"stop"/)
})

test('POST /chat answers JSON, and a bad body is a 400 with a code', async () => {
  const ok = await fetch(`${baseUrl}/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: 'hello' }),
  })
  assert.equal(ok.status, 200)
  const json = await ok.json()
  assert.equal(json.provider, 'mock')
  assert.match(json.content, /"hello"/)
  const bad = await fetch(`${baseUrl}/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).error.code, 'INVALID_REQUEST')
})
