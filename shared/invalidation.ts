import type { Logger } from './log.js'

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
  /** This key changed: forget it, and do not store a load of it already running. */
  invalidate(key: string): void
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

/** The commands the tracker needs on the wire (shared/redis/ioredis-tracking.ts). */
export type TrackingWire = {
  /**
   * Turns tracking on for the data connection with invalidations redirected to
   * the client `redirectId`. Resolves with undefined once it is on, or with the
   * server's refusal when retrying will not change it (an error reply such as
   * `ERR unknown command`); rejects on timeouts and dropped connections.
   */
  enable(redirectId: number): Promise<string | undefined>
  /**
   * Drops the subscriber so that it reconnects, with a new client id, to the
   * server the data connection reaches now; its return is reported as usual.
   */
  renew(): void
  /** Closes the invalidation connection for good. */
  close(): Promise<void>
}

export type TrackerOptions = {
  wire: TrackingWire
  log: Logger
}

/**
 * The invalidation state machine, apart from any client library. It is told
 * when the data connection (the one issuing GETs) and the subscriber (the one
 * receiving `__redis__:invalidate`) come and go, and keeps one invariant:
 *
 *   a loaded value is stored only if tracking, redirected to a subscriber that
 *   is still connected, was confirmed on the data connection before the value's
 *   GET was sent.
 *
 * Otherwise Redis may not know that we hold the key, and a later write would
 * never evict it. So stores are suspended from start-up and on every loss, and
 * resumed (dropping loads already running) only when CLIENT TRACKING answers OK
 * for the current pair of connections. Either connection coming back clears
 * the cache: invalidations may have been missed while it was away.
 *
 * Client ids belong to one server: after the data connection reconnects (maybe
 * to a failed-over server behind the same name) the subscriber is renewed too,
 * so the redirect never names a client of another server.
 */
export class Tracker implements InvalidationChannel {
  readonly #wire: TrackingWire
  readonly #log: Logger
  #target: InvalidationTarget | undefined
  #mode: InvalidationMode = 'connecting'
  #dataReady = false
  #dataConnections = 0
  #redirectId: number | null = null
  // Bumped by every event that makes an answer to an earlier enable meaningless.
  #attempt = 0
  #closed = false

  constructor(options: TrackerOptions) {
    this.#wire = options.wire
    this.#log = options.log
  }

  start(target: InvalidationTarget): void {
    this.#target = target
    if (this.#mode !== 'unsupported') target.suspendStores()
    this.#tryEnable()
  }

  mode(): InvalidationMode {
    return this.#mode
  }

  /** The data connection is (re)connected; a new connection is never tracked yet. */
  dataReady(): void {
    this.#dataReady = true
    this.#dataConnections++
    if (this.#idle()) return
    this.#lose()
    this.#target?.clear()
    if (this.#dataConnections > 1 && this.#redirectId !== null) {
      // Its return (subscriberReady) enables tracking.
      this.#redirectId = null
      this.#wire.renew()
      return
    }
    this.#tryEnable()
  }

  dataLost(): void {
    this.#dataReady = false
    if (this.#idle()) return
    this.#lose()
  }

  /** The subscriber is (re)connected as client `id` and subscribed. */
  subscriberReady(id: number): void {
    this.#redirectId = id
    if (this.#idle()) return
    this.#lose()
    this.#target?.clear()
    this.#tryEnable()
  }

  subscriberLost(): void {
    this.#redirectId = null
    if (this.#idle()) return
    this.#lose()
  }

  /** The backend refused part of the protocol: fall back to expiry only, for good. */
  refused(reason: string): void {
    if (this.#idle()) return
    this.#attempt++
    this.#mode = 'unsupported'
    this.#log.warn(
      'backing redis refuses client tracking: writes by others are seen only after CACHE_GLOBAL_EXPIRY',
      { error: reason },
    )
    this.#target?.resumeStores()
    void this.#wire.close().catch(() => {})
  }

  /** Keys Redis reports changed; null when everything did (FLUSHALL, FLUSHDB). */
  invalidated(keys: readonly string[] | null): void {
    const target = this.#target
    if (target === undefined || this.#closed) return
    if (keys === null) {
      target.clear()
      return
    }
    for (const key of keys) target.invalidate(key)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#attempt++
    await this.#wire.close()
  }

  /** Nothing to keep coherent: closed, or expiry-only for good. */
  #idle(): boolean {
    return this.#closed || this.#mode === 'unsupported'
  }

  #lose(): void {
    this.#attempt++
    if (this.#mode === 'on') {
      this.#mode = 'lost'
      this.#log.warn(
        'invalidation channel lost: cached values are served until their expiry, nothing new is cached until it is back',
      )
    }
    this.#target?.suspendStores()
  }

  #tryEnable(): void {
    if (this.#idle() || this.#target === undefined) return
    if (!this.#dataReady || this.#redirectId === null || this.#mode === 'on') return
    const attempt = ++this.#attempt
    const wasLost = this.#mode === 'lost'
    this.#wire.enable(this.#redirectId).then(
      (refusal) => {
        if (attempt !== this.#attempt || this.#idle()) return
        if (refusal !== undefined) {
          this.refused(refusal)
          return
        }
        this.#mode = 'on'
        this.#target?.clear()
        this.#target?.resumeStores()
        this.#log.info(wasLost ? 'invalidation channel back, cache cleared' : 'invalidation on')
      },
      () => {
        // No answer, or a redirect to a client that is gone, while both
        // connections stayed up (losing either bumps #attempt, and its return
        // retries): start again from a fresh subscriber, at the reconnection
        // backoff's pace.
        if (attempt !== this.#attempt || this.#idle()) return
        this.#redirectId = null
        this.#wire.renew()
      },
    )
  }
}
