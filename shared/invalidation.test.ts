import { describe, expect, it } from 'vitest'
import { LruCache } from './cache/lru-cache.js'
import { Tracker } from './invalidation.js'
import { createLogger } from './log.js'
import { ReadThrough } from './read-through.js'
import type { Loaded, RedisSource } from './redis/source.js'

type Deferred<T> = { resolve: (value: T) => void; reject: (err: Error) => void }

/** A tracker over a wire whose answers the test hands out, feeding a real ReadThrough. */
function setup() {
  const enables: (Deferred<string | undefined> & { id: number })[] = []
  let closed = 0
  let renewed = 0
  const lines: string[] = []
  const tracker = new Tracker({
    wire: {
      enable: (id) => new Promise((resolve, reject) => enables.push({ id, resolve, reject })),
      renew: () => {
        renewed++
      },
      close: async () => {
        closed++
      },
    },
    log: createLogger('info', (line) => lines.push(line)),
  })
  const gets: Deferred<Loaded | null>[] = []
  const source: RedisSource = {
    get: () => new Promise((resolve, reject) => gets.push({ resolve, reject })),
    state: () => 'ready',
    close: async () => {},
  }
  const cache = new LruCache<Uint8Array>({ capacity: 100, ttlMs: 60_000 })
  const rt = new ReadThrough({
    cache,
    source,
    maxParallel: 8,
    maxQueue: 100,
    timeoutMs: 1000,
    invalidation: tracker,
  })
  /** Loads `key`, answering its GET with `value`. */
  const load = async (key: string, value: string) => {
    const loading = rt.load(key)
    gets.at(-1)?.resolve({ value: bytes(value), ttlMs: null })
    return text(await loading)
  }
  return {
    tracker,
    rt,
    enables,
    gets,
    load,
    lines,
    closed: () => closed,
    renewed: () => renewed,
  }
}

const bytes = (value: string) => new TextEncoder().encode(value)
const text = (value: Uint8Array | null) => (value === null ? null : new TextDecoder().decode(value))
const tick = () => new Promise((resolve) => setImmediate(resolve))

async function established() {
  const s = setup()
  s.tracker.dataReady()
  s.tracker.subscriberReady(7)
  s.enables[0]?.resolve(undefined)
  await tick()
  return s
}

describe('Tracker', () => {
  it('stores nothing until CLIENT TRACKING answered OK, redirected to the subscriber', async () => {
    const { tracker, rt, enables, load } = setup()
    expect(tracker.mode()).toBe('connecting')
    tracker.dataReady()
    expect(enables).toHaveLength(0)
    tracker.subscriberReady(7)
    expect(enables.map((e) => e.id)).toEqual([7])
    expect(await load('k', 'v')).toBe('v')
    expect(rt.peek('k')).toBeNull()
    enables[0]?.resolve(undefined)
    await tick()
    expect(rt.invalidation()).toBe('on')
    expect(await load('k', 'v')).toBe('v')
    expect(text(rt.peek('k'))).toBe('v')
  })

  it('does not store a value whose GET was sent before tracking was confirmed', async () => {
    const { tracker, rt, enables, gets } = setup()
    tracker.dataReady()
    tracker.subscriberReady(7)
    const early = rt.load('k')
    enables[0]?.resolve(undefined)
    await tick()
    gets[0]?.resolve({ value: bytes('untracked'), ttlMs: null })
    expect(text(await early)).toBe('untracked')
    expect(rt.peek('k')).toBeNull()
  })

  it('evicts the keys Redis reports and clears everything on a flush', async () => {
    const { tracker, rt, load } = await established()
    await load('a', 'A')
    await load('b', 'B')
    await load('c', 'C')
    tracker.invalidated(['a'])
    expect(rt.peek('a')).toBeNull()
    expect(text(rt.peek('b'))).toBe('B')
    tracker.invalidated(null)
    expect(rt.peek('b')).toBeNull()
    expect(rt.peek('c')).toBeNull()
  })

  it('drops a load whose key is invalidated while its GET is in flight', async () => {
    const { tracker, rt, gets } = await established()
    const racing = rt.load('k')
    tracker.invalidated(['k'])
    gets[0]?.resolve({ value: bytes('old'), ttlMs: null })
    expect(text(await racing)).toBe('old')
    expect(rt.peek('k')).toBeNull()
  })

  it('on losing the subscriber, serves what is cached but stores nothing, then clears and re-tracks with the new id', async () => {
    const { tracker, rt, enables, load, lines } = await established()
    await load('kept', 'K')
    tracker.subscriberLost()
    expect(rt.invalidation()).toBe('lost')
    expect(lines.some((line) => line.includes('invalidation channel lost'))).toBe(true)
    expect(text(rt.peek('kept'))).toBe('K')
    expect(await load('new', 'N')).toBe('N')
    expect(rt.peek('new')).toBeNull()

    tracker.subscriberReady(8)
    // Invalidations may have been missed: nothing cached is trusted any more.
    expect(rt.peek('kept')).toBeNull()
    expect(enables.map((e) => e.id)).toEqual([7, 8])
    enables[1]?.resolve(undefined)
    await tick()
    expect(rt.invalidation()).toBe('on')
    expect(await load('new', 'N')).toBe('N')
    expect(text(rt.peek('new'))).toBe('N')
  })

  it('on a new data connection, clears at once and renews the subscriber before re-tracking', async () => {
    const { tracker, rt, enables, load, renewed } = await established()
    await load('k', 'old')
    tracker.dataLost()
    expect(text(rt.peek('k'))).toBe('old')
    tracker.dataReady()
    expect(rt.peek('k')).toBeNull()
    expect(rt.invalidation()).toBe('lost')
    // Id 7 may belong to another server now: no redirect until the subscriber is back.
    expect(renewed()).toBe(1)
    expect(enables).toHaveLength(1)
    tracker.subscriberLost()
    tracker.subscriberReady(3)
    expect(enables.map((e) => e.id)).toEqual([7, 3])
  })

  it('at start-up, tracks whichever connection is ready first without renewing', async () => {
    const { tracker, enables, renewed } = setup()
    tracker.subscriberReady(7)
    tracker.dataReady()
    expect(enables.map((e) => e.id)).toEqual([7])
    expect(renewed()).toBe(0)
  })

  it('ignores an OK that answers a redirect to a subscriber since lost', async () => {
    const { tracker, rt, enables } = setup()
    tracker.dataReady()
    tracker.subscriberReady(7)
    tracker.subscriberLost()
    enables[0]?.resolve(undefined)
    await tick()
    expect(rt.invalidation()).toBe('connecting')
    tracker.subscriberReady(9)
    expect(enables.map((e) => e.id)).toEqual([7, 9])
  })

  it('starts over from a fresh subscriber when CLIENT TRACKING got no answer', async () => {
    const { tracker, enables, renewed } = setup()
    tracker.dataReady()
    tracker.subscriberReady(7)
    enables[0]?.reject(new Error('Command timed out'))
    await tick()
    expect(renewed()).toBe(1)
    tracker.subscriberLost()
    tracker.subscriberReady(8)
    enables[1]?.resolve(undefined)
    await tick()
    expect(enables.map((e) => e.id)).toEqual([7, 8])
    expect(tracker.mode()).toBe('on')
  })

  it('falls back to expiry only, with one warning, when the backend refuses tracking', async () => {
    const { tracker, rt, enables, load, lines, closed } = setup()
    tracker.dataReady()
    tracker.subscriberReady(7)
    enables[0]?.resolve("ERR unknown command 'CLIENT TRACKING'")
    await tick()
    expect(rt.invalidation()).toBe('unsupported')
    expect(await load('k', 'v')).toBe('v')
    expect(text(rt.peek('k'))).toBe('v')
    // Reconnections change nothing: no more attempts, no more warnings.
    tracker.dataLost()
    tracker.dataReady()
    tracker.subscriberReady(8)
    expect(enables).toHaveLength(1)
    expect(text(rt.peek('k'))).toBe('v')
    expect(lines.filter((line) => line.includes('"level":"warn"'))).toHaveLength(1)
    expect(lines[0]).toContain('refuses client tracking')
    expect(closed()).toBe(1)
  })

  it('stops reacting once closed', async () => {
    const { tracker, rt, enables, load } = await established()
    await load('k', 'v')
    await tracker.close()
    tracker.invalidated(['k'])
    tracker.subscriberReady(9)
    expect(text(rt.peek('k'))).toBe('v')
    expect(enables).toHaveLength(1)
  })
})
