// A redis-server of the test's own on a spare loopback port, so a test can stop it mid-run
// and start it again on the same port (the shared server on 6379 is never touched).
import { spawn } from 'node:child_process'
import net from 'node:net'
import { once } from 'node:events'

export async function sparePort() {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

export function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let answer = ''
    socket.setTimeout(500)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      answer += chunk
      if (answer.includes('\r\n')) {
        socket.destroy()
        resolve(answer.startsWith('+PONG'))
      }
    })
    socket.on('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.on('error', () => resolve(false))
  })
}

export class OwnRedis {
  #child = null
  port = 0

  get url() {
    return `redis://127.0.0.1:${this.port}/`
  }

  /** Starts the server (on a new spare port the first time, on the same port after stop()). */
  async start() {
    if (this.#child) return this
    if (!this.port) this.port = await sparePort()
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      { stdio: 'ignore' },
    )
    this.#child = child
    const deadline = Date.now() + 10_000
    while (!(await ping(this.port))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode} on port ${this.port}`)
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on port ${this.port}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
    return this
  }

  /** Kills the server at once (SIGKILL: no goodbye to clients, as a crash or a cut cable). */
  async stop() {
    const child = this.#child
    if (!child) return
    this.#child = null
    if (child.exitCode === null) {
      child.kill('SIGKILL')
      await once(child, 'exit')
    }
  }

  async restart() {
    await this.stop()
    await this.start()
  }
}

export async function startOwnRedis() {
  return new OwnRedis().start()
}
