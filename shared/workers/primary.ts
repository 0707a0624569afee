import cluster, { type Worker } from 'node:cluster'
import type { WorkersSetting } from '../config.js'
import type { Logger } from '../log.js'
import { ClusterFigures, type MetricJson, type ProcessMetrics } from './aggregate.js'
import { RestartBackoff } from './backoff.js'
import {
  COLLECT_TIMEOUT_MS,
  isProtocolMessage,
  type PrimaryMessage,
  type WorkerMessage,
} from './messages.js'

/** The variable a worker reads its slot (1..N) from, for its log lines and client ids. */
export const WORKER_SLOT_VARIABLE = 'REDIS_PROXY_WORKER'

/**
 * A worker exits with this (sysexits' EX_CONFIG) when its configuration cannot
 * work (a database the backend does not have): a replacement would fail the
 * same way, so the primary stops the cluster and exits 1, as a single process
 * does, instead of restarting it in a loop.
 */
export const WORKER_CONFIG_EXIT_CODE = 78

/**
 * After SHUTDOWN_TIMEOUT a worker has cut off what was still in flight; this
 * is for closing its backend connections and exiting. Past it, it is killed.
 */
export const STRAGGLER_GRACE_MS = 1000

/** WORKERS as a number of processes: `auto` is one per core this process may use. */
export function resolveWorkers(setting: WorkersSetting, parallelism: () => number): number {
  return setting === 'auto' ? Math.max(1, parallelism()) : setting
}

export type PrimaryOptions = {
  /** Workers to keep running, at least 2 (1 is the process serving by itself). */
  workers: number
  /** What they serve, for the `serving` line. */
  interfaces: readonly string[]
  log: Logger
  /** SHUTDOWN_TIMEOUT: how long each worker drains; stragglers are killed after it. */
  shutdownTimeoutMs: number
  /** With a TLS listener, SIGHUP (reload the certificate) is passed on to every worker. */
  forwardHangup: boolean
  backoff?: RestartBackoff
  /** @default COLLECT_TIMEOUT_MS */
  collectTimeoutMs?: number
}

/** One scrape: the workers asked for their figures that have not answered yet. */
type Round = {
  readonly id: number
  readonly asked: Set<Worker>
  readonly answers: ProcessMetrics[]
  finish(): void
}

/**
 * The node:cluster primary: forks the workers, which each run the whole proxy
 * (listen() in a worker goes through the primary, so every worker shares the
 * HTTP, RESP and METRICS_PORT ports, and the primary hands each new connection
 * to the next worker in turn), replaces one that dies, answers scrapes for the
 * whole cluster, and stops them all on SIGTERM or SIGINT. It serves no client
 * itself and holds no cache or connection to Redis.
 */
export function runPrimary(options: PrimaryOptions): void {
  const { log } = options
  const backoff = options.backoff ?? new RestartBackoff()
  const collectTimeoutMs = options.collectTimeoutMs ?? COLLECT_TIMEOUT_MS
  const figures = new ClusterFigures()
  /** The worker serving each slot now (absent while a replacement waits its backoff). */
  const slots = new Map<number, Worker>()
  const restartTimers = new Set<NodeJS.Timeout>()
  const rounds = new Set<Round>()
  const servingAtStart = new Set<number>()
  let started = false
  let stopping = false
  let failed = false
  let restarts = 0

  const fork = (slot: number) => {
    const worker = cluster.fork({ [WORKER_SLOT_VARIABLE]: String(slot) })
    slots.set(slot, worker)
    backoff.started(slot)
    worker.on('message', (message: unknown) => onMessage(worker, slot, message))
    worker.once('exit', (code, signal) => onExit(worker, slot, code, signal))
  }

  const onMessage = (worker: Worker, slot: number, message: unknown) => {
    if (!isProtocolMessage<WorkerMessage>(message)) return
    switch (message.redisProxy) {
      case 'serving':
        if (started) return
        servingAtStart.add(slot)
        if (servingAtStart.size === options.workers && !stopping) {
          started = true
          // Every worker listens: what `make run` and other supervisors wait for.
          log.info('serving', { interfaces: options.interfaces, workers: options.workers })
        }
        return
      case 'scrape':
        scrape(worker, message.id)
        return
      case 'collected':
        figures.seen(worker.id, message.metrics)
        for (const round of rounds) {
          if (round.id === message.round && round.asked.delete(worker)) {
            round.answers.push(message.metrics)
            if (round.asked.size === 0) round.finish()
          }
        }
        return
    }
  }

  let nextRound = 1
  const scrape = (asker: Worker, id: number) => {
    const live = [...slots.values()].filter((worker) => worker.isConnected())
    const round: Round = {
      id: nextRound++,
      asked: new Set(live),
      answers: [],
      finish: () => {
        if (!rounds.delete(round)) return
        clearTimeout(timer)
        const own = primaryFigures(live.length, restarts, round.answers.length)
        figures.render(round.answers, own).then(
          (text) => reply(asker, { redisProxy: 'scraped', id, text }),
          (err: unknown) => reply(asker, { redisProxy: 'scraped', id, error: String(err) }),
        )
      },
    }
    // A worker stuck or dying must not hang the scrape: answer with those that answered.
    const timer = setTimeout(round.finish, collectTimeoutMs)
    rounds.add(round)
    for (const worker of live) reply(worker, { redisProxy: 'collect', round: round.id })
    if (live.length === 0) round.finish()
  }

  const onExit = (worker: Worker, slot: number, code: number | null, signal: string | null) => {
    if (slots.get(slot) === worker) slots.delete(slot)
    void figures.retire(worker.id)
    for (const round of rounds) {
      if (round.asked.delete(worker) && round.asked.size === 0) round.finish()
    }
    if (stopping) {
      if (slots.size === 0) stopped()
      return
    }
    const pid = worker.process.pid
    if (!started || code === WORKER_CONFIG_EXIT_CODE) {
      // A worker that cannot start (a port taken) or cannot work with this
      // configuration (a database the server does not have) fails as a single
      // process would: the others are stopped and the primary exits 1; a
      // replacement would only fail the same way.
      failed = true
      log.error(
        started ? 'stopping: a worker cannot run with this configuration' : 'start-up failed',
        {
          worker: slot,
          workerPid: pid,
          code,
          signal,
        },
      )
      stop('start-up failed')
      return
    }
    const delayMs = backoff.exited(slot)
    restarts++
    // The one line per crash; the replacement's own lines follow when it listens.
    log.error('worker exited, restarting it', {
      worker: slot,
      workerPid: pid,
      code,
      signal,
      delayMs,
    })
    const timer = setTimeout(() => {
      restartTimers.delete(timer)
      if (!stopping) fork(slot)
    }, delayMs)
    restartTimers.add(timer)
  }

  let killTimer: NodeJS.Timeout | undefined
  const stop = (reason: string) => {
    if (stopping) return
    stopping = true
    for (const timer of restartTimers) clearTimeout(timer)
    restartTimers.clear()
    if (!failed) log.info('shutting down', { signal: reason, workers: slots.size })
    if (slots.size === 0) {
      stopped()
      return
    }
    // Each worker drains as a single process does: not ready, answers what it
    // has, then closes; SHUTDOWN_TIMEOUT bounds it, and then this does.
    for (const worker of slots.values()) worker.process.kill('SIGTERM')
    killTimer = setTimeout(() => {
      for (const [slot, worker] of slots) {
        log.warn('worker did not stop in time, killing it', {
          worker: slot,
          workerPid: worker.process.pid,
        })
        worker.process.kill('SIGKILL')
      }
    }, options.shutdownTimeoutMs + STRAGGLER_GRACE_MS)
  }

  const stopped = () => {
    clearTimeout(killTimer)
    if (failed) process.exit(1)
    log.info('stopped')
    process.exit(0)
  }

  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  if (options.forwardHangup) {
    process.on('SIGHUP', () => {
      for (const worker of slots.values()) worker.process.kill('SIGHUP')
    })
  }
  for (let slot = 1; slot <= options.workers; slot++) fork(slot)
}

/** Sends unless the worker's channel is gone (it is exiting; its exit settles what it owed). */
function reply(worker: Worker, message: PrimaryMessage): void {
  if (!worker.isConnected()) return
  worker.send(message, undefined, () => {})
}

/** The primary's own figures, added to every scrape. */
function primaryFigures(running: number, restarts: number, answered: number): ProcessMetrics {
  const gauge = (name: string, help: string, value: number): MetricJson => ({
    name,
    help,
    type: 'gauge',
    aggregator: 'sum',
    values: [{ value, labels: {} }],
  })
  return [
    gauge('redis_proxy_workers', 'Worker processes running now (WORKERS).', running),
    gauge(
      'redis_proxy_workers_scraped',
      'Workers whose figures this scrape holds: fewer than redis_proxy_workers when one did not answer in time.',
      answered,
    ),
    {
      name: 'redis_proxy_worker_restarts_total',
      help: 'Workers that exited unasked and were replaced.',
      type: 'counter',
      aggregator: 'sum',
      values: [{ value: restarts, labels: {} }],
    },
  ]
}
