import { startRedisCluster, type TestCluster } from '../../test/harness/redis-cluster.js'
import { cpuSecondsOf } from '../lib/processes.js'
import { formatNumber, interleave, median } from '../lib/stats.js'
import { type RespLoadResult, redisBenchmarkTests } from '../load/redis-benchmark.js'
import { type ProxyTarget, startProxy } from '../targets/start.js'
import type { Scenario, ScenarioResult, Table } from './types.js'

const CLIENTS = 50
const PIPELINES = [1, 16] as const
const VALUE_BYTES = 100
const KEYSPACE = 100_000
const TESTS = ['set', 'get', 'incr', 'lpush', 'lpop'] as const
const ROW_NAMES: Record<(typeof TESTS)[number], string> = {
  set: 'SET',
  get: 'GET',
  incr: 'INCR',
  lpush: 'LPUSH',
  lpop: 'LPOP',
}

/**
 * Part 8: the sidecar in front of a Redis Cluster (3 primaries, a replica
 * each) against `redis-benchmark --cluster` sending each command to its
 * slot's node itself, in one run, interleaved. A reference for the scale-out
 * issue, not a target: the cluster-aware client skips the proxy's hop.
 */
export const clusterScenario: Scenario = {
  part: 8,
  id: 'cluster',
  title: 'Redis Cluster: the sidecar against redis-benchmark --cluster direct',
  async run(ctx): Promise<ScenarioResult> {
    // A reference with no target: half the targets' rounds (at most 2), so
    // the whole bench keeps within its ten minutes on a slower machine
    // (595 s at 2026-12-07 18:17, when this part took 42-43 s of it).
    const rounds = Math.min(2, ctx.budget.rounds)
    ctx.progress('cluster: starting 6 nodes (3 primaries, 3 replicas)')
    let cluster: TestCluster | undefined
    let proxy: ProxyTarget | undefined
    try {
      cluster = await startRedisCluster()
      const seed = cluster.nodes[0]?.port as number
      proxy = await startProxy(
        `redis://127.0.0.1:${seed}`,
        { REDIS_CLUSTER_NODES: cluster.seeds, CACHE_GLOBAL_EXPIRY: '3600000' },
        { resp: true },
      )
      const tables: Table[] = []
      const cpuRows: string[][] = []
      for (const pipeline of PIPELINES) {
        const requests = Math.round(ctx.budget.respRequests * (pipeline === 1 ? 0.25 : 1))
        const cpu: number[] = []
        const viaProxy = async () => {
          const before = cpuSecondsOf((proxy as ProxyTarget).pid)
          const result = await redisBenchmarkTests({
            port: (proxy as ProxyTarget).respPort,
            tests: TESTS,
            clients: CLIENTS,
            pipeline,
            requests,
            keyspace: KEYSPACE,
            valueSize: VALUE_BYTES,
            timeoutMs: 300_000,
          })
          cpu.push(
            ((cpuSecondsOf((proxy as ProxyTarget).pid) - before) * 1e6) / (requests * TESTS.length),
          )
          return result
        }
        const samples = await interleave<Map<string, RespLoadResult>>(
          rounds,
          [
            { name: 'sidecar', run: viaProxy },
            {
              name: 'direct',
              run: () =>
                redisBenchmarkTests({
                  port: seed,
                  cluster: true,
                  tests: TESTS,
                  clients: CLIENTS,
                  pipeline,
                  requests,
                  keyspace: KEYSPACE,
                  valueSize: VALUE_BYTES,
                  timeoutMs: 300_000,
                }),
            },
          ],
          (line) => ctx.progress(`cluster -P ${pipeline}: ${line}`),
        )
        const rps = (side: string, test: (typeof TESTS)[number]) =>
          median((samples.get(side) ?? []).map((r) => r.get(ROW_NAMES[test])?.rps ?? 0))
        tables.push({
          title: `redis-benchmark -t ${TESTS.join(',')} -c ${CLIENTS} -P ${pipeline} -r ${formatNumber(KEYSPACE)} -d ${VALUE_BYTES}, req/s (medians of ${rounds} interleaved runs)`,
          columns: ['command', 'sidecar (one address)', 'redis-benchmark --cluster', 'ratio'],
          rows: TESTS.map((test) => [
            ROW_NAMES[test],
            formatNumber(rps('sidecar', test)),
            formatNumber(rps('direct', test)),
            `${formatNumber(rps('sidecar', test) / rps('direct', test), 2)}x`,
          ]),
        })
        cpuRows.push([String(pipeline), formatNumber(median(cpu), 2)])
      }
      tables.push({
        title: 'CPU µs per request of the sidecar over a run of all the commands (median)',
        columns: ['pipeline', 'sidecar'],
        rows: cpuRows,
      })
      return {
        tables,
        comparisons: [],
        checks: [],
        notes: [
          'The cluster has 3 primaries with a replica each, on this machine; redis-benchmark --cluster reads the slot map and sends each command to its node itself, so it has no proxy hop. GETs through the sidecar are cache hits once read (the keys redis-benchmark SETs in the same run).',
          'A reference for the scale-out issue, no target: the 6 nodes, the sidecar and redis-benchmark share the 2 cores. The sidecar stays connected through the direct runs, so they also pay, on those cores, for its handling of the invalidation Redis sends it for every write (part 7 stops its sidecar between runs for that reason).',
        ],
      }
    } finally {
      await proxy?.stop()
      await cluster?.stop()
    }
  },
}
