// Every recorded vendor response, stream and error from __test__/fixtures/providers,
// replayed by a loopback mock vendor and decoded through the whole addon (HTTP, SSE,
// adapters, JS layer). Streams are replayed whole, one byte per write (every byte
// boundary a split) and split at a few chosen offsets.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Gateway } from '../index.js'
import { loadManifest, readFixture, startMockVendors } from './helpers/mock-vendors.mjs'

const KEY = 'test-key-conformance'
let vendors
let gateway
// Retries on, with a short backoff: for the checks that a failure is NOT retried, which
// could not fail with retries off. A wrong retry would get the mock's default answer.
let retrying

before(async () => {
  vendors = await startMockVendors()
  const providers = {
    openai: { kind: 'openai', apiKey: KEY, baseUrl: vendors.openaiBaseUrl },
    anthropic: { kind: 'anthropic', apiKey: KEY, baseUrl: vendors.anthropicBaseUrl },
    gemini: { kind: 'gemini', apiKey: KEY, baseUrl: vendors.geminiBaseUrl },
  }
  gateway = new Gateway({ maxRetries: 0, providers })
  retrying = new Gateway({ maxRetries: 3, retryBaseDelayMs: 1, providers })
})
after(() => vendors.close())

// Bedrock's recorded streams replay through the Bedrock fake, in bedrock.test.mjs.
const manifest = loadManifest().filter((e) => e.provider !== 'bedrock')
const request = (vendor) => ({ model: `${vendor}/recorded-model`, messages: [{ role: 'user', content: 'replay' }] })

function checkResponse(file, expected, response) {
  assert.equal(response.content, expected.text ?? '', `${file}: text`)
  if (expected.finish_reason) assert.equal(response.finishReason, expected.finish_reason, `${file}: finish reason`)
  if (expected.prompt_tokens == null) {
    assert.equal(response.usage.estimated, true, `${file}: no vendor usage, so estimated`)
    assert.ok(response.usage.promptTokens > 0, `${file}: estimated prompt tokens`)
  } else {
    assert.equal(response.usage.estimated, false, `${file}: vendor usage`)
    assert.equal(response.usage.promptTokens, expected.prompt_tokens, `${file}: prompt tokens`)
    assert.equal(response.usage.completionTokens, expected.completion_tokens, `${file}: completion tokens`)
    assert.equal(response.usage.totalTokens, expected.prompt_tokens + expected.completion_tokens, `${file}: total`)
  }
  if (expected.refusal) assert.equal(response.refusal, expected.refusal, `${file}: refusal`)
  const calls = expected.tool_calls ?? []
  assert.equal(response.toolCalls.length, calls.length, `${file}: tool calls`)
  calls.forEach((want, i) => {
    const got = response.toolCalls[i]
    assert.equal(got.name, want.name, `${file}: tool name`)
    if (want.id) assert.equal(got.id, want.id, `${file}: tool id`)
    else assert.ok(got.id.length > 0, `${file}: generated tool id`)
    assert.deepEqual(JSON.parse(got.arguments), want.arguments, `${file}: tool arguments`)
  })
}

/** Collects a streamEvents() run: text pieces, tool-call argument text per index, the response. */
async function collect(vendor) {
  const text = []
  const args = []
  let response
  for await (const event of gateway.streamEvents(request(vendor))) {
    if (event.type === 'text') text.push(event.text)
    else if (event.type === 'tool_call') args[event.index] = (args[event.index] ?? '') + event.argumentsDelta
    else if (event.type === 'done') response = event.response
  }
  return { text: text.join(''), pieces: text.length, args, response }
}

describe('recorded responses', () => {
  for (const entry of manifest.filter((e) => e.kind === 'response')) {
    test(entry.file, async () => {
      vendors.enqueue(entry.provider, { fixture: entry.file })
      const response = await gateway.chat(request(entry.provider))
      checkResponse(entry.file, entry.expected, response)
      assert.equal(response.provider, entry.provider)
      assert.equal(response.attempts, 1)
    })
  }
})

describe('recorded streams', () => {
  const streams = manifest.filter((e) => e.kind === 'stream')
  for (const entry of streams.filter((e) => !e.expected.expect_error)) {
    test(`${entry.file}: whole, byte by byte, and split`, async () => {
      const size = readFixture(entry.file).length
      const splits = ['whole', 'bytes', { at: [1, Math.floor(size / 3), Math.floor(size / 2) + 1, size - 2] }]
      let first
      for (const split of splits) {
        vendors.enqueue(entry.provider, { fixture: entry.file, split })
        const run = await collect(entry.provider)
        checkResponse(`${entry.file} (${JSON.stringify(split)})`, entry.expected, run.response)
        assert.equal(run.text, run.response.content, 'streamed text adds up to the response')
        assert.deepEqual(run.args, run.response.toolCalls.map((c) => c.arguments), 'streamed tool arguments add up')
        first ??= run
        assert.equal(run.text, first.text, 'every split yields the same text')
      }
      // Text reaches JS as it arrives: a multi-delta answer comes in more than one piece.
      if ((entry.expected.text ?? '').length > 40) assert.ok(first.pieces > 1, 'streamed in pieces')
    })
  }

  for (const entry of streams.filter((e) => e.expected.expect_error)) {
    test(`${entry.file}: fails after delivering the partial text`, async () => {
      vendors.enqueue(entry.provider, { fixture: entry.file, split: 'bytes' })
      const pieces = []
      const before = vendors.requests.length
      const error = await retrying.stream(request(entry.provider), (t) => pieces.push(t)).then(
        () => assert.fail('the stream must fail'),
        (e) => e,
      )
      assert.equal(pieces.join(''), entry.expected.partial_text_before_error ?? entry.expected.text)
      assert.equal(error.name, 'FerrogateError')
      assert.equal(error.code, entry.provider === 'anthropic' ? 'UPSTREAM_UNAVAILABLE' : 'PROVIDER_ERROR')
      assert.equal(typeof error.requestId, 'string')
      assert.equal(error.provider, entry.provider)
      assert.equal(vendors.requests.length - before, 1, 'no retry once text reached the caller')
    })
  }
})

describe('recorded errors', () => {
  const codes = {
    400: 'INVALID_REQUEST', 401: 'AUTHENTICATION', 404: 'NOT_FOUND', 429: 'RATE_LIMITED', 500: 'PROVIDER_ERROR',
    503: 'UPSTREAM_UNAVAILABLE', 529: 'UPSTREAM_UNAVAILABLE',
  }
  for (const entry of manifest.filter((e) => e.kind === 'error')) {
    test(entry.file, async () => {
      vendors.enqueue(entry.provider, { fixture: entry.file })
      const error = await gateway.chat(request(entry.provider)).then(
        () => assert.fail('must reject'),
        (e) => e,
      )
      const apiKeyInvalid = entry.expected.error_reason === 'API_KEY_INVALID'
      assert.equal(error.code, apiKeyInvalid ? 'AUTHENTICATION' : codes[entry.http_status])
      assert.equal(error.message, entry.expected.error_message, 'the vendor message is the message')
      assert.equal(error.provider, entry.provider)
      assert.match(error.requestId, /^fg_/)
      assert.ok(error.status >= 400 && error.status < 600)
      const hint = entry.expected.retry_delay_seconds ?? entry.expected.retry_after_seconds_from_message
      if (hint != null) assert.equal(error.retryAfterMs, Math.ceil(hint * 1000))
    })
  }
})
