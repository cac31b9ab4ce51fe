// Every JavaScript and TypeScript block of README.md runs as pasted, on the mock provider (see
// helpers/snippets.mjs for the rules and the prelude), and a broken block makes the runner fail.
// The Quick start is also copied verbatim into an app that installs the packed tarball, and run
// with no environment variables at all.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'

import Redis from 'ioredis'

import { codeBlocks, ROOT, runBlocks } from './helpers/snippets.mjs'

const run = promisify(execFile)
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
let dir

before(() => {
  fs.mkdirSync(path.join(ROOT, '__test__', 'artifacts'), { recursive: true })
  dir = fs.mkdtempSync(path.join(ROOT, '__test__', 'artifacts', 'readme-'))
})

after(async () => {
  fs.rmSync(dir, { recursive: true, force: true })
  // The queue block's jobs (BullMQ keys of the queue it names).
  const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const keys = await redis.keys('bull:translations:*')
    if (keys.length) await redis.del(...keys)
  } catch {
    // no Redis: the queue block failed and said so
  } finally {
    redis.disconnect()
  }
})

test('README stays under 300 lines', () => {
  assert.ok(README.split('\n').length < 300, `README.md has ${README.split('\n').length} lines`)
})

test('every block of README runs (JS as is, TS after tsc --strict)', async () => {
  const blocks = codeBlocks(README)
  assert.ok(blocks.length >= 10, `found ${blocks.length} blocks`)
  assert.ok(blocks.some((b) => b.kind === 'ts'), 'a TypeScript block')
  const results = await runBlocks(README, dir)
  const failed = results.filter((r) => !r.ok)
  assert.deepEqual(
    failed.map((r) => `README.md:${r.line} (${r.kind}):\n${r.output}`),
    [],
  )
  // The Quick start prints the mock's answer.
  assert.match(results[0].output, /ferrogate mock provider/)
})

test('a broken block makes the runner fail: an undefined name, a throw, a type error', async () => {
  const broken = [
    '# Broken',
    '```js',
    "const answer = await gateway.chat({ model: 'mock/m', messages })",
    'console.log(undefinedHelper(answer))',
    '```',
    '```js',
    "await gateway.chat({ model: 'nowhere/m', messages })",
    '```',
    '```ts',
    "import { Gateway } from 'ferrogate'",
    "const g = new Gateway({ providers: { mock: { kind: 'mock' } } })",
    "const n: number = (await g.chat({ model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] })).content",
    'console.log(n)',
    '```',
    '```js',
    "console.log((await gateway.chat({ model: 'openai/gpt-4o-mini', messages })).content)",
    '```',
  ].join('\n')
  const results = await runBlocks(broken, dir)
  assert.deepEqual(
    results.map((r) => r.ok),
    [false, false, false, true],
    results.map((r) => r.output).join('\n---\n'),
  )
  assert.match(results[0].output, /undefinedHelper is not defined/)
  assert.match(results[1].output, /NOT_FOUND|no provider for model/)
  assert.match(results[2].output, /TS2322/)
})

test("README's Quick start, copied verbatim into an app that installs the packed tarball, prints an answer with no environment", async (t) => {
  const quickStart = README.slice(README.indexOf('## Quick start'))
  const [first] = codeBlocks(quickStart)
  assert.ok(first && first.kind === 'js', 'the Quick start has a JS block')
  const app = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-quickstart-'))
  t.after(() => fs.rmSync(app, { recursive: true, force: true }))
  let tarball
  try {
    // --ignore-scripts: the addon of this checkout is already built; pack what is there.
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', app], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 })
    tarball = path.join(app, JSON.parse(stdout)[0].filename)
  } catch (error) {
    t.skip(`npm pack is impossible here, so the packed package cannot be tried: ${error.message.split('\n')[0]}`)
    return
  }
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'quickstart-app', version: '1.0.0', private: true }))
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', tarball], { cwd: app, maxBuffer: 64 * 1024 * 1024 })
  fs.writeFileSync(path.join(app, 'quickstart.mjs'), first.code)
  const { stdout } = await run(process.execPath, ['quickstart.mjs'], { cwd: app, env: {}, timeout: 60_000 })
  assert.match(stdout, /This is the ferrogate mock provider answering "Name three primes\."/)
  // The shipped package carries the docs README links to.
  for (const doc of ['docs/API.md', 'docs/CONFIG.md', 'docs/INSTALL.md']) assert.ok(fs.existsSync(path.join(app, 'node_modules', 'ferrogate', doc)), doc)
})
