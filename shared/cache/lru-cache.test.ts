import { describe, expect, it } from 'vitest'
import { type CacheStats, LruCache, systemClock } from './lru-cache.js'

function fakeClock(start = 0) {
  return {
    t: start,
    now() {
      return this.t
    },
  }
}

function cache<V = string>(capacity: number, ttlMs = 1000, clock = fakeClock()) {
  return { cache: new LruCache<V>({ capacity, ttlMs, clock }), clock }
}

function liveKeys(c: LruCache<unknown>, keys: readonly string[]): string[] {
  return keys.filter((k) => c.has(k))
}

const zeroStats: CacheStats = { hits: 0, misses: 0, evictions: 0, expirations: 0 }

describe('LruCache', () => {
  describe('reads and writes', () => {
    it('returns null for a key never stored', () => {
      const { cache: c } = cache(2)
      expect(c.get('a')).toBeNull()
      expect(c.peek('a')).toBeNull()
      expect(c.has('a')).toBe(false)
    })

    it('returns the stored value', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      expect(c.get('a')).toBe('A')
      expect(c.peek('a')).toBe('A')
      expect(c.has('a')).toBe(true)
      expect(c.size).toBe(1)
    })

    it('replaces the value of an existing key without growing', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('a', 'A2')
      expect(c.get('a')).toBe('A2')
      expect(c.size).toBe(1)
    })

    it('keeps falsy values apart from a miss', () => {
      const { cache: c } = cache<unknown>(4)
      c.set('zero', 0)
      c.set('empty', '')
      c.set('false', false)
      c.set('undef', undefined)
      expect(c.get('zero')).toBe(0)
      expect(c.get('empty')).toBe('')
      expect(c.get('false')).toBe(false)
      expect(c.has('undef')).toBe(true)
      expect(c.stats().hits).toBe(3)
    })

    it('deletes a live key and reports it', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
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
      c.set('a', 'A')
      c.set('b', 'B')
      c.get('a')
      c.get('x')
      c.clear()
      expect(c.size).toBe(0)
      expect(liveKeys(c, ['a', 'b'])).toEqual([])
      expect(c.stats()).toEqual({ hits: 1, misses: 1, evictions: 0, expirations: 0 })
    })

    it('works normally after clear', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.clear()
      c.set('c', 'C')
      c.set('d', 'D')
      c.set('e', 'E')
      expect(liveKeys(c, ['a', 'b', 'c', 'd', 'e'])).toEqual(['d', 'e'])
      expect(c.stats().evictions).toBe(1)
    })

    it('exposes capacity and ttlMs', () => {
      const { cache: c } = cache(7, 250)
      expect(c.capacity).toBe(7)
      expect(c.ttlMs).toBe(250)
    })
  })

  describe('eviction', () => {
    it('evicts the least recently stored key when full and nothing was read', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(1)
    })

    it('evicts the least recently read key when full', () => {
      const { cache: c } = cache(3)
      c.set('a', 'A')
      c.set('b', 'B')
      c.set('c', 'C')
      c.get('a')
      c.get('b')
      c.set('d', 'D')
      expect(liveKeys(c, ['a', 'b', 'c', 'd'])).toEqual(['a', 'b', 'd'])
      c.set('e', 'E')
      expect(liveKeys(c, ['a', 'b', 'c', 'd', 'e'])).toEqual(['b', 'd', 'e'])
    })

    it('treats storing over an existing key as a use, without evicting', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.set('a', 'A2')
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(0)
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['a', 'c'])
    })

    it('does not count a miss as a use', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.get('zzz')
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    })

    it('does not let peek or has change the eviction order', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.peek('a')
      c.has('a')
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
    })

    it('holds one key at capacity 1, replacing it on every new key', () => {
      const { cache: c } = cache(1)
      c.set('a', 'A')
      c.set('a', 'A2')
      expect(c.stats().evictions).toBe(0)
      c.set('b', 'B')
      expect(c.get('a')).toBeNull()
      expect(c.get('b')).toBe('B')
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['c'])
      expect(c.size).toBe(1)
      expect(c.stats().evictions).toBe(2)
    })

    it('fills a slot freed by delete before evicting anyone', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
      c.set('b', 'B')
      c.delete('a')
      c.set('c', 'C')
      expect(liveKeys(c, ['a', 'b', 'c'])).toEqual(['b', 'c'])
      expect(c.stats().evictions).toBe(0)
    })

    it('stays within capacity and correct through many deletes and inserts', () => {
      const { cache: c } = cache<number>(4)
      for (let i = 0; i < 10_000; i++) {
        c.set(`k${i}`, i)
        if (i % 3 === 0) expect(c.delete(`k${i}`)).toBe(true)
        expect(c.size).toBeLessThanOrEqual(4)
      }
      // Storing k9999 into the full cache evicted k9994, then k9999 was deleted,
      // leaving one slot free: the next key must not evict anyone.
      expect(liveKeys(c, ['k9994', 'k9995', 'k9996', 'k9997', 'k9998', 'k9999'])).toEqual([
        'k9995',
        'k9997',
        'k9998',
      ])
      c.set('next', -1)
      expect(liveKeys(c, ['k9995', 'k9997', 'k9998', 'next'])).toHaveLength(4)
      expect(c.get('k9998')).toBe(9998)
    })
  })

  describe('expiry', () => {
    it('keeps an entry live until ttlMs - 1 and expires it at exactly ttlMs', () => {
      const { cache: c, clock } = cache(2, 100, fakeClock(5))
      c.set('a', 'A')
      clock.t = 5 + 99
      expect(c.has('a')).toBe(true)
      expect(c.peek('a')).toBe('A')
      expect(c.get('a')).toBe('A')
      clock.t = 5 + 100
      expect(c.has('a')).toBe(false)
      expect(c.peek('a')).toBeNull()
      expect(c.get('a')).toBeNull()
    })

    it('does not extend the lifetime of an entry that is read', () => {
      const { cache: c, clock } = cache(2, 100)
      c.set('a', 'A')
      clock.t = 60
      expect(c.get('a')).toBe('A')
      clock.t = 100
      expect(c.get('a')).toBeNull()
    })

    it('gives a replaced entry a fresh lifetime', () => {
      const { cache: c, clock } = cache(2, 100)
      c.set('a', 'A')
      clock.t = 60
      c.set('a', 'A2')
      clock.t = 159
      expect(c.get('a')).toBe('A2')
      clock.t = 160
      expect(c.get('a')).toBeNull()
    })

    it('counts a get of an expired entry as a miss and an expiration and removes it', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', 'A')
      clock.t = 10
      expect(c.get('a')).toBeNull()
      expect(c.size).toBe(0)
      expect(c.stats()).toEqual({ hits: 0, misses: 1, evictions: 0, expirations: 1 })
      // Already removed: a second get is a plain miss.
      expect(c.get('a')).toBeNull()
      expect(c.stats()).toEqual({ hits: 0, misses: 2, evictions: 0, expirations: 1 })
    })

    it('leaves an expired entry in place when only peeked at or tested', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', 'A')
      clock.t = 10
      expect(c.peek('a')).toBeNull()
      expect(c.has('a')).toBe(false)
      expect(c.size).toBe(1)
      expect(c.stats()).toEqual(zeroStats)
    })

    it('reuses the slot of an expired entry noticed by get instead of evicting a live key', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('old', 'O')
      clock.t = 5
      c.set('live', 'L')
      clock.t = 10
      expect(c.get('old')).toBeNull()
      c.set('new', 'N')
      expect(liveKeys(c, ['old', 'live', 'new'])).toEqual(['live', 'new'])
      expect(c.stats().evictions).toBe(0)
    })

    it('counts reclaiming an expired least recently used entry as an expiration, not an eviction', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('old', 'O')
      clock.t = 5
      c.set('live', 'L')
      clock.t = 10
      c.set('new', 'N')
      expect(liveKeys(c, ['old', 'live', 'new'])).toEqual(['live', 'new'])
      expect(c.stats()).toEqual({ hits: 0, misses: 0, evictions: 0, expirations: 1 })
    })

    it('evicts a live least recently used entry even when an expired one is more recent', () => {
      // Plain LRU: expired entries are not searched for. 'stale' was read last,
      // so it is more recent than 'fresh', though stored earlier.
      const { cache: c, clock } = cache(2, 10)
      c.set('stale', 'S')
      clock.t = 5
      c.set('fresh', 'F')
      c.get('stale')
      clock.t = 10
      c.set('new', 'N')
      expect(liveKeys(c, ['stale', 'fresh', 'new'])).toEqual(['new'])
      expect(c.size).toBe(2)
      expect(c.stats().evictions).toBe(1)
    })

    it('counts storing over an expired key as an expiration, not an eviction', () => {
      const { cache: c, clock } = cache(1, 10)
      c.set('a', 'A')
      clock.t = 10
      c.set('a', 'A2')
      expect(c.get('a')).toBe('A2')
      expect(c.stats()).toEqual({ hits: 1, misses: 0, evictions: 0, expirations: 1 })
    })

    it('removes an expired entry on delete but reports false', () => {
      const { cache: c, clock } = cache(2, 10)
      c.set('a', 'A')
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
      c.set('a', 'A')
      c.set('b', 'B')
      c.get('a')
      c.get('a')
      c.get('x')
      c.set('c', 'C')
      c.set('d', 'D')
      expect(c.stats()).toEqual({ hits: 2, misses: 1, evictions: 2, expirations: 0 })
    })

    it('does not count peek or has', () => {
      const { cache: c } = cache(2)
      c.set('a', 'A')
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
      expect(() => new LruCache({ capacity, ttlMs: 1 })).toThrow(
        new TypeError(`Expected \`capacity\` to be an integer from 1 and up, got \`${capacity}\``),
      )
    })

    it.each(bad)('rejects ttlMs %s with a TypeError naming it', (ttlMs) => {
      expect(() => new LruCache({ capacity: 1, ttlMs })).toThrow(
        new TypeError(`Expected \`ttlMs\` to be an integer from 1 and up, got \`${ttlMs}\``),
      )
    })

    it('rejects a capacity larger than a Map can hold', () => {
      expect(() => new LruCache({ capacity: 2 ** 24 + 1, ttlMs: 1 })).toThrow(TypeError)
    })

    it('rejects a non-number capacity', () => {
      expect(() => new LruCache({ capacity: '10' as unknown as number, ttlMs: 1 })).toThrow(
        new TypeError('Expected `capacity` to be an integer from 1 and up, got `"10"`'),
      )
    })

    it('rejects a clock without now()', () => {
      expect(() => new LruCache({ capacity: 1, ttlMs: 1, clock: {} as never })).toThrow(
        new TypeError('Expected `clock` to have a `now()` method, got `object`'),
      )
    })

    it('uses the system clock by default', () => {
      const c = new LruCache<string>({ capacity: 1, ttlMs: 60_000 })
      c.set('a', 'A')
      expect(c.get('a')).toBe('A')
    })

    it('has a system clock that follows real time forward and never goes backwards', async () => {
      let previous = systemClock.now()
      for (let i = 0; i < 5; i++) {
        // Real time moves 2 ms while no timer can run: the reading may stand still, never go back.
        const until = performance.now() + 2
        while (performance.now() < until) {}
        expect(systemClock.now()).toBeGreaterThanOrEqual(previous)
        // Once timers have run it is read again, and shows at least those 2 ms.
        await new Promise((resolve) => setTimeout(resolve, 1))
        const reading = systemClock.now()
        expect(reading - previous).toBeGreaterThanOrEqual(2)
        previous = reading
      }
    })

    it('holds a system clock reading until timers run, then reads the time again', async () => {
      const first = systemClock.now()
      expect(systemClock.now()).toBe(first)
      await new Promise((resolve) => setTimeout(resolve, 5))
      expect(systemClock.now()).toBeGreaterThan(first)
    })
  })

  describe('large capacity', () => {
    it('allocates little heap for a large, mostly empty cache', () => {
      const before = process.memoryUsage().heapUsed
      const c = new LruCache<number>({ capacity: 1_000_000, ttlMs: 1000, clock: fakeClock() })
      const grown = process.memoryUsage().heapUsed - before
      // Eager `new Array(capacity)` for keys and values would take about 16 MB.
      expect(grown).toBeLessThan(4_000_000)
      c.set('a', 1)
      expect(c.get('a')).toBe(1)
    })

    it('fills to a large capacity and evicts in order', () => {
      const capacity = 1_000_000
      const c = new LruCache<number>({ capacity, ttlMs: 1000, clock: fakeClock() })
      for (let i = 0; i < capacity; i++) c.set(`k${i}`, i)
      expect(c.size).toBe(capacity)
      c.get('k0')
      c.set('new', -1)
      expect(c.has('k0')).toBe(true)
      expect(c.has('k1')).toBe(false)
      expect(c.size).toBe(capacity)
      expect(c.stats().evictions).toBe(1)
    })
  })
})
