// Child process for the SIGKILL durability test: records calls through a Gateway and
// directly, prints what it recorded (from the return values, not from the ledger), then
// idles until the parent kills it.
import { CostTracker, Gateway } from '../../index.js'

const [ledgerPath] = process.argv.slice(2)
const tracker = new CostTracker({
  ledgerPath,
  pricing: { 'mock/demo': { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } },
})
const gateway = new Gateway({ providers: { mock: { kind: 'mock', mockChunkDelayMs: 0 } }, costs: tracker })

let totalCost = 0
let totalRequests = 0
for (let i = 0; i < 20; i++) {
  const response = await gateway.chat({ model: 'mock/demo', user: 'killed', messages: [{ role: 'user', content: `call ${i}` }] })
  totalCost += response.costUsd
  totalRequests++
}
for (let i = 0; i < 300; i++) {
  totalCost += tracker.record({ user: 'killed', model: 'openai/gpt-4o-mini', promptTokens: 100 + i, completionTokens: 50 })
  totalRequests++
}
process.stdout.write(`${JSON.stringify({ totalCost, totalRequests })}\n`)
setInterval(() => {}, 60_000)
