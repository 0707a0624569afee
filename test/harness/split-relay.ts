import { connect, createServer, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/**
 * A TCP relay in front of a redis-server that, once armed for a key, holds
 * the proxy's `PTTL <key>` back: it sends what comes before it (the load's
 * GET), waits for Redis's answer to that, runs `between` (a write by another
 * client), and only then sends the PTTL. So Redis runs GET, the write, then
 * PTTL: the one order in which a load's value is older than a write whose
 * invalidation arrives before the load is complete. Redis's own 16 KB reads
 * split a load's pair this way now and then under load; this does it on cue.
 */
export type SplitRelay = {
  readonly url: string
  /** The next `PTTL key` the proxy sends is held back around `between`. */
  arm(key: string, between: () => Promise<unknown>): void
  /** Splits done so far. */
  splits(): number
  close(): Promise<void>
}

export async function startSplitRelay(targetPort: number): Promise<SplitRelay> {
  const sockets = new Set<Socket>()
  let armed: { pttl: Buffer; between: () => Promise<unknown> } | undefined
  let splits = 0
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1')
    sockets.add(client)
    sockets.add(upstream)
    let answered: (() => void) | undefined
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk)
      answered?.()
    })
    // Chunks go up one after another, a held one before any later one.
    let chain = Promise.resolve()
    client.on('data', (chunk: Buffer) => {
      chain = chain.then(async () => {
        const plan = armed
        const at = plan === undefined ? -1 : chunk.indexOf(plan.pttl)
        if (plan === undefined || at < 0) {
          upstream.write(chunk)
          return
        }
        armed = undefined
        splits++
        const replied = new Promise<void>((resolve) => {
          answered = resolve
        })
        upstream.write(chunk.subarray(0, at))
        await replied
        answered = undefined
        await plan.between()
        upstream.write(chunk.subarray(at))
      })
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
    url: `redis://127.0.0.1:${port}`,
    arm(key, between) {
      const bytes = Buffer.byteLength(key)
      armed = { pttl: Buffer.from(`*2\r\n$4\r\nPTTL\r\n$${bytes}\r\n${key}\r\n`), between }
    },
    splits: () => splits,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
