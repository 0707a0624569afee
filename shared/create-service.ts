import { LruCache } from './cache/lru-cache.js'
import type { Config } from './config.js'
import { maskUrl } from './config.js'
import type { InvalidationChannel } from './invalidation.js'
import type { Logger } from './log.js'
import { ReadThrough } from './read-through.js'
import { createIoredisSource } from './redis/ioredis-source.js'
import { createIoredisTracking } from './redis/ioredis-tracking.js'
import { RespSource } from './redis/resp-source.js'
import { RespTracking } from './redis/resp-tracking.js'
import type { RedisSource } from './redis/source.js'

/**
 * Cache + backend source (REDIS_CLIENT) + read-through service for one backing Redis, as
 * configured; with CACHE_INVALIDATION=on, also the tracking channel that
 * evicts keys as Redis reports writes. `service.close()` closes every
 * connection it opened.
 */
export function createService(config: Config, redisUrl: string, log: Logger): ReadThrough {
  const redis = maskUrl(redisUrl)
  const changesOnly = () => {
    // A down backend reports the same error on every retry: log changes, not repeats.
    let lastError = ''
    return {
      error(connection: string, err: Error) {
        if (err.message === lastError) return
        lastError = err.message
        log.warn('backing redis error', { redis, connection, error: err.message })
      },
      reset() {
        lastError = ''
      },
    }
  }
  const built =
    config.redis.client === 'native'
      ? nativeSource(config, redisUrl, log, changesOnly())
      : ioredisSource(config, redisUrl, log, changesOnly, redis)

  const cache = new LruCache<Uint8Array>({
    capacity: config.cache.capacity,
    ttlMs: config.cache.ttlMs,
  })
  return new ReadThrough({
    cache,
    source: built.source,
    maxParallel: config.maxParallel,
    maxQueue: config.maxQueue,
    timeoutMs: config.redis.commandTimeoutMs,
    invalidation: built.invalidation,
  })
}

type ErrorLog = { error(connection: string, err: Error): void; reset(): void }
type Built = { source: RedisSource; invalidation: InvalidationChannel | undefined }

/** One pipelined RESP3 connection; with invalidation on, tracking rides on it. */
function nativeSource(config: Config, redisUrl: string, log: Logger, errors: ErrorLog): Built {
  const tracking = config.cache.invalidation === 'on' ? new RespTracking(log) : undefined
  const source = new RespSource({
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    livenessTimeoutMs: config.redis.livenessTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => errors.error('data', err),
    onReady: ({ resp3 }) => {
      errors.reset()
      log.info('backing redis ready', { redis: maskUrl(redisUrl), client: 'native', resp3 })
    },
    ...tracking?.sourceHooks(),
  })
  return { source, invalidation: tracking }
}

/** ioredis for the data; with invalidation on, a RESP2 subscriber gets the redirected invalidations. */
function ioredisSource(
  config: Config,
  redisUrl: string,
  log: Logger,
  changesOnly: () => ErrorLog,
  redis: string,
): Built {
  const dataErrors = changesOnly()
  const data = createIoredisSource({
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => dataErrors.error('data', err),
  })
  data.client.on('ready', () => {
    dataErrors.reset()
    log.info('backing redis ready', { redis, client: 'ioredis' })
  })
  if (config.cache.invalidation !== 'on') return { source: data, invalidation: undefined }
  const subscriberErrors = changesOnly()
  const tracking = createIoredisTracking({
    client: data.client,
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    log,
    onError: (err) => subscriberErrors.error('invalidation', err),
  })
  return {
    source: {
      get: data.get,
      state: data.state,
      async close() {
        await tracking.close()
        await data.close()
      },
    },
    invalidation: tracking,
  }
}
