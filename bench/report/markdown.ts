import { formatNumber } from '../lib/stats.js'
import type { Table } from '../scenarios/types.js'
import type { BenchReport } from './model.js'

function table({ columns, rows }: Table): string {
  const cellText = (cell: string) => cell.replaceAll('|', '\\|')
  return [
    `| ${columns.map(cellText).join(' | ')} |`,
    `|${columns.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((row) => `| ${row.map(cellText).join(' | ')} |`),
  ].join('\n')
}

/** results.md: targets first, then each part's tables and notes. */
export function toMarkdown(report: BenchReport, chartFile: string): string {
  const out: string[] = [
    `# Benchmark results${report.quick ? ' (quick mode: indicative only)' : ''}`,
    '',
    `Run started ${report.startedAt}, took ${formatNumber(report.seconds)} s (\`npm run bench${report.quick ? ' -- --quick' : ''}\`).`,
    '',
    ...report.machine.map((line) => `- ${line}`),
    '',
    `![ours / alternative, same run](${chartFile})`,
    '',
    '## Targets',
    '',
  ]
  const targets: string[][] = []
  for (const part of report.parts) {
    if (part.status !== 'measured') continue
    for (const c of part.result.comparisons) {
      if (c.target === undefined) continue
      targets.push([
        String(part.part),
        `${c.name}: ${c.ours.name} / ${c.theirs.name}`,
        `${formatNumber(c.ratio, 2)}x`,
        `>= ${formatNumber(c.target, 1)}x`,
        c.ratio >= c.target ? 'yes' : '**no**',
      ])
    }
    for (const check of part.result.checks) {
      targets.push([
        String(part.part),
        check.name,
        check.measured,
        check.target,
        check.pass ? 'yes' : '**no**',
      ])
    }
  }
  out.push(
    table({ title: '', columns: ['part', 'measure', 'measured', 'target', 'met'], rows: targets }),
  )
  for (const part of report.parts) {
    out.push('', `## ${part.part}. ${part.title}`, '')
    if (part.status !== 'measured') {
      out.push(`${part.status === 'skipped' ? 'Not measured' : 'Failed'}: ${part.reason}`)
      continue
    }
    for (const t of part.result.tables) out.push(`${t.title}:`, '', table(t), '')
    for (const note of part.result.notes) out.push(`- ${note}`)
  }
  out.push('')
  return out.join('\n')
}
