import type { CacheStats } from './cache/lru-cache.js'
import { NIL, type SlabCache } from './cache/slab-cache.js'
import { turnNow } from './clock.js'
import { BackendError, BackendTimeoutError, OverloadedError } from './errors.js'
import { Fifo } from './fifo.js'
import type { InvalidationChannel, InvalidationMode, InvalidationTarget } from './invalidation.js'
import { KeyTable } from './key-table.js'
import { type KeyPrefixes, keyFromBytes } from './keys.js'
import type { KeyBytes, LoadDone, Loaded, RedisSource, SourceState } from './redis/source.js'

export type ReadThroughOptions = {
  cache: SlabCache
  source: RedisSource
  /** Backend fetches running at once. */
  maxParallel: number
  /** Fetches waiting for a free slot; one more is an OverloadedError. */
  maxQueue: number
  /**
   * The most a read may take from when it is asked, waiting for a slot
   * included: a fetch that waited in the queue has only what is left of it.
   */
  timeoutMs: number
  /** Tells the cache about writes (CACHE_INVALIDATION=on); without it, expiry only. */
  invalidation?: InvalidationChannel
  /** CACHE_PREFIXES: only keys under these are stored. @default every key */
  prefixes?: KeyPrefixes
  /** Monotonic milliseconds for deadlines. @default turnNow (performance.now, read once per run of code) */
  now?: () => number
}

export type ReadThroughStats = CacheStats & {
  keys: number
  capacity: number
  coalesced: number
  backendErrors: number
  inflight: number
  queueDepth: number
  /**
   * Keys evicted because Redis reported a write or a forwarded write named
   * them (when sent, and again when answered), and whole-cache clears.
   */
  invalidations: number
  /**
   * Keys named by Redis's invalidations (under BCAST, every key written in
   * the keyspace, whoever wrote it), each looked up and evicted.
   */
  reportedKeys: number
  /** Of `reportedKeys`, those the cache held a live entry for when told. */
  reportedCached: number
  /** Loaded values not stored: a write raced the load, or the invalidation channel was down. */
  unstoredLoads: number
}

/**
 * Someone a fetch answers, once: by callback, so the RESP miss path takes a
 * reply slot and makes no promise (see `fetchTo`).
 */
export interface FetchWaiter {
  /** `value` is lent (valid only during the call) to a waiter that `takesLent`. */
  loaded(value: Uint8Array | null): void
  failed(err: Error): void
  /**
   * Whether the waiter copies what it keeps of `value` during `loaded`: then
   * it may be given the very bytes the source read, not a copy of its own.
   */
  readonly takesLent?: boolean
}

/** A FetchWaiter for callers that await: HTTP, MGET. */
class PromiseWaiter implements FetchWaiter {
  readonly promise: Promise<Uint8Array | null>
  loaded!: (value: Uint8Array | null) => void
  failed!: (err: Error) => void
  constructor() {
    this.promise = new Promise((resolve, reject) => {
      this.loaded = resolve
      this.failed = reject
    })
  }
}

/**
 * One backend GET in progress. Every request for the key while it runs shares
 * it. `stale` is set when an invalidation or clear arrives meanwhile, or when
 * stores are suspended or resumed (the GET may not be tracked by Redis): the
 * answer still goes to the waiters (it was true when they asked) but is not
 * stored, so a write that raced the read can never be hidden behind the cache.
 */
class Flight implements LoadDone {
  /** Its settle stores a value and answers its waiters before returning (see resolve). */
  readonly takesLent = true
  stale = false
  /** When its backend read was sent: the PTTL is counted from then. */
  startedAt = 0
  // The first waiter inline: most fetches have one.
  #first: FetchWaiter | null = null
  #rest: FetchWaiter[] | null = null
  // What every awaiting caller shares. One promise, made in the first
  // caller's context: a Worker may not have a promise of one request
  // settled from another's.
  #shared: PromiseWaiter | null = null
  constructor(
    readonly key: string,
    /** The key's hash in the service's table of flights (KeyTable.hashOf). */
    readonly keyHash: number,
    /** When it was asked plus the timeout: its answer is due by then, queue included. */
    readonly deadline: number,
    /** The service's settle, which the source's answer goes to (LoadDone). */
    readonly settle: FlightSettle,
    /**
     * The key's bytes where the request brought them (KeyBytes), or null:
     * sent and stored from there. A view of a received chunk, which is
     * never reused, held only until the flight settles.
     */
    readonly keyChunk: Uint8Array | null,
    readonly keyStart: number,
    readonly keyEnd: number,
  ) {}

  loaded(loaded: Loaded | null): void {
    this.#settled(true, loaded, undefined)
  }

  failed(err: Error): void {
    this.#settled(false, null, err)
  }

  #settled(ok: boolean, loaded: Loaded | null, err: unknown): void {
    // The source calls back from its own read loop: a bug here is thrown
    // on its own, as a rejected .then would be, and does not become a
    // failure of that connection and of every other read on it.
    try {
      this.settle(this, ok, loaded, err)
    } catch (thrown) {
      queueMicrotask(() => {
        throw thrown
      })
    }
  }

  join(waiter: FetchWaiter): void {
    if (this.#first === null) this.#first = waiter
    else if (this.#rest === null) this.#rest = [waiter]
    else this.#rest.push(waiter)
  }

  /** The answer as a promise, the same one for every caller that asks for one. */
  promise(): Promise<Uint8Array | null> {
    if (this.#shared === null) {
      this.#shared = new PromiseWaiter()
      this.join(this.#shared)
    }
    return this.#shared.promise
  }

  /** `lent`: `value` is valid only during this call; a waiter that keeps it gets a copy. */
  resolve(value: Uint8Array | null, lent: boolean): void {
    let copy: Uint8Array | null = null
    const first = this.#first
    if (first !== null) {
      if (lent && first.takesLent !== true) copy = new Uint8Array(value as Uint8Array)
      answer(first, copy ?? value, null)
    }
    const rest = this.#rest
    if (rest === null) return
    for (const waiter of rest) {
      if (lent && waiter.takesLent !== true) copy ??= new Uint8Array(value as Uint8Array)
      answer(waiter, lent && waiter.takesLent !== true ? copy : value, null)
    }
  }

  reject(err: Error): void {
    if (this.#first !== null) answer(this.#first, null, err)
    const rest = this.#rest
    if (rest !== null) for (const waiter of rest) answer(waiter, null, err)
  }
}

type FlightSettle = (flight: Flight, ok: boolean, loaded: Loaded | null, err: unknown) => void

function overloaded(): OverloadedError {
  return new OverloadedError('too many backend fetches waiting')
}

/** One waiter answered; one that throws (a bug) does not keep the others from theirs. */
function answer(waiter: FetchWaiter, value: Uint8Array | null, err: Error | null): void {
  try {
    if (err === null) waiter.loaded(value)
    else waiter.failed(err)
  } catch (thrown) {
    queueMicrotask(() => {
      throw thrown
    })
  }
}

/**
 * Cache + source + coalescing + a parallel limit, written once and used by the
 * HTTP function and the RESP sidecar alike; they only translate. Its parts
 * are its own: callers read through `get`, and see the backend only as its
 * state.
 */
export class ReadThrough implements InvalidationTarget {
  readonly #cache: SlabCache
  readonly #source: RedisSource
  readonly #channel: InvalidationChannel | undefined
  readonly #prefixes: KeyPrefixes | undefined
  readonly #maxParallel: number
  readonly #maxQueue: number
  readonly #timeoutMs: number
  readonly #now: () => number
  // Fires at the deadline of the oldest queued flight (deadlines grow along
  // the FIFO: one timeout, one monotonic clock), so a queued read never waits
  // past its deadline for a slot.
  #queueTimer: ReturnType<typeof setTimeout> | undefined
  readonly #inflight = new KeyTable<Flight>()
  // Flights waiting for a slot, oldest first.
  readonly #queue = new Fifo<Flight>()
  #active = 0
  #coalesced = 0
  #backendErrors = 0
  #invalidations = 0
  // Only the invalidation channel calls evictBytes and evictSpans (and
  // invalidateBytes, through evictBytes): what it reports is counted there.
  #reportedKeys = 0
  #reportedCached = 0
  #unstoredLoads = 0
  #flightsBegun = 0
  // False while a write could happen without the cache hearing of it (see shared/invalidation.ts).
  #storing = true

  constructor(options: ReadThroughOptions) {
    for (const name of ['maxParallel', 'maxQueue', 'timeoutMs'] as const) {
      const value = options[name]
      const min = name === 'maxQueue' ? 0 : 1
      if (!Number.isInteger(value) || value < min) {
        throw new TypeError(
          `Expected \`${name}\` to be an integer from ${min} and up, got \`${value}\``,
        )
      }
    }
    this.#cache = options.cache
    this.#source = options.source
    this.#maxParallel = options.maxParallel
    this.#maxQueue = options.maxQueue
    this.#timeoutMs = options.timeoutMs
    this.#now = options.now ?? turnNow
    this.#channel = options.invalidation
    this.#prefixes = options.prefixes
    // Started here so a channel can never be wired to half a service.
    this.#channel?.start(this)
  }

  /** Whether writes to Redis reach the cache now (see InvalidationMode). */
  invalidation(): InvalidationMode {
    return this.#channel?.mode() ?? 'off'
  }

  /** What the backend connection is doing now. */
  backend(): SourceState {
    return this.#source.state()
  }

  /**
   * The value of `key`: a hit synchronously (the bytes themselves, or null
   * for a key the cache knows is missing), anything else through `load`.
   */
  get(key: string): Uint8Array | null | Promise<Uint8Array | null> {
    const value = this.lend(key)
    return value instanceof Uint8Array ? value.slice() : value
  }

  /**
   * As `get`, but a hit is lent, not copied: a view of the cache's own
   * bytes, valid only until the cache next changes (any read, write or
   * invalidation), so the caller copies it before anything else runs. A
   * value that had to be loaded is the caller's to keep, as from `get`.
   */
  lend(key: string): Uint8Array | null | Promise<Uint8Array | null> {
    const cache = this.#cache
    const slot = cache.getSlot(key)
    // Just looked: a miss is fetched with no second look, as load() takes.
    if (slot < 0) return this.#fetch(key)
    if (!cache.isNil(slot)) return cache.valueView(slot)
    // A nil is served only while Redis tells of writes: while the channel
    // is lost, a key created meanwhile would stay hidden behind it.
    return this.invalidation() === 'on' ? null : this.#fetch(key)
  }

  /**
   * The hot path's look: the cache slot of the key whose bytes are
   * `bytes[start, end)`, counted as a hit, or -1, counted as a miss (then
   * `fetchTo` it, not `get`, or the miss counts twice). No string is made.
   * The slot is valid until the cache next changes: copy its value out
   * (`copyHit`) before anything else runs.
   */
  hitSlot(bytes: Uint8Array, start: number, end: number): number {
    return this.#cache.getBytes(bytes, start, end)
  }

  /**
   * Readies the lookups of the keys `bytes[spans[2i], spans[2i+1])`, i <
   * count, about to be asked of hitSlot (see SlabCache.prefetchBytes).
   */
  prefetchBytes(bytes: Uint8Array, spans: Int32Array, count: number): void {
    this.#cache.prefetchBytes(bytes, spans, count)
  }

  /** Whether the slot `hitSlot` answered records a key known to be missing. */
  hitIsNil(slot: number): boolean {
    return this.#cache.isNil(slot)
  }

  /** Whether a nil `hitSlot` found may be answered (see `get`); else `fetch` the key. */
  nilServable(): boolean {
    return this.invalidation() === 'on'
  }

  /** The length of the value in a slot `hitSlot` answered. */
  hitLength(slot: number): number {
    return this.#cache.valueLength(slot)
  }

  /** Copies the value in `slot` into `target` at `offset`; returns the offset after it. */
  copyHit(slot: number, target: Uint8Array, offset: number): number {
    return this.#cache.copyValue(slot, target, offset)
  }

  /**
   * The cached value, NIL for a key known missing (compare by identity), or
   * null when the cache cannot say; counted as a hit or a miss: for a caller that
   * schedules its own loads (MGET bounds how many it runs at once).
   */
  cached(key: string): Uint8Array | null {
    const hit = this.#cache.get(key)
    return hit === NIL && this.invalidation() !== 'on' ? null : hit
  }

  /**
   * The cached value, or null, without counting a hit or a miss or marking
   * it used: for inspection (status pages, tests), not for serving.
   */
  peek(key: string): Uint8Array | null {
    const cached = this.#cache.peek(key)
    return cached === NIL ? null : cached
  }

  /**
   * Fetches a key: coalesced, limited, stored only on success. The cache is
   * checked again first (a fetch may have stored the key since the caller
   * looked), without counting a second miss.
   */
  load(key: string): Promise<Uint8Array | null> {
    const cached = this.#cache.peek(key)
    if (cached === NIL && this.invalidation() === 'on') return Promise.resolve(null)
    if (cached !== null && cached !== NIL) return Promise.resolve(cached)
    return this.#fetch(key)
  }

  /** Joins the key's fetch in progress, or starts one (or queues it for a slot). */
  #fetch(key: string): Promise<Uint8Array | null> {
    const flight = this.#flight(key, null, 0, 0)
    return flight === undefined ? Promise.reject(overloaded()) : flight.promise()
  }

  /**
   * Loads a key `hitSlot` just missed, coalesced and limited as `get`'s
   * loads, answered through `waiter` (once, possibly before this returns:
   * an OverloadedError): the RESP miss path's way in, one reply slot and no
   * promise per miss.
   */
  fetchTo(
    key: string,
    waiter: FetchWaiter,
    keyChunk: Uint8Array | null = null,
    keyStart = 0,
    keyEnd = 0,
  ): void {
    const flight = this.#flight(key, keyChunk, keyStart, keyEnd)
    if (flight === undefined) waiter.failed(overloaded())
    else flight.join(waiter)
  }

  /**
   * The key's fetch in progress, or a new one started (or queued for a
   * slot); undefined when the queue is full. Never answered before its
   * caller joins it: the source answers in a later turn.
   */
  #flight(
    key: string,
    keyChunk: Uint8Array | null,
    keyStart: number,
    keyEnd: number,
  ): Flight | undefined {
    const hash = this.#inflight.hashOf(key)
    const running = this.#inflight.get(key, hash)
    if (running !== undefined) {
      this.#coalesced++
      return running
    }
    if (this.#active >= this.#maxParallel && this.#queue.length >= this.#maxQueue) return undefined
    const flight = new Flight(
      key,
      hash,
      this.#now() + this.#timeoutMs,
      this.#settleFlight,
      keyChunk,
      keyStart,
      keyEnd,
    )
    this.#flightsBegun++
    this.#inflight.add(flight)
    if (this.#active < this.#maxParallel) {
      this.#start(flight)
    } else {
      this.#queue.push(flight)
      this.#queueTimer ??= setTimeout(this.#expireQueued, this.#timeoutMs)
    }
    return flight
  }

  /** Closes the backend connection and the invalidation channel. */
  async close(): Promise<void> {
    clearTimeout(this.#queueTimer)
    this.#queueTimer = undefined
    await this.#channel?.close()
    await this.#source.close()
  }

  /**
   * How many backend fetches have begun, ever. Only a fetch stores in the
   * cache, and an invalidation makes every fetch of its key in progress
   * store nothing: so while this count stands still, a key invalidated
   * since it last changed cannot be back in the cache (a forwarded write's
   * second eviction, at its reply, is then needless).
   */
  flightsBegun(): number {
    return this.#flightsBegun
  }

  /**
   * Forgets a key (its bytes: a forwarded write's argument, a key Redis
   * reported), including any fetch of it in progress (see Flight): no
   * string is made unless a fetch is in progress to be found by it.
   */
  invalidateBytes(key: Uint8Array): void {
    this.evictBytes(key)
    if (this.#inflight.size > 0) this.#dropFlight(keyFromBytes(key))
  }

  /**
   * As `invalidateBytes`, for each key `keys[at[i]]` (a write's arguments at
   * its key positions): evicted together (SlabCache.deleteEach: each key
   * hashed once, and several have their entries read together, so their
   * evictions do not wait on memory one key after another).
   */
  invalidateEach(keys: readonly Uint8Array[], at: readonly number[]): void {
    this.#invalidations += at.length
    this.#cache.deleteEach(keys, at)
    if (this.#inflight.size === 0) return
    for (const i of at) this.#dropFlight(keyFromBytes(keys[i] as Uint8Array))
  }

  /**
   * Forgets a key's cached value, not its fetch in progress: for an
   * invalidation that reaches the service in order with the replies of its
   * fetches (see InvalidationTarget.evictBytes).
   */
  evictBytes(key: Uint8Array): void {
    this.#invalidations++
    this.#reportedKeys++
    if (this.#cache.deleteBytes(key, 0, key.length)) this.#reportedCached++
  }

  /** As `evictBytes`, for several keys lying in one buffer (see InvalidationTarget.evictSpans). */
  evictSpans(bytes: Uint8Array, spans: Int32Array, count: number): void {
    this.#invalidations += count
    this.#reportedKeys += count
    this.#reportedCached += this.#cache.deleteSpans(bytes, spans, count)
  }

  /** The key's fetch in progress, if any, is answered but not stored, and not joined. */
  #dropFlight(key: string): void {
    const flight = this.#inflight.get(key, this.#inflight.hashOf(key))
    if (flight !== undefined) {
      flight.stale = true
      this.#inflight.remove(flight)
    }
  }

  /** Forgets everything, including fetches in progress. */
  clear(): void {
    this.#invalidations++
    this.#cache.clear()
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
      ...this.#cache.stats(),
      keys: this.#cache.size,
      capacity: this.#cache.capacity,
      coalesced: this.#coalesced,
      backendErrors: this.#backendErrors,
      inflight: this.#active,
      queueDepth: this.#queue.length,
      invalidations: this.#invalidations,
      reportedKeys: this.#reportedKeys,
      reportedCached: this.#reportedCached,
      unstoredLoads: this.#unstoredLoads,
    }
  }

  #start(flight: Flight): void {
    this.#active++
    flight.startedAt = this.#now()
    const source = this.#source
    if (source.getTo !== undefined) {
      // By callback: the flight is the source's LoadDone (see RedisSource.getTo).
      try {
        source.getTo(
          flight.key,
          flight.deadline,
          flight,
          flight.keyChunk === null ? undefined : (flight as KeyBytes),
        )
      } catch (err) {
        queueMicrotask(() => flight.failed(err as Error))
      }
      return
    }
    let pending: Promise<Loaded | null>
    try {
      pending = source.get(flight.key, flight.deadline)
    } catch (err) {
      pending = Promise.reject(err)
    }
    pending.then(
      (loaded) => flight.loaded(loaded),
      (err: unknown) => flight.failed(err as Error),
    )
  }

  /** Every flight's answer from the source (made once, not per flight). */
  readonly #settleFlight: FlightSettle = (flight, ok, loaded, err) =>
    this.#settle(flight, ok, loaded, err)

  /** Whether the flight's key may be stored (CACHE_PREFIXES). */
  #storable(flight: Flight): boolean {
    const prefixes = this.#prefixes
    if (prefixes === undefined) return true
    return flight.keyChunk === null
      ? prefixes.has(flight.key)
      : prefixes.hasBytes(flight.keyChunk, flight.keyStart, flight.keyEnd)
  }

  #settle(flight: Flight, ok: boolean, loaded: Loaded | null, err: unknown): void {
    this.#active--
    this.#inflight.remove(flight)
    if (ok) {
      if (loaded === null) {
        // A missing key is cached only while Redis tells of every write:
        // it reports the write that creates the key (by broadcast, or as
        // it tracks keys read even when missing), which evicts the nil.
        // Otherwise a key written later would stay hidden until the nil
        // expired.
        if (
          !flight.stale &&
          this.#storing &&
          this.#channel?.mode() === 'on' &&
          this.#storable(flight)
        ) {
          if (flight.keyChunk === null) this.#cache.setNil(flight.key)
          else this.#cache.setNilBytes(flight.keyChunk, flight.keyStart, flight.keyEnd)
        }
      } else if (this.#storable(flight)) {
        if (!flight.stale && this.#storing) {
          // Redis read the TTL some time after the GET left: counted from
          // then, the entry ends no later than the key does in Redis.
          const ttl =
            loaded.ttlMs === null
              ? this.#cache.ttlMs
              : loaded.ttlMs - (this.#now() - flight.startedAt)
          if (flight.keyChunk === null) this.#cache.set(flight.key, loaded.value, ttl)
          else {
            this.#cache.setBytes(flight.keyChunk, flight.keyStart, flight.keyEnd, loaded.value, ttl)
          }
        } else {
          this.#unstoredLoads++
        }
      }
      flight.resolve(loaded === null ? null : loaded.value, loaded?.lent === true)
    } else {
      this.#backendErrors++
      flight.reject(
        err instanceof BackendError ? err : new BackendError(String(err), { cause: err }),
      )
    }
    this.#drain()
  }

  #dropFlights(): void {
    for (const flight of this.#inflight.drain()) flight.stale = true
  }

  /** Fails the queued flights whose deadline has passed; re-arms for the next one. */
  readonly #expireQueued = (): void => {
    this.#queueTimer = undefined
    const now = this.#now()
    // Deadlines grow along the queue: the overdue ones are its head.
    for (let next = this.#queue.peek(); next !== undefined; next = this.#queue.peek()) {
      if (next.deadline > now) {
        this.#queueTimer = setTimeout(this.#expireQueued, Math.ceil(next.deadline - now))
        return
      }
      this.#queue.shift()
      this.#timeOut(next)
    }
  }

  #timeOut(flight: Flight): void {
    this.#inflight.remove(flight)
    this.#backendErrors++
    flight.reject(
      new BackendTimeoutError(`no backend slot within ${this.#timeoutMs} ms (MAX_PARALLEL)`),
    )
  }

  #drain(): void {
    while (this.#active < this.#maxParallel && this.#queue.length > 0) {
      const next = this.#queue.shift() as Flight
      if (next.deadline <= this.#now()) this.#timeOut(next)
      else this.#start(next)
    }
  }
}
