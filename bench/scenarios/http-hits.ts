import { startRedis } from '../../test/harness/redis-server.js'
import { cpuSecondsOf } from '../lib/processes.js'
import { formatBytes, formatNumber, interleave, median } from '../lib/stats.js'
import type { HttpLoadResult } from '../load/http.js'
import { type HttpTarget, startBareHttp, startProxy } from '../targets/start.js'
import {
  type Check,
  type Comparison,
  compare,
  type Scenario,
  type ScenarioResult,
} from './types.js'

const SIZES = [64, 1024, 100 * 1024] as const
const CONNECTIONS = 50
const P99_TARGET_MS = 5

/** One load run, with the CPU time the target spent per request. */
type Sample = HttpLoadResult & { cpuUs: number }

/** Part 2: cache hits over HTTP against a bare node:http server with a body of the same size. */
export const httpHitsScenario: Scenario = {
  part: 2,
  id: 'http-hits',
  title: 'HTTP cache hits: GET /get/{key} against a bare node:http server',
  async run(ctx): Promise<ScenarioResult> {
    const { rounds, httpSeconds } = ctx.budget
    const redis = await startRedis()
    const started: HttpTarget[] = []
    try {
      for (const size of SIZES) await redis.command('SET', `bench:${size}`, Buffer.alloc(size, 'v'))
      ctx.progress('http: starting the proxy')
      // An expiry longer than the run: every measured request is a hit.
      const proxy = await startProxy(redis.url, { CACHE_GLOBAL_EXPIRY: '3600000' })
      started.push(proxy)
      for (const size of SIZES) {
        const res = await fetch(`${proxy.origin}/get/bench:${size}`)
        if ((await res.arrayBuffer()).byteLength !== size) throw new Error('proxy answered wrong')
      }
      const before = await proxy.status()

      const comparisons: Comparison[] = []
      const checks: Check[] = []
      const rows: string[][] = []
      let failures = 0
      for (const size of SIZES) {
        const bare = await startBareHttp(size)
        started.push(bare)
        const path = `/get/bench:${size}`
        const load = async (target: HttpTarget, seconds: number): Promise<Sample> => {
          const cpuBefore = cpuSecondsOf(target.pid)
          const result = await ctx.httpLoad.run({
            origin: target.origin,
            path,
            connections: CONNECTIONS,
            seconds,
          })
          const cpuUs = ((cpuSecondsOf(target.pid) - cpuBefore) * 1e6) / result.requests
          failures += result.errors + result.non2xx
          return { ...result, cpuUs }
        }
        ctx.progress(`http ${formatBytes(size)}: warm-up`)
        await load(proxy, 1)
        await load(bare, 1)
        const samples = await interleave<Sample>(
          rounds,
          [
            { name: 'proxy', run: () => load(proxy, httpSeconds) },
            { name: 'bare', run: () => load(bare, httpSeconds) },
          ],
          (line) => ctx.progress(`http ${formatBytes(size)}: ${line}`),
        )
        await bare.stop()
        started.pop()
        const ours = samples.get('proxy') ?? []
        const theirs = samples.get('bare') ?? []
        const comparison = compare(
          `HTTP hit, ${formatBytes(size)}`,
          'req/s',
          { name: 'proxy', samples: ours.map((r) => r.rps) },
          { name: 'bare node:http', samples: theirs.map((r) => r.rps) },
          median,
          size === 64 ? 0.9 : undefined,
        )
        comparisons.push(comparison)
        const p50 = (results: Sample[]) => median(results.map((r) => r.p50Ms))
        const p99 = (results: Sample[]) => median(results.map((r) => r.p99Ms))
        const cpu = (results: Sample[]) => median(results.map((r) => r.cpuUs))
        rows.push([
          formatBytes(size),
          formatNumber(comparison.ours.value),
          formatNumber(p50(ours), 2),
          formatNumber(p99(ours), 2),
          formatNumber(cpu(ours), 1),
          formatNumber(comparison.theirs.value),
          formatNumber(p50(theirs), 2),
          formatNumber(p99(theirs), 2),
          formatNumber(cpu(theirs), 1),
          `${formatNumber(comparison.ratio, 2)}x`,
          `${formatNumber(cpu(theirs) / cpu(ours), 2)}x`,
        ])
        if (size === 64) {
          checks.push({
            name: `HTTP hit p99 at ${CONNECTIONS} connections, 64 B`,
            measured: `${formatNumber(p99(ours), 2)} ms`,
            target: `< ${P99_TARGET_MS} ms`,
            pass: p99(ours) < P99_TARGET_MS,
          })
        }
      }
      const after = await proxy.status()
      const notes = [
        `${ctx.httpLoad.name}, ${CONNECTIONS} connections${ctx.httpLoad.name === 'wrk' ? ', one thread' : ''}, ${httpSeconds} s per run after a 1 s warm-up; medians of ${rounds} interleaved runs.`,
        "CPU µs/req is the target process's user + system CPU time over the run divided by the requests served: less disturbed by other work on the machine than req/s. Its ratio is bare / proxy, so like req/s, 1.0x means as cheap as the bare server.",
        `The proxy's cache counted ${formatNumber(after.cache.hits - before.cache.hits)} hits and ${after.cache.misses - before.cache.misses} misses during the runs.`,
      ]
      if (failures > 0) notes.push(`${formatNumber(failures)} requests failed or were not 2xx.`)
      return {
        tables: [
          {
            title: 'req/s and latency (ms) per value size',
            columns: [
              'value',
              'proxy req/s',
              'p50',
              'p99',
              'CPU µs/req',
              'bare node:http req/s',
              'p50',
              'p99',
              'CPU µs/req',
              'req/s ratio',
              'CPU ratio (bare / proxy)',
            ],
            rows,
          },
        ],
        comparisons,
        checks,
        notes,
      }
    } finally {
      for (const target of started.reverse()) await target.stop()
      await redis.stop()
    }
  },
}
