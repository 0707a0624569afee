import { loadavg } from 'node:os'
import { formatNumber } from '../lib/stats.js'

/** One side of a comparison as the limit notes need it: medians of its runs. */
export type Served = {
  name: string
  rps: number
  cpuUs: number
  /** cpuUs split into user and system time, where the side measured them. */
  userUs?: number
  systemUs?: number
}

/** CPU µs per request as user and system time, where a side measured them apart. */
export type CpuSplit = Pick<Served, 'userUs' | 'systemUs'>

/** `; user time X against Y µs, system time X against Y` when both sides have the split. */
export function cpuSplit(ours: CpuSplit, theirs: CpuSplit): string {
  if (ours.userUs === undefined || theirs.userUs === undefined) return ''
  if (ours.systemUs === undefined || theirs.systemUs === undefined) return ''
  return `; user time ${formatNumber(ours.userUs, 2)} against ${formatNumber(theirs.userUs, 2)} µs, system time ${formatNumber(ours.systemUs, 2)} against ${formatNumber(theirs.systemUs, 2)}`
}

/**
 * What the CPU figures say limits a throughput that misses its target: the
 * share of one core the serving process used (CPU µs per request x req/s),
 * and how its CPU per request compares with the other side's. A process near
 * 100% of a core is bound by its own work per request; one well below it
 * waited on something else (the load generator, the backend, or other work
 * on this two-core machine).
 */
export function cpuLimit(ours: Served, theirs: Served): string {
  const busy = (s: Served) => (s.cpuUs * s.rps) / 1e6
  const oursBusy = busy(ours)
  const perRequest =
    ours.cpuUs > theirs.cpuUs
      ? `${ours.name} spends ${formatNumber(ours.cpuUs / theirs.cpuUs, 2)}x the CPU per request of ${theirs.name} (${formatNumber(ours.cpuUs, 2)} against ${formatNumber(theirs.cpuUs, 2)} µs${cpuSplit(ours, theirs)})`
      : `${ours.name} spends no more CPU per request than ${theirs.name} (${formatNumber(ours.cpuUs, 2)} against ${formatNumber(theirs.cpuUs, 2)} µs${cpuSplit(ours, theirs)})`
  const bound =
    oursBusy >= 0.85
      ? `its one thread was ${formatNumber(oursBusy * 100)}% busy, so its CPU per request bounds the rate`
      : `it used ${formatNumber(oursBusy * 100)}% of a core (${theirs.name} ${formatNumber(busy(theirs) * 100)}%), so it also waited: for the load generator, the backend or other work on the 2 cores`
  return `${perRequest}; ${bound}.`
}

/** The machine's 1-minute load average, for notes on a noisy figure. */
export function loadNow(): string {
  return formatNumber(loadavg()[0] ?? Number.NaN, 2)
}

/** The name of bench/targets/bare-forward.ts's side in parts 3 and 7. */
export const RELAY_FLOOR = 'bare node:net relay'

/**
 * What a forwarding figure that misses its target is up against: the bare
 * Node relay's CPU per request (and rate, where it has one) in the same
 * runs, against `theirs` (twemproxy) and the sidecar. A relay that keeps
 * up with twemproxy says the gap is the sidecar's own work, not Node's.
 */
export function relayFloorLimit(floor: Served | undefined, theirs: Served, ours: Served): string {
  if (floor === undefined || !(floor.cpuUs > 0)) return ''
  const split =
    floor.userUs === undefined || floor.systemUs === undefined
      ? ''
      : ` (user ${formatNumber(floor.userUs, 2)}, system ${formatNumber(floor.systemUs, 2)})`
  const rate =
    floor.rps > 0
      ? ` at ${formatNumber(floor.rps)} req/s (${formatNumber(floor.rps / theirs.rps, 2)}x ${theirs.name}'s rate)`
      : ''
  return ` The floor for a forwarding proxy in Node here, a bare node:net relay that frames each command and reply and copies them between the sockets as the sidecar reads and writes them (bench/targets/bare-forward.ts: no cache, no command table, no read-your-writes), spent ${formatNumber(floor.cpuUs, 2)} µs per request${split}${rate} in the same runs, ${formatNumber(floor.cpuUs / theirs.cpuUs, 2)}x the CPU per request of ${theirs.name}; the sidecar spent ${formatNumber(ours.cpuUs - floor.cpuUs, 2)} µs more than the relay, its own work.`
}
