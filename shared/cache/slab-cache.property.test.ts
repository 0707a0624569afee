import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ModelCache } from './reference-model.js'
import { entryBytes, NIL, PAGE_BYTES, PREFETCH_MAX, SlabCache, sizeClasses } from './slab-cache.js'

// Keys of every shape the layout cares about: empty, binary, prefixes of one
// another, longer than the byte-loop copy, and enough of them (with a
// capacity to match) that a class fills several pages, so pages empty, are
// moved out of and come back.
const SPECIAL_KEYS = ['', '\x00', '\xff\xfe\x00', 'a', 'aa', 'k'.repeat(70), `${'k'.repeat(69)}j`]
const KEYS = [...SPECIAL_KEYS, ...Array.from({ length: 57 }, (_, i) => `key:${i}`)]

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)
}

/** Bytes that differ from step to step, so a stale value cannot pass for the right one. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (seed * 31 + i) % 251
  return out
}

/** The value length that makes the entry for `key` exactly `target` bytes (or the nearest below). */
function valueLengthFor(key: string, target: number): number {
  let length = Math.max(0, target - entryBytes(key.length, 0))
  while (length > 0 && entryBytes(key.length, length) > target) length--
  return length
}

type Size = { kind: 'entry'; bytes: number } | { kind: 'value'; bytes: number }

type Op =
  | { op: 'get'; key: number; bytes: boolean; prefetch: boolean }
  | { op: 'set'; key: number; bytes: boolean; size: Size; ttl: number | undefined }
  | { op: 'setNil'; key: number; ttl: number | undefined }
  | { op: 'delete'; key: number; bytes: boolean }
  | { op: 'sweep'; first: number; stride: number }
  | { op: 'advance'; ms: number }
  | { op: 'clear' }
  | { op: 'prefetch'; keys: number[] }
  | { op: 'deleteEach'; keys: number[]; spans: boolean }

/**
 * Sizes around size class boundaries (an entry of exactly a class's chunk,
 * one byte less, one more), around the largest value and the page, and any
 * size up to past the largest value allowed. A run draws its boundaries from
 * a few classes (`focus`), so those classes fill several pages, and pages
 * left half empty are moved out of; over the runs every boundary is drawn.
 */
function sizeArb(
  focus: number[],
  focusWeight: number,
  pageBytes: number,
  maxValueBytes: number,
): fc.Arbitrary<Size> {
  const boundaries = focus.flatMap((c) => [c - 1, c, c + 1])
  return fc.oneof(
    {
      weight: focusWeight,
      arbitrary: fc.constantFrom(...boundaries).map((bytes): Size => ({ kind: 'entry', bytes })),
    },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(
          0,
          1,
          maxValueBytes - 1,
          maxValueBytes,
          maxValueBytes + 1,
          pageBytes - 1,
          pageBytes,
          pageBytes + 1,
        )
        .map((bytes): Size => ({ kind: 'value', bytes })),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 0, max: maxValueBytes + 16 })
        .map((bytes): Size => ({ kind: 'value', bytes })),
    },
  )
}

/** `often` weighs every op but sweep and clear, which weigh 1. */
function opArb(sizes: fc.Arbitrary<Size>, often: number): fc.Arbitrary<Op> {
  const key = fc.integer({ min: 0, max: KEYS.length - 1 })
  return fc.oneof(
    {
      weight: 4 * often,
      // `prefetch`: every key readied between the lookup and the copy of its
      // value, which must still be the value looked up.
      arbitrary: fc.record({
        op: fc.constant('get' as const),
        key,
        bytes: fc.boolean(),
        prefetch: fc.boolean(),
      }),
    },
    {
      weight: 6 * often,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        key,
        bytes: fc.boolean(),
        size: sizes,
        ttl: fc.option(fc.integer({ min: -2, max: 30 }), { nil: undefined }),
      }),
    },
    {
      // A key recorded as missing: the same LRU and expiry, and a later set
      // (or setNil over a value) must turn the mark off (or on).
      weight: 2 * often,
      arbitrary: fc.record({
        op: fc.constant('setNil' as const),
        key,
        ttl: fc.option(fc.integer({ min: -2, max: 30 }), { nil: undefined }),
      }),
    },
    {
      weight: 2 * often,
      arbitrary: fc.record({ op: fc.constant('delete' as const), key, bytes: fc.boolean() }),
    },
    {
      // Deletes every stride-th key: pages left sparse, to be moved out of.
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('sweep' as const),
        first: fc.integer({ min: 0, max: 3 }),
        stride: fc.integer({ min: 1, max: 4 }),
      }),
    },
    {
      weight: 2 * often,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: fc.integer({ min: 0, max: 8 }),
      }),
    },
    {
      // A leap of about 12.4 days (the cache's REBASE_AFTER, 2^30 ms) or a
      // little less: the next stores find the records' base due to move,
      // with entries stored before the leap expired and those stored after
      // it live, and those left move with it.
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('advance' as const),
        ms: fc.integer({ min: 0, max: 16 }).map((short) => 2 ** 30 - short),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
    {
      // Readies lookups: changes nothing, whatever the keys (absent, repeated,
      // more than PREFETCH_MAX of them).
      weight: often,
      arbitrary: fc.record({
        op: fc.constant('prefetch' as const),
        keys: fc.array(key, { minLength: 1, maxLength: PREFETCH_MAX + 8 }),
      }),
    },
    {
      // A write's evictions (absent, repeated, more than PREFETCH_MAX keys).
      weight: often,
      arbitrary: fc.record({
        op: fc.constant('deleteEach' as const),
        keys: fc.array(key, { minLength: 1, maxLength: PREFETCH_MAX + 8 }),
        spans: fc.boolean(),
      }),
    },
  )
}

/** A key's bytes in the middle of a larger buffer, as a request would carry it. */
function framed(key: string): { buffer: Uint8Array; start: number; end: number } {
  const buffer = new Uint8Array(key.length + 7).fill(0x2a)
  buffer.set(latin1(key), 3)
  return { buffer, start: 3, end: 3 + key.length }
}

/** Every key of KEYS back to back after a byte of padding, with their spans, as in a request chunk. */
function packed(indexes: readonly number[]): { buffer: Uint8Array; spans: Int32Array } {
  const names = indexes.map((i) => latin1(KEYS[i] as string))
  const spans = new Int32Array(2 * names.length)
  const buffer = new Uint8Array(1 + names.reduce((n, k) => n + k.length, 0))
  let at = 1
  for (const [i, name] of names.entries()) {
    buffer.set(name, at)
    spans[2 * i] = at
    at += name.length
    spans[2 * i + 1] = at
  }
  return { buffer, spans }
}

const EVERY_KEY = packed(KEYS.map((_, i) => i))

function sameBytes(actual: Uint8Array | null, expected: Uint8Array | null): boolean {
  if (actual === null || expected === null) return actual === expected
  return actual.length === expected.length && Buffer.compare(actual, expected) === 0
}

type Setup = {
  pageBytes: number
  maxValueBytes: number
  numRuns: number
  /** The classes a run's boundary sizes are drawn from, and how many of them a run draws. */
  classes: number[]
  focusClasses: number
  minCapacity: number
  /** Weight of the focus classes' boundaries among sizes (the others weigh 3), and ops per run. */
  focusWeight: number
  maxOps: number
  /** How much more often than a sweep or a clear each other op comes. */
  often: number
  /** The cache's ttlMs is drawn from 1 up to this (a clock step is up to 8 ms). */
  maxTtlMs: number
}

function check(setup: Setup): void {
  const { pageBytes, maxValueBytes, numRuns, classes, focusClasses, minCapacity } = setup
  fc.assert(
    fc.property(
      fc.integer({ min: minCapacity, max: KEYS.length }),
      fc.integer({ min: 1, max: setup.maxTtlMs }),
      fc.subarray(classes, { minLength: 1, maxLength: focusClasses }).chain((focus) =>
        fc.array(opArb(sizeArb(focus, setup.focusWeight, pageBytes, maxValueBytes), setup.often), {
          minLength: 1,
          maxLength: setup.maxOps,
          size: 'max',
        }),
      ),
      (capacity, ttlMs, ops) => {
        const clock = { t: 0, now: () => clock.t }
        const real = new SlabCache({ capacity, ttlMs, clock, pageBytes, maxValueBytes })
        const model = new ModelCache<Uint8Array>(capacity, ttlMs, clock)

        const peekReal = (key: string, bytes: boolean): Uint8Array | null => {
          if (!bytes) return real.peek(key)
          const { buffer, start, end } = framed(key)
          const slot = real.peekBytes(buffer, start, end)
          if (slot < 0) return null
          if (real.isNil(slot)) return NIL
          const out = new Uint8Array(real.valueLength(slot) + 2)
          expect(real.copyValue(slot, out, 2)).toBe(out.length)
          return out.subarray(2)
        }

        for (const [step, o] of ops.entries()) {
          const where = `step ${step}: ${JSON.stringify(o)}`
          switch (o.op) {
            case 'get': {
              const key = KEYS[o.key] as string
              let got: Uint8Array | null
              if (o.bytes) {
                const { buffer, start, end } = framed(key)
                const slot = real.getBytes(buffer, start, end)
                // A found key's LRU neighbours were read as it was compared.
                expect(Number.isFinite(real.prefetchedSum), where).toBe(true)
                if (o.prefetch) {
                  real.prefetchBytes(EVERY_KEY.buffer, EVERY_KEY.spans, KEYS.length)
                  expect(Number.isFinite(real.prefetchedSum), where).toBe(true)
                }
                got = null
                if (slot >= 0) {
                  got = real.isNil(slot) ? NIL : new Uint8Array(real.valueLength(slot))
                  if (got !== NIL) real.copyValue(slot, got)
                }
              } else {
                got = real.get(key)
              }
              const expected = model.get(key)
              expect(got === NIL, where).toBe(expected === NIL)
              expect(sameBytes(got, expected), where).toBe(true)
              break
            }
            case 'set': {
              const key = KEYS[o.key] as string
              const length =
                o.size.kind === 'entry' ? valueLengthFor(key, o.size.bytes) : o.size.bytes
              const value = pattern(length, step)
              const stores = (o.ttl === undefined || o.ttl > 0) && length <= maxValueBytes
              let stored: boolean
              if (o.bytes) {
                const { buffer, start, end } = framed(key)
                stored = real.setBytes(buffer, start, end, value, o.ttl)
              } else {
                stored = real.set(key, value, o.ttl)
              }
              expect(stored, where).toBe(stores)
              if (length <= maxValueBytes) model.set(key, value.slice(), o.ttl)
              else model.delete(key)
              // The cache holds a copy: the caller may reuse its buffer.
              value.fill(0xee)
              break
            }
            case 'setNil': {
              const key = KEYS[o.key] as string
              const stored = real.setNil(key, o.ttl)
              expect(stored, where).toBe(o.ttl === undefined || o.ttl > 0)
              model.set(key, NIL, o.ttl)
              break
            }
            case 'delete': {
              const key = KEYS[o.key] as string
              let deleted: boolean
              if (o.bytes) {
                const { buffer, start, end } = framed(key)
                deleted = real.deleteBytes(buffer, start, end)
              } else {
                deleted = real.delete(key)
              }
              expect(deleted, where).toBe(model.delete(key))
              break
            }
            case 'sweep':
              for (let i = o.first; i < KEYS.length; i += o.stride) {
                const key = KEYS[i] as string
                expect(real.delete(key), `${where}, delete ${i}`).toBe(model.delete(key))
              }
              break
            case 'advance':
              clock.t += o.ms
              break
            case 'clear':
              real.clear()
              model.clear()
              expect(real.memory().allocatedBytes, where).toBe(0)
              break
            case 'prefetch': {
              const { buffer, spans } = packed(o.keys)
              real.prefetchBytes(buffer, spans, o.keys.length)
              expect(Number.isFinite(real.prefetchedSum), where).toBe(true)
              break
            }
            case 'deleteEach': {
              if (o.spans) {
                // An invalidation's keys, where they lie in one buffer:
                // it says how many live entries it removed, a key named
                // twice once.
                const live = new Set(o.keys.filter((i) => model.peek(KEYS[i] as string) !== null))
                const { buffer, spans } = packed(o.keys)
                expect(real.deleteSpans(buffer, spans, o.keys.length), where).toBe(live.size)
              } else {
                // A command's arguments at its key positions (every other one, as MSET's).
                const args = o.keys.flatMap((i) => [latin1(KEYS[i] as string), latin1('value')])
                real.deleteEach(
                  args,
                  o.keys.map((_, i) => 2 * i),
                )
              }
              expect(Number.isFinite(real.prefetchedSum), where).toBe(true)
              for (const i of o.keys) model.delete(KEYS[i] as string)
              break
            }
          }
          // Peeking changes nothing, so probing every key after every step
          // observes the cache without steering the run.
          // (expect only on a disagreement: thousands of probes per run.)
          for (const [i, key] of KEYS.entries()) {
            const expected = model.peek(key)
            const peeked = peekReal(key, (i + step) % 2 === 0)
            if (!sameBytes(peeked, expected) || (peeked === NIL) !== (expected === NIL))
              expect(peeked, `${where}, peek ${i}`).toBe(expected)
            if (real.has(key) !== (expected !== null)) {
              expect(real.has(key), `${where}, has ${i}`).toBe(expected !== null)
            }
          }
          expect(real.size, where).toBe(model.entries.length)
          expect(real.stats(), where).toEqual(model.stats)
          const memory = real.memory()
          const used = model.entries.reduce(
            (n, e) => n + entryBytes(e.key.length, e.value.length),
            0,
          )
          expect(memory.usedBytes, where).toBe(used)
          expect(memory.allocatedBytes, where).toBeGreaterThanOrEqual(used)
          expect(memory.dedicatedBytes, where).toBeLessThanOrEqual(memory.allocatedBytes)
        }
      },
    ),
    { numRuns },
  )
}

describe('SlabCache', () => {
  it('agrees with the reference model when most entries share one class of several pages', () => {
    // One class of 40 bytes or more (25 chunks or fewer to a 1 KiB page) per
    // run, and room for 32 keys or more: its pages fill, are left sparse by
    // sweeps, are moved out of, empty and come back.
    check({
      pageBytes: 1024,
      maxValueBytes: 1500,
      numRuns: 60,
      classes: sizeClasses(1024).filter((size) => size >= 40),
      focusClasses: 1,
      minCapacity: 32,
      focusWeight: 30,
      maxOps: 800,
      often: 8,
      maxTtlMs: 2000,
    })
  }, 120_000)

  it('agrees with the reference model, with 1 KiB pages and values up to the largest allowed', () => {
    // Seven classes (16..64 bytes), dedicated allocations above them, and
    // values up to past maxValueBytes.
    check({
      pageBytes: 1024,
      maxValueBytes: 1500,
      numRuns: 200,
      classes: sizeClasses(1024),
      focusClasses: 3,
      minCapacity: 1,
      focusWeight: 6,
      maxOps: 150,
      often: 1,
      maxTtlMs: 20,
    })
    // The model is linear and every step probes every key; on a shared
    // 2-vCPU machine this needs more than vitest's 5 s default.
  }, 120_000)

  it('agrees with the reference model with full-size pages, across every class boundary', () => {
    // The production layout: about 80 classes up to 64 KiB, then dedicated
    // allocations past a page. maxValueBytes is set just above a page so
    // its boundary is drawn too without copying 512 MiB values.
    check({
      pageBytes: PAGE_BYTES,
      maxValueBytes: PAGE_BYTES + 2,
      numRuns: 60,
      classes: sizeClasses(PAGE_BYTES),
      focusClasses: 3,
      minCapacity: 1,
      focusWeight: 6,
      maxOps: 150,
      often: 1,
      maxTtlMs: 20,
    })
  }, 120_000)
})
