// The real-world check of the front door: Claude Code (Anthropic Messages) and Codex CLI (OpenAI
// Responses) drive `ferrogate serve` offline, each through a plain turn and a tool round trip (the CLI
// runs the tool and sends its result back), once with a provider of the client's own protocol behind
// serve and once with a provider of another protocol. The vendors are the loopback fakes of
// helpers/mock-vendors.mjs; the CLIs are the npm packages, installed once into a cache outside the
// repository (FERROGATE_AGENT_CLIS, default ~/.cache/ferrogate-agents; .ci/run installs them first). Each case runs
// on both engines of serve: the native server and Express with gatewayRouter share the front door.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { startMockVendors } from './helpers/mock-vendors.mjs'

// Both engines of serve: the native (hyper) server, and Express with gatewayRouter.
const ENGINES = ['native', 'node']

const run = promisify(execFile)
const cli = fileURLToPath(new URL('../bin/ferrogate.js', import.meta.url))
const CACHE = process.env.FERROGATE_AGENT_CLIS ?? path.join(os.homedir(), '.cache', 'ferrogate-agents')
const TOOL_WORD = 'ferrogate-tool-ok'
const CLIS = {
  claude: { pkg: '@anthropic-ai/claude-code', version: '2.1.332', bin: 'claude' },
  codex: { pkg: '@openai/codex', version: '0.171.0', bin: 'codex' },
}

/** The CLI's executable, installing the pinned version into the cache when it is not there. */
async function ensureCli(name) {
  const { pkg, version, bin } = CLIS[name]
  const prefix = path.join(CACHE, name)
  const executable = path.join(prefix, 'node_modules', '.bin', bin)
  const installed = path.join(prefix, 'node_modules', ...pkg.split('/'), 'package.json')
  if (fs.existsSync(installed) && JSON.parse(fs.readFileSync(installed, 'utf8')).version === version) return executable
  await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--no-save', `${pkg}@${version}`], {
    timeout: 300_000,
  })
  return executable
}

let mock
let dir
let clis
let unavailable

before(async () => {
  mock = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-agents-'))
  try {
    clis = { claude: await ensureCli('claude'), codex: await ensureCli('codex') }
  } catch (error) {
    // CI installs them before the tests; anywhere else a machine without the registry skips, saying why.
    if (process.env.CI) throw error
    unavailable = `the agent CLIs could not be installed into ${CACHE}: ${error.message}`
  }
})

after(async () => {
  await mock?.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

async function startServe(name, provider, engine) {
  const config = path.join(dir, `${name}.json`)
  fs.writeFileSync(
    config,
    JSON.stringify({ providers: { up: provider }, defaultProvider: 'up', maxRetries: 0, host: '127.0.0.1', port: 1 }),
  )
  const proc = spawn(process.execPath, [cli, 'serve', '--config', config, '--port', '0', '--engine', engine], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  proc.stderr.setEncoding('utf8').on('data', (d) => (output += d))
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${output}`)), 15_000)
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${output}`)))
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      output += d
      const found = /listening on (http:\/\/\S+)/.exec(output)?.[1]
      if (found) {
        clearTimeout(timer)
        resolve(found.replace(/\/$/, ''))
      }
    })
  })
  return { url, stop: () => proc.kill('SIGKILL'), output: () => output }
}

/** Runs a CLI to completion in a throwaway home and working folder; resolves with its output. */
function runCli(executable, args, env) {
  const home = fs.mkdtempSync(path.join(dir, 'home-'))
  const cwd = fs.mkdtempSync(path.join(dir, 'work-'))
  return new Promise((resolve, reject) => {
    const child = spawn(executable, args, {
      cwd,
      env: { PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8', ...env(home) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function claude(serveUrl, prompt) {
  return runCli(clis.claude, ['-p', prompt, '--allowedTools', 'Bash'], () => ({
    ANTHROPIC_BASE_URL: serveUrl,
    ANTHROPIC_API_KEY: 'sk-ant-client-side-placeholder',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  }))
}

function codex(serveUrl, prompt) {
  return runCli(clis.codex, ['exec', '--skip-git-repo-check', prompt], (home) => {
    const codexHome = path.join(home, '.codex')
    fs.mkdirSync(codexHome)
    fs.writeFileSync(
      path.join(codexHome, 'config.toml'),
      [
        'model = "gpt-5-codex"',
        'model_provider = "ferrogate"',
        'approval_policy = "never"',
        '[model_providers.ferrogate]',
        'name = "ferrogate"',
        `base_url = "${serveUrl}/v1"`,
        'wire_api = "responses"',
        'env_key = "FERROGATE_KEY"',
        '[features]',
        'plugins = false',
        '',
      ].join('\n'),
    )
    return { CODEX_HOME: codexHome, FERROGATE_KEY: 'client-side-placeholder' }
  })
}

// ------------------------------------------------------------------------- scripted vendor answers

const anthropicEvent = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`

function anthropicToolUse(name, input) {
  const json = JSON.stringify(input)
  const half = Math.floor(json.length / 2)
  return [
    anthropicEvent('message_start', {
      message: { id: 'msg_tool', type: 'message', role: 'assistant', model: 'claude-x', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 1 } },
    }),
    anthropicEvent('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_agent_1', name, input: {} } }),
    anthropicEvent('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: json.slice(0, half) } }),
    anthropicEvent('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: json.slice(half) } }),
    anthropicEvent('content_block_stop', { index: 0 }),
    anthropicEvent('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 9 } }),
  ]
}

function openaiToolCall(name, input) {
  const base = { id: 'chatcmpl-agent', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-x' }
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`
  const json = JSON.stringify(input)
  return [
    chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_agent_1', type: 'function', function: { name, arguments: '' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: json.slice(0, 5) } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: json.slice(5) } }] }),
    chunk({}, 'tool_calls'),
  ]
}

function responsesFunctionCall(name, input) {
  let sequence = 0
  const event = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`
  const response = { id: 'resp_agent_1', object: 'response', created_at: 1_700_000_000, status: 'in_progress', model: 'gpt-x', output: [] }
  const item = { id: 'fc_agent_1', type: 'function_call', status: 'completed', call_id: 'call_agent_1', name, arguments: JSON.stringify(input) }
  return [
    event('response.created', { response }),
    event('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', arguments: '' } }),
    event('response.function_call_arguments.delta', { item_id: item.id, output_index: 0, delta: item.arguments }),
    event('response.function_call_arguments.done', { item_id: item.id, output_index: 0, arguments: item.arguments }),
    event('response.output_item.done', { output_index: 0, item }),
    event('response.completed', {
      response: { ...response, status: 'completed', output: [item], usage: { input_tokens: 12, output_tokens: 9, total_tokens: 21 } },
    }),
  ]
}

const since = (mark) => mock.requests.slice(mark)
const textOf = (value) => JSON.stringify(value)

// ------------------------------------------------------------------------------------------- tests

describe('Claude Code through ferrogate serve', { timeout: 300_000 }, () => {
  for (const [label, vendor, provider] of [
    ['an Anthropic provider (same protocol)', 'anthropic', () => ({ kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-upstream' })],
    ['an OpenAI Chat Completions provider (translated)', 'openai', () => ({ kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-upstream' })],
  ]) {
    for (const engine of ENGINES) test(`plain turn and tool round trip, with ${label} (serve --engine ${engine})`, async (t) => {
      if (unavailable) return t.skip(unavailable)
      const serve = await startServe(`claude-${vendor}-${engine}`, provider(), engine)
      try {
        let mark = mock.mark()
        const plain = await claude(serve.url, 'Say hello')
        assert.equal(plain.code, 0, `claude exited ${plain.code}: ${plain.stderr}\n${serve.output()}`)
        const first = since(mark).filter((r) => r.vendor === vendor)
        assert.ok(first.length >= 1, 'the vendor was called')
        assert.match(plain.stdout, /echo: /, 'the vendor\'s answer reached Claude Code')
        if (vendor === 'anthropic') {
          // Same protocol: what ferrogate does not model reaches the vendor as Claude Code sent it.
          assert.match(String(first[0].headers['anthropic-beta']), /claude-code-20250219/)
          assert.ok(first[0].body.context_management, 'context_management passed through')
          assert.ok(first[0].body.messages.some((m) => m.role === 'system'), 'the in-conversation system turn passed through')
        } else {
          assert.ok(first[0].body.messages.every((m) => m.role !== 'system' || m === first[0].body.messages[0]), 'system turns merged into one system prompt')
        }

        mark = mock.mark()
        const input = { command: `echo ${TOOL_WORD}`, description: 'Print a word' }
        mock.enqueue(vendor, { sse: vendor === 'anthropic' ? anthropicToolUse('Bash', input) : openaiToolCall('Bash', input) })
        const tool = await claude(serve.url, 'Run the tool')
        assert.equal(tool.code, 0, `claude exited ${tool.code}: ${tool.stderr}\n${serve.output()}`)
        const calls = since(mark).filter((r) => r.vendor === vendor)
        assert.ok(calls.length >= 2, `Claude Code sent the tool's result back (${calls.length} calls)`)
        assert.ok(textOf(calls.at(-1).body.messages).includes(TOOL_WORD), 'the tool ran and its output went back to the vendor')
      } finally {
        serve.stop()
      }
    })
  }
})

describe('Codex CLI through ferrogate serve', { timeout: 300_000 }, () => {
  for (const [label, vendor, provider] of [
    // The Responses fake is the vendor 'responses' of mock-vendors (POST /v1/responses on the OpenAI fake's address).
    ['an OpenAI Responses provider (same protocol)', 'responses', () => ({ kind: 'openai', api: 'responses', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-upstream' })],
    ['an Anthropic provider (translated)', 'anthropic', () => ({ kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-upstream' })],
  ]) {
    for (const engine of ENGINES) test(`plain turn and tool round trip, with ${label} (serve --engine ${engine})`, async (t) => {
      if (unavailable) return t.skip(unavailable)
      const serve = await startServe(`codex-${vendor}-${engine}`, provider(), engine)
      try {
        let mark = mock.mark()
        const plain = await codex(serve.url, 'Say hello')
        assert.equal(plain.code, 0, `codex exited ${plain.code}: ${plain.stderr}\n${serve.output()}`)
        assert.ok(since(mark).some((r) => r.vendor === vendor), 'the vendor was called')
        assert.match(plain.stdout, /echo: /, 'the vendor\'s answer reached Codex')

        mark = mock.mark()
        const input = { cmd: `echo ${TOOL_WORD}` }
        mock.enqueue(vendor, { sse: vendor === 'anthropic' ? anthropicToolUse('exec_command', input) : responsesFunctionCall('exec_command', input) })
        const tool = await codex(serve.url, 'Run the tool')
        assert.equal(tool.code, 0, `codex exited ${tool.code}: ${tool.stderr}\n${serve.output()}`)
        const calls = since(mark).filter((r) => r.vendor === vendor)
        assert.ok(calls.length >= 2, `Codex sent the tool's result back (${calls.length} calls)`)
        const last = calls.at(-1).body
        assert.ok(textOf(last.input ?? last.messages).includes(TOOL_WORD), 'the tool ran and its output went back to the vendor')
      } finally {
        serve.stop()
      }
    })
  }
})
