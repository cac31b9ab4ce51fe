// A TCP proxy in a process of its own (a CostTracker connects synchronously in its
// constructor, which would stall a proxy running on the test's own event loop). Forwards
// 127.0.0.1:<port> to 127.0.0.1:<target>; prints its port, then obeys lines on stdin:
// "cut" destroys every connection and stops listening, "restore" listens on the same port
// again. Each command is acknowledged with its name on stdout.
import net from 'node:net'
import readline from 'node:readline'
import { once } from 'node:events'

const target = Number(process.argv[2])
const sockets = new Set()
const server = net.createServer((client) => {
  const upstream = net.connect({ host: '127.0.0.1', port: target })
  for (const socket of [client, upstream]) {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
  }
  client.pipe(upstream)
  upstream.pipe(client)
  client.on('close', () => upstream.destroy())
  upstream.on('close', () => client.destroy())
})
server.listen(0, '127.0.0.1')
await once(server, 'listening')
const { port } = server.address()
process.stdout.write(`${port}\n`)

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line === 'cut') {
    const closed = new Promise((resolve) => server.close(resolve))
    for (const socket of sockets) socket.destroy()
    await closed
  } else if (line === 'restore') {
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
  }
  process.stdout.write(`${line}\n`)
}
process.exit(0)
