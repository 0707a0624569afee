import { describe, expect, it } from 'vitest'
import { Fifo } from './fifo.js'

describe('Fifo', () => {
  it('hands items out in the order they came in', () => {
    const q = new Fifo<number>()
    for (let i = 0; i < 5; i++) q.push(i)
    expect(q.length).toBe(5)
    expect(q.peek()).toBe(0)
    expect(q.at(3)).toBe(3)
    expect([q.shift(), q.shift()]).toEqual([0, 1])
    q.push(5)
    expect(q.drain()).toEqual([2, 3, 4, 5])
    expect(q.length).toBe(0)
    expect(q.shift()).toBeUndefined()
  })

  it('keeps order across compactions of a long-running queue', () => {
    const q = new Fifo<number>()
    let next = 0
    let expected = 0
    // Always a few thousand queued, so the head passes the compaction point many times.
    for (let round = 0; round < 20_000; round++) {
      q.push(next++)
      q.push(next++)
      if (q.length > 3000) {
        expect(q.shift()).toBe(expected++)
        expect(q.shift()).toBe(expected++)
        expect(q.shift()).toBe(expected++)
      }
    }
    expect(q.length).toBe(next - expected)
    expect(q.peek()).toBe(expected)
  })
})
