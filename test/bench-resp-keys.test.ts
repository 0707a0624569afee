import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { benchKey, respKeysFill, respKeysGet } from '../bench/load/resp-keys.js'
import { backendGetCount, startRedis, type TestRedis } from './harness/redis-server.js'

/**
 * The bench's RESP load generator (bench/load/resp-keys.c) against a real
 * redis-server: what it writes, that it counts every reply, and that its
 * Zipf keys are skewed as a Zipf(0.99) is. No timing is asserted.
 *
 * With `allkeys-lfu`, `lfu-log-factor 0` and `lfu-decay-time 0`, OBJECT FREQ
 * is an exact access count (plus the 5 a new key starts at) up to 255, which
 * shows how often each key was asked for.
 */
const LFU_INIT = 5

let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis([
    '--maxmemory-policy',
    'allkeys-lfu',
    '--lfu-log-factor',
    '0',
    '--lfu-decay-time',
    '0',
  ])
})

afterAll(async () => {
  await redis?.stop()
})

beforeEach(async () => {
  await redis.command('FLUSHALL')
  await redis.command('CONFIG', 'RESETSTAT')
})

/** Accesses per key 0..count-1 since it was written, from OBJECT FREQ. */
async function accesses(count: number): Promise<number[]> {
  const out: number[] = []
  for (let n = 0; n < count; n++) {
    out.push(Number(await redis.command('OBJECT', 'FREQ', benchKey(n))) - LFU_INIT)
  }
  return out
}

const get = (options: Partial<Parameters<typeof respKeysGet>[0]>) =>
  respKeysGet({
    port: redis.port,
    clients: 4,
    pipeline: 16,
    requests: 1000,
    keyspace: 1000,
    order: 'each',
    seconds: 30,
    ...options,
  })

describe('bench/load/resp-keys.c', () => {
  it('writes each key once, 16 B names from an offset, with values of the asked size', async () => {
    await respKeysFill(redis.port, 500, 100)
    await respKeysFill(redis.port, 20, 7, 500)
    expect(await redis.command('DBSIZE')).toBe(520)
    expect(benchKey(499)).toBe('key:000000000499')
    expect(String(await redis.command('GET', benchKey(499)))).toBe('v'.repeat(100))
    expect(String(await redis.command('GET', benchKey(519)))).toBe('v'.repeat(7))
    expect(await redis.command('EXISTS', benchKey(520))).toBe(0)
  })

  it('counts every pipelined reply and each nil, reading each key once in order', async () => {
    await respKeysFill(redis.port, 600, 100)
    const result = await get({ requests: 1000, keyspace: 1000, pipeline: 16 })
    expect(result.requests).toBe(1000)
    expect(result.nils).toBe(400)
    expect(result.errors).toBe(0)
    expect(await backendGetCount(redis)).toBe(1000)
    expect((await accesses(600)).every((n) => n === 1)).toBe(true)
  })

  it('asks a few keys most of the time under Zipf(0.99), and no key much more than others uniformly', async () => {
    const keyspace = 1000
    const requests = 1000
    await respKeysFill(redis.port, keyspace, 10)
    const zipf = await get({ order: 'zipf', zipfS: 0.99, requests, keyspace, pipeline: 1 })
    expect(zipf.requests).toBe(requests)
    expect(zipf.nils).toBe(0)
    const counts = (await accesses(keyspace)).sort((a, b) => b - a)
    expect(counts.reduce((a, b) => a + b, 0)).toBe(requests)
    // P(rank 1) = 1 / H(1000, 0.99) ≈ 0.137: about 137 of 1000, far from the 1 a uniform choice gives.
    const h = Array.from({ length: keyspace }, (_, k) => 1 / (k + 1) ** 0.99).reduce(
      (a, b) => a + b,
    )
    expect(counts[0]).toBeGreaterThan((requests / h) * 0.6)
    expect(counts[0]).toBeLessThan((requests / h) * 1.5)
    // The 10 hottest keys take about 40% of the requests (H(10) / H(1000)).
    const top10 = counts.slice(0, 10).reduce((a, b) => a + b, 0)
    expect(top10 / requests).toBeGreaterThan(0.3)
    expect(top10 / requests).toBeLessThan(0.5)

    await redis.command('FLUSHALL')
    await respKeysFill(redis.port, keyspace, 10)
    await get({ order: 'uniform', requests, keyspace, pipeline: 1 })
    const uniform = (await accesses(keyspace)).sort((a, b) => b - a)
    expect(uniform.reduce((a, b) => a + b, 0)).toBe(requests)
    expect(uniform[0]).toBeLessThan(15)
  })

  it('asks the same sequence every run, so the proxy and Redis get the same load', async () => {
    await respKeysFill(redis.port, 1000, 10)
    await get({ order: 'zipf', requests: 500, pipeline: 1, clients: 1 })
    const first = await accesses(1000)
    await redis.command('FLUSHALL')
    await respKeysFill(redis.port, 1000, 10)
    await get({ order: 'zipf', requests: 500, pipeline: 1, clients: 1 })
    expect(await accesses(1000)).toEqual(first)
  })

  it('stops at its time bound before its request count', async () => {
    await respKeysFill(redis.port, 100, 10)
    const result = await get({
      order: 'uniform',
      requests: 1_000_000_000,
      keyspace: 100,
      seconds: 1,
    })
    expect(result.requests).toBeGreaterThan(0)
    expect(result.requests).toBeLessThan(1_000_000_000)
    expect(result.seconds).toBeLessThan(10)
  })
})
