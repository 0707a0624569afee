import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { spawnProxy, waitForHttp } from './harness/process.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => redis?.stop())

describe('the proxy process', () => {
  it('finishes requests in flight on SIGTERM, then exits 0', async () => {
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
    })
    const base = `http://127.0.0.1:${port}`
    await waitForHttp(`${base}/`)
    await redis.command('SET', 'slow', 'answered')

    // Hold the backend so the requests are still in flight when the signal lands.
    await redis.command('CLIENT', 'PAUSE', '400', 'ALL')
    const inflight = Array.from({ length: 10 }, (_, i) =>
      fetch(`${base}/get/slow`, { headers: { 'x-n': String(i) } }),
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    proxy.child.kill('SIGTERM')

    const answers = await Promise.all(inflight)
    for (const res of answers) {
      expect(res.status).toBe(200)
      expect(await res.text()).toBe('answered')
    }
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    await expect(fetch(`${base}/`)).rejects.toThrow()
    expect(proxy.logs()).toContain('"msg":"stopped"')
  })

  it('refuses to start on a bad value, naming it in one line', async () => {
    const proxy = spawnProxy(['http'], { CACHE_CAPACITY: '0' })
    const { code } = await proxy.exited()
    expect(code).toBe(1)
    expect(proxy.logs().trim()).toBe(
      'redis-proxy: Invalid CACHE_CAPACITY="0": expected an integer from 1 to 16777216',
    )
  })
})
