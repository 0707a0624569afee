import { describe, expect, it } from 'vitest'
import { type CacheStats, LruCache } from './lru-cache.js'
import {
  entryBytes,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  NIL,
  PAGE_BYTES,
  SlabCache,
  sizeClasses,
} from './slab-cache.js'

function fakeClock(start = 0) {
  return {
    t: start,
    now() {
      return this.t
    },
  }
}

type FakeClock = ReturnType<typeof fakeClock>

/** Latin1 bytes of a byte string (what Buffer.from(text, 'latin1') gives). */
function bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff)
}

/** Bytes where position i holds (seed + i) mod 251: a value whose every byte is checked. */
function pattern(length: number, seed = 0): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (seed + i) % 251
  return out
}

/** Byte equality that stays fast for values of megabytes (toEqual walks them element by element). */
function expectSameBytes(actual: Uint8Array | null, expected: Uint8Array, what = 'value'): void {
  expect(actual, what).not.toBeNull()
  const got = actual as Uint8Array
  expect(got.length, `${what} length`).toBe(expected.length)
  expect(Buffer.compare(got, expected), `${what} bytes`).toBe(0)
}

/** The contract LruCache<Uint8Array> and SlabCache share, as the behaviour table below uses it. */
type ByteCache = {
  readonly capacity: number
  readonly ttlMs: number
  readonly size: number
  get(key: string): Uint8Array | null
  peek(key: string): Uint8Array | null
  has(key: string): boolean
  set(key: string, value: Uint8Array, ttlMs?: number): unknown
  delete(key: string): boolean
  clear(): void
  stats(): CacheStats
}

type Make = (options: { capacity: number; ttlMs: number; clock?: { now(): number } }) => ByteCache

const implementations: [string, Make][] = [
  ['LruCache<Uint8Array>', (options) => new LruCache<Uint8Array>(options)],
  ['SlabCache', (options) => new SlabCache(options)],
  // Pages of 1 KiB: the same behaviour through many small pages and dedicated allocations.
  ['SlabCache with 1 KiB pages', (options) => new SlabCache({ ...options, pageBytes: 1024 })],
]

const zeroStats: CacheStats = { hits: 0, misses: 0, evictions: 0, expirations: 0 }

describe.each(implementations)('the cache contract: %s', (_name, make) => {
  function cache(capacity: number, ttlMs = 1000, clock: FakeClock = fakeClock()) {
    return { cache: make({ capacity, ttlMs, clock }), clock }
  }
  const A = bytes('A')
  const liveKeys = (c: ByteCache, keys: readonly string[]) => keys.filter((k) => c.has(k))

  describe('reads and writes', () => {
    it('returns null for a key never stored', () => {
      const { cache: c } = cache(2)
      expect(c.get('a')).toBeNull()
      expect(c.peek('a')).toBeNull()
      expect(c.has('a')).toBe(false)
    })

    it('returns the stored value', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      expect(c.get('a')).toEqual(A)
      expect(c.peek('a')).toEqual(A)
      expect(c.has('a')).toBe(true)
      expect(c.size).toBe(1)
    })

    it('replaces the value of an existing key without growing', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('a', bytes('A2'))
      expect(c.get('a')).toEqual(bytes('A2'))
      expect(c.size).toBe(1)
    })

    it('keeps an empty value apart from a miss', () => {
      const { cache: c } = cache(2)
      c.set('empty', new Uint8Array(0))
      expect(c.get('empty')).toEqual(new Uint8Array(0))
      expect(c.has('empty')).toBe(true)
      expect(c.stats().hits).toBe(1)
    })

    it('keeps the empty key apart from the others', () => {
      const { cache: c } = cache(3)
      c.set('', bytes('E'))
      c.set('a', A)
      expect(c.get('')).toEqual(bytes('E'))
      expect(c.delete('')).toBe(true)
      expect(c.get('a')).toEqual(A)
    })

    it('deletes a live key and reports it', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      expect(c.delete('a')).toBe(true)
      expect(c.get('a')).toBeNull()
      expect(c.size).toBe(0)
    })

    it('reports false when deleting a key that is not stored', () => {
      const { cache: c } = cache(2)
      expect(c.delete('a')).toBe(false)
    })

    it('clears every entry and keeps the counters', () => {
      const { cache: c } = cache(3)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.get('a')
      c.get('x')
      c.clear()
      expect(c.size).toBe(0)
      expect(liveKeys(c, ['a', 'b'])).toEqual([])
      expect(c.stats()).toEqual({ hits: 1, misses: 1, evictions: 0, expirations: 0 })
    })

    it('works normally after clear', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.clear()
      c.set('c', bytes('C'))
      c.set('d', bytes('D'))
      c.set('e', bytes('E'))
      expect(liveKeys(c, ['a', 'b', 'c', 'd', 'e'])).toEqual(['d', 'e'])
      expect(c.get('e')).toEqual(bytes('E'))
      expect(c.stats().evictions).toBe(1)
    })

    it('exposes capacity and ttlMs', () => {
      const { cache: c } = cache(7, 250)
      expect(c.capacity).toBe(7)
      expect(c.ttlMs).toBe(250)
    })

    it('stores nothing and removes the key for an entry ttl of 0 or less', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('a', bytes('A2'), 0)
      expect(c.has('a')).toBe(false)
      c.set('b', bytes('B'), -5)
      expect(c.size).toBe(0)
    })
  })

  describe('eviction', () => {
    it('evicts the least recently stored key when full and nothing was read', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(1)
    })

    it('evicts the least recently read key when full', () => {
      const { cache: c } = cache(3)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.set('c', bytes('C'))
      c.get('a')
      c.get('b')
      c.set('d', bytes('D'))
      expect(liveKeys(c, ['a', 'b', 'c', 'd'])).toEqual(['a', 'b', 'd'])
      c.set('e', bytes('E'))
      expect(liveKeys(c, ['a', 'b', 'c', 'd', 'e'])).toEqual(['b', 'd', 'e'])
    })

    it('treats storing over an existing key as a use, without evicting', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.set('a', bytes('A2'))
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(0)
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['a', 'c'])
    })

    it('does not count a miss as a use', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.get('zzz')
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    })

    it('does not let peek or has change the eviction order', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.peek('a')
      c.has('a')
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    })

    it('holds one key at capacity 1, replacing it on every new key', () => {
      const { cache: c } = cache(1)
      c.set('a', A)
      c.set('a', bytes('A2'))
      expect(c.stats().evictions).toBe(0)
      c.set('b', bytes('B'))
      expect(c.get('a')).toBeNull()
      expect(c.get('b')).toEqual(bytes('B'))
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['c'])
      expect(c.size).toBe(1)
      expect(c.stats().evictions).toBe(2)
    })

    it('fills a slot freed by delete before evicting anyone', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.delete('a')
      c.set('c', bytes('C'))
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
      expect(c.stats().evictions).toBe(0)
    })

    it('stays within capacity and correct through many deletes and inserts', () => {
      const { cache: c } = cache(4)
      for (let i = 0; i < 10_000; i++) {
        c.set(`k${i}`, bytes(`v${i}`))
        if (i % 3 === 0) expect(c.delete(`k${i}`)).toBe(true)
        expect(c.size).toBeLessThanOrEqual(4)
      }
      expect(liveKeys(c, ['k9994', 'k9995', 'k9996', 'k9997', 'k9998', 'k9999'])).toEqual([
        'k9995',
        'k9997',
        'k9998',
      ])
      c.set('next', A)
      expect(liveKeys(c, ['k9995', 'k9997', 'k9998', 'next'])).toHaveLength(4)
      expect(c.get('k9998')).toEqual(bytes('v9998'))
    })
  })

  describe('expiry', () => {
    it('keeps an entry live until ttlMs - 1 and expires it at exactly ttlMs', () => {
      const { cache: c, clock } = cache(2, 100, fakeClock(5))
      c.set('a', A)
      clock.t = 5 + 99
      expect(c.has('a')).toBe(true)
      expect(c.peek('a')).toEqual(A)
      expect(c.get('a')).toEqual(A)
      clock.t = 5 + 100
      expect(c.has('a')).toBe(false)
      expect(c.peek('a')).toBeNull()
      expect(c.get('a')).toBeNull()
    })

    it('does not extend the lifetime of an entry that is read', () => {
      const { cache: c, clock } = cache(2, 100)
      c.set('a', A)
      clock.t = 60
      expect(c.get('a')).toEqual(A)
      clock.t = 100
      expect(c.get('a')).toBeNull()
    })

    it('gives a replaced entry a fresh lifetime', () => {
      const { cache: c, clock } = cache(2, 100)
      c.set('a', A)
      clock.t = 60
      c.set('a', bytes('A2'))
      clock.t = 159
      expect(c.get('a')).toEqual(bytes('A2'))
      clock.t = 160
      expect(c.get('a')).toBeNull()
    })

    it('shortens an entry to its own ttl but never lengthens it past the cache ttl', () => {
      const { cache: c, clock } = cache(3, 100)
      c.set('short', A, 10)
      c.set('long', A, 1000)
      clock.t = 10
      expect(c.has('short')).toBe(false)
      expect(c.has('long')).toBe(true)
      clock.t = 100
      expect(c.has('long')).toBe(false)
    })

    it('counts a get of an expired entry as a miss and an expiration and removes it', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', A)
      clock.t = 10
      expect(c.get('a')).toBeNull()
      expect(c.size).toBe(0)
      expect(c.stats()).toEqual({ hits: 0, misses: 1, evictions: 0, expirations: 1 })
      expect(c.get('a')).toBeNull()
      expect(c.stats()).toEqual({ hits: 0, misses: 2, evictions: 0, expirations: 1 })
    })

    it('leaves an expired entry in place when only peeked at or tested', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', A)
      clock.t = 10
      expect(c.peek('a')).toBeNull()
      expect(c.has('a')).toBe(false)
      expect(c.size).toBe(1)
      expect(c.stats()).toEqual(zeroStats)
    })

    it('reuses the slot of an expired entry noticed by get instead of evicting a live key', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('old', bytes('O'))
      clock.t = 5
      c.set('live', bytes('L'))
      clock.t = 10
      expect(c.get('old')).toBeNull()
      c.set('new', bytes('N'))
      expect(liveKeys(c, ['old', 'live', 'new'])).toEqual(['live', 'new'])
      expect(c.stats().evictions).toBe(0)
    })

    it('counts reclaiming an expired least recently used entry as an expiration, not an eviction', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('old', bytes('O'))
      clock.t = 5
      c.set('live', bytes('L'))
      clock.t = 10
      c.set('new', bytes('N'))
      expect(liveKeys(c, ['old', 'live', 'new'])).toEqual(['live', 'new'])
      expect(c.stats()).toEqual({ hits: 0, misses: 0, evictions: 0, expirations: 1 })
    })

    it('evicts a live least recently used entry even when an expired one is more recent', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('stale', bytes('S'))
      clock.t = 5
      c.set('fresh', bytes('F'))
      c.get('stale')
      clock.t = 10
      c.set('new', bytes('N'))
      expect(liveKeys(c, ['stale', 'fresh', 'new'])).toEqual(['new'])
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(1)
    })

    it('counts storing over an expired key as an expiration, not an eviction', () => {
      const { cache: c, clock } = cache(1, 10)
      c.set('a', A)
      clock.t = 10
      c.set('a', bytes('A2'))
      expect(c.get('a')).toEqual(bytes('A2'))
      expect(c.stats()).toEqual({ hits: 1, misses: 0, evictions: 0, expirations: 1 })
    })

    it('removes an expired entry on delete but reports false', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', A)
      clock.t = 10
      expect(c.delete('a')).toBe(false)
      expect(c.size).toBe(0)
      expect(c.stats().expirations).toBe(1)
    })
  })

  describe('stats', () => {
    it('starts at zero', () => {
      expect(cache(1).cache.stats()).toEqual(zeroStats)
    })

    it('counts hits, misses and evictions', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.set('b', bytes('B'))
      c.get('a')
      c.get('a')
      c.get('x')
      c.set('c', bytes('C'))
      c.set('d', bytes('D'))
      expect(c.stats()).toEqual({ hits: 2, misses: 1, evictions: 2, expirations: 0 })
    })

    it('does not count peek or has', () => {
      const { cache: c } = cache(2)
      c.set('a', A)
      c.peek('a')
      c.peek('x')
      c.has('a')
      c.has('x')
      expect(c.stats()).toEqual(zeroStats)
    })

    it('returns a snapshot that later operations and callers cannot change', () => {
      const { cache: c } = cache(2)
      const before = c.stats()
      before.hits = 99
      c.get('x')
      expect(before).toEqual({ ...zeroStats, hits: 99 })
      expect(c.stats()).toEqual({ ...zeroStats, misses: 1 })
      expect(c.stats()).not.toBe(c.stats())
    })
  })

  describe('options', () => {
    const bad = [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]

    it.each(bad)('rejects capacity %s with a TypeError naming it', (capacity) => {
      expect(() => make({ capacity, ttlMs: 1 })).toThrow(
        new TypeError(`Expected \`capacity\` to be an integer from 1 and up, got \`${capacity}\``),
      )
    })

    it.each(bad)('rejects ttlMs %s with a TypeError naming it', (ttlMs) => {
      expect(() => make({ capacity: 1, ttlMs })).toThrow(
        new TypeError(`Expected \`ttlMs\` to be an integer from 1 and up, got \`${ttlMs}\``),
      )
    })

    it('rejects a capacity above 2^24', () => {
      expect(() => make({ capacity: 2 ** 24 + 1, ttlMs: 1 })).toThrow(TypeError)
    })

    it('rejects a non-number capacity', () => {
      expect(() => make({ capacity: '10' as unknown as number, ttlMs: 1 })).toThrow(
        new TypeError('Expected `capacity` to be an integer from 1 and up, got `"10"`'),
      )
    })

    it('rejects a clock without now()', () => {
      expect(() => make({ capacity: 1, ttlMs: 1, clock: {} as never })).toThrow(
        new TypeError('Expected `clock` to have a `now()` method, got `object`'),
      )
    })

    it('uses the system clock by default', () => {
      const c = make({ capacity: 1, ttlMs: 60_000 })
      c.set('a', A)
      expect(c.get('a')).toEqual(A)
    })
  })
})

describe('SlabCache', () => {
  function slab(options: Partial<ConstructorParameters<typeof SlabCache>[0]> = {}) {
    const clock = fakeClock()
    return { cache: new SlabCache({ capacity: 16, ttlMs: 1000, clock, ...options }), clock }
  }

  describe('keys as bytes', () => {
    it('reads the value of any slot found since the last change, not only the last one found', () => {
      const { cache: c } = slab({ capacity: 64 })
      const values = [1, 100, 200, 5000].map((length, i) => pattern(length, i))
      for (const [i, value] of values.entries()) c.setBytes(bytes(`k${i}`), 0, 2, value)
      // Found in turn; then read back in another order (getBytes, peekBytes).
      const slots = values.map((_, i) =>
        i % 2 === 0 ? c.getBytes(bytes(`k${i}`)) : c.peekBytes(bytes(`k${i}`)),
      )
      for (const i of [2, 0, 3, 1, 3]) {
        const slot = slots[i] as number
        expect(c.valueLength(slot)).toBe(values[i]?.length)
        const out = new Uint8Array(c.valueLength(slot) + 3)
        expect(c.copyValue(slot, out, 3)).toBe(out.length)
        expect(out.subarray(3)).toEqual(values[i])
      }
      // A miss in between changes nothing of what was found.
      expect(c.getBytes(bytes('absent'))).toBe(-1)
      expect(c.valueLength(slots[3] as number)).toBe(5000)
    })

    it('reads a found slot right after a peek at another key that has expired', () => {
      const { cache: c, clock } = slab({ capacity: 16, ttlMs: 1000 })
      c.setBytes(bytes('old'), 0, 3, pattern(200, 1))
      clock.t = 500
      c.setBytes(bytes('new'), 0, 3, pattern(100, 2))
      clock.t = 1200
      const slot = c.getBytes(bytes('new'))
      // The peek compares the expired key's bytes before it finds it expired.
      expect(c.hasBytes(bytes('old'))).toBe(false)
      expect(c.valueLength(slot)).toBe(100)
      const out = new Uint8Array(100)
      c.copyValue(slot, out)
      expect(out).toEqual(pattern(100, 2))
    })

    it('keeps every single-byte key, 0x00 to 0xff, apart', () => {
      const { cache: c } = slab({ capacity: 256 })
      for (let b = 0; b < 256; b++) c.setBytes(Uint8Array.of(b), 0, 1, Uint8Array.of(b, b))
      expect(c.size).toBe(256)
      for (let b = 0; b < 256; b++) {
        const slot = c.getBytes(Uint8Array.of(b))
        expect(slot).toBeGreaterThanOrEqual(0)
        const out = new Uint8Array(2)
        c.copyValue(slot, out)
        expect(out).toEqual(Uint8Array.of(b, b))
      }
    })

    it('stores a key holding every byte value, read back by its bytes and by its latin1 string', () => {
      const { cache: c } = slab()
      const key = Uint8Array.from({ length: 256 }, (_, i) => i)
      const text = String.fromCharCode(...key)
      c.setBytes(key, 0, key.length, bytes('all'))
      expect(c.get(text)).toEqual(bytes('all'))
      expect(c.hasBytes(key)).toBe(true)
      // The same bytes but one: a different key.
      const other = key.slice()
      other[200] = 0
      expect(c.hasBytes(other)).toBe(false)
    })

    it('names one entry by a latin1 string and by its bytes', () => {
      const { cache: c } = slab()
      c.set('abc', bytes('1'))
      expect(c.peekBytes(Uint8Array.of(0x61, 0x62, 0x63))).toBeGreaterThanOrEqual(0)
      c.setBytes(Uint8Array.of(0x61, 0x62, 0x63), 0, 3, bytes('2'))
      expect(c.size).toBe(1)
      expect(c.get('abc')).toEqual(bytes('2'))
      expect(c.deleteBytes(bytes('abc'))).toBe(true)
      expect(c.has('abc')).toBe(false)
    })

    it('reads a key out of the middle of a larger buffer', () => {
      const { cache: c } = slab()
      c.set('key:7', bytes('seven'))
      const request = bytes('*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n')
      const slot = c.getBytes(request, 17, 22)
      expect(c.valueLength(slot)).toBe(5)
      const out = new Uint8Array(5)
      c.copyValue(slot, out)
      expect(out).toEqual(bytes('seven'))
      expect(c.getBytes(request, 17, 21)).toBe(-1)
    })

    it('encodes a code unit above 0xff by its low byte, as latin1 does', () => {
      const { cache: c } = slab()
      const key = '\u0161\u4142'
      c.set(key, bytes('x'))
      expect(c.hasBytes(new Uint8Array(Buffer.from(key, 'latin1')))).toBe(true)
      expect(c.has('\x61\x42')).toBe(true)
    })

    it('keeps keys that are prefixes of one another apart', () => {
      const { cache: c } = slab()
      for (const key of ['', 'a', 'aa', 'aaa', 'a'.repeat(70), 'a'.repeat(71)]) {
        c.set(key, bytes(`${key.length}`))
      }
      expect(c.get('a'.repeat(70))).toEqual(bytes('70'))
      expect(c.get('aa')).toEqual(bytes('2'))
      expect(c.get('')).toEqual(bytes('0'))
      expect(c.size).toBe(6)
    })

    it('stores a long string key (beyond the kept scratch buffer)', () => {
      const { cache: c } = slab()
      const key = 'k'.repeat(200_000)
      c.set(key, bytes('long'))
      expect(c.get(key)).toEqual(bytes('long'))
      expect(c.get(`${'k'.repeat(199_999)}j`)).toBeNull()
      expect(c.hasBytes(bytes(key))).toBe(true)
    })

    it('refuses a key longer than MAX_KEY_BYTES without storing anything', () => {
      const { cache: c } = slab()
      // Only the length is looked at: a buffer of zeros the OS never commits.
      const key = new Uint8Array(MAX_KEY_BYTES + 1)
      expect(c.setBytes(key, 0, key.length, bytes('v'))).toBe(false)
      expect(c.size).toBe(0)
      expect(c.memory().allocatedBytes).toBe(0)
    })
  })

  describe('values', () => {
    const page = PAGE_BYTES
    const sizes = [0, 1, 2, 127, 128, 1000, page / 16, page - 1, page, page + 1]

    it.each(sizes)('stores and returns a value of %s bytes intact', (size) => {
      const { cache: c } = slab()
      const value = pattern(size, size)
      expect(c.set('v', value)).toBe(true)
      expectSameBytes(c.get('v'), value)
      const slot = c.peekBytes(bytes('v'))
      expect(c.valueLength(slot)).toBe(size)
      const out = new Uint8Array(size + 3)
      expect(c.copyValue(slot, out, 3)).toBe(size + 3)
      expectSameBytes(out.subarray(3), value)
      expect(c.memory().usedBytes).toBe(entryBytes(1, size))
    })

    it('stores a value of the largest size (MAX_VALUE_BYTES, 512 MiB) and refuses one byte more', () => {
      const { cache: c } = slab()
      const value = new Uint8Array(MAX_VALUE_BYTES)
      value[0] = 1
      value[MAX_VALUE_BYTES >>> 1] = 2
      value[MAX_VALUE_BYTES - 1] = 3
      expect(c.set('max', value)).toBe(true)
      expect(c.memory().dedicatedBytes).toBe(entryBytes(3, MAX_VALUE_BYTES))
      // Read back into the source, cleared, so the test holds two copies, not three.
      value.fill(0, 0, 1)
      value.fill(0, MAX_VALUE_BYTES >>> 1, (MAX_VALUE_BYTES >>> 1) + 1)
      value.fill(0, MAX_VALUE_BYTES - 1)
      const slot = c.getBytes(bytes('max'))
      expect(c.valueLength(slot)).toBe(MAX_VALUE_BYTES)
      c.copyValue(slot, value)
      expect([value[0], value[MAX_VALUE_BYTES >>> 1], value[MAX_VALUE_BYTES - 1]]).toEqual([
        1, 2, 3,
      ])
      expect(c.set('max', new Uint8Array(MAX_VALUE_BYTES + 1))).toBe(false)
      expect(c.has('max')).toBe(false)
      expect(c.memory().allocatedBytes).toBe(0)
    }, 60_000)

    it('refuses a value over maxValueBytes and removes the old one, so it is never served stale', () => {
      const { cache: c } = slab({ maxValueBytes: 10 })
      expect(c.set('a', pattern(10))).toBe(true)
      expect(c.set('a', pattern(11))).toBe(false)
      expect(c.has('a')).toBe(false)
      expect(c.size).toBe(0)
      expect(c.stats()).toEqual(zeroStats)
    })

    it('returns from get a copy the caller may keep and change', () => {
      const { cache: c } = slab()
      c.set('a', bytes('abc'))
      const got = c.get('a') as Uint8Array
      got[0] = 0x7a
      expect(c.get('a')).toEqual(bytes('abc'))
      expect(c.peek('a')).not.toBe(c.peek('a'))
    })

    it('copies the value in, so changing the caller buffer later changes nothing', () => {
      const { cache: c } = slab()
      const value = bytes('abc')
      c.set('a', value)
      value[0] = 0x7a
      expect(c.get('a')).toEqual(bytes('abc'))
    })

    it('throws a RangeError and writes nothing when the target has no room', () => {
      const { cache: c } = slab()
      c.set('small', bytes('abcd'))
      c.set('large', pattern(500))
      const out = new Uint8Array(8)
      expect(() => c.copyValue(c.peekBytes(bytes('small')), out, 5)).toThrow(RangeError)
      expect(() => c.copyValue(c.peekBytes(bytes('large')), out)).toThrow(RangeError)
      expect(out).toEqual(new Uint8Array(8))
    })

    it('rewrites a replaced value whatever its new size class', () => {
      const { cache: c } = slab({ capacity: 2, pageBytes: 1024 })
      for (const size of [3, 60, 61, 3, 2000, 2001, 0, 2000, 64]) {
        c.set('a', pattern(size, size))
        c.set('b', pattern(7))
        expectSameBytes(c.get('a'), pattern(size, size))
        expect(c.memory().usedBytes).toBe(entryBytes(1, size) + entryBytes(1, 7))
      }
      expect(c.get('b')).toEqual(pattern(7))
    })
  })

  describe('slab space', () => {
    it('starts with no pages and takes a small one first', () => {
      const { cache: c } = slab()
      expect(c.memory()).toMatchObject({ allocatedBytes: 0, usedBytes: 0, pages: 0 })
      c.set('a', pattern(10))
      const m = c.memory()
      expect(m.pages).toBe(1)
      expect(m.allocatedBytes).toBeLessThanOrEqual(4096)
      expect(m.usedBytes).toBe(entryBytes(1, 10))
    })

    it('reuses the chunks of deleted entries rather than taking more pages', () => {
      const { cache: c } = slab({ capacity: 1000 })
      for (let i = 0; i < 1000; i++) c.set(`k${i}`, pattern(100, i))
      const held = c.memory().allocatedBytes
      for (let round = 0; round < 5; round++) {
        for (let i = 0; i < 1000; i += 2) c.delete(`k${i}`)
        for (let i = 0; i < 1000; i += 2) c.set(`k${i}`, pattern(100, i + round))
      }
      expect(c.memory().allocatedBytes).toBe(held)
      expect(c.get('k2')).toEqual(pattern(100, 2 + 4))
      expect(c.get('k3')).toEqual(pattern(100, 3))
    })

    it('reuses the chunks of evicted entries', () => {
      const { cache: c } = slab({ capacity: 500 })
      for (let i = 0; i < 500; i++) c.set(`k${i}`, pattern(300, i))
      const held = c.memory().allocatedBytes
      for (let i = 500; i < 5000; i++) c.set(`k${i}`, pattern(300, i))
      expect(c.stats().evictions).toBe(4500)
      expect(c.memory().allocatedBytes).toBe(held)
      expect(c.get('k4999')).toEqual(pattern(300, 4999))
    })

    it('keeps the bytes held bounded under churn of random keys and sizes', () => {
      const { cache: c, clock } = slab({ capacity: 2000, ttlMs: 50 })
      let seed = 7
      const next = () => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        return seed / 2 ** 32
      }
      let peakUsed = 0
      let heldAfterWarmUp = 0
      for (let i = 0; i < 60_000; i++) {
        const key = `key:${Math.floor(next() * 6000)}`
        const r = next()
        if (r < 0.1) c.delete(key)
        else if (r < 0.4) c.get(key)
        else c.set(key, pattern(Math.floor(next() ** 3 * 20_000), i))
        if (i % 100 === 0) clock.t++
        peakUsed = Math.max(peakUsed, c.memory().usedBytes)
        if (i === 20_000) heldAfterWarmUp = c.memory().allocatedBytes
      }
      const held = c.memory().allocatedBytes
      // Rounding up to a class costs under 10%, and a page at most half
      // full is emptied into the others: about twice the bytes stored at
      // worst, plus the spare page. Space is reused, not leaked.
      expect(held).toBeLessThan(peakUsed * 2.2 + PAGE_BYTES)
      expect(held).toBeLessThan(heldAfterWarmUp * 1.25)
    })

    it('gives pages back as they empty, keeping one full page and the first small one as spares', () => {
      const { cache: c } = slab({ capacity: 20_000 })
      for (let i = 0; i < 20_000; i++) c.set(`k${i}`, pattern(100, i))
      expect(c.memory().allocatedBytes).toBeGreaterThan(2 * PAGE_BYTES)
      for (let i = 0; i < 20_000; i++) c.delete(`k${i}`)
      expect(c.memory()).toMatchObject({ usedBytes: 0, pages: 0 })
      // The class's first page is 4 KiB worth of chunks.
      expect(c.memory().allocatedBytes).toBeGreaterThanOrEqual(PAGE_BYTES)
      expect(c.memory().allocatedBytes).toBeLessThanOrEqual(PAGE_BYTES + 4096)
      // The spare is used again, not a new page taken.
      for (let i = 0; i < 20_000; i++) c.set(`k${i}`, pattern(100, i))
      expect(c.get('k19999')).toEqual(pattern(100, 19999))
    })

    it('keeps a class that empties and fills again on the same small page', () => {
      // CACHE_CAPACITY=1 under misses: every store evicts the one entry.
      const { cache: c } = slab({ capacity: 1 })
      // Keys of one length: entries of one size class.
      c.set('k1000', pattern(100, 0))
      const held = c.memory().allocatedBytes
      for (let i = 1001; i < 2000; i++) {
        c.set(`k${i}`, pattern(100, i))
        expect(c.memory()).toMatchObject({ allocatedBytes: held, pages: 1 })
      }
      expect(c.get('k1999')).toEqual(pattern(100, 1999))
      c.delete('k1999')
      expect(c.memory()).toMatchObject({ usedBytes: 0, pages: 0, allocatedBytes: held })
    })

    it('moves the entries of a page left half empty into the other pages and gives it back', () => {
      // 1 KiB pages; entries of 64 bytes (the largest class) fill 16 to a page.
      const { cache: c } = slab({ capacity: 64, pageBytes: 1024 })
      const size = 64 - entryBytes(3, 0)
      expect(entryBytes(3, size)).toBe(64)
      const key = (i: number) => `k${String(i).padStart(2, '0')}`
      for (let i = 0; i < 64; i++) c.set(key(i), pattern(size, i))
      expect(c.memory().pages).toBe(4)
      // Room for 4 in each of the last three pages: none gets half empty.
      for (let i = 16; i < 64; i += 4) c.delete(key(i))
      expect(c.memory().pages).toBe(4)
      // The first page down to half: its 8 entries move into those 12 places.
      for (let i = 0; i < 8; i++) c.delete(key(i))
      expect(c.memory()).toMatchObject({ pages: 3, usedBytes: 44 * 64 })
      for (let i = 0; i < 64; i++) {
        const live = i >= 8 && (i < 16 || i % 4 !== 0)
        if (live) expectSameBytes(c.get(key(i)), pattern(size, i), key(i))
        else expect(c.has(key(i)), key(i)).toBe(false)
      }
      // Moved entries are ordinary entries: they can be replaced and deleted.
      c.set(key(8), pattern(3, 99))
      expectSameBytes(c.get(key(8)), pattern(3, 99))
      for (let i = 9; i < 16; i++) expect(c.delete(key(i))).toBe(true)
      expect(c.size).toBe(44 - 7)
    })

    it('gives a large value its own allocation and frees it with the entry', () => {
      const { cache: c } = slab()
      c.set('big', pattern(PAGE_BYTES + 1))
      expect(c.memory()).toMatchObject({
        dedicatedBytes: entryBytes(3, PAGE_BYTES + 1),
        allocatedBytes: entryBytes(3, PAGE_BYTES + 1),
        pages: 1,
      })
      c.delete('big')
      expect(c.memory()).toMatchObject({ dedicatedBytes: 0, allocatedBytes: 0, pages: 0 })
    })

    it('gives back every page on clear', () => {
      const { cache: c } = slab({ capacity: 100 })
      for (let i = 0; i < 100; i++) c.set(`k${i}`, pattern(i * 700))
      c.clear()
      expect(c.memory()).toMatchObject({
        allocatedBytes: 0,
        usedBytes: 0,
        dedicatedBytes: 0,
        pages: 0,
      })
      c.set('a', bytes('A'))
      expect(c.get('a')).toEqual(bytes('A'))
    })

    it('counts its index by capacity, not by use', () => {
      const small = slab({ capacity: 1 }).cache.memory().indexBytes
      const large = slab({ capacity: 1000 }).cache.memory().indexBytes
      // Table (4 B per bucket, load <= 0.75), two links, expiry, location,
      // home bucket: 4 B each.
      expect(large - small).toBeGreaterThan(999 * (4 + 4 + 4 + 4 + 4 + 4))
      expect(large - small).toBeLessThan(999 * (6 + 4 + 4 + 4 + 4 + 4) + 16)
    })

    it('has size classes from 16 bytes up to a sixteenth of a page, each at most about 10% apart', () => {
      const classes = sizeClasses(PAGE_BYTES)
      expect(classes[0]).toBe(16)
      expect(classes[classes.length - 1]).toBe(PAGE_BYTES / 16)
      for (let i = 1; i < classes.length; i++) {
        const step = (classes[i] as number) - (classes[i - 1] as number)
        expect(step).toBeGreaterThanOrEqual(8)
        expect(step).toBeLessThanOrEqual(Math.max(8, (classes[i - 1] as number) * 0.1 + 8))
      }
    })
  })

  describe('the hash index', () => {
    it('finds every remaining key after deleting from a full, dense table', () => {
      const capacity = 5000
      const { cache: c } = slab({ capacity })
      for (let i = 0; i < capacity; i++) c.set(`k${i}`, bytes(`${i}`))
      for (let i = 0; i < capacity; i += 3) expect(c.delete(`k${i}`)).toBe(true)
      for (let i = 0; i < capacity; i++) {
        expect(c.has(`k${i}`), `k${i}`).toBe(i % 3 !== 0)
      }
      for (let i = 0; i < capacity; i += 3) c.set(`n${i}`, bytes(`n${i}`))
      expect(c.size).toBe(capacity)
      for (let i = 1; i < capacity; i += 3) expect(c.get(`k${i}`)).toEqual(bytes(`${i}`))
      for (let i = 0; i < capacity; i += 3) expect(c.get(`n${i}`)).toEqual(bytes(`n${i}`))
    })

    it('fills to a large capacity and evicts in order', () => {
      const capacity = 1_000_000
      const c = new SlabCache({ capacity, ttlMs: 1000, clock: fakeClock() })
      const value = pattern(16)
      for (let i = 0; i < capacity; i++) c.set(`k${i}`, value)
      expect(c.size).toBe(capacity)
      c.get('k0')
      c.set('new', value)
      expect(c.has('k0')).toBe(true)
      expect(c.has('k1')).toBe(false)
      expect(c.has('k999999')).toBe(true)
      expect(c.size).toBe(capacity)
      expect(c.stats().evictions).toBe(1)
    }, 30_000)
  })

  describe('options', () => {
    it.each([0, 1023, PAGE_BYTES + 1, 4096.5])('rejects pageBytes %s', (pageBytes) => {
      expect(() => new SlabCache({ capacity: 1, ttlMs: 1, pageBytes })).toThrow(
        new TypeError(
          `Expected \`pageBytes\` to be an integer from 1024 to ${PAGE_BYTES}, got \`${pageBytes}\``,
        ),
      )
    })

    it.each([-1, 2 ** 32, 0.5])('rejects maxValueBytes %s', (maxValueBytes) => {
      expect(() => new SlabCache({ capacity: 1, ttlMs: 1, maxValueBytes })).toThrow(
        new TypeError(
          `Expected \`maxValueBytes\` to be an integer from 0 to 4294967295, got \`${maxValueBytes}\``,
        ),
      )
    })

    it('accepts the largest capacity without committing memory per key', () => {
      const c = new SlabCache({ capacity: 2 ** 24, ttlMs: 1, clock: fakeClock() })
      expect(c.capacity).toBe(2 ** 24)
      expect(c.memory().allocatedBytes).toBe(0)
      c.set('a', bytes('A'))
      expect(c.get('a')).toEqual(bytes('A'))
    })

    it('exposes pageBytes and maxValueBytes with their defaults', () => {
      const c = new SlabCache({ capacity: 1, ttlMs: 1 })
      expect(c.pageBytes).toBe(PAGE_BYTES)
      expect(c.maxValueBytes).toBe(MAX_VALUE_BYTES)
    })
  })

  describe('expiry in whole milliseconds', () => {
    const DAY = 24 * 3600 * 1000
    const A = bytes('A')

    it('ends an entry at the start of the millisecond its expiry falls in, never after it', () => {
      const { cache: c, clock } = slab({ ttlMs: 100 })
      clock.t = 0.75
      c.set('a', A)
      // Expiry 100.75: live until 100, not a fraction later.
      clock.t = 99.99
      expect(c.get('a')).toEqual(A)
      clock.t = 100
      expect(c.get('a')).toBeNull()
      expect(c.stats().expirations).toBe(1)
    })

    it('stores nothing, and forgets the key, when the expiry rounds down to now', () => {
      const { cache: c, clock } = slab({ ttlMs: 100 })
      c.set('a', A)
      clock.t = 10.25
      // Expiry 10.75: within the millisecond it is stored in.
      expect(c.set('a', bytes('A2'), 0.5)).toBe(false)
      expect(c.size).toBe(0)
      expect(c.has('a')).toBe(false)
      expect(c.set('a', bytes('A2'), 1)).toBe(true)
      expect(c.get('a')).toEqual(bytes('A2'))
    })

    it('keeps an entry that expired before the base moved expired when an injected clock goes back', () => {
      const { cache: c, clock } = slab({ ttlMs: 100 })
      c.set('old', A)
      clock.t = 2 ** 30 + 5000
      c.set('x', A)
      clock.t = 50
      expect(c.has('old')).toBe(false)
      expect(c.get('old')).toBeNull()
      expect(c.get('x')).toEqual(A)
    })

    it('gives no entry more than 2^31 - 1 ms (24.8 days), whatever the ttl', () => {
      const { cache: c, clock } = slab({ ttlMs: 60 * DAY })
      c.set('a', A)
      clock.t = 2 ** 31 - 2
      expect(c.has('a')).toBe(true)
      clock.t = 2 ** 31 - 1
      expect(c.has('a')).toBe(false)
    })

    it('keeps every entry its expiry, and a nil its nil, when a store 12.4 days on moves the base', () => {
      const { cache: c, clock } = slab({ ttlMs: 20 * DAY })
      c.set('long', A)
      c.setNil('nil', 20 * DAY)
      c.set('short', A, DAY)
      // Past 2^30 ms: the next store moves every expiry to a new base.
      clock.t = 2 ** 30 + 0.5
      expect(c.has('short')).toBe(false)
      c.set('after', A)
      expect(c.peek('nil')).toBe(NIL)
      expect(c.has('short')).toBe(false)
      clock.t = 20 * DAY - 1
      expect(c.get('long')).toEqual(A)
      expect(c.get('nil')).toBe(NIL)
      clock.t = 20 * DAY
      expect(c.get('long')).toBeNull()
      expect(c.get('nil')).toBeNull()
      // Stored at 2^30 + 0.5 (the base now 2^30): its full 20 days, to the ms.
      clock.t = 2 ** 30 + 20 * DAY - 1
      expect(c.get('after')).toEqual(A)
      clock.t = 2 ** 30 + 20 * DAY
      expect(c.get('after')).toBeNull()
      // long, nil and after ran out; short was found expired twice but removed by neither has().
      expect(c.stats().expirations).toBe(3)
    })
  })

  describe('nil entries', () => {
    it('record a missing key: NIL by identity from get and peek, under the same LRU and expiry', () => {
      let now = 0
      const cache = new SlabCache({ capacity: 2, ttlMs: 100, clock: { now: () => now } })
      expect(cache.setNil('gone')).toBe(true)
      expect(cache.get('gone')).toBe(NIL)
      expect(cache.peek('gone')).toBe(NIL)
      const slot = cache.getBytes(Buffer.from('gone'))
      expect(cache.isNil(slot)).toBe(true)
      // A value stored under the key replaces the nil.
      cache.set('gone', Buffer.from('back'))
      const back = cache.getBytes(Buffer.from('gone'))
      expect(cache.isNil(back)).toBe(false)
      expect(Buffer.from(cache.get('gone') as Uint8Array).toString()).toBe('back')
      // And a nil replaces a value.
      cache.setNil('gone')
      expect(cache.get('gone')).toBe(NIL)
      now = 100
      expect(cache.get('gone')).toBeNull()
      // Evicted like any entry.
      cache.setNil('a')
      cache.set('b', Buffer.from('1'))
      cache.set('c', Buffer.from('2'))
      expect(cache.get('a')).toBeNull()
    })

    it('are stored from key bytes inside a larger buffer as from the string (setNilBytes)', () => {
      const cache = new SlabCache({ capacity: 4, ttlMs: 100 })
      const chunk = Buffer.from('xx*gone*yy')
      expect(cache.setNilBytes(chunk, 3, 7)).toBe(true)
      expect(cache.get('gone')).toBe(NIL)
      expect(cache.size).toBe(1)
      cache.set('gone', Buffer.from('v'))
      expect(cache.setNilBytes(chunk, 3, 7, 50)).toBe(true)
      expect(cache.get('gone')).toBe(NIL)
      expect(cache.size).toBe(1)
    })
  })
})
