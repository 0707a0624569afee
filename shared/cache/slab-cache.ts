// biome-ignore-all lint/style/noNonNullAssertion: indices into the typed arrays are in bounds by the invariants stated beside them

/**
 * An LRU cache of byte values under byte-string keys, kept off the V8 heap:
 * the contract of `LruCache<Uint8Array>` (LRU order, capacity in keys,
 * per-entry ttl, lazy expiry, stats, injected clock) at a fraction of its
 * memory, and with a hot path on which a request's key never becomes a JS
 * string.
 *
 * Layout. Every entry is one allocation of
 * `varint(key length) varint(value length) key value` in a slab; nothing per
 * entry lives on the JS heap. An entry slot (0..capacity-1) indexes typed
 * arrays sized from `capacity`: where its bytes are (`loc`), when it expires,
 * and the `prev`/`next` links of one circular LRU list through a sentinel
 * slot. The index is an open-addressing table over the key bytes (linear
 * probing, load at most 0.75, backward-shift deletion so there are no
 * tombstones): each bucket is one int32 holding the slot and 7 bits of the
 * key's hash, so a probe rejects almost every other key without touching its
 * bytes; each slot's home bucket is kept beside it for the backward shift.
 *
 * Allocation (after memcached). Entry sizes are rounded up to one of about 80
 * size classes, 16 bytes and then each about 10% above the last, up to a
 * sixteenth of a page. A class takes pages holding whole chunks of its size;
 * a class's first page is small (4 KiB) and each next one doubles, up to
 * `pageBytes`, so a small cache stays small. A freed chunk goes on its page's
 * free list and is reused by the next entry of that class; a page whose last
 * chunk is freed is given back (the last full-size one is kept as a spare, so
 * a class hovering at a page boundary does not allocate and zero a page on
 * every write). An entry larger than the largest class gets an allocation of
 * exactly its size, released when the entry goes. So waste is the rounding to
 * a class (under 10%) plus the free chunks of partly used pages. The limit of
 * the scheme: pages are never moved between classes while they hold an entry,
 * so if the mix of entry sizes shifts for good, pages of the old classes stay
 * held by their few remaining entries until those are evicted or replaced
 * (memcached's slab calcification, bounded here because every entry is
 * eventually evicted by capacity).
 *
 * Expiry is lazy exactly as in LruCache (see there): an expired entry stays
 * stored (and counts in `size`) until `get`, `set` or `delete` touches it, or
 * until it is the least recently used entry when room is needed. An expiry
 * is kept in whole milliseconds from a base time, in 31 bits (see
 * EXPIRY_MAX): an entry whose expiry falls in a fraction of a millisecond
 * expires at the start of that millisecond, and no entry lives longer than
 * REBASE_AFTER (12.4 days) to 2^31 ms (24.8 days) past its store, whatever
 * its ttl. Both only end an entry early, which a cache may always do.
 *
 * Keys are byte strings: a string key is the bytes of its latin1 encoding
 * (each UTF-16 code unit's low byte, as `Buffer.from(key, 'latin1')`), so
 * `'abc'` and `[0x61, 0x62, 0x63]` name the same entry.
 */

import { putBytes } from '../bytes.js'
import { type CacheStats, type Clock, MAX_CAPACITY, systemClock } from './lru-cache.js'

/** Most keys one `prefetchBytes` readies. */
export const PREFETCH_MAX = 32

/** Size of a full slab page. @default 1 MiB */
export const PAGE_BYTES = 1024 * 1024
/** Redis's largest string (and its default proto-max-bulk-len, as the proxy's decoder). */
export const MAX_VALUE_BYTES = 512 * 1024 * 1024
/** A key is a bulk string too: the same limit as Redis's proto-max-bulk-len. */
export const MAX_KEY_BYTES = 512 * 1024 * 1024
/**
 * Pages (and dedicated allocations of large entries) held at once: a location
 * is a page index (16 bits) and a chunk index within it (16 bits). With 1 MiB
 * pages that is 64 GiB of slab.
 */
export const MAX_PAGES = 65_536

export type SlabCacheOptions = {
  /** Maximum number of keys. Integer from 1 to 16777216. */
  capacity: number
  /**
   * Milliseconds an entry lives, counted from when it was stored; reads do not
   * extend it. Integer >= 1. As LruCache's.
   */
  ttlMs: number
  /**
   * Expiries are kept in whole ms (see the expiry notes above): with a clock
   * that reads fractions, an entry ends up to 1 ms early.
   * @default systemClock
   */
  clock?: Clock
  /**
   * Bytes of a full slab page, integer from 1024 to 1048576. Entries larger
   * than a sixteenth of it get allocations of their own.
   * @default 1048576
   */
  pageBytes?: number
  /**
   * Largest value stored; `set` of a larger one stores nothing and removes
   * the key. Integer from 0 to 4294967295.
   * @default 536870912 (MAX_VALUE_BYTES)
   */
  maxValueBytes?: number
}

/** What the cache holds, for metrics. */
export type SlabMemory = {
  /** Bytes of slab pages and dedicated allocations held (the spare page included). */
  allocatedBytes: number
  /** Bytes of stored entries: their length headers, keys and values. */
  usedBytes: number
  /** The part of `allocatedBytes` in dedicated allocations of large entries. */
  dedicatedBytes: number
  /** Slab pages and dedicated allocations held, the spare page not counted. */
  pages: number
  /** Bytes of the index: hash table, links, expiry times, locations (fixed by `capacity`). */
  indexBytes: number
}

const MIN_CHUNK = 16
const CHUNK_GROWTH = 1.1
const FIRST_PAGE_BYTES = 4096
// Hash table bucket: 0 is empty; otherwise the sign bit, 7 bits of the hash
// and the slot in the low 24 bits (capacity <= 2^24 makes slots fit).
const OCCUPIED = 0x80000000 | 0
const HIGH_BYTE = 0xff000000 | 0
const SLOT_BITS = 0xffffff
// A slot's fields, side by side in one record of SLOT_WORDS 32-bit words (20
// bytes), so a hit reads one or two cache lines of them instead of one line
// per array: where its entry is (page index << 16 | chunk index), its key's
// home bucket (below 2^25) with NIL_HOME set when the entry records a
// missing key (setNil), its LRU links, and its expiry in whole ms after
// `#base` (at most EXPIRY_MAX; 0 always expired). The words read on every
// hit (home, links, expiry) stay below 2^31, small integers to V8. A float64
// expiry and the full hash took 24 bytes: 4 MiB more at a million entries.
const SLOT_WORDS = 5
const W_LOC = 0
const W_HOME = 1
const W_PREV = 2
const W_NEXT = 3
const W_EXPIRY = 4
const NIL_HOME = 0x40000000
const HOME_BITS = 0x3fffffff
/** The largest expiry a record holds, in ms after the base: 24.8 days. */
const EXPIRY_MAX = 2 ** 31 - 1
/**
 * A store this long (12.4 days) after the base first moves the base to now
 * (#rebase), so every store can be given at least this much life.
 */
const REBASE_AFTER = 2 ** 30
// Per-page fields in `#meta`, META of them per page.
const META = 8
const M_CHUNK = 0 // chunk size (0 for a dedicated allocation)
const M_CLASS = 1 // size class, or DEDICATED
const M_CHUNKS = 2 // chunks in the page
const M_USED = 3 // chunks holding an entry
const M_BUMP = 4 // chunks 0..bump-1 have been handed out at least once
const M_FREE = 5 // first chunk of the page's free list, -1 for none
const M_PREV = 6 // links of the class's list of pages with a free chunk, -1 for none
const M_NEXT = 7
const DEDICATED = -1
// A string key longer than this is encoded into a buffer of its own, not into
// the kept scratch buffer, so one huge key does not pin its size forever.
const SCRATCH_KEEP = 64 * 1024
// Up to this many bytes a loop beats creating a subarray for `set`. Measured
// here (Node 20) copying from a page into a Buffer: 4 bytes 20-24 ns by loop,
// 95-102 ns by set; even at 32; 100 bytes 320-400 ns by loop, 115-124 by set.
const LOOP_COPY = 32

/** What `get` and `peek` answer for a nil entry (see `setNil`); compare by identity. */
export const NIL: Uint8Array = Object.freeze(new Uint8Array(0)) as Uint8Array

export class SlabCache {
  readonly capacity: number
  readonly ttlMs: number
  readonly pageBytes: number
  readonly maxValueBytes: number

  readonly #clock: Clock
  readonly #seed: number

  // Invariant: every slot in the table, the LRU list or the free-slot list is
  // below `capacity`; the sentinel is `capacity` (prev/next have room for it).
  // A slot's loc and expiry mean something only while it is in the table.
  readonly #table: Int32Array
  readonly #tableSize: number
  // The slot records (see SLOT_WORDS), capacity + 1 of them (the last is the
  // sentinel's). A slot's home bucket is kept: recomputing it from the key
  // instead would save 4 bytes per entry but cost a slab read and a hash for
  // every entry of the probe run that a deletion or eviction shifts back
  // (several at load 0.75).
  readonly #slots: Uint32Array
  /** Whole ms (the clock's) that the records' expiries count from. */
  #base: number
  /** Set around the store of a nil entry, read by setBytes. */
  #storingNil = false
  // Circular LRU list through the sentinel: next(sentinel) is the most
  // recently used slot, prev(sentinel) the least. Free slots are a stack
  // threaded through `next`, ending at the sentinel.
  readonly #sentinel: number
  #freeSlot: number
  // Slots 0..fill-1 have been handed out at least once.
  #fill = 0
  #size = 0

  // Size classes, ascending; a chunk of class c is classSize[c] bytes.
  readonly #classSize: Int32Array
  // First page of the class with a free chunk, -1 for none.
  readonly #classHead: Int32Array
  // Chunks of a class's first page (4 KiB worth, at least one).
  readonly #classFirst: Int32Array
  // Chunks in the class's held pages, and how many of them hold an entry.
  readonly #classChunks: Float64Array
  readonly #classUsed: Float64Array
  readonly #maxChunk: number

  // Page index -> its bytes (undefined once given back). Invariant: a page
  // index in a `loc` is held, and its `#meta` fields describe it.
  #pages: (Uint8Array | undefined)[] = []
  /**
   * Each page's ArrayBuffer (every page is a Uint8Array of its own, offset
   * 0): a hit's value is copied out through a view made over it directly,
   * 28 against 40 ns for `subarray` of 100 B, whose species lookup and
   * `buffer` getter cost as much as the copy.
   */
  #pageBuffers: (ArrayBufferLike | undefined)[] = []
  #meta = new Int32Array(16 * META)
  #pageTop = 0
  #freePages: number[] = []
  #spare: Uint8Array | undefined
  // Per class, its first (smallest) page once given back: a class that goes
  // from one entry to none and back (CACHE_CAPACITY=1, or one key of a size
  // rewritten) would otherwise allocate a page for every store.
  #firstSpare: (Uint8Array | undefined)[] = []
  #allocatedBytes = 0
  #dedicatedBytes = 0
  #usedBytes = 0
  #heldPages = 0

  #scratch = new Uint8Array(256)

  // Set by #locate(slot): the entry's page and where its key and value are.
  #buf: Uint8Array = this.#scratch
  #valueAt = 0
  #valueLength = 0
  #entryBytes = 0

  // Where the value of the last key getBytes/peekBytes found lies, read
  // while its key was compared (#keyIs), so valueLength and copyValue of
  // that slot do not decode the entry again. Valid only while #hitSlot names
  // it: every change to the cache resets it first (#changing).
  #hitSlot = -1
  #hitBuf: Uint8Array = this.#scratch
  #hitPage = 0
  #hitValueAt = 0
  #hitValueLength = 0

  // The scratch of prefetchBytes, deleteEach and deleteSpans, and the sum of what the
  // last read ahead read, theirs or #keyIs's (kept so that the reads are not optimised away).
  readonly #prefetch = new Int32Array(PREFETCH_MAX)
  /** The hashes of the keys deleteEach and deleteSpans have readied, by their place in #prefetch. */
  readonly #prefetchHashes = new Int32Array(PREFETCH_MAX)
  #prefetched = 0

  #hits = 0
  #misses = 0
  #evictions = 0
  #expirations = 0

  constructor(options: SlabCacheOptions) {
    const {
      capacity,
      ttlMs,
      clock = systemClock,
      pageBytes = PAGE_BYTES,
      maxValueBytes = MAX_VALUE_BYTES,
    } = options
    assertInteger('capacity', capacity, 1)
    if (capacity > MAX_CAPACITY) {
      throw new TypeError(
        `Expected \`capacity\` to be at most ${MAX_CAPACITY} (the most slots a bucket can name), got \`${capacity}\``,
      )
    }
    assertInteger('ttlMs', ttlMs, 1)
    if (typeof clock?.now !== 'function') {
      throw new TypeError(
        `Expected \`clock\` to have a \`now()\` method, got \`${describe(clock)}\``,
      )
    }
    assertInteger('pageBytes', pageBytes, 1024, PAGE_BYTES)
    assertInteger('maxValueBytes', maxValueBytes, 0, 2 ** 32 - 1)
    this.capacity = capacity
    this.ttlMs = ttlMs
    this.pageBytes = pageBytes
    this.maxValueBytes = maxValueBytes
    this.#clock = clock
    // A seed per cache, so which keys collide cannot be worked out offline.
    this.#seed = randomSeed()

    // Always one empty bucket more than keys, so every probe ends.
    this.#tableSize = Math.max(capacity + 1, Math.ceil(capacity / 0.75))
    this.#table = new Int32Array(this.#tableSize)
    this.#slots = new Uint32Array((capacity + 1) * SLOT_WORDS)
    this.#base = Math.floor(clock.now())
    this.#sentinel = capacity
    this.#freeSlot = capacity
    this.#setPrev(capacity, capacity)
    this.#setNext(capacity, capacity)

    const sizes = sizeClasses(pageBytes)
    this.#maxChunk = sizes[sizes.length - 1]!
    this.#classSize = Int32Array.from(sizes)
    this.#classHead = new Int32Array(sizes.length).fill(-1)
    this.#classChunks = new Float64Array(sizes.length)
    this.#classUsed = new Float64Array(sizes.length)
    const first = Math.min(FIRST_PAGE_BYTES, pageBytes)
    this.#classFirst = Int32Array.from(sizes, (size) => Math.max(1, Math.floor(first / size)))
  }

  /** Number of stored entries, expired ones not yet noticed included. Never more than `capacity`. */
  get size(): number {
    return this.#size
  }

  // ---- The byte-key API: the hot path. ----

  /**
   * Looks up the key `key[start..end)`: the slot of its live entry, marked
   * most recently used, or -1; counts a hit or a miss (and removes an
   * expired entry, as `get`). The slot is for `valueLength` and `copyValue`,
   * and names this entry only until the cache is next changed (any `get*`,
   * `set*`, `delete*` or `clear`).
   */
  getBytes(key: Uint8Array, start = 0, end: number = key.length): number {
    const bucket = this.#find(key, start, end, this.#hash(key, start, end))
    if (bucket < 0) {
      this.#misses++
      return -1
    }
    const slot = this.#table[bucket]! & SLOT_BITS
    if (this.#expired(slot, this.#clock.now())) {
      this.#expirations++
      this.#misses++
      this.#changing()
      this.#removeAt(bucket, slot)
      return -1
    }
    this.#hits++
    this.#moveToFront(slot)
    // #keyIs just read where its value lies.
    this.#hitSlot = slot
    return slot
  }

  /**
   * Readies the lookups of up to PREFETCH_MAX keys about to be asked of
   * `getBytes` together: key `i` is `keys[spans[2i], spans[2i+1])`, for
   * i < count (more are ignored). Changes nothing and counts nothing.
   *
   * Why: past the CPU's caches (100k entries and up), a lookup waits on
   * memory several times in a row (its bucket, then its slot's record, then
   * its entry's bytes and its LRU neighbours' records), and every wait is a
   * full memory latency: measured here, 150-200 ns a load that depends on
   * the one before, 10-40 ns each for loads that do not. This reads the
   * buckets of all the keys, then all their records, then all their entries
   * and neighbours: each step's loads are independent of one another, so
   * the CPU waits on them together. A pipeline of 16 GETs over 100k keys
   * (uniform) cost the sidecar 1.25 against 1.50 µs of CPU per hit (medians).
   */
  prefetchBytes(keys: Uint8Array, spans: Int32Array, count: number): void {
    const n = Math.min(count, PREFETCH_MAX)
    const hashes = this.#prefetchHashes
    for (let i = 0; i < n; i++) hashes[i] = this.#hash(keys, spans[2 * i]!, spans[2 * i + 1]!)
    this.#readBuckets(n)
    this.#prefetchRecords(n)
  }

  /**
   * The home bucket of each of the first `n` hashes in #prefetchHashes into
   * #prefetch. A loop of its own, after every key is hashed: with each load
   * made between two keys' hashing, fewer of them were in flight at once
   * (hashing a key is more instructions than the CPU runs ahead of a load
   * that misses). Measured through the sidecar, 50 clients at pipeline 16
   * over 100k keys, alternating a build of each: 0.74-0.80 against
   * 0.77-0.91 µs of CPU per Zipf hit (10 rounds), 0.78-0.87 against
   * 0.83-0.89 per uniform hit (5 rounds).
   */
  #readBuckets(n: number): void {
    const table = this.#table
    const hashes = this.#prefetchHashes
    const buckets = this.#prefetch
    for (let i = 0; i < n; i++) buckets[i] = table[this.#home(hashes[i]!)]!
  }

  /**
   * `deleteBytes` of each key `keys[at[i]]` (a write's arguments at its key
   * positions: a forwarded MSET's or DEL's evictions), each key hashed once.
   * Up to PREFETCH_MAX at a time have their home buckets read together,
   * then (when there are two or more to overlap) the entries of those whose
   * bucket holds a key of their tag, so the lookups do not wait on memory
   * one key after another; a key whose home bucket is empty, or holds
   * another tag, is absent or further along its probe, and costs no read
   * of an entry ahead.
   */
  deleteEach(keys: readonly Uint8Array[], at: readonly number[]): void {
    this.#changing()
    const hashes = this.#prefetchHashes
    for (let from = 0; from < at.length; from += PREFETCH_MAX) {
      const n = Math.min(at.length - from, PREFETCH_MAX)
      for (let i = 0; i < n; i++) {
        const key = keys[at[from + i]!]!
        hashes[i] = this.#hash(key, 0, key.length)
      }
      this.#ready(n)
      // One key alone has nothing to wait on together with.
      if (n > 1) this.#prefetchRecords(n)
      for (let i = 0; i < n; i++) {
        const key = keys[at[from + i]!]!
        this.#deleteHashed(key, 0, key.length, hashes[i]!)
      }
    }
  }

  /**
   * As `deleteEach`, for the `count` keys `bytes[spans[2i], spans[2i+1])`
   * lying in one buffer: the keys of an invalidation, where they arrived.
   * Returns how many live entries it removed (a key named twice counts
   * once), as `deleteBytes` says of one.
   */
  deleteSpans(bytes: Uint8Array, spans: Int32Array, count: number): number {
    this.#changing()
    const hashes = this.#prefetchHashes
    let removed = 0
    for (let from = 0; from < count; from += PREFETCH_MAX) {
      const n = Math.min(count - from, PREFETCH_MAX)
      for (let i = 0; i < n; i++) {
        const k = 2 * (from + i)
        hashes[i] = this.#hash(bytes, spans[k]!, spans[k + 1]!)
      }
      this.#ready(n)
      // One key alone has nothing to wait on together with.
      if (n > 1) this.#prefetchRecords(n)
      for (let i = 0; i < n; i++) {
        const k = 2 * (from + i)
        if (this.#deleteHashed(bytes, spans[k]!, spans[k + 1]!, hashes[i]!)) removed++
      }
    }
    return removed
  }

  /**
   * The first `n` keys of a batch to delete, hashed into #prefetchHashes:
   * their home buckets read (all in flight together, see #readBuckets), each
   * kept for #prefetchRecords only when it holds a key of the same tag.
   */
  #ready(n: number): void {
    this.#readBuckets(n)
    const hashes = this.#prefetchHashes
    const buckets = this.#prefetch
    for (let i = 0; i < n; i++) {
      const tag = OCCUPIED | ((hashes[i]! & 0x7f) << 24)
      if ((buckets[i]! & HIGH_BYTE) !== tag) buckets[i] = 0
    }
  }

  /**
   * The sum of what the last read ahead read (a prefetch, a batch of
   * deletes, or a key's LRU neighbours, read as its key was compared): for
   * tests, where NaN would mean a read past the end of an array (a typed
   * array answers those with undefined, silently).
   */
  get prefetchedSum(): number {
    return this.#prefetched
  }

  /** The rest of a prefetch, from the words of the first `n` keys' home buckets in #prefetch. */
  #prefetchRecords(n: number): void {
    const records = this.#prefetch
    const slots = this.#slots
    // What was read is summed into a field, so the reads are not optimised away.
    let sum = 0
    for (let i = 0; i < n; i++) {
      const word = records[i]!
      // The bucket's slot: the key's own, or another key's (the key is then
      // further along the probe, or absent); either way a valid slot.
      const at = word === 0 ? -1 : (word & SLOT_BITS) * SLOT_WORDS
      records[i] = at
      // The record's first and last words: a 20-byte record may cross a
      // line, and its expiry, read on every hit, is its last.
      if (at >= 0) sum += slots[at + W_LOC]! + slots[at + SLOT_WORDS - 1]!
    }
    for (let i = 0; i < n; i++) {
      const at = records[i]!
      if (at < 0) continue
      const loc = slots[at + W_LOC]!
      const page = loc >>> 16
      const chunk = this.#meta[page * META + M_CHUNK]!
      const bytes = this.#pages[page]!
      const start = (loc & 0xffff) * chunk
      // The entry's first line and, in a chunk over 64 B, its next ones up
      // to 256 B (a 100 B value spans two lines): the key compare and the
      // copy of a short value read them all, and a longer copy is streamed
      // by the CPU's own prefetcher. A dedicated allocation (chunk 0, an
      // entry over 64 KiB) gets its first line only.
      sum += bytes[start]!
      for (let line = 64; line < chunk && line < 256; line += 64) sum += bytes[start + line]!
      // The words unlinking it writes: its LRU neighbours' links to it.
      sum +=
        slots[slots[at + W_PREV]! * SLOT_WORDS + W_NEXT]! +
        slots[slots[at + W_NEXT]! * SLOT_WORDS + W_PREV]!
    }
    this.#prefetched = sum
  }

  /** As `getBytes` but changes nothing and counts nothing (like `peek`). */
  peekBytes(key: Uint8Array, start = 0, end: number = key.length): number {
    const bucket = this.#find(key, start, end, this.#hash(key, start, end))
    if (bucket < 0) return -1
    const slot = this.#table[bucket]! & SLOT_BITS
    if (this.#expired(slot, this.#clock.now())) {
      // #keyIs just read this entry's location over the last hit's: that
      // hit's slot must not find it in valueLength or copyValue.
      this.#changing()
      return -1
    }
    this.#hitSlot = slot
    return slot
  }

  /** Whether the key `key[start..end)` has a live entry. Changes nothing. */
  hasBytes(key: Uint8Array, start = 0, end: number = key.length): boolean {
    return this.peekBytes(key, start, end) >= 0
  }

  /**
   * Whether the entry of a slot returned by `getBytes`/`peekBytes` records
   * that the key does not exist (see `setNil`) rather than a value.
   */
  isNil(slot: number): boolean {
    return (this.#slots[slot * SLOT_WORDS + W_HOME]! & NIL_HOME) !== 0
  }

  /** Length of the value of a slot returned by `getBytes`/`peekBytes` (valid until the next change). */
  valueLength(slot: number): number {
    if (slot === this.#hitSlot) return this.#hitValueLength
    this.#locate(slot)
    return this.#valueLength
  }

  /**
   * Copies the value of a slot returned by `getBytes`/`peekBytes` (valid
   * until the next change) into `target` at `offset`, and returns the offset
   * just after it. A target without room throws a RangeError and is left
   * unchanged.
   */
  copyValue(slot: number, target: Uint8Array, offset = 0): number {
    let buf: Uint8Array
    let from: number
    let length: number
    if (slot === this.#hitSlot) {
      from = this.#hitValueAt
      length = this.#hitValueLength
      if (length > LOOP_COPY) {
        putBytes(target, new Uint8Array(this.#pageBuffers[this.#hitPage]!, from, length), offset)
        return offset + length
      }
      buf = this.#hitBuf
    } else {
      this.#locate(slot)
      buf = this.#buf
      from = this.#valueAt
      length = this.#valueLength
    }
    if (length <= LOOP_COPY && offset >= 0 && offset + length <= target.length) {
      for (let i = 0; i < length; i++) target[offset + i] = buf[from + i]!
    } else {
      putBytes(target, buf.subarray(from, from + length), offset)
    }
    return offset + length
  }

  /**
   * The value of a slot returned by `getBytes`/`peekBytes` as a view of the
   * cache's own bytes, no copy: valid only until the cache is next changed,
   * after which it may hold another entry's bytes. For a caller that copies
   * it at once, where `copyValue` would need the target first.
   */
  valueView(slot: number): Uint8Array {
    if (slot === this.#hitSlot) {
      return new Uint8Array(
        this.#pageBuffers[this.#hitPage]!,
        this.#hitValueAt,
        this.#hitValueLength,
      )
    }
    this.#locate(slot)
    return this.#buf.subarray(this.#valueAt, this.#valueAt + this.#valueLength)
  }

  /**
   * As `get`, without the copy: the slot of the live entry of `key`, marked
   * most recently used, or -1; counts a hit or a miss. See `getBytes`.
   */
  getSlot(key: string): number {
    return this.getBytes(this.#encode(key), 0, key.length)
  }

  /**
   * Stores `value` (copied) under the key `key[start..end)`; see `set`.
   * Returns whether it was stored.
   */
  setBytes(
    key: Uint8Array,
    start: number,
    end: number,
    value: Uint8Array,
    ttlMs: number = this.ttlMs,
  ): boolean {
    this.#changing()
    const keyLength = end - start
    const valueLength = value.length
    if (!(ttlMs > 0) || keyLength > MAX_KEY_BYTES || valueLength > this.maxValueBytes) {
      this.deleteBytes(key, start, end)
      return false
    }
    const need = entryBytes(keyLength, valueLength)
    const cls = this.#classFor(need)
    const now = this.#clock.now()
    if (now - this.#base >= REBASE_AFTER) this.#rebase(now)
    // The expiry in whole ms after the base, rounded down (see SLOT_WORDS).
    // A ttl under a millisecond (the read-through passes what a PTTL left)
    // can round to an entry already over: stored, it would only take a slot.
    const after = Math.floor(now + Math.min(ttlMs, this.ttlMs) - this.#base)
    if (after <= 0 || after <= now - this.#base) {
      this.deleteBytes(key, start, end)
      return false
    }
    const hash = this.#hash(key, start, end)
    const bucket = this.#find(key, start, end, hash)
    if (bucket >= 0) {
      const slot = this.#table[bucket]! & SLOT_BITS
      // An expired entry is gone as far as callers know; replacing it still
      // counts its expiry, so the counters match a remove-then-insert.
      if (now >= this.#expiry(slot)) this.#expirations++
      const old = this.#slots[slot * SLOT_WORDS + W_LOC]!
      this.#locate(slot)
      const oldBytes = this.#entryBytes
      if (!this.#fitsInPlace(old, cls, need)) {
        const fresh = this.#allocate(cls, need)
        if (fresh < 0) {
          // Out of pages: the old value must not be served instead.
          this.#removeAt(bucket, slot)
          return false
        }
        // The new location first: releasing may move other entries of the old page.
        this.#slots[slot * SLOT_WORDS + W_LOC] = fresh
        this.#release(old)
      }
      this.#usedBytes += need - oldBytes
      this.#write(slot, key, start, end, value)
      this.#setExpiry(slot, after)
      this.#moveToFront(slot)
      return true
    }
    let slot: number
    if (this.#freeSlot !== this.#sentinel) {
      slot = this.#freeSlot
      this.#freeSlot = this.#next(slot)
    } else if (this.#fill < this.capacity) {
      slot = this.#fill++
    } else {
      // Full: the least recently used entry makes room (plain LRU, as LruCache).
      slot = this.#prev(this.#sentinel)
      if (now >= this.#expiry(slot)) this.#expirations++
      else this.#evictions++
      this.#removeAt(this.#bucketOfSlot(slot), slot)
      this.#freeSlot = this.#next(slot)
    }
    // Allocated only once the slot is settled: releasing the evicted entry's
    // chunk may move entries, and a chunk no slot owns yet must not be among them.
    const fresh = this.#allocate(cls, need)
    if (fresh < 0) {
      this.#setNext(slot, this.#freeSlot)
      this.#freeSlot = slot
      return false
    }
    const home = this.#home(hash)
    this.#slots[slot * SLOT_WORDS + W_LOC] = fresh
    this.#slots[slot * SLOT_WORDS + W_HOME] = home
    this.#usedBytes += need
    this.#write(slot, key, start, end, value)
    this.#setExpiry(slot, after)
    this.#linkFront(slot)
    this.#insert(hash, home, slot)
    this.#size++
    return true
  }

  /** Removes the key `key[start..end)`; see `delete`. */
  deleteBytes(key: Uint8Array, start = 0, end: number = key.length): boolean {
    this.#changing()
    return this.#deleteHashed(key, start, end, this.#hash(key, start, end))
  }

  #deleteHashed(key: Uint8Array, start: number, end: number, hash: number): boolean {
    const bucket = this.#find(key, start, end, hash)
    if (bucket < 0) return false
    const slot = this.#table[bucket]! & SLOT_BITS
    const live = this.#clock.now() < this.#expiry(slot)
    if (!live) this.#expirations++
    this.#removeAt(bucket, slot)
    return live
  }

  // ---- The string-key API, as LruCache<Uint8Array>. ----

  /**
   * A copy of the live value (the caller may keep it), marked most recently
   * used; counts a hit or a miss. NIL (compare by identity) for an entry
   * stored by `setNil`.
   */
  get(key: string): Uint8Array | null {
    const slot = this.getSlot(key)
    if (slot < 0) return null
    return this.isNil(slot) ? NIL : this.#copyOut(slot)
  }

  /** A copy of the live value (NIL for a nil entry), without marking it used or counting anything. */
  peek(key: string): Uint8Array | null {
    const slot = this.peekBytes(this.#encode(key), 0, key.length)
    if (slot < 0) return null
    return this.isNil(slot) ? NIL : this.#copyOut(slot)
  }

  /**
   * Records that `key` does not exist, as an entry with the same LRU and
   * expiry rules as a value (`get` answers NIL for it). For a cache told of
   * every write to a key it read, even a missing one (Redis's tracking does
   * that), so a later write evicts it.
   */
  setNil(key: string, ttlMs: number = this.ttlMs): boolean {
    this.#storingNil = true
    try {
      return this.set(key, NIL, ttlMs)
    } finally {
      this.#storingNil = false
    }
  }

  /** As `setNil`, for the key `key[start..end)`. */
  setNilBytes(
    key: Uint8Array,
    start = 0,
    end: number = key.length,
    ttlMs: number = this.ttlMs,
  ): boolean {
    this.#storingNil = true
    try {
      return this.setBytes(key, start, end, NIL, ttlMs)
    } finally {
      this.#storingNil = false
    }
  }

  /** Whether `key` has a live entry. Changes nothing, like `peek`. */
  has(key: string): boolean {
    return this.peekBytes(this.#encode(key), 0, key.length) >= 0
  }

  /**
   * Stores a copy of `value` with a fresh expiry and marks it most recently
   * used. Replacing a key never evicts. A new key in a full cache takes the
   * slot of the least recently used entry: that counts as an expiration if
   * the entry had already expired, otherwise as an eviction.
   *
   * `ttlMs` shortens this entry's life below the cache's `ttlMs` (never
   * lengthens it). Nothing is stored, and the key is removed, when `ttlMs` is
   * 0 or less, when the value is longer than `maxValueBytes` or the key than
   * MAX_KEY_BYTES, or in the unlikely event that MAX_PAGES pages are held;
   * the return value says whether it was stored.
   */
  set(key: string, value: Uint8Array, ttlMs: number = this.ttlMs): boolean {
    return this.setBytes(this.#encode(key), 0, key.length, value, ttlMs)
  }

  /**
   * Removes `key`. Returns true only if a live entry was removed; an expired
   * entry is removed too (counting an expiration) but returns false.
   */
  delete(key: string): boolean {
    return this.deleteBytes(this.#encode(key), 0, key.length)
  }

  /** Removes every entry and gives back every page, without counting anything. Counters are kept. */
  clear(): void {
    this.#changing()
    this.#table.fill(0)
    this.#fill = 0
    this.#size = 0
    this.#freeSlot = this.#sentinel
    this.#setPrev(this.#sentinel, this.#sentinel)
    this.#setNext(this.#sentinel, this.#sentinel)
    this.#pages = []
    this.#pageBuffers = []
    this.#meta = new Int32Array(16 * META)
    this.#pageTop = 0
    this.#freePages = []
    this.#spare = undefined
    this.#firstSpare = []
    this.#allocatedBytes = 0
    this.#dedicatedBytes = 0
    this.#usedBytes = 0
    this.#heldPages = 0
    this.#classHead.fill(-1)
    this.#classChunks.fill(0)
    this.#classUsed.fill(0)
    this.#buf = this.#scratch
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

  /** Bytes held and used, for metrics. */
  memory(): SlabMemory {
    return {
      allocatedBytes: this.#allocatedBytes,
      usedBytes: this.#usedBytes,
      dedicatedBytes: this.#dedicatedBytes,
      pages: this.#heldPages,
      indexBytes: this.#table.byteLength + this.#slots.byteLength + this.#meta.byteLength,
    }
  }

  // ---- Keys and the hash table. ----

  /** The latin1 bytes of `key`, in the scratch buffer unless the key is long. */
  #encode(key: string): Uint8Array {
    const length = key.length
    let bytes = this.#scratch
    if (length > bytes.length) {
      bytes = new Uint8Array(Math.max(length, bytes.length * 2))
      if (bytes.length <= SCRATCH_KEEP) this.#scratch = bytes
    }
    // A Uint8Array store keeps the low 8 bits, as latin1 encoding does.
    for (let i = 0; i < length; i++) bytes[i] = key.charCodeAt(i)
    return bytes
  }

  /** MurmurHash3 (x86, 32-bit) of `key[start..end)`, seeded per cache. */
  #hash(key: Uint8Array, start: number, end: number): number {
    let h = this.#seed
    let i = start
    const whole = end - ((end - start) & 3)
    while (i < whole) {
      let k = key[i]! | (key[i + 1]! << 8) | (key[i + 2]! << 16) | (key[i + 3]! << 24)
      i += 4
      k = Math.imul(k, 0xcc9e2d51)
      k = (k << 15) | (k >>> 17)
      h ^= Math.imul(k, 0x1b873593)
      h = (h << 13) | (h >>> 19)
      h = (Math.imul(h, 5) + 0xe6546b64) | 0
    }
    if (i < end) {
      let k = key[i]!
      if (i + 1 < end) k |= key[i + 1]! << 8
      if (i + 2 < end) k |= key[i + 2]! << 16
      k = Math.imul(k, 0xcc9e2d51)
      k = (k << 15) | (k >>> 17)
      h ^= Math.imul(k, 0x1b873593)
    }
    h ^= end - start
    h ^= h >>> 16
    h = Math.imul(h, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    return h ^ (h >>> 16)
  }

  /**
   * The hash's home bucket: its high bits scaled to the table size (so the
   * size need not be a power of two), leaving the low bits for the tag.
   * (h * size) may round in the last bits above 2^53, which moves a few
   * hashes to a neighbouring bucket, deterministically, and never past the
   * last bucket.
   */
  #home(hash: number): number {
    return Math.floor((hash >>> 0) * this.#tableSize * 2.3283064365386963e-10)
  }

  /** The bucket holding the key `key[start..end)`, or -1. */
  #find(key: Uint8Array, start: number, end: number, hash: number): number {
    const table = this.#table
    const size = this.#tableSize
    const tag = OCCUPIED | ((hash & 0x7f) << 24)
    let i = this.#home(hash)
    for (;;) {
      const word = table[i]!
      if (word === 0) return -1
      if ((word & HIGH_BYTE) === tag && this.#keyIs(word & SLOT_BITS, key, start, end)) return i
      if (++i === size) i = 0
    }
  }

  /** Before any change to entries: the location #keyIs read may no longer hold. */
  #changing(): void {
    this.#hitSlot = -1
  }

  #keyIs(slot: number, key: Uint8Array, start: number, end: number): boolean {
    const slots = this.#slots
    const record = slot * SLOT_WORDS
    const loc = slots[record + W_LOC]!
    // The records of its LRU neighbours, which a hit's move to the front
    // (and a delete's unlinking) writes: read now, so that a wait for them
    // overlaps the wait for the entry's bytes below instead of following it.
    // Through the sidecar at pipeline 1 over 100k keys (a fresh sidecar per
    // run, alternated with the build before): 5.37-5.90 against 5.74-6.14
    // µs of CPU per uniform hit, 5.08-5.40 against 5.20-5.64 per Zipf hit
    // (8 rounds).
    this.#prefetched =
      slots[slots[record + W_PREV]! * SLOT_WORDS + W_NEXT]! +
      slots[slots[record + W_NEXT]! * SLOT_WORDS + W_PREV]!
    const page = loc >>> 16
    const buf = this.#pages[page]!
    let at = (loc & 0xffff) * this.#meta[page * META + M_CHUNK]!
    let byte = buf[at++]!
    let length = byte & 0x7f
    for (let scale = 128; byte >= 0x80; scale *= 128) {
      byte = buf[at++]!
      length += (byte & 0x7f) * scale
    }
    if (length !== end - start) return false
    byte = buf[at++]!
    let valueLength = byte & 0x7f
    for (let scale = 128; byte >= 0x80; scale *= 128) {
      byte = buf[at++]!
      valueLength += (byte & 0x7f) * scale
    }
    for (let i = start; i < end; i++, at++) if (buf[at] !== key[i]) return false
    // For getBytes (see #hitSlot): the value follows the key.
    this.#hitBuf = buf
    this.#hitPage = page
    this.#hitValueAt = at
    this.#hitValueLength = valueLength
    return true
  }

  #insert(hash: number, home: number, slot: number): void {
    const table = this.#table
    const size = this.#tableSize
    let i = home
    while (table[i] !== 0) if (++i === size) i = 0
    table[i] = OCCUPIED | ((hash & 0x7f) << 24) | slot
  }

  /** The bucket naming `slot` (which is in the table). */
  #bucketOfSlot(slot: number): number {
    const table = this.#table
    const size = this.#tableSize
    let i = this.#slotHome(slot)
    for (;;) {
      const word = table[i]!
      if (word !== 0 && (word & SLOT_BITS) === slot) return i
      if (++i === size) i = 0
    }
  }

  #slotHome(slot: number): number {
    return this.#slots[slot * SLOT_WORDS + W_HOME]! & HOME_BITS
  }

  /**
   * Empties `bucket` by backward shift: each later entry of the run moves
   * back into the hole unless its home lies after the hole (cyclically), so
   * every key stays reachable from its home without tombstones.
   */
  #unindex(bucket: number): void {
    const table = this.#table
    const size = this.#tableSize
    let hole = bucket
    let i = bucket
    for (;;) {
      if (++i === size) i = 0
      const word = table[i]!
      if (word === 0) break
      const home = this.#slotHome(word & SLOT_BITS)
      // Stays if home is in (hole, i], cyclically.
      const stays = hole < i ? home > hole && home <= i : home > hole || home <= i
      if (!stays) {
        table[hole] = word
        hole = i
      }
    }
    table[hole] = 0
  }

  #removeAt(bucket: number, slot: number): void {
    this.#unindex(bucket)
    this.#unlink(slot)
    this.#locate(slot)
    this.#usedBytes -= this.#entryBytes
    this.#release(this.#slots[slot * SLOT_WORDS + W_LOC]!)
    this.#setNext(slot, this.#freeSlot)
    this.#freeSlot = slot
    this.#size--
  }

  // ---- Entries in the slab. ----

  /** Sets #buf, #valueAt, #valueLength and #entryBytes for `slot`. */
  #locate(slot: number): void {
    const loc = this.#slots[slot * SLOT_WORDS + W_LOC]!
    const page = loc >>> 16
    const buf = this.#pages[page]!
    const begin = (loc & 0xffff) * this.#meta[page * META + M_CHUNK]!
    let at = begin
    let byte = buf[at++]!
    let keyLength = byte & 0x7f
    for (let scale = 128; byte >= 0x80; scale *= 128) {
      byte = buf[at++]!
      keyLength += (byte & 0x7f) * scale
    }
    byte = buf[at++]!
    let valueLength = byte & 0x7f
    for (let scale = 128; byte >= 0x80; scale *= 128) {
      byte = buf[at++]!
      valueLength += (byte & 0x7f) * scale
    }
    this.#buf = buf
    this.#valueAt = at + keyLength
    this.#valueLength = valueLength
    this.#entryBytes = at + keyLength + valueLength - begin
  }

  #write(slot: number, key: Uint8Array, start: number, end: number, value: Uint8Array): void {
    const loc = this.#slots[slot * SLOT_WORDS + W_LOC]!
    const page = loc >>> 16
    const buf = this.#pages[page]!
    let at = (loc & 0xffff) * this.#meta[page * META + M_CHUNK]!
    at = writeVarint(buf, at, end - start)
    at = writeVarint(buf, at, value.length)
    if (end - start <= LOOP_COPY) {
      for (let i = start; i < end; i++) buf[at++] = key[i]!
    } else {
      putBytes(buf, key.subarray(start, end), at)
      at += end - start
    }
    if (value.length <= LOOP_COPY) {
      for (let i = 0; i < value.length; i++) buf[at + i] = value[i]!
    } else {
      putBytes(buf, value, at)
    }
  }

  #copyOut(slot: number): Uint8Array {
    this.#locate(slot)
    return this.#buf.slice(this.#valueAt, this.#valueAt + this.#valueLength)
  }

  // ---- The allocator. ----

  /** The smallest class whose chunks hold `bytes`, or DEDICATED. */
  #classFor(bytes: number): number {
    if (bytes > this.#maxChunk) return DEDICATED
    const sizes = this.#classSize
    let lo = 0
    let hi = sizes.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (sizes[mid]! < bytes) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Whether an entry of `bytes` (of class `cls`) can be rewritten where the one at `loc` is. */
  #fitsInPlace(loc: number, cls: number, bytes: number): boolean {
    const page = loc >>> 16
    const held = this.#meta[page * META + M_CLASS]!
    if (cls !== DEDICATED) return held === cls
    return held === DEDICATED && this.#pages[page]!.length === bytes
  }

  /** A location for `bytes` bytes of class `cls`, or -1 if MAX_PAGES pages are held. */
  #allocate(cls: number, bytes: number): number {
    if (cls === DEDICATED) {
      const page = this.#newPageIndex()
      if (page < 0) return -1
      const meta = this.#meta
      const m = page * META
      meta[m + M_CHUNK] = 0
      meta[m + M_CLASS] = DEDICATED
      meta[m + M_CHUNKS] = 1
      meta[m + M_USED] = 1
      this.#setPage(page, new Uint8Array(bytes))
      this.#allocatedBytes += bytes
      this.#dedicatedBytes += bytes
      this.#heldPages++
      return page * 65_536
    }
    let page = this.#classHead[cls]!
    if (page < 0) {
      page = this.#newPage(cls)
      if (page < 0) return -1
    }
    // Read after #newPage, which may have grown #meta.
    const meta = this.#meta
    const m = page * META
    let chunk: number
    if (meta[m + M_BUMP]! < meta[m + M_CHUNKS]!) {
      chunk = meta[m + M_BUMP]!++
    } else {
      chunk = meta[m + M_FREE]!
      // A free chunk's first 4 bytes hold the next free chunk (-1: none).
      const buf = this.#pages[page]!
      const at = chunk * meta[m + M_CHUNK]!
      meta[m + M_FREE] = readInt32(buf, at)
    }
    this.#classUsed[cls]!++
    if (++meta[m + M_USED]! === meta[m + M_CHUNKS]!) this.#unlinkPage(page, cls)
    return page * 65_536 + chunk
  }

  /** A new page for class `cls`, first on its list of pages with free chunks; -1 if none can be had. */
  #newPage(cls: number): number {
    const page = this.#newPageIndex()
    if (page < 0) return -1
    const size = this.#classSize[cls]!
    const full = Math.floor(this.pageBytes / size)
    // As many chunks as the class already holds: its space doubles, and
    // shrinks back as pages empty, so a class with few entries has small pages.
    const chunks = Math.min(full, Math.max(this.#classFirst[cls]!, this.#classChunks[cls]!))
    let buf: Uint8Array
    const first = this.#firstSpare[cls]
    if (first !== undefined && first.length === chunks * size) {
      // Already counted in #allocatedBytes.
      buf = first
      this.#firstSpare[cls] = undefined
    } else if (chunks < full) {
      buf = new Uint8Array(chunks * size)
      this.#allocatedBytes += buf.length
    } else if (this.#spare !== undefined) {
      // Already counted in #allocatedBytes. Stale bytes do no harm: a chunk
      // is written before it is read, and a free one through its next field.
      buf = this.#spare
      this.#spare = undefined
    } else {
      buf = new Uint8Array(this.pageBytes)
      this.#allocatedBytes += buf.length
    }
    this.#setPage(page, buf)
    this.#heldPages++
    const meta = this.#meta
    const m = page * META
    meta[m + M_CHUNK] = size
    meta[m + M_CLASS] = cls
    meta[m + M_CHUNKS] = chunks
    meta[m + M_USED] = 0
    meta[m + M_BUMP] = 0
    meta[m + M_FREE] = -1
    this.#classChunks[cls]! += chunks
    this.#linkPage(page, cls)
    return page
  }

  #newPageIndex(): number {
    const reused = this.#freePages.pop()
    if (reused !== undefined) return reused
    if (this.#pageTop === MAX_PAGES) return -1
    if ((this.#pageTop + 1) * META > this.#meta.length) {
      const grown = new Int32Array(this.#meta.length * 2)
      grown.set(this.#meta)
      this.#meta = grown
    }
    this.#pages.push(undefined)
    this.#pageBuffers.push(undefined)
    return this.#pageTop++
  }

  #setPage(page: number, buf: Uint8Array | undefined): void {
    this.#pages[page] = buf
    this.#pageBuffers[page] = buf?.buffer
  }

  /** Gives back the chunk (or dedicated allocation) at `loc`. */
  #release(loc: number): void {
    const page = loc >>> 16
    const meta = this.#meta
    const m = page * META
    const buf = this.#pages[page]!
    const cls = meta[m + M_CLASS]!
    if (cls === DEDICATED) {
      this.#allocatedBytes -= buf.length
      this.#dedicatedBytes -= buf.length
      this.#dropPage(page)
      return
    }
    const chunk = loc & 0xffff
    const at = chunk * meta[m + M_CHUNK]!
    const next = meta[m + M_FREE]!
    buf[at] = next
    buf[at + 1] = next >> 8
    buf[at + 2] = next >> 16
    buf[at + 3] = next >> 24
    meta[m + M_FREE] = chunk
    this.#classUsed[cls]!--
    const used = --meta[m + M_USED]!
    const chunks = meta[m + M_CHUNKS]!
    if (used + 1 === chunks) this.#linkPage(page, cls)
    if (used === 0) {
      this.#unlinkPage(page, cls)
      this.#dropClassPage(page, cls)
    } else if (
      used * 2 <= chunks &&
      this.#classChunks[cls]! - this.#classUsed[cls]! - (chunks - used) >= used
    ) {
      this.#evacuate(page, cls)
    }
  }

  /**
   * Moves the entries of a page at most half full into the class's other
   * pages, which have room for them all, and gives the page back. Without it
   * entries freed in random order (expiry, deletes, a shifting mix of sizes)
   * would leave many pages each holding a few entries. A page is evacuated
   * only once at least half its chunks were freed, so each move is paid for
   * by an earlier free: O(1) amortized, though one release may move up to
   * half a page of entries at once. An entry moves by copying its bytes and
   * updating its `loc`; its slot, and so its bucket, stay.
   */
  #evacuate(page: number, cls: number): void {
    this.#unlinkPage(page, cls)
    const meta = this.#meta
    const m = page * META
    const size = meta[m + M_CHUNK]!
    const bump = meta[m + M_BUMP]!
    const buf = this.#pages[page]!
    const free = new Uint8Array(bump)
    for (let chunk = meta[m + M_FREE]!; chunk >= 0; chunk = readInt32(buf, chunk * size)) {
      free[chunk] = 1
    }
    for (let chunk = 0; chunk < bump; chunk++) {
      if (free[chunk] === 1) continue
      const slot = this.#ownerOf(page * 65_536 + chunk)
      this.#locate(slot)
      const at = chunk * size
      const length = this.#entryBytes
      // Never a new page: the class's other pages have room (checked by the caller).
      const to = this.#allocate(cls, length)
      const toPage = to >>> 16
      const toAt = (to & 0xffff) * this.#meta[toPage * META + M_CHUNK]!
      this.#pages[toPage]!.set(buf.subarray(at, at + length), toAt)
      this.#slots[slot * SLOT_WORDS + W_LOC] = to
    }
    this.#dropClassPage(page, cls)
  }

  /** The slot whose entry is at `loc` (a live chunk), found through its key's bucket. */
  #ownerOf(loc: number): number {
    const page = loc >>> 16
    const buf = this.#pages[page]!
    let at = (loc & 0xffff) * this.#meta[page * META + M_CHUNK]!
    let byte = buf[at++]!
    let keyLength = byte & 0x7f
    for (let scale = 128; byte >= 0x80; scale *= 128) {
      byte = buf[at++]!
      keyLength += (byte & 0x7f) * scale
    }
    while (buf[at++]! >= 0x80) {}
    const hash = this.#hash(buf, at, at + keyLength)
    const table = this.#table
    const size = this.#tableSize
    const tag = OCCUPIED | ((hash & 0x7f) << 24)
    for (let i = this.#home(hash); ; ) {
      const word = table[i]!
      if (
        (word & HIGH_BYTE) === tag &&
        this.#slots[(word & SLOT_BITS) * SLOT_WORDS + W_LOC]! === loc
      )
        return word & SLOT_BITS
      if (++i === size) i = 0
    }
  }

  /** Gives back a page of class `cls` that is off the class's list; its entries are gone or moved. */
  #dropClassPage(page: number, cls: number): void {
    const m = page * META
    this.#classChunks[cls]! -= this.#meta[m + M_CHUNKS]!
    this.#classUsed[cls]! -= this.#meta[m + M_USED]!
    const buf = this.#pages[page]!
    if (buf.length === this.pageBytes && this.#spare === undefined) this.#spare = buf
    else if (
      this.#classChunks[cls] === 0 &&
      buf.length === this.#classFirst[cls]! * this.#classSize[cls]! &&
      this.#firstSpare[cls] === undefined
    )
      this.#firstSpare[cls] = buf
    else this.#allocatedBytes -= buf.length
    this.#dropPage(page)
  }

  #dropPage(page: number): void {
    this.#setPage(page, undefined)
    this.#freePages.push(page)
    this.#heldPages--
  }

  #linkPage(page: number, cls: number): void {
    const meta = this.#meta
    const head = this.#classHead[cls]!
    meta[page * META + M_PREV] = -1
    meta[page * META + M_NEXT] = head
    if (head >= 0) meta[head * META + M_PREV] = page
    this.#classHead[cls] = page
  }

  #unlinkPage(page: number, cls: number): void {
    const meta = this.#meta
    const prev = meta[page * META + M_PREV]!
    const next = meta[page * META + M_NEXT]!
    if (prev >= 0) meta[prev * META + M_NEXT] = next
    else this.#classHead[cls] = next
    if (next >= 0) meta[next * META + M_PREV] = prev
  }

  // ---- Slot records and the LRU list. ----

  #expiry(slot: number): number {
    const after = this.#slots[slot * SLOT_WORDS + W_EXPIRY]!
    // As #expired: 0 is expired whatever the clock says.
    return after === 0 ? Number.NEGATIVE_INFINITY : this.#base + after
  }

  /**
   * Whether the slot's entry has expired at `now`: the hit path's test, a
   * boolean, so no double leaves the function to be boxed (seen as 16 B
   * allocated per hit).
   */
  #expired(slot: number, now: number): boolean {
    const after = this.#slots[slot * SLOT_WORDS + W_EXPIRY]!
    // 0 is always expired: only a rebase writes it, for an entry whose
    // expiry it passed, so an injected clock set back cannot bring such an
    // entry back to life.
    return after === 0 || now - this.#base >= after
  }

  /**
   * The expiry, `after` whole ms after the base (at least 1; at most
   * EXPIRY_MAX is kept), and whether the entry is nil, both of a slot whose
   * home is set (see SLOT_WORDS).
   */
  #setExpiry(slot: number, after: number): void {
    const at = slot * SLOT_WORDS
    this.#slots[at + W_EXPIRY] = Math.min(after, EXPIRY_MAX)
    const home = this.#slots[at + W_HOME]! & HOME_BITS
    this.#slots[at + W_HOME] = this.#storingNil ? home | NIL_HOME : home
  }

  /**
   * Moves the base to `now` (rounded down), every entry's expiry with it: an
   * entry that had expired stays expired (0), one that had not keeps its
   * time. Once every REBASE_AFTER (12.4 days) at most, on the store that
   * finds it due. Every slot ever handed out is shifted, in slot order: a
   * free slot's expiry is written again before it is read, and a pass in
   * order over the records costs less than a walk of the LRU list, which
   * hits reorder (at a million entries shuffled by a million random hits,
   * 2.8-7.2 ms in slot order against 45-100 ms along the list).
   */
  #rebase(now: number): void {
    const base = Math.floor(now)
    const shift = base - this.#base
    const slots = this.#slots
    const end = this.#fill * SLOT_WORDS
    for (let at = W_EXPIRY; at < end; at += SLOT_WORDS) {
      const after = slots[at]!
      slots[at] = after > shift ? after - shift : 0
    }
    this.#base = base
  }

  #prev(slot: number): number {
    return this.#slots[slot * SLOT_WORDS + W_PREV]!
  }

  #next(slot: number): number {
    return this.#slots[slot * SLOT_WORDS + W_NEXT]!
  }

  #setPrev(slot: number, to: number): void {
    this.#slots[slot * SLOT_WORDS + W_PREV] = to
  }

  #setNext(slot: number, to: number): void {
    this.#slots[slot * SLOT_WORDS + W_NEXT] = to
  }

  #unlink(slot: number): void {
    const slots = this.#slots
    const at = slot * SLOT_WORDS
    const before = slots[at + W_PREV]!
    const after = slots[at + W_NEXT]!
    slots[before * SLOT_WORDS + W_NEXT] = after
    slots[after * SLOT_WORDS + W_PREV] = before
  }

  #linkFront(slot: number): void {
    const slots = this.#slots
    const sentinel = this.#sentinel * SLOT_WORDS
    const first = slots[sentinel + W_NEXT]!
    const at = slot * SLOT_WORDS
    slots[at + W_PREV] = this.#sentinel
    slots[at + W_NEXT] = first
    slots[first * SLOT_WORDS + W_PREV] = slot
    slots[sentinel + W_NEXT] = slot
  }

  #moveToFront(slot: number): void {
    if (this.#next(this.#sentinel) === slot) return
    this.#unlink(slot)
    this.#linkFront(slot)
  }
}

/**
 * The chunk sizes of the size classes for pages of `pageBytes`: MIN_CHUNK,
 * then 8 bytes more or about 10% more (rounded up to 8), whichever is more,
 * up to a sixteenth of a page. Chunk indexes are 16 bits: a full page holds
 * at most 65536 chunks of MIN_CHUNK, which pageBytes <= 1 MiB ensures.
 */
export function sizeClasses(pageBytes: number): number[] {
  const maxChunk = Math.floor(pageBytes / 16 / 8) * 8
  const sizes: number[] = []
  for (let size = MIN_CHUNK; size <= maxChunk; ) {
    sizes.push(size)
    size = Math.max(size + 8, Math.ceil((size * CHUNK_GROWTH) / 8) * 8)
  }
  if (sizes[sizes.length - 1] !== maxChunk) sizes.push(maxChunk)
  return sizes
}

/** Bytes an entry takes in the slab before rounding to its class: length headers, key, value. */
export function entryBytes(keyLength: number, valueLength: number): number {
  return varintBytes(keyLength) + varintBytes(valueLength) + keyLength + valueLength
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5
}

function writeVarint(buf: Uint8Array, at: number, n: number): number {
  let rest = n
  while (rest >= 0x80) {
    buf[at++] = (rest % 0x80) | 0x80
    rest = Math.floor(rest / 0x80)
  }
  buf[at++] = rest
  return at
}

function readInt32(buf: Uint8Array, at: number): number {
  return buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)
}

function randomSeed(): number {
  const crypto = (globalThis as { crypto?: { getRandomValues(a: Int32Array): Int32Array } }).crypto
  if (crypto !== undefined) return crypto.getRandomValues(new Int32Array(1))[0]!
  return (Math.random() * 2 ** 32) | 0
}

function assertInteger(
  name: string,
  value: unknown,
  min: number,
  max?: number,
): asserts value is number {
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < min ||
    (max !== undefined && value > max)
  ) {
    const range = max === undefined ? `from ${min} and up` : `from ${min} to ${max}`
    throw new TypeError(
      `Expected \`${name}\` to be an integer ${range}, got \`${describe(value)}\``,
    )
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value)
  return typeof value
}
