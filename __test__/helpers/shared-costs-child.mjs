// Child process for the shared CostTracker tests: a Gateway whose tracker writes to the
// shared PostgreSQL ledger (and, with redisUrl, reserves hard budgets in Redis), firing
// `calls` chats at the mock upstream with `concurrency` in flight. Prints what happened
// (from the call results, not from the ledger) as one JSON line, then closes the tracker
// and exits. An unhandled rejection or uncaught exception exits with code 3.
import { CostTracker, Gateway, countTokens } from '../../index.js'

const fail = (error) => {
  process.stderr.write(`child failure: ${error?.stack ?? error}\n`)
  process.exit(3)
}
process.on('unhandledRejection', fail)
process.on('uncaughtException', fail)

const config = JSON.parse(process.argv[2])
const tracker = new CostTracker({
  postgresUrl: config.postgresUrl,
  postgresSchema: config.schema,
  ...(config.redisUrl ? { redisUrl: config.redisUrl, prefix: config.prefix } : {}),
  pricing: config.pricing,
})
if (config.budgetUsd != null) tracker.setBudget(config.user, { usd: config.budgetUsd, period: 'day', hard: true })
const gateway = new Gateway({
  providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: config.baseUrl } },
  costs: tracker,
  maxRetries: 0,
})

// Every child waits for the same start signal (a file appearing) so the calls overlap.
if (config.startFile) {
  // The tokenizer loads on first use (seconds in a debug build, on the addon's runtime): before the start, so
  // the overlapping calls measure the budget store rather than that.
  countTokens(config.model, 'warm up')
  const { existsSync } = await import('node:fs')
  process.stdout.write('ready\n')
  while (!existsSync(config.startFile)) await new Promise((resolve) => setTimeout(resolve, 5))
}

const result = { ok: 0, costUsd: 0, codes: {}, messages: {} }
let next = 0
async function worker() {
  while (next < config.calls) {
    const i = next++
    try {
      const response = await gateway.chat({
        model: config.model,
        user: config.user,
        maxTokens: config.maxTokens,
        messages: [{ role: 'user', content: `${config.message} (call ${i})` }],
      })
      result.ok++
      result.costUsd += response.costUsd
    } catch (error) {
      result.codes[error.code] = (result.codes[error.code] ?? 0) + 1
      result.messages[error.code] ??= error.message
    }
  }
}
await Promise.all(Array.from({ length: config.concurrency }, worker))
await tracker.close()
result.stats = tracker.stats()
process.stdout.write(`${JSON.stringify(result)}\n`)
await gateway.close()
process.exit(0)
