// Runs the JavaScript and TypeScript code blocks of a markdown document, as the README's reader
// would paste them, on the mock provider:
// - each block is one ES module in a folder inside the package (so `import 'ferrogate'` resolves to
//   this checkout), run by its own node process with no API keys in its environment;
// - providers of every kind are served by the mock provider (`kind: 'openai'` etc. become
//   `kind: 'mock'`, names and models unchanged), so no block needs a key or the network;
// - names a block uses without defining them (`gateway`, `messages`, `app`, …) come from a prelude
//   this runner owns, defined only when the block does not define them itself;
// - TypeScript blocks are type-checked with `tsc --strict` first, then run the same way.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The fenced code blocks of `markdown` in a language we run, with the line each starts on. */
export function codeBlocks(markdown) {
  const blocks = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```([A-Za-z]*)\s*$/.exec(lines[i])
    if (!open) continue
    let end = i + 1
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
    const lang = open[1].toLowerCase()
    const kind = ['js', 'javascript', 'mjs'].includes(lang) ? 'js' : ['ts', 'typescript'].includes(lang) ? 'ts' : undefined
    if (kind) blocks.push({ kind, line: i + 1, code: lines.slice(i + 1, end).join('\n') })
    i = end
  }
  return blocks
}

// What a block may use without defining it. Each entry: the import lines it needs and its definition.
const PRELUDE = {
  Gateway: { imports: ["import { Gateway } from 'ferrogate'"] },
  ResponseCache: { imports: ["import { ResponseCache } from 'ferrogate'"] },
  RateLimiter: { imports: ["import { RateLimiter } from 'ferrogate'"] },
  CostTracker: { imports: ["import { CostTracker } from 'ferrogate'"] },
  KeyVault: { imports: ["import { KeyVault } from 'ferrogate'"] },
  express: { imports: ["import express from 'express'"] },
  gateway: {
    imports: ["import { Gateway as __Gateway } from 'ferrogate'"],
    define: `const gateway = new __Gateway({ providers: Object.fromEntries(['openai', 'claude', 'gemini', 'local', 'mock'].map((name) => [name, { kind: 'mock', mockChunkDelayMs: 0 }])) })
__cleanup.push(() => gateway.close())`,
  },
  messages: { define: "const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name three primes.' }]" },
  requests: { define: "const requests = ['one', 'two', 'three'].map((content) => ({ model: 'smart', messages: [{ role: 'user', content }] }))" },
  log: { define: 'const log = { info() {}, warn() {}, error() {} }' },
  app: { imports: ["import __express from 'express'"], define: 'const app = __express()' },
  server: {
    imports: ["import __http from 'node:http'"],
    define: `const server = __http.createServer()
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
__cleanup.push(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))`,
  },
  vault: { imports: ["import { KeyVault as __KeyVault } from 'ferrogate'"], define: "const vault = new __KeyVault({ secret: 'readme-snippet-secret' })" },
  costs: { imports: ["import { CostTracker as __CostTracker } from 'ferrogate'"], define: 'const costs = new __CostTracker()' },
  redisUrl: { define: "const redisUrl = 'redis://127.0.0.1:6379'" },
  orderSchema: { define: "const orderSchema = { type: 'object', properties: { sku: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } }, required: ['sku', 'quantity'] }" },
}

const declares = (code, name) =>
  new RegExp(`(?:^|[\\s;{(,])(?:const|let|var|function|class)\\s+${name}\\b`).test(code) ||
  new RegExp(`import\\s+(?:${name}\\b|[^;\\n]*\\{[^}]*\\b${name}\\b[^}]*\\}|\\*\\s+as\\s+${name}\\b)`).test(code)
const uses = (code, name) => new RegExp(`(?<![./\\w$'"])${name}\\b(?!\\s*:)`).test(code.replace(/\/\/.*$/gm, ''))

/** The block as a module: the prelude it needs, the block on the mock provider, the cleanup. */
export function moduleOf(code, kind = 'js') {
  const onMock = code.replace(/kind:\s*'(openai|anthropic|gemini)'/g, "kind: 'mock'")
  const imports = []
  const defines = []
  for (const [name, entry] of Object.entries(PRELUDE)) {
    if (!uses(onMock, name) || declares(onMock, name)) continue
    imports.push(...(entry.imports ?? []))
    if (entry.define) defines.push(entry.define)
  }
  return [
    ...new Set(imports),
    kind === 'ts' ? 'const __cleanup: Array<() => unknown> = []' : 'const __cleanup = []',
    "process.on('unhandledRejection', (error) => { console.error('unhandled rejection:', error); process.exit(1) })",
    ...defines,
    '// ---- the block ----',
    onMock,
    '// ---- the end ----',
    'for (const close of __cleanup.reverse()) await close()',
    'process.exit(0)',
  ].join('\n')
}

/** Type-checks TypeScript files with tsc --strict; resolves with its complaints ('' when none). */
export async function typeCheck(files, cwd) {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const args = ['--strict', '--noEmit', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', ...files]
  return run(process.execPath, [tsc, ...args], { cwd }).then(
    () => '',
    (error) => `${error.stdout}${error.stderr}`,
  )
}

/**
 * Runs every block of `markdown` in `dir` (inside the package); resolves with one result per block:
 * `{ line, kind, ok, output }`. A TypeScript block that does not type-check is not run.
 */
export async function runBlocks(markdown, dir, { timeoutMs = 60_000 } = {}) {
  const ts = (await import('typescript')).default
  const results = []
  for (const [i, block] of codeBlocks(markdown).entries()) {
    const base = path.join(dir, `block-${i + 1}-line-${block.line}`)
    let source = moduleOf(block.code, block.kind)
    if (block.kind === 'ts') {
      fs.writeFileSync(`${base}.mts`, source)
      const complaints = await typeCheck([`${base}.mts`], dir)
      if (complaints) {
        results.push({ ...block, ok: false, output: `tsc --strict:\n${complaints}` })
        continue
      }
      source = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
    }
    fs.writeFileSync(`${base}.mjs`, source)
    // No keys, no Redis or database URLs: what a reader who just pasted the block has.
    const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? dir }
    const outcome = await run(process.execPath, [`${base}.mjs`], { cwd: dir, env, timeout: timeoutMs }).then(
      ({ stdout, stderr }) => ({ ok: true, output: `${stdout}${stderr}` }),
      (error) => ({ ok: false, output: `exit ${error.code ?? error.signal}\n${error.stdout ?? ''}${error.stderr ?? ''}` }),
    )
    results.push({ ...block, ...outcome })
  }
  return results
}
