// A small OpenAI-compatible upstream with fault injection, for the routing suite: several of
// them stand for the deployments behind one route alias.
//
// startFaultUpstream(name) listens on 127.0.0.1:0 and answers POST /v1/chat/completions with
// `<name>: <text of the last user message>` (JSON, or SSE when the request asks to stream, one
// chunk per word). setFault(fault) changes what it does; `fault` is an object, or a function of
// (request body, request number) returning one, so faults can depend on the prompt:
//   null                               answer normally
//   { status, retryAfter? }            an OpenAI-shaped error with that status (and Retry-After seconds)
//   { hang: true }                     never answer (until the client leaves)
//   { reset: true }                    reset the connection before any byte
//   { delayMs }                        answer normally after delayMs (a slow first byte)
//   { gate: Promise }                  answer normally once the promise settles
//   { streamResetAfter: n }            streams: send n content chunks, then reset the connection
// `requests` lists { content, stream } per request received; `inFlight`/`maxInFlight` count
// requests being answered.
import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'

const lastUserText = (body) => {
  const last = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user')
  if (!last) return ''
  return typeof last.content === 'string' ? last.content : last.content.map((p) => p.text ?? '').join('')
}

export async function startFaultUpstream(name) {
  let fault = null
  const requests = []
  const sockets = new Set()
  const state = { inFlight: 0, maxInFlight: 0 }

  async function handle(req, res) {
    const chunks = []
    for await (const chunk of req) chunks.push(chunk)
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}')
    const content = lastUserText(body)
    requests.push({ content, stream: body.stream === true, path: req.url })
    const current = typeof fault === 'function' ? fault(body, requests.length) : fault
    state.inFlight++
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight)
    try {
      if (current?.hang) return await new Promise((resolve) => res.on('close', resolve))
      if (current?.reset) return req.socket.resetAndDestroy()
      if (current?.gate) await current.gate
      if (current?.delayMs) await sleep(current.delayMs)
      if (current?.status) {
        const headers = { 'content-type': 'application/json' }
        if (current.retryAfter !== undefined) headers['retry-after'] = String(current.retryAfter)
        res.writeHead(current.status, headers)
        return res.end(JSON.stringify({ error: { message: `${name} failed with ${current.status}`, type: 'server_error', param: null, code: null } }))
      }
      const text = `${name}: ${content}`
      const usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 }
      if (body.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        const words = text.match(/\S+\s*/g) ?? []
        const send = (delta, finish = null, extra = {}) =>
          res.write(`data: ${JSON.stringify({ id: `chatcmpl-${name}`, object: 'chat.completion.chunk', created: 1, model: body.model, choices: delta ? [{ index: 0, delta, finish_reason: finish }] : [], ...extra })}\n\n`)
        send({ role: 'assistant', content: '' })
        for (const [i, word] of words.entries()) {
          if (current?.streamResetAfter === i) return req.socket.resetAndDestroy()
          send({ content: word })
          await new Promise((resolve) => setImmediate(resolve))
        }
        send({}, 'stop')
        send(null, null, { usage })
        return res.end('data: [DONE]\n\n')
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({
        id: `chatcmpl-${name}`, object: 'chat.completion', created: 1, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage,
      }))
    } finally {
      state.inFlight--
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy())
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    name,
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    get inFlight() { return state.inFlight },
    get maxInFlight() { return state.maxInFlight },
    setFault(next) { fault = next },
    reset() { fault = null; requests.length = 0; state.maxInFlight = 0 },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
    },
  }
}
