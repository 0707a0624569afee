import { viewAt } from '../../buffer-view.js'
import type { TrackingSetting } from '../../config.js'
import type {
  InvalidationChannel,
  InvalidationMode,
  InvalidationTarget,
} from '../../invalidation.js'
import type { Logger } from '../../log.js'
import { RespTracking } from '../resp-tracking.js'

/** One node's channel and whether it holds stores suspended. */
type Child = { readonly tracking: RespTracking; suspended: boolean }

/**
 * Client tracking over a whole cluster: one RespTracking per primary, in-band
 * on that primary's connection (each node tells only about the keys read
 * from it), joined into the one channel the read-through service knows.
 *
 * - Invalidations of any node evict the key, and drop its reads in flight
 *   unless they all went to that node (see `add`).
 * - Stores are suspended while any node's channel is (connecting, lost) and
 *   resume only once every node's is established again: a value loaded from
 *   a node whose writes nobody hears of must not be kept.
 * - The mode is `on` only when every node's channel is on.
 * - A node's channel re-established clears the cache (RespTracking's rule);
 *   a node's connection lost, or a primary gone from the topology, clears it
 *   at once: its slots may already be served by a promoted replica whose
 *   writes this channel never tracked for the values cached (see the README:
 *   clearing everything rather than the node's slots).
 */
export class ClusterTracking implements InvalidationChannel {
  readonly #log: Logger
  readonly #tracking: TrackingSetting
  readonly #prefixes: readonly string[]
  readonly #children = new Set<Child>()
  #target: InvalidationTarget | undefined
  #suspended = false

  constructor(log: Logger, tracking: TrackingSetting, prefixes: readonly string[] = []) {
    this.#log = log
    this.#tracking = tracking
    this.#prefixes = prefixes
  }

  /**
   * A channel for one more primary's connection (its RespSource takes
   * `sourceHooks()`). `orderedHere` tells whether every read of a key in
   * flight went to this node's connection, behind its invalidations: only
   * then may an invalidation leave them to be stored, as with one Redis.
   */
  add(orderedHere?: (key: Uint8Array) => boolean): RespTracking {
    const tracking = new RespTracking(this.#log, this.#tracking, this.#prefixes)
    const child: Child = { tracking, suspended: true }
    this.#children.add(child)
    const composite = this
    const target: InvalidationTarget = {
      invalidateBytes: (key) => composite.#target?.invalidateBytes(key),
      // One node's stream orders its own reads only, and a key's read may be
      // on another node's (a slot moving, a redirect): unless every read of
      // the key in flight is on this one, they are dropped too.
      evictBytes: (key) =>
        orderedHere?.(key) === true
          ? composite.#target?.evictBytes(key)
          : composite.#target?.invalidateBytes(key),
      // Each key judged as evictBytes judges it, through a view made as
      // RespTracking makes the one of a read's key (no species lookup).
      evictSpans(bytes, spans, count) {
        const buffer = bytes.buffer
        const base = bytes.byteOffset
        for (let i = 0; i < count; i++) {
          const start = spans[2 * i] as number
          this.evictBytes(viewAt(buffer, base + start, (spans[2 * i + 1] as number) - start))
        }
      },
      clear: () => composite.#target?.clear(),
      suspendStores() {
        child.suspended = true
        composite.#update()
      },
      resumeStores() {
        child.suspended = false
        composite.#update()
      },
    }
    tracking.start(target)
    // Not yet established: it holds stores until it is.
    child.suspended = tracking.mode() !== 'on' && tracking.mode() !== 'unsupported'
    this.#update()
    return tracking
  }

  /** A primary left the topology: its channel goes, and what it served with it. */
  remove(tracking: RespTracking): void {
    for (const child of this.#children) {
      if (child.tracking !== tracking) continue
      this.#children.delete(child)
      this.#target?.clear()
      this.#update()
      return
    }
  }

  /** A primary's connection broke: the cache goes now, not when (or if) it is back. */
  lost(): void {
    this.#target?.clear()
  }

  start(target: InvalidationTarget): void {
    this.#target = target
    this.#suspended = false
    this.#update(true)
  }

  mode(): InvalidationMode {
    if (this.#children.size === 0) return 'connecting'
    let lost = false
    let connecting = false
    let unsupported = false
    for (const { tracking } of this.#children) {
      const mode = tracking.mode()
      if (mode === 'lost') lost = true
      else if (mode === 'connecting') connecting = true
      else if (mode === 'unsupported') unsupported = true
    }
    if (lost) return 'lost'
    if (connecting) return 'connecting'
    return unsupported ? 'unsupported' : 'on'
  }

  async close(): Promise<void> {}

  #update(force = false): void {
    const target = this.#target
    if (target === undefined) return
    let hold = this.#children.size === 0
    for (const child of this.#children) hold ||= child.suspended
    if (hold && (!this.#suspended || force)) {
      this.#suspended = true
      target.suspendStores()
    } else if (!hold && (this.#suspended || force)) {
      this.#suspended = false
      target.resumeStores()
    }
  }
}
