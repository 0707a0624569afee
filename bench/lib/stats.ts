/** The middle value (mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/**
 * Runs every trial once per round, reversing the order on odd rounds (A B, B A,
 * A B, ...) so a drift in machine load during the run falls on both sides
 * alike. Returns each trial's samples in round order.
 */
export async function interleave<T>(
  rounds: number,
  trials: readonly { name: string; run(round: number): Promise<T> }[],
  progress: (line: string) => void,
): Promise<Map<string, T[]>> {
  const samples = new Map<string, T[]>(trials.map((trial) => [trial.name, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? trials : [...trials].reverse()
    for (const trial of order) {
      progress(`round ${round + 1}/${rounds}: ${trial.name}`)
      samples.get(trial.name)?.push(await trial.run(round))
    }
  }
  return samples
}

export function formatNumber(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  })
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'n/a'
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${formatNumber(value, unit === 0 ? 0 : 1)} ${units[unit]}`
}
