import { Redis, type RedisOptions } from 'ioredis'
import { Tracker } from '../invalidation.js'
import { keyFromBytes } from '../keys.js'
import type { Logger } from '../log.js'
import { backoff } from './ioredis-source.js'

/** The channel Redis publishes redirected invalidations on. */
export const INVALIDATE_CHANNEL = '__redis__:invalidate'

export type IoredisTrackingOptions = {
  /** The data connection: its GETs are the ones Redis tracks. */
  client: Redis
  /** The same backend, for the subscriber connection. */
  url: string
  /** @default 1000 */
  commandTimeoutMs?: number
  /** @default 2000 */
  connectTimeoutMs?: number
  log: Logger
  /** Connection-level errors of the subscriber, which ioredis would otherwise throw as unhandled. */
  onError?: (err: Error) => void
  /** Extra ioredis options for the subscriber (tests). */
  redisOptions?: RedisOptions
}

/**
 * Server-assisted client-side caching over RESP2, so it works with every
 * Redis 6+: the data connection runs `CLIENT TRACKING ON REDIRECT <id>` in
 * default mode (Redis remembers only the keys this connection read, which are
 * exactly the keys the cache can hold), and a second connection, client `<id>`,
 * is subscribed to `__redis__:invalidate`. ioredis reconnects the two
 * independently; every reconnection of either is reported to the Tracker,
 * which re-issues the redirect with the subscriber's current id.
 */
export function createIoredisTracking(options: IoredisTrackingOptions): Tracker {
  const { client, log } = options
  const subscriber = new Redis(options.url, {
    commandTimeout: options.commandTimeoutMs ?? 1000,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    // ioredis opens RESP3 by default and drops RESP3 pushes; redirected
    // invalidations reach a RESP2 subscriber as ordinary Pub/Sub messages.
    protocol: 2,
    // The redirect needs the subscriber's CLIENT ID, which a RESP2 connection
    // can no longer be asked once subscribed: each connection does ID, then
    // SUBSCRIBE, by hand (below) instead of ioredis resubscribing by itself.
    autoResubscribe: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: backoff,
    lazyConnect: true,
    ...options.redisOptions,
  })

  const tracker = new Tracker({
    log,
    wire: {
      async enable(redirectId) {
        try {
          await client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(redirectId))
          return undefined
        } catch (err) {
          if (isRefusal(err)) return (err as Error).message
          throw err
        }
      },
      renew() {
        subscriber.disconnect(true)
      },
      async close() {
        if (subscriber.status === 'end') return
        try {
          await subscriber.quit()
        } catch {
          subscriber.disconnect()
        }
      },
    },
  })

  // Answers from an earlier subscriber connection must not be taken for this one's.
  let generation = 0
  subscriber.on('ready', () => {
    const mine = ++generation
    void (async () => {
      try {
        const id = await subscriber.client('ID')
        await subscriber.subscribe(INVALIDATE_CHANNEL)
        if (mine === generation) tracker.subscriberReady(Number(id))
      } catch (err) {
        if (mine !== generation) return
        if (isRefusal(err)) tracker.refused((err as Error).message)
        // No answer: start over on a fresh connection, with the usual backoff.
        else subscriber.disconnect(true)
      }
    })()
  })
  subscriber.on('close', () => {
    generation++
    tracker.subscriberLost()
  })
  subscriber.on('messageBuffer', (_channel: Buffer, message: unknown) => {
    tracker.invalidated(toKeys(message))
  })
  subscriber.on('error', (err: Error) => options.onError?.(err))

  client.on('ready', () => tracker.dataReady())
  client.on('close', () => tracker.dataLost())
  client.once('end', () => void tracker.close())
  if (client.status === 'ready') tracker.dataReady()

  subscriber.connect().catch(() => {
    // Reported through 'error'; retryStrategy keeps trying.
  })
  return tracker
}

/**
 * An invalidation's payload: the keys' raw bytes, or null when everything went
 * (flush). Anything else is read as null too: clearing is always safe.
 */
export function toKeys(message: unknown): string[] | null {
  if (message === null || message === undefined) return null
  if (Array.isArray(message)) {
    const keys: string[] = []
    for (const item of message) {
      if (item instanceof Uint8Array) keys.push(keyFromBytes(item))
    }
    return keys
  }
  if (message instanceof Uint8Array) return [keyFromBytes(message)]
  return null
}

/**
 * An error reply that retrying will not change: the server (or a proxy in
 * front of it) does not know or does not allow the command. Replies that mean
 * "not now" are not refusals, nor is a redirect to a subscriber that died
 * before Redis read the command (its reconnection tries again).
 */
export function isRefusal(err: unknown): boolean {
  return (
    err instanceof Error &&
    err.name === 'ReplyError' &&
    !/^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN|READONLY)\b/.test(err.message) &&
    !/redirect to does not exist/i.test(err.message)
  )
}
