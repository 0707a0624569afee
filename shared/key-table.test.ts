import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { KeyTable } from './key-table.js'

type Item = { readonly key: string; readonly keyHash: number; readonly id: number }

describe('KeyTable', () => {
  it('behaves as a Map of the values it holds, through growth, removal runs and draining', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('add' as const), key: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant('removeOld' as const), key: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ kind: fc.constant('drain' as const), key: fc.constant(0) }),
    )
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        // Starts at 8 slots: collisions, wrap-around and growth all happen.
        const table = new KeyTable<Item>(1)
        const model = new Map<string, Item>()
        const retired: Item[] = []
        let id = 0
        for (const { kind, key: n } of ops) {
          const key = `k${n}`
          const current = model.get(key)
          if (kind === 'add') {
            if (current !== undefined) continue
            const item = { key, keyHash: table.hashOf(key), id: id++ }
            table.add(item)
            model.set(key, item)
          } else if (kind === 'remove') {
            expect(current === undefined ? false : table.remove(current)).toBe(
              current !== undefined,
            )
            if (current !== undefined) {
              model.delete(key)
              retired.push(current)
            }
          } else if (kind === 'removeOld') {
            // A value no longer under its key is not removed, nor is its successor.
            const old = retired.find((item) => item.key === key)
            if (old !== undefined) expect(table.remove(old)).toBe(false)
          } else {
            const drained = table.drain()
            expect(new Set(drained)).toEqual(new Set(model.values()))
            for (const item of drained) retired.push(item)
            model.clear()
          }
          expect(table.size).toBe(model.size)
          for (let k = 0; k <= 40; k++) {
            const probe = `k${k}`
            expect(table.get(probe, table.hashOf(probe))).toBe(model.get(probe))
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it('hashes to small integers, differently per table', () => {
    const a = new KeyTable<Item>()
    const b = new KeyTable<Item>()
    const keys = Array.from({ length: 50 }, (_, i) => `key:${i}`)
    for (const key of keys) {
      const h = a.hashOf(key)
      expect(Number.isInteger(h) && h >= 0 && h < 2 ** 30).toBe(true)
    }
    expect(keys.map((key) => a.hashOf(key))).not.toEqual(keys.map((key) => b.hashOf(key)))
  })
})
