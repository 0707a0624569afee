import { startRedis, type TestRedis } from '../../test/harness/redis-server.js'
import { cpuSecondsOf, run } from '../lib/processes.js'
import { formatNumber, interleave, median } from '../lib/stats.js'
import { type RespLoadResult, redisBenchmarkGet } from '../load/redis-benchmark.js'
import { type ProxyTarget, startProxy } from '../targets/start.js'
import {
  type BenchContext,
  type Comparison,
  compare,
  type Scenario,
  type ScenarioResult,
  type Table,
} from './types.js'

const CLIENTS = 50
const PIPELINES = [1, 16] as const
const HIT_VALUE_BYTES = 3
const MISS_KEYSPACE = 100_000
const MISS_VALUE_BYTES = 100

type Sample = RespLoadResult & { cpuUs: number }

/**
 * redis-benchmark GET against the sidecar and against the redis-server behind
 * it, interleaved, per pipeline depth. CPU µs per request is the serving
 * process's: the sidecar's (the proxy process) or redis-server's own.
 */
async function sideBySide(
  ctx: BenchContext,
  label: string,
  redis: TestRedis,
  proxy: ProxyTarget,
  keyspace: number | undefined,
  targets: Record<number, number>,
  /** Fraction of the budget's requests per run: a miss costs the sidecar several times a hit. */
  share = 1,
): Promise<{ comparisons: Comparison[]; table: Table }> {
  const comparisons: Comparison[] = []
  const rows: string[][] = []
  const redisPid = redis.pid() as number
  for (const pipeline of PIPELINES) {
    const requests = Math.round(ctx.budget.respRequests * share * (pipeline === 1 ? 1 : 3))
    const load = async (port: number, pid: number, n: number): Promise<Sample> => {
      const cpuBefore = cpuSecondsOf(pid)
      const result = await redisBenchmarkGet({
        port,
        clients: CLIENTS,
        pipeline,
        requests: n,
        ...(keyspace === undefined ? {} : { keyspace }),
        timeoutMs: 120_000,
      })
      return { ...result, cpuUs: ((cpuSecondsOf(pid) - cpuBefore) * 1e6) / n }
    }
    ctx.progress(`${label} -P ${pipeline}: warm-up`)
    await load(proxy.respPort, proxy.pid, Math.ceil(requests / 10))
    await load(redis.port, redisPid, Math.ceil(requests / 10))
    const samples = await interleave<Sample>(
      ctx.budget.rounds,
      [
        { name: 'sidecar', run: () => load(proxy.respPort, proxy.pid, requests) },
        { name: 'redis', run: () => load(redis.port, redisPid, requests) },
      ],
      (line) => ctx.progress(`${label} -P ${pipeline}: ${line}`),
    )
    const ours = samples.get('sidecar') ?? []
    const theirs = samples.get('redis') ?? []
    const comparison = compare(
      `${label}, pipeline ${pipeline}`,
      'req/s',
      { name: 'sidecar', samples: ours.map((s) => s.rps) },
      { name: 'redis-server', samples: theirs.map((s) => s.rps) },
      median,
      targets[pipeline],
    )
    comparisons.push(comparison)
    rows.push([
      String(pipeline),
      formatNumber(comparison.ours.value),
      ...latencyAndCpu(ours),
      formatNumber(comparison.theirs.value),
      ...latencyAndCpu(theirs),
      `${formatNumber(comparison.ratio, 2)}x`,
    ])
  }
  return {
    comparisons,
    table: {
      title: `redis-benchmark -t get -c ${CLIENTS}, req/s, latency (ms) and CPU µs per request of the serving process`,
      columns: [
        'pipeline',
        'sidecar req/s',
        'p50',
        'p99',
        'CPU µs/req',
        'redis-server req/s',
        'p50',
        'p99',
        'CPU µs/req',
        'ratio',
      ],
      rows,
    },
  }
}

/** Part 1: RESP cache hits, the sidecar against the redis-server behind it. */
export const respHitsScenario: Scenario = {
  part: 1,
  id: 'resp-hits',
  title: 'RESP cache hits: the sidecar against redis-server',
  async run(ctx): Promise<ScenarioResult> {
    const redis = await startRedis()
    let proxy: ProxyTarget | undefined
    try {
      // redis-benchmark -t get without -r asks for this one key.
      await redis.command('SET', 'key:__rand_int__', 'x'.repeat(HIT_VALUE_BYTES))
      proxy = await startProxy(redis.url, { CACHE_GLOBAL_EXPIRY: '3600000' }, { resp: true })
      const before = (await proxy.status()).cache
      const { comparisons, table } = await sideBySide(ctx, 'RESP hit', redis, proxy, undefined, {
        1: 1.0,
        16: 0.9,
      })
      const after = (await proxy.status()).cache
      return {
        tables: [table],
        comparisons,
        checks: [],
        notes: [
          `One key of ${HIT_VALUE_BYTES} B (redis-benchmark's default size); the sidecar's cache counted ${formatNumber(after.hits - before.hits)} hits and ${formatNumber(after.misses - before.misses)} misses. Medians of ${ctx.budget.rounds} interleaved runs.`,
          'redis-benchmark and the server under test share the two cores with each other (and with other work); the redis-server column is the same redis-server that backs the sidecar.',
        ],
      }
    } finally {
      await proxy?.stop()
      await redis.stop()
    }
  },
}

/** Part 3: every GET a miss, the sidecar against the redis-server behind it. */
export const respMissScenario: Scenario = {
  part: 3,
  id: 'resp-miss',
  title: 'The miss path: every GET a miss, against Redis direct',
  async run(ctx): Promise<ScenarioResult> {
    const redis = await startRedis()
    let proxy: ProxyTarget | undefined
    try {
      ctx.progress(`resp miss: writing ${formatNumber(MISS_KEYSPACE)} keys`)
      // redis-benchmark names keys key:000000012345; its own SET fills them.
      const fill = await redisBenchmarkSet(redis.port)
      if (!fill) throw new Error('could not fill Redis for the miss path')
      // A one-key cache: a GET is a hit only if the previous GET asked for the same key.
      proxy = await startProxy(redis.url, { CACHE_CAPACITY: '1' }, { resp: true })
      const before = (await proxy.status()).cache
      const { comparisons, table } = await sideBySide(
        ctx,
        'RESP miss',
        redis,
        proxy,
        MISS_KEYSPACE,
        { 1: 0.8, 16: 0.8 },
        0.5,
      )
      const after = (await proxy.status()).cache
      const misses = after.misses - before.misses
      const hits = after.hits - before.hits
      return {
        tables: [table],
        comparisons,
        checks: [],
        notes: [
          `Keys drawn at random from ${formatNumber(MISS_KEYSPACE)} (\`-r\`), values of ${MISS_VALUE_BYTES} B, CACHE_CAPACITY=1: the sidecar counted ${formatNumber(misses)} misses and ${formatNumber(hits)} hits. Each miss is a backend GET (concurrent misses of one key coalesced). Medians of ${ctx.budget.rounds} interleaved runs.`,
          'The redis-server column serves the same GETs itself; the sidecar in front of it adds a hop, so its ratio shows what coalescing and pipelining to the backend recover.',
        ],
      }
    } finally {
      await proxy?.stop()
      await redis.stop()
    }
  },
}

async function redisBenchmarkSet(port: number): Promise<boolean> {
  const done = await run(
    'redis-benchmark',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-t',
      'set',
      '-c',
      '50',
      '-P',
      '16',
      '-r',
      String(MISS_KEYSPACE),
      '-n',
      String(MISS_KEYSPACE * 5),
      '-d',
      String(MISS_VALUE_BYTES),
      '-q',
    ],
    { timeoutMs: 120_000 },
  )
  return done.code === 0
}

/** p50 and p99 latency (ms) and CPU µs per request, medians over the samples. */
function latencyAndCpu(samples: Sample[]): string[] {
  const m = (pick: (s: Sample) => number) => median(samples.map(pick))
  return [
    formatNumber(
      m((s) => s.p50Ms),
      3,
    ),
    formatNumber(
      m((s) => s.p99Ms),
      3,
    ),
    formatNumber(
      m((s) => s.cpuUs),
      2,
    ),
  ]
}
