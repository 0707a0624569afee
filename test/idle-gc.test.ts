import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sample } from './harness/metrics.js'
import { freePort } from './harness/ports.js'
import { spawnProxy, waitForHttp } from './harness/process.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis()
  await redis.command('SET', 'k', 'v')
})
afterAll(async () => redis?.stop())

const MiB = 1024 * 1024

async function start(idleGcInterval: string) {
  const port = await freePort()
  // V8's own memory reducer shrinks a young generation this small 4-6 s
  // after traffic stops (seen here with IDLE_GC_INTERVAL=0: 8 MiB to 1 MiB),
  // and when it comes first the idle collection has nothing to do and counts
  // nothing. Off, the 8 MiB stayed 30 s: what gives it back is then ours.
  const proxy = spawnProxy(
    ['http'],
    {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      IDLE_GC_INTERVAL: idleGcInterval,
    },
    ['--no-memory-reducer'],
  )
  const base = `http://127.0.0.1:${port}`
  await waitForHttp(`${base}/`)
  const metrics = async () => {
    const text = await (await fetch(`${base}/metrics`)).text()
    return {
      young: sample(text, 'nodejs_heap_space_size_total_bytes', { space: 'new' }) ?? Number.NaN,
      collections: sample(text, 'redis_proxy_idle_gc_total') ?? Number.NaN,
      released: sample(text, 'redis_proxy_idle_gc_released_bytes_total') ?? Number.NaN,
      skipped: Object.fromEntries(
        (['busy', 'small', 'backoff'] as const).map((reason) => [
          reason,
          sample(text, 'redis_proxy_idle_gc_skipped_total', { reason }) ?? 0,
        ]),
      ),
    }
  }
  /** Requests from 16 clients at once for `ms`: enough for V8 to grow its young generation. */
  const load = async (ms: number) => {
    const until = Date.now() + ms
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (Date.now() < until) await (await fetch(`${base}/get/k`)).text()
      }),
    )
  }
  return { proxy, metrics, load }
}

describe('the idle collection (IDLE_GC_INTERVAL)', () => {
  it("gives V8's young generation back once the proxy is idle, and counts it", async () => {
    const { proxy, metrics, load } = await start('1000')
    try {
      await load(1500)
      const loaded = await metrics()
      // Start-up alone leaves 8 MiB here; the load may grow it further.
      expect(loaded.young).toBeGreaterThan(4 * MiB)
      // The load's own intervals were busy, and counted as such.
      expect(loaded.skipped.busy).toBeGreaterThanOrEqual(1)
      // V8 shrinks only once its last 5 s of allocation look quiet: the
      // first idle collections may give nothing back (then back off). A
      // scrape every 5 s leaves most intervals idle, and allocates too
      // little to set off a full collection of V8's own.
      const deadline = Date.now() + 30_000
      let now = loaded
      // Every scrape, with why looks ran no collection: what a failure shows.
      const seen = [loaded]
      while (!(now.released > 0 && now.young <= 4 * MiB) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5000))
        now = await metrics()
        seen.push(now)
      }
      const history = JSON.stringify(seen)
      expect(now.collections, history).toBeGreaterThanOrEqual(1)
      expect(now.released, history).toBeGreaterThan(0)
      expect(now.young, history).toBeLessThanOrEqual(4 * MiB)
    } finally {
      proxy.child.kill('SIGTERM')
      await proxy.exited()
    }
  }, 45_000)
})
