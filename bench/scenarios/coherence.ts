import { fileURLToPath } from 'node:url'
import { run } from '../lib/processes.js'
import { formatNumber } from '../lib/stats.js'
import type { Scenario, ScenarioResult } from './types.js'

// bench/coherence.ts: its own redis-server and proxy, one JSON line.
const COHERENCE = fileURLToPath(new URL('../coherence.js', import.meta.url))

type CoherenceResult = {
  writes: number
  failures: number
  staleAfterFresh: number
  writeToFreshMs: { p50: number; p99: number; max: number }
  hitRoundTripMs: { p50: number; p99: number }
}

/** Part 6: from a SET on Redis to the proxy serving the new value (CACHE_INVALIDATION=on). */
export const coherenceScenario: Scenario = {
  part: 6,
  id: 'coherence',
  title: 'Coherence latency: SET on Redis to the proxy serving the new value',
  async run(ctx): Promise<ScenarioResult> {
    const writes = ctx.budget.coherenceWrites
    ctx.progress(`coherence: ${writes} writes (bench/coherence.ts)`)
    const done = await run(process.execPath, [COHERENCE], {
      timeoutMs: 240_000,
      env: { ...process.env, WRITES: String(writes), MAX_SECONDS: '180' },
    })
    const line = done.stdout.split('\n').find((l) => l.startsWith('{'))
    if (done.code !== 0 || line === undefined) {
      throw new Error(`bench/coherence.ts failed (${done.code}): ${done.stderr}`)
    }
    const r = JSON.parse(line) as CoherenceResult
    return {
      tables: [
        {
          title: `HTTP, ${formatNumber(r.writes)} writes over 16 keys, each key a cache hit of the old value before its write`,
          columns: ['', 'p50 ms', 'p99 ms', 'max ms'],
          rows: [
            [
              'write acknowledged to first fresh answer',
              formatNumber(r.writeToFreshMs.p50, 2),
              formatNumber(r.writeToFreshMs.p99, 2),
              formatNumber(r.writeToFreshMs.max, 2),
            ],
            [
              'one HTTP hit round trip (the resolution)',
              formatNumber(r.hitRoundTripMs.p50, 2),
              formatNumber(r.hitRoundTripMs.p99, 2),
              '',
            ],
          ],
        },
      ],
      comparisons: [],
      checks: [
        {
          name: 'writes never seen fresh within 2 s, or stale after fresh',
          measured: `${r.failures} / ${r.staleAfterFresh}`,
          target: '0 / 0',
          pass: r.failures === 0 && r.staleAfterFresh === 0,
        },
      ],
      notes: ['Measured by `bench/coherence.ts` (also `npm run bench:coherence`).'],
    }
  },
}
