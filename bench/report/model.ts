import type { ScenarioResult } from '../scenarios/types.js'

/** Everything one `npm run bench` measured, as written to results.json. */
export type BenchReport = {
  startedAt: string
  seconds: number
  quick: boolean
  machine: string[]
  parts: PartReport[]
}

export type PartReport = {
  part: number
  id: string
  title: string
} & (
  | { status: 'measured'; result: ScenarioResult; seconds: number }
  | { status: 'skipped' | 'failed'; reason: string }
)
