import type { Config } from '../config.js'
import { maskUrl } from '../config.js'
import type { Backend } from '../create-service.js'
import type { Logger } from '../log.js'
import { RespSource } from './resp-source.js'
import { RespTracking } from './resp-tracking.js'

/**
 * The Node backend: one pipelined RESP3 connection (the native client); with
 * CACHE_INVALIDATION=on, client tracking rides on it in-band.
 */
export function nativeBackend(
  config: Config,
  redisUrl: string,
  log: Logger,
  hooks: { onRefused?: (reason: string) => void } = {},
): Backend {
  const redis = maskUrl(redisUrl)
  // A down backend reports the same error on every retry: log changes, not repeats.
  let lastError = ''
  const tracking = config.cache.invalidation === 'on' ? new RespTracking(log) : undefined
  const source = new RespSource({
    url: redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    livenessTimeoutMs: config.redis.livenessTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => {
      if (err.message === lastError) return
      lastError = err.message
      log.warn('backing redis error', { redis, error: err.message })
    },
    onReady: ({ resp3 }) => {
      lastError = ''
      log.info('backing redis ready', { redis, resp3 })
    },
    ...tracking?.sourceHooks(),
    ...(hooks.onRefused !== undefined && { onRefused: hooks.onRefused }),
  })
  return tracking === undefined ? { source } : { source, invalidation: tracking }
}
