import type { MetricsRegistry } from '../metrics.js'
import { processMetrics } from './aggregate.js'
import {
  isProtocolMessage,
  type PrimaryMessage,
  SCRAPE_TIMEOUT_MS,
  type WorkerMessage,
} from './messages.js'

/** A worker's end of the IPC channel to its primary. */
export type PrimaryChannel = {
  send(message: WorkerMessage): void
  onMessage(listener: (message: unknown) => void): void
}

/** node:cluster's channel in a worker: the process's own IPC. */
export function processChannel(): PrimaryChannel {
  return {
    send(message) {
      // The primary is gone (the worker exits on its own then): nothing to tell.
      if (!process.connected || process.send === undefined) return
      process.send(message, undefined, {}, () => {})
    },
    onMessage(listener) {
      process.on('message', listener)
    },
  }
}

export type ClusterWorker = {
  /**
   * The process's registry, with `render()` answering for the whole
   * cluster: whichever worker is scraped, `/metrics` (on the HTTP port and
   * on METRICS_PORT) shows every worker's figures added up.
   */
  readonly metrics: MetricsRegistry
  /** Tells the primary every listener is up. */
  serving(): void
}

/**
 * A worker's part in the cluster: answers the primary's requests for its
 * figures, and asks the primary for everyone's when it is scraped.
 */
export function joinCluster(
  metrics: MetricsRegistry,
  channel: PrimaryChannel = processChannel(),
  timeoutMs = SCRAPE_TIMEOUT_MS,
): ClusterWorker {
  type Pending = { resolve(text: string): void; reject(err: Error): void; timer: NodeJS.Timeout }
  const pending = new Map<number, Pending>()
  let nextId = 1

  channel.onMessage((message) => {
    if (!isProtocolMessage<PrimaryMessage>(message)) return
    switch (message.redisProxy) {
      case 'collect':
        processMetrics(metrics.prom).then(
          (figures) =>
            channel.send({ redisProxy: 'collected', round: message.round, metrics: figures }),
          // A collect() that throws leaves this worker out of the round; the
          // primary's bound answers without it.
          () => {},
        )
        return
      case 'scraped': {
        const waiting = pending.get(message.id)
        if (waiting === undefined) return
        pending.delete(message.id)
        clearTimeout(waiting.timer)
        if ('text' in message) waiting.resolve(message.text)
        else waiting.reject(new Error(message.error))
        return
      }
    }
  })

  const render = (): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`the primary did not answer the scrape within ${timeoutMs} ms`))
      }, timeoutMs)
      timer.unref()
      pending.set(id, { resolve, reject, timer })
      channel.send({ redisProxy: 'scrape', id })
    })

  return {
    metrics: { ...metrics, render },
    serving: () => channel.send({ redisProxy: 'serving' }),
  }
}
