import { LruCache } from './cache/lru-cache.js'
import type { Config } from './config.js'
import { maskUrl } from './config.js'
import type { Logger } from './log.js'
import { ReadThrough } from './read-through.js'
import { createIoredisSource } from './redis/ioredis-source.js'

/** Cache + ioredis source + read-through service for one backing Redis, as configured. */
export function createService(config: Config, redisUrl: string, log: Logger): ReadThrough {
  let lastError = ''
  const source = createIoredisSource({
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => {
      // A down backend reports the same error on every retry: log changes, not repeats.
      if (err.message === lastError) return
      lastError = err.message
      log.warn('backing redis error', { redis: maskUrl(redisUrl), error: err.message })
    },
  })
  source.client.on('ready', () => {
    lastError = ''
    log.info('backing redis ready', { redis: maskUrl(redisUrl) })
  })
  const cache = new LruCache<Uint8Array>({
    capacity: config.cache.capacity,
    ttlMs: config.cache.ttlMs,
  })
  return new ReadThrough({
    cache,
    source,
    maxParallel: config.maxParallel,
    maxQueue: config.maxQueue,
  })
}
