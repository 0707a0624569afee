import { startRedis } from '../../test/harness/redis-server.js'
import { rssOf, sleep } from '../lib/processes.js'
import { formatBytes, formatNumber } from '../lib/stats.js'
import { type ProxyTarget, startProxy } from '../targets/start.js'
import type { BenchContext, Check, Scenario, ScenarioResult } from './types.js'

const VALUE_BYTES = 100
const CONNECTIONS = 50
// Keys in Redis beyond the cache's capacity, so the soak also evicts and loads.
const SOAK_KEYSPACE_FACTOR = 1.1

/**
 * Requests every key of 0..count-1 through the proxy until the cache holds
 * them all, or stops growing within 1% of that (Redis's tracking table, 1M keys
 * by default, invalidates keys of its own when full, and those leave the cache).
 */
async function fill(ctx: BenchContext, proxy: ProxyTarget, count: number): Promise<number> {
  const deadline = Date.now() + 240_000
  let last = -1
  for (;;) {
    const { keys } = (await proxy.status()).cache
    if (keys >= count || (keys === last && keys >= count * 0.99)) return keys
    if (Date.now() > deadline) throw new Error(`cache holds ${keys} keys, wanted ${count}`)
    last = keys
    ctx.progress(`memory: filling, ${formatNumber(keys)} of ${formatNumber(count)} keys cached`)
    await ctx.httpLoad.run({
      origin: proxy.origin,
      // Keys are requested in order, so the first `keys` are (nearly all) cached.
      path: { prefix: '/get/key:', count, order: 'cycle', from: keys },
      connections: CONNECTIONS,
      seconds: Math.min(10, Math.max(2, Math.ceil((count - keys) / 20_000))),
    })
  }
}

/** Part 5: memory of the running proxy by cached keys, and RSS over a soak. */
export const memoryScenario: Scenario = {
  part: 5,
  id: 'memory',
  title: 'Memory of the running proxy (HTTP)',
  async run(ctx): Promise<ScenarioResult> {
    const { memorySteps, soakSeconds, soakWarmupSeconds } = ctx.budget
    const capacity = Math.max(...memorySteps)
    const keyspace = Math.round(capacity * SOAK_KEYSPACE_FACTOR)
    const redis = await startRedis(['--enable-debug-command', 'local'])
    let proxy: ProxyTarget | undefined
    try {
      ctx.progress(`memory: writing ${formatNumber(keyspace)} keys of ${VALUE_BYTES} B to Redis`)
      await redis.command('DEBUG', 'POPULATE', String(keyspace), 'key', String(VALUE_BYTES))
      proxy = await startProxy(redis.url, {
        CACHE_CAPACITY: String(capacity),
        CACHE_GLOBAL_EXPIRY: '3600000',
      })
      const rows: string[][] = []
      let empty: NodeJS.MemoryUsage | undefined
      let full: NodeJS.MemoryUsage | undefined
      const short: number[] = []
      for (const step of memorySteps) {
        if (step > 0 && (await fill(ctx, proxy, step)) < step) short.push(step)
        const memory = await proxy.memory()
        const keys = (await proxy.status()).cache.keys
        ctx.progress(`memory: ${formatNumber(keys)} keys, RSS ${formatBytes(memory.rss)}`)
        empty ??= memory
        full = memory
        const perKey =
          keys === 0
            ? '-'
            : formatNumber(
                (memory.heapUsed + memory.arrayBuffers - empty.heapUsed - empty.arrayBuffers) /
                  keys,
              )
        rows.push([
          formatNumber(keys),
          formatBytes(memory.rss),
          formatBytes(memory.heapUsed),
          formatBytes(memory.arrayBuffers),
          perKey,
        ])
      }

      ctx.progress(`memory: soak, ${soakWarmupSeconds} s warm-up + ${soakSeconds} s`)
      const samples: { t: number; rss: number }[] = []
      const pid = proxy.pid
      const soak = ctx.httpLoad.run({
        origin: proxy.origin,
        path: { prefix: '/get/key:', count: keyspace, order: 'random' },
        connections: CONNECTIONS,
        seconds: soakWarmupSeconds + soakSeconds,
      })
      const start = Date.now()
      const sampler = (async () => {
        while (Date.now() - start < (soakWarmupSeconds + soakSeconds - 1) * 1000) {
          await sleep(1000)
          samples.push({ t: (Date.now() - start) / 1000, rss: rssOf(pid) })
        }
      })()
      const load = await soak
      await sampler
      const measured = samples.filter((s) => s.t >= soakWarmupSeconds).map((s) => s.rss)
      const first = measured[0] ?? Number.NaN
      const last = measured.at(-1) ?? Number.NaN
      const min = Math.min(...measured)
      const max = Math.max(...measured)
      const spread = max / min - 1
      const afterSoak = await proxy.status()
      const afterSoakMemory = await proxy.memory()
      rows.push([
        `${formatNumber(afterSoak.cache.keys)} after the soak`,
        formatBytes(afterSoakMemory.rss),
        formatBytes(afterSoakMemory.heapUsed),
        formatBytes(afterSoakMemory.arrayBuffers),
        '',
      ])
      const series = samples
        .filter((_, i) => i % 10 === 9)
        .map((s) => `${formatNumber(s.t)} s ${formatBytes(s.rss)}`)
        .join(', ')

      const checks: Check[] = [
        {
          name: `RSS over a ${soakSeconds} s soak after warm-up`,
          measured: `${formatNumber(spread * 100, 1)}% (max/min)`,
          target: 'within 10%',
          pass: spread <= 0.1,
        },
      ]
      return {
        tables: [
          {
            title: `Proxy memory by cached keys of ${VALUE_BYTES} B (after a full GC)`,
            columns: [
              'cached keys',
              'RSS',
              'heap used',
              'array buffers',
              'heap + buffers per key, B',
            ],
            rows,
          },
          {
            title: `RSS during the soak: ${soakSeconds} s of ${ctx.httpLoad.name} at ${CONNECTIONS} connections after ${soakWarmupSeconds} s of warm-up, keys drawn at random from ${formatNumber(keyspace)} (the cache holds ${formatNumber(capacity)})`,
            columns: ['first', 'last', 'min', 'max', 'max/min', 'req/s'],
            rows: [
              [
                formatBytes(first),
                formatBytes(last),
                formatBytes(min),
                formatBytes(max),
                `${formatNumber(spread * 100, 1)}%`,
                formatNumber(load.rps),
              ],
            ],
          },
        ],
        comparisons: [],
        checks,
        notes: [
          ...(short.length === 0
            ? []
            : [
                `The cache stopped growing just short of ${short.map((n) => formatNumber(n)).join(' and ')} keys: with CACHE_INVALIDATION=on Redis tracks every cached key, and when its tracking table (\`tracking-table-max-keys\`, 1,000,000 by default) is full it invalidates keys to make room, which evicts them from the cache.`,
              ]),
          `RSS every 10 s of the soak (warm-up included): ${series}.`,
          `Values written by \`DEBUG POPULATE\`; each step requests every key through the proxy until \`GET /\` reports them cached. At the largest step the process held ${formatBytes(full?.rss ?? Number.NaN)} RSS. After the soak the cache held ${formatNumber(afterSoak.cache.keys)} keys (${formatNumber(afterSoak.cache.evictions)} evictions and ${formatNumber(afterSoak.cache.invalidations ?? 0)} invalidations from Redis so far).`,
        ],
      }
    } finally {
      await proxy?.stop()
      await redis.stop()
    }
  },
}
