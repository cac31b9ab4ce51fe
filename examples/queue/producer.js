'use strict'
// The queue example's producer: queues one job of each type, waits for their results and prints them.
//
//   npm run example:queue:producer        # with a worker running (npm run example:queue:worker)
//
// Lower priority numbers run first; a job without a priority would run before all of them (BullMQ's rule).
// Env: as worker.js. Exits non-zero when a job does not complete.
const { AIQueue } = require('ferrogate/queue')
const { gatewayAndModel, queueOptions } = require('./config')

async function main() {
  const { gateway, defaultModel } = gatewayAndModel()
  const queue = new AIQueue({ gateway, defaultModel, ...queueOptions, worker: false })
  try {
    const ids = await queue.addBulk([
      { type: 'text_generation', input: { prompt: 'Write a haiku about queues' }, userId: 'example', priority: 1 },
      { type: 'code_review', input: { code: 'const x = eval(userInput)', language: 'javascript' }, userId: 'example', priority: 2 },
      { type: 'translation', input: { text: 'Bonjour tout le monde', targetLanguage: 'English', sourceLanguage: 'French' }, userId: 'example', priority: 3 },
      { type: 'analysis', input: { content: 'Sales rose 5% while costs fell 2%.', analysisType: 'financial' }, userId: 'example', priority: 4 },
    ])
    console.log(`producer: queued jobs ${ids.join(', ')}`)
    let failed = 0
    for (const id of ids) {
      const outcome = await queue.result(id, { timeoutMs: 120_000 })
      if (outcome.state === 'completed') {
        const { content, model, usage, costUsd } = outcome.result
        console.log(`producer: job ${id} completed by ${model} (${usage.totalTokens} tokens, $${costUsd}): ${content.slice(0, 100)}`)
      } else {
        failed++
        console.log(`producer: job ${id} ${outcome.state}${outcome.error ? `: ${outcome.error.code} ${outcome.error.message}` : ''}`)
      }
    }
    console.log('producer: stats', JSON.stringify(await queue.stats()))
    if (failed) process.exitCode = 1
  } finally {
    await queue.close()
  }
}

main().catch((error) => {
  console.error(`producer: ${error.message}`)
  process.exitCode = 1
})
