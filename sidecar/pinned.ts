import type { Socket } from 'node:net'
import { Fifo } from '../shared/fifo.js'
import { ReplyFramer, STREAM_AFTER } from '../shared/redis/reply-framer.js'
import { CROSS_SLOT, type RedisForwarder, type ReplyStream } from '../shared/redis/source.js'
import type { Reply } from './commands/types.js'
import { command as encodeCommand, error } from './resp/encoder.js'

/**
 * A command sent on the dedicated connection, owed its reply's frame; a
 * MULTI the client was already answered (see #deferred) has its reply dropped.
 */
type Owed = {
  resolve(reply: Reply): void
  evict: (() => void) | undefined
  drop?: true
  stream?: ReplyStream | undefined
  /** Part of its reply went to `stream`: if the connection goes, the client's must too. */
  streaming?: boolean
  /**
   * What its reply changes of the modes Redis spares from its idle timeout
   * (see Pinned.quiet): a MONITOR's +OK starts monitoring, a subscription
   * command's confirmation sets a count, RESET's reply ends every mode.
   * Only those replies are looked at: any other reply may hold the same
   * bytes (an EVAL's or an EXEC's array that reads like a confirmation).
   */
  mode?: CommandMode
}

type CommandMode = 'monitor' | 'subscription' | 'reset'

export type PinnedOptions = {
  forwarder: RedisForwarder
  resp3: boolean
  /** A frame no command is owed (a message of a subscription, MONITOR's lines): written in order. */
  onUnsolicited(parts: Buffer[]): void
  /** The backend closed the connection (or it could not be made): the client's must close too. */
  onClosed(): void
}

const UNAVAILABLE = error('ERR backing redis unavailable (redis-proxy)')
const CROSSSLOT = error("CROSSSLOT Keys in request don't hash to the same slot")
const OK = Buffer.from('+OK\r\n')
const DROPPED = (): void => {}

/** What a cluster client's connection holds that a move to another node would lose. */
const STICKY = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'monitor', 'readonly'])

/**
 * A client's backend connection of its own, once it asked for state that a
 * shared connection cannot hold (MULTI, WATCH, a blocking pop, SUBSCRIBE,
 * MONITOR, CLIENT TRACKING, SELECT of another database). From then on every
 * command of the client goes here, in order, and every frame that comes back
 * goes to the client in the order it came: a reply settles the oldest command
 * owed one, and a frame nothing is owed (a published message) is written as
 * it is. Nothing is cached for such a client: its reads come from here too.
 *
 * Read-your-writes holds as on the shared connections: a write's keys are
 * evicted when it is sent and when its reply comes; inside MULTI, when EXEC's
 * reply comes (the queued writes run then).
 *
 * In front of a cluster the connection must be on the primary of the slot
 * its keys are in, which the first command (MULTI, SUBSCRIBE) seldom names:
 * - It opens lazily, at the first command sent, on the primary of that
 *   command's slot (any primary for a keyless one).
 * - MULTI is answered +OK at once and sent just before the next command, on
 *   whatever connection that one goes to (its own reply dropped), so
 *   `MULTI; SET {t}a; ...` opens (or moves) to the slot of `{t}a`.
 * - A command for another node's slot moves the connection there (a fresh
 *   one; the old one closes) when nothing ties it to its node: no reply
 *   owed, no WATCH, no transaction with commands queued, no subscription,
 *   MONITOR or CLIENT state. Otherwise it is answered CROSSSLOT, as Redis
 *   answers a transaction across slots, and a transaction it was sent in
 *   aborts at EXEC (EXECABORT).
 */
export class Pinned {
  /** Between MULTI and EXEC or DISCARD: the queued writes run at EXEC. */
  inMulti = false
  /** A command of the transaction was refused by the proxy: EXEC is EXECABORT. */
  aborted = false
  /** The evictions of the writes queued since MULTI, for EXEC's reply. */
  queued: (() => void)[] = []
  readonly #options: PinnedOptions
  #socket: Socket | null = null
  /** Commands written before the connection was up, in order. */
  #pending: Buffer[] = []
  readonly #owed = new Fifo<Owed>()
  #framer = new ReplyFramer()
  #closed = false
  #paused = false
  /** Whether the backend connection was asked for (it opens at the first command). */
  #opened = false
  /** Which connection attempt is current: one replaced by a move is dropped when it comes. */
  #generation = 0
  // Cluster only (see above).
  /** The primary the connection is on, once a keyed command chose it. */
  #node: string | undefined
  /** A MULTI answered but not yet sent. */
  #deferred: Buffer | null = null
  /** MULTI sent or deferred, no EXEC or DISCARD yet; commands queued since. */
  #multi = false
  #queuedInMulti = 0
  #watching = false
  #sticky = false
  // What Redis exempts from its idle timeout (see quiet()): subscriptions,
  // as the last confirmation's counts say (channels and patterns apart from
  // shard channels, as Redis counts them), and MONITOR.
  #subscriptions = 0
  #shardSubscriptions = 0
  #monitoring = false

  constructor(options: PinnedOptions) {
    this.#options = options
  }

  /**
   * Sends one command (`name` as the command table names it); resolves with
   * its reply's bytes (or an error reply if the connection goes). With
   * `stream`, a large reply goes there while it arrives.
   */
  send(
    args: readonly Uint8Array[],
    evict: (() => void) | undefined,
    name?: string,
    stream?: ReplyStream,
  ): Promise<Reply> {
    if (this.#closed) return Promise.resolve(UNAVAILABLE)
    if (this.#options.forwarder.cluster !== undefined) {
      const answered = this.#route(args, name)
      if (answered !== undefined) return Promise.resolve(answered)
    } else if (!this.#opened) {
      this.#open(undefined)
    }
    evict?.()
    const bytes = encodeCommand(args)
    return new Promise<Reply>((resolve) => {
      const deferred = this.#deferred
      if (deferred !== null) {
        this.#deferred = null
        this.#owed.push({ resolve: DROPPED, evict: undefined, drop: true })
        this.#write(deferred)
      }
      const mode = name === undefined ? undefined : MODES.get(name)
      this.#owed.push(
        mode === undefined
          ? { resolve, evict, stream, streaming: false }
          : { resolve, evict, stream, streaming: false, mode },
      )
      this.#write(bytes)
    })
  }

  /**
   * Whether the client is in a mode where Redis expects it to send nothing
   * and never times it out (`timeout`): subscribed to a channel, pattern or
   * shard channel, or in MONITOR.
   */
  quiet(): boolean {
    return this.#subscriptions + this.#shardSubscriptions > 0 || this.#monitoring
  }

  /**
   * In front of a cluster: nothing ties the client to this connection now
   * (no reply owed, no transaction, WATCH, subscription or CLIENT state), so
   * its next command may take the shared way (the cache, splitting across
   * slots, fan-out) like any other client's; a command that needs a
   * connection of its own comes back here, moving it to its slot's node.
   */
  idle(): boolean {
    return this.#options.forwarder.cluster !== undefined && !this.inMulti && this.#movable()
  }

  #write(bytes: Buffer): void {
    if (this.#socket === null) this.#pending.push(bytes)
    else this.#socket.write(bytes)
  }

  #open(slot: number | undefined): void {
    this.#opened = true
    const generation = ++this.#generation
    this.#options.forwarder.dedicated(this.#options.resp3, slot).then(
      (socket) => {
        if (generation === this.#generation) this.#attach(socket)
        else socket.destroy()
      },
      () => {
        if (generation === this.#generation) this.#fail()
      },
    )
  }

  /**
   * Cluster: where the command goes, opening or moving the connection to
   * its slot's primary; a reply when it is answered here instead.
   */
  #route(args: readonly Uint8Array[], name: string | undefined): Reply | undefined {
    const cluster = this.#options.forwarder.cluster
    if (cluster === undefined) return undefined
    const slot = cluster.slotOf(args)
    if (name === 'multi' && !this.#multi && slot === null) {
      this.#multi = true
      this.#queuedInMulti = 0
      this.#deferred = encodeCommand(args)
      return OK
    }
    if (slot === CROSS_SLOT) return this.#refuse()
    if (slot !== null) {
      const target = cluster.nodeOf(slot)
      if (!this.#opened) {
        this.#node = target
        this.#open(slot)
      } else if (target !== this.#node) {
        if (this.#node !== undefined && !this.#movable()) return this.#refuse()
        // Keyless so far (on any node), or nothing tied to this node: go there.
        if (this.#node !== undefined || this.#movable()) this.#move(slot)
        this.#node = target
      }
    } else if (!this.#opened) {
      this.#open(undefined)
    }
    this.#track(name)
    return undefined
  }

  #refuse(): Reply {
    if (this.inMulti) this.aborted = true
    return CROSSSLOT
  }

  #movable(): boolean {
    return (
      this.#owed.length === 0 &&
      !this.#watching &&
      !this.#sticky &&
      (!this.#multi || (this.#queuedInMulti === 0 && this.#deferred !== null))
    )
  }

  /** A fresh connection on the slot's primary; the old one closes, holding nothing. */
  #move(slot: number): void {
    const old = this.#socket
    this.#socket = null
    this.#pending = []
    this.#framer = new ReplyFramer()
    if (old !== null) {
      old.removeAllListeners()
      old.on('error', () => {})
      old.destroy()
    }
    this.#open(slot)
  }

  /** What the command leaves on the connection (cluster: whether it may still move). */
  #track(name: string | undefined): void {
    if (name === undefined) return
    if (name === 'watch') this.#watching = true
    else if (name === 'unwatch') this.#watching = false
    else if (name === 'exec' || name === 'discard') {
      this.#watching = false
      this.#multi = false
    } else if (name === 'reset') {
      this.#watching = false
      this.#multi = false
      this.#sticky = false
    } else if (STICKY.has(name) || name.startsWith('client|')) this.#sticky = true
    else if (this.#multi) this.#queuedInMulti++
  }

  /** Stops reading the backend while the client does not take what it is sent. */
  pause(): void {
    if (this.#paused) return
    this.#paused = true
    this.#socket?.pause()
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    this.#socket?.resume()
  }

  /** The client is gone: whatever state it made on the backend goes with the connection. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#socket?.destroy()
    this.#socket = null
    this.#settleAll()
  }

  #attach(socket: Socket): void {
    if (this.#closed) {
      socket.destroy()
      return
    }
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#framer.push(chunk, this.#onFrame)
        if (this.#framer.pendingBytes >= STREAM_AFTER) this.#relayHeld()
      } catch {
        socket.destroy()
      }
    })
    socket.on('error', () => {})
    socket.on('close', () => this.#fail())
    if (this.#paused) socket.pause()
    for (const bytes of this.#pending) socket.write(bytes)
    this.#pending = []
  }

  /**
   * A large reply still arriving goes to the client as it comes; a client
   * that cannot take it pauses this connection, which is its own: Redis
   * holds the rest, for as long as the client takes (as Redis would).
   */
  #relayHeld(): void {
    const framer = this.#framer
    const owed = this.#owed.peek()
    if (owed?.stream === undefined || framer.heldIsPush) return
    owed.streaming = true
    if (!owed.stream.write(framer.takeHeld(), () => this.resume())) this.pause()
  }

  readonly #onFrame = (parts: Buffer[]): void => {
    const owed = this.#owed.shift()
    // Confirmations after a subscription command's first come unasked, as
    // messages do; an asked-for reply is looked at only for its command.
    if (owed === undefined) this.#notePubSub(parts)
    else if (owed.mode !== undefined) this.#noteMode(owed.mode, parts)
    if (owed === undefined) {
      this.#options.onUnsolicited(parts)
      return
    }
    if (owed.drop === true) return
    owed.evict?.()
    owed.resolve(parts)
  }

  /**
   * Follows the subscription counts in Redis's confirmations (`subscribe`,
   * `unsubscribe` and the pattern and shard forms, each with the count after
   * it, in RESP2 arrays or RESP3 pushes) and RESET, which ends every mode.
   * Messages and every other frame leave them as they are.
   */
  #notePubSub(parts: Buffer[]): void {
    const confirmed = confirmation(parts)
    if (confirmed === null) return
    if (confirmed.shard) this.#shardSubscriptions = confirmed.count
    else this.#subscriptions = confirmed.count
  }

  #noteMode(mode: CommandMode, parts: Buffer[]): void {
    if (mode === 'subscription') this.#notePubSub(parts)
    else if (mode === 'monitor') this.#monitoring ||= isSimple(parts, OK)
    else if (isSimple(parts, RESET)) {
      this.#subscriptions = 0
      this.#shardSubscriptions = 0
      this.#monitoring = false
    }
  }

  #fail(): void {
    if (this.#closed) return
    this.#closed = true
    this.#socket = null
    this.#settleAll()
    this.#options.onClosed()
  }

  #settleAll(): void {
    for (const owed of this.#owed.drain()) {
      owed.evict?.()
      if (owed.streaming) owed.stream?.abort('backend connection closed during the reply')
      owed.resolve(UNAVAILABLE)
    }
  }
}

const RESET = Buffer.from('+RESET\r\n')

const SUBSCRIPTION_KINDS: ReadonlyMap<string, boolean> = new Map([
  ['subscribe', false],
  ['unsubscribe', false],
  ['psubscribe', false],
  ['punsubscribe', false],
  ['ssubscribe', true],
  ['sunsubscribe', true],
])

/**
 * Commands whose replies change a mode, by the names the command table gives
 * them (a command it does not know, or of the wrong arity, Redis refuses:
 * it changes no mode).
 */
const MODES: ReadonlyMap<string, CommandMode> = new Map([
  ...[...SUBSCRIPTION_KINDS.keys()].map((name): [string, CommandMode] => [name, 'subscription']),
  ['monitor', 'monitor'],
  ['reset', 'reset'],
])

/** Bytes looked at from each end of a frame: a confirmation's kind is in its first, its count in its last. */
const EDGE = 32

/**
 * A subscription confirmation's count, and whether it counts shard channels:
 * a 3-element array (`*3`) or push (`>3`) whose first element is one of the
 * kinds above and whose last is an integer. Anything else is null. `parts`
 * is one frame, in as many pieces as it arrived in; only its first and last
 * bytes are read, so a long frame (a message) costs nothing more.
 */
export function confirmation(parts: readonly Buffer[]): { shard: boolean; count: number } | null {
  const first = head(parts)
  if (first.length < 8) return null
  // `*3\r\n$` then the kind's length, 9 to 12: a message (7 or 8) stops here.
  if ((first[0] !== 0x2a && first[0] !== 0x3e) || first[1] !== 0x33 || first[2] !== 0x0d)
    return null
  if (first[4] !== 0x24) return null
  let length: number
  let kindAt: number
  if (first[5] === 0x39 && first[6] === 0x0d) {
    length = 9
    kindAt = 8
  } else if (
    first[5] === 0x31 &&
    first[6] !== undefined &&
    first[6] >= 0x30 &&
    first[6] <= 0x32 &&
    first[7] === 0x0d
  ) {
    length = 10 + (first[6] - 0x30)
    kindAt = 9
  } else {
    return null
  }
  if (first.length < kindAt + length) return null
  const shard = SUBSCRIPTION_KINDS.get(
    first.toString('latin1', kindAt, kindAt + length).toLowerCase(),
  )
  if (shard === undefined) return null
  // The count is the last line, `:<digits>\r\n`: read from the frame's end.
  const last = parts[parts.length - 1] as Buffer
  const tail =
    last.length >= EDGE || parts.length === 1
      ? last.subarray(Math.max(0, last.length - EDGE))
      : Buffer.concat(parts.map((part) => part.subarray(Math.max(0, part.length - EDGE)))).subarray(
          -EDGE,
        )
  if (tail.length < 4 || tail[tail.length - 2] !== 0x0d || tail[tail.length - 1] !== 0x0a)
    return null
  const lineStart = tail.lastIndexOf(0x0a, tail.length - 3) + 1
  if (lineStart <= 0 || tail[lineStart] !== 0x3a) return null
  let count = 0
  for (let i = lineStart + 1; i < tail.length - 2; i++) {
    const digit = (tail[i] as number) - 0x30
    if (digit < 0 || digit > 9) return null
    count = count * 10 + digit
  }
  return lineStart + 1 < tail.length - 2 ? { shard, count } : null
}

/** The frame's first EDGE bytes (all of it if shorter), copied only when split. */
function head(parts: readonly Buffer[]): Buffer {
  const first = parts[0]
  if (first === undefined) return Buffer.alloc(0)
  if (first.length >= EDGE || parts.length === 1) return first
  const pieces: Buffer[] = []
  let length = 0
  for (const part of parts) {
    if (length >= EDGE) break
    pieces.push(part.subarray(0, EDGE - length))
    length += Math.min(part.length, EDGE - length)
  }
  return Buffer.concat(pieces)
}

function isSimple(parts: readonly Buffer[], reply: Buffer): boolean {
  return head(parts).equals(reply)
}
