import { type Relay, startRelay } from './relay.js'

/**
 * A TCP relay in front of a redis-server that holds back Redis's bytes, by
 * `delayMs`, on every connection that has sent a GET (the proxy's data
 * connection), while other connections (the invalidation subscriber) pass at
 * once. So an invalidation can reach the proxy while the reply to the GET that
 * read the old value is still on its way: the race a real network produces
 * now and then, on demand.
 */
export type DelayRelay = Relay

const GET = /\r\nget\r\n/i

export function startDelayRelay(targetPort: number, delayMs: number): Promise<DelayRelay> {
  return startRelay(targetPort, () => {
    let reads = false
    return {
      up(chunk, upstream) {
        if (!reads && GET.test(chunk.toString('latin1'))) reads = true
        upstream.write(chunk)
      },
      // Every chunk waits the same time, so their order is kept.
      down(chunk, client) {
        if (!reads) client.write(chunk)
        else setTimeout(() => client.destroyed || client.write(chunk), delayMs)
      },
    }
  })
}
