// Starts `ferrogate serve` on either engine for the front-door suites: 'native' (the Rust HTTP server) or 'node'
// (an Express app with gatewayRouter). Both hand every /v1 request to the same Rust front door, so a suite runs its
// serve cases once per engine: `for (const engine of ENGINES) describe(`… (${engine})`, …)`.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ENGINES = ['native', 'node']

const cli = fileURLToPath(new URL('../../bin/ferrogate.js', import.meta.url))

/**
 * Writes `config` to `file` and starts `ferrogate serve --engine <engine>` on a free loopback port. Resolves with
 * `{ proc, url, output, engine, stop() }` once it listens; `env` is added to the child's environment (for `${VAR}`
 * placeholders in the config).
 */
export async function startServe({ engine, file, config, env = {} }) {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, JSON.stringify(config))
  const proc = spawn(process.execPath, [cli, 'serve', '--config', file, '--host', '127.0.0.1', '--port', '0', '--engine', engine], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const running = { proc, output: '', engine }
  proc.stderr.setEncoding('utf8').on('data', (d) => (running.output += d))
  running.url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve (${engine}) did not start: ${running.output}`)), 15_000)
    proc.on('exit', (code) => reject(new Error(`serve (${engine}) exited with ${code}: ${running.output}`)))
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      running.output += d
      const url = /listening on (http:\/\/\S+)/.exec(running.output)?.[1]
      if (url) {
        clearTimeout(timer)
        resolve(url)
      }
    })
  })
  running.stop = () => stopServe(running)
  return running
}

export async function stopServe(running) {
  if (running && running.proc.exitCode === null) {
    running.proc.kill('SIGTERM')
    await new Promise((resolve) => running.proc.once('exit', resolve))
  }
}
