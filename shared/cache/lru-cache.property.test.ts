import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type CacheStats, LruCache } from './lru-cache.js'

// A deliberately naive reference: an array ordered from least to most recently
// used, scanned linearly. It states the documented semantics directly.
type Entry = { key: string; value: number; expiresAt: number }

class ModelCache {
  entries: Entry[] = []
  stats: CacheStats = { hits: 0, misses: 0, evictions: 0, expirations: 0 }

  constructor(
    readonly capacity: number,
    readonly ttlMs: number,
    readonly clock: { now(): number },
  ) {}

  #expired(entry: Entry): boolean {
    return this.clock.now() >= entry.expiresAt
  }

  #find(key: string): number {
    return this.entries.findIndex((e) => e.key === key)
  }

  get(key: string): number | null {
    const i = this.#find(key)
    const entry = this.entries[i]
    if (entry === undefined) {
      this.stats.misses++
      return null
    }
    this.entries.splice(i, 1)
    if (this.#expired(entry)) {
      this.stats.misses++
      this.stats.expirations++
      return null
    }
    this.stats.hits++
    this.entries.push(entry)
    return entry.value
  }

  peek(key: string): number | null {
    const entry = this.entries[this.#find(key)]
    return entry === undefined || this.#expired(entry) ? null : entry.value
  }

  set(key: string, value: number, ttlMs = this.ttlMs): void {
    if (ttlMs <= 0) {
      this.delete(key)
      return
    }
    const i = this.#find(key)
    const existing = this.entries[i]
    if (existing !== undefined) {
      if (this.#expired(existing)) this.stats.expirations++
      this.entries.splice(i, 1)
    } else if (this.entries.length === this.capacity) {
      const lru = this.entries.shift() as Entry
      if (this.#expired(lru)) this.stats.expirations++
      else this.stats.evictions++
    }
    this.entries.push({ key, value, expiresAt: this.clock.now() + Math.min(ttlMs, this.ttlMs) })
  }

  delete(key: string): boolean {
    const i = this.#find(key)
    const entry = this.entries[i]
    if (entry === undefined) return false
    this.entries.splice(i, 1)
    if (this.#expired(entry)) {
      this.stats.expirations++
      return false
    }
    return true
  }

  clear(): void {
    this.entries = []
  }
}

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] as const
const keyArb = fc.constantFrom(...KEYS)

type Op =
  | { op: 'get'; key: string }
  | { op: 'set'; key: string; ttl: number | undefined }
  | { op: 'delete'; key: string }
  | { op: 'advance'; ms: number }
  | { op: 'clear' }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('get' as const), key: keyArb }) },
  {
    weight: 4,
    // Half with an entry TTL of their own (the key's remaining TTL in Redis),
    // from already gone (<= 0) to longer than the cache's.
    arbitrary: fc.record({
      op: fc.constant('set' as const),
      key: keyArb,
      ttl: fc.option(fc.integer({ min: -2, max: 30 }), { nil: undefined }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key: keyArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      ms: fc.integer({ min: 0, max: 25 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
)

describe('LruCache', () => {
  it('agrees with a naive reference model on every random operation sequence', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(opArb, { minLength: 1, maxLength: 100, size: 'max' }),
        (capacity, ttlMs, ops) => {
          const clock = { t: 0, now: () => clock.t }
          const real = new LruCache<number>({ capacity, ttlMs, clock })
          const model = new ModelCache(capacity, ttlMs, clock)

          for (const [step, o] of ops.entries()) {
            const where = `step ${step}: ${JSON.stringify(o)}`
            switch (o.op) {
              case 'get':
                expect(real.get(o.key), where).toBe(model.get(o.key))
                break
              case 'set':
                // The step number as value: unique, so a stale value cannot pass.
                real.set(o.key, step, o.ttl)
                model.set(o.key, step, o.ttl)
                break
              case 'delete':
                expect(real.delete(o.key), where).toBe(model.delete(o.key))
                break
              case 'advance':
                clock.t += o.ms
                break
              case 'clear':
                real.clear()
                model.clear()
                break
            }
            // peek and has change nothing, so probing every key after every
            // step observes the cache without steering the run.
            for (const key of KEYS) {
              expect(real.peek(key), `${where}, peek ${key}`).toBe(model.peek(key))
              expect(real.has(key), `${where}, has ${key}`).toBe(model.peek(key) !== null)
            }
            expect(real.size, where).toBe(model.entries.length)
            expect(real.stats(), where).toEqual(model.stats)
          }
        },
      ),
      { numRuns: 300 },
    )
    // About 3 s alone; on a shared 2-vCPU machine running the integration
    // suites beside it, vitest's 5 s default is not enough.
  }, 30_000)
})
