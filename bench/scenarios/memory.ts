import { sample } from '../../test/harness/metrics.js'
import { startRedis, type TestRedis } from '../../test/harness/redis-server.js'
import { rssOf, sleep } from '../lib/processes.js'
import { formatBytes, formatNumber } from '../lib/stats.js'
import { BENCH_KEY_BYTES, respKeysFill, respKeysGet } from '../load/resp-keys.js'
import { type ProxyTarget, startSidecar } from '../targets/start.js'
import type { BenchContext, Check, Scenario, ScenarioResult } from './types.js'

const VALUE_BYTES = 100
const CONNECTIONS = 50
/** Misses pipelined while filling: the fill's speed, not what is measured. */
const FILL_PIPELINE = 16
/** The issue's bound on RSS growth over the soak once warm. */
const SOAK_SPREAD_TARGET = 0.05

/** Redis's RSS right after a fill, then as read for the comparison. */
type RedisMemory = { rss: number; used: number; loadedRss: number; settledSeconds: number }

/**
 * RSS and used_memory of a redis-server, from /proc and INFO memory, read
 * as the proxy's are: once idle. Redis's allocator (jemalloc, with its
 * background thread) gives pages back over the seconds after a fill (measured
 * 210.3 -> 206.2 MiB about 8 s after writing 1M keys), as V8 gives back its
 * young generation after the proxy's idle collection; so RSS is read every
 * 2 s until it has held within 0.2% for 6 s, at least 10 s and at most 40 s.
 */
async function redisMemory(redis: TestRedis, settle = true): Promise<RedisMemory> {
  const pid = redis.pid() as number
  const loadedRss = rssOf(pid)
  const start = Date.now()
  const readings = [loadedRss]
  // An empty server just started has nothing to give back.
  while (settle) {
    await sleep(2000)
    readings.push(rssOf(pid))
    const last = readings.slice(-4)
    const held = last.length === 4 && Math.max(...last) / Math.min(...last) - 1 <= 0.002
    const waited = Date.now() - start
    if ((held && waited >= 10_000) || waited >= 40_000) break
  }
  const info = String(await redis.command('INFO', 'memory'))
  const used = Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN)
  return {
    rss: readings.at(-1) as number,
    used,
    loadedRss,
    settledSeconds: (Date.now() - start) / 1000,
  }
}
// Keys in Redis beyond the cache's capacity, so the soak also evicts and loads.
const SOAK_KEYSPACE_FACTOR = 1.1

/**
 * GETs every key of 0..count-1 through the sidecar until the cache holds
 * them all, or stops growing within 1% of that (with CACHE_TRACKING=keys,
 * Redis's tracking table, 1M keys by default, invalidates keys of its own when
 * full, and those leave the cache).
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
    // Keys are requested in order, so the first `keys` are (nearly all) cached.
    await respKeysGet({
      port: proxy.respPort,
      clients: CONNECTIONS,
      pipeline: FILL_PIPELINE,
      requests: count - keys,
      keyspace: count - keys,
      first: keys,
      order: 'each',
      seconds: 120,
    })
  }
}

/** What the proxy's idle collection leaves V8's young generation at, or less (shared/idle-gc.ts). */
const YOUNG_IDLE_BYTES = 4 * 1024 * 1024
/**
 * The default IDLE_GC_INTERVAL (5 s) collects 5 to 10 s into the quiet; when
 * V8 still counts the fill, the retry comes one interval later (6-20 s in
 * the runs so far).
 */
const IDLE_WAIT_MS = 40_000
/** Rare enough that the scrapes leave the proxy's event loop idle (each is a few ms). */
const IDLE_POLL_MS = 2000

type IdleReading = {
  /** RSS from /proc once the proxy's own idle collection ran, or at the end of the wait. */
  rss: number
  /** Whether V8's young generation was at its idle size by then. */
  settled: boolean
  /** Whether the idle collection ran during the wait. */
  collected: boolean
  /** Seconds from the end of the load to that reading. */
  seconds: number
}

/**
 * Waits, sending the proxy nothing but a scrape of /metrics every 2 s, until
 * V8's young generation is at its idle size (the proxy's idle collection,
 * IDLE_GC_INTERVAL, on by default, gives it back), then reads RSS
 * from /proc. Nothing here collects: the bench's own `memory()` probe forces a
 * GC, so it is asked only after this reading.
 */
async function rssOnceIdle(proxy: ProxyTarget, after: number): Promise<IdleReading> {
  const start = Date.now()
  for (;;) {
    await sleep(IDLE_POLL_MS)
    const { collections, young } = await scrape(proxy)
    // Small already (a light fill may never grow it), or given back.
    const settled = young <= YOUNG_IDLE_BYTES
    if (settled || Date.now() - start >= IDLE_WAIT_MS) {
      return {
        rss: rssOf(proxy.pid),
        settled,
        collected: collections > after,
        seconds: (Date.now() - start) / 1000,
      }
    }
  }
}

/**
 * From the proxy's /metrics: its idle collections so far and V8's young
 * generation (new space, committed bytes; NaN if absent).
 */
async function scrape(proxy: ProxyTarget): Promise<{ collections: number; young: number }> {
  const text = await (await fetch(`${proxy.origin}/metrics`)).text()
  return {
    collections: sample(text, 'redis_proxy_idle_gc_total') ?? 0,
    young: sample(text, 'nodejs_heap_space_size_total_bytes', { space: 'new' }) ?? Number.NaN,
  }
}

/** Part 5: memory of the running proxy by cached keys, and RSS over a soak. */
export const memoryScenario: Scenario = {
  part: 5,
  id: 'memory',
  title: 'Memory of the running proxy (the RESP sidecar alone)',
  async run(ctx): Promise<ScenarioResult> {
    const { memorySteps, soakSeconds, soakWarmupSeconds } = ctx.budget
    const capacity = Math.max(...memorySteps)
    const keyspace = Math.round(capacity * SOAK_KEYSPACE_FACTOR)
    // Redis as it comes: the proxy's default tracking (BCAST) keeps no
    // tracking table, so its 1,000,000-key limit does not apply.
    const redis = await startRedis()
    let proxy: ProxyTarget | undefined
    try {
      // Redis's own memory for the data the cache will hold, in this run:
      // empty, then with exactly `capacity` keys, before any client tracks them.
      const redisEmpty = await redisMemory(redis, false)
      ctx.progress(`memory: writing ${formatNumber(capacity)} keys of ${VALUE_BYTES} B to Redis`)
      await respKeysFill(redis.port, capacity, VALUE_BYTES)
      const redisFull = await redisMemory(redis)
      // The rest of the soak's key space, so the soak also evicts and loads.
      await respKeysFill(redis.port, keyspace - capacity, VALUE_BYTES, capacity)
      proxy = await startSidecar(redis.url, {
        CACHE_CAPACITY: String(capacity),
        CACHE_GLOBAL_EXPIRY: '3600000',
      })
      const rows: string[][] = []
      // Per step: V8's figures after a full GC (the probe), RSS right after the
      // fill (young generation as the load left it) and once idle.
      type Step = NodeJS.MemoryUsage & { loadedRss: number; idle: IdleReading }
      let empty: Step | undefined
      let full: Step | undefined
      let fullKeys = 0
      const short: number[] = []
      const notCollected: number[] = []
      for (const step of memorySteps) {
        if (step > 0 && (await fill(ctx, proxy, step)) < step) short.push(step)
        const before = (await scrape(proxy)).collections
        const loadedRss = rssOf(proxy.pid)
        ctx.progress(`memory: ${formatNumber(step)} keys, waiting for the proxy to go idle`)
        const idle = await rssOnceIdle(proxy, before)
        if (!idle.settled) notCollected.push(step)
        const memory = { ...(await proxy.memory()), rss: idle.rss, loadedRss, idle }
        const keys = (await proxy.status()).cache.keys
        ctx.progress(
          `memory: ${formatNumber(keys)} keys, RSS ${formatBytes(loadedRss)} after the fill, ${formatBytes(idle.rss)} idle`,
        )
        empty ??= memory
        full = memory
        fullKeys = keys
        const perKey =
          keys === 0
            ? '-'
            : formatNumber(
                (memory.heapUsed + memory.arrayBuffers - empty.heapUsed - empty.arrayBuffers) /
                  keys,
              )
        rows.push([
          formatNumber(keys),
          formatBytes(loadedRss),
          `${formatBytes(idle.rss)} (${formatNumber(idle.seconds)} s${idle.collected ? ', collected' : ''})`,
          formatBytes(memory.heapUsed),
          formatBytes(memory.arrayBuffers),
          perKey,
        ])
      }

      ctx.progress(`memory: soak, ${soakWarmupSeconds} s warm-up + ${soakSeconds} s`)
      const samples: { t: number; rss: number }[] = []
      const pid = proxy.pid
      // The warm-up drives the proxy harder (pipeline 16) than the measured
      // part (pipeline 1), with the same churn: under sustained load V8 grows
      // its young generation to its largest (two 16 MiB semi-spaces) once
      // enough has survived its scavenges, and stays there until the load
      // stops. At pipeline 1 that took 75 s here (16 -> 32 MiB, RSS +13 MiB,
      // past a 45 s warm-up on a machine serving 115k GETs/s), at pipeline 16
      // under 10 s: so the measured part starts from the proxy's steady
      // state under load, not from partway to it.
      const respPort = proxy.respPort
      const churn = (pipeline: number, seconds: number) =>
        respKeysGet({
          port: respPort,
          clients: CONNECTIONS,
          pipeline,
          requests: 1_000_000_000,
          keyspace,
          order: 'uniform',
          seconds,
        })
      // The measured part starts when its own run does, not at a fixed time:
      // no sample of the warm-up's tail, or of the gap between the runs.
      let measuredFrom = Number.POSITIVE_INFINITY
      const start = Date.now()
      const soak = churn(16, soakWarmupSeconds).then(() => {
        measuredFrom = (Date.now() - start) / 1000
        return churn(1, soakSeconds)
      })
      // V8's young generation at the start and the end of the measured part:
      // it starts small (the idle collection gave it back) and grows with the
      // load, which the warm-up is there to cover.
      let youngFirst = Number.NaN
      const sampler = (async () => {
        while (Date.now() - start < (soakWarmupSeconds + soakSeconds - 1) * 1000) {
          await sleep(1000)
          const t = (Date.now() - start) / 1000
          samples.push({ t, rss: rssOf(pid) })
          if (t >= measuredFrom && Number.isNaN(youngFirst))
            youngFirst = (await scrape(proxy)).young
        }
      })()
      const load = await soak
      await sampler
      const youngLast = (await scrape(proxy)).young
      const measured = samples.filter((s) => s.t >= measuredFrom).map((s) => s.rss)
      const first = measured[0] ?? Number.NaN
      const last = measured.at(-1) ?? Number.NaN
      const min = Math.min(...measured)
      const max = Math.max(...measured)
      const spread = max / min - 1
      const afterSoak = await proxy.status()
      // RSS from /proc first: the probe after it forces a GC.
      const afterSoakRss = rssOf(pid)
      const afterSoakMemory = await proxy.memory()
      rows.push([
        `${formatNumber(afterSoak.cache.keys)} after the soak`,
        formatBytes(afterSoakRss),
        '',
        formatBytes(afterSoakMemory.heapUsed),
        formatBytes(afterSoakMemory.arrayBuffers),
        '',
      ])
      const series = samples
        .filter((_, i) => i % 10 === 9)
        .map((s) => `${formatNumber(s.t)} s ${formatBytes(s.rss)}`)
        .join(', ')

      const redisKeys = capacity
      const perKey = {
        proxyTotal: (full?.rss ?? Number.NaN) / fullKeys,
        proxyAdded: ((full?.rss ?? Number.NaN) - (empty?.rss ?? Number.NaN)) / fullKeys,
        redisTotal: redisFull.rss / redisKeys,
        redisAdded: (redisFull.rss - redisEmpty.rss) / redisKeys,
        proxyLive:
          ((full?.heapUsed ?? 0) +
            (full?.arrayBuffers ?? 0) -
            (empty?.heapUsed ?? 0) -
            (empty?.arrayBuffers ?? 0)) /
          fullKeys,
        redisUsed: (redisFull.used - redisEmpty.used) / redisKeys,
      }
      // Each check says what its own figure is made of: the total carries the
      // runtime's empty footprint, the part above empty only what the entries add.
      const emptyLimit = `the proxy's RSS before it caches anything is ${formatBytes(empty?.rss ?? Number.NaN)} (the Node runtime: the node binary's mapped pages, V8's heap spaces, the cache's preallocated tables) against redis-server's ${formatBytes(redisEmpty.rss)}: ${formatNumber(((empty?.rss ?? Number.NaN) - redisEmpty.rss) / fullKeys)} B per entry at ${formatNumber(fullKeys)} entries before the first key; above empty the proxy adds ${formatNumber(perKey.proxyAdded)} B per entry against Redis's ${formatNumber(perKey.redisAdded)}.`
      const addedLimit = `of the proxy's ${formatNumber(perKey.proxyAdded)} B of RSS added per entry, ${formatNumber(perKey.proxyLive)} B is live V8 heap and ArrayBuffer storage after a full GC (the slab cache's key and value bytes and slot records), against Redis's ${formatNumber(perKey.redisUsed)} B per key of used_memory (dictEntry, key sds, value object); the rest is heap V8 keeps beyond the live data.`
      const memoryCheck = (
        name: string,
        proxy: number,
        redisPerKey: number,
        memoryLimit: string,
      ): Check => ({
        name,
        measured: `${formatNumber(proxy)} B against ${formatNumber(redisPerKey)} B`,
        ratio: redisPerKey / proxy,
        targetRatio: 1,
        target: ">= 1.0x (the proxy's no more than Redis's)",
        pass: proxy <= redisPerKey,
        ...(proxy <= redisPerKey ? {} : { limit: memoryLimit }),
      })
      const afterSoakLive = afterSoakMemory.heapUsed + afterSoakMemory.arrayBuffers
      const beforeSoakLive = (full?.heapUsed ?? 0) + (full?.arrayBuffers ?? 0)
      const liveGrowth = afterSoakLive / beforeSoakLive - 1
      const checks: Check[] = [
        memoryCheck(
          `RSS per cached entry at ${formatNumber(fullKeys)} entries, total: redis-server / proxy`,
          perKey.proxyTotal,
          perKey.redisTotal,
          emptyLimit,
        ),
        memoryCheck(
          `RSS per cached entry at ${formatNumber(fullKeys)} entries, above empty: redis-server / proxy`,
          perKey.proxyAdded,
          perKey.redisAdded,
          addedLimit,
        ),
        {
          name: `RSS over a ${soakSeconds} s churn soak after warm-up`,
          measured: `${formatNumber(spread * 100, 1)}% (max/min)`,
          target: `within ${formatNumber(SOAK_SPREAD_TARGET * 100)}%`,
          pass: spread <= SOAK_SPREAD_TARGET,
          ...(spread <= SOAK_SPREAD_TARGET
            ? {}
            : {
                limit: `RSS went from ${formatBytes(first)} to ${formatBytes(last)} while the heap and buffers live after a full GC went from ${formatBytes(beforeSoakLive)} before the soak to ${formatBytes(afterSoakLive)} after it (${formatNumber(liveGrowth * 100, 1)}%): ${liveGrowth > SOAK_SPREAD_TARGET ? 'live data grew with the churn, with the same number of keys cached' : 'live data stayed within the target, so the growth is memory V8 and the allocator keep after collecting the churned values'}${youngLast > youngFirst ? `; V8's young generation grew from ${formatBytes(youngFirst)} to ${formatBytes(youngLast)} within the measured part (the idle collection before the soak had given it back, and the warm-up was too short for it to grow back)` : ''}.`,
              }),
        },
      ]
      return {
        tables: [
          {
            title: `Proxy memory by cached keys of ${VALUE_BYTES} B: RSS right after the fill and once idle (seconds waited; whether the proxy's idle collection ran meanwhile), V8's figures after a full GC`,
            columns: [
              'cached keys',
              'RSS after the fill',
              'RSS idle',
              'heap used',
              'array buffers',
              'heap + buffers per key, B',
            ],
            rows,
          },
          {
            title: `RSS per entry at ${formatNumber(fullKeys)} entries (${BENCH_KEY_BYTES} B keys, ${VALUE_BYTES} B values): the proxy's cache against redis-server holding the same ${formatNumber(redisKeys)} keys, in this run`,
            columns: ['', 'empty', 'with the keys', 'total / keys, B', 'above empty / keys, B'],
            rows: [
              [
                'proxy RSS, idle',
                formatBytes(empty?.rss ?? Number.NaN),
                formatBytes(full?.rss ?? Number.NaN),
                formatNumber(perKey.proxyTotal),
                formatNumber(perKey.proxyAdded),
              ],
              [
                'proxy RSS, right after the fill',
                formatBytes(empty?.loadedRss ?? Number.NaN),
                formatBytes(full?.loadedRss ?? Number.NaN),
                formatNumber((full?.loadedRss ?? Number.NaN) / fullKeys),
                formatNumber(
                  ((full?.loadedRss ?? Number.NaN) - (empty?.loadedRss ?? Number.NaN)) / fullKeys,
                ),
              ],
              [
                `redis-server RSS, settled (${formatNumber(redisFull.settledSeconds)} s after its fill)`,
                formatBytes(redisEmpty.rss),
                formatBytes(redisFull.rss),
                formatNumber(perKey.redisTotal),
                formatNumber(perKey.redisAdded),
              ],
              [
                'redis-server RSS, right after its fill',
                formatBytes(redisEmpty.loadedRss),
                formatBytes(redisFull.loadedRss),
                formatNumber(redisFull.loadedRss / redisKeys),
                formatNumber((redisFull.loadedRss - redisEmpty.loadedRss) / redisKeys),
              ],
              [
                'redis-server used_memory',
                formatBytes(redisEmpty.used),
                formatBytes(redisFull.used),
                formatNumber(redisFull.used / redisKeys),
                formatNumber(perKey.redisUsed),
              ],
            ],
          },
          {
            title: `RSS during the soak: ${soakSeconds} s of GETs by resp-keys from ${CONNECTIONS} clients (pipeline 1) after ${soakWarmupSeconds} s of warm-up (the same GETs at pipeline 16), keys drawn at random from ${formatNumber(keyspace)} (the cache holds ${formatNumber(capacity)})`,
            columns: [
              'first',
              'last',
              'min',
              'max',
              'max/min',
              'req/s',
              'young generation, first / last',
            ],
            rows: [
              [
                formatBytes(first),
                formatBytes(last),
                formatBytes(min),
                formatBytes(max),
                `${formatNumber(spread * 100, 1)}%`,
                formatNumber(load.rps),
                `${formatBytes(youngFirst)} / ${formatBytes(youngLast)}`,
              ],
            ],
          },
        ],
        comparisons: [],
        checks,
        notes: [
          `The proxy's RSS is read from /proc twice at each step: right after the fill's last request, with V8's young generation as the load left it (it grows to 32 MiB under sustained load and V8 gives it back only in a full collection when it sees little allocation), and once idle: once the young generation is at ${formatBytes(YOUNG_IDLE_BYTES)} or less, which after a large fill takes the proxy's own idle collection (IDLE_GC_INTERVAL, default 5 s, on as a user runs it), the bench sending it nothing meanwhile but a scrape of /metrics every ${IDLE_POLL_MS / 1000} s. The checks use the idle figure, as Redis's is read once settled after its fill; the bench's own probe (a forced GC, for the heap figures) runs only after that reading.`,
          ...(notCollected.length === 0
            ? []
            : [
                `V8's young generation was still above ${formatBytes(YOUNG_IDLE_BYTES)} ${IDLE_WAIT_MS / 1000} s after the fill of ${notCollected.map((n) => formatNumber(n)).join(' and ')} keys: those idle figures are what /proc read then.`,
              ]),
          ...(short.length === 0
            ? []
            : [
                `The cache stopped growing just short of ${short.map((n) => formatNumber(n)).join(' and ')} keys: with CACHE_TRACKING=keys Redis tracks every cached key, and when its tracking table (\`tracking-table-max-keys\`, 1,000,000 by default) is full it invalidates keys to make room, which evicts them from the cache.`,
              ]),
          `RSS every 10 s of the soak (warm-up included): ${series}.`,
          `Keys \`key:000000000000\` and up (${BENCH_KEY_BYTES} B), values of ${VALUE_BYTES} B, written by bench/load/resp-keys.c. Redis's RSS was read empty and with the first ${formatNumber(redisKeys)} keys, before the proxy started (so before any key was tracked for invalidation): right after the fill, and again once it had held within 0.2% for 6 s (its allocator gives pages back over the seconds after a fill, as the proxy's idle collection does); the comparison uses that settled figure. Then the rest of the soak's key space was written. The proxy runs the RESP sidecar alone (its entry, dist/main.js, imported by the bench's probe, bench/targets/proxy.ts, without --expose-gc; METRICS_PORT for its /metrics), as a sidecar is deployed; the HTTP interface, when also served, loads Node's fetch implementation (undici) and holds about 5 MiB more. Each step GETs every key in order through the sidecar (resp-keys, ${CONNECTIONS} clients, pipeline ${FILL_PIPELINE}) until /metrics reports them cached. At the largest step the process held ${formatBytes(full?.rss ?? Number.NaN)} RSS. After the soak the cache held ${formatNumber(afterSoak.cache.keys)} keys (${formatNumber(afterSoak.cache.evictions)} evictions and ${formatNumber(afterSoak.cache.invalidations ?? 0)} invalidations from Redis so far).`,
        ],
      }
    } finally {
      await proxy?.stop()
      await redis.stop()
    }
  },
}
