// The onCall hook and gateway.stats(): one record per call whatever its outcome, a
// throwing or rejecting hook counted and never fatal.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { Gateway, ResponseCache } from '../index.js'
import { DEFAULT_USAGE, startMockVendors } from './helpers/mock-vendors.mjs'

let vendors
before(async () => {
  vendors = await startMockVendors()
})
after(() => vendors.close())

const ask = (extra = {}) => ({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], ...extra })
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

function gateway(onCall, overrides = {}) {
  return new Gateway({
    timeoutMs: 5000,
    maxRetries: 0,
    providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl } },
    onCall,
    ...overrides,
  })
}

/** Records arrive on a later turn of the event loop; wait for `count` of them. */
async function until(records, count) {
  for (let i = 0; i < 200 && records.length < count; i++) await sleep(10)
  assert.equal(records.length, count)
}

describe('onCall', () => {
  test('a successful call: one record with the call\'s fields', async () => {
    const records = []
    const gw = gateway((record) => records.push(record))
    const response = await gw.chat(ask({ user: 'alice', metadata: { feature: 'search' } }))
    await until(records, 1)
    const [record] = records
    assert.equal(record.requestId, response.requestId)
    assert.equal(record.model, 'openai/gpt-4o-mini')
    assert.equal(record.provider, 'openai')
    assert.equal(record.vendorModel, 'gpt-4o-mini')
    assert.equal(record.user, 'alice')
    assert.deepEqual(record.metadata, { feature: 'search' })
    assert.equal(record.outcome, 'ok')
    assert.equal(record.errorCode, undefined)
    assert.equal(record.usage.promptTokens, DEFAULT_USAGE.promptTokens)
    assert.equal(record.usage.completionTokens, DEFAULT_USAGE.completionTokens)
    assert.equal(record.cached, false)
    assert.equal(record.attempts, 1)
    assert.equal(record.costUsd, response.costUsd)
    assert.ok(record.latencyMs > 0)
  })

  test('errors and aborts are recorded with their code; cache hits as cached', async () => {
    const records = []
    const gw = gateway((record) => records.push(record), { cache: new ResponseCache() })
    vendors.enqueue('openai', { status: 400, body: { error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } } })
    await rejection(gw.chat(ask()))
    await rejection(gw.chat(ask({ model: 'nowhere/m' })))
    await rejection(gw.chat(ask({ messages: [] }))) // refused before it starts: still recorded
    vendors.enqueue('openai', { hang: true })
    const controller = new AbortController()
    const aborted = rejection(gw.chat(ask({ messages: [{ role: 'user', content: 'slow' }], signal: controller.signal })))
    await sleep(50)
    controller.abort()
    await aborted
    await gw.chat(ask())
    await gw.chat(ask())
    await until(records, 6)
    const byOutcome = records.map((r) => [r.outcome, r.errorCode ?? null, r.cached])
    assert.deepEqual(byOutcome, [
      ['error', 'INVALID_REQUEST', false],
      ['error', 'NOT_FOUND', false],
      ['error', 'INVALID_REQUEST', false],
      ['aborted', 'ABORTED', false],
      ['ok', null, false],
      ['ok', null, true],
    ])
    assert.equal(records[0].attempts, 1)
    assert.equal(records[1].provider, undefined, 'an unresolved model has no provider')
    assert.equal(records[2].model, 'openai/gpt-4o-mini')
    assert.equal(records[5].attempts, 0)
    const stats = gw.stats()
    assert.deepEqual(stats.callsByOutcome, { ok: 2, error: 3, aborted: 1 })
    assert.deepEqual(stats.callsByErrorCode, { INVALID_REQUEST: 2, NOT_FOUND: 1, ABORTED: 1 })
    assert.deepEqual([stats.cacheHits, stats.cacheMisses], [1, 3])
  })

  test('streams are recorded once, with their time to first token', async () => {
    const records = []
    const gw = gateway((record) => records.push(record))
    await gw.stream(ask(), () => {})
    for await (const event of gw.streamEvents(ask())) void event
    await until(records, 2)
    for (const record of records) {
      assert.equal(record.outcome, 'ok')
      assert.equal(typeof record.ttftMs, 'number')
    }
  })

  test('a throwing or rejecting hook is counted and never fails a call', async () => {
    let calls = 0
    const throwing = gateway(() => {
      calls++
      throw new Error('hook broke')
    })
    const rejecting = gateway(async () => {
      calls++
      throw new Error('async hook broke')
    })
    for (const gw of [throwing, rejecting]) {
      const response = await gw.chat(ask())
      assert.equal(response.content.length > 0, true)
    }
    for (let i = 0; i < 200 && throwing.stats().hookErrors + rejecting.stats().hookErrors < 2; i++) await sleep(10)
    assert.equal(calls, 2)
    assert.equal(throwing.stats().hookErrors, 1)
    assert.equal(rejecting.stats().hookErrors, 1)
  })

  test('onCall must be a function', () => {
    assert.throws(() => gateway('not a function'), (e) => e.code === 'CONFIG')
  })
})

describe('stats', () => {
  test('a fresh gateway counts nothing', () => {
    assert.deepEqual(gateway(undefined).stats(), {
      callsByOutcome: { ok: 0, error: 0, aborted: 0 },
      callsByErrorCode: {},
      cacheHits: 0,
      cacheMisses: 0,
      cacheCoalesced: 0,
      limiterRefusals: 0,
      budgetRefusals: 0,
      unpricedCalls: 0,
      hookErrors: 0,
      hookDropped: 0,
      modelLabelOverflow: 0,
    })
  })
})
