// A Redis Cluster of the test's own: redis-server --cluster-enabled on spare loopback ports, joined with
// `redis-cli --cluster create`, in a temporary directory (node files and any dump land there, never in the
// repo). The shared server on 6379 is never touched. stop() kills every node and removes the directory.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

import { ping, sparePort } from './own-redis.mjs'

const run = promisify(execFile)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** `redis-cli -p port …` on loopback; resolves with its output, trimmed. */
export async function redisCli(port, ...args) {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])
  return stdout.trim()
}

async function until(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`cluster: ${what} within ${timeoutMs} ms`)
    await sleep(50)
  }
}

export class OwnCluster {
  #nodes = []
  #dir = null
  ports = []

  /** Seed URLs of every node, comma-separated: what `redisUrl` takes for a cluster. */
  get url() {
    return this.ports.map((port) => `redis://127.0.0.1:${port}`).join(',')
  }

  /** `primaries` nodes, each with `replicas` replicas; resolves once every node says cluster_state:ok. */
  async start({ primaries = 3, replicas = 0 } = {}) {
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-cluster-'))
    const count = primaries * (1 + replicas)
    for (let i = 0; i < count; i++) this.ports.push(await sparePort())
    for (const port of this.ports) {
      const node = spawn(
        'redis-server',
        [
          '--port', String(port), '--bind', '127.0.0.1',
          '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000',
          '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', this.#dir,
        ],
        { stdio: 'ignore' },
      )
      this.#nodes.push(node)
      await until(`redis-server answering on ${port}`, async () => {
        if (node.exitCode !== null) throw new Error(`redis-server exited with ${node.exitCode} on port ${port}`)
        return ping(port)
      })
    }
    await run('redis-cli', [
      '--cluster', 'create', ...this.ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes',
    ])
    for (const port of this.ports) {
      await until(`cluster_state:ok on ${port}`, async () => (await redisCli(port, 'cluster', 'info')).includes('cluster_state:ok'))
    }
    if (replicas > 0) {
      await until('every replica in sync', async () => {
        const roles = await Promise.all(this.ports.map((port) => redisCli(port, 'info', 'replication')))
        return roles.filter((info) => info.includes('role:slave') && info.includes('master_link_status:up')).length === primaries * replicas
      })
    }
    return this
  }

  /** The nodes as CLUSTER NODES reports them: { id, port, primary, primaryId, slots }. */
  async nodes() {
    const text = await redisCli(this.ports[0], 'cluster', 'nodes')
    return text.split('\n').map((line) => {
      const [id, address, flags, primaryId, , , , , ...slots] = line.split(' ')
      return { id, port: Number(address.split('@')[0].split(':')[1]), primary: flags.includes('master'), primaryId, slots }
    })
  }

  /** The port of the primary that serves `key`'s slot. */
  async primaryOf(key) {
    const slot = Number(await redisCli(this.ports[0], 'cluster', 'keyslot', key))
    const owner = (await this.nodes()).find(
      (node) => node.primary && node.slots.some((range) => {
        const [from, to = from] = range.split('-').map(Number)
        return slot >= from && slot <= to
      }),
    )
    return owner.port
  }

  /** Keys matching `pattern` on the node at `port` (that node's own keys only). */
  async keysOn(port, pattern) {
    return (await redisCli(port, '--scan', '--pattern', pattern)).split('\n').filter(Boolean)
  }

  async stop() {
    for (const node of this.#nodes) {
      if (node.exitCode === null && node.signalCode === null) {
        node.kill('SIGKILL')
        await once(node, 'exit')
      }
    }
    this.#nodes = []
    if (this.#dir) fs.rmSync(this.#dir, { recursive: true, force: true })
    this.#dir = null
  }
}

/** Starts a cluster; on a failure to start, kills what did start before rethrowing. */
export async function startOwnCluster(options) {
  const cluster = new OwnCluster()
  try {
    return await cluster.start(options)
  } catch (error) {
    await cluster.stop()
    throw error
  }
}
