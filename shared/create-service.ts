import { LruCache } from './cache/lru-cache.js'
import type { Config } from './config.js'
import { maskUrl } from './config.js'
import type { Logger } from './log.js'
import { ReadThrough } from './read-through.js'
import { createIoredisSource } from './redis/ioredis-source.js'
import { createIoredisTracking } from './redis/ioredis-tracking.js'
import type { RedisSource } from './redis/source.js'

/**
 * Cache + ioredis source + read-through service for one backing Redis, as
 * configured; with CACHE_INVALIDATION=on, also the tracking channel that
 * evicts keys as Redis reports writes. `service.source.close()` closes every
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
  const dataErrors = changesOnly()
  const data = createIoredisSource({
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => dataErrors.error('data', err),
  })
  data.client.on('ready', () => {
    dataErrors.reset()
    log.info('backing redis ready', { redis })
  })

  let source: RedisSource = data
  let invalidation: ReturnType<typeof createIoredisTracking> | undefined
  if (config.cache.invalidation === 'on') {
    const subscriberErrors = changesOnly()
    const tracking = createIoredisTracking({
      client: data.client,
      url: redisUrl,
      commandTimeoutMs: config.redis.commandTimeoutMs,
      connectTimeoutMs: config.redis.connectTimeoutMs,
      log,
      onError: (err) => subscriberErrors.error('invalidation', err),
    })
    invalidation = tracking
    source = {
      get: data.get,
      state: data.state,
      async close() {
        await tracking.close()
        await data.close()
      },
    }
  }

  const cache = new LruCache<Uint8Array>({
    capacity: config.cache.capacity,
    ttlMs: config.cache.ttlMs,
  })
  return new ReadThrough({
    cache,
    source,
    maxParallel: config.maxParallel,
    maxQueue: config.maxQueue,
    invalidation,
  })
}
