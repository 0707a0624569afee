/**
 * `npm run bench [-- --quick] [-- --only=cache,http-hits] [-- --load=autocannon] [-- --render]`
 *
 * Runs each part of the benchmark in turn on loopback, each starting and
 * stopping its own redis-server and targets, and writes results.md,
 * results.svg and results.json into bench/results/ (bench/results/quick/ in
 * quick mode, which is for iterating, not for publishing).
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runningChildren } from './lib/processes.js'
import { formatBytes } from './lib/stats.js'
import { pickHttpLoad } from './load/http.js'
import { toMarkdown } from './report/markdown.js'
import type { BenchReport, PartReport } from './report/model.js'
import { toSvg } from './report/svg.js'
import { targetRows } from './report/targets.js'
import { cacheScenario } from './scenarios/cache.js'
import { clusterScenario } from './scenarios/cluster.js'
import { coherenceScenario } from './scenarios/coherence.js'
import { forwardingScenario } from './scenarios/forwarding.js'
import { httpHitsScenario } from './scenarios/http-hits.js'
import { memoryScenario } from './scenarios/memory.js'
import { respHitsScenario, respMissScenario } from './scenarios/resp.js'
import type { Budget, Scenario } from './scenarios/types.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

const FULL: Budget = {
  quick: false,
  rounds: 4,
  httpSeconds: 2,
  cacheOps: 1_000_000,
  respRequests: 100_000,
  coherenceWrites: 1000,
  memorySteps: [0, 100_000, 1_000_000],
  soakSeconds: 45,
  // The soak starts with V8's young generation given back by the idle
  // collection; under this load it grew back within 20-30 s (AMD EPYC) and
  // 30-40 s (Intel Xeon). The report shows its size at both ends.
  soakWarmupSeconds: 45,
}
const QUICK: Budget = {
  quick: true,
  rounds: 2,
  httpSeconds: 2,
  cacheOps: 1_000_000,
  respRequests: 50_000,
  coherenceWrites: 200,
  memorySteps: [0, 10_000, 100_000],
  soakSeconds: 10,
  // Long enough for the young generation to grow back (see FULL).
  soakWarmupSeconds: 30,
}

const SCENARIOS: Scenario[] = [
  respHitsScenario,
  httpHitsScenario,
  respMissScenario,
  cacheScenario,
  memoryScenario,
  coherenceScenario,
  forwardingScenario,
  clusterScenario,
]

function version(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' })
  if (result.error !== undefined) return 'not installed'
  return (result.stdout || result.stderr).split('\n')[0]?.trim() ?? ''
}

async function main(argv: string[]): Promise<number> {
  const flag = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const quick = argv.includes('--quick') || process.env.BENCH_QUICK === '1'
  const only = flag('only')?.split(',')
  const budget = quick ? QUICK : FULL
  if (argv.includes('--render')) return render(quick)
  const httpLoad = pickHttpLoad(flag('load'))
  const progress = (line: string) => process.stderr.write(`bench: ${line}\n`)

  for (const tool of ['redis-server', 'redis-benchmark']) {
    if (version(tool, ['--version']) === 'not installed') {
      progress(`${tool} is not on PATH (apt-get install redis-server redis-tools); refusing to run`)
      return 1
    }
  }
  const startedAt = new Date()
  const loadAtStart = loadavg()
  const load = (figures = loadavg()) => figures.map((n) => n.toFixed(2)).join(' ')
  const machine = [
    `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, ${formatBytes(totalmem())} memory, ${process.platform} ${process.arch}`,
    `Node ${process.version}; ${version('redis-server', ['--version'])}; HTTP load: ${httpLoad.name === 'wrk' ? version('wrk', ['--version']) : 'autocannon (wrk not installed)'}`,
    `Load average at start: ${load(loadAtStart)} (1, 5, 15 min). Other work on the machine makes every number noisy; ratios are measured in the same run with interleaved rounds.`,
  ]
  progress(`${quick ? 'quick' : 'full'} run; HTTP load by ${httpLoad.name}`)

  const parts: PartReport[] = []
  for (const scenario of SCENARIOS) {
    const { part, id, title } = scenario
    if (only !== undefined && !only.includes(id)) continue
    const reason = scenario.unavailable?.()
    if (reason !== undefined) {
      progress(`part ${part} (${id}) skipped: ${reason}`)
      parts.push({ part, id, title, status: 'skipped', reason })
      continue
    }
    progress(`part ${part} (${id}): ${title}`)
    const started = performance.now()
    const loadBefore = loadavg()[0] ?? Number.NaN
    try {
      const result = await scenario.run({ budget, httpLoad, progress })
      const seconds = (performance.now() - started) / 1000
      const partLoad = { start: loadBefore, end: loadavg()[0] ?? Number.NaN }
      parts.push({ part, id, title, status: 'measured', result, seconds, load: partLoad })
      progress(`part ${part} (${id}) done in ${seconds.toFixed(0)} s`)
    } catch (err) {
      progress(`part ${part} (${id}) failed: ${(err as Error).stack ?? err}`)
      parts.push({ part, id, title, status: 'failed', reason: (err as Error).message })
    }
  }
  const loadAtEnd = loadavg()
  machine.push(`Load average at end: ${load(loadAtEnd)}.`)

  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    seconds: (Date.now() - startedAt.getTime()) / 1000,
    quick,
    machine,
    load: { start: loadAtStart, end: loadAtEnd },
    targets: targetRows(parts),
    parts,
  }
  const dir = join(ROOT, 'bench', 'results', ...(quick ? ['quick'] : []))
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(join(dir, 'results.svg'), toSvg(report))
  writeFileSync(join(dir, 'results.md'), toMarkdown(report, 'results.svg'))
  progress(`wrote ${join(dir, 'results.md')} and results.svg, results.json`)
  if (runningChildren() > 0) progress(`${runningChildren()} child processes still running`)
  return parts.some((p) => p.status === 'failed') ? 1 : 0
}

/** `--render`: rewrites results.md and results.svg from results.json, measuring nothing. */
function render(quick: boolean): number {
  const dir = join(ROOT, 'bench', 'results', ...(quick ? ['quick'] : []))
  const report = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as BenchReport
  // The summary follows the parts, also for a report written before it existed.
  report.targets = targetRows(report.parts)
  writeFileSync(join(dir, 'results.svg'), toSvg(report))
  writeFileSync(join(dir, 'results.md'), toMarkdown(report, 'results.svg'))
  return 0
}

process.exitCode = await main(process.argv.slice(2))
