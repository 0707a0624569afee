import type { ProcessMetrics } from './aggregate.js'

/**
 * What the primary and its workers say to each other over the cluster's IPC
 * channel. Every message carries `redisProxy`, so anything else on the channel
 * (node:cluster's own messages are internal; a library's would not be) is left
 * alone.
 *
 * A scrape: the worker that was asked for `/metrics` sends `scrape`; the
 * primary sends `collect` to every live worker (the asking one too), each
 * answers `collected` with its registry, and the primary answers `scraped`
 * with the whole cluster's exposition, once every worker answered or the
 * bound passed.
 */
export type WorkerMessage =
  /** Every listener of this worker is up. */
  | { redisProxy: 'serving' }
  | { redisProxy: 'scrape'; id: number }
  | { redisProxy: 'collected'; round: number; metrics: ProcessMetrics }

export type PrimaryMessage =
  | { redisProxy: 'collect'; round: number }
  | { redisProxy: 'scraped'; id: number; text: string }
  | { redisProxy: 'scraped'; id: number; error: string }

/** True for a message of this protocol (the kind is checked by the switch that reads it). */
export function isProtocolMessage<T extends WorkerMessage | PrimaryMessage>(
  message: unknown,
): message is T {
  return (
    typeof message === 'object' &&
    message !== null &&
    typeof (message as { redisProxy?: unknown }).redisProxy === 'string'
  )
}

/**
 * How long the primary waits for every worker's figures before answering a
 * scrape with the workers that did answer: a worker stuck on a long task (or
 * dying) must not hang the scrape. Well under Prometheus's default
 * scrape_timeout of 10 s.
 */
export const COLLECT_TIMEOUT_MS = 1000

/** How long a worker waits for the primary's answer before failing the scrape. */
export const SCRAPE_TIMEOUT_MS = COLLECT_TIMEOUT_MS + 2000
