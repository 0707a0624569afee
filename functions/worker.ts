import type { Hono } from 'hono'
import { AuthGate } from '../shared/auth/gate.js'
import type { Clock } from '../shared/cache/lru-cache.js'
import { type Config, ConfigError, loadConfig } from '../shared/config.js'
import { createService } from '../shared/create-service.js'
import { createLogger, type Logger } from '../shared/log.js'
import { createIoredisPerReadSource } from '../shared/redis/ioredis-source.js'
import type { RedisSource } from '../shared/redis/source.js'
import { createUpstashRestSource } from '../shared/redis/upstash-rest-source.js'
import { createApp, type GetClientAddress } from './app.js'

/** Worker bindings. `[vars]` and secrets are strings (numbers and booleans if written unquoted). */
export type WorkerEnv = Record<string, unknown>

export type WorkerHandler = {
  fetch(request: Request, env: WorkerEnv): Promise<Response>
}

const TEXT = { 'Content-Type': 'text/plain; charset=utf-8' }

/**
 * The HTTP function on Cloudflare Workers: the same createApp as on Node,
 * configured from the Worker's bindings. Bindings reach a Worker only with its
 * first request, so the service is built then, once, and kept for the
 * isolate's life: one cache per isolate, shared by every request it serves.
 */
export function createWorker(): WorkerHandler {
  let app: Hono | undefined
  return {
    async fetch(request, env) {
      if (app === undefined) {
        let config: Config
        try {
          // No file reader: the Worker has no filesystem, so *_FILE variables
          // are refused; the password is a secret binding (PROXY_PASSWORD), and
          // users beyond the default one come inline (PROXY_ACL, a secret too).
          config = loadConfig(stringBindings(env))
          // Silently reading one node of a cluster would answer MOVED for
          // most keys: a cluster is the Node proxy's alone.
          if (config.cluster !== undefined) {
            throw new ConfigError(
              `Invalid REDIS_CLUSTER_NODES=${JSON.stringify(String(env.REDIS_CLUSTER_NODES ?? ''))}: a Redis Cluster is served by the Node proxy only, not the Worker`,
            )
          }
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err
          // Every request answers the same 500 until the binding is fixed; nothing half-built is kept.
          console.error(`redis-proxy: ${err.message}`)
          return new Response(`redis-proxy: ${err.message}\n`, { status: 500, headers: TEXT })
        }
        app = buildApp(config)
      }
      return app.fetch(request)
    },
  }
}

/**
 * The cache's clock on Workers: a fresh reading at every call. The default
 * clock (systemClock) keeps its reading until a timer clears it, but workerd
 * drops a request's timers when the request ends, so the reading taken during
 * an isolate's first request would stand for the isolate's life and nothing
 * cached would ever expire. Reading the time here costs no system call:
 * workerd's clock is a number it advances only across I/O, which is enough
 * between requests.
 */
const workersClock: Clock = { now: () => performance.now() }

function buildApp(config: Config): Hono {
  const log = createLogger(config.logLevel, (line) => console.log(line.trimEnd()))
  const service = createService(
    config,
    { source: edgeSource(config, log) },
    { clock: workersClock },
  )
  const kind = config.rest === undefined ? 'tcp' : 'rest'
  // One gate per isolate: its failure limiter sees only this isolate's requests.
  const gate = new AuthGate({ users: config.auth.users, log })
  return createApp({
    service,
    gate,
    clientAddress: workersClientAddress,
    status: () => ({ runtime: 'workers', source: kind }),
  })
}

/**
 * The client address port on Workers: Cloudflare's edge sets
 * CF-Connecting-IP to the address that connected to it (a client cannot
 * choose it there); without the header (a service binding, a test) every
 * request is one `unknown` client.
 */
export const workersClientAddress: GetClientAddress = (c) =>
  c.req.header('cf-connecting-ip') ?? 'unknown'

/**
 * The source is chosen by configuration alone: an Upstash REST URL and token
 * when set (for platforms without TCP), else `REDIS_URL` over TCP through
 * nodejs_compat sockets. A Worker's socket cannot outlive the request that
 * opened it, so the TCP source connects once per read (hits never connect).
 */
function edgeSource(config: Config, log: Logger): RedisSource {
  if (config.rest !== undefined) {
    return createUpstashRestSource({
      url: config.rest.url,
      token: config.rest.token,
      commandTimeoutMs: config.redis.commandTimeoutMs,
    })
  }
  return createIoredisPerReadSource({
    url: config.http.redisUrl,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => log.warn('backing redis error', { error: err.message }),
  })
}

/** Only plain values are configuration; service bindings, KV and the like are not. */
function stringBindings(env: WorkerEnv): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(env ?? {})) {
    if (typeof value === 'string') out[name] = value
    else if (typeof value === 'number' || typeof value === 'boolean') out[name] = String(value)
  }
  return out
}

export default createWorker()
