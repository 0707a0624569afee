import { sleep } from './redis-server.js'

/**
 * Asks until `ok` holds. The deadline is generous on purpose (a shared, noisy
 * machine); the write-to-read latency itself is measured by bench/coherence.ts.
 */
export async function askUntil<T>(
  ask: () => Promise<T> | T,
  ok: (answer: T) => boolean,
  timeoutMs = 2000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const answer = await ask()
    if (ok(answer)) return answer
    if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(answer)}`)
    await sleep(10)
  }
}
