// biome-ignore-all lint/style/noNonNullAssertion: slot indices are always in bounds (see the invariant on the arrays)

/**
 * An LRU cache with one time-to-live for every entry, for the read-through hot path.
 *
 * Layout (after lru-cache): no per-entry objects. A `Map` takes a key to a slot
 * index; the slot indexes parallel arrays for key, value and expiry time, and
 * `prev`/`next` typed arrays link the live slots into one circular list
 * through a sentinel slot, most recently used first. Slots freed by `delete`
 * or by noticing an expired entry go on a stack and are reused before the
 * least recently used entry is evicted. Every operation is O(1).
 *
 * Expiry is lazy: an expired entry stays stored (and counts in `size`) until
 * `get`, `set` or `delete` touches it, or until it is the least recently used
 * entry when room is needed. From the outside it is absent as soon as it
 * expires.
 */

/** A source of time in milliseconds. Only differences between readings matter. */
export type Clock = { now(): number }

// The last reading, kept until a timer clears it (0: none kept).
let lastReading = 0
const forget = () => {
  lastReading = 0
}

/**
 * Monotonic milliseconds (unaffected by changes to the wall clock), read from
 * the OS at most once per millisecond: a hit otherwise spends more time asking
 * for the time than finding the entry (lru-cache does the same with its
 * `ttlResolution`). The cost is resolution: within one synchronous run of
 * code, and until the event loop next runs timers, time stands still, so an
 * entry can outlive its expiry by that long (about a millisecond unless the
 * process is busy). Never less than `ttlMs`.
 *
 * For runtimes whose timers outlive the code that set them (Node). Where a
 * timer can be dropped (workerd cancels a request's timers when it ends) the
 * reading would never be cleared: such a runtime passes a clock of its own
 * (functions/worker.ts).
 */
export const systemClock: Clock = {
  now() {
    if (lastReading > 0) return lastReading
    lastReading = performance.now()
    // Node's timers must not keep the process alive; other runtimes return a number.
    const timer: unknown = setTimeout(forget, 1)
    if (typeof timer === 'object' && timer !== null && 'unref' in timer) {
      ;(timer as { unref(): void }).unref()
    }
    return lastReading
  },
}

/** Counters since the cache was created. `clear()` keeps them. */
export type CacheStats = {
  /** `get` calls that found a live entry. */
  hits: number
  /** `get` calls that found no entry or an expired one. */
  misses: number
  /** Live entries removed to make room for a new key. */
  evictions: number
  /** Expired entries removed, whichever operation noticed them (`get`, `set`, `delete`). */
  expirations: number
}

export type LruCacheOptions = {
  /** Maximum number of keys. Integer from 1 to 16777216 (the most keys a `Map` can hold). */
  capacity: number
  /**
   * Milliseconds an entry lives, counted from when it was stored; reads do not
   * extend it. An entry stored at `t` is live while `now - t < ttlMs` and
   * expired from `now - t >= ttlMs`. Integer >= 1.
   */
  ttlMs: number
  /** @default systemClock */
  clock?: Clock
}

// V8 refuses to grow a Map past 2^24 entries; failing at construction beats a
// RangeError from `set` once the cache fills up in production.
export const MAX_CAPACITY = 2 ** 24

export class LruCache<V> {
  readonly capacity: number
  readonly ttlMs: number

  readonly #clock: Clock
  readonly #slots = new Map<string, number>()

  // Invariants: every slot index stored in `#slots`, the list or the free stack
  // is below `capacity` (the sentinel is `capacity`, and prev/next have room
  // for it), so typed-array reads are in bounds; that is what each `!` asserts.
  // A slot's entries are meaningful only while the slot is in `#slots`; nothing
  // reads a free or never-used slot.
  //
  // The typed arrays are sized from `capacity` up front: zero-filled buffers are
  // committed by the OS page by page as they are written, so a large, mostly
  // empty cache costs address space, not memory. The JS arrays live on the V8
  // heap, where `new Array(capacity)` would cost 8 bytes per slot at once, so
  // they grow by `push` as slots are first used (which also keeps them packed).
  readonly #keys: (string | undefined)[] = []
  readonly #values: (V | undefined)[] = []
  // When each slot's entry expires (clock time): the global expiry from when
  // it was stored, or sooner when the entry was stored with a shorter one.
  readonly #expiresAt: Float64Array
  // Circular doubly linked list over slots 0..capacity-1 plus the sentinel slot
  // `capacity`: next[sentinel] is the most recently used slot, prev[sentinel]
  // the least. The sentinel makes link and unlink branch-free.
  readonly #prev: Uint32Array
  readonly #next: Uint32Array
  readonly #sentinel: number
  // Stack of freed slots: free[0..freeTop-1].
  readonly #free: Uint32Array
  #freeTop = 0
  // Slots 0..fill-1 have been handed out at least once; keys.length === fill.
  // So the number of stored entries is fill - freeTop.
  #fill = 0

  #hits = 0
  #misses = 0
  #evictions = 0
  #expirations = 0

  constructor(options: LruCacheOptions) {
    const { capacity, ttlMs, clock = systemClock } = options
    assertCount('capacity', capacity)
    if (capacity > MAX_CAPACITY) {
      throw new TypeError(
        `Expected \`capacity\` to be at most ${MAX_CAPACITY} (the most keys a Map can hold), got \`${capacity}\``,
      )
    }
    assertCount('ttlMs', ttlMs)
    if (typeof clock?.now !== 'function') {
      throw new TypeError(
        `Expected \`clock\` to have a \`now()\` method, got \`${describe(clock)}\``,
      )
    }
    this.capacity = capacity
    this.ttlMs = ttlMs
    this.#clock = clock
    this.#expiresAt = new Float64Array(capacity)
    this.#prev = new Uint32Array(capacity + 1)
    this.#next = new Uint32Array(capacity + 1)
    this.#free = new Uint32Array(capacity)
    this.#sentinel = capacity
    this.#prev[capacity] = capacity
    this.#next[capacity] = capacity
  }

  /**
   * Number of stored entries, including expired ones not yet noticed (see the
   * module comment). Never more than `capacity`.
   */
  get size(): number {
    return this.#slots.size
  }

  /** The live value, marked most recently used; counts a hit or a miss. */
  get(key: string): V | null {
    const slot = this.#slots.get(key)
    if (slot === undefined) {
      this.#misses++
      return null
    }
    if (this.#clock.now() >= this.#expiresAt[slot]!) {
      this.#expirations++
      this.#misses++
      this.#remove(key, slot)
      return null
    }
    this.#hits++
    this.#moveToFront(slot)
    return this.#values[slot] as V
  }

  /**
   * The live value, without marking it used or counting anything. Changes
   * nothing: an expired entry reads as absent but stays until noticed by
   * `get`, `set` or `delete`, so inspecting the cache never disturbs it.
   */
  peek(key: string): V | null {
    const slot = this.#slots.get(key)
    if (slot === undefined || this.#clock.now() >= this.#expiresAt[slot]!) {
      return null
    }
    return this.#values[slot] as V
  }

  /** Whether `key` has a live entry. Changes nothing, like `peek`. */
  has(key: string): boolean {
    const slot = this.#slots.get(key)
    return slot !== undefined && this.#clock.now() < this.#expiresAt[slot]!
  }

  /**
   * Stores `value` with a fresh expiry and marks it most recently used.
   * Replacing a key never evicts. A new key in a full cache takes the slot of
   * the least recently used entry: that counts as an expiration if the entry
   * had already expired, otherwise as an eviction. (Plain LRU: a live tail is
   * evicted even if an expired entry sits further up the list.)
   *
   * `ttlMs` shortens this entry's life below the cache's `ttlMs` (never
   * lengthens it): the read-through service passes the time the key has left
   * in Redis. A value of 0 or less stores nothing and removes the key.
   */
  set(key: string, value: V, ttlMs: number = this.ttlMs): void {
    if (!(ttlMs > 0)) {
      this.delete(key)
      return
    }
    const now = this.#clock.now()
    const expiresAt = this.#expiresAt
    const expiry = now + Math.min(ttlMs, this.ttlMs)
    let slot = this.#slots.get(key)
    if (slot !== undefined) {
      // An expired entry is gone as far as callers know; reusing its slot
      // still counts its expiry, so the counters match a remove-then-insert.
      if (now >= expiresAt[slot]!) this.#expirations++
      this.#values[slot] = value
      expiresAt[slot] = expiry
      this.#moveToFront(slot)
      return
    }
    if (this.#freeTop > 0) {
      slot = this.#free[--this.#freeTop]!
      this.#keys[slot] = key
      this.#values[slot] = value
      this.#linkFront(slot)
    } else if (this.#fill < this.capacity) {
      slot = this.#fill++
      this.#keys.push(key)
      this.#values.push(value)
      this.#linkFront(slot)
    } else {
      slot = this.#prev[this.#sentinel]!
      this.#slots.delete(this.#keys[slot] as string)
      if (now >= expiresAt[slot]!) this.#expirations++
      else this.#evictions++
      this.#keys[slot] = key
      this.#values[slot] = value
      this.#moveToFront(slot)
    }
    expiresAt[slot] = expiry
    this.#slots.set(key, slot)
  }

  /**
   * Removes `key`. Returns true only if a live entry was removed; an expired
   * entry is removed too (counting an expiration) but returns false.
   */
  delete(key: string): boolean {
    const slot = this.#slots.get(key)
    if (slot === undefined) return false
    const live = this.#clock.now() < this.#expiresAt[slot]!
    if (!live) this.#expirations++
    this.#remove(key, slot)
    return live
  }

  /** Removes every entry without counting evictions or expirations. Counters are kept. */
  clear(): void {
    this.#slots.clear()
    // Dropping the arrays' contents releases the values to the GC; the typed
    // arrays may keep stale numbers because no slot is in use any more.
    this.#keys.length = 0
    this.#values.length = 0
    this.#fill = 0
    this.#freeTop = 0
    this.#prev[this.#sentinel] = this.#sentinel
    this.#next[this.#sentinel] = this.#sentinel
  }

  /** A copy of the counters. */
  stats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      expirations: this.#expirations,
    }
  }

  #remove(key: string, slot: number): void {
    this.#slots.delete(key)
    this.#unlink(slot)
    // Release references so a freed slot does not keep a value alive.
    this.#keys[slot] = undefined
    this.#values[slot] = undefined
    this.#free[this.#freeTop++] = slot
  }

  #unlink(slot: number): void {
    const prev = this.#prev
    const next = this.#next
    const before = prev[slot]!
    const after = next[slot]!
    next[before] = after
    prev[after] = before
  }

  #linkFront(slot: number): void {
    const prev = this.#prev
    const next = this.#next
    const sentinel = this.#sentinel
    const first = next[sentinel]!
    prev[slot] = sentinel
    next[slot] = first
    prev[first] = slot
    next[sentinel] = slot
  }

  #moveToFront(slot: number): void {
    if (this.#next[this.#sentinel] === slot) return
    this.#unlink(slot)
    this.#linkFront(slot)
  }
}

function assertCount(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new TypeError(
      `Expected \`${name}\` to be an integer from 1 and up, got \`${describe(value)}\``,
    )
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value)
  return typeof value
}
