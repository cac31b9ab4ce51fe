// CodeGenerator's output as code: route files for specs covering every JSON-schema type pass
// `tsc --strict --noEmit`; no value of a spec or a file name can break out of a comment into
// code (issue 20, defect 1); offline output carries the spec's own text and no placeholders.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'

import ts from 'typescript'

import { Gateway } from '../index.js'
import { CodeGenerator } from '../lib/codegen.js'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Inside the package, so `express` and its types resolve from its node_modules.
let work
let gateway

before(() => {
  fs.mkdirSync(path.join(ROOT, '__test__', 'artifacts'), { recursive: true })
  work = fs.mkdtempSync(path.join(ROOT, '__test__', 'artifacts', 'codegen-'))
  gateway = new Gateway({ providers: { mock: { kind: 'mock', mockChunkDelayMs: 0 } } })
})
after(async () => {
  await gateway.close()
  fs.rmSync(work, { recursive: true, force: true })
})

const offline = () => new CodeGenerator({ gateway, model: 'mock/ferrogate-mock', offline: true })
const withModel = () => new CodeGenerator({ gateway, model: 'mock/ferrogate-mock' })

/** Every JSON-schema type, required and optional, in the body, the query and the path. */
const SPECS = {
  'body-types': {
    path: '/shops/{shopId}/orders',
    method: 'post',
    description: 'Place an order in a shop',
    parameters: [
      { name: 'sku', in: 'body', type: 'string', required: true, description: 'Stock keeping unit' },
      { name: 'quantity', in: 'body', type: 'integer', required: true },
      { name: 'price', in: 'body', type: 'number', required: true },
      { name: 'gift', in: 'body', type: 'boolean', required: true },
      { name: 'tags', in: 'body', schema: { type: 'array', items: { type: 'string' } }, required: true },
      { name: 'address', in: 'body', schema: { type: 'object', properties: { street: { type: 'string' }, zip: { type: 'string' } }, required: ['street'] }, required: true },
      { name: 'channel', in: 'body', schema: { type: 'string', enum: ['web', 'store'] }, required: true },
      { name: 'priority', in: 'body', schema: { type: 'integer', enum: [1, 2, 3] } },
      {
        name: 'lines',
        in: 'body',
        schema: { type: 'array', items: { type: 'object', properties: { sku: { type: 'string' }, qty: { type: 'integer' }, options: { type: 'object', properties: { color: { enum: ['red', 'blue'] } } } }, required: ['sku'] } },
      },
      { name: 'note', in: 'body', type: 'string' },
      { name: 'discount', in: 'body', type: 'number' },
      { name: 'express', in: 'body', type: 'boolean' },
      { name: 'count', in: 'body', type: 'integer' },
    ],
    responses: { 201: { description: 'The order', schema: { type: 'object', properties: { id: { type: 'string' }, total: { type: 'number' }, items: { type: 'array', items: { type: 'integer' } } }, required: ['id'] } }, 400: 'Invalid order' },
  },
  'query-types': {
    path: '/reports/:year',
    method: 'get',
    parameters: [
      { name: 'year', in: 'path', type: 'integer' },
      { name: 'limit', in: 'query', type: 'integer', required: true },
      { name: 'ratio', in: 'query', type: 'number' },
      { name: 'draft', in: 'query', type: 'boolean', required: true },
      { name: 'format', in: 'query', type: 'string', enum: ['csv', 'json'] },
      { name: 'x-team', in: 'header', type: 'string', required: true },
    ],
    responses: { 200: { description: 'The report', schema: { type: 'array', items: { type: 'object', properties: { month: { type: 'string' }, total: { type: 'number' } } } } }, 204: 'Nothing yet' },
  },
  'no-content': { path: '/sessions/{id}', method: 'delete', responses: { 204: 'Deleted' } },
  'put-patch': {
    path: '/items/{itemId}',
    method: 'patch',
    parameters: [
      { name: 'name', in: 'body', type: 'string' },
      { name: 'stock', in: 'body', type: 'integer', required: true },
      { name: 'active', in: 'body', type: 'boolean' },
    ],
  },
}

async function tscStrict(files) {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const args = ['--strict', '--noEmit', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', ...files]
  return run(process.execPath, [tsc, ...args], { cwd: work }).then(
    () => '',
    (error) => `${error.stdout}${error.stderr}`,
  )
}

test('route files for specs covering every JSON-schema type pass tsc --strict --noEmit', async () => {
  const files = []
  for (const [name, spec] of Object.entries(SPECS)) {
    for (const [kind, generator] of [['offline', offline()], ['model', withModel()]]) {
      const file = path.join(work, `${name}-${kind}.ts`)
      fs.writeFileSync(file, await generator.route(spec))
      files.push(file)
    }
  }
  const body = fs.readFileSync(path.join(work, 'body-types-offline.ts'), 'utf8')
  // The check that did not compile (TS2367): a number compared with "".
  assert.doesNotMatch(body, /body\["quantity"\] === ""/)
  assert.match(body, /body\["quantity"\] == null/)
  assert.match(body, /body\["sku"\] == null \|\| body\["sku"\] === ""/)
  const errors = await tscStrict(files)
  assert.equal(errors, '', errors)
})

/** The top-level statements of TypeScript source that would run when the module is imported. */
function executableStatements(source) {
  const file = ts.createSourceFile('x.ts', source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  return file.statements.filter((s) => ts.isExpressionStatement(s) || ts.isVariableStatement(s)).map((s) => s.getText(file))
}

test('defect 1: a spec path with code in it is refused; no other spec text can leave its comment (imported, nothing runs)', async () => {
  const marker = path.join(work, 'INJECTED')
  const payloads = [
    `/users*/;await import('node:fs').then((m) => m.writeFileSync(${JSON.stringify(marker)}, 'x'));/*`,
    // A control character between * and / once survived as "*/" after control characters were stripped.
    `/users*\u0001/;await import('node:fs').then((m) => m.writeFileSync(${JSON.stringify(marker)}, 'x'));/*`,
  ]
  for (const pathWithCode of payloads) {
    await assert.rejects(offline().route({ path: pathWithCode, method: 'get' }), { code: 'INVALID_REQUEST', message: /spec\.path may hold only/ })
    await assert.rejects(offline().docs(JSON.stringify({ path: pathWithCode, method: 'get' })), { code: 'INVALID_REQUEST' })
  }
  // The forms a route path takes are still accepted.
  for (const fine of ['/users/:id', '/users/{id}/orders', '/a-b/c.d/~e/@f/%20', '/items/:id?', '/']) await offline().route({ path: fine, method: 'get' })
  for (const [i, pathWithCode] of payloads.entries()) {
    for (const [what, spec] of [
      ['description', { path: '/users', method: 'get', description: `Users*\u0001/;globalThis.injected = 1;/*`, responses: { 200: `OK*\u0002/;globalThis.injected = 2;/*` } }],
      ['line terminator', { path: '/users', method: 'get', parameters: [{ name: 'q', in: 'query', type: 'string', description: 'text\u2028globalThis.injected = 3' }] }],
    ]) {
      const source = await offline().route(spec)
      const statements = executableStatements(source)
      assert.deepEqual(
        statements.filter((s) => !/^export const \w+Router =\s+Router\(\);$/.test(s) && !/^\w+Router\.(get|post|put|patch|delete)\(/.test(s)),
        [],
        `${what}: code outside the router`,
      )
      // And imported for real: the module loads, and nothing it was given runs.
      const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
      const file = path.join(work, `injected-${i}-${what.replace(/\W/g, '')}.mjs`)
      fs.writeFileSync(file, js)
      await import(pathToFileURL(file).href)
      assert.equal(fs.existsSync(marker), false, `${what}: the spec's code ran`)
      assert.equal(globalThis.injected, undefined, `${what}: the spec's code ran`)
    }
  }
})

test('defect 1: a file name with a newline or a line separator cannot end the comment of a generated test suite', async () => {
  for (const separator of ['\n', '\r', '\u2028', '\u2029']) {
    const fileName = `orders.mjs${separator}globalThis.injected = 'suite';//`
    const suite = await offline().tests('export function add(a, b) { return a + b }\n', { fileName, importPath: './orders.mjs' })
    const file = ts.createSourceFile('suite.mjs', suite, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS)
    const injected = file.statements.filter((s) => s.getText(file).includes('globalThis.injected'))
    assert.deepEqual(injected.map((s) => s.getText(file)), [], JSON.stringify(separator))
    assert.match(suite, /^\/\/ node:test suite for orders\.mjs ?globalThis\.injected = 'suite';, generated/m)
  }
})

test('offline output has no placeholder text: the spec’s own text, and nothing where it has none', async () => {
  const PLACEHOLDERS = /\bsummary\b|\bdescription\b|implementationNote|title: title|test\.todo/
  const described = await offline().route(SPECS['body-types'])
  assert.doesNotMatch(described, PLACEHOLDERS)
  assert.match(described, /^ \* Place an order in a shop$/m)
  assert.match(described, /\/\*\* Stock keeping unit \*\//)
  const bare = await offline().route(SPECS['no-content'])
  assert.doesNotMatch(bare, PLACEHOLDERS)
  assert.match(bare, /^ \* DELETE \/sessions\/\{id\}$/m)
  const suite = await offline().tests('export const total = (items) => items.length\n', { fileName: 'cart.mjs' })
  assert.doesNotMatch(suite, PLACEHOLDERS)
  const docs = await offline().docs(JSON.stringify(SPECS['body-types']), { fileName: 'shop-api.json' })
  assert.doesNotMatch(docs, /title: title|summary: summary|description: description/)
  assert.match(docs, /title: Shop Api/)
  assert.match(docs, /summary: Place an order in a shop/)
  // The CLI without --config is offline.
  const specFile = path.join(work, 'cli-spec.json')
  fs.writeFileSync(specFile, JSON.stringify(SPECS['query-types']))
  const { stdout, stderr } = await run(process.execPath, [path.join(ROOT, 'bin', 'ferrogate.js'), 'codegen', 'route', specFile], { cwd: work })
  assert.doesNotMatch(stdout, PLACEHOLDERS)
  assert.doesNotMatch(stderr, /no usable answer/)
})
