// KeyVault: AES-256-GCM round trip, tampering and wrong secrets detected with clear messages
// that carry no key material, virtual keys for openaiRouter, daily quotas that reset at UTC midnight.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, test } from 'node:test'

import OpenAI from 'openai'
import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { Gateway, KeyVault, FerrogateError } = require('../index.js')
const { openaiRouter } = require('../lib/express.js')

const SECRET = 'vault-secret-0123456789abcdef0123456789'
const PROVIDER_KEY = 'sk-proj-provider-key-XYZ987654321'
const DAY = 24 * 60 * 60 * 1000

const leaks = (text) => [SECRET, PROVIDER_KEY, 'vk-team-a-0001'].some((s) => String(text).includes(s))

test('encrypt/decrypt round trip with a fresh nonce per encryption', () => {
  const a = KeyVault.encrypt(PROVIDER_KEY, SECRET)
  const b = KeyVault.encrypt(PROVIDER_KEY, SECRET)
  assert.match(a, /^fgv1\.[A-Za-z0-9_-]+$/)
  assert.notEqual(a, b)
  assert.ok(!leaks(a))
  assert.equal(KeyVault.decrypt(a, SECRET), PROVIDER_KEY)
  assert.equal(KeyVault.decrypt(KeyVault.encrypt('', SECRET), SECRET), '')
  assert.equal(KeyVault.decrypt(KeyVault.encrypt('ключ 🔑', SECRET), SECRET), 'ключ 🔑')
})

test('tampered tokens and a wrong secret fail clearly, with no key material in the error', () => {
  const token = KeyVault.encrypt(PROVIDER_KEY, SECRET)
  const body = Buffer.from(token.slice(5), 'base64url')
  const failures = []
  for (const at of [0, 12, body.length - 1]) {
    const altered = Buffer.from(body)
    altered[at] ^= 0x01
    failures.push(() => KeyVault.decrypt(`fgv1.${altered.toString('base64url')}`, SECRET))
  }
  failures.push(() => KeyVault.decrypt(token, 'another-secret'))
  failures.push(() => KeyVault.decrypt(`${token.slice(0, -4)}AAAA`, SECRET))
  for (const attempt of failures) {
    const error = (() => {
      try {
        attempt()
      } catch (e) {
        return e
      }
    })()
    assert.ok(error instanceof FerrogateError, 'a FerrogateError')
    assert.equal(error.code, 'INVALID_REQUEST')
    assert.match(error.message, /altered or the secret is wrong/)
    assert.ok(!leaks(error.message) && !leaks(error.stack) && !leaks(JSON.stringify(error)))
  }
  assert.throws(() => KeyVault.decrypt(PROVIDER_KEY, SECRET), (e) => e.code === 'INVALID_REQUEST' && /not a KeyVault token/.test(e.message) && !leaks(e.message))
  assert.throws(() => KeyVault.encrypt(PROVIDER_KEY, ''), (e) => e.code === 'CONFIG')
  assert.throws(() => new KeyVault({ secret: '' }), (e) => e.code === 'CONFIG')
})

test('entries keep the provider key sealed; virtual keys map to their id', () => {
  const vault = new KeyVault({ secret: SECRET })
  vault.add('team-a', { provider: 'openai', key: PROVIDER_KEY }).addVirtualKey('vk-team-a-0001', 'team-a')
  assert.equal(vault.getKey('team-a'), PROVIDER_KEY)
  assert.equal(vault.provider('team-a'), 'openai')
  assert.equal(vault.verify('vk-team-a-0001'), 'team-a')
  assert.equal(vault.verify('vk-team-a-0002'), null)
  assert.equal(vault.verify(undefined), null)
  const issued = vault.issueKey('team-a')
  assert.match(issued, /^fg-/)
  assert.equal(vault.verify(issued), 'team-a')
  assert.ok(!leaks(require('node:util').inspect(vault)))
  assert.throws(() => vault.getKey('nobody'), (e) => e.code === 'NOT_FOUND')
  assert.throws(() => vault.recordUsage('team-a', -1), (e) => e.code === 'INVALID_REQUEST')
})

test('daily token quotas: spent, refused, reset at the next UTC midnight (injected clock)', () => {
  let now = Date.UTC(2026, 0, 10, 23, 0, 0)
  const vault = new KeyVault({ secret: SECRET, now: () => now })
  vault.add('t', { provider: 'openai', dailyTokenQuota: 100 })
  assert.equal(vault.checkQuota('t').remainingTokens, 100)
  assert.equal(vault.recordUsage('t', 70).remainingTokens, 30)
  const spent = vault.recordUsage('t', 40)
  assert.equal(spent.allowed, false)
  assert.equal(spent.remainingTokens, 0)
  assert.equal(spent.resetsAtMs, Date.UTC(2026, 0, 11))
  now += 59 * 60 * 1000
  assert.equal(vault.checkQuota('t').allowed, false)
  now += 60 * 1000
  const fresh = vault.checkQuota('t')
  assert.equal(fresh.allowed, true)
  assert.equal(fresh.remainingTokens, 100)
  assert.equal(fresh.usedTokens, 0)
  now += DAY
  vault.add('free', { provider: 'openai' })
  assert.equal(vault.recordUsage('free', 1e6).allowed, true)
  assert.equal(vault.checkQuota('free').remainingTokens, undefined)
})

test('add() of an existing id replaces its provider, key and quota but keeps the usage of the day', () => {
  const now = Date.UTC(2026, 0, 10, 12, 0, 0)
  const vault = new KeyVault({ secret: SECRET, now: () => now })
  vault.add('t', { provider: 'openai', key: PROVIDER_KEY, dailyTokenQuota: 100 })
  vault.recordUsage('t', 90)
  // Re-adding the id (a rotated key, a raised quota) must not hand out a fresh quota.
  vault.add('t', { provider: 'anthropic', key: 'sk-ant-rotated-0000', dailyTokenQuota: 100 })
  const after = vault.checkQuota('t')
  assert.equal(after.usedTokens, 90)
  assert.equal(after.remainingTokens, 10)
  assert.equal(vault.provider('t'), 'anthropic')
  assert.equal(vault.getKey('t'), 'sk-ant-rotated-0000')
  vault.add('t', { provider: 'anthropic', dailyTokenQuota: 200 })
  assert.equal(vault.checkQuota('t').remainingTokens, 110)
  assert.equal(vault.recordUsage('t', 120).allowed, false)
})

let mock
let server
let gateway
before(async () => {
  mock = await startMockVendors()
})
after(async () => {
  server?.closeAllConnections()
  server?.close()
  await gateway?.close()
  await mock.close()
})

test('openaiRouter with a KeyVault: virtual keys authenticate, usage counts, the quota answers 429', async () => {
  gateway = new Gateway({ providers: { openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: PROVIDER_KEY } }, defaultProvider: 'openai', maxRetries: 0 })
  const vault = new KeyVault({ secret: SECRET })
  vault.add('team-a', { provider: 'openai', dailyTokenQuota: 20 }).addVirtualKey('vk-team-a-0001', 'team-a')
  const app = express()
  app.use('/v1', openaiRouter(gateway, { keys: vault, log: false }))
  server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const baseURL = `http://127.0.0.1:${server.address().port}/v1`
  const client = new OpenAI({ apiKey: 'vk-team-a-0001', baseURL, maxRetries: 0 })
  const hello = [{ role: 'user', content: 'hi' }]

  const first = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, user: 'spoofed' })
  assert.equal(first.choices[0].message.content, 'echo: hi')
  assert.equal(mock.requests.at(-1).body.user, 'team-a', 'the key id is the user')
  assert.equal(vault.checkQuota('team-a').usedTokens, 15)

  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello, stream: true })
  for await (const chunk of stream) void chunk
  assert.equal(vault.checkQuota('team-a').allowed, false)

  const limited = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hello }).catch((e) => e)
  assert.ok(limited instanceof OpenAI.RateLimitError)
  assert.ok(Number(limited.headers.get('retry-after')) > 0)

  const stranger = new OpenAI({ apiKey: 'vk-nope', baseURL, maxRetries: 0 })
  const refused = await stranger.chat.completions.create({ model: 'gpt-4o-mini', messages: hello }).catch((e) => e)
  assert.ok(refused instanceof OpenAI.AuthenticationError)
})
