// `npm install` in a checkout builds the addon from source (no prebuilt binaries are
// published from here). Fail early, and say what is missing.
import { spawnSync } from 'node:child_process'

const cargo = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
if (cargo.error || cargo.status !== 0) {
  console.error(
    'ferrogate: building the native addon needs the Rust toolchain (cargo), which was not found.\n' +
      'Install it from https://rustup.rs and run `npm install` again.',
  )
  process.exit(1)
}
const profile = process.env.FERROGATE_DEBUG_BUILD ? 'build:debug' : 'build'
const build = spawnSync('npm', ['run', '--silent', profile], { stdio: 'inherit' })
process.exit(build.status ?? 1)
