import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LruCache } from './lru-cache.js'
import { ModelCache } from './reference-model.js'

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
          const model = new ModelCache<number>(capacity, ttlMs, clock)

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
