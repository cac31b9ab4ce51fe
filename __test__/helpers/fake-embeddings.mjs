// An OpenAI-kind `POST /v1/embeddings` on loopback that answers controlled vectors: the one
// set for a text with `set(text, vector)`, else a vector of its own derived from the text
// (so unrelated texts are far apart). `failing = true` answers 500 (an embedding outage).
// Every request is kept in `requests`.
import http from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'

export const DIMS = 8

/** A unit vector at cosine `cosine` from the first axis (in the plane of the first two). */
export function atCosine(cosine) {
  const vector = new Array(DIMS).fill(0)
  vector[0] = cosine
  vector[1] = Math.sqrt(1 - cosine * cosine)
  return vector
}

/** A unit vector of the text's own, far from atCosine(...) (its first two components are 0). */
function derived(text) {
  const digest = createHash('sha256').update(text).digest()
  const vector = Array.from({ length: DIMS }, (_, i) => (i < 2 ? 0 : digest[i] - 127.5))
  const norm = Math.hypot(...vector)
  return vector.map((x) => x / norm)
}

export async function startFakeEmbeddings() {
  const vectors = new Map()
  const requests = []
  const sockets = new Set()
  const fake = {
    failing: false,
    requests,
    set(text, vector) {
      vectors.set(text, vector)
    },
  }
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      const parsed = JSON.parse(body || '{}')
      requests.push({ path: req.url, body: parsed, authorization: req.headers.authorization })
      if (req.url !== '/v1/embeddings' || req.method !== 'POST') {
        res.writeHead(404, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error' } }))
      }
      if (fake.failing) {
        res.writeHead(500, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ error: { message: 'embedding outage', type: 'server_error' } }))
      }
      const inputs = Array.isArray(parsed.input) ? parsed.input : [parsed.input]
      const data = inputs.map((text, index) => ({ object: 'embedding', index, embedding: vectors.get(text) ?? derived(text) }))
      const tokens = inputs.reduce((sum, text) => sum + Math.ceil(String(text).length / 4), 0)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ object: 'list', data, model: parsed.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }))
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  fake.baseUrl = `http://127.0.0.1:${server.address().port}/v1`
  fake.close = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  }
  return fake
}
