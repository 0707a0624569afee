import { connect, createServer, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/**
 * A TCP relay in front of a redis-server that holds back Redis's bytes, by
 * `delayMs`, on every connection that has sent a GET (the proxy's data
 * connection), while other connections (the invalidation subscriber) pass at
 * once. So an invalidation can reach the proxy while the reply to the GET that
 * read the old value is still on its way: the race a real network produces
 * now and then, on demand.
 */
export type DelayRelay = {
  readonly port: number
  readonly url: string
  close(): Promise<void>
}

const GET = /\r\nget\r\n/i

export async function startDelayRelay(targetPort: number, delayMs: number): Promise<DelayRelay> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    let reads = false
    client.on('data', (chunk: Buffer) => {
      if (!reads && GET.test(chunk.toString('latin1'))) reads = true
      upstream.write(chunk)
    })
    // Every chunk waits the same time, so their order is kept.
    upstream.on('data', (chunk: Buffer) => {
      if (!reads) client.write(chunk)
      else setTimeout(() => client.destroyed || client.write(chunk), delayMs)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', () => {})
    upstream.on('error', () => {})
  })
  const port = await listenOnLoopback(server)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
