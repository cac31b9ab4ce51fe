'use strict'
// Loads the native addon through napi-rs's generated loader (binding.js, never edited by
// hand) and, when that fails, says what to do for this package. ferrogate ships a prebuilt
// binary for the targets in package.json's `napi.targets` and is otherwise built from source,
// so napi-rs's stock advice (an npm bug with optional dependencies) would send users the
// wrong way. scripts/build.mjs uses the same names to know which file to build.

const fs = require('node:fs')
const path = require('node:path')

const PACKAGE_DIR = path.join(__dirname, '..')
const BINARY_NAME = 'ferrogate'

function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl')
  } catch {
    const report = process.report?.getReport?.()
    return report != null && !report.header?.glibcVersionRuntime
  }
}

/** napi-rs's name for the platform this process runs on, e.g. `linux-x64-gnu`. */
function currentTarget() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const libc = isMusl() ? 'musl' : 'gnu'
    return arch === 'arm' ? `linux-arm-${libc}eabihf` : `linux-${arch}-${libc}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const RUST_ARCH = { x86_64: 'x64', aarch64: 'arm64', i686: 'ia32', armv7: 'arm', riscv64gc: 'riscv64', loongarch64: 'loong64' }

/** napi-rs's name for a Rust target triple, e.g. x86_64-unknown-linux-gnu -> linux-x64-gnu. */
function targetOfTriple(triple) {
  if (triple === 'universal-apple-darwin') return 'darwin-universal'
  const [rustArch, , system, abi] = triple.split('-')
  const arch = RUST_ARCH[rustArch] ?? rustArch
  if (system === 'linux') return `linux-${arch}-${abi}`
  if (system === 'darwin') return `darwin-${arch}`
  if (system === 'windows') return `win32-${arch}-${abi}`
  return `${system}-${arch}`
}

/** The targets a release ships prebuilt (package.json `napi.targets`). */
function prebuiltTargets() {
  try {
    const { napi } = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'))
    return (napi?.targets ?? []).map(targetOfTriple)
  } catch {
    return []
  }
}

const addonFile = (target = currentTarget()) => `${BINARY_NAME}.${target}.node`

/** The messages of an error and its causes, outermost first. */
function messages(error) {
  const found = []
  for (let e = error; e != null && found.length < 50; e = e.cause) found.push(e?.message ?? String(e))
  return found
}

function loadError(error) {
  const target = currentTarget()
  const file = addonFile(target)
  const present = fs.existsSync(path.join(PACKAGE_DIR, file))
  // napi-rs's loader wraps what went wrong (one error per place it looked, chained as
  // `cause`) in its stock advice; keep the chain, drop the advice.
  const stock = error instanceof Error && error.message.startsWith('Cannot find native binding')
  const cause = stock && error.cause != null ? error.cause : error
  const reason = messages(cause).find((message) => message.includes(file)) ?? messages(cause).at(-1)
  const prebuilt = prebuiltTargets()
  const lines = [
    present
      ? `ferrogate: its native addon ${file} is installed but could not be loaded (Node ${process.version}): ${reason}`
      : `ferrogate: no native addon for this platform (${target}, Node ${process.version}): ${file} is missing.`,
    prebuilt.includes(target)
      ? `The published package ships it prebuilt for ${target}; reinstalling ferrogate should restore it.`
      : `Prebuilt binaries ship for ${prebuilt.join(', ') || 'no platform'}; on ${target} ferrogate is built from source.`,
    'To build it from source (needs the Rust toolchain, https://rustup.rs):',
    '  - in a checkout of the ferrogate repository: `npm install` (builds when the addon is missing or stale) or `npm run build`;',
    '  - in an app that installed ferrogate from a folder (`npm install ../ferrogate`): `npm rebuild ferrogate`;',
    '  - otherwise install it from its sources, which builds it: `npm install <path to a clone>` or `npm install git+<repository url>`.',
  ]
  const wrapped = new Error(lines.join('\n'), { cause })
  wrapped.code = 'ERR_FERROGATE_NATIVE_ADDON'
  return wrapped
}

/** The per-platform package napi-rs publishes for `target` (`ferrogate-linux-x64-gnu`). */
const platformPackage = (target = currentTarget()) => `${BINARY_NAME}-${target}`

// Where the addon in use came from: 'platform-package' or 'local' (a build in the package folder, or
// NAPI_RS_NATIVE_LIBRARY_PATH).
let addonSource = null

/**
 * The addon from this platform's package when one of our own version is installed, which is what a
 * release ships; else through binding.js, which takes a local build (a checkout, a source install).
 * A platform package that is there but cannot load is passed over, and binding.js reports it.
 */
function fromPlatformPackage() {
  if (process.env.NAPI_RS_NATIVE_LIBRARY_PATH) return null
  const name = platformPackage()
  let manifest
  try {
    manifest = require(`${name}/package.json`)
  } catch (error) {
    if (error.code === 'MODULE_NOT_FOUND') return null
    throw error
  }
  const { version } = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'))
  if (manifest.version !== version) return null
  try {
    return require(name)
  } catch {
    return null
  }
}

function loadNative() {
  const packaged = fromPlatformPackage()
  if (packaged) {
    addonSource = 'platform-package'
    return packaged
  }
  try {
    const binding = require('../binding.js')
    addonSource = 'local'
    return binding
  } catch (error) {
    throw loadError(error)
  }
}

module.exports = {
  loadNative,
  addonSource: () => addonSource,
  currentTarget,
  targetOfTriple,
  prebuiltTargets,
  addonFile,
  platformPackage,
  PACKAGE_DIR,
}
