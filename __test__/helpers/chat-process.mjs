// A second chat server process for the cross-process history test: attachChat with Redis history,
// its models at the mock vendors. Config in FG_CHAT_CONFIG (JSON); prints {"port":N} once listening;
// exits cleanly on SIGTERM.
import http from 'node:http'
import { Gateway } from 'ferrogate'
import { attachChat } from 'ferrogate/realtime'

const config = JSON.parse(process.env.FG_CHAT_CONFIG)
const gateway = new Gateway({
  providers: { vendor: { kind: 'openai', apiKey: 'sk-test', baseUrl: config.openaiBaseUrl } },
  maxRetries: 0,
})
const server = http.createServer()
const chat = attachChat(server, {
  gateway,
  models: config.models,
  history: { redisUrl: config.redisUrl, keyPrefix: config.keyPrefix },
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`)
})
process.on('SIGTERM', async () => {
  await chat.close()
  server.close(() => process.exit(0))
})
