import type { ScenarioResult } from '../scenarios/types.js'

/** Everything one `npm run bench` measured, as written to results.json. */
export type BenchReport = {
  startedAt: string
  seconds: number
  quick: boolean
  machine: string[]
  /** 1, 5 and 15 minute load averages when the run started and ended. */
  load?: { start: number[]; end: number[] }
  /** Every target of the performance issue the run measured, with its verdict. */
  targets: TargetRow[]
  parts: PartReport[]
}

export type PartReport = {
  part: number
  id: string
  title: string
} & (
  | {
      status: 'measured'
      result: ScenarioResult
      seconds: number
      /** 1-minute load average when the part started and when it ended (absent in older reports). */
      load?: { start: number; end: number }
    }
  | { status: 'skipped' | 'failed'; reason: string }
)

export type TargetRow = {
  part: number
  name: string
  /** What was measured, ours against theirs. */
  measured: string
  /** ours / theirs, higher better, where the target is a ratio. */
  ratio?: number
  /** The ratio that meets the target, where `ratio` is given. */
  targetRatio?: number
  target: string
  met: boolean
  /** For a missed target: what the measurements say limits it. */
  limit?: string
}
