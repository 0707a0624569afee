import { connect, createServer, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/**
 * A TCP relay in front of one redis-server (a cluster node announcing the
 * relay's port, so the proxy reaches the node through it) that holds what
 * Redis sends on the connection that next sends a GET, from that GET on,
 * until `release()` writes it all in one write: the replies of a read and
 * the invalidation of a write Redis ran after it then reach the proxy in one
 * chunk, in the order Redis sent them, on cue rather than by chance.
 */
export type GateRelay = {
  readonly port: number
  /** From now on, the next connection to send a GET has Redis's bytes held from then. */
  holdNextRead(): void
  /** Resolves once that GET has gone on to Redis. */
  readSent(): Promise<void>
  /** What is held so far, as latin1 text. */
  held(): string
  /** Writes what is held in one write, and holds nothing more. */
  release(): void
  close(): Promise<void>
}

const GET = /\r\nget\r\n/i

export async function startGateRelay(targetPort: number): Promise<GateRelay> {
  const sockets = new Set<Socket>()
  let armed = false
  let holding: { client: Socket; chunks: Buffer[] } | null = null
  let sent: () => void = () => {}
  let readSent = new Promise<void>((resolve) => {
    sent = resolve
  })
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    client.on('data', (chunk: Buffer) => {
      if (armed && GET.test(chunk.toString('latin1'))) {
        armed = false
        holding = { client, chunks: [] }
        upstream.write(chunk, () => sent())
        return
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (holding?.client === client) holding.chunks.push(chunk)
      else client.write(chunk)
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
    holdNextRead() {
      armed = true
      readSent = new Promise<void>((resolve) => {
        sent = resolve
      })
    },
    readSent: () => readSent,
    held: () => Buffer.concat(holding?.chunks ?? []).toString('latin1'),
    release() {
      const gate = holding
      holding = null
      if (gate !== null && gate.chunks.length > 0) gate.client.write(Buffer.concat(gate.chunks))
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
