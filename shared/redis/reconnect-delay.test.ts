import { describe, expect, it } from 'vitest'
import { backoff } from './reconnect-delay.js'

describe('backoff', () => {
  it('doubles from 50 ms to a 2 s ceiling with up to a quarter of jitter', () => {
    for (let i = 0; i < 200; i++) {
      for (const [attempt, base] of [
        [0, 50],
        [1, 100],
        [5, 1600],
        [6, 2000],
        [40, 2000],
      ] as const) {
        const delay = backoff(attempt)
        expect(delay).toBeGreaterThanOrEqual(base)
        expect(delay).toBeLessThanOrEqual(base + base / 4)
        expect(Number.isInteger(delay)).toBe(true)
      }
    }
  })
})
