import { describe, expect, it } from 'vitest'
import { SlabCache } from '../shared/cache/slab-cache.js'
import { ReadThrough } from '../shared/read-through.js'
import type { SourceState } from '../shared/redis/source.js'
import { createApp } from './app.js'

function service(state: () => SourceState) {
  return new ReadThrough({
    cache: new SlabCache({ capacity: 10, ttlMs: 1000 }),
    source: { get: async () => null, state, close: async () => {} },
    maxParallel: 1,
    maxQueue: 0,
    timeoutMs: 1000,
  })
}

describe('operational routes', () => {
  it('/healthz is 200 whatever the backend does', async () => {
    const app = createApp({ service: service(() => 'reconnecting') })
    const res = await app.request('/healthz')
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('ok\n')
  })

  it('/readyz follows the backend connection and invalidation by default', async () => {
    let state: SourceState = 'connecting'
    const app = createApp({ service: service(() => state) })
    expect((await app.request('/readyz')).status).toBe(503)
    state = 'ready'
    const res = await app.request('/readyz')
    expect(res.status).toBe(200)
    // No invalidation channel: nothing to wait for there.
    expect(await res.json()).toEqual({ ready: true, checks: { backend: true, invalidation: true } })
  })

  it('/readyz takes the checks it is given, and is 503 while draining', async () => {
    let invalidating = false
    let draining = false
    const app = createApp({
      service: service(() => 'ready'),
      readiness: [{ name: 'invalidation', ready: () => invalidating }],
      draining: () => draining,
    })
    expect(await (await app.request('/readyz')).json()).toEqual({
      ready: false,
      checks: { invalidation: false },
    })
    invalidating = true
    expect((await app.request('/readyz')).status).toBe(200)
    draining = true
    const res = await app.request('/readyz')
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({
      ready: false,
      draining: true,
      checks: { invalidation: true },
    })
  })

  it('/metrics renders what it is given, and is absent without it', async () => {
    const without = createApp({ service: service(() => 'ready') })
    expect((await without.request('/metrics')).status).toBe(404)
    const app = createApp({
      service: service(() => 'ready'),
      metrics: { contentType: 'text/plain; version=0.0.4', render: async () => 'm 1\n' },
    })
    const res = await app.request('/metrics')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4')
    expect(await res.text()).toBe('m 1\n')
  })
})
