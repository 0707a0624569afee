import { Redis, type RedisOptions } from 'ioredis'
import {
  BackendError,
  BackendReplyError,
  BackendTimeoutError,
  BackendUnavailableError,
} from '../errors.js'
import { keyToBytes } from '../keys.js'
import { connectionPerRead } from './connection-per-read.js'
import { timeLeft, untilDeadline } from './deadline.js'
import { ownCopy } from './own-copy.js'
import { backoff } from './reconnect-delay.js'
import { type Loaded, type RedisSource, type SourceState, ttlFromPttl } from './source.js'

export type IoredisSourceOptions = {
  /** redis:// or rediss:// URL; user, password and database are honoured. */
  url: string
  /** @default 1000 */
  commandTimeoutMs?: number
  /** @default 2000 */
  connectTimeoutMs?: number
  /** Called for connection-level errors, which ioredis would otherwise throw as unhandled. */
  onError?: (err: Error) => void
  /** Extra ioredis options (tests and the invalidation channel use this). */
  redisOptions?: RedisOptions
}

export function createIoredisSource(
  options: IoredisSourceOptions,
): RedisSource & { client: Redis } {
  const client = new Redis(options.url, {
    commandTimeout: options.commandTimeoutMs ?? 1000,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    // While disconnected, fail at once: a queue that grows without bound during
    // an outage turns into a thundering herd (and stale reads) when Redis returns.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: backoff,
    // Off on purpose: ioredis's auto-pipelining keeps one batch in flight per
    // connection and queues the rest until it returns, which caps backend
    // concurrency below MAX_PARALLEL and lets one slow reply hold up every
    // later key. Plain commands are written at once and Redis pipelines them.
    enableAutoPipelining: false,
    // RESP2 works with every Redis-compatible backend (older servers, managed proxies).
    protocol: 2,
    lazyConnect: false,
    ...options.redisOptions,
  })
  client.on('error', (err: Error) => {
    absorbLaterErrors(client)
    options.onError?.(err)
  })
  let closed = false

  return {
    client,
    async get(key, deadline) {
      timeLeft(deadline)
      const bytes = keyToBytes(key)
      // GET and PTTL in one write, answered in order: the TTL is the value's
      // own unless another client's write lands between the two.
      const replies = client.pipeline().getBuffer(bytes).pttl(bytes).exec()
      let results: Awaited<typeof replies>
      try {
        results = await untilDeadline(replies, deadline)
      } catch (err) {
        throw toBackendError(err)
      }
      return toLoaded(results)
    },
    state() {
      // QUIT is answered before the socket closes: closed from the caller's side at once.
      return closed ? 'closed' : toState(client.status)
    },
    async close() {
      closed = true
      if (client.status === 'end') return
      try {
        await client.quit()
      } catch {
        client.disconnect()
      }
    },
  }
}

const absorbing = new WeakSet<object>()

/**
 * ioredis listens for one 'error' per socket, but a socket can emit more than
 * one (workerd's node:net emits two for a refused connection): with no
 * listener left, the next would be thrown as an uncaught exception. ioredis
 * has already seen the first and acts on the close that follows.
 */
function absorbLaterErrors(client: Redis): void {
  const stream = client.stream
  if (stream === undefined || stream === null || absorbing.has(stream)) return
  absorbing.add(stream)
  stream.on('error', () => {})
}

function toState(status: string): SourceState {
  switch (status) {
    case 'ready':
      return 'ready'
    case 'end':
      return 'closed'
    case 'reconnecting':
    case 'close':
      return 'reconnecting'
    default:
      return 'connecting'
  }
}

/** The two replies of the GET + PTTL pipeline as a Loaded, or the first error among them. */
function toLoaded(results: [Error | null, unknown][] | null): Loaded | null {
  if (results === null) throw new BackendError('pipeline answered nothing')
  const [get, pttl] = results
  if (get === undefined || pttl === undefined) {
    throw new BackendError(`expected 2 replies, got ${results.length}`)
  }
  const [getError, value] = get
  if (getError !== null) throw toBackendError(getError)
  if (value === null) return null
  if (!Buffer.isBuffer(value)) throw new BackendError(`GET answered ${typeof value}`)
  const [pttlError, ttl] = pttl
  if (pttlError !== null) throw toBackendError(pttlError)
  if (typeof ttl !== 'number') throw new BackendError(`PTTL answered ${typeof ttl}`)
  // ioredis hands back a view of the socket's chunk.
  return { value: ownCopy(value), ttlMs: ttlFromPttl(ttl) }
}

/** ioredis reports everything as plain Errors; tell timeouts and outages apart by their wording. */
export function toBackendError(err: unknown): BackendError {
  if (err instanceof BackendError) return err
  // A server's error reply (WRONGTYPE, NOPERM): the connection is fine.
  if (err instanceof Error && err.name === 'ReplyError') {
    return new BackendReplyError(err.message, { cause: err })
  }
  const message = err instanceof Error ? err.message : String(err)
  if (/timed out/i.test(message)) return new BackendTimeoutError(message, { cause: err })
  if (
    /enableOfflineQueue|Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|max ?retries/i.test(
      message,
    ) ||
    (err instanceof Error && err.name === 'MaxRetriesPerRequestError')
  ) {
    return new BackendUnavailableError(message, { cause: err })
  }
  return new BackendError(message, { cause: err })
}

/**
 * The ioredis source for runtimes where a socket belongs to the request that
 * opened it (Workers under nodejs_compat): a fresh connection for each read.
 * Commands wait for that connection instead of failing fast, and a connection
 * that cannot be made is not retried: the read fails and the next one tries anew.
 */
export function createIoredisPerReadSource(options: IoredisSourceOptions): RedisSource {
  return connectionPerRead(() =>
    createIoredisSource({
      ...options,
      redisOptions: {
        enableOfflineQueue: true,
        retryStrategy: () => null,
        ...options.redisOptions,
      },
    }),
  )
}
