import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import { AuthGate } from './shared/auth/gate.js'
import { readTextFile } from './shared/auth/read-file-node.js'
import { ConfigError, configWarnings, describeConfig, loadConfig } from './shared/config.js'
import { createService } from './shared/create-service.js'
import { readEnv } from './shared/env-file.js'
import { backendConnected, invalidationEstablished, type ReadinessCheck } from './shared/health.js'
import { IdleGc, nodeIdleGcParts } from './shared/idle-gc.js'
import { createPinoLogger } from './shared/log-pino.js'
import { createMetricsRegistry } from './shared/metrics.js'
import { startMetricsServer } from './shared/metrics-server.js'
import type { ReadThrough } from './shared/read-through.js'
import { clusterBackend } from './shared/redis/cluster/cluster-backend.js'
import { nativeBackend } from './shared/redis/native-backend.js'
import type { RedisForwarder } from './shared/redis/source.js'
import { backendTlsOptions } from './shared/tls-files.js'
import { createTlsListener } from './shared/tls-listener.js'
import {
  resolveWorkers,
  runPrimary,
  WORKER_CONFIG_EXIT_CODE,
  WORKER_SLOT_VARIABLE,
} from './shared/workers/primary.js'
import { joinCluster } from './shared/workers/worker.js'
import { startRespServer } from './sidecar/server.js'

type Closable = { close(): Promise<void> }

/**
 * How a bad setting ends the process: 1, as always; in a worker, the code
 * that tells the primary a replacement would fail the same way, so the
 * cluster stops with the worker's one line instead of restarting it in a loop.
 */
const CONFIG_EXIT_CODE = cluster.isWorker ? WORKER_CONFIG_EXIT_CODE : 1

/**
 * Runs the proxy: `node dist/main.js` starts every interface, `node dist/main.js http`
 * only the HTTP function, `node dist/main.js resp` only the RESP sidecar. One
 * process, one shutdown path for SIGTERM and SIGINT. Interfaces that read the
 * same backing Redis share one service: one cache, one connection.
 *
 * With WORKERS above 1 this process is a node:cluster primary (see
 * runPrimary) and each worker it forks runs this same function, serving every
 * interface on the same ports with a cache and connections of its own.
 */
async function main(args: string[]): Promise<void> {
  const config = orExit(() => loadConfig(readEnv(), readTextFile))
  const workers = resolveWorkers(config.workers, availableParallelism)
  const primary = cluster.isPrimary && workers > 1
  // The primary validated everything already and logged it; a worker's lines
  // carry its slot so one process's lines read together.
  const slot = cluster.isWorker
    ? Number(process.env[WORKER_SLOT_VARIABLE] ?? cluster.worker?.id)
    : 0
  const log = createPinoLogger(config.logLevel, undefined, slot > 0 ? { worker: slot } : {})
  // The files are read and checked now, so a missing or bad one stops
  // start-up with one line like any bad variable.
  orExit(() => backendTlsOptions(config))
  const listenerFiles = config.tls.listener
  const tls =
    listenerFiles === undefined ? undefined : orExit(() => createTlsListener(listenerFiles, log))
  const wanted = new Set(args.length > 0 ? args : ['http', 'resp'])
  for (const name of wanted) {
    if (name !== 'http' && name !== 'resp') {
      process.stderr.write(`redis-proxy: unknown interface '${name}' (expected: http, resp)\n`)
      process.exit(1)
    }
  }
  if (primary) {
    // The one line an operator needs to know what this process was told.
    log.info('starting', { interfaces: [...wanted], workers, config: describeConfig(config) })
    for (const warning of configWarnings(config)) log.warn(warning)
    runPrimary({
      workers,
      interfaces: [...wanted],
      log,
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      forwardHangup: tls !== undefined,
    })
    return
  }
  const worker = cluster.isWorker ? joinCluster(createMetricsRegistry()) : undefined
  if (worker === undefined) {
    log.info('starting', { interfaces: [...wanted], workers, config: describeConfig(config) })
    for (const warning of configWarnings(config)) log.warn(warning)
  }

  // One registry and one list of readiness checks for the whole process: every
  // part adds itself, and every endpoint (/metrics and /readyz on the HTTP
  // server and on METRICS_PORT) reports all of them.
  const metrics = worker?.metrics ?? createMetricsRegistry()
  // One gate for every interface: one failure limiter per client address
  // whichever way it guesses, one log line and one metric per refusal.
  const gate = new AuthGate({
    users: config.auth.users,
    log,
    onRefused: (client, refusal) => metrics.authRefused(client.interface, refusal.refused),
  })
  const readiness: ReadinessCheck[] = []
  const services = new Map<string, ReadThrough>()
  const forwarders = new Map<string, RedisForwarder>()
  const serviceFor = (redisUrl: string): ReadThrough => {
    let service = services.get(redisUrl)
    if (service === undefined) {
      // The sidecar relays every other command to this backend.
      const forwarding = wanted.has('resp') && redisUrl === config.tcp.redisUrl
      // With a cluster, both interfaces have the one URL (config.ts refuses
      // per-server hosts beside it): one cluster backend for both.
      const backend =
        config.cluster !== undefined
          ? clusterBackend(config, log, { forwarding })
          : nativeBackend(config, redisUrl, log, {
              // A database the server does not have fails on every retry: stop
              // start-up with one line, as for a bad variable.
              onRefused: (reason) => {
                process.stderr.write(`redis-proxy: Invalid REDIS_URL: ${reason}\n`)
                process.exit(CONFIG_EXIT_CODE)
              },
              forwarding,
            })
      service = createService(config, backend)
      if (backend.forwarder !== undefined) forwarders.set(redisUrl, backend.forwarder)
      services.set(redisUrl, service)
      const suffix = services.size === 1 ? '' : `-${services.size}`
      readiness.push(
        backendConnected(service, `backend${suffix}`),
        invalidationEstablished(service, `invalidation${suffix}`),
      )
    }
    return service
  }
  const servers: Closable[] = []
  try {
    if (wanted.has('http')) {
      // Imported only when served: Hono's Node adapter reads the global
      // Request and Response as it loads, which loads Node's fetch
      // implementation (undici). The sidecar run alone (`node dist/main.js
      // resp`) measured 4.6 MiB less RSS at start-up without it.
      const { startHttpServer } = await import('./functions/node.js')
      servers.push(
        await startHttpServer({
          service: serviceFor(config.http.redisUrl),
          host: config.http.host,
          port: config.http.port,
          maxClients: config.maxClients,
          shutdownTimeoutMs: config.shutdownTimeoutMs,
          headersTimeoutMs: config.http.headersTimeoutMs,
          requestTimeoutMs: config.http.requestTimeoutMs,
          keepAliveTimeoutMs: config.http.keepAliveTimeoutMs,
          log,
          metrics,
          readiness,
          gate,
          ...(tls !== undefined && { tls }),
        }),
      )
    }
    if (wanted.has('resp')) {
      servers.push(
        await startRespServer({
          service: serviceFor(config.tcp.redisUrl),
          ...(forwarders.has(config.tcp.redisUrl) && {
            forwarder: forwarders.get(config.tcp.redisUrl) as RedisForwarder,
          }),
          host: config.tcp.host,
          port: config.tcp.port,
          maxClients: config.maxClients,
          maxBackendConnections: config.maxBackendConnections,
          idleTimeoutMs: config.tcp.idleTimeoutMs,
          handshakeTimeoutMs: config.tcp.handshakeTimeoutMs,
          shutdownTimeoutMs: config.shutdownTimeoutMs,
          log,
          metrics,
          gate,
          ...(tls !== undefined && { tls }),
          ...(slot > 0 && { clientIds: { first: slot, step: workers } }),
        }),
      )
    }
    if (config.metrics.port !== undefined) {
      servers.push(
        await startMetricsServer({
          registry: metrics,
          host: config.metrics.host,
          port: config.metrics.port,
          readiness,
          log,
          gate,
          ...(tls !== undefined && { tls }),
        }),
      )
    }
    // SIGHUP or a changed file: new connections get the new certificate.
    tls?.watch()
    if (config.idleGcIntervalMs > 0) {
      new IdleGc(
        {
          intervalMs: config.idleGcIntervalMs,
          onCollect: ({ youngBefore, youngAfter, ms }) => {
            metrics.idleCollected(youngBefore - youngAfter)
            log.debug('idle gc', { youngBefore, youngAfter, ms: Math.round(ms * 10) / 10 })
          },
          onSkip: (reason) => metrics.idleSkipped(reason),
          onError: (error) =>
            log.warn('idle gc off: a collection failed', { error: String(error) }),
        },
        nodeIdleGcParts(),
      ).start()
    }
    if (worker === undefined) {
      // Every listener is up: what `make run` and other supervisors wait for.
      log.info('serving', { interfaces: [...wanted] })
    } else {
      // The primary says `serving` once every worker has.
      log.info('worker serving', { interfaces: [...wanted] })
      worker.serving()
    }
  } catch (err) {
    log.error('start-up failed', { error: (err as Error).message })
    process.exit(1)
  }

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info(worker === undefined ? 'shutting down' : 'worker shutting down', { signal })
    await Promise.all(servers.map((server) => server.close()))
    await Promise.all([...forwarders.values()].map((forwarder) => forwarder.close()))
    await Promise.all([...services.values()].map((service) => service.close()))
    log.info(worker === undefined ? 'stopped' : 'worker stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

/** A ConfigError stops start-up with its one line; anything else is a bug and throws. */
function orExit<T>(load: () => T): T {
  try {
    return load()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`redis-proxy: ${err.message}\n`)
      process.exit(CONFIG_EXIT_CODE)
    }
    throw err
  }
}

await main(process.argv.slice(2))
