import { fileURLToPath } from 'node:url'
import { run } from '../lib/processes.js'
import { formatNumber, interleave, median } from '../lib/stats.js'
import { type Comparison, compare, type Scenario, type ScenarioResult } from './types.js'

const WORKER = fileURLToPath(new URL('./cache-worker.js', import.meta.url))
const CAPACITY = 100_000
// Key spaces that give about 90% hits (10% miss + set) at this capacity:
// uniform needs capacity / 0.9; the Zipf-like one was found by trial.
const KEYSPACE = { uniform: 111_111, zipf: 170_000 } as const
const HEAP_ENTRIES = 100_000
const VALUE_BYTES = 100

type Impl = 'ours' | 'lru-cache'

/**
 * What the runs say of a missed cache target: the CPU cost per operation of
 * each, and whether the gap stands out of the spread between runs (each a
 * fresh process, so JIT and heap state differ from run to run).
 */
export function cacheLimit(ours: readonly number[], theirs: readonly number[]): string {
  const range = (xs: readonly number[]) =>
    `${formatNumber(Math.min(...xs))} to ${formatNumber(Math.max(...xs))}`
  const ns = (xs: readonly number[]) => formatNumber(1e9 / median(xs))
  const overlap = Math.max(...ours) >= Math.min(...theirs)
  return `ours costs ${ns(ours)} ns of CPU per operation against lru-cache's ${ns(theirs)}; its runs ranged ${range(ours)} ops/CPU s against ${range(theirs)}, ${overlap ? 'overlapping: the gap is within the spread between runs' : 'apart: the gap is larger than the spread between runs'}.`
}

async function worker(args: string[], flags: string[] = []): Promise<Record<string, number>> {
  const done = await run(process.execPath, [...flags, WORKER, ...args], { timeoutMs: 120_000 })
  const line = /^BENCH_JSON (.*)$/m.exec(done.stdout)
  if (done.code !== 0 || line === null) throw new Error(`cache worker failed: ${done.stderr}`)
  return JSON.parse(line[1] as string) as Record<string, number>
}

/** Part 4: our LRU+expiry cache against lru-cache with the same max and ttl. */
export const cacheScenario: Scenario = {
  part: 4,
  id: 'cache',
  title: 'The cache alone: shared/cache/lru-cache.ts against lru-cache',
  async run(ctx): Promise<ScenarioResult> {
    const { rounds, cacheOps } = ctx.budget
    const comparisons: Comparison[] = []
    const rows: string[][] = []
    for (const dist of ['uniform', 'zipf'] as const) {
      const hitRatios: number[] = []
      const wall: Record<Impl, number[]> = { ours: [], 'lru-cache': [] }
      const trial = (impl: Impl) => ({
        name: impl,
        run: async () => {
          const result = await worker([
            'ops',
            impl,
            dist,
            String(cacheOps),
            String(CAPACITY),
            String(KEYSPACE[dist]),
          ])
          hitRatios.push(result.hitRatio ?? Number.NaN)
          wall[impl].push(result.opsPerSec ?? Number.NaN)
          return result.opsPerCpuSec ?? Number.NaN
        },
      })
      const samples = await interleave(rounds, [trial('ours'), trial('lru-cache')], (line) =>
        ctx.progress(`cache ${dist}: ${line}`),
      )
      const comparison = compare(
        `cache, ${dist} keys`,
        'ops/CPU s',
        { name: 'ours', samples: samples.get('ours') ?? [] },
        { name: 'lru-cache', samples: samples.get('lru-cache') ?? [] },
        median,
        1.0,
        () => cacheLimit(samples.get('ours') ?? [], samples.get('lru-cache') ?? []),
      )
      comparisons.push(comparison)
      rows.push([
        dist,
        `${formatNumber(median(hitRatios) * 100, 1)}%`,
        formatNumber(comparison.ours.value),
        formatNumber(comparison.theirs.value),
        `${formatNumber(comparison.ratio, 2)}x`,
        formatNumber(median(wall.ours)),
        formatNumber(median(wall['lru-cache'])),
        `${formatNumber(median(wall.ours) / median(wall['lru-cache']), 2)}x`,
      ])
    }

    ctx.progress('cache: heap per entry')
    const heap = new Map<Impl, number>()
    for (const impl of ['ours', 'lru-cache'] as const) {
      const result = await worker(
        ['heap', impl, String(HEAP_ENTRIES), String(VALUE_BYTES)],
        ['--expose-gc'],
      )
      heap.set(impl, result.bytesPerEntry ?? Number.NaN)
    }
    const ours = heap.get('ours') ?? Number.NaN
    return {
      tables: [
        {
          title: `Operations per second of CPU time, and per second of wall time, ${formatNumber(cacheOps)} get (+ set on a miss) per pass, capacity ${formatNumber(CAPACITY)}; median of ${rounds} interleaved runs (each a fresh process), each the median of 3 passes after a warm-up pass`,
          columns: [
            'key choice',
            'hit ratio',
            'ours ops/CPU s',
            'lru-cache ops/CPU s',
            'ratio',
            'ours ops/s (wall)',
            'lru-cache ops/s (wall)',
            'ratio',
          ],
          rows,
        },
        {
          title: `Bytes of heap (and typed-array storage) per entry beyond key and value, ${formatNumber(HEAP_ENTRIES)} entries, capacity ${formatNumber(HEAP_ENTRIES)}`,
          columns: ['cache', 'bytes per entry'],
          rows: [
            ['ours', formatNumber(ours, 1)],
            ['lru-cache', formatNumber(heap.get('lru-cache') ?? Number.NaN, 1)],
          ],
        },
      ],
      comparisons,
      checks: [
        {
          name: 'cache overhead per entry',
          measured: `${formatNumber(ours, 1)} B`,
          target: '< 150 B',
          pass: ours < 150,
        },
      ],
      notes: [
        'The ratio that counts is per CPU second: the loop is single-threaded, so on an idle core it equals ops/s, and unlike wall time it does not count the time the process waited for a core while other work ran.',
        `Keys are strings like \`key:123\`; uniform choice over ${formatNumber(KEYSPACE.uniform)} keys, Zipf-like (weight 1/rank^0.9) over ${formatNumber(KEYSPACE.zipf)}; the same seeded sequence for both caches. lru-cache is configured \`{ max: ${formatNumber(CAPACITY)}, ttl }\` (reads do not refresh the ttl, as ours).`,
      ],
    }
  },
}
