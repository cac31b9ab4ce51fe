// ferrogate/queue against the real Redis on 127.0.0.1:6379: every queue of this run lives under its own
// BullMQ prefix, removed at the end. Gateway calls go to the mock vendors (or the mock provider).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHmac, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import { createRequire } from 'node:module'
import { after, before, describe, test } from 'node:test'

import { Redis } from 'ioredis'
import { FerrogateError, Gateway } from 'ferrogate'
import { AIQueue, signCallbackBody, verifyCallbackSignature } from 'ferrogate/queue'
import { startMockVendors } from './helpers/mock-vendors.mjs'
import { runScript } from './helpers/examples.mjs'
import { waitUntil } from './helpers/wait.mjs'

const REDIS_URL = 'redis://127.0.0.1:6379'
const PREFIX = `fgtest-queue-${randomUUID()}`
const WAIT = { timeoutMs: 30_000 }

let vendors
const queues = new Set()
before(async () => {
  vendors = await startMockVendors()
})
after(async () => {
  await Promise.allSettled([...queues].map((q) => q.close()))
  const redis = new Redis(REDIS_URL)
  const keys = await redis.keys(`${PREFIX}:*`)
  if (keys.length) await redis.del(...keys)
  await redis.quit()
  await vendors.close()
})

const newGateway = () =>
  new Gateway({
    providers: {
      mock: { kind: 'mock', mockChunkDelayMs: 0 },
      vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: vendors.openaiBaseUrl },
    },
    maxRetries: 0,
  })

/** A queue under this run's prefix; `name` keeps tests apart. */
function newQueue(name, options = {}) {
  const queue = new AIQueue({ gateway: newGateway(), redisUrl: REDIS_URL, prefix: PREFIX, name, defaultModel: 'vendor/gpt-4o-mini', backoffMs: 20, ...options })
  queues.add(queue)
  return queue
}
const job = (prompt, extra = {}) => ({ type: 'text_generation', input: { prompt }, userId: 'user-1', ...extra })
const upstreamPrompts = () => vendors.requests.map((r) => r.body.messages.at(-1).content)
const rejection = (promise) => promise.then(() => assert.fail('expected a rejection'), (e) => e)

describe('AIQueue', () => {
  test('jobs are validated at add with INVALID_REQUEST', async () => {
    const queue = newQueue('validation', { worker: false })
    const bad = [
      { type: 'poetry', input: { prompt: 'x' }, userId: 'u' },
      { type: 'text_generation', input: {}, userId: 'u' },
      { type: 'code_review', input: { code: 'let x' }, userId: 'u' },
      { type: 'translation', input: { text: 'hola' }, userId: 'u' },
      { type: 'analysis', input: { content: 'data', analysisType: '' }, userId: 'u' },
      { type: 'text_generation', input: { prompt: 'x' } },
      job('x', { priority: -1 }),
      job('x', { priority: 1.5 }),
      job('x', { callbackUrl: 'ftp://example.com/hook' }),
    ]
    for (const entry of bad) {
      const error = await rejection(queue.add(entry))
      assert.ok(error instanceof FerrogateError, String(error))
      assert.equal(error.code, 'INVALID_REQUEST')
      assert.equal(error.status, 400)
    }
    assert.equal((await rejection(queue.add(job('x'), { delayMs: -5 }))).code, 'INVALID_REQUEST')
    const bulkError = await rejection(queue.addBulk([job('fine'), { type: 'nope' }]))
    assert.match(bulkError.message, /index 1/)
    assert.deepEqual(await queue.stats(), { waiting: 0, active: 0, completed: 0, failed: 0, delayed: 0 })
    await queue.obliterate()
    await queue.close()
  })

  test('every job type runs; result has content, model, usage and cost; progress events; stats and clean', async () => {
    const queue = newQueue('types', { defaultModel: 'mock/mock-1' })
    const progress = []
    queue.on('progress', (e) => progress.push(e))
    const completed = []
    queue.on('completed', (e) => completed.push(e.jobId))
    await queue.ready()
    const ids = await queue.addBulk([
      job('Write a haiku'),
      { type: 'code_review', input: { code: 'eval(input)', language: 'javascript' }, userId: 'u2' },
      { type: 'translation', input: { text: 'Bonjour', targetLanguage: 'English', sourceLanguage: 'French' }, userId: 'u3' },
      { type: 'analysis', input: { content: 'Sales rose 5%', analysisType: 'sentiment' }, userId: 'u4', model: 'vendor/gpt-4o-mini' },
    ])
    assert.equal(ids.length, 4)
    const outcomes = await Promise.all(ids.map((id) => queue.result(id, WAIT)))
    for (const outcome of outcomes) {
      assert.equal(outcome.state, 'completed', JSON.stringify(outcome))
      assert.ok(outcome.result.content.length > 0)
      assert.ok(outcome.result.usage.totalTokens > 0)
      assert.equal(typeof outcome.result.costUsd, 'number')
    }
    assert.match(outcomes[1].result.content, /Review this javascript code/)
    assert.match(outcomes[2].result.content, /Translate the following text from French to English/)
    assert.equal(outcomes[3].result.model, 'vendor/gpt-4o-mini')
    assert.equal(outcomes[0].result.model, 'mock/mock-1')
    // The analysis job's call carried its user and the template.
    const upstream = vendors.requests.at(-1).body
    assert.equal(upstream.user, 'u4')
    assert.match(upstream.messages.at(-1).content, /sentiment analysis/)

    await waitUntil(() => completed.length === 4, 'four completed events') // queue events arrive on their own connection
    for (const id of ids) {
      const steps = progress.filter((e) => e.jobId === id).map((e) => e.progress)
      assert.deepEqual(steps, [10, 100])
    }
    const stats = await queue.stats()
    assert.deepEqual(stats, { waiting: 0, active: 0, completed: 4, failed: 0, delayed: 0 })
    assert.deepEqual(await queue.clean({ completedOlderThanMs: 0, failedOlderThanMs: 0 }), { completed: 4, failed: 0 })
    assert.equal((await queue.stats()).completed, 0)
    assert.deepEqual(await queue.result('no-such-job', { timeoutMs: 0 }), { state: 'unknown' })
    await queue.obliterate()
    await queue.close()
  })

  test('lower priority numbers run first', async () => {
    const producer = newQueue('priority', { worker: false })
    const before = vendors.requests.length
    const ids = []
    for (const priority of [5, 1, 4, 2, 3]) ids.push(await producer.add(job(`priority ${priority}`, { priority })))
    const worker = newQueue('priority', { concurrency: 1 })
    for (const id of ids) assert.equal((await producer.result(id, WAIT)).state, 'completed')
    assert.deepEqual(upstreamPrompts().slice(before), [1, 2, 3, 4, 5].map((p) => `priority ${p}`))
    await worker.close()
    await producer.obliterate()
    await producer.close()
  })

  test('a worker runs `concurrency` jobs at once', async () => {
    const ownVendors = await startMockVendors() // closed mid-test to end the calls it holds
    for (let i = 0; i < 3; i++) ownVendors.enqueue('openai', { hang: true })
    const gateway = new Gateway({ providers: { vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: ownVendors.openaiBaseUrl } }, maxRetries: 0 })
    const queue = newQueue('concurrency', { gateway, concurrency: 2, attempts: 1 })
    try {
      await queue.ready()
      const ids = await queue.addBulk([job('one'), job('two'), job('three')])
      await waitUntil(() => ownVendors.requests.length === 2, 'two calls in flight')
      const stats = await queue.stats()
      assert.equal(stats.active, 2)
      assert.equal(stats.waiting, 1)
      assert.equal(ownVendors.requests.length, 2)
      await ownVendors.close()
      for (const id of ids) assert.equal((await queue.result(id, WAIT)).state, 'failed')
      await queue.obliterate()
    } finally {
      await ownVendors.close()
      await queue.close()
    }
  })

  test('a retryable failure is retried with backoff, then fails with its code; a non-retryable one fails at once', async () => {
    const queue = newQueue('retries', { attempts: 3 })
    const failures = []
    queue.on('failed', (e) => failures.push(e))
    await queue.ready()
    for (let i = 0; i < 3; i++) vendors.enqueue('openai', { status: 500, body: { error: { message: 'boom', type: 'server_error', param: null, code: null } } })
    const before = vendors.requests.length
    const id = await queue.add(job('fail me'))
    const outcome = await queue.result(id, WAIT)
    assert.equal(outcome.state, 'failed')
    assert.equal(outcome.error.code, 'PROVIDER_ERROR')
    assert.equal(outcome.attempts, 3)
    assert.equal(vendors.requests.length - before, 3)

    const notFound = await queue.add(job('where?', { model: 'nowhere/none' }))
    const missing = await queue.result(notFound, WAIT)
    assert.equal(missing.state, 'failed')
    assert.equal(missing.error.code, 'NOT_FOUND')
    assert.equal(missing.attempts, 1)

    // A job queued around add() that does not fit its type fails at once too.
    const { Queue } = await import('bullmq')
    const raw = new Queue('retries', { connection: { host: '127.0.0.1', port: 6379 }, prefix: PREFIX })
    const malformed = await raw.add('text_generation', { type: 'text_generation', input: {}, userId: 'u' }, { attempts: 3 })
    await raw.close()
    const rejected = await queue.result(malformed.id, WAIT)
    assert.deepEqual([rejected.state, rejected.error.code, rejected.attempts], ['failed', 'INVALID_REQUEST', 1])

    vendors.enqueue('openai', { status: 500, body: { error: { message: 'flaky', type: 'server_error', param: null, code: null } } })
    const recovers = await queue.add(job('second time lucky'))
    const recovered = await queue.result(recovers, WAIT)
    assert.equal(recovered.state, 'completed')
    assert.equal(recovered.attempts, 2)
    assert.equal(recovered.result.content, 'echo: second time lucky')

    // 'failed' is the job's final outcome, not each attempt's.
    await waitUntil(() => failures.length === 3, 'three failed events')
    assert.deepEqual(failures.map((e) => [e.jobId, e.error.code]), [[id, 'PROVIDER_ERROR'], [notFound, 'NOT_FOUND'], [malformed.id, 'INVALID_REQUEST']])
    await queue.obliterate()
    await queue.close()
  })

  test('a delayed job waits for its delay', async () => {
    const queue = newQueue('delayed')
    await queue.ready()
    const delayMs = 2000
    const addedAt = Date.now()
    const id = await queue.add(job('later'), { delayMs })
    assert.equal((await queue.result(id, { timeoutMs: 0 })).state, 'delayed')
    assert.equal((await queue.stats()).delayed, 1)
    const outcome = await queue.result(id, WAIT)
    assert.equal(outcome.state, 'completed')
    assert.ok(Date.now() - addedAt >= delayMs, 'not before its delay')
    await queue.obliterate()
    await queue.close()
  })

  test('a callback is POSTed with a valid signature, retried when the receiver fails', async () => {
    const secret = 'callback-secret'
    const received = []
    const receiver = http.createServer(async (req, res) => {
      const chunks = []
      for await (const chunk of req) chunks.push(chunk)
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
      res.writeHead(received.length === 1 ? 503 : 200).end() // the first delivery fails
    })
    receiver.listen(0, '127.0.0.1')
    await once(receiver, 'listening')
    const queue = newQueue('callbacks', { callbackSecret: secret, callbackBackoffMs: 20, defaultModel: 'mock/mock-1', callbackAllowHosts: ['127.0.0.1'] })
    try {
      await queue.ready()
      const callbackUrl = `http://127.0.0.1:${receiver.address().port}/hook`
      const id = await queue.add(job('call me back', { callbackUrl }))
      assert.equal((await queue.result(id, WAIT)).state, 'completed')
      await waitUntil(() => received.length >= 2, 'the retried callback')
      const [first, second] = received
      assert.equal(first.body, second.body, 'a retry sends the same body')
      const payload = JSON.parse(second.body)
      assert.equal(payload.jobId, id)
      assert.equal(payload.success, true)
      assert.match(payload.result.content, /answering "call me back"/)
      assert.ok(!Number.isNaN(Date.parse(payload.timestamp)))
      const header = second.headers['x-ferrogate-signature']
      assert.equal(header, `sha256=${createHmac('sha256', secret).update(second.body).digest('hex')}`)
      assert.ok(verifyCallbackSignature(secret, second.body, header))
      const tampered = second.body.replace('"success":true', '"success":false')
      assert.notEqual(tampered, second.body)
      assert.ok(!verifyCallbackSignature(secret, tampered, header))
      assert.ok(!verifyCallbackSignature('wrong-secret', second.body, header))
      assert.notEqual(signCallbackBody(secret, tampered), header)

      const failing = await queue.add(job('x', { model: 'nowhere/none', callbackUrl }))
      assert.equal((await queue.result(failing, WAIT)).state, 'failed')
      await waitUntil(() => received.length >= 3, 'the failure callback')
      const failure = JSON.parse(received[2].body)
      assert.deepEqual([failure.jobId, failure.success, failure.error.code], [failing, false, 'NOT_FOUND'])
      assert.ok(verifyCallbackSignature(secret, received[2].body, received[2].headers['x-ferrogate-signature']))
      await queue.obliterate()
    } finally {
      await queue.close()
      receiver.closeAllConnections()
      await new Promise((resolve) => receiver.close(resolve))
    }
  })

  test('a worker SIGKILLed mid-job loses no job: another worker finishes it', async () => {
    const name = 'stalled'
    const lockOptions = { stalledIntervalMs: 500, lockDurationMs: 1000 }
    const producer = newQueue(name, { worker: false })
    const child = spawn(process.execPath, [new URL('./helpers/queue-worker.mjs', import.meta.url).pathname], {
      env: {
        ...process.env,
        FG_QUEUE_CONFIG: JSON.stringify({
          openaiBaseUrl: vendors.openaiBaseUrl,
          queue: { redisUrl: REDIS_URL, prefix: PREFIX, name, defaultModel: 'vendor/gpt-4o-mini', concurrency: 1, ...lockOptions },
        }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    try {
      const [line] = await once(child.stdout.setEncoding('utf8'), 'data')
      assert.equal(line.trim(), 'ready')
      vendors.enqueue('openai', { hang: true }) // the first worker's call never ends
      const before = vendors.requests.length
      const id = await producer.add(job('survive a crash'))
      await waitUntil(() => vendors.requests.length > before, 'the first worker to call upstream')
      assert.equal((await producer.result(id, { timeoutMs: 0 })).state, 'active')
      child.kill('SIGKILL')
      await once(child, 'exit')

      const rescuer = newQueue(name, lockOptions)
      const outcome = await producer.result(id, { timeoutMs: 60_000 })
      assert.equal(outcome.state, 'completed', JSON.stringify(outcome))
      assert.equal(outcome.result.content, 'echo: survive a crash')
      assert.equal(vendors.requests.length - before, 2)
      await rescuer.close()
      await producer.obliterate()
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await producer.close()
    }
  })
})

test('the example producer/worker pair (npm run example:queue) completes every job type offline', async () => {
  const { code, stdout } = await runScript('example:queue', { QUEUE_PREFIX: PREFIX, QUEUE_NAME: 'example', REDIS_URL })
  assert.equal(code, 0, stdout)
  assert.match(stdout, /no OPENAI_API_KEY/)
  assert.equal(stdout.match(/producer: job \S+ completed by mock\/mock-1/g)?.length, 4, stdout)
  assert.match(stdout, /"completed":4/)
})

test('ferrogate/queue loads with require as well as import', () => {
  const require = createRequire(import.meta.url)
  const cjs = require('ferrogate/queue')
  assert.equal(cjs.AIQueue, AIQueue)
  assert.equal(typeof cjs.verifyCallbackSignature, 'function')
})
