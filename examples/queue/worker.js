'use strict'
// The queue example's worker: takes AI jobs from Redis until stopped (Ctrl-C / SIGTERM).
//
//   npm run example:queue:worker
//
// Env: REDIS_URL (redis://127.0.0.1:6379), QUEUE_NAME (ferrogate-example), QUEUE_PREFIX (bull), CONCURRENCY (5),
// OPENAI_API_KEY (else the built-in mock provider answers).
const { AIQueue } = require('ferrogate/queue')
const { gatewayAndModel, queueOptions } = require('./config')

const { gateway, defaultModel, using } = gatewayAndModel()
console.log(`worker: using ${using}`)
const queue = new AIQueue({ gateway, defaultModel, ...queueOptions, concurrency: Number(process.env.CONCURRENCY || 5) })
queue.on('progress', ({ jobId, progress }) => console.log(`worker: job ${jobId} at ${progress}%`))
queue.ready().then(() => console.log(`worker: ready on queue ${queueOptions.name}`))

async function shutdown() {
  await queue.close() // lets running jobs finish
  process.exit(0)
}
process.once('SIGINT', shutdown)
process.once('SIGTERM', shutdown)
