import { setTimeout as sleep } from 'node:timers/promises'

/** Polls `condition` until it holds; fails (rather than hangs) after a generous `timeoutMs`. */
export async function waitUntil(condition, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`)
    await sleep(10)
  }
}
