import { afterAll, beforeAll } from 'vitest'
import type { Logger } from '../../shared/log.js'
import { startHttpProxy, type TestHttpProxy } from './proxy.js'
import { startRedis, type TestRedis } from './redis-server.js'
import type { Relay } from './relay.js'

export type ProxiedRedis<R extends Relay | undefined> = {
  redis: TestRedis
  relay: R
  proxy: TestHttpProxy
}

/**
 * For a describe block: a redis-server of its own and an HTTP proxy in
 * front of it (through a relay when `relay` makes one), started before the
 * block's tests and stopped after them, proxy first. `started` gets the
 * parts once they run, for the block's own variables:
 *
 *   let redis: TestRedis
 *   let proxy: TestHttpProxy
 *   proxiedRedis({ env }, (parts) => ({ redis, proxy } = parts))
 */
export function proxiedRedis<R extends Relay | undefined = undefined>(
  options: {
    env?: Record<string, string>
    /** The proxy's logger. @default silent */
    log?: Logger
    /** Run on Redis before anything connects to it. */
    prepare?: (redis: TestRedis) => Promise<unknown>
    /** Makes the relay the proxy connects through, given Redis's port. */
    relay?: (redisPort: number) => Promise<R>
  },
  started: (parts: ProxiedRedis<R>) => void,
): void {
  let redis: TestRedis | undefined
  let relay: R | undefined
  let proxy: TestHttpProxy | undefined
  beforeAll(async () => {
    redis = await startRedis()
    await options.prepare?.(redis)
    relay = options.relay === undefined ? (undefined as R) : await options.relay(redis.port)
    const url = relay === undefined ? redis.url : relay.url
    proxy = await startHttpProxy(url, options.env, options.log)
    started({ redis, relay: relay as R, proxy })
  })
  afterAll(async () => {
    await proxy?.close()
    await relay?.close()
    await redis?.stop()
  })
}
