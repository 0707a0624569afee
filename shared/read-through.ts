import type { CacheStats, LruCache } from './cache/lru-cache.js'
import { BackendError, OverloadedError } from './errors.js'
import type { InvalidationChannel, InvalidationMode, InvalidationTarget } from './invalidation.js'
import type { RedisSource } from './redis/source.js'

export type ReadThroughOptions = {
  cache: LruCache<Uint8Array>
  source: RedisSource
  /** Backend fetches running at once. */
  maxParallel: number
  /** Fetches waiting for a free slot; one more is an OverloadedError. */
  maxQueue: number
  /** Tells the cache about writes (CACHE_INVALIDATION=on); without it, expiry only. */
  invalidation?: InvalidationChannel
}

export type ReadThroughStats = CacheStats & {
  keys: number
  capacity: number
  coalesced: number
  backendErrors: number
  inflight: number
  queueDepth: number
  /** Keys evicted because Redis reported a write, and whole-cache clears. */
  invalidations: number
  /** Loaded values not stored: a write raced the load, or the invalidation channel was down. */
  unstoredLoads: number
}

/**
 * One backend GET in progress. Every request for the key while it runs shares
 * it. `stale` is set when an invalidation or clear arrives meanwhile, or when
 * stores are suspended or resumed (the GET may not be tracked by Redis): the
 * answer still goes to the waiters (it was true when they asked) but is not
 * stored, so a write that raced the read can never be hidden behind the cache.
 */
class Flight {
  stale = false
  readonly promise: Promise<Uint8Array | null>
  resolve!: (value: Uint8Array | null) => void
  reject!: (err: Error) => void
  constructor(readonly key: string) {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }
}

/**
 * Cache + source + coalescing + a parallel limit, written once and used by the
 * HTTP function and the RESP sidecar alike; they only translate.
 */
export class ReadThrough implements InvalidationTarget {
  readonly cache: LruCache<Uint8Array>
  readonly source: RedisSource
  readonly #channel: InvalidationChannel | undefined
  readonly #maxParallel: number
  readonly #maxQueue: number
  readonly #inflight = new Map<string, Flight>()
  // FIFO of flights waiting for a slot; dequeued by moving #head, never shift().
  #queue: Flight[] = []
  #head = 0
  #active = 0
  #coalesced = 0
  #backendErrors = 0
  #invalidations = 0
  #unstoredLoads = 0
  // False while a write could happen without the cache hearing of it (see shared/invalidation.ts).
  #storing = true

  constructor(options: ReadThroughOptions) {
    for (const name of ['maxParallel', 'maxQueue'] as const) {
      const value = options[name]
      const min = name === 'maxParallel' ? 1 : 0
      if (!Number.isInteger(value) || value < min) {
        throw new TypeError(
          `Expected \`${name}\` to be an integer from ${min} and up, got \`${value}\``,
        )
      }
    }
    this.cache = options.cache
    this.source = options.source
    this.#maxParallel = options.maxParallel
    this.#maxQueue = options.maxQueue
    this.#channel = options.invalidation
    // Started here so a channel can never be wired to half a service.
    this.#channel?.start(this)
  }

  /** Whether writes to Redis reach the cache now (see InvalidationMode). */
  invalidation(): InvalidationMode {
    return this.#channel?.mode() ?? 'off'
  }

  /** The cached value, or null; synchronous so hits never wait on a promise. */
  cached(key: string): Uint8Array | null {
    return this.cache.get(key)
  }

  /** Fetches a key the cache does not hold: coalesced, limited, stored only on success. */
  load(key: string): Promise<Uint8Array | null> {
    const running = this.#inflight.get(key)
    if (running !== undefined) {
      this.#coalesced++
      return running.promise
    }
    if (this.#active >= this.#maxParallel && this.#queue.length - this.#head >= this.#maxQueue) {
      return Promise.reject(new OverloadedError('too many backend fetches waiting'))
    }
    const flight = new Flight(key)
    this.#inflight.set(key, flight)
    if (this.#active < this.#maxParallel) this.#start(flight)
    else this.#queue.push(flight)
    return flight.promise
  }

  /** Forgets a key, including any fetch of it in progress (see Flight). */
  invalidate(key: string): void {
    this.#invalidations++
    this.cache.delete(key)
    const flight = this.#inflight.get(key)
    if (flight !== undefined) {
      flight.stale = true
      this.#inflight.delete(key)
    }
  }

  /** Forgets everything, including fetches in progress. */
  clear(): void {
    this.#invalidations++
    this.cache.clear()
    this.#dropFlights()
  }

  /**
   * Stops storing loaded values until resumeStores(); what is cached stays.
   * Fetches in progress are dropped, so later requests do not join them.
   */
  suspendStores(): void {
    this.#storing = false
    this.#dropFlights()
  }

  /** Stores again, but only values whose fetch starts after this call. */
  resumeStores(): void {
    this.#dropFlights()
    this.#storing = true
  }

  stats(): ReadThroughStats {
    return {
      ...this.cache.stats(),
      keys: this.cache.size,
      capacity: this.cache.capacity,
      coalesced: this.#coalesced,
      backendErrors: this.#backendErrors,
      inflight: this.#active,
      queueDepth: this.#queue.length - this.#head,
      invalidations: this.#invalidations,
      unstoredLoads: this.#unstoredLoads,
    }
  }

  #start(flight: Flight): void {
    this.#active++
    let pending: Promise<Uint8Array | null>
    try {
      pending = this.source.get(flight.key)
    } catch (err) {
      pending = Promise.reject(err)
    }
    pending.then(
      (value) => this.#settle(flight, true, value, undefined),
      (err: unknown) => this.#settle(flight, false, null, err),
    )
  }

  #settle(flight: Flight, ok: boolean, value: Uint8Array | null, err: unknown): void {
    this.#active--
    if (this.#inflight.get(flight.key) === flight) this.#inflight.delete(flight.key)
    if (ok) {
      // Misses are not cached: a key written later must be visible at once.
      if (value !== null) {
        if (!flight.stale && this.#storing) this.cache.set(flight.key, value)
        else this.#unstoredLoads++
      }
      flight.resolve(value)
    } else {
      this.#backendErrors++
      flight.reject(
        err instanceof BackendError ? err : new BackendError(String(err), { cause: err }),
      )
    }
    this.#drain()
  }

  #dropFlights(): void {
    for (const flight of this.#inflight.values()) flight.stale = true
    this.#inflight.clear()
  }

  #drain(): void {
    while (this.#active < this.#maxParallel && this.#head < this.#queue.length) {
      const next = this.#queue[this.#head] as Flight
      this.#queue[this.#head++] = undefined as unknown as Flight
      this.#start(next)
    }
    if (this.#head === this.#queue.length) {
      this.#queue.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
  }
}
