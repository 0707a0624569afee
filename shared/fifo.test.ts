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

  it('agrees with an array used as a queue through wrap-arounds, growth and emptying', () => {
    const q = new Fifo<number>(32)
    const model: number[] = []
    let seed = 7
    const random = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed / 2 ** 32
    }
    let next = 0
    for (let step = 0; step < 50_000; step++) {
      const r = random()
      if (r < 0.5) {
        q.push(next)
        model.push(next++)
      } else if (r < 0.97) {
        expect(q.shift()).toBe(model.shift())
      } else if (r < 0.99) {
        expect(q.drain()).toEqual(model.splice(0))
      } else {
        // Bursts: past the room kept while empty, and back to nothing.
        for (let i = 0; i < 100; i++) {
          q.push(next)
          model.push(next++)
        }
      }
      expect(q.length).toBe(model.length)
      expect(q.peek()).toBe(model[0])
      const offset = Math.floor(random() * (model.length + 2)) - 1
      expect(q.at(offset)).toBe(model[offset])
    }
  })
})
