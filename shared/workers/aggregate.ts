import { AggregatorRegistry, type Registry } from 'prom-client'

/**
 * One metric as `Registry#getMetricsAsJSON()` gives it at run time (its
 * published typings name a numeric enum for `type`, which is a string).
 */
export type MetricJson = {
  name: string
  help: string
  type: string
  aggregator: string
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[]
}

/** One process's registry: what crosses IPC. */
export type ProcessMetrics = MetricJson[]

/** A registry's figures as plain data, for IPC and for aggregation. */
export async function processMetrics(registry: Registry): Promise<ProcessMetrics> {
  return (await registry.getMetricsAsJSON()) as unknown as ProcessMetrics
}

/** Only ever grow: a dead worker's last figures of these still count. */
const MONOTONIC = new Set(['counter', 'histogram'])

/**
 * The cluster's figures: every worker's registry folded into one exposition
 * by prom-client's per-metric `aggregator` (ours are all `sum`: hits, misses,
 * requests, connections and cached keys add up across processes; of the
 * default metrics, memory and CPU add up, event loop lag is averaged, the
 * version is the first).
 *
 * A counter must not go down, or Prometheus reads a reset and `rate()`
 * counts the survivors' whole totals again. So the last figures a worker
 * reported are kept when it exits, and its counters and histograms stay in
 * every later sum: what it counted between its last scrape and its death is
 * lost, nothing is counted twice. Gauges of a dead worker are dropped.
 */
export class ClusterFigures {
  /** Counters and histograms of every worker that exited, folded into one. */
  #retired: ProcessMetrics = []
  /** The fold under way: retirements one after another, each scrape after them. */
  #folding: Promise<void> = Promise.resolve()
  /** Each live worker's figures from the last scrape it answered. */
  readonly #lastSeen = new Map<number, ProcessMetrics>()

  /** `worker` answered a scrape with `metrics`. */
  seen(worker: number, metrics: ProcessMetrics): void {
    this.#lastSeen.set(worker, metrics)
  }

  /** `worker` exited: what it last reported keeps counting. */
  retire(worker: number): Promise<void> {
    const last = this.#lastSeen.get(worker)
    this.#lastSeen.delete(worker)
    if (last === undefined) return this.#folding
    const monotonic = last.filter((metric) => MONOTONIC.has(metric.type))
    // Chained: two workers dying at once must both land in #retired.
    this.#folding = this.#folding.then(async () => {
      this.#retired = await processMetrics(AggregatorRegistry.aggregate([this.#retired, monotonic]))
    })
    return this.#folding
  }

  /** The exposition of `answered` (one per worker), the retired workers' and `own`, in one. */
  async render(answered: readonly ProcessMetrics[], own: ProcessMetrics): Promise<string> {
    await this.#folding
    return AggregatorRegistry.aggregate([...answered, this.#retired, own]).metrics()
  }
}
