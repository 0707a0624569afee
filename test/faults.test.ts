import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHttpProxy, type TestHttpProxy, waitReady } from './harness/proxy.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis
let proxy: TestHttpProxy

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startHttpProxy(redis.url, { REDIS_COMMAND_TIMEOUT: '500' })
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

describe('when the backing Redis is slow', () => {
  it('answers 504 once REDIS_COMMAND_TIMEOUT passes, and does not cache the failure', async () => {
    await redis.command('SET', 'paused', 'at last')
    // Redis takes the connection's commands and answers none of them meanwhile.
    await redis.command('CLIENT', 'PAUSE', '2500', 'ALL')
    const started = Date.now()
    const failed = await proxy.get('paused')
    const elapsed = Date.now() - started
    expect(failed.status).toBe(504)
    expect(await failed.text()).toBe('Error getting key: paused')
    // The 500 ms timeout, not the 2.5 s pause (which would end in a 200).
    expect(elapsed).toBeGreaterThanOrEqual(450)
    // Answered once the pause is over (CLIENT UNPAUSE would itself wait for it).
    await redis.command('PING')
    await waitReady(proxy.service, 10_000)
    const res = await proxy.get('paused')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-cache')).toBe('MISS')
    expect(await res.text()).toBe('at last')
  })
})

describe('when the backing Redis dies and comes back', () => {
  it('serves cached keys, fails others within 3 s, and recovers by itself', async () => {
    await redis.command('SET', 'cached', 'still here')
    await redis.command('SET', 'uncached', 'x')
    expect((await proxy.get('cached')).headers.get('x-cache')).toBe('MISS')

    await redis.kill()

    const hit = await proxy.get('cached')
    expect(hit.status).toBe(200)
    expect(hit.headers.get('x-cache')).toBe('HIT')
    expect(await hit.text()).toBe('still here')

    // Several at once: none may wait for a reconnect that is not coming.
    const started = Date.now()
    const failures = await Promise.all(Array.from({ length: 10 }, () => proxy.get('uncached')))
    const elapsed = Date.now() - started
    for (const res of failures) {
      expect([502, 504]).toContain(res.status)
      expect(await res.text()).toBe('Error getting key: uncached')
    }
    expect(elapsed).toBeLessThan(3000)

    const status = (await (await fetch(`${proxy.url}/`)).json()) as { backend: string }
    expect(status.backend).not.toBe('ready')

    await redis.restart()
    await redis.command('SET', 'uncached', 'back')
    await waitReady(proxy.service, 10_000)
    const recovered = await proxy.get('uncached')
    expect(recovered.status).toBe(200)
    expect(await recovered.text()).toBe('back')
  })

  it('does not cache the failures it answered while Redis was down', async () => {
    await redis.command('SET', 'flaky', 'one')
    await redis.kill()
    expect([502, 504]).toContain((await proxy.get('flaky')).status)
    await redis.restart()
    await redis.command('SET', 'flaky', 'two')
    await waitReady(proxy.service, 10_000)
    await sleep(10)
    const res = await proxy.get('flaky')
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('two')
  })
})
