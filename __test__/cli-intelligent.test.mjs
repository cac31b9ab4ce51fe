// The ferrogate CLI's chat and codegen commands, spawned as a user runs them (standard input and
// output, no terminal), offline on the mock provider: each exits 0 with output that parses
// (TypeScript Prettier accepts, a node:test suite that runs, YAML that is an OpenAPI 3 document),
// and a bad command line exits 2 with a `Usage:` line.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import * as prettier from 'prettier'
import { parse as parseYaml } from 'yaml'
import { validateOpenAPI } from '../lib/codegen.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = path.join(ROOT, 'bin', 'ferrogate.js')
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-cli-'))
after(() => fs.rmSync(work, { recursive: true, force: true }))

/** Runs `ferrogate ...args` with `input` on standard input; resolves with its exit code and output. */
function run(args, { input = '', cwd = work, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input)
  })
}

const write = (name, text) => {
  const file = path.join(work, name)
  fs.writeFileSync(file, typeof text === 'string' ? text : JSON.stringify(text, null, 2))
  return file
}

const USAGE_LINE = /^Usage: ferrogate /m

const SPEC = {
  path: '/users/{id}/orders',
  method: 'POST',
  description: 'Create an order for a user',
  parameters: [
    { name: 'id', type: 'integer', description: 'The user id' },
    { name: 'sku', in: 'body', type: 'string', required: true },
    { name: 'qty', in: 'body', type: 'integer', required: true },
    { name: 'gift', in: 'body', type: 'boolean' },
    { name: 'dryRun', in: 'query', type: 'boolean' },
  ],
  responses: {
    201: { description: 'The order', schema: { type: 'object', properties: { orderId: { type: 'string' }, total: { type: 'number' } }, required: ['orderId'] } },
    400: 'Invalid order',
    404: 'No such user',
  },
}

const MODULE = `// A small module with functions and an Express router.
import { Router } from 'express'

export function add(a, b) {
  return a + b
}
export const scale = (value, factor = 2) => value * factor
export async function fetchTotal(orderId) {
  return { orderId, total: 0 }
}
export const VERSION = '1.0.0'

export const router = Router()
router.get('/orders/:orderId', (req, res) => res.json({ orderId: req.params.orderId }))
router.post('/orders', (req, res) => res.status(201).json({ created: true }))
router.delete('/orders/:orderId', (req, res) => res.status(204).end())
`

describe('ferrogate chat', () => {
  test('piped: one streamed answer per input line, the model and cost on stderr, exit 0', async () => {
    const { code, stdout, stderr } = await run(['chat'], { input: 'hello there\n\nwhat is ferrogate?\n' })
    assert.equal(code, 0, stderr)
    const lines = stdout.trimEnd().split('\n')
    assert.equal(lines.length, 2, stdout)
    assert.match(lines[0], /answering "hello there"/)
    assert.match(lines[1], /answering "what is ferrogate\?"/)
    const meta = stderr.trimEnd().split('\n')
    assert.equal(meta.length, 2, stderr)
    for (const line of meta) assert.match(line, /^\[mock\/ferrogate-mock · \d+\+\d+ tokens · \$0\.\d{6} · \d+\.\d\ds\]$/)
    // No spinner or prompt when nothing is a terminal.
    assert.ok(!/\x1b\[|⠋|you>/.test(stdout + stderr))
  })

  test('the conversation is kept, /model switches, /clear forgets; --config and --model are used', async () => {
    const config = write('chat.json', { providers: { offline: { kind: 'mock', models: ['m1', 'm2'], mockChunkDelayMs: 1 } } })
    const { code, stdout, stderr } = await run(['chat', '--config', config, '--system', 'Be brief.'], { input: 'one\n/model offline/m2\ntwo\n/clear\nthree\n/exit\nnot read\n' })
    assert.equal(code, 0, stderr)
    assert.equal(stdout.trimEnd().split('\n').length, 3)
    assert.match(stderr, /\[offline\/m1 /)
    assert.match(stderr, /\(model: offline\/m2\)/)
    assert.match(stderr, /\[offline\/m2 /)
    assert.ok(!stdout.includes('not read'))
    // The prompt grows with the conversation and shrinks after /clear.
    const promptTokens = [...stderr.matchAll(/· (\d+)\+\d+ tokens/g)].map((m) => Number(m[1]))
    assert.equal(promptTokens.length, 3)
    assert.ok(promptTokens[1] > promptTokens[0] && promptTokens[2] < promptTokens[1], promptTokens.join(' '))
  })

  test('a message that fails is reported and the exit code is 1', async () => {
    const { code, stdout, stderr } = await run(['chat', '--model', 'nowhere/model'], { input: 'hi\n' })
    assert.equal(code, 1)
    assert.equal(stdout, '')
    assert.match(stderr, /^error: NOT_FOUND: /m)
  })

  test('--help and bad arguments', async () => {
    const help = await run(['chat', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /^Usage: ferrogate chat/)
    const bad = await run(['chat', '--bogus'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, USAGE_LINE)
    const extra = await run(['chat', 'stray'])
    assert.equal(extra.code, 2)
    assert.match(extra.stderr, USAGE_LINE)
  })
})

describe('ferrogate codegen', () => {
  test('on a terminal a spinner runs while the model works (util-linux script gives the pty)', async (t) => {
    if (!fs.existsSync('/usr/bin/script')) {
      t.skip('/usr/bin/script (util-linux) is absent')
      return
    }
    const spec = write('tty-spec.json', SPEC)
    const out = path.join(work, 'tty-route.ts')
    const command = [process.execPath, BIN, 'codegen', 'route', spec, '--out', out].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
    const { code, output } = await new Promise((resolve, reject) => {
      const child = spawn('/usr/bin/script', ['-qec', command, '/dev/null'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      child.stdout.on('data', (d) => (output += d))
      child.stderr.on('data', (d) => (output += d))
      child.on('error', reject)
      child.on('close', (code) => resolve({ code, output }))
    })
    assert.equal(code, 0, output)
    assert.match(output, /\r\x1b\[K. generating route…/)
    // The spinner line is cleared once, and the file is plain code.
    assert.ok(await prettier.check(fs.readFileSync(out, 'utf8'), { parser: 'typescript' }))
  })

  test('route: a TypeScript Express route that Prettier accepts as formatted', async () => {
    const { code, stdout, stderr } = await run(['codegen', 'route', write('spec.json', SPEC)])
    assert.equal(code, 0, stderr)
    assert.ok(await prettier.check(stdout, { parser: 'typescript' }), 'the output is Prettier-formatted TypeScript')
    assert.match(stdout, /export const postUsersByIdOrdersRouter = Router\(\);/)
    assert.match(stdout, /postUsersByIdOrdersRouter\.post\(\s*"\/users\/:id\/orders"/)
    assert.match(stdout, /export interface PostUsersByIdOrdersBody \{\s*sku: string;\s*qty: number;\s*gift\?: boolean;\s*\}/)
    assert.match(stdout, /problems\.push\("qty must be an integer"\)/)
    assert.match(stdout, /res\.status\(201\)\.json\(answer\)/)
    // Offline no model is asked: the spec's own text heads the file, and no placeholder prose.
    assert.match(stdout, /^ \* Create an order for a user$/m)
    assert.doesNotMatch(stdout, /\bsummary\b|implementationNote|Implementation notes/)
  })

  test('route --out writes the file; a spec that is not valid exits 1 with the reason', async () => {
    const out = path.join(work, 'out', 'route.ts')
    const written = await run(['codegen', 'route', write('spec2.json', SPEC), '--out', out])
    assert.equal(written.code, 0, written.stderr)
    assert.equal(written.stdout, '')
    assert.ok(await prettier.check(fs.readFileSync(out, 'utf8'), { parser: 'typescript' }))
    const invalid = await run(['codegen', 'route', write('bad-spec.json', { method: 'GET' })])
    assert.equal(invalid.code, 1)
    assert.match(invalid.stderr, /spec\.path must be a string starting with \//)
    const notJson = await run(['codegen', 'route', write('not-json.json', '{ nope')])
    assert.equal(notJson.code, 1)
    assert.match(notJson.stderr, /not valid JSON/)
  })

  test('test: a node:test suite that Prettier accepts and that passes against the module', async () => {
    const dir = path.join(ROOT, '__test__', 'artifacts', 'codegen-suite')
    fs.mkdirSync(dir, { recursive: true })
    const moduleFile = path.join(dir, 'orders.mjs')
    fs.writeFileSync(moduleFile, MODULE)
    const { code, stdout, stderr } = await run(['codegen', 'test', moduleFile])
    assert.equal(code, 0, stderr)
    assert.ok(await prettier.check(stdout, { parser: 'babel' }))
    assert.match(stdout, /import \* as mod from "\.\/orders\.mjs";/)
    assert.match(stdout, /assert\.equal\(subject\["add"\]\.length, 2\);/)
    assert.match(stdout, /assert\.equal\(subject\["scale"\]\.length, 1\);/)
    // Offline there are no test ideas, rather than placeholder ones ("add: add").
    assert.doesNotMatch(stdout, /test\.todo/)
    // The suite is real: it runs and passes (express resolves from the package's node_modules).
    const suite = path.join(dir, 'orders.test.mjs')
    fs.writeFileSync(suite, stdout)
    const result = await new Promise((resolve) => {
      // Outside this runner's context, so the suite runs as a test file of its own.
      const env = { ...process.env }
      delete env.NODE_TEST_CONTEXT
      const child = spawn(process.execPath, ['--test-reporter=tap', suite], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      child.stdout.on('data', (d) => (output += d))
      child.stderr.on('data', (d) => (output += d))
      child.on('close', (code) => resolve({ code, output }))
    })
    assert.equal(result.code, 0, result.output)
    assert.match(result.output, /# pass 8/)
    assert.match(result.output, /# todo 0/)
  })

  test('test: a file with no exports or routes exits 1', async () => {
    const { code, stderr } = await run(['codegen', 'test', write('empty.js', 'const x = 1\n')])
    assert.equal(code, 1)
    assert.match(stderr, /found no exports and no routes/)
  })

  test('docs: OpenAPI 3 YAML from a spec and from a module, valid and Prettier-formatted', async () => {
    for (const file of [write('docs-spec.json', SPEC), write('docs-module.mjs', MODULE)]) {
      const { code, stdout, stderr } = await run(['codegen', 'docs', file])
      assert.equal(code, 0, stderr)
      assert.ok(await prettier.check(stdout, { parser: 'yaml' }))
      const doc = parseYaml(stdout)
      assert.deepEqual(validateOpenAPI(doc), [])
      assert.match(doc.openapi, /^3\.0\.\d$/)
      assert.equal(typeof doc.info.title, 'string')
      if (file.endsWith('.json')) {
        const op = doc.paths['/users/{id}/orders'].post
        assert.deepEqual(Object.keys(op.responses), ['201', '400', '404'])
        assert.deepEqual(op.requestBody.content['application/json'].schema.required, ['sku', 'qty'])
        assert.deepEqual(op.parameters.map((p) => `${p.in}:${p.name}`), ['path:id', 'query:dryRun'])
        // Offline, the spec's own description is the summary.
        assert.equal(op.summary, 'Create an order for a user')
        assert.notEqual(doc.info.title, 'title')
      } else {
        assert.deepEqual(Object.keys(doc.paths).sort(), ['/orders', '/orders/{orderId}'])
        assert.deepEqual(Object.keys(doc.paths['/orders/{orderId}']).sort(), ['delete', 'get'])
        assert.equal(doc.paths['/orders/{orderId}'].get.parameters[0].in, 'path')
      }
    }
  })

  test('docs --title; a module without routes exits 1', async () => {
    const titled = await run(['codegen', 'docs', write('t.json', SPEC), '--title', 'Orders API'])
    assert.equal(parseYaml(titled.stdout).info.title, 'Orders API')
    const none = await run(['codegen', 'docs', write('plain.mjs', 'export const a = 1\n')])
    assert.equal(none.code, 1)
    assert.match(none.stderr, /found no Express routes/)
  })

  test('bad command lines exit 2 with a Usage: line; --help exits 0', async () => {
    const cases = [
      ['codegen'],
      ['codegen', 'poem', 'x.json'],
      ['codegen', 'route'],
      ['codegen', 'route', path.join(work, 'missing.json')],
      ['codegen', 'route', 'a.json', 'b.json'],
      ['codegen', 'docs', 'x.json', '--timeout', '-5'],
      ['codegen', 'route', 'x.json', '--nope'],
      ['no-such-command'],
      [],
    ]
    for (const args of cases) {
      const { code, stderr } = await run(args)
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`)
      assert.match(stderr, /^Usage: /m, args.join(' '))
    }
    const help = await run(['codegen', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /^Usage: ferrogate codegen route/)
    const top = await run(['--help'])
    assert.equal(top.code, 0)
    assert.match(top.stdout, /chat/)
    assert.match(top.stdout, /codegen route/)
  })

  test('a config file that is not valid exits 1', async () => {
    const { code, stderr } = await run(['codegen', 'route', write('s.json', SPEC), '--config', write('bad-config.json', '{ "providers": ')])
    assert.equal(code, 1)
    assert.match(stderr, /config/)
  })
})
