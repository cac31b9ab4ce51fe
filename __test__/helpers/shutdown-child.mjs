// Child process for the graceful-shutdown tests: a Gateway whose CostTracker writes to a
// PostgreSQL ledger (own schema) or a SQLite file (ledgerPath) makes `calls` calls to the mock
// upstream, then `await gateway.close()`, prints "closed" and idles. It installs no signal
// handler: the parent's SIGTERM ends it at once, as it ends a process whose platform stops it
// right after its shutdown code ran. What `close()` did not write is lost.
import { CostTracker, Gateway } from '../../index.js'

const fail = (error) => {
  process.stderr.write(`child failure: ${error?.stack ?? error}\n`)
  process.exit(3)
}
process.on('unhandledRejection', fail)
process.on('uncaughtException', fail)

const config = JSON.parse(process.argv[2])
const tracker = new CostTracker({
  ...(config.ledgerPath ? { ledgerPath: config.ledgerPath } : { postgresUrl: config.postgresUrl, postgresSchema: config.schema }),
  pricing: config.pricing,
})
const gateway = new Gateway({
  providers: { openai: { kind: 'openai', apiKey: 'sk-test', baseUrl: config.baseUrl } },
  costs: tracker,
  maxRetries: 0,
})

let ok = 0
await Promise.all(
  Array.from({ length: config.calls }, async (_, i) => {
    await gateway.chat({ model: config.model, user: config.user, messages: [{ role: 'user', content: `shutdown call ${i}` }] })
    ok++
  }),
)
await gateway.close()
process.stdout.write(`${JSON.stringify({ ok })}\nclosed\n`)
setInterval(() => {}, 60_000)
