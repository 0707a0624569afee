/**
 * Reconnection delay: 50 ms doubling to a 2 s ceiling, with jitter so replicas
 * do not stampede. A module of its own so the native backend and Sentinel
 * discovery take it without loading ioredis (13-14 MiB of RSS at start-up,
 * measured, that the Node runtime never uses).
 */
export function backoff(attempt: number): number {
  const base = Math.min(50 * 2 ** Math.min(attempt, 6), 2000)
  return base + Math.floor(Math.random() * (base / 4))
}
