// A `ws` client for the realtime suites: records every server message and waits for the ones a test expects.
import { once } from 'node:events'
import WebSocket from 'ws'

const WAIT_MS = 20_000 // generous: the machine running the suites may be slow

export async function connectChat(url, options) {
  const ws = new WebSocket(url, options)
  const messages = []
  const waiters = new Set()
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString('utf8'))
    messages.push(message)
    for (const w of [...waiters]) w.check()
  })
  ws.on('close', () => {
    for (const w of [...waiters]) w.check()
  })
  await once(ws, 'open')
  let cursor = 0 // messages before it were already handed to a waitFor()

  const client = {
    ws,
    messages,
    send(message) {
      ws.send(typeof message === 'string' ? message : JSON.stringify(message))
    },
    /** The next message (after the last one returned) matching `match` (a type or a predicate). */
    waitFor(match, timeoutMs = WAIT_MS) {
      const test = typeof match === 'function' ? match : (m) => m.type === match
      return new Promise((resolve, reject) => {
        const waiter = {
          check() {
            for (let i = cursor; i < messages.length; i++) {
              if (test(messages[i])) {
                cursor = i + 1
                waiters.delete(waiter)
                clearTimeout(timer)
                return resolve(messages[i])
              }
            }
            if (ws.readyState === WebSocket.CLOSED) {
              waiters.delete(waiter)
              clearTimeout(timer)
              reject(new Error(`socket closed while waiting for ${match}; got ${JSON.stringify(messages.slice(cursor).map((m) => m.type))}`))
            }
          },
        }
        const timer = setTimeout(() => {
          waiters.delete(waiter)
          reject(new Error(`no ${match} within ${timeoutMs}ms; got ${JSON.stringify(messages.slice(cursor).map((m) => m.type))}`))
        }, timeoutMs)
        waiters.add(waiter)
        waiter.check()
      })
    },
    /** Every message from the current position up to and including the one matching `match`. */
    async collectUntil(match, timeoutMs) {
      const from = cursor
      await client.waitFor(match, timeoutMs)
      return messages.slice(from, cursor)
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return
      const closed = once(ws, 'close')
      ws.close()
      await closed
    },
  }
  return client
}

/** Resolves with the HTTP status of a refused upgrade (rejects if the upgrade succeeds). */
export function refusedUpgradeStatus(url, options) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.on('unexpected-response', (_req, res) => {
      res.resume()
      resolve(res.statusCode)
      ws.terminate()
    })
    ws.on('open', () => {
      ws.terminate()
      reject(new Error('the upgrade was accepted'))
    })
    ws.on('error', () => {})
  })
}
