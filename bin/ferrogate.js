#!/usr/bin/env node
'use strict'
// The ferrogate command line: a dispatcher over subcommands (serve, chat, codegen).

const { parseArgs } = require('node:util')

const USAGE = `Usage: ferrogate <command> [options]

Commands:
  serve --config <file> [--port <port>] [--host <address>] [--engine native|node]
      An OpenAI-compatible proxy: POST /v1/chat/completions (JSON and SSE), GET /v1/models.
      The config is GatewayOptions as JSON plus host, port and keys; \${ENV_VAR} is replaced
      from the environment. --engine node serves from Node (openaiRouter) instead of the
      native (Rust) server.
  chat [--model <model>] [--config <file>]
      A streaming chat REPL (reads standard input; works piped). Offline on the mock
      provider without --config.
  codegen route <spec.json> | test <file> | docs <file> [--model <model>] [--config <file>] [--out <file>]
      A TypeScript Express route, a node:test suite, or an OpenAPI 3 document (YAML).

Run ferrogate <command> --help for a command's options.
Exit codes: 0 done, 1 failed (config, model or input), 2 bad command line.

Options:
  -h, --help  Show this help.`

const SERVE_USAGE = `Usage: ferrogate serve --config <file> [--port <port>] [--host <address>] [--engine native|node]

  An OpenAI-compatible proxy over a gateway: POST /v1/chat/completions (JSON and SSE),
  GET /v1/models, GET /health. Point any OpenAI client at http://<host>:<port>/v1.

Options:
  -c, --config <file>      the config (JSON): GatewayOptions (providers, routes, cache, rateLimiter,
                           costs, …) plus host, port, engine and keys; \${ENV_VAR} and \${ENV_VAR:-default}
                           are replaced from the environment; relative paths resolve against the
                           config file's folder; an unknown key is an error. Every key: docs/CONFIG.md
  -p, --port <port>        port to listen on (default: the config's port, else 4000; 0 picks a free one)
      --host <address>     address to listen on (default: the config's host, else 127.0.0.1). Any
                           other than loopback without "keys" in the config prints a warning
      --engine <engine>    native (default: a Rust HTTP server in the addon) or node (openaiRouter on node:http)
  -h, --help               show this help

Exit codes: 0 stopped by a signal, 1 the config is invalid or the server cannot start, 2 bad command line.`

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
        engine: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (error) {
    return fail(error.message)
  }
  if (values.help) return void process.stdout.write(`${SERVE_USAGE}\n`)
  if (!values.config) return fail('serve needs --config <file>')
  let port
  if (values.port != null) {
    port = Number(values.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) return fail(`--port must be a port number, not '${values.port}'`)
  }
  if (values.engine != null && !['native', 'node'].includes(values.engine)) return fail(`--engine must be native or node, not '${values.engine}'`)
  // A proxy uses the machine: one tokio worker per core unless FERROGATE_WORKER_THREADS says
  // otherwise. Read when the addon loads, so it is set before the first require of it. (In a
  // process that calls ferrogate itself one worker measures best: see docs/API.md.)
  if (!process.env.FERROGATE_WORKER_THREADS) {
    process.env.FERROGATE_WORKER_THREADS = String(require('node:os').availableParallelism())
  }
  const { startServe, readConfig, exposureWarning } = require('../lib/serve.js')
  const { redact } = require('../lib/express.js')
  let config
  try {
    // Its messages name the config file and keys, and quote nothing from the environment.
    config = readConfig(values.config)
  } catch (error) {
    process.stderr.write(`ferrogate serve: ${error.message}\n`)
    process.exit(1)
  }
  const warning = exposureWarning(values.host ?? config.host ?? '127.0.0.1', config.keys)
  if (warning) process.stderr.write(`ferrogate serve: ${warning}\n`)
  let running
  try {
    running = await startServe(config, { port, host: values.host, engine: values.engine })
  } catch (error) {
    process.stderr.write(`ferrogate serve: ${redact(error.message)}\n`)
    process.exit(1)
  }
  process.stdout.write(`ferrogate serve listening on ${running.url} (${running.engine})\n`)
  const stop = () => {
    running.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

/** chat and codegen live in lib/cli.js; a UsageError there is a bad command line (exit 2). */
function fromCli(name) {
  return async (args) => {
    const cli = require('../lib/cli.js')
    const usage = name === 'chat' ? cli.CHAT_USAGE : cli.CODEGEN_USAGE
    try {
      process.exitCode = await cli[name](args)
    } catch (error) {
      if (error instanceof cli.UsageError || error.exitCode === 2) {
        process.stderr.write(`ferrogate ${name}: ${error.message}\n${usage}\n`)
        process.exitCode = 2
        return
      }
      const { redact } = require('../lib/express.js')
      process.stderr.write(`ferrogate ${name}: ${redact(error.message)}\n`)
      process.exitCode = 1
    }
  }
}

const COMMANDS = { serve, chat: fromCli('chat'), codegen: fromCli('codegen') }

async function main(argv) {
  const [command, ...rest] = argv
  if (command === '-h' || command === '--help' || command === 'help') return void process.stdout.write(`${USAGE}\n`)
  if (command == null) return fail('no command given')
  const run = COMMANDS[command]
  if (!run) return fail(`unknown command '${command}'`)
  return run(rest)
}

main(process.argv.slice(2))
