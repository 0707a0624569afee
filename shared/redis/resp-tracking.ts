import { viewAt } from '../buffer-view.js'
import type { TrackingSetting } from '../config.js'
import type { InvalidationChannel, InvalidationMode, InvalidationTarget } from '../invalidation.js'
import type { Logger } from '../log.js'
import { isPassingError, type Push, type Reply, ReplyError } from './reply-decoder.js'
import type { RespSourceOptions } from './resp-source.js'

/** How an invalidation push begins: `>2`, then the bulk string `invalidate`. */
const INVALIDATE_HEAD = Buffer.from('>2\r\n$10\r\ninvalidate\r\n', 'latin1')
const CR = 13
const LF = 10
const DOLLAR = 36
const STAR = 42

/**
 * The number whose digits start at `at` and end at a CRLF, as `readLine`
 * leaves it in `lineValue`, with `lineEnd` the byte after the LF; false when
 * there are no digits, more than 9, or no CRLF after them.
 */
let lineValue = 0
let lineEnd = 0
function readLine(chunk: Buffer, at: number, end: number): boolean {
  let value = 0
  let i = at
  for (; i < end && i - at < 10; i++) {
    const byte = chunk[i] as number
    if (byte < 48 || byte > 57) break
    value = value * 10 + (byte - 48)
  }
  if (i === at || i - at > 9 || i + 1 >= end || chunk[i] !== CR || chunk[i + 1] !== LF) {
    return false
  }
  lineValue = value
  lineEnd = i + 2
  return true
}

/** Whether `chunk[at, at + length)` holds the byte string `text`. */
function bytesAre(chunk: Buffer, at: number, length: number, text: string): boolean {
  if (length !== text.length) return false
  for (let i = 0; i < length; i++) if (chunk[at + i] !== text.charCodeAt(i)) return false
  return true
}

/** CLIENT TRACKING ON for each CACHE_TRACKING setting; BCAST under CACHE_PREFIXES only, if any. */
function trackingCommand(tracking: TrackingSetting, prefixes: readonly string[]): string[] {
  if (tracking === 'keys') return ['CLIENT', 'TRACKING', 'ON']
  return ['CLIENT', 'TRACKING', 'ON', 'BCAST', ...prefixes.flatMap((prefix) => ['PREFIX', prefix])]
}

/**
 * Client tracking in-band, for the native source: on RESP3, `CLIENT TRACKING
 * ON` on the very connection that issues the GETs, with invalidations as
 * pushes on it. One connection makes the race simple: Redis writes a GET's
 * reply and any later invalidation of that key in order on one stream, so an
 * invalidation can never overtake the value it voids (in BCAST mode too:
 * Redis appends the broadcast to the connection's output after the replies
 * of the commands it ran in that event-loop turn); and tracking is on before
 * the connection serves its first GET.
 *
 * BCAST (the default) costs Redis nothing per key read: measured here it
 * took Redis's CPU per miss from 2.78-2.83 µs to 1.43-1.52 (a GET, a PTTL
 * and, in the default mode, the key recorded in its tracking table; see the
 * README, Which tracking), at the price
 * of hearing about every write in the keyspace. A server that refuses BCAST
 * is asked to track the keys read instead, with one warning.
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
  /** What is asked of Redis: CACHE_TRACKING, or `keys` for good once BCAST was refused. */
  #tracking: TrackingSetting
  readonly #prefixes: readonly string[]
  /**
   * #pushedIn's scratch: the bounds of a push's keys. Under BCAST Redis
   * sends the keys written during one turn of its loop in one push
   * (trackingBroadcastInvalidationMessages, before it sleeps), so this
   * grows to the most keys one push has named: one per 6 bytes of a read
   * at most (`$0` and two line ends).
   */
  #spans = new Int32Array(32)

  constructor(log: Logger, tracking: TrackingSetting, prefixes: readonly string[] = []) {
    this.#log = log
    this.#tracking = tracking
    this.#prefixes = prefixes
  }

  /** The hooks to pass to the RespSource this channel watches. */
  sourceHooks(): Pick<RespSourceOptions, 'setup' | 'onSetup' | 'onPush' | 'onPushIn' | 'onLost'> {
    return {
      setup: (resp3) =>
        resp3 && this.#mode !== 'unsupported'
          ? [trackingCommand(this.#tracking, this.#prefixes)]
          : [],
      onSetup: (replies, resp3) => this.#established(replies, resp3),
      onPush: (push, midRead) => this.#pushed(push, midRead),
      onPushIn: (chunk, start, end, midRead) => this.#pushedIn(chunk, start, end, midRead),
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

  /**
   * The setup's replies; a BCAST refused is followed by tracking the keys
   * read. An error Redis gives only for now (BUSY with a script running,
   * LOADING) is no refusal: it fails this connection, which is retried, and
   * stores stay suspended meanwhile.
   */
  #established(replies: Reply[], resp3: boolean): string[][] | undefined {
    if (this.#mode === 'unsupported') return undefined
    if (isPassingError(replies[0])) throw replies[0]
    const refusal = !resp3
      ? 'HELLO 3 refused: the server does not speak RESP3'
      : replies[0] instanceof ReplyError
        ? replies[0].message
        : undefined
    if (refusal !== undefined && resp3 && this.#tracking === 'bcast') {
      this.#tracking = 'keys'
      this.#log.warn(
        'backing redis refuses CLIENT TRACKING BCAST: it is asked to track the keys read instead',
        { error: refusal },
      )
      return [trackingCommand('keys', this.#prefixes)]
    }
    if (refusal !== undefined) {
      this.#mode = 'unsupported'
      this.#log.warn(
        'backing redis refuses client tracking: writes by others are seen only after CACHE_GLOBAL_EXPIRY',
        { error: refusal },
      )
      this.#target?.resumeStores()
      return undefined
    }
    this.#mode = 'on'
    this.#target?.clear()
    this.#target?.resumeStores()
    return undefined
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

  /**
   * An invalidation of keys as it lies in the received chunk
   * (`>2 $10 invalidate *n $len key ...`), read there: what #pushed does for
   * it, without decoding it into a Push, its arrays and a Buffer per item.
   * Every write to the keyspace sends one under BCAST, so this runs at the
   * rate of all of Redis's writes, whoever makes them. Anything else (the
   * nil of FLUSHALL, another push, a key that is not a bulk string) is left
   * to #pushed: false, and nothing was done.
   */
  #pushedIn(chunk: Buffer, start: number, end: number, midRead: string | undefined): boolean {
    const target = this.#target
    const head = INVALIDATE_HEAD.length
    if (target === undefined || end - start < head + 4) return false
    for (let i = 0; i < head; i++) if (chunk[start + i] !== INVALIDATE_HEAD[i]) return false
    const arrayAt = start + head
    if (chunk[arrayAt] !== STAR || !readLine(chunk, arrayAt + 1, end)) return false
    const count = lineValue
    const keysAt = lineEnd
    // Checked whole before any key is acted on: one the general path would
    // read differently leaves the whole push to it.
    let at = keysAt
    for (let k = 0; k < count; k++) {
      if (chunk[at] !== DOLLAR || !readLine(chunk, at + 1, end)) return false
      at = lineEnd + lineValue
      if (at + 2 > end || chunk[at] !== CR || chunk[at + 1] !== LF) return false
      at += 2
    }
    if (at !== end) return false
    // The keys' bounds, for the target to evict them together.
    if (this.#spans.length < 2 * count) this.#spans = new Int32Array(2 * count)
    const spans = this.#spans
    let evicted = 0
    at = keysAt
    for (let k = 0; k < count; k++) {
      readLine(chunk, at + 1, end)
      const keyAt = lineEnd
      const length = lineValue
      at = keyAt + length + 2
      // As #pushed: the read between its two replies has its loads dropped.
      if (midRead !== undefined && bytesAre(chunk, keyAt, length, midRead)) {
        target.invalidateBytes(viewAt(chunk.buffer, chunk.byteOffset + keyAt, length))
      } else {
        spans[2 * evicted] = keyAt
        spans[2 * evicted + 1] = keyAt + length
        evicted++
      }
    }
    if (evicted > 0) target.evictSpans(chunk, spans, evicted)
    return true
  }

  #pushed(push: Push, midRead: string | undefined): void {
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
    // Told on the connection every GET is read on, in order with their
    // replies: a GET whose reply is still to come ran after this write, so
    // its load may be stored. Not the read whose GET is answered and whose
    // PTTL is not (`midRead`): the write ran between the two, after its
    // value was read, so that key's loads are dropped; every other key named
    // is only evicted.
    for (const key of keys) {
      if (!Buffer.isBuffer(key)) continue
      if (
        midRead !== undefined &&
        key.length === midRead.length &&
        key.toString('latin1') === midRead
      ) {
        target.invalidateBytes(key)
      } else {
        target.evictBytes(key)
      }
    }
  }
}
