// `ferrogate serve`'s config as a user meets it: a misspelled key stops it with a suggestion,
// `serve --help` lists its options, a missing file is named, an exposed host without keys is
// warned about, and relative paths resolve against the config file's folder.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { readConfig } from '../lib/serve.js'

const run = promisify(execFile)
const cli = fileURLToPath(new URL('../bin/ferrogate.js', import.meta.url))
let dir

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-serve-config-'))
})
after(() => fs.rmSync(dir, { recursive: true, force: true }))

function writeConfig(name, config) {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(config))
  return file
}

const serve = (...args) => run(process.execPath, [cli, 'serve', ...args], { env: { PATH: process.env.PATH } }).then(
  ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
  (error) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
)

const MOCK = { mock: { kind: 'mock', models: ['m'] } }

test('misspelled keys are a config error naming each, with a suggestion (exit 1)', async () => {
  const file = writeConfig('typos.json', {
    providers: { mock: { kind: 'mock', modles: ['m'] } },
    timeoutMS: 5000,
    rateLimit: { requestsPerMinute: 60 },
    costs: { ledgerpath: 'ledger.sqlite' },
    keys: [{ key: 'k', dailyTokenQuote: 5 }],
  })
  const { code, stderr, stdout } = await serve('--config', file, '--port', '0')
  assert.equal(code, 1, stderr)
  assert.equal(stdout, '')
  assert.match(stderr, /'timeoutMS' \(did you mean 'timeoutMs'\?\)/)
  assert.match(stderr, /'rateLimit' \(did you mean 'rateLimiter'\?\)/)
  assert.match(stderr, /'providers\.mock\.modles' \(did you mean 'models'\?\)/)
  assert.match(stderr, /'costs\.ledgerpath' \(did you mean 'ledgerPath'\?\)/)
  assert.match(stderr, /'keys\[0\]\.dailyTokenQuote' \(did you mean 'dailyTokenQuota'\?\)/)
  assert.ok(stderr.includes(file), stderr)
  // A key nothing resembles gets no suggestion.
  const odd = writeConfig('odd.json', { providers: MOCK, zzzzzzzzzz: 1 })
  const second = await serve('--config', odd)
  assert.equal(second.code, 1)
  assert.match(second.stderr, /unknown config key 'zzzzzzzzzz'; docs\/CONFIG\.md/)
})

test('serve --help lists its own options', async () => {
  const { code, stdout } = await serve('--help')
  assert.equal(code, 0)
  assert.match(stdout, /^Usage: ferrogate serve --config <file>/)
  for (const option of ['--config', '--port', '--host', '--engine', '--help']) assert.ok(stdout.includes(option), option)
  assert.doesNotMatch(stdout, /Commands:/, 'the general help instead of serve’s')
})

test('a missing config file is named, with the reason', async () => {
  const missing = path.join(dir, 'nowhere', 'ferrogate.json')
  const { code, stderr } = await serve('--config', missing)
  assert.equal(code, 1)
  assert.ok(stderr.includes(`cannot read the config file ${missing}: no such file`), stderr)
})

/** Starts serve and resolves with what it wrote to stderr by the time it listens; stops it. */
async function stderrUntilListening(args) {
  const child = spawn(process.execPath, [cli, 'serve', ...args], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk) => (stderr += chunk))
  try {
    await new Promise((resolve, reject) => {
      child.stdout.on('data', (chunk) => String(chunk).includes('listening on') && resolve())
      child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)))
    })
    return stderr
  } finally {
    child.kill('SIGTERM')
  }
}

test('listening beyond loopback without keys prints a warning on stderr; with keys, or on loopback, none', async () => {
  const open = writeConfig('open.json', { providers: MOCK })
  const warned = await stderrUntilListening(['--config', open, '--host', '0.0.0.0', '--port', '0'])
  assert.match(warned, /warning: serving on 0\.0\.0\.0 without "keys": anyone who can reach this address can spend the provider keys/)
  const local = await stderrUntilListening(['--config', open, '--host', '127.0.0.1', '--port', '0'])
  assert.doesNotMatch(local, /warning/)
  const keyed = writeConfig('keyed.json', { providers: MOCK, keys: [{ key: 'vk-1' }] })
  const withKeys = await stderrUntilListening(['--config', keyed, '--host', '0.0.0.0', '--port', '0'])
  assert.doesNotMatch(withKeys, /warning/)
})

test('relative paths in the config resolve against the config file folder, wherever serve starts', () => {
  const folder = path.join(dir, 'conf')
  fs.mkdirSync(folder)
  const file = path.join(folder, 'ferrogate.json')
  fs.writeFileSync(
    file,
    JSON.stringify({
      providers: {
        local: { kind: 'openai', caCertPath: 'certs/ca.pem', baseUrl: 'https://x.test/v1' },
        vertex: { kind: 'vertex', location: 'us-east5', credentialsPath: 'keys/sa.json' },
      },
      costs: { ledgerPath: './data/ledger.sqlite', pricing: 'prices.json' },
    }),
  )
  const config = readConfig(path.relative(process.cwd(), file), {})
  assert.equal(config.providers.local.caCertPath, path.join(folder, 'certs', 'ca.pem'))
  assert.equal(config.providers.vertex.credentialsPath, path.join(folder, 'keys', 'sa.json'))
  assert.equal(config.costs.ledgerPath, path.join(folder, 'data', 'ledger.sqlite'))
  assert.equal(config.costs.pricing, path.join(folder, 'prices.json'))
  // Absolute paths and values from the environment that are absolute stay as given.
  fs.writeFileSync(file, JSON.stringify({ providers: MOCK, costs: { ledgerPath: '${LEDGER}' } }))
  assert.equal(readConfig(file, { LEDGER: '/var/lib/ferrogate/ledger.sqlite' }).costs.ledgerPath, '/var/lib/ferrogate/ledger.sqlite')
})
