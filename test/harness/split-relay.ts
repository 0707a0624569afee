import { type Relay, startRelay } from './relay.js'

/**
 * A TCP relay in front of a redis-server that, once armed for a key, holds
 * the proxy's `PTTL <key>` back: it sends what comes before it (the load's
 * GET), waits for Redis's answer to that, runs `between` (a write by another
 * client), and only then sends the PTTL. So Redis runs GET, the write, then
 * PTTL: the one order in which a load's value is older than a write whose
 * invalidation arrives before the load is complete. Redis's own 16 KB reads
 * split a load's pair this way now and then under load; this does it on cue.
 */
export type SplitRelay = Relay & {
  /** The next `PTTL key` the proxy sends is held back around `between`. */
  arm(key: string, between: () => Promise<unknown>): void
  /** Splits done so far. */
  splits(): number
}

export async function startSplitRelay(targetPort: number): Promise<SplitRelay> {
  let armed: { pttl: Buffer; between: () => Promise<unknown> } | undefined
  let splits = 0
  const relay = await startRelay(targetPort, () => {
    let answered: (() => void) | undefined
    // Chunks go up one after another, a held one before any later one.
    let chain = Promise.resolve()
    return {
      up(chunk, upstream) {
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
      },
      down(chunk, client) {
        client.write(chunk)
        answered?.()
      },
    }
  })
  return {
    ...relay,
    arm(key, between) {
      const bytes = Buffer.byteLength(key)
      armed = { pttl: Buffer.from(`*2\r\n$4\r\nPTTL\r\n$${bytes}\r\n${key}\r\n`), between }
    },
    splits: () => splits,
  }
}
