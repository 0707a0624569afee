/** What the primary reads the time from; tests pass a fake one. */
export type Clock = { now(): number }

export type RestartBackoffOptions = {
  /** The wait before the first restart after a worker that ran long enough. @default 100 */
  initialMs?: number
  /** The wait never grows past this. @default 30_000 */
  maxMs?: number
  /**
   * A worker that ran at least this long before exiting is a fresh failure,
   * not part of a crash loop: its restart waits `initialMs` again.
   * @default 60_000
   */
  resetAfterMs?: number
  clock?: Clock
}

/**
 * How long the primary waits before replacing a worker that exited, per
 * worker slot. A slot whose workers keep dying soon after they start waits
 * twice as long each time (100 ms, 200 ms, ... up to 30 s), so a crash loop
 * (a backend that refuses, a bug hit at start-up) costs a few forks a minute
 * instead of a core; one that ran a while is replaced at once.
 */
export class RestartBackoff {
  readonly #initialMs: number
  readonly #maxMs: number
  readonly #resetAfterMs: number
  readonly #clock: Clock
  /** Per slot: restarts in a row of workers that did not last `resetAfterMs`. */
  readonly #streak = new Map<number, number>()
  /** Per slot: when its current worker started. */
  readonly #startedAt = new Map<number, number>()

  constructor(options: RestartBackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? 100
    this.#maxMs = options.maxMs ?? 30_000
    this.#resetAfterMs = options.resetAfterMs ?? 60_000
    this.#clock = options.clock ?? Date
  }

  /** The slot's worker was forked now. */
  started(slot: number): void {
    this.#startedAt.set(slot, this.#clock.now())
  }

  /** The slot's worker exited now: milliseconds to wait before forking its replacement. */
  exited(slot: number): number {
    const started = this.#startedAt.get(slot)
    const lasted = started === undefined ? 0 : this.#clock.now() - started
    const streak = lasted >= this.#resetAfterMs ? 0 : (this.#streak.get(slot) ?? 0)
    this.#streak.set(slot, streak + 1)
    // 2 ** streak overflows to Infinity long after it passed maxMs: min still holds.
    return Math.min(this.#maxMs, this.#initialMs * 2 ** streak)
  }
}
