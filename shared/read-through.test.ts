import { beforeEach, describe, expect, it } from 'vitest'
import { SlabCache } from './cache/slab-cache.js'
import { BackendError, BackendTimeoutError, OverloadedError } from './errors.js'
import { KeyPrefixes, keyFromBytes } from './keys.js'
import { ReadThrough, type ReadThroughOptions } from './read-through.js'
import type { Loaded, RedisSource } from './redis/source.js'

type SourceKind = 'promise' | 'callback'
// Which way the scripted source answers in the suite running now: every
// behaviour below holds for a source that answers by promise (`get`) and for
// one that answers by callback (`getTo`, as RespSource does).
let kind: SourceKind = 'promise'

/**
 * A source whose answers the test hands out one by one: `resolve` takes the
 * value (no expiry in Redis) or a whole Loaded.
 */
function scriptedSource() {
  const pending: {
    key: string
    deadline: number
    resolve: (v: Uint8Array | Loaded | null) => void
    reject: (e: Error) => void
  }[] = []
  const calls: string[] = []
  const toLoaded = (v: Uint8Array | Loaded | null) =>
    v instanceof Uint8Array ? { value: v, ttlMs: null } : v
  const source: RedisSource =
    kind === 'promise'
      ? {
          get(key, deadline) {
            calls.push(key)
            return new Promise((resolve, reject) =>
              pending.push({ key, deadline, resolve: (v) => resolve(toLoaded(v)), reject }),
            )
          },
          state: () => 'ready',
          close: async () => {},
        }
      : {
          get() {
            throw new Error('a source with getTo is read through getTo')
          },
          getTo(key, deadline, done) {
            calls.push(key)
            pending.push({
              key,
              deadline,
              resolve: (v) => done.loaded(toLoaded(v)),
              reject: (e) => done.failed(e),
            })
          },
          state: () => 'ready',
          close: async () => {},
        }
  return { source, pending, calls }
}

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (value: Uint8Array | null) => (value === null ? null : new TextDecoder().decode(value))
const tick = () => new Promise((resolve) => setImmediate(resolve))

/** A clock the test moves: `now` for deadlines, `clock` for the cache. */
function fakeTime() {
  const time = { t: 1000, now: () => time.t }
  return time
}

function service(
  source: RedisSource,
  maxParallel = 4,
  maxQueue = 100,
  extra: Partial<ReadThroughOptions> & { clock?: { now(): number } } = {},
) {
  const { clock, ...rest } = extra
  const cache = new SlabCache({ capacity: 100, ttlMs: 1000, ...(clock && { clock }) })
  return new ReadThrough({ cache, source, maxParallel, maxQueue, timeoutMs: 1000, ...rest })
}

describe.each(['promise', 'callback'] as const)(
  'ReadThrough (a source answering by %s)',
  (sourceKind) => {
    beforeEach(() => {
      kind = sourceKind
    })

    it('answers a hit synchronously and anything else with a promise', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      const first = rt.get('k')
      expect(first).toBeInstanceOf(Promise)
      pending[0]?.resolve(bytes('v'))
      expect(text(await first)).toBe('v')
      const hit = rt.get('k')
      expect(hit).not.toBeInstanceOf(Promise)
      expect(text(hit as Uint8Array)).toBe('v')
      expect(rt.stats()).toMatchObject({ hits: 1, misses: 1 })
    })

    it('lends a hit as a view of the cache, valid until it changes; get gives a copy of the same bytes', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const first = rt.lend('k')
      expect(first).toBeInstanceOf(Promise)
      pending[0]?.resolve(bytes('v'.repeat(300)))
      // A loaded value is the caller's to keep, lent or not.
      expect(text(await first)).toBe('v'.repeat(300))
      const lent = rt.lend('k') as Uint8Array
      const copy = rt.get('k') as Uint8Array
      expect(text(lent)).toBe('v'.repeat(300))
      expect(copy).toEqual(lent)
      // The copy is its own; the lent view is the cache's bytes, which the
      // next entry stored where they were overwrites.
      rt.invalidateBytes(bytes('k'))
      rt.lend('j')
      pending[1]?.resolve(bytes('w'.repeat(300)))
      await tick()
      expect(text(copy)).toBe('v'.repeat(300))
      expect(text(lent)).toBe('w'.repeat(300))
      expect(calls).toEqual(['k', 'j'])
      expect(rt.stats()).toMatchObject({ hits: 2, misses: 2 })
    })

    it('counts the fetches begun (flightsBegun), not reads that join one, as the only way a key gets stored', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      expect(rt.flightsBegun()).toBe(0)
      const a = rt.load('k')
      const b = rt.load('k')
      expect(rt.flightsBegun()).toBe(1)
      pending[0]?.resolve(bytes('v'))
      await Promise.all([a, b])
      // A hit begins nothing; an invalidated key read again does.
      rt.get('k')
      expect(rt.flightsBegun()).toBe(1)
      rt.invalidateBytes(bytes('k'))
      const c = rt.load('k')
      expect(rt.flightsBegun()).toBe(2)
      pending[1]?.resolve(bytes('w'))
      expect(text(await c)).toBe('w')
    })

    it('load() answers from the cache when a fetch stored the key since the caller looked', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const first = rt.load('k')
      pending[0]?.resolve(bytes('v'))
      await first
      expect(text(await rt.load('k'))).toBe('v')
      expect(calls).toEqual(['k'])
      // Re-checking counts no second miss.
      expect(rt.stats()).toMatchObject({ hits: 0, misses: 0 })
    })

    it('gives the source the deadline of when the read was asked', async () => {
      const { source, pending } = scriptedSource()
      const time = fakeTime()
      const rt = service(source, 1, 10, { now: time.now })
      const a = rt.load('a')
      time.t += 300
      const b = rt.load('b')
      time.t += 400
      pending[0]?.resolve(bytes('A'))
      await a
      await tick()
      // b waited 400 ms for a slot: its deadline is still 1000 ms after it was asked.
      expect(pending.map((p) => p.deadline)).toEqual([2000, 2300])
      pending[1]?.resolve(bytes('B'))
      expect(text(await b)).toBe('B')
    })

    it('fails a read still waiting for a slot when its timeout has passed, without calling the source', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source, 1, 10, { timeoutMs: 50 })
      void rt.load('a')
      const queued = rt.load('b')
      const started = performance.now()
      await expect(queued).rejects.toBeInstanceOf(BackendTimeoutError)
      // Real timers here: the queue's timer fires at the deadline, not later.
      expect(performance.now() - started).toBeGreaterThanOrEqual(45)
      expect(calls).toEqual(['a'])
      expect(rt.stats()).toMatchObject({ queueDepth: 0, backendErrors: 1 })
      // The slot frees: the overdue read is not started, the next one is.
      const next = rt.load('c')
      pending[0]?.resolve(bytes('A'))
      await tick()
      expect(calls).toEqual(['a', 'c'])
      pending[1]?.resolve(bytes('C'))
      expect(text(await next)).toBe('C')
    })

    it('never keeps an entry longer than the key has left in Redis', async () => {
      const { source, pending } = scriptedSource()
      const time = fakeTime()
      const rt = service(source, 4, 100, { now: time.now, clock: time })
      const loading = rt.load('k')
      // The reply took 20 ms; Redis said 300 ms were left when it read the TTL.
      time.t += 20
      pending[0]?.resolve({ value: bytes('v'), ttlMs: 300 })
      await loading
      time.t += 279
      expect(text(rt.peek('k'))).toBe('v')
      time.t += 1
      expect(rt.peek('k')).toBeNull()
    })

    it('does not store a value whose key expired in Redis as it was read', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      const loading = rt.load('k')
      pending[0]?.resolve({ value: bytes('v'), ttlMs: 0 })
      expect(text(await loading)).toBe('v')
      expect(rt.peek('k')).toBeNull()
    })

    it('loads a miss from the source and serves it from the cache afterwards', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      expect(rt.peek('k')).toBeNull()
      const first = rt.load('k')
      pending[0]?.resolve(bytes('v'))
      expect(await first).toEqual(bytes('v'))
      expect(rt.peek('k')).toEqual(bytes('v'))
      expect(calls).toEqual(['k'])
    })

    it('answers every waiter of a fetch by callback, in order, even when one of them throws', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const answers: string[] = []
      const waiter = (name: string, boom = false) => ({
        loaded(value: Uint8Array | null) {
          answers.push(`${name}:${text(value)}`)
          if (boom) throw new Error('a waiter with a bug')
        },
        failed(err: Error) {
          answers.push(`${name}:${err.name}`)
        },
      })
      const thrown: unknown[] = []
      const onError = (err: unknown) => thrown.push(err)
      process.on('uncaughtException', onError)
      try {
        rt.fetchTo('k', waiter('a', true))
        rt.fetchTo('k', waiter('b'))
        rt.fetchTo('k', waiter('c'))
        expect(calls).toEqual(['k'])
        pending[0]?.resolve(bytes('v'))
        await tick()
        expect(answers).toEqual(['a:v', 'b:v', 'c:v'])
        expect(rt.stats()).toMatchObject({ coalesced: 2, inflight: 0 })
        // The bug is still reported, after the others were answered.
        await tick()
        expect(thrown).toHaveLength(1)
      } finally {
        process.off('uncaughtException', onError)
      }
    })

    it('answers a fetch it cannot queue at once, before fetchTo returns', () => {
      const { source, calls } = scriptedSource()
      const rt = service(source, 1, 0)
      rt.fetchTo('a', { loaded() {}, failed() {} })
      const failures: Error[] = []
      rt.fetchTo('b', { loaded() {}, failed: (err) => failures.push(err) })
      expect(failures).toHaveLength(1)
      expect(failures[0]).toBeInstanceOf(OverloadedError)
      expect(calls).toEqual(['a'])
    })

    it('makes one backend call for many concurrent misses of one key', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const all = Array.from({ length: 20 }, () => rt.load('k'))
      expect(calls).toEqual(['k'])
      pending[0]?.resolve(bytes('v'))
      expect((await Promise.all(all)).map(text)).toEqual(Array(20).fill('v'))
      expect(rt.stats().coalesced).toBe(19)
    })

    it('does not cache a missing key', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const first = rt.load('k')
      pending[0]?.resolve(null)
      expect(await first).toBeNull()
      const second = rt.load('k')
      pending[1]?.resolve(bytes('later'))
      expect(text(await second)).toBe('later')
      expect(calls).toEqual(['k', 'k'])
    })

    it('evictBytes forgets the cached value but lets a load in flight be stored; invalidateBytes drops the load', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const cachedValue = rt.load('k')
      pending.shift()?.resolve(bytes('old'))
      await cachedValue
      // A load of another key in flight when each is told of a write.
      for (const [key, tell] of [
        ['e', (k: Uint8Array) => rt.evictBytes(k)],
        ['i', (k: Uint8Array) => rt.invalidateBytes(k)],
      ] as const) {
        const load = rt.load(key)
        tell(bytes(key))
        tell(bytes('k'))
        pending.shift()?.resolve(bytes('new'))
        expect(text(await load)).toBe('new')
      }
      expect(text(rt.peek('k'))).toBe(null)
      expect(text(rt.peek('e'))).toBe('new')
      expect(rt.peek('i')).toBe(null)
      expect(calls).toEqual(['k', 'e', 'i'])
      expect(rt.stats().invalidations).toBe(4)
      // Redis named 4 keys; only the first telling of 'k' found it cached.
      expect(rt.stats()).toMatchObject({ reportedKeys: 4, reportedCached: 1 })
    })

    it('evictSpans forgets the cached values of the keys where they lie, and only those, as evictBytes', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      for (const key of ['a', 'bb', 'c']) {
        const load = rt.load(key)
        pending.shift()?.resolve(bytes(key))
        await load
      }
      // A load in flight is left to be stored, as by evictBytes.
      const load = rt.load('d')
      const chunk = bytes('xa|bb|dy')
      rt.evictSpans(chunk, Int32Array.of(1, 2, 3, 5, 6, 7), 3)
      pending.shift()?.resolve(bytes('new'))
      expect(text(await load)).toBe('new')
      expect(rt.peek('a')).toBe(null)
      expect(rt.peek('bb')).toBe(null)
      expect(text(rt.peek('c'))).toBe('c')
      expect(text(rt.peek('d'))).toBe('new')
      expect(rt.stats().invalidations).toBe(3)
      // 'd' was a load in flight, not a cached value.
      expect(rt.stats()).toMatchObject({ reportedKeys: 3, reportedCached: 2 })
    })

    it("counts a write's own evictions as invalidations, not as keys Redis reported", async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      const load = rt.load('a')
      pending.shift()?.resolve(bytes('a'))
      await load
      rt.invalidateEach([bytes('a'), bytes('v'), bytes('b')], [0, 2])
      expect(rt.peek('a')).toBe(null)
      expect(rt.stats()).toMatchObject({ invalidations: 2, reportedKeys: 0, reportedCached: 0 })
    })

    it('stores only keys under CACHE_PREFIXES, values and nils, by string and by bytes', async () => {
      const { source, pending, calls } = scriptedSource()
      const on = { start() {}, mode: () => 'on' as const, close: async () => {} }
      const rt = service(source, 4, 100, {
        prefixes: new KeyPrefixes(['c:']),
        invalidation: on,
      })
      const answer = (value: Uint8Array | null) => pending.shift()?.resolve(value)
      for (const key of ['c:1', 'o:1', 'c:nil', 'o:nil']) {
        const load = rt.load(key)
        answer(key.endsWith('nil') ? null : bytes(key))
        await load
      }
      // The bytes path, a key inside a larger chunk as the sidecar passes it.
      const chunk = Buffer.from('**c:2**o:2**')
      for (const [start, end] of [
        [2, 5],
        [7, 10],
      ] as const) {
        rt.fetchTo(
          keyFromBytes(chunk.subarray(start, end)),
          { loaded() {}, failed() {} },
          chunk,
          start,
          end,
        )
        answer(bytes('v'))
        await tick()
      }
      expect(
        ['c:1', 'o:1', 'c:nil', 'o:nil', 'c:2', 'o:2'].map(
          (k) => rt.peek(k) !== null || rt.cached(k) !== null,
        ),
      ).toEqual([true, false, true, false, true, false])
      // Outside the prefixes every read goes to Redis; inside, the next is a hit.
      for (const key of ['c:1', 'o:1', 'c:nil', 'o:nil', 'c:2', 'o:2']) {
        const read = rt.get(key)
        if (read instanceof Promise) {
          answer(null)
          await read
        }
      }
      expect(calls.slice(6)).toEqual(['o:1', 'o:nil', 'o:2'])
    })

    it('does not cache an error and passes named errors through', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const first = rt.load('k')
      pending[0]?.reject(new BackendTimeoutError('slow'))
      await expect(first).rejects.toBeInstanceOf(BackendTimeoutError)
      const second = rt.load('k')
      pending[1]?.resolve(bytes('ok'))
      expect(text(await second)).toBe('ok')
      expect(calls).toEqual(['k', 'k'])
      expect(rt.stats().backendErrors).toBe(1)
    })

    it('wraps an unexpected failure of the source in a BackendError', async () => {
      const boom = () => {
        throw new Error('boom')
      }
      const source: RedisSource =
        kind === 'promise'
          ? { get: boom, state: () => 'ready', close: async () => {} }
          : { get: boom, getTo: boom, state: () => 'ready', close: async () => {} }
      const rt = service(source)
      await expect(rt.load('k')).rejects.toBeInstanceOf(BackendError)
      // Its slot is free again: the next read is sent, not queued behind it.
      expect(rt.stats().inflight).toBe(0)
    })

    it('runs at most maxParallel fetches and starts queued ones in FIFO order', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source, 2, 10)
      const results = ['a', 'b', 'c', 'd'].map((key) => rt.load(key))
      expect(calls).toEqual(['a', 'b'])
      expect(rt.stats()).toMatchObject({ inflight: 2, queueDepth: 2 })
      pending[1]?.resolve(bytes('B'))
      await tick()
      expect(calls).toEqual(['a', 'b', 'c'])
      pending[0]?.resolve(bytes('A'))
      await tick()
      expect(calls).toEqual(['a', 'b', 'c', 'd'])
      pending[2]?.resolve(bytes('C'))
      pending[3]?.resolve(bytes('D'))
      expect((await Promise.all(results)).map(text)).toEqual(['A', 'B', 'C', 'D'])
      expect(rt.stats()).toMatchObject({ inflight: 0, queueDepth: 0 })
    })

    it('rejects with OverloadedError once the queue is full, without calling the source', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source, 1, 1)
      const a = rt.load('a')
      const b = rt.load('b')
      await expect(rt.load('c')).rejects.toBeInstanceOf(OverloadedError)
      expect(calls).toEqual(['a'])
      // A key already waiting still joins it: coalescing costs no slot.
      const joined = rt.load('b')
      pending[0]?.resolve(bytes('A'))
      await tick()
      pending[1]?.resolve(bytes('B'))
      expect((await Promise.all([a, b, joined])).map(text)).toEqual(['A', 'B', 'B'])
      expect(calls).toEqual(['a', 'b'])
    })

    it('does not store a value whose key was invalidated while it was loading', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const racing = rt.load('k')
      rt.invalidateBytes(bytes('k'))
      // A read after the invalidation must not join the stale fetch.
      const after = rt.load('k')
      expect(calls).toEqual(['k', 'k'])
      pending[0]?.resolve(bytes('old'))
      expect(text(await racing)).toBe('old')
      expect(rt.peek('k')).toBeNull()
      pending[1]?.resolve(bytes('new'))
      expect(text(await after)).toBe('new')
      expect(text(rt.peek('k'))).toBe('new')
    })

    it('invalidateBytes forgets a key given as bytes, and a load of it in progress is not stored', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      const first = rt.get('k')
      pending[0]?.resolve(bytes('old'))
      await first
      expect(rt.peek('k')).not.toBeNull()
      rt.invalidateBytes(bytes('k'))
      expect(rt.peek('k')).toBeNull()
      // A load running when the write is seen: answered, not stored.
      const loading = rt.get('k')
      rt.invalidateBytes(bytes('k'))
      pending[1]?.resolve(bytes('raced'))
      expect(text(await loading)).toBe('raced')
      expect(rt.peek('k')).toBeNull()
      expect(calls).toEqual(['k', 'k'])
      expect(rt.stats()).toMatchObject({ invalidations: 2, unstoredLoads: 1 })
    })

    it('invalidateEach forgets every key named by its positions, and only those, loads in progress included', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      for (const [i, key] of ['a', 'b', 'c', 'd'].entries()) {
        const loaded = rt.get(key)
        pending[i]?.resolve(bytes(key))
        await loaded
      }
      const loading = rt.get('e')
      // MSET a 1 c 3 e 5: the keys at 1, 3 and 5.
      const args = ['MSET', 'a', '1', 'c', '3', 'e', '5'].map(bytes)
      rt.invalidateEach(args, [1, 3, 5])
      pending[4]?.resolve(bytes('raced'))
      expect(text(await loading)).toBe('raced')
      expect(['a', 'b', 'c', 'd', 'e'].map((key) => rt.peek(key) !== null)).toEqual([
        false,
        true,
        false,
        true,
        false,
      ])
      expect(rt.stats()).toMatchObject({ invalidations: 3, unstoredLoads: 1 })
    })

    it('clear() empties the cache and drops what is loading', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      const loaded = rt.load('a')
      pending[0]?.resolve(bytes('A'))
      await loaded
      const racing = rt.load('b')
      rt.clear()
      pending[1]?.resolve(bytes('B'))
      await racing
      expect(rt.peek('a')).toBeNull()
      expect(rt.peek('b')).toBeNull()
    })

    it('keeps what is cached but stores nothing new while stores are suspended', async () => {
      const { source, pending } = scriptedSource()
      const rt = service(source)
      const loaded = rt.load('a')
      pending[0]?.resolve(bytes('A'))
      await loaded
      rt.suspendStores()
      expect(text(rt.peek('a'))).toBe('A')
      const during = rt.load('b')
      pending[1]?.resolve(bytes('B'))
      expect(text(await during)).toBe('B')
      expect(rt.peek('b')).toBeNull()
      expect(rt.stats().unstoredLoads).toBe(1)
    })

    it('after resumeStores, stores only what was fetched from then on', async () => {
      const { source, pending, calls } = scriptedSource()
      const rt = service(source)
      rt.suspendStores()
      const before = rt.load('k')
      rt.resumeStores()
      // A request after resuming must not join the fetch sent before it.
      const after = rt.load('k')
      expect(calls).toEqual(['k', 'k'])
      pending[0]?.resolve(bytes('old'))
      pending[1]?.resolve(bytes('new'))
      expect(text(await before)).toBe('old')
      expect(text(await after)).toBe('new')
      expect(text(rt.peek('k'))).toBe('new')
    })

    it('reports invalidation off when no channel was given', () => {
      const { source } = scriptedSource()
      expect(service(source).invalidation()).toBe('off')
    })

    it('counts every invalidation and clear it acts on', () => {
      const { source } = scriptedSource()
      const rt = service(source)
      expect(rt.stats().invalidations).toBe(0)
      rt.invalidateBytes(bytes('a'))
      rt.invalidateBytes(bytes('never-cached'))
      rt.clear()
      expect(rt.stats().invalidations).toBe(3)
    })

    it('refuses limits that make no sense', () => {
      const { source } = scriptedSource()
      expect(() => service(source, 0)).toThrow(
        'Expected `maxParallel` to be an integer from 1 and up, got `0`',
      )
      expect(() => service(source, 1, -1)).toThrow(TypeError)
    })
  },
)
