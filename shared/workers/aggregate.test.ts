import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { ClusterFigures, processMetrics } from './aggregate.js'

/** A worker's registry: a counter, a gauge and a histogram, as the proxy's own. */
function workerRegistry(requests: number, keys: number, durations: number[]) {
  const registry = new Registry()
  new Counter({
    name: 'requests_total',
    help: 'r',
    labelNames: ['interface'],
    registers: [registry],
  })
    .labels('resp')
    .inc(requests)
  new Gauge({ name: 'cache_keys', help: 'k', registers: [registry] }).set(keys)
  const histogram = new Histogram({
    name: 'duration_seconds',
    help: 'd',
    buckets: [0.001, 0.01],
    registers: [registry],
  })
  for (const seconds of durations) histogram.observe(seconds)
  return registry
}

/** The value of a sample line `name{labels} value` in an exposition. */
function value(text: string, sample: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? undefined : Number(line.slice(sample.length + 1))
}

describe('ClusterFigures', () => {
  it('adds every worker’s counters, gauges and histogram buckets up', async () => {
    const figures = new ClusterFigures()
    const one = await processMetrics(workerRegistry(3, 10, [0.0005, 0.005]))
    const two = await processMetrics(workerRegistry(4, 5, [0.5]))
    const text = await figures.render([one, two], [])
    expect(value(text, 'requests_total{interface="resp"}')).toBe(7)
    expect(value(text, 'cache_keys')).toBe(15)
    expect(value(text, 'duration_seconds_bucket{le="0.001"}')).toBe(1)
    expect(value(text, 'duration_seconds_bucket{le="0.01"}')).toBe(2)
    expect(value(text, 'duration_seconds_bucket{le="+Inf"}')).toBe(3)
    expect(value(text, 'duration_seconds_count')).toBe(3)
    // One family each, whatever the number of workers.
    expect(text.match(/^# TYPE requests_total counter$/gm)).toHaveLength(1)
  })

  it('keeps counting what a dead worker last reported, so no counter goes down; drops its gauges', async () => {
    const figures = new ClusterFigures()
    const survivor = await processMetrics(workerRegistry(3, 10, [0.0005]))
    const dying = await processMetrics(workerRegistry(4, 5, [0.5]))
    figures.seen(1, survivor)
    figures.seen(2, dying)
    const before = await figures.render([survivor, dying], [])
    await figures.retire(2)
    const replacement = await processMetrics(workerRegistry(1, 2, []))
    const after = await figures.render([survivor, replacement], [])
    expect(value(before, 'requests_total{interface="resp"}')).toBe(7)
    expect(value(after, 'requests_total{interface="resp"}')).toBe(8)
    expect(value(after, 'duration_seconds_count')).toBe(2)
    expect(value(after, 'duration_seconds_bucket{le="+Inf"}')).toBe(2)
    // A gauge is now: the dead worker's keys are gone with its cache.
    expect(value(after, 'cache_keys')).toBe(12)
  })

  it('counts two workers that die at once both', async () => {
    const figures = new ClusterFigures()
    figures.seen(1, await processMetrics(workerRegistry(3, 0, [])))
    figures.seen(2, await processMetrics(workerRegistry(4, 0, [])))
    const retiring = [figures.retire(1), figures.retire(2)]
    const text = await figures.render([], [])
    await Promise.all(retiring)
    expect(value(text, 'requests_total{interface="resp"}')).toBe(7)
  })

  it('adds a worker that never answered a scrape nothing when it dies', async () => {
    const figures = new ClusterFigures()
    await figures.retire(9)
    const text = await figures.render([await processMetrics(workerRegistry(2, 1, []))], [])
    expect(value(text, 'requests_total{interface="resp"}')).toBe(2)
  })
})
