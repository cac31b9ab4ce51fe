// `ferrogate serve` as a spawned process: the official `openai` client and curl against it,
// over the loopback mock vendors; the CLI's usage and config errors.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import OpenAI from 'openai'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const run = promisify(execFile)
const cli = fileURLToPath(new URL('../bin/ferrogate.js', import.meta.url))
const UPSTREAM_KEY = 'sk-upstream-serve-secret-777'
const CLIENT_KEY = 'vk-serve-client-1'
let mock
let dir

function writeConfig(name, config) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(config))
  return file
}

before(async () => {
  mock = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-serve-'))
})

after(async () => {
  await mock?.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

async function startServe(engine) {
  const config = writeConfig(`ferrogate-${engine}.json`, {
    providers: { openai: { kind: 'openai', baseUrl: '${UPSTREAM_URL}', apiKey: '${UPSTREAM_KEY}', models: ['gpt-4o-mini'] } },
    defaultProvider: 'openai',
    maxRetries: 0,
    host: '127.0.0.1',
    port: 1,
    keys: [{ key: '${CLIENT_KEY}', user: 'svc-a', dailyTokenQuota: 1000000 }],
  })
  const proc = spawn(process.execPath, [cli, 'serve', '--config', config, '--port', '0', '--engine', engine], {
    env: { ...process.env, UPSTREAM_URL: mock.openaiBaseUrl, UPSTREAM_KEY, CLIENT_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const running = { proc, output: '' }
  proc.stderr.setEncoding('utf8').on('data', (d) => (running.output += d))
  running.baseURL = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${running.output}`)), 15_000)
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${running.output}`)))
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      running.output += d
      const url = /listening on (http:\/\/\S+)/.exec(running.output)?.[1]
      if (url) {
        clearTimeout(timer)
        resolve(`${url}/v1`)
      }
    })
  })
  return running
}

async function stopServe(running) {
  if (running && running.proc.exitCode === null) {
    running.proc.kill('SIGTERM')
    await new Promise((resolve) => running.proc.once('exit', resolve))
  }
}

for (const engine of ['native', 'node']) {
  describe(`ferrogate serve --engine ${engine}`, () => {
    let running
    before(async () => {
      running = await startServe(engine)
    })
    after(() => stopServe(running))

    test('the openai client: chat, stream with usage, tools, models, errors', async () => {
      const baseURL = running.baseURL
      const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL, maxRetries: 0 })
      const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
      assert.equal(completion.choices[0].message.content, 'echo: hello')
      assert.equal(completion.usage.total_tokens, 15)
      assert.equal(mock.requests.at(-1).headers.authorization, `Bearer ${UPSTREAM_KEY}`)
      assert.equal(mock.requests.at(-1).body.user, 'svc-a')

      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'stream me' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      const chunks = []
      for await (const chunk of stream) chunks.push(chunk)
      assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null })
      assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'echo: stream me')
      assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop')
      assert.deepEqual(chunks.at(-1).choices, [])
      assert.equal(chunks.at(-1).usage.total_tokens, 15)

      mock.enqueue('openai', { fixture: 'openai/stream-tool-call.sse' })
      const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }]
      const final = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'weather?' }], tools }).finalChatCompletion()
      assert.equal(final.choices[0].message.tool_calls[0].id, 'call_4XzlGBLtUe9dy3GVNV4jhq7h')
      assert.equal(final.choices[0].message.tool_calls[0].function.name, 'get_weather')
      assert.equal(mock.requests.at(-1).body.tools[0].function.name, 'get_weather')

      mock.enqueue('openai', { fixture: 'openai/response-json-mode.json' })
      const json = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'json' }], response_format: { type: 'json_object' } })
      assert.doesNotThrow(() => JSON.parse(json.choices[0].message.content))
      assert.deepEqual(mock.requests.at(-1).body.response_format, { type: 'json_object' })

      assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['openai/gpt-4o-mini'])

      const stranger = new OpenAI({ apiKey: 'nope', baseURL, maxRetries: 0 })
      await assert.rejects(stranger.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), OpenAI.AuthenticationError)
      mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '2' } })
      const limited = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
      assert.ok(limited instanceof OpenAI.RateLimitError)
      assert.equal(limited.headers.get('retry-after'), '2')
      const bad = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).catch((e) => e)
      assert.ok(bad instanceof OpenAI.BadRequestError)
      // An endpoint serve does not have (/v1/embeddings is served now: see embeddings.test.mjs).
      const unknown = await client.moderations.create({ model: 'x', input: 'y' }).catch((e) => e)
      assert.ok(unknown instanceof OpenAI.NotFoundError)
      assert.ok(!running.output.includes(UPSTREAM_KEY) && !running.output.includes(CLIENT_KEY))
    })

    test('a client that disconnects mid-stream stops the upstream request', async () => {
      const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL: running.baseURL, maxRetries: 0 })
      const since = mock.mark()
  mock.enqueue('openai', { sse: Array.from({ length: 200 }, (_, i) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: `t${i} ` }, finish_reason: null }] })}\n\n`), delayMs: 20 })
      const controller = new AbortController()
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }], stream: true }, { signal: controller.signal })
      let received = 0
      try {
        for await (const chunk of stream) {
          if (chunk.choices[0]?.delta?.content) received++
          if (received === 2) controller.abort()
        }
      } catch {
        // the client's own abort
      }
      await mock.waitForClose({ since })
      assert.equal(received, 2)
    })

    test('curl: JSON and SSE', async () => {
      const baseURL = running.baseURL
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'from curl' }] })
      const common = ['-sS', '-H', `Authorization: Bearer ${CLIENT_KEY}`, '-H', 'Content-Type: application/json']
      const json = await run('curl', [...common, '-d', body, `${baseURL}/chat/completions`])
      assert.equal(JSON.parse(json.stdout).choices[0].message.content, 'echo: from curl')
      const sse = await run('curl', [...common, '-N', '-d', JSON.stringify({ ...JSON.parse(body), stream: true }), `${baseURL}/chat/completions`])
      const events = sse.stdout.split('\n\n').filter(Boolean)
      assert.equal(events.at(-1), 'data: [DONE]')
      const text = events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).choices[0]?.delta?.content ?? '').join('')
      assert.equal(text, 'echo: from curl')
      const unauthorized = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-d', body, `${baseURL}/chat/completions`])
      assert.equal(unauthorized.stdout, '401')
      const health = await run('curl', ['-sS', `${baseURL.replace(/\/v1$/, '')}/health`])
      assert.deepEqual(JSON.parse(health.stdout), { status: 'ok' })
    })
  })
}

test('the CLI: --help, usage on bad input, clear config errors without secrets', async () => {
  const help = await run(process.execPath, [cli, '--help'])
  assert.match(help.stdout, /^Usage: ferrogate <command>/)
  for (const args of [[], ['launch'], ['serve'], ['serve', '--config', 'x.json', '--port', 'abc'], ['serve', '--bogus'], ['serve', '--config', 'x.json', '--engine', 'go']]) {
    const failed = await run(process.execPath, [cli, ...args]).then(() => null, (e) => e)
    assert.ok(failed, `${args.join(' ')} fails`)
    assert.notEqual(failed.code, 0)
    assert.match(failed.stderr, /Usage: ferrogate/)
  }
  const missingEnv = writeConfig('env.json', { providers: { openai: { kind: 'openai', apiKey: '${NOT_SET_ANYWHERE_42}' } } })
  const envError = await run(process.execPath, [cli, 'serve', '--config', missingEnv]).catch((e) => e)
  assert.equal(envError.code, 1)
  assert.match(envError.stderr, /config at providers\.openai\.apiKey needs environment variable NOT_SET_ANYWHERE_42, which is not set/)
  const badProvider = writeConfig('bad.json', { providers: { p: { kind: 'openai', apiKey: 'sk-should-not-leak-0000', baseUrl: 'nope' } } })
  const providerError = await run(process.execPath, [cli, 'serve', '--config', badProvider]).catch((e) => e)
  assert.equal(providerError.code, 1)
  assert.match(providerError.stderr, /invalid baseUrl/)
  assert.ok(!providerError.stderr.includes('sk-should-not-leak-0000'))
})
