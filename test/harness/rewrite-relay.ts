import { connect, createServer, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/**
 * A TCP relay in front of a redis-server that rewrites what clients send:
 * each `from` in a chunk becomes `to` (the same length, so RESP's lengths
 * still hold), e.g. `BCAST` into a word Redis refuses, to play a server
 * without that option. Counts the rewrites. Commands the proxy sends at
 * connect fit one write, so one chunk; a `from` split across two chunks
 * would pass unchanged, and the count would tell.
 */
export type RewriteRelay = {
  readonly port: number
  readonly url: string
  rewrites(): number
  close(): Promise<void>
}

export async function startRewriteRelay(
  targetPort: number,
  from: string,
  to: string,
): Promise<RewriteRelay> {
  if (Buffer.byteLength(from) !== Buffer.byteLength(to)) throw new Error('same length only')
  const sockets = new Set<Socket>()
  let rewrites = 0
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1')
      const parts = text.split(from)
      rewrites += parts.length - 1
      upstream.write(parts.length === 1 ? chunk : Buffer.from(parts.join(to), 'latin1'))
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
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
    rewrites: () => rewrites,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
