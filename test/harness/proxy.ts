import { type HttpServerHandle, startHttpServer } from '../../functions/node.js'
import { AuthGate } from '../../shared/auth/gate.js'
import { readTextFile } from '../../shared/auth/read-file-node.js'
import { type Config, loadConfig } from '../../shared/config.js'
import { createService } from '../../shared/create-service.js'
import { type Logger, silentLogger } from '../../shared/log.js'
import { createMetricsRegistry, type MetricsRegistry } from '../../shared/metrics.js'
import type { ReadThrough } from '../../shared/read-through.js'
import { clusterBackend } from '../../shared/redis/cluster/cluster-backend.js'
import { nativeBackend } from '../../shared/redis/native-backend.js'
import type { ConnectionLimits } from '../../sidecar/connection.js'
import { type RespServerHandle, startRespServer } from '../../sidecar/server.js'
import type { TestRedis } from './redis-server.js'

export type TestHttpProxy = {
  readonly url: string
  readonly port: number
  readonly service: ReadThrough
  readonly server: HttpServerHandle
  readonly config: Config
  readonly metrics: MetricsRegistry
  /** The gate built from the configured users, as main.ts builds it. */
  readonly gate: AuthGate
  get(key: string, init?: RequestInit): Promise<Response>
  close(): Promise<void>
}

/**
 * The HTTP function in this process on an ephemeral port, configured through
 * the same env names users set (files read from disk, as on Node). `gate`
 * options reach the AuthGate, such as a limiter of a test's own.
 */
export async function startHttpProxy(
  redisUrl: string,
  env: Record<string, string> = {},
  log: Logger = silentLogger,
  gateOptions: Omit<ConstructorParameters<typeof AuthGate>[0], 'users' | 'log'> = {},
): Promise<TestHttpProxy> {
  const config = loadConfig({ REDIS_URL: redisUrl, LOG_LEVEL: 'silent', ...env }, readTextFile)
  const service = createService(config, nativeBackend(config, config.http.redisUrl, log))
  await waitReady(service)
  const metrics = createMetricsRegistry({ defaultMetrics: false })
  const gate = new AuthGate({
    users: config.auth.users,
    log,
    onRefused: (client, refusal) => metrics.authRefused(client.interface, refusal.refused),
    ...gateOptions,
  })
  const server = await startHttpServer({
    gate,
    metrics,
    service,
    host: '127.0.0.1',
    port: 0,
    maxClients: config.maxClients,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    headersTimeoutMs: config.http.headersTimeoutMs,
    requestTimeoutMs: config.http.requestTimeoutMs,
    keepAliveTimeoutMs: config.http.keepAliveTimeoutMs,
    log: silentLogger,
  })
  const url = `http://127.0.0.1:${server.port}`
  return {
    url,
    port: server.port,
    service,
    server,
    config,
    metrics,
    gate,
    get: (key, init) => fetch(`${url}/get/${encodeURIComponent(key)}`, init),
    async close() {
      await server.close()
      await service.close()
    },
  }
}

/**
 * Until the backend is connected and the invalidation channel settled (on, off
 * or unsupported): before that, loaded values are not stored.
 */
export async function waitReady(service: ReadThrough, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const backend = service.backend()
    const invalidation = service.invalidation()
    if (backend === 'ready' && invalidation !== 'connecting' && invalidation !== 'lost') return
    if (Date.now() > deadline) {
      throw new Error(`backend not ready: ${backend}, invalidation ${invalidation}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

export type TestRespProxy = {
  readonly port: number
  readonly url: string
  readonly service: ReadThrough
  readonly server: RespServerHandle
  readonly metrics: MetricsRegistry
  close(): Promise<void>
}

/** The RESP sidecar in this process on an ephemeral port, configured through the env names users set. */
export async function startRespProxy(
  redisUrl: string,
  env: Record<string, string> = {},
  limits?: Partial<ConnectionLimits>,
  /** Users and passwords; the server's open default when omitted. */
  gate?: AuthGate,
  /** Where the backend logs (its connection errors, tracking warnings); silent when omitted. */
  backendLog: Logger = silentLogger,
): Promise<TestRespProxy> {
  const config = loadConfig({ REDIS_URL: redisUrl, LOG_LEVEL: 'silent', ...env })
  // As main.ts chooses: REDIS_CLUSTER_NODES puts a cluster behind it.
  const backend =
    config.cluster !== undefined
      ? clusterBackend(config, backendLog, { forwarding: true })
      : nativeBackend(config, config.tcp.redisUrl, backendLog, { forwarding: true })
  const service = createService(config, backend)
  await waitReady(service)
  const forwarder = backend.forwarder as NonNullable<typeof backend.forwarder>
  const metrics = createMetricsRegistry({ defaultMetrics: false })
  const server = await startRespServer({
    forwarder,
    maxBackendConnections: config.maxBackendConnections,
    metrics,
    service,
    host: '127.0.0.1',
    port: 0,
    maxClients: config.maxClients,
    idleTimeoutMs: config.tcp.idleTimeoutMs,
    handshakeTimeoutMs: config.tcp.handshakeTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log: silentLogger,
    ...(limits === undefined ? {} : { limits }),
    ...(gate === undefined ? {} : { gate }),
  })
  return {
    port: server.port,
    url: `redis://127.0.0.1:${server.port}`,
    service,
    server,
    metrics,
    async close() {
      await server.close()
      await forwarder.close()
      await service.close()
    },
  }
}

/**
 * FLUSHALL on the proxy's Redis, then an empty cache, once the flush's
 * invalidation has reached the proxy when invalidation is on: it comes on
 * the proxy's own connection after FLUSHALL's OK, and arriving during the
 * next test it would empty the cache under that test's counts. Tracking is
 * in-band, so the reply to a read the proxy sends after the flush comes
 * after its invalidation: one load of a key nothing else reads is the
 * barrier (an invalidation counter could be moved first by a late one of
 * the test before).
 */
export async function flushBackend(redis: TestRedis, service: ReadThrough): Promise<void> {
  await redis.command('FLUSHALL')
  if (service.invalidation() === 'on') await service.load('redis-proxy-test:flush-barrier')
  service.clear()
}
