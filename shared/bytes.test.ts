import { describe, expect, it } from 'vitest'
import { copyBytes, putBytes } from './bytes.js'

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

describe('putBytes', () => {
  it('copies as set does, into a Buffer or a Uint8Array, and refuses what does not fit', () => {
    for (const target of [Buffer.alloc(8, 0x2e), new Uint8Array(8).fill(0x2e)]) {
      putBytes(target, Buffer.from('abc'), 2)
      expect(Buffer.from(target).toString()).toBe('..abc...')
      putBytes(target, new Uint8Array([0x41]))
      expect(Buffer.from(target).toString()).toBe('A.abc...')
      expect(() => putBytes(target, Buffer.from('xyz'), 6)).toThrow(RangeError)
      expect(Buffer.from(target).toString()).toBe('A.abc...')
    }
  })
})
