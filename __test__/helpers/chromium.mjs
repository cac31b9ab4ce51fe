// Debian's headless Chromium driven by playwright-core, for the browser tests. Where the
// package is absent the test is skipped, saying how to install it (.ci/run installs it).
import fs from 'node:fs'

export const CHROMIUM = '/usr/bin/chromium'

/** Launches Chromium, or skips the test `t` and resolves null when it is not installed. */
export async function launchChromium(t) {
  if (!fs.existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} is absent: install Debian's chromium package (apt-get install -y chromium) to run this test`)
    return null
  }
  const { chromium } = await import('playwright-core')
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  })
}
