import { formatNumber } from '../lib/stats.js'
import type { PartReport, TargetRow } from './model.js'

/**
 * The targets summary: every comparison with a target and every check, in
 * part order. A part that failed or was skipped lists no rows, and says so
 * in its own section.
 */
export function targetRows(parts: readonly PartReport[]): TargetRow[] {
  const rows: TargetRow[] = []
  for (const part of parts) {
    if (part.status !== 'measured') continue
    for (const c of part.result.comparisons) {
      if (c.target === undefined) continue
      rows.push({
        part: part.part,
        name: `${c.name}: ${c.ours.name} / ${c.theirs.name}`,
        measured: `${formatNumber(c.ours.value)} against ${formatNumber(c.theirs.value)} ${c.unit}`,
        ratio: c.ratio,
        targetRatio: c.target,
        target: `>= ${formatNumber(c.target, 1)}x`,
        met: c.ratio >= c.target,
        ...(c.limit === undefined ? {} : { limit: c.limit }),
      })
    }
    for (const check of part.result.checks) {
      rows.push({
        part: part.part,
        name: check.name,
        measured: check.measured,
        ...(check.ratio === undefined ? {} : { ratio: check.ratio }),
        ...(check.targetRatio === undefined ? {} : { targetRatio: check.targetRatio }),
        target: check.target,
        met: check.pass,
        ...(check.limit === undefined ? {} : { limit: check.limit }),
      })
    }
  }
  return rows
}
