import type { Clock } from './cache/lru-cache.js'
import { SlabCache } from './cache/slab-cache.js'
import type { Config } from './config.js'
import type { InvalidationChannel } from './invalidation.js'
import { KeyPrefixes } from './keys.js'
import { ReadThrough } from './read-through.js'
import type { RedisForwarder, RedisSource } from './redis/source.js'

/**
 * What a runtime connects to one backing Redis with: the source, tracking
 * when it has it, and the forwarder of the drop-in RESP interface on Node.
 */
export type Backend = {
  source: RedisSource
  invalidation?: InvalidationChannel
  forwarder?: RedisForwarder
}

/**
 * The read-through service for one backing Redis, as configured: cache,
 * limits and timeout from the configuration, the backend from the runtime's
 * entry (shared/redis/native-backend.ts on Node, the edge sources on Workers).
 * `service.close()` closes every connection the backend opened.
 */
export function createService(
  config: Config,
  backend: Backend,
  options: { clock?: Clock } = {},
): ReadThrough {
  const cache = new SlabCache({
    capacity: config.cache.capacity,
    ttlMs: config.cache.ttlMs,
    ...(options.clock !== undefined && { clock: options.clock }),
  })
  return new ReadThrough({
    cache,
    source: backend.source,
    maxParallel: config.maxParallel,
    maxQueue: config.maxQueue,
    timeoutMs: config.redis.commandTimeoutMs,
    ...(backend.invalidation !== undefined && { invalidation: backend.invalidation }),
    ...(config.cache.prefixes.length > 0 && { prefixes: new KeyPrefixes(config.cache.prefixes) }),
  })
}
