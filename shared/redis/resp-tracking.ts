import type { InvalidationChannel, InvalidationMode, InvalidationTarget } from '../invalidation.js'
import { keyFromBytes } from '../keys.js'
import type { Logger } from '../log.js'
import { type Push, type Reply, ReplyError } from './reply-decoder.js'
import type { RespSourceOptions } from './resp-source.js'

/**
 * Client tracking in-band, for the native source: on RESP3, `CLIENT TRACKING
 * ON` on the very connection that issues the GETs, with invalidations as
 * pushes on it. One connection makes the race simple: Redis writes a GET's
 * reply and any later invalidation of that key in order on one stream, so an
 * invalidation can never overtake the value it voids; and tracking is on
 * before the connection serves its first GET.
 *
 * The rule of shared/invalidation.ts holds: stores are suspended from
 * start-up and whenever the connection is lost; a new connection clears the
 * cache (writes may have been missed meanwhile) and resumes stores once
 * tracking answered OK. A server without RESP3 or without tracking gets one
 * warning and expiry-only caching.
 */
export class RespTracking implements InvalidationChannel {
  readonly #log: Logger
  #target: InvalidationTarget | undefined
  #mode: InvalidationMode = 'connecting'

  constructor(log: Logger) {
    this.#log = log
  }

  /** The hooks to pass to the RespSource this channel watches. */
  sourceHooks(): Pick<RespSourceOptions, 'setup' | 'onSetup' | 'onPush' | 'onLost'> {
    return {
      setup: (resp3) =>
        resp3 && this.#mode !== 'unsupported' ? [['CLIENT', 'TRACKING', 'ON']] : [],
      onSetup: (replies, resp3) => this.#established(replies, resp3),
      onPush: (push) => this.#pushed(push),
      onLost: () => this.#lost(),
    }
  }

  start(target: InvalidationTarget): void {
    this.#target = target
    if (this.#mode === 'connecting' || this.#mode === 'lost') target.suspendStores()
  }

  mode(): InvalidationMode {
    return this.#mode
  }

  async close(): Promise<void> {}

  #established(replies: Reply[], resp3: boolean): void {
    if (this.#mode === 'unsupported') return
    const refusal = !resp3
      ? 'HELLO 3 refused: the server does not speak RESP3'
      : replies[0] instanceof ReplyError
        ? replies[0].message
        : undefined
    if (refusal !== undefined) {
      this.#mode = 'unsupported'
      this.#log.warn(
        'backing redis refuses client tracking: writes by others are seen only after CACHE_GLOBAL_EXPIRY',
        { error: refusal },
      )
      this.#target?.resumeStores()
      return
    }
    this.#mode = 'on'
    this.#target?.clear()
    this.#target?.resumeStores()
  }

  #lost(): void {
    if (this.#mode === 'unsupported') return
    if (this.#mode === 'on') {
      this.#log.warn(
        'invalidation channel lost: cached values are served until their expiry, nothing new is cached until it is back',
      )
    }
    this.#mode = 'lost'
    this.#target?.suspendStores()
  }

  #pushed(push: Push): void {
    const [kind, keys] = push.items
    if (!Buffer.isBuffer(kind) || kind.toString('latin1') !== 'invalidate') return
    const target = this.#target
    if (target === undefined) return
    if (keys === null) {
      // FLUSHALL / FLUSHDB.
      target.clear()
      return
    }
    if (!Array.isArray(keys)) return
    for (const key of keys) {
      if (Buffer.isBuffer(key)) target.invalidate(keyFromBytes(key))
    }
  }
}
