import { formatNumber } from '../lib/stats.js'
import type { Table } from '../scenarios/types.js'
import type { BenchReport } from './model.js'

/** Numbers right-aligned; the first column, and those in `left`, left-aligned. */
function table({ columns, rows }: Table, left: readonly number[] = []): string {
  const cellText = (cell: string) => cell.replaceAll('|', '\\|')
  return [
    `| ${columns.map(cellText).join(' | ')} |`,
    `|${columns.map((_, i) => (i === 0 || left.includes(i) ? '---' : '---:')).join('|')}|`,
    ...rows.map((row) => `| ${row.map(cellText).join(' | ')} |`),
  ].join('\n')
}

/** results.md: targets first, then each part's tables and notes. */
export function toMarkdown(report: BenchReport, chartFile: string): string {
  const rows = report.targets
  const met = rows.filter((row) => row.met).length
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
    `${met} of ${rows.length} targets met. Ratios are ours / theirs (higher is better; for CPU and memory, theirs / ours), measured side by side in this run.`,
    '',
  ]
  out.push(
    table(
      {
        title: '',
        columns: ['part', 'target', 'measured', 'ratio', 'target', 'met', 'what limits it'],
        rows: rows.map((row) => [
          String(row.part),
          row.name,
          row.measured,
          row.ratio === undefined ? '' : `${formatNumber(row.ratio, 2)}x`,
          row.target,
          row.met ? 'yes' : '**no**',
          row.met ? '' : (row.limit ?? ''),
        ]),
      },
      [1, 2, 4, 6],
    ),
  )
  const failed = report.parts.filter((p) => p.status !== 'measured')
  if (failed.length > 0) {
    out.push(
      '',
      `Not measured in this run (no rows above): ${failed.map((p) => `part ${p.part} (${p.id})`).join(', ')}.`,
    )
  }
  for (const part of report.parts) {
    out.push('', `## ${part.part}. ${part.title}`, '')
    if (part.status !== 'measured') {
      out.push(`${part.status === 'skipped' ? 'Not measured' : 'Failed'}: ${part.reason}`)
      continue
    }
    const load =
      part.load === undefined
        ? ''
        : `; 1-minute load average ${formatNumber(part.load.start, 2)} at its start, ${formatNumber(part.load.end, 2)} at its end`
    out.push(`Took ${formatNumber(part.seconds)} s${load}.`, '')
    for (const t of part.result.tables) out.push(`${t.title}:`, '', table(t), '')
    for (const note of part.result.notes) out.push(`- ${note}`)
  }
  out.push('')
  return out.join('\n')
}
