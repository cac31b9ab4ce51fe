'use strict'
// `ferrogate chat` and `ferrogate codegen …`: the interactive and code-generation commands of
// the ferrogate CLI (bin/ferrogate.js dispatches here). Without --config they run offline on
// the built-in mock provider. Exit codes: 0 done, 1 failed (model, config or input file
// content), 2 bad command line (a `Usage:` line goes to stderr).

const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')
const { parseArgs } = require('node:util')

const OFFLINE_MODEL = 'mock/ferrogate-mock'
const OFFLINE_CONFIG = { providers: { mock: { kind: 'mock', models: ['ferrogate-mock'] } } }

const COMMON_OPTIONS = {
  model: { type: 'string', short: 'm' },
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
}

const CHAT_USAGE = `Usage: ferrogate chat [--model <model>] [--config <file>] [--system <text>]

  A streaming chat with a model: each line read from standard input is a message; the
  answer streams to standard output, then the model, tokens, cost and time go to standard
  error. Works piped (one answer per input line, plain text). In the chat: /model <name>
  switches model, /clear forgets the conversation, /exit quits.

Options:
  -m, --model <model>   model or route alias (default: the config's first model; offline: ${OFFLINE_MODEL})
  -c, --config <file>   the JSON config of \`ferrogate serve\` (providers, routes, cache, costs…);
                        without it the built-in mock provider answers, offline
      --system <text>   a system prompt
  -h, --help            show this help

Exit codes: 0 done, 1 a message failed or the config is wrong, 2 bad command line.`

const CODEGEN_USAGE = `Usage: ferrogate codegen route <spec.json> [options]
       ferrogate codegen test <file> [options]
       ferrogate codegen docs <file> [options]

  route  a TypeScript Express route (Router) for a spec { path, method, parameters, responses, description }
  test   a node:test suite for a JavaScript/TypeScript module (its exports and Express routes)
  docs   an OpenAPI 3 document (YAML) for a spec file (JSON) or a module's Express routes

  The code is built from the spec or source; the model writes the prose (summaries,
  descriptions, implementation notes, test ideas). Offline (no --config) no model is asked:
  the spec's own text is used, and nothing where it has none. All output is Prettier-formatted.

Options:
  -m, --model <model>     model or route alias (default: the config's first model; offline: ${OFFLINE_MODEL})
  -c, --config <file>     the JSON config of \`ferrogate serve\`; without it the mock provider answers, offline
  -o, --out <file>        write to a file instead of standard output
      --timeout <ms>      time the model has to answer (default 30000); then the spec's own text is used
      --import <path>     (test) the module path the suite imports (default ./<file name>)
      --title <text>      (docs) the API's title
  -h, --help              show this help

Exit codes: 0 done, 1 the input or config is invalid, 2 bad command line.`

class UsageError extends Error {}

function parse(args, usage, options, positionals = true) {
  try {
    return parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, strict: true, allowPositionals: positionals })
  } catch (error) {
    throw new UsageError(error.message)
  }
}

/** The gateway (from --config, else offline on the mock provider) and the model to use. */
function openGateway(values) {
  const ferrogate = require('../index.js')
  if (values.config === undefined) {
    return { gateway: new ferrogate.Gateway(OFFLINE_CONFIG), model: values.model ?? OFFLINE_MODEL, offline: true }
  }
  const { readConfig, gatewayOptions } = require('./serve.js')
  const gateway = new ferrogate.Gateway(gatewayOptions(readConfig(values.config)))
  const model = values.model ?? gateway.models()[0]
  if (!model) {
    throw Object.assign(new Error('the config names no models: pass --model'), { exitCode: 2 })
  }
  return { gateway, model, offline: false }
}

/** A spinner on standard error while the model works; nothing at all when it is not a terminal. */
function progress(stream, label) {
  if (!stream.isTTY) return { stop() {} }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
  let i = 0
  const draw = () => stream.write(`\r\x1b[K${frames[i++ % frames.length]} ${label}`)
  draw()
  const timer = setInterval(draw, 80)
  let running = true
  return {
    stop() {
      if (!running) return
      running = false
      clearInterval(timer)
      stream.write('\r\x1b[K')
    },
  }
}

const formatCost = (usd) => `$${(Number.isFinite(usd) ? usd : 0).toFixed(6)}`

// ------------------------------------------------------------------------------ chat

async function chat(args, io = process) {
  const { values, positionals } = parse(args, CHAT_USAGE, { system: { type: 'string' } })
  if (values.help) {
    io.stdout.write(`${CHAT_USAGE}\n`)
    return 0
  }
  if (positionals.length) throw new UsageError(`chat takes no arguments (got '${positionals[0]}')`)
  const { gateway, model: firstModel, offline } = openGateway(values)
  let model = firstModel
  const interactive = Boolean(io.stdin.isTTY && io.stdout.isTTY)
  const history = []
  let failures = 0
  let current
  const rl = readline.createInterface({ input: io.stdin, terminal: interactive, output: interactive ? io.stdout : undefined })
  rl.on('SIGINT', () => {
    if (current) current.abort()
    else rl.close()
  })
  if (interactive) {
    io.stderr.write(`ferrogate chat with ${model}${offline ? ' (offline: the mock provider answers)' : ''}. /help for commands, /exit to quit.\n`)
    rl.setPrompt('you> ')
    rl.prompt()
  }
  try {
    for await (const raw of rl) {
      const line = raw.trim()
      if (line === '') {
        if (interactive) rl.prompt()
        continue
      }
      if (line.startsWith('/')) {
        const [command, ...rest] = line.split(/\s+/)
        if (command === '/exit' || command === '/quit') break
        if (command === '/clear') {
          history.length = 0
          io.stderr.write('(conversation cleared)\n')
        } else if (command === '/model' && rest[0]) {
          model = rest[0]
          io.stderr.write(`(model: ${model})\n`)
        } else {
          io.stderr.write('commands: /model <name>, /clear, /exit\n')
        }
        if (interactive) rl.prompt()
        continue
      }
      const messages = [...(values.system ? [{ role: 'system', content: values.system }] : []), ...history, { role: 'user', content: line }]
      current = new AbortController()
      const spinner = progress(io.stderr, `${model} is thinking…`)
      let started = false
      const began = Date.now()
      try {
        const response = await gateway.stream({ model, messages, signal: current.signal }, (text) => {
          if (!started) {
            spinner.stop()
            started = true
          }
          io.stdout.write(text)
        })
        spinner.stop()
        io.stdout.write('\n')
        history.push({ role: 'user', content: line }, { role: 'assistant', content: response.content })
        const usage = response.usage ?? {}
        const seconds = ((response.latencyMs ?? Date.now() - began) / 1000).toFixed(2)
        io.stderr.write(
          `[${response.provider}/${response.model} · ${usage.promptTokens ?? 0}+${usage.completionTokens ?? 0} tokens · ${formatCost(response.costUsd)}${response.cached ? ' · cached' : ''} · ${seconds}s]\n`,
        )
      } catch (error) {
        spinner.stop()
        if (started) io.stdout.write('\n')
        failures++
        const { redact } = require('./express.js')
        io.stderr.write(`error: ${error.code ?? 'ERROR'}: ${redact(error.message)}\n`)
      } finally {
        current = undefined
      }
      if (interactive) rl.prompt()
    }
  } finally {
    rl.close()
    await gateway.close()
  }
  return failures > 0 ? 1 : 0
}

// ------------------------------------------------------------------------------ codegen

async function codegen(args, io = process) {
  const { values, positionals } = parse(args, CODEGEN_USAGE, {
    out: { type: 'string', short: 'o' },
    timeout: { type: 'string' },
    import: { type: 'string' },
    title: { type: 'string' },
  })
  if (values.help) {
    io.stdout.write(`${CODEGEN_USAGE}\n`)
    return 0
  }
  const [kind, file, ...extra] = positionals
  if (!['route', 'test', 'docs'].includes(kind)) throw new UsageError(kind ? `unknown codegen kind '${kind}' (route, test, docs)` : 'codegen needs route, test or docs')
  if (!file) throw new UsageError(`codegen ${kind} needs a file`)
  if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`)
  let timeoutMs
  if (values.timeout !== undefined) {
    timeoutMs = Number(values.timeout)
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError(`--timeout must be a positive number of milliseconds, not '${values.timeout}'`)
  }
  let source
  try {
    source = fs.readFileSync(file, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${error.code ?? error.message}`)
  }
  const { CodeGenerator } = require('./codegen.js')
  const { gateway, model, offline } = openGateway(values)
  const misses = []
  const generator = new CodeGenerator({ gateway, model, timeoutMs, offline, onMiss: (reason) => misses.push(reason) })
  const spinner = progress(io.stderr, offline ? `generating ${kind}…` : `generating ${kind} with ${model}…`)
  let output
  try {
    if (kind === 'route') output = await generator.route(source)
    else if (kind === 'test') output = await generator.tests(source, { fileName: file, importPath: values.import })
    else output = await generator.docs(source, { fileName: file, title: values.title })
  } finally {
    spinner.stop()
    await gateway.close()
  }
  if (misses.length) io.stderr.write(`note: the model gave no usable answer (${misses.join(', ')}); the prose comes from the input itself\n`)
  if (values.out) {
    fs.mkdirSync(path.dirname(path.resolve(values.out)), { recursive: true })
    fs.writeFileSync(values.out, output)
    io.stderr.write(`wrote ${values.out}\n`)
  } else io.stdout.write(output)
  return 0
}

module.exports = { chat, codegen, UsageError, CHAT_USAGE, CODEGEN_USAGE, OFFLINE_MODEL }
