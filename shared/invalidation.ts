/**
 * Whether Redis tells the cache about writes right now.
 * - `on`: every write by anyone evicts the key at once; the expiry is only an upper bound.
 * - `off`: CACHE_INVALIDATION=off; values live until their expiry.
 * - `unsupported`: the backend refused client tracking; values live until their expiry.
 * - `connecting`: not established yet since start-up; nothing loaded is stored.
 * - `lost`: was on and the channel broke; what is cached is served until its
 *   expiry, nothing loaded is stored, and the cache is cleared when it is back.
 */
export type InvalidationMode = 'on' | 'off' | 'unsupported' | 'connecting' | 'lost'

/** What an invalidation channel may do to the read-through service. */
export type InvalidationTarget = {
  /** This key (its bytes) changed: forget it, and do not store a load of it already running. */
  invalidateBytes(key: Uint8Array): void
  /**
   * This key changed, told in order with the replies of the loads (tracking
   * in-band on the one connection every load is read on): forget the cached
   * value. A load in flight may still be stored: its reply comes after this
   * on the same stream, so Redis read the key after the write.
   */
  evictBytes(key: Uint8Array): void
  /**
   * As `evictBytes`, for the `count` keys `bytes[spans[2i], spans[2i+1])`
   * lying in one buffer (an invalidation read where it arrived): evicted
   * together, without a view of each. `bytes` may be a lent read and
   * `spans` the channel's reused scratch: neither is valid after the call,
   * so nothing of them is kept (a key needed later is copied).
   */
  evictSpans(bytes: Uint8Array, spans: Int32Array, count: number): void
  /** Anything may have changed: forget everything, including loads running. */
  clear(): void
  /** Stop storing loaded values (answers still flow); the cache is kept. */
  suspendStores(): void
  /** Store again, but only values whose load starts from now on. */
  resumeStores(): void
}

/** Tells the service about writes; the service starts it once, with itself as the target. */
export type InvalidationChannel = {
  start(target: InvalidationTarget): void
  mode(): InvalidationMode
  close(): Promise<void>
}
