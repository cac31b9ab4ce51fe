// kind 'bedrock' (AWS Bedrock Runtime Converse / ConverseStream). The fake (helpers/bedrock-fake.mjs) is checked
// first with the official `@aws-sdk/client-bedrock-runtime`; then ferrogate runs against it.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand } from '@aws-sdk/client-bedrock-runtime'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { Gateway } from '../index.js'
import { startBedrockFake } from './helpers/bedrock-fake.mjs'
import { loadManifest, readFixture } from './helpers/mock-vendors.mjs'

const REGION = 'us-east-1'
const CREDENTIALS = Object.freeze({
  accessKeyId: 'AKIAFERROGATETEST01',
  secretAccessKey: 'fErRoGaTe/SeCrEt+AcCeSs0KeY0ForTheBedrockFake',
  sessionToken: 'FwoGZXIvYXdzEFERROGATE//SESSION/TOKEN+0123456789abcdef',
})
const API_KEY = 'ABSKQmVkcm9ja0FQSUtleS1mZXJyb2dhdGUtdGVzdA=='
const ARN = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0'
const MODEL = 'anthropic.claude-3-haiku-20240307-v1:0'

// The machine's own AWS settings must not leak into these cases.
for (const name of ['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_BEARER_TOKEN_BEDROCK', 'AWS_PROFILE']) {
  delete process.env[name]
}

let fake
before(async () => {
  fake = await startBedrockFake({ credentials: CREDENTIALS, apiKey: API_KEY, region: REGION })
})
after(async () => {
  await fake?.close()
})

const toolConverse = {
  output: {
    message: {
      role: 'assistant',
      content: [
        { text: 'Let me look.' },
        { toolUse: { toolUseId: 'tooluse_abc123', name: 'get_weather', input: { city: 'Paris', unit: 'celsius' } } },
      ],
    },
  },
  stopReason: 'tool_use',
  usage: { inputTokens: 40, outputTokens: 12, totalTokens: 52 },
}

describe('the Bedrock fake, checked with @aws-sdk/client-bedrock-runtime', () => {
  // The client's default handler speaks HTTP/2 (event streams ride it on AWS); the fake is HTTP/1.1, which
  // the SDK streams over just as well. The SDK marks the credentials object it is given, hence the copy.
  const client = (credentials = CREDENTIALS) =>
    new BedrockRuntimeClient({ region: REGION, endpoint: fake.url, credentials: { ...credentials }, maxAttempts: 1, requestHandler: new NodeHttpHandler() })

  test('Converse: the SDK signature verifies and the answer parses', async () => {
    const before = fake.requests.length
    const out = await client().send(
      new ConverseCommand({
        modelId: ARN,
        messages: [{ role: 'user', content: [{ text: 'hello' }] }],
        system: [{ text: 'be brief' }, { cachePoint: { type: 'default' } }],
        inferenceConfig: { maxTokens: 50, stopSequences: ['END'] },
      }),
    )
    assert.equal(out.output.message.content[0].text, 'echo: hello')
    assert.equal(out.usage.inputTokens, 10)
    const seen = fake.requests[before]
    assert.equal(seen.modelId, ARN, 'the ARN arrives as one path segment')
    assert.equal(seen.auth, 'sigv4')
    assert.equal(seen.headers['x-amz-security-token'], CREDENTIALS.sessionToken)
  })

  test('ConverseStream: the SDK decodes the fake’s event stream, tool input split over frames', async () => {
    fake.enqueue({ converse: toolConverse })
    const out = await client().send(
      new ConverseStreamCommand({
        modelId: MODEL,
        messages: [{ role: 'user', content: [{ text: 'weather?' }] }],
        toolConfig: { tools: [{ toolSpec: { name: 'get_weather', inputSchema: { json: { type: 'object' } } } }] },
      }),
    )
    let text = ''
    let input = ''
    let toolName
    let stopReason
    let usage
    for await (const event of out.stream) {
      if (event.contentBlockDelta?.delta?.text) text += event.contentBlockDelta.delta.text
      if (event.contentBlockDelta?.delta?.toolUse) input += event.contentBlockDelta.delta.toolUse.input
      if (event.contentBlockStart?.start?.toolUse) toolName = event.contentBlockStart.start.toolUse.name
      if (event.messageStop) stopReason = event.messageStop.stopReason
      if (event.metadata) usage = event.metadata.usage
    }
    assert.equal(text, 'Let me look.')
    assert.equal(toolName, 'get_weather')
    assert.deepEqual(JSON.parse(input), { city: 'Paris', unit: 'celsius' })
    assert.equal(stopReason, 'tool_use')
    assert.equal(usage.outputTokens, 12)
  })

  test('ConverseStream: an exception message reaches the SDK as that exception', async () => {
    fake.enqueue({ events: [['messageStart', { role: 'assistant' }], { exception: 'throttlingException', message: 'Too many requests' }] })
    const out = await client().send(new ConverseStreamCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'x' }] }] }))
    await assert.rejects(async () => {
      for await (const _ of out.stream) {
        // drain
      }
    }, { name: 'ThrottlingException' })
  })

  test('a wrong secret, a wrong session token or an invalid body is refused as Bedrock refuses it', async () => {
    await assert.rejects(
      client({ ...CREDENTIALS, secretAccessKey: 'not-the-secret' }).send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'x' }] }] })),
      (error) => error.$metadata?.httpStatusCode === 403 && error.name === 'InvalidSignatureException',
    )
    await assert.rejects(
      client({ ...CREDENTIALS, sessionToken: 'another-token' }).send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'user', content: [{ text: 'x' }] }] })),
      (error) => error.$metadata?.httpStatusCode === 403,
    )
    await assert.rejects(
      client().send(new ConverseCommand({ modelId: MODEL, messages: [{ role: 'assistant', content: [{ text: 'x' }] }] })),
      (error) => error.name === 'ValidationException' && error.$metadata?.httpStatusCode === 400,
    )
  })
})

function gateway(provider = {}, options = {}) {
  return new Gateway({
    providers: { aws: { kind: 'bedrock', baseUrl: fake.url, region: REGION, credentials: CREDENTIALS, ...provider } },
    maxRetries: 2,
    ...options,
  })
}

const secrets = [CREDENTIALS.secretAccessKey, CREDENTIALS.sessionToken, API_KEY]
function assertNoSecret(error) {
  const text = `${error.message} ${error.cause ?? ''} ${JSON.stringify(error)}`
  for (const secret of secrets) assert.ok(!text.includes(secret), `a secret leaked: ${text}`)
  assert.ok(!/Signature=[0-9a-f]{64}/.test(text), `a signature leaked: ${text}`)
}

describe('ferrogate against the Bedrock fake', () => {
  test('chat: a signed Converse call with session-token credentials, system, sampling, stop sequences and images', async () => {
    const gw = gateway()
    const before = fake.requests.length
    const image = Buffer.from('89504e470d0a1a0a', 'hex').toString('base64')
    const res = await gw.chat({
      model: `aws/${MODEL}`,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'hi there' }, { type: 'image', data: image, mimeType: 'image/png' }] },
      ],
      temperature: 0.2,
      topP: 0.9,
      maxTokens: 64,
      stop: ['END'],
    })
    assert.equal(res.content, 'echo: hi there')
    assert.equal(res.provider, 'aws')
    assert.deepEqual([res.usage.promptTokens, res.usage.completionTokens, res.usage.totalTokens], [10, 5, 15])
    const seen = fake.requests[before]
    assert.equal(seen.auth, 'sigv4')
    assert.equal(seen.stream, false)
    assert.equal(seen.headers['x-amz-security-token'], CREDENTIALS.sessionToken)
    assert.deepEqual(seen.body.system, [{ text: 'Be brief.' }])
    assert.deepEqual(seen.body.inferenceConfig, { maxTokens: 64, temperature: 0.2, topP: 0.9, stopSequences: ['END'] })
    assert.deepEqual(seen.body.messages[0].content[1], { image: { format: 'png', source: { bytes: image } } })
    await gw.close()
  })

  test('an inference-profile ARN is one escaped path segment, signed as sent', async () => {
    const gw = gateway()
    const before = fake.requests.length
    const res = await gw.chat({ model: `aws/${ARN}`, messages: [{ role: 'user', content: 'arn' }] })
    assert.equal(res.content, 'echo: arn')
    const seen = fake.requests[before]
    assert.equal(seen.modelId, ARN)
    assert.match(seen.headers.host, /^127\.0\.0\.1:\d+$/)
    await gw.close()
  })

  test('credentials without a session token, and a Bedrock API key as Bearer', async () => {
    const plain = await startBedrockFake({ credentials: { accessKeyId: 'AKIAPLAIN', secretAccessKey: 'plain-secret-key-0123456789' }, region: 'eu-west-3' })
    try {
      const gw = new Gateway({ providers: { aws: { kind: 'bedrock', baseUrl: plain.url, region: 'eu-west-3', credentials: { accessKeyId: 'AKIAPLAIN', secretAccessKey: 'plain-secret-key-0123456789' } } } })
      assert.equal((await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'plain' }] })).content, 'echo: plain')
      assert.equal(plain.requests[0].headers['x-amz-security-token'], undefined)
      await gw.close()
    } finally {
      await plain.close()
    }
    const gw = gateway({ credentials: undefined, apiKey: API_KEY })
    const before = fake.requests.length
    assert.equal((await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'key' }] })).content, 'echo: key')
    assert.equal(fake.requests[before].auth, 'bearer')
    assert.equal(fake.requests[before].headers.authorization, `Bearer ${API_KEY}`)
    await gw.close()
  })

  test('the standard AWS environment variables sign when no credentials are given', async () => {
    process.env.AWS_REGION = REGION
    process.env.AWS_ACCESS_KEY_ID = CREDENTIALS.accessKeyId
    process.env.AWS_SECRET_ACCESS_KEY = CREDENTIALS.secretAccessKey
    process.env.AWS_SESSION_TOKEN = CREDENTIALS.sessionToken
    try {
      const gw = new Gateway({ providers: { aws: { kind: 'bedrock', baseUrl: fake.url } } })
      assert.equal((await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'env' }] })).content, 'echo: env')
      await gw.close()
    } finally {
      for (const name of ['AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) delete process.env[name]
    }
  })

  test('a wrong secret is AUTHENTICATION, with neither the secret nor the signature in the error', async () => {
    const gw = gateway({ credentials: { ...CREDENTIALS, secretAccessKey: `${CREDENTIALS.secretAccessKey}-wrong` } })
    secrets.push(`${CREDENTIALS.secretAccessKey}-wrong`)
    const error = await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
    assert.equal(error.code, 'AUTHENTICATION')
    assert.equal(error.status, 403)
    assertNoSecret(error)
    await gw.close()
  })

  test('stream: text deltas, and a tool call whose arguments arrive over two frames', async () => {
    const gw = gateway()
    fake.enqueue({ converse: toolConverse })
    const events = []
    for await (const event of gw.streamEvents({
      model: `aws/${MODEL}`,
      messages: [{ role: 'user', content: 'weather in Paris?' }],
      tools: [{ name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }],
      toolChoice: 'auto',
    })) {
      events.push(event)
    }
    const text = events.filter((e) => e.type === 'text').map((e) => e.text).join('')
    assert.equal(text, 'Let me look.')
    const deltas = events.filter((e) => e.type === 'tool_call')
    assert.ok(deltas.filter((e) => e.argumentsDelta).length >= 2, 'arguments streamed in pieces')
    const done = events.at(-1)
    assert.equal(done.type, 'done')
    assert.equal(done.response.finishReason, 'tool_calls')
    assert.deepEqual(done.response.toolCalls.map((c) => [c.id, c.name, JSON.parse(c.arguments)]), [['tooluse_abc123', 'get_weather', { city: 'Paris', unit: 'celsius' }]])
    assert.deepEqual([done.response.usage.promptTokens, done.response.usage.completionTokens], [40, 12])
    const seen = fake.requests.at(-1)
    assert.equal(seen.stream, true)
    assert.deepEqual(seen.body.toolConfig, {
      tools: [{ toolSpec: { name: 'get_weather', description: 'Weather', inputSchema: { json: { type: 'object', properties: { city: { type: 'string' } } } } } }],
      toolChoice: { auto: {} },
    })
    await gw.close()
  })

  test('a tool round trip: toolUse and toolResult blocks go back in alternating turns', async () => {
    const gw = gateway()
    const res = await gw.chat({
      model: `aws/${MODEL}`,
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: '', toolCalls: [{ id: 'tooluse_1', name: 'get_weather', arguments: '{"city":"Paris"}' }] },
        { role: 'tool', toolCallId: 'tooluse_1', content: '21C' },
        { role: 'user', content: 'thanks' },
      ],
      tools: [{ name: 'get_weather', parameters: { type: 'object' } }],
    })
    assert.equal(res.content, 'echo: thanks')
    const seen = fake.requests.at(-1).body
    assert.deepEqual(seen.messages[1], { role: 'assistant', content: [{ toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Paris' } } }] })
    assert.deepEqual(seen.messages[2].content, [{ toolResult: { toolUseId: 'tooluse_1', content: [{ text: '21C' }] } }, { text: 'thanks' }])
    await gw.close()
  })

  test('a stream read one byte at a time gives the same answer', async () => {
    const gw = gateway()
    fake.enqueue({ converse: toolConverse, split: 'bytes' })
    const chunks = []
    const res = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }], tools: [{ name: 'get_weather', parameters: { type: 'object' } }] }, (t) => chunks.push(t))
    assert.equal(chunks.join(''), 'Let me look.')
    assert.equal(res.toolCalls[0].arguments, JSON.stringify({ city: 'Paris', unit: 'celsius' }))
    await gw.close()
  })

  test('a frame with a corrupted CRC is PROVIDER_ERROR', async () => {
    const gw = gateway({ maxRetries: 0 })
    fake.enqueue({ converse: toolConverse, corrupt: 1 })
    const error = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }, () => {}).catch((e) => e)
    assert.equal(error.code, 'PROVIDER_ERROR')
    assert.match(error.message, /CRC/)
    await gw.close()
  })

  test('throttlingException mid-stream before any text is retried', async () => {
    const gw = gateway()
    fake.enqueue({ events: [['messageStart', { role: 'assistant' }], { exception: 'throttlingException', message: 'Too many requests, please wait before trying again.' }] })
    const chunks = []
    const res = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'again' }] }, (t) => chunks.push(t))
    assert.equal(chunks.join(''), 'echo: again')
    assert.equal(res.attempts, 2)
    await gw.close()
  })

  test('stream exceptions map to our codes: serviceUnavailable, validation, others', async () => {
    const gw = gateway({ maxRetries: 0 })
    const cases = [
      ['throttlingException', 'RATE_LIMITED'],
      ['serviceUnavailableException', 'UPSTREAM_UNAVAILABLE'],
      ['validationException', 'INVALID_REQUEST'],
      ['modelStreamErrorException', 'PROVIDER_ERROR'],
    ]
    for (const [exception, code] of cases) {
      fake.enqueue({ events: [['messageStart', { role: 'assistant' }], { exception, message: `${exception} happened` }] })
      const error = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }, () => {}).catch((e) => e)
      assert.equal(error.code, code, exception)
      assert.match(error.message, new RegExp(`${exception} happened`))
    }
    await gw.close()
  })

  test('HTTP errors map the same way, by x-amzn-ErrorType', async () => {
    const gw = gateway({ maxRetries: 0 })
    const cases = [
      [429, 'ThrottlingException', 'RATE_LIMITED'],
      [503, 'ServiceUnavailableException', 'UPSTREAM_UNAVAILABLE'],
      [400, 'ValidationException', 'INVALID_REQUEST'],
      [403, 'AccessDeniedException', 'AUTHENTICATION'],
      [500, 'InternalServerException', 'PROVIDER_ERROR'],
    ]
    for (const [status, errorType, code] of cases) {
      fake.enqueue({ status, errorType, message: `${errorType} said no` })
      const error = await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }).catch((e) => e)
      assert.equal(error.code, code, errorType)
      assert.match(error.message, /said no/)
      assertNoSecret(error)
    }
    // A throttled call is retried, and succeeds.
    const retrying = gateway()
    fake.enqueue({ status: 429, errorType: 'ThrottlingException', message: 'slow down' })
    const res = await retrying.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'retry' }] })
    assert.equal(res.attempts, 2)
    await gw.close()
    await retrying.close()
  })

  test('a stream that ends before messageStop is PROVIDER_ERROR', async () => {
    const gw = gateway({ maxRetries: 0 })
    fake.enqueue({ events: [['messageStart', { role: 'assistant' }], ['contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'half' } }]] })
    const error = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }, () => {}).catch((e) => e)
    assert.equal(error.code, 'PROVIDER_ERROR')
    await gw.close()
  })

  test('prompt caching: cache on a message, a part and a tool becomes a cachePoint after it', async () => {
    const gw = gateway()
    await gw.chat({
      model: `aws/${MODEL}`,
      messages: [
        { role: 'system', content: 'Long, stable instructions.', cache: true },
        { role: 'user', content: [{ type: 'text', text: 'a long document', cache: { ttl: '1h' } }, { type: 'text', text: 'the question' }] },
      ],
      tools: [{ name: 'lookup', parameters: { type: 'object' }, cache: true }],
    })
    const { body } = fake.requests.at(-1)
    const point = { cachePoint: { type: 'default' } }
    assert.deepEqual(body.system, [{ text: 'Long, stable instructions.' }, point])
    assert.deepEqual(body.messages[0].content, [{ text: 'a long document' }, point, { text: 'the question' }])
    assert.deepEqual(body.toolConfig.tools[1], point)
    await gw.close()
  })

  test('usage with cache read and write tokens', async () => {
    const gw = gateway()
    const converse = {
      output: { message: { role: 'assistant', content: [{ text: 'cached' }] } },
      stopReason: 'end_turn',
      usage: { inputTokens: 7, outputTokens: 3, totalTokens: 1310, cacheReadInputTokens: 1000, cacheWriteInputTokens: 300 },
    }
    fake.enqueue({ converse })
    const res = await gw.chat({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] })
    assert.deepEqual([res.usage.promptTokens, res.usage.completionTokens, res.usage.totalTokens], [1307, 3, 1310])
    fake.enqueue({ converse })
    const streamed = await gw.stream({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'x' }] }, () => {})
    assert.equal(streamed.usage.promptTokens, 1307)
    await gw.close()
  })
})

describe('bedrock configuration', () => {
  test('a missing region or credentials is CONFIG naming what is missing', () => {
    assert.throws(() => new Gateway({ providers: { aws: { kind: 'bedrock', credentials: CREDENTIALS } } }), (e) => e.code === 'CONFIG' && /no region/.test(e.message) && /AWS_REGION/.test(e.message))
    assert.throws(() => new Gateway({ providers: { aws: { kind: 'bedrock', region: REGION } } }), (e) => e.code === 'CONFIG' && /no credentials/.test(e.message) && /AWS_ACCESS_KEY_ID/.test(e.message))
    assert.throws(
      () => new Gateway({ providers: { aws: { kind: 'bedrock', region: REGION, credentials: { accessKeyId: 'AKIA', secretAccessKey: '' } } } }),
      (e) => e.code === 'CONFIG' && /secretAccessKey/.test(e.message),
    )
    assert.throws(() => new Gateway({ providers: { aws: { kind: 'bedrock', region: REGION, credentials: { accessKeyId: 'AKIA' } } } }), (e) => e.code === 'CONFIG' && /secretAccessKey/.test(e.message))
    process.env.AWS_ACCESS_KEY_ID = 'AKIAONLY'
    try {
      assert.throws(() => new Gateway({ providers: { aws: { kind: 'bedrock', region: REGION } } }), (e) => e.code === 'CONFIG' && /secretAccessKey/.test(e.message))
    } finally {
      delete process.env.AWS_ACCESS_KEY_ID
    }
  })
})

describe('recorded Bedrock streams (fixtures/providers/bedrock), replayed through the fake', () => {
  const entries = loadManifest().filter((e) => e.provider === 'bedrock' && e.kind === 'stream')
  test('the manifest lists the Bedrock fixtures', () => assert.ok(entries.length >= 2))
  for (const entry of entries) {
    test(`${entry.file}: whole and byte by byte`, async () => {
      const gw = gateway({ maxRetries: 0 })
      const bytes = readFixture(entry.file)
      for (const split of ['whole', 'bytes']) {
        fake.enqueue({ events: [bytes], split })
        const text = []
        const args = []
        let response
        for await (const event of gw.streamEvents({ model: `aws/${MODEL}`, messages: [{ role: 'user', content: 'replay' }] })) {
          if (event.type === 'text') text.push(event.text)
          else if (event.type === 'tool_call') args[event.index] = (args[event.index] ?? '') + event.argumentsDelta
          else response = event.response
        }
        const expected = entry.expected
        assert.equal(response.content, expected.text ?? '', split)
        assert.equal(text.join(''), response.content)
        assert.equal(response.finishReason, expected.finish_reason)
        assert.deepEqual([response.usage.promptTokens, response.usage.completionTokens], [expected.prompt_tokens, expected.completion_tokens])
        assert.deepEqual(
          response.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: JSON.parse(c.arguments) })),
          expected.tool_calls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })),
        )
        assert.deepEqual(args, response.toolCalls.map((c) => c.arguments))
      }
      await gw.close()
    })
  }
})

test('embeddings on a bedrock provider are refused, not sent', async () => {
  const gw = gateway()
  const before = fake.requests.length
  await assert.rejects(gw.embed({ model: `aws/amazon.titan-embed-text-v2:0`, input: 'x' }), (e) => e.code === 'INVALID_REQUEST' && /not supported yet/.test(e.message))
  assert.equal(fake.requests.length, before)
  await gw.close()
})
