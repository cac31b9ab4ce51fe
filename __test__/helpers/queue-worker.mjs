// A queue worker in its own process, for the stalled-job test (the test SIGKILLs it mid-job).
// Config in FG_QUEUE_CONFIG (JSON); prints "ready" once the worker takes jobs.
import { Gateway } from 'ferrogate'
import { AIQueue } from 'ferrogate/queue'

const config = JSON.parse(process.env.FG_QUEUE_CONFIG)
const gateway = new Gateway({
  providers: { vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: config.openaiBaseUrl } },
  maxRetries: 0,
  timeoutMs: 600_000,
})
const queue = new AIQueue({ gateway, ...config.queue })
await queue.ready()
process.stdout.write('ready\n')
process.on('SIGTERM', async () => {
  await queue.close()
  process.exit(0)
})
