import { backendGetCount, startRedis } from '../../test/harness/redis-server.js'
import { cpuSecondsOf } from '../lib/processes.js'
import { formatBytes, formatNumber, interleave, median } from '../lib/stats.js'
import type { HttpLoadResult } from '../load/http.js'
import { type HttpTarget, startBareHttp, startProxy } from '../targets/start.js'
import { startWebdis, WEBDIS_THREADS } from '../targets/webdis.js'
import { cpuLimit, loadNow } from './limits.js'
import {
  type BenchContext,
  type Check,
  type Comparison,
  compare,
  type Scenario,
  type ScenarioResult,
} from './types.js'

const SIZES = [64, 1024, 100 * 1024] as const
const CONNECTIONS = 50
const P99_TARGET_MS = 5
/** A key no step writes: every request for it is a 404. */
const ABSENT_KEY = 'bench:absent'

/**
 * One load run, with the CPU time per request of the serving process and of
 * the redis-server behind it (webdis asks Redis for every request; the
 * proxy, on a hit, does not).
 */
type Sample = HttpLoadResult & { cpuUs: number; redisCpuUs: number }

type Side = { name: string; target: HttpTarget; path: string }

async function loadOnce(
  ctx: BenchContext,
  redisPid: number,
  side: Side,
  seconds: number,
): Promise<Sample> {
  const cpuBefore = cpuSecondsOf(side.target.pid)
  const redisBefore = cpuSecondsOf(redisPid)
  const result = await ctx.httpLoad.run({
    origin: side.target.origin,
    path: side.path,
    connections: CONNECTIONS,
    seconds,
  })
  const per = (cpu: number) => (cpu * 1e6) / result.requests
  return {
    ...result,
    cpuUs: per(cpuSecondsOf(side.target.pid) - cpuBefore),
    redisCpuUs: per(cpuSecondsOf(redisPid) - redisBefore),
  }
}

/**
 * Part 2: cache hits over HTTP against webdis (the C HTTP front end to
 * Redis, no cache) and a bare node:http server with a body of the same size;
 * then repeated 404s of one absent key, counting the backend GETs.
 */
export const httpHitsScenario: Scenario = {
  part: 2,
  id: 'http-hits',
  title: 'HTTP cache hits: GET /get/{key} against webdis and a bare node:http server',
  async run(ctx): Promise<ScenarioResult> {
    const { rounds, httpSeconds } = ctx.budget
    const redis = await startRedis()
    const redisPid = redis.pid() as number
    const started: HttpTarget[] = []
    try {
      for (const size of SIZES) await redis.command('SET', `bench:${size}`, Buffer.alloc(size, 'v'))
      ctx.progress('http: starting the proxy and webdis (installed with apt-get when missing)')
      // An expiry longer than the run: every measured request is a hit.
      const proxy = await startProxy(redis.url, {
        CACHE_GLOBAL_EXPIRY: '3600000',
        CACHE_INVALIDATION: 'on',
      })
      started.push(proxy)
      const webdis = await startWebdis(redis.port)
      started.push(webdis)
      for (const size of SIZES) {
        const res = await fetch(`${proxy.origin}/get/bench:${size}`)
        if ((await res.arrayBuffer()).byteLength !== size) throw new Error('proxy answered wrong')
        const viaWebdis = await fetch(`${webdis.origin}/GET/bench:${size}.txt`)
        if ((await viaWebdis.arrayBuffer()).byteLength !== size) {
          throw new Error('webdis answered wrong')
        }
      }
      const before = await proxy.status()

      const comparisons: Comparison[] = []
      const checks: Check[] = []
      const rows: string[][] = []
      let failures = 0
      for (const size of SIZES) {
        const bare = await startBareHttp(size)
        started.push(bare)
        const sides: Side[] = [
          { name: 'proxy', target: proxy, path: `/get/bench:${size}` },
          // `.txt`: the value's bytes as the body (text/plain), as the proxy
          // answers; without it webdis wraps the value in JSON.
          { name: 'webdis', target: webdis, path: `/GET/bench:${size}.txt` },
          { name: 'bare', target: bare, path: `/get/bench:${size}` },
        ]
        const load = async (side: Side, seconds: number) => {
          const sample = await loadOnce(ctx, redisPid, side, seconds)
          failures += sample.errors + sample.non2xx
          return sample
        }
        ctx.progress(`http ${formatBytes(size)}: warm-up`)
        for (const side of sides) await load(side, 1)
        const samples = await interleave<Sample>(
          rounds,
          sides.map((side) => ({ name: side.name, run: () => load(side, httpSeconds) })),
          (line) => ctx.progress(`http ${formatBytes(size)}: ${line}`),
        )
        await bare.stop()
        started.pop()
        const of = (name: string) => samples.get(name) ?? []
        const m = (name: string, pick: (s: Sample) => number) => median(of(name).map(pick))
        // What serving one request costs the machine: the serving process and Redis behind it.
        const cpu = (name: string) => m(name, (s) => s.cpuUs + s.redisCpuUs)
        const served = (name: string, label: string) => ({
          name: label,
          rps: m(name, (s) => s.rps),
          cpuUs: cpu(name),
        })
        const target = size <= 1024
        const label = formatBytes(size)
        const vsWebdis = compare(
          `HTTP hit, ${label}`,
          'req/s',
          { name: 'proxy', samples: of('proxy').map((r) => r.rps) },
          { name: 'webdis', samples: of('webdis').map((r) => r.rps) },
          median,
          target ? 1.0 : undefined,
          () => cpuLimit(served('proxy', 'the proxy'), served('webdis', 'webdis + redis-server')),
        )
        const vsBare = compare(
          `HTTP hit, ${label}`,
          'req/s',
          { name: 'proxy', samples: of('proxy').map((r) => r.rps) },
          { name: 'bare node:http', samples: of('bare').map((r) => r.rps) },
          median,
          size === 64 ? 0.9 : undefined,
          () => cpuLimit(served('proxy', 'the proxy'), served('bare', 'bare node:http')),
        )
        comparisons.push(vsWebdis, vsBare)
        if (target) {
          const cpuVsBare = cpu('bare') / cpu('proxy')
          checks.push({
            name: `HTTP hit, ${label}: CPU µs per request, bare node:http / proxy`,
            measured: `${formatNumber(cpu('proxy'), 1)} µs against ${formatNumber(cpu('bare'), 1)} µs`,
            ratio: cpuVsBare,
            targetRatio: 0.9,
            target: '>= 0.9x',
            pass: cpuVsBare >= 0.9,
            ...(cpuVsBare >= 0.9
              ? {}
              : {
                  limit: `the proxy's work beyond writing a fixed body (routing, the cache lookup, its headers) costs ${formatNumber(cpu('proxy') - cpu('bare'), 1)} µs per request in the same node:http server.`,
                }),
          })
          const cpuVsWebdis = cpu('webdis') / cpu('proxy')
          checks.push({
            name: `HTTP hit, ${label}: CPU µs per request, (webdis + redis-server) / proxy`,
            measured: `${formatNumber(cpu('proxy'), 1)} µs against ${formatNumber(cpu('webdis'), 1)} µs (webdis ${formatNumber(
              m('webdis', (s) => s.cpuUs),
              1,
            )} + redis-server ${formatNumber(
              m('webdis', (s) => s.redisCpuUs),
              1,
            )})`,
            ratio: cpuVsWebdis,
            targetRatio: 1,
            target: '>= 1.0x',
            pass: cpuVsWebdis >= 1,
            ...(cpuVsWebdis >= 1
              ? {}
              : {
                  limit: `node:http's cost per request (HTTP parsing and response writing, much of it in JavaScript) is above webdis's C HTTP handling plus Redis's GET.`,
                }),
          })
        }
        const p99 = (name: string) => m(name, (r) => r.p99Ms)
        rows.push([
          label,
          ...['proxy', 'webdis', 'bare'].flatMap((name) => [
            formatNumber(m(name, (r) => r.rps)),
            formatNumber(
              m(name, (r) => r.p50Ms),
              2,
            ),
            formatNumber(p99(name), 2),
            formatNumber(cpu(name), 1),
          ]),
          `${formatNumber(vsWebdis.ratio, 2)}x`,
          `${formatNumber(vsBare.ratio, 2)}x`,
          `${formatNumber(cpu('webdis') / cpu('proxy'), 2)}x`,
          `${formatNumber(cpu('bare') / cpu('proxy'), 2)}x`,
        ])
        if (size === 64) {
          checks.push({
            name: `HTTP hit p99 at ${CONNECTIONS} connections, 64 B`,
            measured: `${formatNumber(p99('proxy'), 2)} ms`,
            target: `< ${P99_TARGET_MS} ms`,
            pass: p99('proxy') < P99_TARGET_MS,
            // Only read when missed.
            limit: `p99 follows the machine's load (1-minute load ${loadNow()}): with 50 connections on one thread, a request queued behind a descheduled event loop waits for it.`,
          })
        }
      }
      const after = await proxy.status()

      // Repeated 404s of one key, with CACHE_INVALIDATION=on: how many reach Redis.
      ctx.progress('http: repeated 404s of one absent key')
      const getsBefore = await backendGetCount(redis)
      const absent = await loadOnce(
        ctx,
        redisPid,
        { name: 'proxy', target: proxy, path: `/get/${ABSENT_KEY}` },
        Math.max(1, Math.round(httpSeconds / 2)),
      )
      const absentGets = (await backendGetCount(redis)) - getsBefore
      const notFound = absent.non2xx
      checks.push({
        name: `HTTP 404s of one absent key (CACHE_INVALIDATION=on): backend GETs`,
        measured: `${formatNumber(absentGets)} backend GETs for ${formatNumber(notFound)} 404s (${formatNumber(absent.rps)} req/s)`,
        target: 'at most 1 (the first; later ones from the cache)',
        pass: absentGets <= 1 && notFound > 0,
        limit:
          absentGets > 1
            ? 'the proxy does not cache a missing key (shared/read-through.ts stores loaded values only), so every 404 is a GET on Redis, coalesced only while one is in flight; a cached miss can stay coherent with CACHE_INVALIDATION=on: Redis tracks the keys a client reads whether or not they exist, and sends an invalidation when one is written (checked on this redis-server: GET of a missing key, then SET by another client, pushes `invalidate`).'
            : 'no 404 was answered.',
      })

      const notes = [
        `${ctx.httpLoad.name}, ${CONNECTIONS} connections${ctx.httpLoad.name === 'wrk' ? ', one thread' : ''}, ${httpSeconds} s per run after a 1 s warm-up; medians of ${rounds} interleaved runs (proxy, webdis, bare; then reversed).`,
        `webdis (Debian package, ${WEBDIS_THREADS} worker thread: the proxy serves from one Node thread) in front of the same redis-server, asked \`GET /GET/<key>.txt\` so its body is the value's bytes like the proxy's (its default is the value in JSON); it has no cache, so every request is a GET on Redis. The targets are set for 64 B and 1 KiB; 100 KiB is shown for reference.`,
        "CPU µs/req is the serving process's user + system CPU time over the run divided by the requests served, plus that of the redis-server behind it (webdis asks it for every request; a proxy hit asks nothing): what serving a request costs the machine, less disturbed by other work than req/s. CPU ratios are theirs / ours, so like req/s, 1.0x means as cheap.",
        `The proxy's cache counted ${formatNumber(after.cache.hits - before.cache.hits)} hits and ${formatNumber(after.cache.misses - before.cache.misses)} misses during the hit runs. The 404 run: ${formatNumber(absent.requests)} requests for \`${ABSENT_KEY}\` in ${formatNumber(absent.seconds, 1)} s, ${formatNumber(absentGets)} GETs counted by Redis's INFO commandstats over the run.`,
      ]
      if (failures > 0) notes.push(`${formatNumber(failures)} hit requests failed or were not 2xx.`)
      return {
        tables: [
          {
            title: 'req/s, latency (ms) and CPU µs per request per value size',
            columns: [
              'value',
              ...['proxy', 'webdis', 'bare node:http'].flatMap((name) => [
                `${name} req/s`,
                'p50',
                'p99',
                'CPU µs/req',
              ]),
              'req/s vs webdis',
              'req/s vs bare',
              'CPU (webdis + redis) / proxy',
              'CPU bare / proxy',
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
