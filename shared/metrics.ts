import { Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client'
import type { IdleGcSkip } from './idle-gc.js'
import type { ReadThroughStats } from './read-through.js'

/** The two ways in; every per-interface metric carries one as its `interface` label. */
export type InterfaceName = 'http' | 'resp'

/**
 * What an interface lets the registry read, at scrape time only, never per
 * request. Interfaces that share one service (one cache) pass the same object:
 * its figures are then shown once, not once per interface.
 */
export type MeasuredInterface = {
  service: { stats(): ReadThroughStats }
  /** Client connections open now. */
  connections(): number
}

/**
 * Records a request's duration: call with the `performance.now()` taken when
 * it arrived, once its answer is ready. `count` records that many requests that
 * arrived together and were answered together (a pipeline of hits), for the
 * price of one clock read.
 */
export type RequestTimer = (startedAtMs: number, count?: number) => void

export type MetricsRegistry = {
  /** The prom-client registry, for anything else a process wants to expose. */
  readonly prom: Registry
  /** `Content-Type` of `render()`'s text. */
  readonly contentType: string
  /**
   * Exposes an interface's figures under its label. Several registrations
   * under one label add up (two servers of one kind in one process). A service
   * shared by both interfaces is labelled `interface="http,resp"`: one cache
   * cannot tell whose read a hit was. Returns the function that removes it.
   */
  track(name: InterfaceName, measured: MeasuredInterface): () => void
  /** The per-request hook: get it once per server, call it per request. */
  requestTimer(name: InterfaceName): RequestTimer
  /**
   * Counts a refused authentication (`redis_proxy_auth_failures_total`):
   * `reason` is `wrongpass` (unknown user, user off, wrong password) or
   * `limited` (the address failed too often lately).
   */
  authRefused(name: InterfaceName, reason: 'wrongpass' | 'limited'): void
  /**
   * Counts a full collection run because the process was idle
   * (`redis_proxy_idle_gc_total`) and the young-generation bytes it gave back
   * (`redis_proxy_idle_gc_released_bytes_total`).
   */
  idleCollected(releasedBytes: number): void
  /**
   * Counts a look of the idle collection that ran none
   * (`redis_proxy_idle_gc_skipped_total`), by why: `busy`, `small` or `backoff`.
   */
  idleSkipped(reason: IdleGcSkip): void
  /** The Prometheus text exposition. */
  render(): Promise<string>
}

/**
 * Seconds. From a cache hit on loopback (tens of microseconds) to a command
 * that runs into a generous REDIS_COMMAND_TIMEOUT.
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

type Counted = keyof ReadThroughStats

/** Counters that only ever grow, read from ReadThrough.stats() at scrape time. */
const COUNTERS: readonly [name: string, help: string, field: Counted][] = [
  ['redis_proxy_cache_hits_total', 'Reads answered from the cache.', 'hits'],
  ['redis_proxy_cache_misses_total', 'Reads the cache could not answer.', 'misses'],
  [
    'redis_proxy_cache_evictions_total',
    'Entries dropped to make room for a new key (least recently read first).',
    'evictions',
  ],
  [
    'redis_proxy_cache_expirations_total',
    'Entries found older than CACHE_GLOBAL_EXPIRY and dropped.',
    'expirations',
  ],
  [
    'redis_proxy_cache_invalidations_total',
    'Invalidations acted on (one key, or the whole cache).',
    'invalidations',
  ],
  [
    'redis_proxy_invalidation_keys_total',
    "Keys named by Redis's invalidations (with CACHE_TRACKING=bcast, every key written).",
    'reportedKeys',
  ],
  [
    'redis_proxy_invalidation_keys_cached_total',
    "Of the keys named by Redis's invalidations, those the cache held when told.",
    'reportedCached',
  ],
  [
    'redis_proxy_cache_unstored_loads_total',
    'Values loaded but not stored: a write raced the load, or invalidation was not established.',
    'unstoredLoads',
  ],
  [
    'redis_proxy_backend_errors_total',
    'Backend GETs that failed (error reply, timeout, no connection).',
    'backendErrors',
  ],
  [
    'redis_proxy_coalesced_total',
    'Requests that joined a backend GET of the same key already running.',
    'coalesced',
  ],
]

const GAUGES: readonly [name: string, help: string, field: Counted][] = [
  ['redis_proxy_cache_keys', 'Keys in the cache now.', 'keys'],
  ['redis_proxy_inflight', 'Backend GETs running now.', 'inflight'],
  ['redis_proxy_queue_depth', 'Backend GETs waiting for a free slot (MAX_PARALLEL).', 'queueDepth'],
]

const LABELS = ['interface'] as const

/**
 * One registry per process, shared by the HTTP server and the RESP sidecar.
 * Everything but request durations is read from the interfaces at scrape time
 * (prom-client `collect()`), so serving a request costs no metric update.
 */
export function createMetricsRegistry(options: { defaultMetrics?: boolean } = {}): MetricsRegistry {
  const prom = new Registry()
  const tracked = new Map<InterfaceName, Set<MeasuredInterface>>()

  /** Each service once, with the interfaces it serves; stats() read once per scrape per service. */
  const byService = () => {
    const services = new Map<MeasuredInterface['service'], Set<InterfaceName>>()
    for (const [name, set] of tracked) {
      for (const measured of set) {
        let names = services.get(measured.service)
        if (names === undefined) {
          names = new Set()
          services.set(measured.service, names)
        }
        names.add(name)
      }
    }
    const figures = new Map<string, ReadThroughStats[]>()
    for (const [service, names] of services) {
      const label = [...names].sort().join(',')
      figures.set(label, [...(figures.get(label) ?? []), service.stats()])
    }
    return figures
  }

  for (const [name, help, field] of COUNTERS) {
    new Counter({
      name,
      help,
      labelNames: LABELS,
      registers: [prom],
      collect() {
        // A counter has no set(): start from zero and add the current total.
        this.reset()
        for (const [label, all] of byService()) {
          this.inc({ interface: label }, total(all, field))
        }
      },
    })
  }
  for (const [name, help, field] of GAUGES) {
    new Gauge({
      name,
      help,
      labelNames: LABELS,
      registers: [prom],
      collect() {
        this.reset()
        for (const [label, all] of byService()) this.set({ interface: label }, total(all, field))
      },
    })
  }
  new Gauge({
    name: 'redis_proxy_connections',
    help: 'Client connections open now.',
    labelNames: LABELS,
    registers: [prom],
    collect() {
      this.reset()
      for (const [iface, set] of tracked) {
        let open = 0
        for (const measured of set) open += measured.connections()
        this.set({ interface: iface }, open)
      }
    },
  })

  const authFailures = new Counter({
    name: 'redis_proxy_auth_failures_total',
    help: 'Authentications refused: a wrong password, an unknown or disabled user, or an address refused for failing too often.',
    labelNames: ['interface', 'reason'],
    registers: [prom],
  })

  const idleCollections = new Counter({
    name: 'redis_proxy_idle_gc_total',
    help: 'Full garbage collections run because the event loop was idle for IDLE_GC_INTERVAL.',
    registers: [prom],
  })
  const idleReleased = new Counter({
    name: 'redis_proxy_idle_gc_released_bytes_total',
    help: "Bytes of V8's young generation given back by those collections.",
    registers: [prom],
  })

  const idleSkips = new Counter({
    name: 'redis_proxy_idle_gc_skipped_total',
    help: 'Looks of the idle collection that ran none: the loop was busy, the young generation already small, or a backoff after a collection that gave nothing back.',
    labelNames: ['reason'],
    registers: [prom],
  })

  const durations = new DurationHistogram(
    'redis_proxy_request_duration_seconds',
    'Time from a request arriving to its answer being ready to write.',
  )
  prom.registerMetric(durations as unknown as Metric)

  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: prom })

  return {
    prom,
    contentType: prom.contentType,
    track(name, measured) {
      let set = tracked.get(name)
      if (set === undefined) {
        set = new Set()
        tracked.set(name, set)
      }
      set.add(measured)
      return () => {
        set.delete(measured)
        if (set.size === 0) tracked.delete(name)
      }
    },
    requestTimer: (name) => durations.timer(name),
    authRefused: (name, reason) => authFailures.inc({ interface: name, reason }),
    idleCollected: (releasedBytes) => {
      idleCollections.inc()
      idleReleased.inc(Math.max(0, releasedBytes))
    },
    idleSkipped: (reason) => idleSkips.inc({ reason }),
    render: () => prom.metrics(),
  }
}

function total(all: readonly ReadThroughStats[], field: Counted): number {
  let sum = 0
  for (const stats of all) sum += stats[field]
  return sum
}

type Series = { counts: Float64Array; sum: number; count: number }

/**
 * A histogram shaped for the hot path. prom-client's Histogram hashes the label
 * set on every observe (about 350 ns here, measured); this one keeps a plain
 * array of bucket counts per interface, found once when the server starts, so a
 * request costs a few comparisons. prom-client reads it at scrape time through
 * the same `get()` contract its own metrics implement.
 */
class DurationHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #series = new Map<InterfaceName, Series>()

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  timer(name: InterfaceName): RequestTimer {
    let series = this.#series.get(name)
    if (series === undefined) {
      series = { counts: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, count: 0 }
      this.#series.set(name, series)
    }
    const s = series
    const bounds = DURATION_BUCKETS
    const last = bounds.length
    return (startedAtMs, count = 1) => {
      const seconds = (performance.now() - startedAtMs) / 1000
      let i = 0
      while (i < last && seconds > (bounds[i] as number)) i++
      s.counts[i] = (s.counts[i] as number) + count
      s.sum += seconds * count
      s.count += count
    }
  }

  async get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] =
      []
    for (const [iface, series] of this.#series) {
      let cumulative = 0
      for (let i = 0; i <= DURATION_BUCKETS.length; i++) {
        cumulative += series.counts[i] as number
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { interface: iface, le: DURATION_BUCKETS[i] ?? '+Inf' },
          value: cumulative,
        })
      }
      values.push({
        metricName: `${this.name}_sum`,
        labels: { interface: iface },
        value: series.sum,
      })
      values.push({
        metricName: `${this.name}_count`,
        labels: { interface: iface },
        value: series.count,
      })
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    }
  }

  reset(): void {
    for (const series of this.#series.values()) {
      series.counts.fill(0)
      series.sum = 0
      series.count = 0
    }
  }
}
