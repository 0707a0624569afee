import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { backendConnected } from '../shared/health.js'
import { startMetricsServer } from '../shared/metrics-server.js'
import { sample } from './harness/metrics.js'
import { startHttpProxy, startRespProxy, type TestHttpProxy, waitReady } from './harness/proxy.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

let redis: TestRedis
let proxy: TestHttpProxy

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startHttpProxy(redis.url, { REDIS_COMMAND_TIMEOUT: '3000' })
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

const http = { interface: 'http' }

async function scrape(url = proxy.url): Promise<string> {
  const res = await fetch(`${url}/metrics`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4')
  return res.text()
}

async function readyz(url = proxy.url): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url}/readyz`)
  return { status: res.status, body: await res.json() }
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > deadline) return value
    await sleep(25)
  }
}

describe('GET /metrics on the HTTP server', () => {
  it('shows one miss and two hits as such, and every request in the duration histogram', async () => {
    await redis.command('SET', 'counted', 'v')
    const before = await scrape()
    const figure = (text: string, name: string) => sample(text, name, http) ?? 0

    expect((await proxy.get('counted')).headers.get('x-cache')).toBe('MISS')
    expect((await proxy.get('counted')).headers.get('x-cache')).toBe('HIT')
    expect((await proxy.get('counted')).headers.get('x-cache')).toBe('HIT')

    const after = await scrape()
    const moved = (name: string) => figure(after, name) - figure(before, name)
    expect(moved('redis_proxy_cache_misses_total')).toBe(1)
    expect(moved('redis_proxy_cache_hits_total')).toBe(2)
    expect(moved('redis_proxy_backend_errors_total')).toBe(0)
    expect(figure(after, 'redis_proxy_cache_keys')).toBe(proxy.service.stats().keys)
    expect(figure(after, 'redis_proxy_cache_keys')).toBeGreaterThanOrEqual(1)
    expect(figure(after, 'redis_proxy_connections')).toBeGreaterThanOrEqual(1)
    expect(figure(after, 'redis_proxy_inflight')).toBe(0)
    expect(figure(after, 'redis_proxy_queue_depth')).toBe(0)
    // Three GETs, plus the first scrape: it is recorded once its answer is
    // ready, before this second scrape could even be sent.
    expect(moved('redis_proxy_request_duration_seconds_count')).toBe(4)
    expect(
      sample(after, 'redis_proxy_request_duration_seconds_bucket', { ...http, le: '+Inf' }),
    ).toBe(figure(after, 'redis_proxy_request_duration_seconds_count'))
  })

  it('counts coalesced reads, backend errors and invalidations', async () => {
    await redis.command('SET', 'shared', 'v')
    await redis.command('HSET', 'a-hash', 'f', 'v')
    const before = await scrape()
    const figure = (text: string, name: string) => sample(text, name, http) ?? 0

    // Long enough for all five to reach the proxy while the first GET is held.
    await redis.command('CLIENT', 'PAUSE', '500', 'ALL')
    const together = await Promise.all(Array.from({ length: 5 }, () => proxy.get('shared')))
    expect(together.map((res) => res.status)).toEqual([200, 200, 200, 200, 200])
    expect((await proxy.get('a-hash')).status).toBe(502)
    proxy.service.invalidateBytes(Buffer.from('shared'))

    const after = await scrape()
    const moved = (name: string) => figure(after, name) - figure(before, name)
    expect(moved('redis_proxy_coalesced_total')).toBe(4)
    expect(moved('redis_proxy_backend_errors_total')).toBe(1)
    expect(moved('redis_proxy_cache_invalidations_total')).toBe(1)
  })
})

describe('the RESP sidecar in the registry', () => {
  it('shows one miss and a pipeline of two hits as such, under interface="resp"', async () => {
    const resp = await startRespProxy(redis.url)
    const conn = await rawConnect(resp.port)
    try {
      await redis.command('SET', 'over-resp', 'v')
      const figure = async (name: string) =>
        sample(await resp.metrics.render(), name, { interface: 'resp' })
      conn.send(command('GET', 'over-resp'))
      expect(await conn.replies(1)).toEqual([Buffer.from('v')])
      conn.send(Buffer.concat([command('GET', 'over-resp'), command('GET', 'over-resp')]))
      expect(await conn.replies(2)).toEqual([Buffer.from('v'), Buffer.from('v')])

      expect(await figure('redis_proxy_cache_misses_total')).toBe(1)
      expect(await figure('redis_proxy_cache_hits_total')).toBe(2)
      expect(await figure('redis_proxy_cache_keys')).toBe(1)
      expect(await figure('redis_proxy_connections')).toBe(1)
      expect(await figure('redis_proxy_request_duration_seconds_count')).toBe(3)

      // INFO proxy tells a redis-cli user the same figures.
      conn.send(command('INFO', 'proxy'))
      const [info] = await conn.replies(1)
      const fields = new Map(
        String(info)
          .split('\r\n')
          .map((line) => line.split(':') as [string, string]),
      )
      for (const [field, metric] of [
        ['cache_hits', 'redis_proxy_cache_hits_total'],
        ['cache_misses', 'redis_proxy_cache_misses_total'],
        ['cache_keys', 'redis_proxy_cache_keys'],
        ['invalidations', 'redis_proxy_cache_invalidations_total'],
        ['invalidation_keys', 'redis_proxy_invalidation_keys_total'],
        ['invalidation_keys_cached', 'redis_proxy_invalidation_keys_cached_total'],
        ['coalesced', 'redis_proxy_coalesced_total'],
        ['backend_errors', 'redis_proxy_backend_errors_total'],
      ] as const) {
        expect(Number(fields.get(field)), field).toBe(await figure(metric))
      }
    } finally {
      conn.close()
      await resp.close()
    }
  })

  it("counts the keys Redis's invalidations name, and those of them the cache held", async () => {
    // Written before the proxy tracks anything, so no report of these is in flight.
    await redis.command('SET', 'reported-cached', 'v')
    await redis.command('SET', 'reported-uncached', 'v')
    const resp = await startRespProxy(redis.url)
    const conn = await rawConnect(resp.port)
    try {
      const figure = async (name: string) =>
        (sample(await resp.metrics.render(), name, { interface: 'resp' }) ?? 0) as number
      conn.send(command('GET', 'reported-cached'))
      expect(await conn.replies(1)).toEqual([Buffer.from('v')])
      const keys = await figure('redis_proxy_invalidation_keys_total')
      const cached = await figure('redis_proxy_invalidation_keys_cached_total')

      // Other clients' writes (tracking by broadcast: every key written is named).
      await redis.command('SET', 'reported-cached', 'w')
      await redis.command('SET', 'reported-uncached', 'w')
      const named = await until(
        () => figure('redis_proxy_invalidation_keys_total'),
        (value) => value - keys >= 2,
      )
      expect(named - keys).toBe(2)
      expect((await figure('redis_proxy_invalidation_keys_cached_total')) - cached).toBe(1)
      // The sidecar's own write: evicted when sent, and named by Redis too.
      conn.send(command('SET', 'reported-uncached', 'x'))
      expect(await conn.replies(1)).toEqual(['OK'])
      const after = await until(
        () => figure('redis_proxy_invalidation_keys_total'),
        (value) => value - keys >= 3,
      )
      expect(after - keys).toBe(3)
      expect((await figure('redis_proxy_invalidation_keys_cached_total')) - cached).toBe(1)
    } finally {
      conn.close()
      await resp.close()
    }
  })
})

type ReadyBody = { ready: boolean; checks: Record<string, boolean> }

describe('/healthz and /readyz', () => {
  const readyBody = async () => {
    const { status, body } = await readyz()
    return { status, body: body as ReadyBody }
  }

  it('stay 200 while Redis answers; readiness turns 503 when it dies and 200 when it returns', async () => {
    const ready = {
      status: 200,
      body: { ready: true, checks: { backend: true, invalidation: true } },
    }
    expect(await until(readyBody, (r) => r.status === 200)).toEqual(ready)
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200)

    await redis.kill()
    const down = await until(
      readyBody,
      (r) => r.status === 503 && !r.body.checks.backend && !r.body.checks.invalidation,
    )
    expect(down).toEqual({
      status: 503,
      body: { ready: false, checks: { backend: false, invalidation: false } },
    })
    // Alive all the same: restarting the proxy would not bring Redis back.
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200)

    await redis.restart()
    expect(await until(readyBody, (r) => r.status === 200)).toEqual(ready)
    await waitReady(proxy.service)
  })
})

describe('startMetricsServer (METRICS_PORT)', () => {
  it('serves the same registry, liveness and readiness on a port of its own', async () => {
    const server = await startMetricsServer({
      registry: proxy.metrics,
      host: '127.0.0.1',
      port: 0,
      readiness: [backendConnected(proxy.service)],
    })
    try {
      const url = `http://127.0.0.1:${server.port}`
      const hits = (text: string) => sample(text, 'redis_proxy_cache_hits_total', http)
      await redis.command('SET', 'both', 'v')
      await proxy.get('both')
      await proxy.get('both')
      expect(hits(await scrape(url))).toBe(proxy.service.stats().hits)
      expect(hits(await scrape(url))).toBe(hits(await scrape(proxy.url)))

      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      expect(
        await until(
          () => readyz(url),
          (r) => r.status === 200,
        ),
      ).toEqual({
        status: 200,
        body: { ready: true, checks: { backend: true } },
      })
      expect((await fetch(`${url}/elsewhere`)).status).toBe(404)
      expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405)

      await redis.kill()
      expect(
        (
          await until(
            () => readyz(url),
            (r) => r.status === 503,
          )
        ).status,
      ).toBe(503)
      await redis.restart()
      expect(
        (
          await until(
            () => readyz(url),
            (r) => r.status === 200,
          )
        ).status,
      ).toBe(200)
      await waitReady(proxy.service)
    } finally {
      await server.close()
    }
  })
})
