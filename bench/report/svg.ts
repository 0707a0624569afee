import { formatNumber } from '../lib/stats.js'
import type { BenchReport } from './model.js'

const WIDTH = 1100
const LABEL = 620
const BAR = 380
/** Characters of a label that fit left of the bars at this font size. */
const LABEL_CHARS = 96
const ROW = 40
const TOP = 74

function shorten(text: string, chars = LABEL_CHARS): string {
  return text.length <= chars ? text : `${text.slice(0, chars - 1)}…`
}

function esc(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

/** What one row of the chart shows: a ratio bar, or only a verdict where the target is not a ratio. */
type Row = {
  name: string
  detail: string
  ratio?: number
  target?: number
  /** undefined: a reference with no target. */
  met?: boolean
}

/**
 * The targets summary as a chart: one row per target (a bar for ours /
 * theirs, green when met and red when not, with a red tick at the target;
 * a verdict only for targets that are not ratios), then the reference
 * comparisons that have no target, in grey.
 */
export function toSvg(report: BenchReport): string {
  const rows: Row[] = report.targets.map((t) => ({
    name: `${t.part}. ${t.name}`,
    detail: `${t.measured} (target ${t.target})`,
    ...(t.ratio === undefined ? {} : { ratio: t.ratio }),
    ...(t.targetRatio === undefined ? {} : { target: t.targetRatio }),
    met: t.met,
  }))
  for (const part of report.parts) {
    if (part.status !== 'measured') continue
    for (const c of part.result.comparisons) {
      if (c.target !== undefined) continue
      rows.push({
        name: `${part.part}. ${c.name}: ${c.ours.name} / ${c.theirs.name}`,
        detail: `${formatNumber(c.ours.value)} vs ${formatNumber(c.theirs.value)} ${c.unit} (reference, no target)`,
        ratio: c.ratio,
      })
    }
  }
  const finite = rows.map((r) => r.ratio ?? 0).filter((r) => Number.isFinite(r))
  // Capped so a 5x reference does not squash the bars near the targets, which sit at 0.9-1.0x.
  const maxRatio = Math.min(2, Math.max(1.25, ...finite))
  const scale = (ratio: number) => (Math.max(0, Math.min(ratio, maxRatio)) / maxRatio) * BAR
  const height = TOP + rows.length * ROW + 30
  const met = report.targets.filter((t) => t.met).length
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">redis-proxy / alternative, same run (higher is better): ${met} of ${report.targets.length} targets met</text>`,
    `<text x="12" y="40" fill="#555">${esc(report.startedAt)}${report.quick ? ' (quick mode)' : ''}, ${formatNumber(report.seconds)} s; load average ${esc(report.load?.start.map((n) => n.toFixed(2)).join(' ') ?? 'n/a')} at start, ${esc(report.load?.end.map((n) => n.toFixed(2)).join(' ') ?? 'n/a')} at end</text>`,
    `<text x="12" y="56" fill="#555">green: target met; red: missed (red tick at the target); grey: reference without a target; bars capped at ${formatNumber(maxRatio, 2)}x</text>`,
  ]
  rows.forEach((row, i) => {
    const y = TOP + i * ROW
    const fill = row.met === undefined ? '#546e7a' : row.met ? '#2f7d32' : '#c62828'
    out.push(
      `<text x="12" y="${y + 15}"><title>${esc(row.name)}</title>${esc(shorten(row.name))}</text>`,
      `<text x="12" y="${y + 30}" fill="#666" font-size="10"><title>${esc(row.detail)}</title>${esc(shorten(row.detail, 112))}</text>`,
    )
    if (row.ratio !== undefined && Number.isFinite(row.ratio)) {
      const width = scale(row.ratio)
      out.push(
        `<rect x="${LABEL}" y="${y + 6}" width="${width.toFixed(1)}" height="22" fill="${fill}" opacity="0.85"/>`,
        `<text x="${(LABEL + width + 6).toFixed(1)}" y="${y + 22}">${formatNumber(row.ratio, 2)}x${row.met === false ? ' (not met)' : ''}</text>`,
      )
    } else {
      const verdict = row.met === undefined ? 'n/a' : row.met ? 'met' : 'not met'
      out.push(
        `<text x="${LABEL}" y="${y + 22}" fill="${fill}" font-weight="bold">${verdict}</text>`,
      )
    }
    if (row.target !== undefined) {
      const x = (LABEL + scale(row.target)).toFixed(1)
      out.push(
        `<line x1="${x}" x2="${x}" y1="${y + 2}" y2="${y + 32}" stroke="#c62828" stroke-width="2"/>`,
      )
    }
  })
  const one = Math.round(LABEL + scale(1))
  out.push(
    `<line x1="${one}" x2="${one}" y1="${TOP - 4}" y2="${TOP + rows.length * ROW}" stroke="#333" stroke-dasharray="4 3"/>`,
    `<text x="${one - 12}" y="${TOP + rows.length * ROW + 16}" fill="#333">1.0x</text>`,
    '</svg>',
    '',
  )
  return out.join('\n')
}
