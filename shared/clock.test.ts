import { describe, expect, it } from 'vitest'
import { turnNow } from './clock.js'

const busy = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {}
}

describe('turnNow', () => {
  it('reads the clock once per synchronous run and anew after its microtasks', async () => {
    const first = turnNow()
    busy(3)
    // Still the same run: the same reading.
    expect(turnNow()).toBe(first)
    await Promise.resolve()
    await new Promise((resolve) => setTimeout(resolve, 0))
    const next = turnNow()
    expect(next).toBeGreaterThanOrEqual(first + 3)
    expect(next).toBeLessThanOrEqual(performance.now())
  })

  it('is never ahead of performance.now()', () => {
    for (let i = 0; i < 1000; i++) expect(turnNow()).toBeLessThanOrEqual(performance.now())
  })
})
