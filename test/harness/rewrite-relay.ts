import { type Relay, startRelay } from './relay.js'

/**
 * A TCP relay in front of a redis-server that rewrites what clients send:
 * each `from` in a chunk becomes `to` (the same length, so RESP's lengths
 * still hold), e.g. `BCAST` into a word Redis refuses, to play a server
 * without that option. Counts the rewrites. Commands the proxy sends at
 * connect fit one write, so one chunk; a `from` split across two chunks
 * would pass unchanged, and the count would tell.
 */
export type RewriteRelay = Relay & { rewrites(): number }

export async function startRewriteRelay(
  targetPort: number,
  from: string,
  to: string,
): Promise<RewriteRelay> {
  if (Buffer.byteLength(from) !== Buffer.byteLength(to)) throw new Error('same length only')
  let rewrites = 0
  const relay = await startRelay(targetPort, () => ({
    up(chunk, upstream) {
      const parts = chunk.toString('latin1').split(from)
      rewrites += parts.length - 1
      upstream.write(parts.length === 1 ? chunk : Buffer.from(parts.join(to), 'latin1'))
    },
  }))
  return { ...relay, rewrites: () => rewrites }
}
