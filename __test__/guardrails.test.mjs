// Guardrails (GatewayOptions.guardrails) against loopback vendor fakes: input redaction reaches
// the body every vendor receives on every ingress (gateway.chat, and gatewayRouter's Chat
// Completions, Responses and Messages, same-protocol passthrough included); `block` makes no
// upstream request; output redaction holds across every 3-way split of a streamed card number,
// in the streamed text and the final content, also on a relayed same-protocol stream; a
// `custom` hook that hangs or throws follows onError and never crashes; a bad regex is CONFIG.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import { startMockVendors } from './helpers/mock-vendors.mjs'

const require = createRequire(import.meta.url)
const express = require('express')
const { Gateway } = require('../index.js')
const { gatewayRouter } = require('../lib/express.js')

const CARD = '4111 1111 1111 1111'
const CARD_DIGITS = /4111[ -]?1111[ -]?1111[ -]?1111/
const PROMPT = `Charge my card ${CARD} for the order.`

let mock

before(async () => {
  mock = await startMockVendors()
})

after(async () => {
  await mock?.close()
})

const providers = () => ({
  openai: { kind: 'openai', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-guard-openai', models: ['gpt-4o-mini'] },
  resp: { kind: 'openai', api: 'responses', baseUrl: mock.openaiBaseUrl, apiKey: 'sk-guard-resp', models: ['gpt-5'] },
  anthropic: { kind: 'anthropic', baseUrl: mock.anthropicBaseUrl, apiKey: 'sk-ant-guard', models: ['claude-sonnet-4-5'] },
})

function gateway(guardrails, extra = {}) {
  return new Gateway({ providers: providers(), maxRetries: 0, guardrails, ...extra })
}

async function withRouter(gw, run) {
  const app = express()
  app.use(gatewayRouter(gw, { log: false }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    return await run(`http://127.0.0.1:${server.address().port}`)
  } finally {
    server.closeAllConnections?.()
    await new Promise((resolve) => server.close(resolve))
  }
}

const post = (url, path, body) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

// One OpenAI Chat Completions SSE event per text piece.
const openaiChunks = (pieces) => [
  ...pieces.map(
    (piece) =>
      `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] })}\n\n`,
  ),
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 } })}\n\n`,
]

// A whole Chat Completions answer.
const openaiWhole = (text) => ({
  status: 200,
  body: { id: 'c2', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } },
})

const sentSince = (mark) => mock.requests.slice(mark)

describe('input guardrails', () => {
  const REDACT = { input: [{ type: 'pii', entities: ['credit_card', 'email'], action: 'redact' }] }

  test('every ingress sends the vendor [CREDIT_CARD], never the number', async () => {
    const gw = gateway(REDACT)
    const seen = []
    const expectRedacted = (label, since, vendor) => {
      const sent = sentSince(since).filter((r) => r.vendor === vendor)
      assert.equal(sent.length, 1, `${label}: one upstream request`)
      const body = JSON.stringify(sent[0].body)
      assert.match(body, /\[CREDIT_CARD\]/, `${label}: redacted`)
      assert.doesNotMatch(body, CARD_DIGITS, `${label}: no card number`)
      seen.push(label)
    }
    try {
      let since = mock.mark()
      const chat = await gw.chat({ model: 'anthropic/claude-sonnet-4-5', messages: [{ role: 'user', content: PROMPT }] })
      assert.equal(typeof chat.content, 'string')
      expectRedacted('gateway.chat (translated to Messages)', since, 'anthropic')

      await withRouter(gw, async (url) => {
        // Chat Completions to an OpenAI provider: the client's own body is relayed (passthrough).
        since = mock.mark()
        let res = await post(url, '/v1/chat/completions', { model: 'openai/gpt-4o-mini', messages: [{ role: 'system', content: 'mail ops@example.com' }, { role: 'user', content: [{ type: 'text', text: PROMPT }] }] })
        assert.equal(res.status, 200, await res.clone().text())
        expectRedacted('Chat Completions passthrough', since, 'openai')
        assert.match(JSON.stringify(sentSince(since)[0].body), /\[EMAIL\]/)

        // Responses to a Responses provider (passthrough), with instructions and input items.
        since = mock.mark()
        res = await post(url, '/v1/responses', { model: 'resp/gpt-5', instructions: `card on file ${CARD}`, input: [{ role: 'user', content: [{ type: 'input_text', text: PROMPT }] }] })
        assert.equal(res.status, 200, await res.clone().text())
        expectRedacted('Responses passthrough', since, 'responses')

        // Messages to an Anthropic provider (passthrough), system and a tool result included.
        since = mock.mark()
        res = await post(url, '/v1/messages', {
          model: 'anthropic/claude-sonnet-4-5',
          max_tokens: 64,
          system: `card ${CARD}`,
          messages: [{ role: 'user', content: [{ type: 'text', text: PROMPT }] }],
        })
        assert.equal(res.status, 200, await res.clone().text())
        expectRedacted('Messages passthrough', since, 'anthropic')

        // Translated: Messages in, an OpenAI provider out; and a streamed Chat Completions call.
        since = mock.mark()
        res = await post(url, '/v1/messages', { model: 'openai/gpt-4o-mini', max_tokens: 64, messages: [{ role: 'user', content: PROMPT }] })
        assert.equal(res.status, 200, await res.clone().text())
        expectRedacted('Messages translated to Chat Completions', since, 'openai')

        since = mock.mark()
        res = await post(url, '/v1/chat/completions', { model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: PROMPT }] })
        assert.equal(res.status, 200)
        await res.text()
        expectRedacted('Chat Completions passthrough, streamed', since, 'openai')
      })
      assert.equal(seen.length, 6)
    } finally {
      await gw.close()
    }
  })

  test("Messages count_tokens, which asks the vendor, sends it the redacted prompt too", async () => {
    const gw = gateway(REDACT)
    try {
      await withRouter(gw, async (url) => {
        const since = mock.mark()
        const res = await post(url, '/v1/messages/count_tokens', { model: 'anthropic/claude-sonnet-4-5', messages: [{ role: 'user', content: PROMPT }] })
        assert.equal(res.status, 200, await res.clone().text())
        const sent = sentSince(since)
        assert.equal(sent.length, 1)
        assert.match(sent[0].path, /count_tokens/)
        assert.match(JSON.stringify(sent[0].body), /\[CREDIT_CARD\]/)
        assert.doesNotMatch(JSON.stringify(sent[0].body), CARD_DIGITS)
      })
    } finally {
      await gw.close()
    }
  })

  test('findings are on the call record and in the metrics, never the text', async () => {
    const records = []
    const gw = gateway(REDACT, { onCall: (record) => records.push(record) })
    try {
      await gw.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: `${PROMPT} Or ${CARD}. Mail a@example.com` }] })
      await new Promise((resolve) => setImmediate(resolve))
      assert.deepEqual(records.at(-1).guardrails, [
        { guardrail: 'pii', entity: 'credit_card', action: 'redact', count: 2 },
        { guardrail: 'pii', entity: 'email', action: 'redact', count: 1 },
      ])
      assert.doesNotMatch(JSON.stringify(records), CARD_DIGITS)
      const metrics = gw.metrics()
      assert.match(metrics, /ferrogate_guardrail_findings_total\{guardrail="pii",entity="credit_card",action="redact"\} 2/)
    } finally {
      await gw.close()
    }
  })

  test('block fails with GUARDRAIL_BLOCKED (400) and makes no upstream request, on every ingress', async () => {
    const gw = gateway({ input: [{ type: 'pii', name: 'no-cards', entities: ['credit_card'], action: 'block' }] })
    try {
      const since = mock.mark()
      const error = await gw.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }).then(
        () => assert.fail('blocked'),
        (e) => e,
      )
      assert.equal(error.code, 'GUARDRAIL_BLOCKED')
      assert.equal(error.status, 400)
      assert.equal(error.guardrail, 'no-cards')
      assert.equal(error.entity, 'credit_card')
      assert.doesNotMatch(error.message, CARD_DIGITS)
      const streamed = await gw.stream({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, () => {}).then(
        () => assert.fail('blocked'),
        (e) => e,
      )
      assert.equal(streamed.code, 'GUARDRAIL_BLOCKED')
      await withRouter(gw, async (url) => {
        for (const [path, body, type] of [
          ['/v1/chat/completions', { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, 'invalid_request_error'],
          ['/v1/chat/completions', { model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: PROMPT }] }, 'invalid_request_error'],
          ['/v1/responses', { model: 'resp/gpt-5', input: PROMPT }, 'invalid_request_error'],
          ['/v1/messages', { model: 'anthropic/claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: PROMPT }] }, 'invalid_request_error'],
        ]) {
          const res = await post(url, path, body)
          assert.equal(res.status, 400, path)
          const reply = await res.json()
          assert.equal(reply.error.type, type, path)
          assert.match(reply.error.message, /no-cards/)
        }
      })
      assert.equal(sentSince(since).length, 0, 'nothing reached a vendor')
    } finally {
      await gw.close()
    }
  })

  test('an invalid regex is CONFIG at construction, naming the guardrail', () => {
    assert.throws(
      () => gateway({ input: [{ type: 'pii', action: 'flag' }, { type: 'regex', name: 'order-ids', pattern: 'ORD-(\\d+', action: 'block' }] }),
      (error) => error.code === 'CONFIG' && /guardrails\.input\[1\] \('order-ids'\): invalid pattern/.test(error.message),
    )
    assert.throws(() => gateway({ output: [{ type: 'custom', check: 'not a function' }] }), (error) => error.code === 'CONFIG' && /check/.test(error.message))
    // The regex crate cannot backtrack: a pattern that is catastrophic elsewhere runs in linear time.
    const gw = gateway({ input: [{ type: 'regex', pattern: '(a+)+$', action: 'flag' }] })
    return gw.close()
  })
})

describe('custom hooks', () => {
  const ask = (gw) => gw.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })

  test('a hook that hangs past timeoutMs follows onError: allow lets the call through, block refuses it', async () => {
    const hang = () => new Promise(() => {})
    const allow = gateway({ input: [{ type: 'custom', name: 'slow', check: hang, timeoutMs: 50, onError: 'allow' }] })
    const block = gateway({ input: [{ type: 'custom', name: 'slow', check: hang, timeoutMs: 50, onError: 'block' }] })
    try {
      const since = mock.mark()
      const response = await ask(allow)
      assert.equal(typeof response.content, 'string')
      assert.equal(sentSince(since).length, 1)
      const error = await ask(block).then(() => assert.fail('blocked'), (e) => e)
      assert.equal(error.code, 'GUARDRAIL_BLOCKED')
      assert.equal(error.guardrail, 'slow')
      assert.equal(error.entity, 'timeout')
      assert.equal(sentSince(since).length, 1, 'the blocked call sent nothing')
    } finally {
      await allow.close()
      await block.close()
    }
  })

  test('a hook that throws (or rejects) never crashes the process and follows onError', async () => {
    const crashes = []
    const onCrash = (error) => crashes.push(error)
    process.on('uncaughtException', onCrash)
    process.on('unhandledRejection', onCrash)
    const throwing = () => {
      throw new Error('hook bug')
    }
    const rejecting = async () => {
      throw new Error('hook bug')
    }
    const gws = [
      gateway({ input: [{ type: 'custom', check: throwing, onError: 'allow' }] }),
      gateway({ input: [{ type: 'custom', check: rejecting, onError: 'block' }] }),
      gateway({ output: [{ type: 'custom', check: throwing, onError: 'block' }] }),
    ]
    try {
      assert.equal(typeof (await ask(gws[0])).content, 'string')
      const blocked = await ask(gws[1]).then(() => assert.fail('blocked'), (e) => e)
      assert.equal(blocked.code, 'GUARDRAIL_BLOCKED')
      assert.equal(blocked.entity, 'error')
      const output = await ask(gws[2]).then(() => assert.fail('blocked'), (e) => e)
      assert.equal(output.code, 'GUARDRAIL_BLOCKED')
      await new Promise((resolve) => setTimeout(resolve, 20))
      assert.deepEqual(crashes, [])
    } finally {
      process.off('uncaughtException', onCrash)
      process.off('unhandledRejection', onCrash)
      await Promise.all(gws.map((gw) => gw.close()))
    }
  })

  test('a hook sees the messages (input) and the text (output), and may replace them or refuse', async () => {
    const seen = []
    const gw = gateway({
      input: [
        { type: 'pii', action: 'redact' },
        {
          type: 'custom',
          check: ({ messages, phase }) => {
            seen.push({ phase, messages })
            return { allow: true, replace: [{ role: 'user', content: 'rewritten by the hook' }] }
          },
        },
      ],
      output: [{ type: 'custom', check: async ({ text, phase }) => (seen.push({ phase, text }), text.includes('refuse') ? { allow: false, reason: 'no refusals' } : { allow: true, replace: text.toUpperCase() }) }],
    })
    try {
      const since = mock.mark()
      mock.enqueue('openai', { sse: openaiChunks(['all ', 'good']) })
      const response = await gw.stream({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] }, () => {})
      assert.equal(response.content, 'ALL GOOD')
      assert.equal(seen[0].phase, 'input')
      assert.equal(seen[0].messages[0].content, 'Charge my card [CREDIT_CARD] for the order.', 'the hook runs after the redaction')
      assert.deepEqual(seen[1], { phase: 'output', text: 'all good' })
      assert.equal(sentSince(since)[0].body.messages.at(-1).content, 'rewritten by the hook')
      mock.enqueue('openai', openaiWhole('I refuse'))
      const error = await gw.chat({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).then(() => assert.fail('blocked'), (e) => e)
      assert.equal(error.code, 'GUARDRAIL_BLOCKED')
      assert.match(error.message, /no refusals/)
    } finally {
      await gw.close()
    }
  })
})

describe('output guardrails', () => {
  const TEXT = `Your card ${CARD} is on file.`
  const EXPECTED = 'Your card [CREDIT_CARD] is on file.'

  test('a card number split across 3 chunks in every way is redacted in the streamed text and the final content', async () => {
    const gw = gateway({ output: [{ type: 'pii', entities: ['credit_card'], action: 'redact' }] })
    const start = TEXT.indexOf(CARD)
    const end = start + CARD.length
    let splits = 0
    try {
      // Every pair of cut points from one character before the number to one after it: every
      // way the number can fall across three chunks (cuts outside it leave it in one chunk).
      for (let a = start - 1; a <= end + 1; a++) {
        for (let b = a; b <= end + 1; b++) {
          mock.enqueue('openai', { sse: openaiChunks([TEXT.slice(0, a), TEXT.slice(a, b), TEXT.slice(b)]) })
          let streamed = ''
          const response = await gw.stream({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'card?' }] }, (text) => {
            streamed += text
          })
          assert.equal(streamed, EXPECTED, `split at ${a}, ${b}`)
          assert.equal(response.content, EXPECTED, `split at ${a}, ${b}`)
          splits++
        }
      }
      assert.equal(splits, ((CARD.length + 3) * (CARD.length + 4)) / 2)
    } finally {
      await gw.close()
    }
  })

  test('a relayed same-protocol stream (Chat Completions passthrough) is redacted too', async () => {
    const gw = gateway({ output: [{ type: 'pii', entities: ['credit_card'], action: 'redact' }] })
    try {
      await withRouter(gw, async (url) => {
        mock.enqueue('openai', { sse: openaiChunks(['Your card 4111 11', '11 1111 1', '111 is on file.']) })
        const res = await post(url, '/v1/chat/completions', { model: 'openai/gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'card?' }] })
        const body = await res.text()
        assert.doesNotMatch(body, /4111/)
        const text = body
          .split('\n')
          .filter((line) => line.startsWith('data: {'))
          .map((line) => JSON.parse(line.slice(6)).choices?.[0]?.delta?.content ?? '')
          .join('')
        assert.equal(text, EXPECTED)
        mock.enqueue('openai', openaiWhole(TEXT))
        const whole = await post(url, '/v1/chat/completions', { model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'card?' }] })
        assert.equal((await whole.json()).choices[0].message.content, EXPECTED)
        // Messages passthrough, non-streamed: the vendor's body is re-encoded from the redacted answer.
        mock.enqueue('anthropic', {
          status: 200,
          body: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: TEXT }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 5, output_tokens: 9 } },
        })
        const messages = await post(url, '/v1/messages', { model: 'anthropic/claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'card?' }] })
        assert.equal((await messages.json()).content[0].text, EXPECTED)
      })
    } finally {
      await gw.close()
    }
  })

  test('block on output ends the stream with GUARDRAIL_BLOCKED before the number reaches the caller', async () => {
    const gw = gateway({ output: [{ type: 'pii', name: 'no-cards-out', entities: ['credit_card'], action: 'block' }] })
    try {
      mock.enqueue('openai', { sse: openaiChunks(['Your card 4111 11', '11 1111 1', '111 is on file.']) })
      let streamed = ''
      const error = await gw
        .stream({ model: 'openai/gpt-4o-mini', messages: [{ role: 'user', content: 'card?' }] }, (text) => {
          streamed += text
        })
        .then(() => assert.fail('blocked'), (e) => e)
      assert.equal(error.code, 'GUARDRAIL_BLOCKED')
      assert.equal(error.guardrail, 'no-cards-out')
      assert.equal(streamed, 'Your card ')
    } finally {
      await gw.close()
    }
  })
})
