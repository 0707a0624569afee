import { describe, expect, it, vi } from 'vitest'
import { sample } from '../test/harness/metrics.js'
import { createMetricsRegistry, DURATION_BUCKETS, type MeasuredInterface } from './metrics.js'
import type { ReadThroughStats } from './read-through.js'

function measured(stats: Partial<ReadThroughStats>, connections = 0): MeasuredInterface {
  const full: ReadThroughStats = {
    hits: 0,
    misses: 0,
    evictions: 0,
    expirations: 0,
    keys: 0,
    capacity: 100,
    coalesced: 0,
    backendErrors: 0,
    invalidations: 0,
    reportedKeys: 0,
    reportedCached: 0,
    unstoredLoads: 0,
    inflight: 0,
    queueDepth: 0,
    ...stats,
  }
  return { service: { stats: () => full }, connections: () => connections }
}

describe('createMetricsRegistry', () => {
  it('reads every figure from the tracked interfaces at scrape time, labelled by interface', async () => {
    const registry = createMetricsRegistry({ defaultMetrics: false })
    registry.track(
      'http',
      measured(
        {
          hits: 2,
          misses: 1,
          evictions: 3,
          expirations: 4,
          invalidations: 5,
          backendErrors: 6,
          coalesced: 7,
          keys: 8,
          inflight: 9,
          queueDepth: 10,
          unstoredLoads: 12,
          reportedKeys: 13,
          reportedCached: 14,
        },
        11,
      ),
    )
    registry.track('resp', measured({ hits: 40 }, 2))
    const text = await registry.render()
    const http = { interface: 'http' }
    expect(sample(text, 'redis_proxy_cache_hits_total', http)).toBe(2)
    expect(sample(text, 'redis_proxy_cache_misses_total', http)).toBe(1)
    expect(sample(text, 'redis_proxy_cache_evictions_total', http)).toBe(3)
    expect(sample(text, 'redis_proxy_cache_expirations_total', http)).toBe(4)
    expect(sample(text, 'redis_proxy_cache_invalidations_total', http)).toBe(5)
    expect(sample(text, 'redis_proxy_invalidation_keys_total', http)).toBe(13)
    expect(sample(text, 'redis_proxy_invalidation_keys_cached_total', http)).toBe(14)
    expect(sample(text, 'redis_proxy_backend_errors_total', http)).toBe(6)
    expect(sample(text, 'redis_proxy_coalesced_total', http)).toBe(7)
    expect(sample(text, 'redis_proxy_cache_keys', http)).toBe(8)
    expect(sample(text, 'redis_proxy_inflight', http)).toBe(9)
    expect(sample(text, 'redis_proxy_queue_depth', http)).toBe(10)
    expect(sample(text, 'redis_proxy_connections', http)).toBe(11)
    expect(sample(text, 'redis_proxy_cache_unstored_loads_total', http)).toBe(12)
    expect(sample(text, 'redis_proxy_cache_hits_total', { interface: 'resp' })).toBe(40)
    expect(sample(text, 'redis_proxy_connections', { interface: 'resp' })).toBe(2)
    expect(text).toContain('# TYPE redis_proxy_cache_hits_total counter')
    expect(text).toContain('# TYPE redis_proxy_cache_keys gauge')
  })

  it('follows the figures as they change, and adds up two servers of one interface', async () => {
    const registry = createMetricsRegistry({ defaultMetrics: false })
    let hits = 1
    const zero = measured({}).service.stats()
    registry.track('http', { service: { stats: () => ({ ...zero, hits }) }, connections: () => 0 })
    expect(
      sample(await registry.render(), 'redis_proxy_cache_hits_total', { interface: 'http' }),
    ).toBe(1)
    hits = 5
    const untrack = registry.track('http', measured({ hits: 10 }))
    expect(
      sample(await registry.render(), 'redis_proxy_cache_hits_total', { interface: 'http' }),
    ).toBe(15)
    untrack()
    expect(
      sample(await registry.render(), 'redis_proxy_cache_hits_total', { interface: 'http' }),
    ).toBe(5)
  })

  it('shows a service both interfaces share once, under both their names', async () => {
    const registry = createMetricsRegistry({ defaultMetrics: false })
    const shared = measured({ hits: 3, keys: 2 })
    registry.track('http', { service: shared.service, connections: () => 4 })
    registry.track('resp', { service: shared.service, connections: () => 1 })
    const text = await registry.render()
    expect(sample(text, 'redis_proxy_cache_hits_total', { interface: 'http,resp' })).toBe(3)
    expect(sample(text, 'redis_proxy_cache_keys', { interface: 'http,resp' })).toBe(2)
    expect(sample(text, 'redis_proxy_cache_hits_total', { interface: 'http' })).toBeUndefined()
    expect(sample(text, 'redis_proxy_cache_hits_total', { interface: 'resp' })).toBeUndefined()
    // Connections belong to each interface.
    expect(sample(text, 'redis_proxy_connections', { interface: 'http' })).toBe(4)
    expect(sample(text, 'redis_proxy_connections', { interface: 'resp' })).toBe(1)
  })

  it('puts request durations in cumulative buckets with a sum and a count', async () => {
    const registry = createMetricsRegistry({ defaultMetrics: false })
    const timer = registry.requestTimer('resp')
    // A clock that stands still, so "answered at once" is exactly 0 s: on a
    // busy machine real time could put it past the 100 µs bound.
    vi.useFakeTimers({ toFake: ['performance'] })
    try {
      const now = performance.now()
      // Started 30 ms ago: above the 25 ms bound, well within the 50 ms one.
      timer(now - 30)
      timer(now - 30)
      timer(now)
      // A pipeline of four answered together: four requests, one clock read.
      timer(now, 4)
    } finally {
      vi.useRealTimers()
    }
    const text = await registry.render()
    const bucket = (le: string) =>
      sample(text, 'redis_proxy_request_duration_seconds_bucket', { interface: 'resp', le })
    expect(bucket('0.0001')).toBe(5)
    expect(bucket('0.025')).toBe(5)
    expect(bucket('0.05')).toBe(7)
    expect(bucket('+Inf')).toBe(7)
    expect(sample(text, 'redis_proxy_request_duration_seconds_count', { interface: 'resp' })).toBe(
      7,
    )
    const sum = sample(text, 'redis_proxy_request_duration_seconds_sum', { interface: 'resp' })
    expect(sum).toBeCloseTo(0.06, 9)
    for (const le of DURATION_BUCKETS) expect(bucket(String(le))).toBeDefined()
    expect(text).toContain('# TYPE redis_proxy_request_duration_seconds histogram')
    expect(
      sample(text, 'redis_proxy_request_duration_seconds_count', { interface: 'http' }),
    ).toBeUndefined()
  })

  it('includes the process metrics unless told not to', async () => {
    expect(await createMetricsRegistry().render()).toContain('process_cpu_user_seconds_total')
    expect(await createMetricsRegistry({ defaultMetrics: false }).render()).not.toContain(
      'process_cpu_user_seconds_total',
    )
  })
})
