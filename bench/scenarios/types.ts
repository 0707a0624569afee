import type { HttpLoad } from '../load/http.js'

/** How long and how often: `--quick` trades precision for a run of a few minutes. */
export type Budget = {
  quick: boolean
  /** Interleaved rounds per comparison; medians are taken over them. */
  rounds: number
  /** Seconds of HTTP load per measured run. */
  httpSeconds: number
  /** redis-benchmark requests per run at pipeline 1 (3x that at pipeline 16). */
  respRequests: number
  /** Writes timed by the coherence benchmark. */
  coherenceWrites: number
  /** Operations per measured pass of the cache benchmark. */
  cacheOps: number
  /** Keys cached at each memory step. */
  memorySteps: readonly number[]
  /** Seconds of the RSS soak, and of its warm-up at the start. */
  soakSeconds: number
  soakWarmupSeconds: number
}

export type BenchContext = {
  budget: Budget
  httpLoad: HttpLoad
  /** One line of progress on stderr. */
  progress(line: string): void
}

/**
 * Ours against what a user would pick instead, measured in the same run:
 * `samples` are the per-round numbers, `value` their median, and `ratio`
 * ours / theirs of the medians (higher is better for both units).
 */
export type Comparison = {
  name: string
  unit: string
  ours: { name: string; value: number; samples: number[] }
  theirs: { name: string; value: number; samples: number[] }
  ratio: number
  /** The ratio ours must reach, if the issue sets one. */
  target?: number
  /** Where the target is missed: what the measurements say limits the figure. */
  limit?: string
}

/**
 * A target that is not a plain throughput ratio (CPU per request, bytes,
 * growth, counts), with its verdict; `ratio` where it is one, higher better.
 */
export type Check = {
  name: string
  measured: string
  target: string
  pass: boolean
  ratio?: number
  /** The ratio that meets the target, where `ratio` is given. */
  targetRatio?: number
  /** Where the target is missed: what the measurements say limits the figure. */
  limit?: string
}

export type Table = { title: string; columns: string[]; rows: string[][] }

export type ScenarioResult = {
  tables: Table[]
  comparisons: Comparison[]
  checks: Check[]
  notes: string[]
}

/**
 * One numbered part of the benchmark: starts its own targets, runs the load,
 * collects the numbers, and stops everything it started before returning
 * (also when it throws).
 */
export type Scenario = {
  part: number
  id: string
  title: string
  /** What it needs that may be missing; a reason makes the runner skip it. */
  unavailable?(): string | undefined
  run(ctx: BenchContext): Promise<ScenarioResult>
}

export function compare(
  name: string,
  unit: string,
  ours: { name: string; samples: number[] },
  theirs: { name: string; samples: number[] },
  median: (values: number[]) => number,
  target?: number,
  /** Called only when the target is missed. */
  limit?: (ratio: number) => string,
): Comparison {
  const oursValue = median(ours.samples)
  const theirsValue = median(theirs.samples)
  const ratio = oursValue / theirsValue
  const missed = target !== undefined && !(ratio >= target)
  return {
    name,
    unit,
    ours: { ...ours, value: oursValue },
    theirs: { ...theirs, value: theirsValue },
    ratio,
    ...(target === undefined ? {} : { target }),
    ...(missed && limit !== undefined ? { limit: limit(ratio) } : {}),
  }
}
