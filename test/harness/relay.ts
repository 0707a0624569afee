import { connect, createServer, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/** A TCP relay in front of a redis-server, started by `startRelay`. */
export type Relay = {
  readonly port: number
  readonly url: string
  close(): Promise<void>
}

/** What one relayed connection does with the bytes each side sends. */
export type RelayPipes = {
  /** A client's bytes, to send on to Redis (`upstream`) now, later or changed. */
  up(chunk: Buffer, upstream: Socket): void
  /** Redis's bytes, to send on to the client. @default at once */
  down?(chunk: Buffer, client: Socket): void
}

/**
 * The plumbing every relay of the harness shares: a loopback listener, one
 * connection to Redis per client, both closed together, every socket
 * destroyed by `close()`. `pipes` is asked once per connection, so a relay
 * keeps per-connection state in its closure.
 */
export async function startRelay(targetPort: number, pipes: () => RelayPipes): Promise<Relay> {
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    const { up, down } = pipes()
    client.on('data', (chunk: Buffer) => up(chunk, upstream))
    upstream.on('data', (chunk: Buffer) =>
      down === undefined ? client.write(chunk) : down(chunk, client),
    )
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
