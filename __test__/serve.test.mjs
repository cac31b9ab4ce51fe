// `ferrogate serve` as a spawned process: the official `openai` client and curl against it,
// over the loopback mock vendors; the CLI's usage and config errors.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
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
let proc
let baseURL
let output = ''

function writeConfig(name, config) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(config))
  return file
}

before(async () => {
  mock = await startMockVendors()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-serve-'))
  const config = writeConfig('ferrogate.json', {
    providers: { openai: { kind: 'openai', baseUrl: '${UPSTREAM_URL}', apiKey: '${UPSTREAM_KEY}', models: ['gpt-4o-mini'] } },
    defaultProvider: 'openai',
    maxRetries: 0,
    host: '127.0.0.1',
    port: 1,
    keys: [{ key: '${CLIENT_KEY}', user: 'svc-a', dailyTokenQuota: 1000000 }],
  })
  proc = spawn(process.execPath, [cli, 'serve', '--config', config, '--port', '0'], {
    env: { ...process.env, UPSTREAM_URL: mock.openaiBaseUrl, UPSTREAM_KEY, CLIENT_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  proc.stderr.setEncoding('utf8').on('data', (d) => (output += d))
  baseURL = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${output}`)), 15_000)
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${output}`)))
    proc.stdout.setEncoding('utf8').on('data', (d) => {
      output += d
      const url = /listening on (http:\/\/\S+)/.exec(output)?.[1]
      if (url) {
        clearTimeout(timer)
        resolve(`${url}/v1`)
      }
    })
  })
})

after(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill('SIGTERM')
    await new Promise((resolve) => proc.once('exit', resolve))
  }
  await mock?.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

test('the openai client: chat, stream with usage, models, errors', async () => {
  const client = new OpenAI({ apiKey: CLIENT_KEY, baseURL, maxRetries: 0 })
  const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
  assert.equal(completion.choices[0].message.content, 'echo: hello')
  assert.equal(mock.requests.at(-1).headers.authorization, `Bearer ${UPSTREAM_KEY}`)
  assert.equal(mock.requests.at(-1).body.user, 'svc-a')

  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'stream me' }],
    stream: true,
    stream_options: { include_usage: true },
  })
  let text = ''
  let usage
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? ''
    usage = chunk.usage ?? usage
  }
  assert.equal(text, 'echo: stream me')
  assert.equal(usage.total_tokens, 15)

  assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['openai/gpt-4o-mini'])

  const stranger = new OpenAI({ apiKey: 'nope', baseURL, maxRetries: 0 })
  await assert.rejects(stranger.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), OpenAI.AuthenticationError)
  mock.enqueue('openai', { fixture: 'openai/error-429-rate-limit.json', headers: { 'retry-after': '2' } })
  const limited = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
  assert.ok(limited instanceof OpenAI.RateLimitError)
  assert.equal(limited.headers.get('retry-after'), '2')
  assert.ok(!output.includes(UPSTREAM_KEY) && !output.includes(CLIENT_KEY))
})

test('curl: JSON and SSE', async () => {
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
})

test('the CLI: --help, usage on bad input, clear config errors without secrets', async () => {
  const help = await run(process.execPath, [cli, '--help'])
  assert.match(help.stdout, /^Usage: ferrogate <command>/)
  for (const args of [[], ['launch'], ['serve'], ['serve', '--config', 'x.json', '--port', 'abc'], ['serve', '--bogus']]) {
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
