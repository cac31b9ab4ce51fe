// The package as a dependency: what the loader says when the native addon cannot load, when
// `prepare` (scripts/build.mjs) builds and when it leaves a current addon alone (with no Rust
// toolchain on PATH), and what `npm pack` ships. Each case runs in a child process against a
// copy of the package in a temporary directory, so the real checkout is never touched.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const REPO = fileURLToPath(new URL('..', import.meta.url))
const { addonFile, currentTarget, platformPackage, targetOfTriple } = require('../lib/native.js')
const ADDON = addonFile()

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrogate-package-test-'))
after(() => fs.rmSync(scratch, { recursive: true, force: true }))

let copies = 0
/** A copy of the package's runtime files, without the addon. */
function packageCopy() {
  const dir = path.join(scratch, `pkg${copies++}`)
  for (const entry of ['package.json', 'index.js', 'binding.js', 'lib', 'scripts']) {
    fs.cpSync(path.join(REPO, entry), path.join(dir, entry), { recursive: true })
  }
  return dir
}

/** A PATH holding only `node`: no cargo, no rustc, no npm. */
function pathWithoutRust() {
  const bin = path.join(scratch, 'bin-node-only')
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(bin)
    fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  }
  return bin
}

/** Loads the copy's entry point through require (CJS) or import (ESM) in a child process. */
function loadIn(dir, how) {
  const entry = path.join(dir, 'index.js')
  const load = how === 'require' ? `Promise.resolve().then(() => require(${JSON.stringify(entry)}))` : `import(${JSON.stringify(new URL(`file://${entry}`).href)})`
  const script = `${load}.then(() => console.log(JSON.stringify({ loaded: true })), (e) => {
    const causes = []
    for (let c = e.cause; c != null && causes.length < 20; c = c.cause) causes.push(String(c.message))
    console.log(JSON.stringify({ message: e.message, code: e.code, causes }))
  })`
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
}

describe('the native addon loader', () => {
  test('the platform name it computes is the one napi-rs built here', () => {
    assert.ok(fs.existsSync(path.join(REPO, ADDON)), `${ADDON} (from currentTarget() = ${currentTarget()}) is in the checkout`)
    assert.equal(targetOfTriple('x86_64-unknown-linux-gnu'), 'linux-x64-gnu')
    assert.equal(targetOfTriple('aarch64-unknown-linux-musl'), 'linux-arm64-musl')
    assert.equal(targetOfTriple('aarch64-apple-darwin'), 'darwin-arm64')
    assert.equal(targetOfTriple('x86_64-pc-windows-msvc'), 'win32-x64-msvc')
  })

  for (const how of ['require', 'import']) {
    test(`a missing addon (${how}): the error says how to build this package, not napi-rs's npm advice`, () => {
      const result = loadIn(packageCopy(), how)
      assert.equal(result.loaded, undefined, 'loading must fail without the addon')
      assert.equal(result.code, 'ERR_FERROGATE_NATIVE_ADDON')
      assert.match(result.message, new RegExp(`no native addon for this platform \\(${currentTarget()}, Node ${process.version.replaceAll('.', '\\.')}\\): ${ADDON.replaceAll('.', '\\.')} is missing`))
      assert.match(result.message, /Prebuilt binaries ship for|ships it prebuilt for/)
      assert.match(result.message, /Rust toolchain, https:\/\/rustup\.rs/)
      assert.match(result.message, /`npm run build`/)
      assert.match(result.message, /`npm rebuild ferrogate`/)
      assert.doesNotMatch(result.message, /optional dependencies|package-lock/)
      assert.ok(result.causes.some((c) => c.includes(ADDON)), `the causes name the file napi-rs looked for: ${result.causes}`)
      assert.ok(result.causes.every((c) => !/optional dependencies/.test(c)), "napi-rs's stock advice is not in the causes either")
    })
  }

  test('an addon that is there but cannot load: the error says so, with the loader reason', () => {
    const dir = packageCopy()
    fs.writeFileSync(path.join(dir, ADDON), 'not a shared library')
    const result = loadIn(dir, 'require')
    assert.equal(result.code, 'ERR_FERROGATE_NATIVE_ADDON')
    assert.match(result.message, new RegExp(`${ADDON.replaceAll('.', '\\.')} is installed but could not be loaded`))
    assert.match(result.message, new RegExp(`${ADDON.replaceAll('.', '\\.')}: (file too short|invalid ELF header)`))
  })

  /** Installs a copy of the real addon as this platform's napi-rs package inside the package copy. */
  function withPlatformPackage(dir, version = '0.1.0') {
    const pkgDir = path.join(dir, 'node_modules', platformPackage())
    fs.mkdirSync(pkgDir, { recursive: true })
    fs.copyFileSync(path.join(REPO, ADDON), path.join(pkgDir, ADDON))
    fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify({ name: platformPackage(), version, main: ADDON }))
    return dir
  }
  /** Which addon the copy loaded: 'platform-package', 'local', or the load error's code. */
  function sourceIn(dir) {
    const script = `const native = require(${JSON.stringify(path.join(dir, 'lib', 'native.js'))})
      try { const addon = native.loadNative(); console.log(typeof addon.NativeGateway === 'function' ? native.addonSource() : 'not the addon') }
      catch (e) { console.log(e.code) }`
    return execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim()
  }

  test('loader: the platform package is preferred when present (with or without a local build)', () => {
    assert.equal(sourceIn(withPlatformPackage(packageCopy())), 'platform-package')
    const both = withPlatformPackage(packageCopy())
    fs.copyFileSync(path.join(REPO, ADDON), path.join(both, ADDON))
    assert.equal(sourceIn(both), 'platform-package')
  })

  test('loader: a local build when no platform package (or one of another version) is there', () => {
    const local = packageCopy()
    fs.copyFileSync(path.join(REPO, ADDON), path.join(local, ADDON))
    assert.equal(sourceIn(local), 'local')
    const otherVersion = withPlatformPackage(packageCopy(), '9.9.9')
    fs.copyFileSync(path.join(REPO, ADDON), path.join(otherVersion, ADDON))
    assert.equal(sourceIn(otherVersion), 'local')
  })

  test('loader: neither gives the documented error', () => {
    assert.equal(sourceIn(packageCopy()), 'ERR_FERROGATE_NATIVE_ADDON')
  })

  test('the checkout itself loads', () => {
    assert.deepEqual(loadIn(REPO, 'require'), { loaded: true })
  })
})

describe('prepare (scripts/build.mjs)', () => {
  /** A copy with stand-in Rust sources and addon, their times set as asked (seconds ago). */
  function sourcesCopy({ addonAge, sourcesAge }) {
    const dir = packageCopy()
    fs.mkdirSync(path.join(dir, 'src'))
    for (const file of ['src/lib.rs', 'Cargo.toml', 'Cargo.lock', 'build.rs']) fs.writeFileSync(path.join(dir, file), '// stand-in\n')
    const now = Date.now() / 1000
    for (const entry of ['src/lib.rs', 'src', 'Cargo.toml', 'Cargo.lock', 'build.rs']) fs.utimesSync(path.join(dir, entry), now - sourcesAge, now - sourcesAge)
    if (addonAge != null) {
      fs.writeFileSync(path.join(dir, ADDON), 'prebuilt stand-in')
      fs.utimesSync(path.join(dir, ADDON), now - addonAge, now - addonAge)
    }
    return dir
  }
  const prepare = (dir) =>
    spawnSync(process.execPath, [path.join(dir, 'scripts/build.mjs')], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, PATH: pathWithoutRust() },
    })

  test('an addon newer than every Rust source is kept, with no Rust toolchain on PATH', () => {
    const dir = sourcesCopy({ addonAge: 10, sourcesAge: 100 })
    const result = prepare(dir)
    assert.equal(result.status, 0, result.stderr)
    assert.match(result.stderr, /is up to date with the Rust sources; not rebuilding/)
    assert.equal(fs.readFileSync(path.join(dir, ADDON), 'utf8'), 'prebuilt stand-in')
  })

  test('an addon older than a Rust source is rebuilt: without cargo that fails and says what is missing', () => {
    const dir = sourcesCopy({ addonAge: 100, sourcesAge: 10 })
    const result = prepare(dir)
    assert.equal(result.status, 1)
    assert.match(result.stderr, /is stale and building it needs the Rust toolchain \(cargo\), which was not found/)
    assert.match(result.stderr, /rustup\.rs/)
  })

  test('a missing addon is built: without cargo that fails and says what is missing', () => {
    const result = prepare(sourcesCopy({ sourcesAge: 10 }))
    assert.equal(result.status, 1)
    assert.match(result.stderr, /is missing and building it needs the Rust toolchain/)
  })

  test('a copy with neither addon nor sources says where to get them', () => {
    const result = prepare(packageCopy())
    assert.equal(result.status, 1)
    assert.match(result.stderr, /no Rust sources here/)
  })
})

describe('npm pack', () => {
  test('ships the runtime files and the addon, nothing test-only', () => {
    // --ignore-scripts: listing the files must not start a build.
    const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8' }))
    const files = pack.files.map((f) => f.path).sort()
    // docs/: README links to it, and npm shows README with the package.
    for (const needed of ['package.json', 'README.md', 'index.js', 'index.d.ts', 'binding.js', 'lib/native.js', 'lib/header.d.ts', 'scripts/build.mjs', 'docs/API.md', 'docs/CONFIG.md', 'docs/INSTALL.md', ADDON]) {
      assert.ok(files.includes(needed), `${needed} is packed (packed: ${files.join(', ')})`)
    }
    const unexpected = files.filter((f) => /^(__test__|src|bench|target|examples|\.ci|node_modules)\//.test(f) || /^Cargo\.|^build\.rs$/.test(f))
    assert.deepEqual(unexpected, [])
  })
})

describe('optional peer dependencies', () => {
  const { requirePeers, requirePeer, MissingPeerError } = require('../lib/peers.js')

  test('a missing peer is named with the command that installs it', () => {
    assert.throws(
      () => requirePeers('ferrogate/example', ['ws', 'ferrogate-no-such-package-a', 'ferrogate-no-such-package-b']),
      (e) =>
        e instanceof MissingPeerError &&
        e.code === 'CONFIG' &&
        e.message === 'ferrogate/example needs ferrogate-no-such-package-a and ferrogate-no-such-package-b, which are not installed: run `npm install ferrogate-no-such-package-a ferrogate-no-such-package-b`',
    )
    assert.equal(requirePeer('ferrogate/example', 'ws'), require('ws'))
  })

  test('the core install needs none of them: package.json lists no dependency besides the addon', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'))
    assert.deepEqual(manifest.dependencies ?? {}, {})
    for (const peer of ['bullmq', 'ioredis', 'ws', 'prettier', 'yaml', 'ajv', 'ajv-formats']) {
      assert.equal(manifest.peerDependenciesMeta[peer]?.optional, true, `${peer} is an optional peer`)
    }
  })
})
