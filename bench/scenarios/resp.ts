import { sendCommand, startRedis } from '../../test/harness/redis-server.js'
import { cpuSecondsOf, cpuTimesOf } from '../lib/processes.js'
import { formatBytes, formatNumber, interleave, median } from '../lib/stats.js'
import { type RespLoadResult, redisBenchmarkGet } from '../load/redis-benchmark.js'
import { BENCH_KEY_BYTES, respKeysFill, respKeysGet } from '../load/resp-keys.js'
import {
  type ProxyTarget,
  type RespTarget,
  startBareForward,
  startBareResp,
  startProxy,
} from '../targets/start.js'
import { startTwemproxy, type TwemproxyTarget } from '../targets/twemproxy.js'
import { cpuLimit, cpuSplit, loadNow, RELAY_FLOOR, relayFloorLimit, type Served } from './limits.js'
import {
  type BenchContext,
  type Check,
  type Comparison,
  compare,
  type Scenario,
  type ScenarioResult,
  type Table,
} from './types.js'

const CLIENTS = 50
const PIPELINES = [1, 16] as const
type Pipeline = (typeof PIPELINES)[number]
/** The key space and value size of the hit and miss targets. */
const KEYSPACE = 100_000
const VALUE_BYTES = 100
const ZIPF_S = 0.99
/** redis-benchmark -t get without -r asks for this one key, 3 B by default. */
const ONE_KEY = 'key:__rand_int__'
const ONE_KEY_VALUE_BYTES = 3
const HIT_TARGETS: Record<Pipeline, number> = { 1: 1.0, 16: 0.9 }
/**
 * Large values, a reference: keys after the 100k, read uniformly. Fewer
 * requests than the 100 B runs (LARGE_SHARE of them): each moves 160 times
 * the bytes.
 */
const LARGE_KEYS = 1000
const LARGE_VALUE_BYTES = 16 * 1024
const LARGE_SHARE = 1 / 4

/** A server the load is pointed at: its RESP port and the PID whose CPU is counted. */
type Side = { name: string; port: number; pid: number }
type Sample = RespLoadResult & {
  cpuUs: number
  userUs: number
  systemUs: number
  /** The backend redis-server's CPU µs per request over the run, where it was asked for. */
  backendUs: number
}
type Load = (
  port: number,
  pipeline: Pipeline,
  requests: number,
) => Promise<RespLoadResult & { requests?: number }>

/**
 * The same load against every side, interleaved, per pipeline depth, with
 * the CPU µs per request of each side's serving process from /proc, and of
 * `backendPid` (the redis-server behind the proxies) where given.
 * Returns the samples by pipeline, then by side name.
 */
async function measure(
  ctx: BenchContext,
  label: string,
  sides: readonly Side[],
  load: Load,
  requestsAt: (pipeline: Pipeline) => number,
  backendPid?: number,
): Promise<Map<Pipeline, Map<string, Sample[]>>> {
  const out = new Map<Pipeline, Map<string, Sample[]>>()
  for (const pipeline of PIPELINES) {
    const requests = requestsAt(pipeline)
    const one = async (side: Side, n: number): Promise<Sample> => {
      const backendSeconds = () =>
        backendPid === undefined ? Number.NaN : cpuSecondsOf(backendPid)
      const before = cpuTimesOf(side.pid)
      const backendBefore = backendSeconds()
      const result = await load(side.port, pipeline, n)
      const served = result.requests ?? n
      const after = cpuTimesOf(side.pid)
      const userUs = ((after.user - before.user) * 1e6) / served
      const systemUs = ((after.system - before.system) * 1e6) / served
      const backendUs = ((backendSeconds() - backendBefore) * 1e6) / served
      return { ...result, cpuUs: userUs + systemUs, userUs, systemUs, backendUs }
    }
    ctx.progress(`${label} -P ${pipeline}: warm-up`)
    for (const side of sides) await one(side, Math.ceil(requests / 10))
    const samples = await interleave<Sample>(
      ctx.budget.rounds,
      sides.map((side) => ({ name: side.name, run: () => one(side, requests) })),
      (line) => ctx.progress(`${label} -P ${pipeline}: ${line}`),
    )
    out.set(pipeline, samples)
  }
  return out
}

const med = (samples: readonly Sample[], pick: (s: Sample) => number) => median(samples.map(pick))

function served(name: string, samples: readonly Sample[]): Served {
  return {
    name,
    rps: med(samples, (s) => s.rps),
    cpuUs: med(samples, (s) => s.cpuUs),
    userUs: med(samples, (s) => s.userUs),
    systemUs: med(samples, (s) => s.systemUs),
  }
}

/** One row per pipeline: req/s, p50, p99 and CPU µs/req per side, then the given ratios. */
function respTable(
  title: string,
  sides: readonly Side[],
  samples: Map<Pipeline, Map<string, Sample[]>>,
  ratios: { column: string; value: (pipeline: Pipeline) => number }[],
): Table {
  const rows: string[][] = []
  for (const pipeline of PIPELINES) {
    const bySide = samples.get(pipeline)
    const row = [String(pipeline)]
    for (const side of sides) {
      const s = bySide?.get(side.name) ?? []
      row.push(
        formatNumber(med(s, (x) => x.rps)),
        formatNumber(
          med(s, (x) => x.p50Ms),
          3,
        ),
        formatNumber(
          med(s, (x) => x.p99Ms),
          3,
        ),
        formatNumber(
          med(s, (x) => x.cpuUs),
          2,
        ),
      )
    }
    for (const ratio of ratios) row.push(`${formatNumber(ratio.value(pipeline), 2)}x`)
    rows.push(row)
  }
  return {
    title,
    columns: [
      'pipeline',
      ...sides.flatMap((side) => [`${side.name} req/s`, 'p50', 'p99', 'CPU µs/req']),
      ...ratios.map((r) => r.column),
    ],
    rows,
  }
}

type HitCase = {
  label: string
  tool: string
  load: Load
  /** Targets by pipeline (the issue's); none for the one-key reference. */
  targets?: Record<Pipeline, number>
  /** Whether the bare Node floor (bare-resp.ts, 100 B values) runs beside the two. */
  floor?: boolean
  /** The share of the budget's requests per run. @default 1 */
  share?: number
}

const FLOOR = 'bare node:net'

/**
 * What a figure that misses its target is up against: the bare Node server's
 * CPU per request and rate in the same runs, when it ran.
 */
function floorLimit(floor: Served | undefined, theirs: Served): string {
  if (floor === undefined) return ''
  const split = `user ${formatNumber(floor.userUs ?? Number.NaN, 2)}, system ${formatNumber(floor.systemUs ?? Number.NaN, 2)}`
  return ` The floor for any Node server here, a bare node:net server reading and writing the same way and answering every GET with a fixed ${VALUE_BYTES} B bulk (bench/targets/bare-resp.ts: no cache, no decoder beyond framing), spent ${formatNumber(floor.cpuUs, 2)} µs per request (${split}) at ${formatNumber(floor.rps)} req/s in the same runs, ${formatNumber(theirs.cpuUs / floor.cpuUs, 2)}x in CPU and ${formatNumber(floor.rps / theirs.rps, 2)}x in rate of ${theirs.name}'s.`
}

/** Part 1: RESP cache hits, the sidecar against the redis-server behind it. */
export const respHitsScenario: Scenario = {
  part: 1,
  id: 'resp-hits',
  title:
    'RESP cache hits: the sidecar against redis-server (100k keys uniform and Zipf; one key; 16 KiB values)',
  async run(ctx): Promise<ScenarioResult> {
    const redis = await startRedis()
    let proxy: ProxyTarget | undefined
    let bare: RespTarget | undefined
    try {
      ctx.progress(`resp hits: writing ${formatNumber(KEYSPACE)} keys of ${VALUE_BYTES} B`)
      await respKeysFill(redis.port, KEYSPACE, VALUE_BYTES)
      await redis.command('SET', ONE_KEY, 'x'.repeat(ONE_KEY_VALUE_BYTES))
      await respKeysFill(redis.port, LARGE_KEYS, LARGE_VALUE_BYTES, KEYSPACE)
      proxy = await startProxy(
        redis.url,
        // Room for every key; an expiry longer than the run: every measured GET is a hit.
        { CACHE_CAPACITY: String(KEYSPACE * 2), CACHE_GLOBAL_EXPIRY: '3600000' },
        { resp: true },
      )
      ctx.progress('resp hits: warming the cache with every key, once')
      const warm = await respKeysGet({
        port: proxy.respPort,
        clients: 10,
        pipeline: 16,
        requests: KEYSPACE,
        keyspace: KEYSPACE,
        order: 'each',
        seconds: 120,
      })
      await sendCommand(proxy.respPort, ['GET', ONE_KEY])
      const warmLarge = await respKeysGet({
        port: proxy.respPort,
        clients: 10,
        pipeline: 16,
        requests: LARGE_KEYS,
        keyspace: LARGE_KEYS,
        order: 'each',
        seconds: 60,
        first: KEYSPACE,
      })
      const warmed = (await proxy.status()).cache
      const cached = KEYSPACE + 1 + LARGE_KEYS
      if (warm.nils + warmLarge.nils > 0 || warmed.keys < cached) {
        throw new Error(
          `warming left ${warmed.keys} keys cached (${warm.nils + warmLarge.nils} nil replies), wanted ${cached}`,
        )
      }
      const sides: Side[] = [
        { name: 'sidecar', port: proxy.respPort, pid: proxy.pid },
        { name: 'redis-server', port: redis.port, pid: redis.pid() as number },
      ]
      bare = await startBareResp(VALUE_BYTES)
      const withFloor: Side[] = [...sides, { name: FLOOR, port: bare.port, pid: bare.pid }]
      let zipfNils = 0
      const cases: HitCase[] = [
        {
          label: `RESP hit, ${formatNumber(KEYSPACE)} keys uniform`,
          tool: `redis-benchmark -t get -r ${formatNumber(KEYSPACE)}`,
          targets: HIT_TARGETS,
          floor: true,
          load: (port, pipeline, requests) =>
            redisBenchmarkGet({
              port,
              clients: CLIENTS,
              pipeline,
              requests,
              keyspace: KEYSPACE,
              timeoutMs: 120_000,
            }),
        },
        {
          label: `RESP hit, ${formatNumber(KEYSPACE)} keys Zipf s=${ZIPF_S}`,
          tool: `bench/load/resp-keys.c -m zipf -s ${ZIPF_S} -k ${formatNumber(KEYSPACE)}`,
          targets: HIT_TARGETS,
          floor: true,
          load: async (port, pipeline, requests) => {
            const result = await respKeysGet({
              port,
              clients: CLIENTS,
              pipeline,
              requests,
              keyspace: KEYSPACE,
              order: 'zipf',
              zipfS: ZIPF_S,
              seconds: 90,
            })
            zipfNils += result.nils
            return result
          },
        },
        {
          label: 'RESP hit, one key (reference)',
          tool: 'redis-benchmark -t get (no -r: one key)',
          load: (port, pipeline, requests) =>
            redisBenchmarkGet({ port, clients: CLIENTS, pipeline, requests, timeoutMs: 120_000 }),
        },
        {
          label: `RESP hit, ${formatNumber(LARGE_KEYS)} keys of ${formatBytes(LARGE_VALUE_BYTES)} uniform (reference)`,
          tool: `bench/load/resp-keys.c -m uniform -k ${formatNumber(LARGE_KEYS)}`,
          share: LARGE_SHARE,
          load: (port, pipeline, requests) =>
            respKeysGet({
              port,
              clients: CLIENTS,
              pipeline,
              requests,
              keyspace: LARGE_KEYS,
              order: 'uniform',
              seconds: 60,
              first: KEYSPACE,
            }),
        },
      ]
      const before = (await proxy.status()).cache
      const tables: Table[] = []
      const comparisons: Comparison[] = []
      const checks: Check[] = []
      for (const hitCase of cases) {
        const caseSides = hitCase.floor === true ? withFloor : sides
        const samples = await measure(ctx, hitCase.label, caseSides, hitCase.load, (pipeline) =>
          Math.round(ctx.budget.respRequests * (pipeline === 1 ? 1 : 3) * (hitCase.share ?? 1)),
        )
        for (const pipeline of PIPELINES) {
          const ours = samples.get(pipeline)?.get('sidecar') ?? []
          const theirs = samples.get(pipeline)?.get('redis-server') ?? []
          const oursServed = served('sidecar', ours)
          const theirsServed = served('redis-server', theirs)
          const floorSamples = samples.get(pipeline)?.get(FLOOR)
          const floor = floorSamples === undefined ? undefined : served(FLOOR, floorSamples)
          comparisons.push(
            compare(
              `${hitCase.label}, pipeline ${pipeline}`,
              'req/s',
              { name: 'sidecar', samples: ours.map((s) => s.rps) },
              { name: 'redis-server', samples: theirs.map((s) => s.rps) },
              median,
              hitCase.targets?.[pipeline],
              () => cpuLimit(oursServed, theirsServed) + floorLimit(floor, theirsServed),
            ),
          )
          if (hitCase.targets === undefined) continue
          const cpuRatio = theirsServed.cpuUs / oursServed.cpuUs
          const pass = oursServed.cpuUs <= theirsServed.cpuUs
          checks.push({
            name: `${hitCase.label}, pipeline ${pipeline}: CPU µs per hit, redis-server / sidecar`,
            measured: `${formatNumber(oursServed.cpuUs, 2)} µs against ${formatNumber(theirsServed.cpuUs, 2)} µs`,
            ratio: cpuRatio,
            targetRatio: 1,
            target: '>= 1.0x (sidecar no more than Redis)',
            pass,
            ...(pass
              ? {}
              : {
                  limit: `the sidecar's work per hit in its one Node thread (RESP decode, cache lookup, reply write through libuv) costs ${formatNumber(oursServed.cpuUs - theirsServed.cpuUs, 2)} µs more than redis-server's C event loop does for the same GET${cpuSplit(oursServed, theirsServed)}.${floorLimit(floor, theirsServed)}`,
                }),
          })
        }
        tables.push(
          respTable(
            `${hitCase.label}: ${hitCase.tool} -c ${CLIENTS}, req/s, latency (ms) and CPU µs per request of the serving process`,
            caseSides,
            samples,
            [
              {
                column: 'ratio',
                value: (p) =>
                  med(samples.get(p)?.get('sidecar') ?? [], (s) => s.rps) /
                  med(samples.get(p)?.get('redis-server') ?? [], (s) => s.rps),
              },
              {
                column: 'CPU ratio (redis / sidecar)',
                value: (p) =>
                  med(samples.get(p)?.get('redis-server') ?? [], (s) => s.cpuUs) /
                  med(samples.get(p)?.get('sidecar') ?? [], (s) => s.cpuUs),
              },
            ],
          ),
        )
      }
      const after = (await proxy.status()).cache
      return {
        tables,
        comparisons,
        checks,
        notes: [
          `${formatNumber(KEYSPACE)} keys of ${BENCH_KEY_BYTES} B (\`key:\` and 12 digits, redis-benchmark's \`-r\` names) with ${VALUE_BYTES} B values, written to Redis and then read once each through the sidecar (CACHE_CAPACITY=${formatNumber(KEYSPACE * 2)}, CACHE_GLOBAL_EXPIRY=1 h). During the measured runs the sidecar's cache counted ${formatNumber(after.hits - before.hits)} hits and ${formatNumber(after.misses - before.misses)} misses; the Zipf runs got ${formatNumber(zipfNils)} nil replies.`,
          `Uniform key choice is redis-benchmark's \`-r\`. Zipf (weight 1/rank^${ZIPF_S}, ranks shuffled over the keys by a fixed seed, the same sequence for both sides) is bench/load/resp-keys.c, compiled by the bench with gcc: redis-benchmark has no Zipf, and memtier_benchmark (Gaussian only) is not packaged in Debian. Both tools: ${CLIENTS} connections, one thread, pipelining by batches.`,
          `${FLOOR} (bench/targets/bare-resp.ts, its own process) is the floor for a RESP server in Node on this machine, measured beside the two in the uniform and Zipf runs: it reads and writes each socket as the sidecar does (shared/socket-read.ts, shared/socket-write.ts), finds where each command ends, and answers every GET with a fixed ${VALUE_BYTES} B bulk, with its writes after the turn's reads as the sidecar's; no cache and no decoder. Whatever it spends per request, the sidecar spends before its own work.`,
          `The one-key case (${ONE_KEY_VALUE_BYTES} B value) and the large values (${formatNumber(LARGE_KEYS)} keys of ${formatBytes(LARGE_VALUE_BYTES)} after the ${formatNumber(KEYSPACE)}, cached by the same warm-up, read uniformly, ${LARGE_SHARE * 100}% of the requests per run) are references, not targets. CPU µs/req is the serving process's user + system time from /proc over the run, divided by the requests; the redis-server column is the same redis-server that backs the sidecar. Medians of ${ctx.budget.rounds} interleaved runs.`,
          `The load generator and the server under test share the machine's two cores with each other and with other work (1-minute load ${loadNow()} at the end of this part).`,
        ],
      }
    } finally {
      await bare?.stop()
      await proxy?.stop()
      await redis.stop()
    }
  },
}

/**
 * Part 3: every GET a miss, the sidecar against twemproxy in front of the
 * same redis-server, and against that redis-server direct.
 */
export const respMissScenario: Scenario = {
  part: 3,
  id: 'resp-miss',
  title: 'The miss path: every GET a miss, against twemproxy and Redis direct',
  async run(ctx): Promise<ScenarioResult> {
    const redis = await startRedis()
    let proxy: ProxyTarget | undefined
    let twemproxy: TwemproxyTarget | undefined
    let bare: RespTarget | undefined
    try {
      ctx.progress(`resp miss: writing ${formatNumber(KEYSPACE)} keys`)
      await respKeysFill(redis.port, KEYSPACE, VALUE_BYTES)
      // A one-key cache: a GET is a hit only if the previous GET asked for the same key.
      proxy = await startProxy(redis.url, { CACHE_CAPACITY: '1' }, { resp: true })
      ctx.progress('resp miss: starting twemproxy (installed with apt-get when missing)')
      twemproxy = await startTwemproxy(redis.port)
      bare = await startBareForward(redis.port)
      const sides: Side[] = [
        { name: 'sidecar', port: proxy.respPort, pid: proxy.pid },
        { name: 'twemproxy', port: twemproxy.port, pid: twemproxy.pid },
        { name: 'redis-server', port: redis.port, pid: redis.pid() as number },
        { name: RELAY_FLOOR, port: bare.port, pid: bare.pid },
      ]
      const before = (await proxy.status()).cache
      const samples = await measure(
        ctx,
        'RESP miss',
        sides,
        (port, pipeline, requests) =>
          redisBenchmarkGet({
            port,
            clients: CLIENTS,
            pipeline,
            requests,
            keyspace: KEYSPACE,
            timeoutMs: 120_000,
          }),
        // A miss costs the sidecar several times a hit: half the hit runs' requests.
        (pipeline) => Math.round(ctx.budget.respRequests * 0.5 * (pipeline === 1 ? 1 : 3)),
        redis.pid(),
      )
      const after = (await proxy.status()).cache
      const comparisons: Comparison[] = []
      const pick = (p: Pipeline, side: string) => samples.get(p)?.get(side) ?? []
      for (const pipeline of PIPELINES) {
        const ours = pick(pipeline, 'sidecar')
        const twem = pick(pipeline, 'twemproxy')
        comparisons.push(
          compare(
            `RESP miss, pipeline ${pipeline}`,
            'req/s',
            { name: 'sidecar', samples: ours.map((s) => s.rps) },
            { name: 'twemproxy', samples: twem.map((s) => s.rps) },
            median,
            1.0,
            () =>
              `${cpuLimit(served('sidecar', ours), served('twemproxy', twem))} A miss costs the sidecar a cache lookup, a backend GET and PTTL on its own connection to Redis (decoded into a value) and a cache insert, where twemproxy only relays bytes; redis-server spent ${formatNumber(
                med(ours, (s) => s.backendUs),
                2,
              )} µs of CPU per miss behind the sidecar (the GET and its PTTL) against ${formatNumber(
                med(twem, (s) => s.backendUs),
                2,
              )} behind twemproxy.${relayFloorLimit(served(RELAY_FLOOR, pick(pipeline, RELAY_FLOOR)), served('twemproxy', twem), served('sidecar', ours))}`,
          ),
          compare(
            `RESP miss, pipeline ${pipeline} (reference)`,
            'req/s',
            { name: 'sidecar', samples: ours.map((s) => s.rps) },
            {
              name: 'redis-server direct',
              samples: pick(pipeline, 'redis-server').map((s) => s.rps),
            },
            median,
          ),
        )
      }
      const ratio = (p: Pipeline, theirs: string, unit: 'rps' | 'cpuUs') =>
        unit === 'rps'
          ? med(pick(p, 'sidecar'), (s) => s.rps) / med(pick(p, theirs), (s) => s.rps)
          : med(pick(p, theirs), (s) => s.cpuUs) / med(pick(p, 'sidecar'), (s) => s.cpuUs)
      return {
        tables: [
          respTable(
            `redis-benchmark -t get -c ${CLIENTS} -r ${formatNumber(KEYSPACE)}, req/s, latency (ms) and CPU µs per request of each serving process`,
            sides,
            samples,
            [
              { column: 'vs twemproxy', value: (p) => ratio(p, 'twemproxy', 'rps') },
              { column: 'vs redis', value: (p) => ratio(p, 'redis-server', 'rps') },
              {
                column: 'CPU ratio (twemproxy / sidecar)',
                value: (p) => ratio(p, 'twemproxy', 'cpuUs'),
              },
            ],
          ),
          {
            title:
              "The backend redis-server's CPU µs per request over the same runs, behind each side and with no proxy in front (medians)",
            // Behind Redis itself is Redis on its own: the direct runs.
            columns: [
              'pipeline',
              ...sides.map((side) =>
                side.name === 'redis-server' ? 'redis-server direct' : side.name,
              ),
            ],
            rows: PIPELINES.map((p) => [
              String(p),
              ...sides.map((side) =>
                formatNumber(
                  med(pick(p, side.name), (s) => s.backendUs),
                  2,
                ),
              ),
            ]),
          },
        ],
        comparisons,
        checks: [],
        notes: [
          `Keys drawn at random from ${formatNumber(KEYSPACE)} (\`-r\`, ${BENCH_KEY_BYTES} B names), all present with ${VALUE_BYTES} B values; CACHE_CAPACITY=1, so the sidecar counted ${formatNumber(after.misses - before.misses)} misses and ${formatNumber(after.hits - before.hits)} hits. Each miss is a backend GET (concurrent misses of one key coalesced). Medians of ${ctx.budget.rounds} interleaved runs.`,
          'twemproxy (Debian nutcracker 0.5, no cache) and the sidecar forward to the same redis-server, which is also measured direct as a reference (no target). CPU µs/req counts each proxy process alone. The redis-server behind them does more for the sidecar: a PTTL beside each GET (what keeps a cached entry from outliving the key); with CACHE_TRACKING=bcast, the default, it remembers nothing per key read (with CACHE_TRACKING=keys it would add a tracking-table entry per key).',
          `${RELAY_FLOOR} (bench/targets/bare-forward.ts, its own process) relays every GET to the same redis-server on one connection, as twemproxy does: it reads and writes its sockets as the sidecar does (shared/socket-read.ts, shared/socket-write.ts), finds where each command and reply ends and copies them across, with its writes after the turn's reads; no cache, no command table, no PTTL. What it spends per request, any Node proxy spends before its own work.`,
        ],
      }
    } finally {
      await bare?.stop()
      await twemproxy?.stop()
      await proxy?.stop()
      await redis.stop()
    }
  },
}
