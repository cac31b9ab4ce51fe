// The chat example (npm run example:chat): its WebSocket server driven by a `ws` client, and its page in
// headless Chromium (Debian's chromium package with playwright-core) — type, send, watch the answer stream.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

import { connectChat } from './helpers/chat-client.mjs'
import { launchChromium } from './helpers/chromium.mjs'
import { startExample } from './helpers/examples.mjs'

const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))

let example
before(async () => {
  example = await startExample('example:chat')
})
after(async () => {
  assert.equal(await example.stop(), 0)
})

test('the chat example serves its page and speaks the protocol, offline on the mock provider', async () => {
  assert.match(example.output(), /no OPENAI_API_KEY/)
  const page = await fetch(example.url)
  assert.equal(page.status, 200)
  assert.match(await page.text(), /<script src="\/app.js">/)
  assert.equal((await fetch(new URL('/app.js', example.url))).status, 200)
  assert.equal((await fetch(new URL('/nothing', example.url))).status, 404)

  const client = await connectChat(`${example.url.replace('http:', 'ws:')}ws/chat`)
  try {
    const hello = await client.waitFor('connection_established')
    assert.deepEqual(hello.supportedModels, ['mock/mock-1', 'mock/mock-2'])
    client.send({ type: 'chat_message', content: 'ping' })
    assert.match((await client.waitFor('ai_response_complete')).fullResponse, /answering "ping"/)
  } finally {
    await client.close()
  }
})

test('in headless Chromium: a typed message shows the streamed answer', async (t) => {
  const browser = await launchChromium(t)
  if (browser === null) return
  try {
    const page = await browser.newPage()
    page.setDefaultTimeout(60_000)
    const pageErrors = []
    page.on('pageerror', (error) => pageErrors.push(error))
    await page.goto(example.url)
    await page.waitForSelector('#status:text("connected")')
    await page.locator('#model').selectOption('mock/mock-2')
    await page.waitForSelector('.meta:text("model: mock/mock-2")')

    // Records what the answer's bubble shows at each change, to see it fill up while the answer streams.
    await page.evaluate(() => {
      window.seen = []
      new MutationObserver(() => {
        const bubble = document.querySelector('.message.assistant.streaming')
        if (bubble) window.seen.push(bubble.textContent)
      }).observe(document.getElementById('log'), { childList: true, subtree: true, characterData: true })
    })
    await page.fill('#input', 'Hello from Chromium')
    await page.click('#send')
    const answer = page.locator('.message.assistant[data-done="true"]')
    await answer.waitFor()
    const seen = new Set((await page.evaluate(() => window.seen)).filter(Boolean))
    assert.ok(seen.size > 3, `the answer appeared in ${seen.size} partial steps`)
    assert.match(await answer.textContent(), /^This is the ferrogate mock provider answering "Hello from Chromium"\./)
    assert.equal(await page.locator('.message.user').textContent(), 'Hello from Chromium')
    assert.match(await page.locator('.meta').last().textContent(), /^mock\/mock-2 · \d+ tokens/)
    assert.equal(await page.inputValue('#input'), '')

    fs.mkdirSync(ARTIFACTS, { recursive: true })
    const screenshot = path.join(ARTIFACTS, 'chat-page.png')
    await page.screenshot({ path: screenshot, fullPage: true })
    assert.ok(fs.statSync(screenshot).size > 1000)
    t.diagnostic(`screenshot: ${screenshot}`)

    // A reload resumes the session from its id in localStorage.
    await page.reload()
    await page.waitForSelector('#status:text("connected")')
    await page.locator('.message.assistant').first().waitFor()
    assert.equal(await page.locator('.message.user').textContent(), 'Hello from Chromium')
    assert.deepEqual(pageErrors, [])
  } finally {
    await browser.close()
  }
})
