// Starts an example exactly as its npm script does (the script must be `node <file>`), with the mock
// provider, and resolves once it prints the URL it listens on.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export function scriptCommand(script) {
  const command = JSON.parse(fs.readFileSync(new URL('package.json', `file://${ROOT}/`), 'utf8')).scripts[script]
  const [program, ...args] = command?.split(' ') ?? []
  if (program !== 'node') throw new Error(`npm script ${script} should be "node <file>", is ${JSON.stringify(command)}`)
  return args
}

/** Runs an npm script's node command; resolves with { code, stdout }. */
export async function runScript(script, env = {}) {
  const child = spawn(process.execPath, scriptCommand(script), { cwd: ROOT, env: exampleEnv(env), stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (text) => (stdout += text))
  const [code] = await once(child, 'exit')
  return { code, stdout }
}

function exampleEnv(env) {
  const clean = { ...process.env, PORT: '0', ...env }
  delete clean.OPENAI_API_KEY // the examples' offline mode
  return clean
}

export async function startExample(script, env = {}) {
  const child = spawn(process.execPath, scriptCommand(script), { cwd: ROOT, env: exampleEnv(env), stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  const url = await new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (text) => {
      stdout += text
      const match = /listening on (http:\/\/\S+)/.exec(stdout)
      if (match) resolve(match[1])
    })
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before listening:\n${stdout}`)))
  })
  return {
    url,
    output: () => stdout,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const [code] = await exited
      return code
    },
  }
}
