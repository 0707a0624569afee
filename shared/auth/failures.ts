/**
 * Slows password guessing: after `maxFailures` failed authentications from
 * one client address within `windowMs`, that address is refused for
 * `blockMs`. Once blocked, an address is on probation: each further failure
 * before it has been quiet for `windowMs` blocks it again for twice as long
 * (1 s, 2 s, 4 s, ... up to `maxBlockMs`, with the defaults). Quiet for
 * `windowMs` after its last failure or block, an address starts afresh, and
 * a success forgets it at once.
 *
 * Memory is bounded: at most `maxAddresses` are tracked, and the one that
 * failed longest ago is forgotten first, so a flood of addresses costs a
 * fixed amount (and buys a forgotten attacker only a fresh count).
 */

export type Clock = { now(): number }

export type AuthFailureLimiterOptions = {
  /** Failures within the window that block an address. @default 10 */
  maxFailures?: number
  /** How long failures are counted together, and the quiet that forgives. @default 60_000 */
  windowMs?: number
  /** The first block; each further one doubles. @default 1_000 */
  blockMs?: number
  /** The longest block. @default 300_000 */
  maxBlockMs?: number
  /** Addresses tracked at most. @default 10_000 */
  maxAddresses?: number
  /** Milliseconds, monotonic. @default performance */
  clock?: Clock
}

type Entry = {
  failures: number
  windowStart: number
  lastFailure: number
  blockedUntil: number
  /** Blocks so far: 0 until the first, then the doubling exponent plus one. */
  blocks: number
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`Expected \`${name}\` to be an integer from 1 and up, got \`${value}\``)
  }
  return value
}

export class AuthFailureLimiter {
  readonly #maxFailures: number
  readonly #windowMs: number
  readonly #blockMs: number
  readonly #maxBlockMs: number
  readonly #maxAddresses: number
  readonly #clock: Clock
  /** Insertion order is failure order: the first key failed longest ago. */
  readonly #entries = new Map<string, Entry>()

  constructor(options: AuthFailureLimiterOptions = {}) {
    this.#maxFailures = positiveInteger('maxFailures', options.maxFailures ?? 10)
    this.#windowMs = positiveInteger('windowMs', options.windowMs ?? 60_000)
    this.#blockMs = positiveInteger('blockMs', options.blockMs ?? 1_000)
    this.#maxBlockMs = positiveInteger('maxBlockMs', options.maxBlockMs ?? 300_000)
    if (this.#maxBlockMs < this.#blockMs) {
      throw new TypeError(
        `Expected \`maxBlockMs\` to be at least \`blockMs\` (${this.#blockMs}), got \`${this.#maxBlockMs}\``,
      )
    }
    this.#maxAddresses = positiveInteger('maxAddresses', options.maxAddresses ?? 10_000)
    this.#clock = options.clock ?? performance
  }

  /** Milliseconds before `address` may try again: 0 when it may try now. */
  retryAfter(address: string): number {
    const entry = this.#live(address, this.#clock.now())
    return entry === undefined ? 0 : Math.max(0, entry.blockedUntil - this.#clock.now())
  }

  /**
   * Counts a failed authentication. A failure while blocked (the caller
   * should have asked retryAfter first) counts as one on probation.
   */
  recordFailure(address: string): void {
    const now = this.#clock.now()
    const entry = this.#live(address, now) ?? {
      failures: 0,
      windowStart: now,
      lastFailure: now,
      blockedUntil: 0,
      blocks: 0,
    }
    if (now - entry.windowStart >= this.#windowMs) {
      entry.failures = 0
      entry.windowStart = now
    }
    entry.failures++
    entry.lastFailure = now
    if (entry.failures >= (entry.blocks === 0 ? this.#maxFailures : 1)) {
      // 2 ** 52 already exceeds any block; the cap keeps the power finite.
      const doubling = 2 ** Math.min(entry.blocks, 52)
      entry.blockedUntil = now + Math.min(this.#blockMs * doubling, this.#maxBlockMs)
      entry.blocks++
      entry.failures = 0
      entry.windowStart = now
    }
    // Re-insert to move it to the newest end; then drop the oldest past the bound.
    this.#entries.delete(address)
    this.#entries.set(address, entry)
    if (this.#entries.size > this.#maxAddresses) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
  }

  /** A success forgets the address's failures. */
  recordSuccess(address: string): void {
    this.#entries.delete(address)
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.#entries.size
  }

  /** The address's entry, unless it has been quiet for a window since its last failure or block. */
  #live(address: string, now: number): Entry | undefined {
    const entry = this.#entries.get(address)
    if (entry === undefined) return undefined
    if (now - Math.max(entry.lastFailure, entry.blockedUntil) >= this.#windowMs) {
      this.#entries.delete(address)
      return undefined
    }
    return entry
  }
}
