// `prepare`: npm runs it for `npm install` in a checkout, for `npm install <folder>` (in that
// folder), for `npm install git+…` (in its clone, before packing) and before `npm pack`. It
// builds the native addon only when it is missing or older than the Rust sources, so a folder
// that already holds a current addon installs without a Rust toolchain. A packed tarball runs
// no script at all: it ships the addon.
//
// With the devDependency @napi-rs/cli installed (a checkout after `npm install`/`npm ci`), the
// build goes through `napi build`, which also regenerates binding.js and index.d.ts. Without
// it (a folder or fresh clone installed as a dependency, where devDependencies are not
// installed), it runs cargo directly and copies the library to the addon's name; the
// committed binding.js and index.d.ts are used as they are.
//
// FERROGATE_DEBUG_BUILD=1 builds the debug profile (faster to compile, slower to run).
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const require = createRequire(import.meta.url)
const { PACKAGE_DIR, addonFile } = require('../lib/native.js')

const RUST_INPUTS = ['src', 'Cargo.toml', 'Cargo.lock', 'build.rs']
const debug = Boolean(process.env.FERROGATE_DEBUG_BUILD)
const addon = path.join(PACKAGE_DIR, addonFile())
const say = (message) => console.error(`ferrogate: ${message}`)

/** The newest modification time under `entry` (a file or a directory), or 0 if absent. */
function newestMtime(entry) {
  let stat
  try {
    stat = fs.statSync(entry)
  } catch {
    return 0
  }
  if (!stat.isDirectory()) return stat.mtimeMs
  return fs
    .readdirSync(entry)
    .reduce((newest, name) => Math.max(newest, newestMtime(path.join(entry, name))), stat.mtimeMs)
}

function addonState() {
  const built = newestMtime(addon)
  if (built === 0) return 'missing'
  const sources = Math.max(...RUST_INPUTS.map((name) => newestMtime(path.join(PACKAGE_DIR, name))))
  return built >= sources ? 'current' : 'stale'
}

function hasNapiCli() {
  try {
    createRequire(path.join(PACKAGE_DIR, 'package.json')).resolve('@napi-rs/cli/package.json')
    return true
  } catch {
    return false
  }
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: PACKAGE_DIR, stdio: 'inherit', ...options })
  if (result.error) throw result.error
  return result
}

/** cargo build, then the cdylib copied to the name binding.js loads. */
function buildWithCargo() {
  const args = ['build', '--lib', '--message-format=json-render-diagnostics', ...(debug ? [] : ['--release'])]
  const result = run('cargo', args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 * 1024 * 1024 })
  if (result.status !== 0) return result.status ?? 1
  const library = result.stdout
    .toString('utf8')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((message) => message.reason === 'compiler-artifact' && message.target?.kind?.includes('cdylib'))
    .flatMap((message) => message.filenames)
    .find((file) => /\.(so|dylib|dll)$/.test(file))
  if (!library) {
    say('cargo built no cdylib; nothing to copy')
    return 1
  }
  // Copy then rename, so a process loading the addon never sees half a file.
  const partial = `${addon}.partial`
  fs.copyFileSync(library, partial)
  fs.renameSync(partial, addon)
  say(`built ${path.basename(addon)} with cargo`)
  return 0
}

function main() {
  const state = addonState()
  if (state === 'current') {
    say(`${path.basename(addon)} is up to date with the Rust sources; not rebuilding`)
    return 0
  }
  if (!fs.existsSync(path.join(PACKAGE_DIR, 'Cargo.toml'))) {
    say(`${path.basename(addon)} is missing and there are no Rust sources here to build it from; install ferrogate from its repository (a clone or git+…)`)
    return 1
  }
  const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
  if (cargo.error || cargo.status !== 0) {
    say(
      `${path.basename(addon)} is ${state} and building it needs the Rust toolchain (cargo), which was not found.\n` +
        'Install it from https://rustup.rs and install again.',
    )
    return 1
  }
  say(`${path.basename(addon)} is ${state}: building it from source (${debug ? 'debug' : 'release'}); the first build takes minutes`)
  if (hasNapiCli()) return run('npm', ['run', '--silent', debug ? 'build:debug' : 'build']).status ?? 1
  return buildWithCargo()
}

process.exitCode = main()
