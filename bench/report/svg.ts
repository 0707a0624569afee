import { formatNumber } from '../lib/stats.js'
import type { BenchReport } from './model.js'

const WIDTH = 860
const LABEL = 300
const BAR = 420
const ROW = 40
const TOP = 56

function esc(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

/**
 * One horizontal bar per comparison: ours / the alternative, measured in the
 * same run, with a line at 1.0x and a tick at the target where there is one.
 */
export function toSvg(report: BenchReport): string {
  const rows = report.parts.flatMap((part) =>
    part.status === 'measured' ? part.result.comparisons : [],
  )
  const maxRatio = Math.max(1.25, ...rows.map((c) => (Number.isFinite(c.ratio) ? c.ratio : 0)))
  const scale = (ratio: number) => (Math.min(ratio, maxRatio) / maxRatio) * BAR
  const height = TOP + rows.length * ROW + 30
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif" font-size="13">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">redis-proxy / alternative, same run (higher is better)</text>`,
    `<text x="12" y="40" fill="#555">${esc(report.startedAt)}${report.quick ? ' (quick mode)' : ''}; target ticks in red; grey bars have no target</text>`,
  ]
  rows.forEach((c, i) => {
    const y = TOP + i * ROW
    // Green or red against a target; slate where the issue sets none.
    const fill = c.target === undefined ? '#546e7a' : c.ratio >= c.target ? '#2f7d32' : '#c62828'
    parts.push(
      `<text x="12" y="${y + 15}">${esc(c.name)}</text>`,
      `<text x="12" y="${y + 30}" fill="#666" font-size="11">${esc(`${formatNumber(c.ours.value)} vs ${formatNumber(c.theirs.value)} ${c.unit} (${c.theirs.name})`)}</text>`,
      `<rect x="${LABEL}" y="${y + 6}" width="${scale(c.ratio).toFixed(1)}" height="22" fill="${fill}" opacity="0.85"/>`,
      `<text x="${(LABEL + scale(c.ratio) + 6).toFixed(1)}" y="${y + 22}">${formatNumber(c.ratio, 2)}x</text>`,
    )
    if (c.target !== undefined) {
      const x = (LABEL + scale(c.target)).toFixed(1)
      parts.push(
        `<line x1="${x}" x2="${x}" y1="${y + 2}" y2="${y + 32}" stroke="#c62828" stroke-width="2"/>`,
      )
    }
  })
  const one = Math.round(LABEL + scale(1))
  parts.push(
    `<line x1="${one}" x2="${one}" y1="${TOP - 4}" y2="${TOP + rows.length * ROW}" stroke="#333" stroke-dasharray="4 3"/>`,
    `<text x="${one - 12}" y="${TOP + rows.length * ROW + 16}" fill="#333">1.0x</text>`,
    '</svg>',
    '',
  )
  return parts.join('\n')
}
