import { describe, expect, it } from 'vitest'
import { copyBytes } from './bytes.js'

describe('copyBytes', () => {
  it('copies a range short or long to an offset and answers the offset after it', () => {
    const source = Buffer.from(`ab${'x'.repeat(40)}cd`)
    for (const [start, end] of [
      [0, 0],
      [1, 3],
      [0, 31],
      [0, 32],
      [2, 42],
      [0, source.length],
    ] as const) {
      const target = Buffer.alloc(60, 0x2e)
      expect(copyBytes(source, start, end, target, 5)).toBe(5 + end - start)
      expect(target.subarray(5, 5 + end - start).equals(source.subarray(start, end))).toBe(true)
      // Nothing around it is touched.
      expect(target.subarray(0, 5).toString()).toBe('.....')
      expect(target[5 + end - start]).toBe(0x2e)
    }
  })
})
