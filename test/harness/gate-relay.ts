import type { Socket } from 'node:net'
import { type Relay, startRelay } from './relay.js'

/**
 * A TCP relay in front of one redis-server (a cluster node announcing the
 * relay's port, so the proxy reaches the node through it) that holds what
 * Redis sends on the connection that next sends a GET, from that GET on,
 * until `release()` writes it all in one write: the replies of a read and
 * the invalidation of a write Redis ran after it then reach the proxy in one
 * chunk, in the order Redis sent them, on cue rather than by chance.
 */
export type GateRelay = Relay & {
  /** From now on, the next connection to send a GET has Redis's bytes held from then. */
  holdNextRead(): void
  /** Resolves once that GET has gone on to Redis. */
  readSent(): Promise<void>
  /** What is held so far, as latin1 text. */
  held(): string
  /** Writes what is held in one write, and holds nothing more. */
  release(): void
}

const GET = /\r\nget\r\n/i

export async function startGateRelay(targetPort: number): Promise<GateRelay> {
  let armed = false
  /** The connection whose bytes from Redis are held, once one sent the GET. */
  let holding: { chunks: Buffer[]; client: Socket | null } | null = null
  let sent: () => void = () => {}
  let readSent = Promise.resolve()
  const relay = await startRelay(targetPort, () => {
    // This connection's hold, once it is the one that sent the GET.
    let hold: { chunks: Buffer[]; client: Socket | null } | null = null
    return {
      up(chunk, upstream) {
        if (armed && GET.test(chunk.toString('latin1'))) {
          armed = false
          hold = { chunks: [], client: null }
          holding = hold
          upstream.write(chunk, () => sent())
          return
        }
        upstream.write(chunk)
      },
      down(chunk, client) {
        if (hold !== null && holding === hold) {
          hold.client = client
          hold.chunks.push(chunk)
        } else {
          client.write(chunk)
        }
      },
    }
  })
  return {
    ...relay,
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
      if (gate?.client != null && gate.chunks.length > 0)
        gate.client.write(Buffer.concat(gate.chunks))
    },
  }
}
