#!/usr/bin/env node
'use strict'
// The ferrogate command line: a dispatcher over subcommands (only `serve` so far).

const { parseArgs } = require('node:util')

const USAGE = `Usage: ferrogate <command> [options]

Commands:
  serve --config <file> [--port <port>] [--host <address>]
      An OpenAI-compatible proxy: POST /v1/chat/completions (JSON and SSE), GET /v1/models.
      The config is GatewayOptions as JSON plus host, port and keys; \${ENV_VAR} is replaced
      from the environment.

Options:
  -h, --help  Show this help.`

function fail(message) {
  process.stderr.write(`ferrogate: ${message}\n${USAGE}\n`)
  process.exit(2)
}

async function serve(args) {
  let values
  try {
    ;({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (error) {
    return fail(error.message)
  }
  if (values.help) return void process.stdout.write(`${USAGE}\n`)
  if (!values.config) return fail('serve needs --config <file>')
  let port
  if (values.port != null) {
    port = Number(values.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(`--port must be a port number, not '${values.port}'`)
  }
  const { startServe, readConfig } = require('../lib/serve.js')
  const { redact } = require('../express.js')
  let running
  try {
    running = await startServe(readConfig(values.config), { port, host: values.host })
  } catch (error) {
    process.stderr.write(`ferrogate serve: ${redact(error.message)}\n`)
    process.exit(1)
  }
  process.stdout.write(`ferrogate serve listening on ${running.url}\n`)
  const stop = () => {
    running.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

const COMMANDS = { serve }

async function main(argv) {
  const [command, ...rest] = argv
  if (command === '-h' || command === '--help' || command === 'help') return void process.stdout.write(`${USAGE}\n`)
  if (command == null) return fail('no command given')
  const run = COMMANDS[command]
  if (!run) return fail(`unknown command '${command}'`)
  return run(rest)
}

main(process.argv.slice(2))
