import { startRedis } from '../../test/harness/redis-server.js'
import { cpuTimesOf } from '../lib/processes.js'
import { formatNumber, interleave, median } from '../lib/stats.js'
import { type RespLoadResult, redisBenchmarkTests } from '../load/redis-benchmark.js'
import { type RespTarget, startBareForward, startProxy } from '../targets/start.js'
import { startTwemproxy, type TwemproxyTarget } from '../targets/twemproxy.js'
import { type CpuSplit, cpuSplit, RELAY_FLOOR, relayFloorLimit } from './limits.js'
import {
  type Comparison,
  compare,
  type Scenario,
  type ScenarioResult,
  type Table,
} from './types.js'

const CLIENTS = 50
const PIPELINES = [1, 16] as const
const VALUE_BYTES = 100
const KEYSPACE = 100_000
/** Forwarded commands the performance issue sets a target for, as redis-benchmark names them. */
const TESTS = ['set', 'incr', 'lpush', 'lpop', 'mset'] as const
const ROW_NAMES: Record<(typeof TESTS)[number], string> = {
  set: 'SET',
  incr: 'INCR',
  lpush: 'LPUSH',
  lpop: 'LPOP',
  mset: 'MSET (10 keys)',
}

/** Untimed requests per test a newly started sidecar serves before its timed run. */
const WARM_UP_REQUESTS = 5_000

/**
 * Part 7: forwarded commands (the drop-in sidecar) against twemproxy in front
 * of the same redis-server, and against that redis-server direct, in one run:
 * redis-benchmark `-t set,incr,lpush,lpop,mset`, interleaved, per pipeline
 * depth. The target (performance issue) is the sidecar at 1.0x twemproxy.
 *
 * The sidecar's process is started for each of its runs and stopped after
 * it. Connected, it tracks the keyspace (BCAST), and Redis sends it an
 * invalidation for every write, whoever makes it: kept running, it spent
 * CPU on the same 2 cores through twemproxy's, the relay's and Redis's
 * runs (by hand, 4 alternated runs of INCR at pipeline 1: twemproxy
 * 58.6-63.7k req/s with an idle sidecar connected, 64.0-72.5k without).
 * Each new process serves a short untimed load first, so its timed run is
 * not its JIT's warm-up.
 */
export const forwardingScenario: Scenario = {
  part: 7,
  id: 'forwarding',
  title: 'Forwarded commands: the sidecar against twemproxy and Redis direct',
  async run(ctx): Promise<ScenarioResult> {
    const redis = await startRedis()
    let twemproxy: TwemproxyTarget | undefined
    let relay: RespTarget | undefined
    try {
      ctx.progress('forwarding: starting twemproxy (installed with apt-get when missing)')
      twemproxy = await startTwemproxy(redis.port)
      relay = await startBareForward(redis.port)
      const comparisons: Comparison[] = []
      const tables: Table[] = []
      const cpuRows: string[][] = []
      for (const pipeline of PIPELINES) {
        const requests = Math.round(ctx.budget.respRequests * (pipeline === 1 ? 0.25 : 1))
        // Per whole run (all the tests) of a proxy process: its user and
        // system CPU µs per request, and the share of a core it kept busy.
        type Run = { userUs: number; systemUs: number; busy: number }
        const runs = new Map<string, Run[]>([
          ['sidecar', []],
          ['twemproxy', []],
          [RELAY_FLOOR, []],
        ])
        const load = async (side: string, port: number, pid?: number) => {
          const before = pid === undefined ? { user: 0, system: 0 } : cpuTimesOf(pid)
          const startedAt = performance.now()
          const result = await redisBenchmarkTests({
            port,
            tests: TESTS,
            clients: CLIENTS,
            pipeline,
            requests,
            keyspace: KEYSPACE,
            valueSize: VALUE_BYTES,
            timeoutMs: 300_000,
          })
          if (pid !== undefined) {
            const after = cpuTimesOf(pid)
            const user = after.user - before.user
            const system = after.system - before.system
            const per = (seconds: number) => (seconds * 1e6) / (requests * TESTS.length)
            runs.get(side)?.push({
              userUs: per(user),
              systemUs: per(system),
              busy: (user + system) / ((performance.now() - startedAt) / 1000),
            })
          }
          return result
        }
        // Keys the sidecar evicted per command in each of its runs (its
        // cache's `invalidations`): a write's keys when it is sent, again
        // when it is answered if a read began meanwhile, and every key of
        // Redis's invalidations, which under BCAST name each key written.
        const evictions: number[] = []
        const sidecarRun = async () => {
          const proxy = await startProxy(redis.url, {}, { resp: true })
          try {
            await redisBenchmarkTests({
              port: proxy.respPort,
              tests: TESTS,
              clients: CLIENTS,
              pipeline,
              requests: WARM_UP_REQUESTS,
              keyspace: KEYSPACE,
              valueSize: VALUE_BYTES,
              timeoutMs: 60_000,
            })
            const before = (await proxy.status()).cache.invalidations ?? 0
            const result = await load('sidecar', proxy.respPort, proxy.pid)
            const after = (await proxy.status()).cache.invalidations ?? 0
            evictions.push((after - before) / (requests * TESTS.length))
            return result
          } finally {
            await proxy.stop()
          }
        }
        const twem = { port: twemproxy.port, pid: twemproxy.pid }
        const floor = { port: relay.port, pid: relay.pid }
        const samples = await interleave<Map<string, RespLoadResult>>(
          ctx.budget.rounds,
          [
            { name: 'sidecar', run: sidecarRun },
            { name: 'twemproxy', run: () => load('twemproxy', twem.port, twem.pid) },
            { name: 'redis', run: () => load('redis', redis.port) },
            // The floor where the targets are near their line (P1) only:
            // the bench stays within its ten minutes.
            ...(pipeline === 1
              ? [{ name: RELAY_FLOOR, run: () => load(RELAY_FLOOR, floor.port, floor.pid) }]
              : []),
          ],
          (line) => ctx.progress(`forwarding -P ${pipeline}: ${line}`),
        )
        const medianOf = (side: string, pick: (run: Run) => number) =>
          median((runs.get(side) ?? []).map(pick))
        const cpuOf = (side: string) => medianOf(side, (run) => run.userUs + run.systemUs)
        const busyOf = (side: string) => medianOf(side, (run) => run.busy)
        const splitOf = (side: string): CpuSplit => ({
          userUs: medianOf(side, (run) => run.userUs),
          systemUs: medianOf(side, (run) => run.systemUs),
        })
        const limit = () =>
          `over whole runs of the ${TESTS.length} commands the sidecar spent ${formatNumber(cpuOf('sidecar'), 2)} µs of CPU per request against twemproxy's ${formatNumber(cpuOf('twemproxy'), 2)}${cpuSplit(splitOf('sidecar'), splitOf('twemproxy'))}, and kept ${formatNumber(busyOf('sidecar') * 100)}% of a core busy (twemproxy ${formatNumber(busyOf('twemproxy') * 100)}%): ${busyOf('sidecar') >= 0.85 ? "its one thread's CPU per command bounds the rate" : 'it also waited, for redis-benchmark, Redis or other work on the 2 cores'}. It evicted ${formatNumber(median(evictions), 1)} keys from its cache per command: each write's keys when it is sent, again when it is answered if a read began meanwhile, and every key of the invalidation Redis sends it for each write (it tracks by broadcast, so it hears of every key written), where twemproxy keeps no cache.${relayFloorLimit(
            { name: RELAY_FLOOR, rps: 0, cpuUs: cpuOf(RELAY_FLOOR), ...splitOf(RELAY_FLOOR) },
            { name: 'twemproxy', rps: 0, cpuUs: cpuOf('twemproxy') },
            { name: 'sidecar', rps: 0, cpuUs: cpuOf('sidecar') },
          )}`
        const rps = (side: string, test: (typeof TESTS)[number]) =>
          (samples.get(side) ?? []).map((run) => run.get(ROW_NAMES[test])?.rps ?? 0)
        const rows: string[][] = []
        for (const test of TESTS) {
          const vsTwemproxy = compare(
            `${ROW_NAMES[test]}, pipeline ${pipeline}`,
            'req/s',
            { name: 'sidecar', samples: rps('sidecar', test) },
            { name: 'twemproxy', samples: rps('twemproxy', test) },
            median,
            1.0,
            limit,
          )
          comparisons.push(vsTwemproxy)
          const direct = median(rps('redis', test))
          rows.push([
            ROW_NAMES[test],
            formatNumber(vsTwemproxy.ours.value),
            formatNumber(vsTwemproxy.theirs.value),
            formatNumber(direct),
            formatNumber(median(rps(RELAY_FLOOR, test))),
            `${formatNumber(vsTwemproxy.ratio, 2)}x`,
            `${formatNumber(vsTwemproxy.ours.value / direct, 2)}x`,
          ])
        }
        tables.push({
          title: `redis-benchmark -t ${TESTS.join(',')} -c ${CLIENTS} -P ${pipeline} -r ${formatNumber(KEYSPACE)} -d ${VALUE_BYTES}, req/s (medians of ${ctx.budget.rounds} interleaved runs)`,
          columns: [
            'command',
            'sidecar',
            'twemproxy',
            'redis direct',
            RELAY_FLOOR,
            'vs twemproxy',
            'vs redis',
          ],
          rows,
        })
        cpuRows.push([
          String(pipeline),
          formatNumber(cpuOf('sidecar'), 2),
          formatNumber(cpuOf('twemproxy'), 2),
          formatNumber(cpuOf(RELAY_FLOOR), 2),
          `${formatNumber(cpuOf('twemproxy') / cpuOf('sidecar'), 2)}x`,
        ])
      }
      tables.push({
        title: `CPU µs per request of each proxy process over a run of all ${TESTS.length} commands (medians)`,
        columns: ['pipeline', 'sidecar', 'twemproxy', RELAY_FLOOR, 'twemproxy / sidecar'],
        rows: cpuRows,
      })
      return {
        tables,
        comparisons,
        checks: [],
        notes: [
          'twemproxy (Debian nutcracker 0.5) and the sidecar forward to the same redis-server; twemproxy has no cache and no read-your-writes bookkeeping.',
          `The sidecar runs in a process started for each of its runs (${formatNumber(WARM_UP_REQUESTS)} untimed requests per command first, then the timed run) and stopped after it, so nothing of it runs while twemproxy, the relay or Redis direct are measured: connected, it tracks the whole keyspace (BCAST) and handles Redis's invalidation of every write, whoever makes it, on the same cores.`,
          'The sidecar evicts the keys of each write when it is sent and when it is answered (read-your-writes); twemproxy, a C proxy, parses and forwards only.',
          `${RELAY_FLOOR} (bench/targets/bare-forward.ts, its own process, in front of the same redis-server) relays each command and reply as bytes, reading and writing its sockets as the sidecar does: the least a forwarding proxy in Node spends per request here. It runs at pipeline 1 only (n/a at 16), where the targets sit near their line, so the part keeps the bench within its ten minutes. Beside twemproxy it says how much of the gap is Node's and how much the sidecar's own work (command table, permissions, read-your-writes, ordering of replies).`,
        ],
      }
    } finally {
      await relay?.stop()
      await twemproxy?.stop()
      await redis.stop()
    }
  },
}
