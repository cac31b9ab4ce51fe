'use strict'
// The queue example in one command: starts the worker in its own process, runs the producer, then
// stops the worker.
//
//   npm run example:queue
//
// Env: as worker.js.
const { spawn } = require('node:child_process')
const { once } = require('node:events')
const path = require('node:path')

async function main() {
  const worker = spawn(process.execPath, [path.join(__dirname, 'worker.js')], { stdio: 'inherit' })
  try {
    const producer = spawn(process.execPath, [path.join(__dirname, 'producer.js')], { stdio: 'inherit' })
    const [code] = await once(producer, 'exit')
    process.exitCode = code ?? 1
  } finally {
    if (worker.exitCode === null) {
      worker.kill('SIGTERM')
      await once(worker, 'exit')
    }
  }
}

main().catch((error) => {
  console.error(error.message)
  process.exitCode = 1
})
