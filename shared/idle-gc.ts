/**
 * Gives V8's young generation back to the system once the process goes idle.
 *
 * V8 doubles its young generation (two semi-spaces, up to 16 MiB each on
 * 64-bit) each time as many bytes have survived scavenges as it holds, which a
 * long-running server always reaches, and shrinks it in a full collection
 * that finds the allocation rate low. A browser prompts such collections by
 * telling V8 when it is idle; Node does not. Measured with 1M entries filled
 * through the sidecar: the young generation still 32 MiB and RSS 236 MiB 55 s
 * after the fill, nothing running; 206-208 MiB after one full collection
 * once idle. The cache's entries live outside the V8 heap, so that
 * collection has a small heap to walk (about 10 MiB: 9-16 ms here).
 *
 * So every `intervalMs` this asks how busy the event loop was since the last
 * look. An interval busy under `idleBelow` of the time, with the young
 * generation above `youngAbove`, ends with one full collection. The check is
 * a few microseconds; nothing runs per request.
 */

import { performance } from 'node:perf_hooks'
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** What the policy reads and does, passed in so tests can drive it. */
export type IdleGcParts = {
  /** The share of time (0..1) the event loop was busy since the previous call. */
  busy(): number
  /** Bytes the young generation has committed now. */
  youngBytes(): number
  /** One full garbage collection, synchronous. */
  collect(): void
  /** A monotonic clock in ms. */
  now(): number
}

export type IdleGcResult = {
  /** Young generation before and after the collection, bytes. */
  youngBefore: number
  youngAfter: number
  /** How long the collection took, ms. */
  ms: number
}

/**
 * Why a look ended without a collection: the loop was `busy` for `idleBelow`
 * or more of the interval, the young generation was already `small`
 * (`youngAbove` or less), or the look fell in the `backoff` after a
 * collection that gave nothing back.
 */
export type IdleGcSkip = 'busy' | 'small' | 'backoff'

export type IdleGcOptions = {
  /** How often to look, ms; an interval is the span judged idle or not. Integer >= 1. */
  intervalMs: number
  /**
   * An interval whose event loop was busy less than this share of the time is idle.
   * @default 0.01
   */
  idleBelow?: number
  /**
   * A young generation this size or smaller is left as it is: after a shrink
   * V8 holds 1-2 MiB, and collecting again would give back nothing.
   * @default 4194304
   */
  youngAbove?: number
  onCollect?: (result: IdleGcResult) => void
  /** A look that ran no collection, and why: what tells an operator why memory stays. */
  onSkip?: (reason: IdleGcSkip) => void
  /**
   * A collection threw (`gc()` could not be had on this runtime): the checks
   * stop for good, and this is told why. A memory saving must never take
   * the process down.
   */
  onError?: (error: unknown) => void
}

/**
 * After a collection that gave back nothing (V8 still counted the traffic
 * that just ended in its allocation rate), the next attempt comes at the
 * next idle interval: measured after a fill, the first collection 6 s after
 * it gave nothing back and the next one did. Each further failure doubles
 * the wait, up to this many intervals, so a process that stays just under
 * the idle bar is not collected every interval for nothing.
 */
const MAX_BACKOFF = 64

export class IdleGc {
  readonly #intervalMs: number
  readonly #idleBelow: number
  readonly #youngAbove: number
  readonly #onCollect: IdleGcOptions['onCollect']
  readonly #onError: IdleGcOptions['onError']
  readonly #onSkip: IdleGcOptions['onSkip']
  readonly #parts: IdleGcParts
  #timer: ReturnType<typeof setInterval> | undefined
  #backoff = 1
  #skip = 0
  /**
   * How long the last look's own collection ran, ms (null: it ran none). The
   * loop was busy with it, not with traffic: the next look leaves that time
   * out, and if that look is busy all the same it does not count as traffic
   * coming back. Counted as traffic, a collection of 10-30 ms made the next
   * interval busy at IDLE_GC_INTERVAL=1000 (1% is 10 ms), and that reset the
   * backoff: a young generation V8 would not give back was collected every
   * other interval. Leaving its time out was not enough there (the look
   * after it still read 1.1-1.4% busy, an idle proxy reading about 0.5%):
   * V8's own work after a full collection runs on the loop too.
   */
  #ownMs: number | null = null
  /** A collection failed: never again. */
  #stopped = false

  constructor(options: IdleGcOptions, parts: IdleGcParts) {
    if (!Number.isInteger(options.intervalMs) || options.intervalMs < 1) {
      throw new TypeError(
        `Expected \`intervalMs\` to be an integer from 1 and up, got \`${options.intervalMs}\``,
      )
    }
    const idleBelow = options.idleBelow ?? 0.01
    if (!(idleBelow > 0 && idleBelow <= 1)) {
      throw new TypeError(
        `Expected \`idleBelow\` to be a number above 0 up to 1, got \`${idleBelow}\``,
      )
    }
    const youngAbove = options.youngAbove ?? 4 * 1024 * 1024
    if (!(youngAbove >= 0)) {
      throw new TypeError(
        `Expected \`youngAbove\` to be a number from 0 and up, got \`${youngAbove}\``,
      )
    }
    this.#intervalMs = options.intervalMs
    this.#idleBelow = idleBelow
    this.#youngAbove = youngAbove
    this.#onCollect = options.onCollect
    this.#onError = options.onError
    this.#onSkip = options.onSkip
    this.#parts = parts
  }

  /**
   * Judges the interval since the last call; runs the collection if it was
   * idle and the young generation is worth giving back. Returns what it did.
   */
  check(): IdleGcResult | null {
    if (this.#stopped) return null
    const ownMs = this.#ownMs
    this.#ownMs = null
    // The interval is taken as intervalMs long: looks come every intervalMs.
    const busy = this.#parts.busy() - (ownMs ?? 0) / this.#intervalMs
    if (busy >= this.#idleBelow) {
      if (ownMs !== null) {
        // Busy right after a collection of its own: a look that waits, as
        // a backoff's does, and not a sign that traffic came back.
        if (this.#skip > 0) this.#skip--
      } else {
        // Traffic came back: the next idle spell starts from a clean slate.
        this.#backoff = 1
        this.#skip = 0
      }
      this.#onSkip?.('busy')
      return null
    }
    const youngBefore = this.#parts.youngBytes()
    if (youngBefore <= this.#youngAbove) {
      this.#onSkip?.('small')
      return null
    }
    if (this.#skip > 0) {
      this.#skip--
      this.#onSkip?.('backoff')
      return null
    }
    const started = this.#parts.now()
    try {
      this.#parts.collect()
    } catch (error) {
      this.stop()
      this.#stopped = true
      this.#onError?.(error)
      return null
    }
    const result = {
      youngBefore,
      youngAfter: this.#parts.youngBytes(),
      ms: this.#parts.now() - started,
    }
    this.#ownMs = result.ms
    if (result.youngAfter > this.#youngAbove) {
      // Skips 0, 1, 3, 7, ... 63 intervals after the 1st, 2nd, 3rd, ... failure.
      this.#skip = this.#backoff - 1
      this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF)
    } else {
      this.#backoff = 1
    }
    this.#onCollect?.(result)
    return result
  }

  /** Looks every `intervalMs` until `stop()`; the timer never keeps the process alive. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return
    // The first interval is judged from now, not from process start, and
    // owes nothing to a collection run before a stop().
    this.#parts.busy()
    this.#ownMs = null
    this.#timer = setInterval(() => this.check(), this.#intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/** The parts for Node: the event loop's utilization, V8's new space, a full `gc()`. */
export function nodeIdleGcParts(): IdleGcParts {
  let last = performance.eventLoopUtilization()
  let gc: (() => void) | undefined
  return {
    busy() {
      const now = performance.eventLoopUtilization()
      const since = performance.eventLoopUtilization(now, last)
      last = now
      return since.utilization
    },
    youngBytes() {
      let bytes = 0
      for (const space of getHeapSpaceStatistics()) {
        // Committed size, what a shrink gives back (and what prom-client's
        // nodejs_heap_space_size_total_bytes shows): the pages touched
        // lag behind it, but a busy process touches them all in time.
        if (space.space_name === 'new_space' || space.space_name === 'new_large_object_space') {
          bytes += space.space_size
        }
      }
      return bytes
    },
    collect() {
      gc ??= exposedGc()
      gc()
    },
    now: () => performance.now(),
  }
}

/**
 * V8's `gc()`: the process's own when started with --expose-gc, else a
 * fresh one (newGc), made on the first collection and kept.
 */
function exposedGc(): () => void {
  const own = (globalThis as { gc?: unknown }).gc
  return typeof own === 'function' ? (own as () => void) : newGc()
}

/**
 * A `gc()` taken from a fresh context created while --expose-gc is on (V8
 * installs `gc` only in contexts created after the flag is set; the flag is
 * turned off again, so nothing else sees it). The context lives as long as
 * the function, about 0.6 MiB. Throws where the runtime refuses the flag.
 */
export function newGc(): () => void {
  setFlagsFromString('--expose-gc')
  try {
    return runInNewContext('gc') as () => void
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}
