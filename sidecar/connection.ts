import type { Socket } from 'node:net'
import { Fifo } from '../shared/fifo.js'
import type { Logger } from '../shared/log.js'
import { isLent, readChunks } from '../shared/socket-read.js'
import { soon } from '../shared/soon.js'
import { getRefusal, refusal } from './access.js'
import { resolve } from './commands/index.js'
import { readKey } from './commands/read.js'
import type { CommandContext, Later, Reply, ServerView, Session } from './commands/types.js'
import { forwardCommand, pinnedCommand } from './forward.js'
import { Pinned } from './pinned.js'
import { ProtocolError, RequestDecoder } from './resp/decoder.js'
import { bulkReply, encodeBulk, error } from './resp/encoder.js'
import { Output } from './resp/output.js'

/** Bounds that keep one client from holding the process's memory. */
export type ConnectionLimits = {
  /**
   * Bytes of one request held while it arrives (Redis's
   * client-query-buffer-limit). Beyond it the client gets a protocol error.
   * @default 1073741824
   */
  maxRequestBytes: number
  /**
   * Replies owed but not yet answered (slow backend reads), or bytes written
   * but not yet taken by the client, beyond which its socket is no longer
   * read until they drain: a client that writes faster than it reads is
   * paused, not buffered without bound.
   * @default 4096
   */
  maxPendingReplies: number
  /** @default 4194304 */
  maxUnsentBytes: number
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  maxRequestBytes: 1024 * 1024 * 1024,
  maxPendingReplies: 4096,
  maxUnsentBytes: 4 * 1024 * 1024,
})

const END_GRACE_MS = 2000
const GET = Buffer.from('GET')
const EMPTY = Buffer.alloc(0)

/**
 * A reply slot in the per-connection FIFO; `reply` is set once the answer is
 * known. A large forwarded reply comes in parts before its answer (see
 * ReplyStream): those that came while it was not first in line wait in
 * `early`.
 */
type Slot = { reply: Reply | undefined; early: Buffer[] | null }

/** What a LaterSlot asks of its connection (see Connection.#slotOwner). */
type SlotOwner = {
  settle(slot: Slot, reply: Reply, startedAt: number): void
  settleBulk(slot: Slot, value: Uint8Array, startedAt: number): void
  settleIn(slot: Slot, chunk: Buffer, start: number, end: number, startedAt: number): void
  write(slot: Slot, parts: Buffer[], resume: () => void): boolean
  abort(reason: string): void
}

/**
 * The slot of an answer that comes by callback (CommandContext.later): the
 * slot, its settle and its large-reply stream in one object, one allocation
 * per forwarded command.
 */
class LaterSlot implements Slot, Later {
  reply: Reply | undefined = undefined
  early: Buffer[] | null = null
  constructor(
    readonly owner: SlotOwner,
    /** When the command's chunk arrived, for its duration. */
    readonly startedAt: number,
  ) {}
  settle(reply: Reply): void {
    this.owner.settle(this, reply, this.startedAt)
  }
  settleBulk(value: Uint8Array): void {
    this.owner.settleBulk(this, value, this.startedAt)
  }
  settleIn(chunk: Buffer, start: number, end: number): void {
    this.owner.settleIn(this, chunk, start, end, this.startedAt)
  }
  write(parts: Buffer[], resume: () => void): boolean {
    return this.owner.write(this, parts, resume)
  }
  abort(reason: string): void {
    this.owner.abort(reason)
  }
}

/**
 * One client socket: decode -> dispatch -> replies in request order.
 *
 * Cache hits are answered synchronously; a reply that must wait for the
 * backend takes a slot in a FIFO, and every later reply queues behind it, so
 * replies leave in request order even when backend answers do not arrive in
 * order, while the reads themselves run in parallel. All replies produced by
 * one incoming chunk go out in one socket write (see Output): one syscall
 * for a whole pipeline of hits, made once the loop turn's reads are done
 * (Output.flushSoon), as Redis writes replies before it next polls.
 */
export class Connection {
  readonly session: Session
  readonly #socket: Socket
  readonly #output: Output
  readonly #ctx: CommandContext
  readonly #decoder = new RequestDecoder()
  readonly #limits: ConnectionLimits
  readonly #log: Logger
  readonly #server: ServerView
  // Replies not yet written, oldest first.
  #slots = new Fifo<Slot>()
  #paused = false
  #flushQueued = false
  /** The part of a chunk not decoded yet because replies piled up (see #feed). */
  #held: Buffer | null = null
  /** No more commands are read: after QUIT, a protocol error, or shutdown. */
  #ending = false
  #closed = false
  /** The client's own backend connection, once it has one (see #pin). */
  #pinned: Pinned | null = null
  #unpin: (() => void) | undefined
  readonly #onClosed: () => void
  // Request durations: commands of one chunk arrived together; those answered
  // at once (hits) are recorded together after it, for one clock read, and
  // each one that waits on the backend when its answer comes.
  #chunkStartedAt = 0
  #answeredInChunk = 0
  /** Runs until the session is established (see #checkHandshake); undefined after, or if never armed. */
  #handshakeTimer: NodeJS.Timeout | undefined
  /** Bytes in slots' `early` parts. */
  #earlyBytes = 0
  /** Backend connections paused because this client was full: resumed when it drains. */
  #resumers: (() => void)[] = []

  constructor(options: {
    socket: Socket
    id: number
    server: ServerView
    log: Logger
    limits?: Partial<ConnectionLimits>
    idleTimeoutMs?: number
    /**
     * Milliseconds the client has to establish its session (its first
     * complete command, or its first successful AUTH or HELLO AUTH when the
     * gate requires a password) before the connection is closed; 0 or
     * undefined never. Apart from the idle timeout, which is Redis's
     * `timeout` and off by default: this one holds even then, so connections
     * that never send anything cannot keep every client slot.
     */
    handshakeTimeoutMs?: number
    onClosed: () => void
  }) {
    const socket = options.socket
    this.#socket = socket
    // Bytes the kernel did not take at once drain as the socket's own do.
    this.#output = new Output(socket, () => this.#onDrain())
    this.#server = options.server
    this.#log = options.log
    this.#limits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits }
    this.#onClosed = options.onClosed
    this.session = {
      id: options.id,
      addr: `${socket.remoteAddress}:${socket.remotePort}`,
      ip: socket.remoteAddress ?? '',
      // An IPv4 client of a dual-stack listener sees the IPv4 address.
      local: {
        host: (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:(?=\d+\.)/, ''),
        port: socket.localPort ?? 0,
      },
      user: options.server.gate.initialUser(),
      resp3: false,
      name: null,
      libName: null,
      libVer: null,
      quitting: false,
      writesInFlight: 0,
      established: false,
    }
    this.#ctx = {
      session: this.session,
      server: options.server,
      hit: this.#hit,
      hitSlot: this.#hitSlot,
      pin: this.#pin,
      later: this.#later,
      wire: () => this.#decoder.wire(),
    }

    readChunks(socket, (chunk: Buffer) => this.#onData(chunk))
    socket.on('drain', () => this.#onDrain())
    // The client is done sending (half-close, as `nc -N` does): answer what it
    // sent, then close, as Redis does. Needs the server's allowHalfOpen.
    socket.on('end', () => this.shutdown())
    // A reset by the client is routine; the socket closes right after.
    socket.on('error', () => {})
    socket.on('close', () => this.#onClose())
    const idleTimeoutMs = options.idleTimeoutMs
    if (idleTimeoutMs !== undefined && idleTimeoutMs > 0) {
      socket.on('timeout', () => {
        // As Redis's `timeout`: a client waiting on a reply (blocked in
        // BLPOP, say) or subscribed or in MONITOR is not idle, whatever
        // the time since it last sent or received; it is looked at again
        // after another full period. Waiting means with nothing left to
        // take: one that stopped reading what it is sent (a large reply
        // half relayed) is idle, as Redis closes it.
        const waiting = this.#slots.length > 0 && this.#unsentBytes() === 0
        if (waiting || this.#pinned?.quiet() === true) {
          socket.setTimeout(idleTimeoutMs)
          return
        }
        socket.destroy()
      })
      socket.setTimeout(idleTimeoutMs)
    }
    if (options.handshakeTimeoutMs !== undefined && options.handshakeTimeoutMs > 0) {
      this.#handshakeTimer = setTimeout(this.#onHandshakeTimeout, options.handshakeTimeoutMs)
      this.#handshakeTimer.unref()
    } else {
      this.session.established = true
    }
  }

  #onDrain(): void {
    this.#maybeResume()
    this.#relieve()
  }

  readonly #onHandshakeTimeout = (): void => {
    this.#handshakeTimer = undefined
    this.#log.debug('resp client closed before its handshake', { client: this.session.addr })
    this.#socket.destroy()
  }

  /**
   * Around each command while the handshake bound runs. With no password
   * required, a complete command establishes the session (bytes alone do
   * not, so a client that trickles a partial command is still cut off);
   * otherwise only a successful login does (see logIn), so a client that
   * sends commands but never authenticates is cut off too. The timer stops
   * once either has set `established`.
   */
  #checkHandshake(): void {
    if (!this.#server.gate.requiresAuth()) this.session.established = true
    if (!this.session.established) return
    clearTimeout(this.#handshakeTimer)
    this.#handshakeTimer = undefined
  }

  /** Stops reading; answers what was already received, then closes. */
  shutdown(): void {
    if (this.#ending) return
    this.#ending = true
    // A client on its own backend connection may be waiting on a blocking
    // pop or a subscription that never answers: as Redis drops a client
    // that closes while blocked, it gets a grace period, not forever.
    if (this.#pinned !== null) setTimeout(() => this.#socket.destroy(), END_GRACE_MS).unref()
    this.#endIfFlushed()
  }

  destroy(): void {
    this.#socket.destroy()
  }

  #onData(chunk: Buffer): void {
    if (this.#ending) return
    this.#feed(chunk)
    if (this.#held !== null && !this.#paused) {
      this.#paused = true
      this.#socket.pause()
    }
  }

  /**
   * Decodes and answers `chunk` until it is used up or the replies owed pass
   * a bound (checked after every command, see #backlogged); the rest is held
   * and the socket not read until the client has taken its replies.
   */
  #feed(chunk: Buffer): void {
    const record = this.#server.recordDuration
    if (record !== undefined) this.#chunkStartedAt = performance.now()
    // The replies to this chunk's commands leave together (see Output.hold).
    this.#output.hold()
    try {
      const consumed = this.#decoder.push(chunk, this.#onCommand, this.#onGet, this.#onGets)
      this.#held = consumed < chunk.length ? chunk.subarray(consumed) : null
      if (this.#decoder.bufferedBytes > this.#limits.maxRequestBytes) {
        this.#fail('ERR Protocol error: too big request')
      }
    } catch (err) {
      this.#held = null
      if (err instanceof ProtocolError) {
        this.#fail(`ERR Protocol error: ${err.message}`)
      } else {
        this.#log.error('resp connection failed', { error: String(err) })
        this.#fail('ERR internal error')
      }
    } finally {
      this.#output.release()
    }
    if (record !== undefined && this.#answeredInChunk > 0) {
      record(this.#chunkStartedAt, this.#answeredInChunk)
    }
    this.#answeredInChunk = 0
    this.#output.flushSoon()
  }

  /** Whether replies owed or unsent have passed their bound: take no more commands now. */
  #backlogged(): boolean {
    return (
      this.#slots.length > this.#limits.maxPendingReplies ||
      this.#unsentBytes() > this.#limits.maxUnsentBytes
    )
  }

  #unsentBytes(): number {
    return this.#output.unsent + this.#output.buffered + this.#earlyBytes
  }

  /**
   * CommandContext.later: a slot for an answer that comes by callback. A
   * large reply's parts written through it go out at once when everything
   * before it has; otherwise they wait in its slot. Either way, past
   * maxUnsentBytes the backend connection is paused until the client takes
   * them, so memory is bounded by what the client can take.
   */
  readonly #later = (): Later => {
    const slot = new LaterSlot(this.#slotOwner, this.#chunkStartedAt)
    this.#slots.push(slot)
    if (this.#backlogged()) this.#decoder.stop()
    return slot
  }

  /** What every LaterSlot of this connection asks of it: made once, not per command. */
  readonly #slotOwner: SlotOwner = {
    settle: (slot, reply, startedAt) => {
      this.#server.recordDuration?.(startedAt)
      this.#settle(slot, reply)
    },
    settleBulk: (slot, value, startedAt) => {
      this.#server.recordDuration?.(startedAt)
      if (!this.#writableNow(slot)) {
        // Kept: a lent value is copied (see Later.settleBulk).
        this.#settle(slot, isLent(value) ? encodeBulk(value) : bulkReply(value))
        return
      }
      // First in line: its bytes go into the output now, and the slot
      // settles as answered (nothing left to write) for those behind it.
      this.#output.writeBulk(value)
      this.#settle(slot, EMPTY)
    },
    settleIn: (slot, chunk, start, end, startedAt) => {
      this.#server.recordDuration?.(startedAt)
      if (!this.#writableNow(slot)) {
        // Kept: a lent chunk's bytes are copied (see Later.settleIn).
        const reply = chunk.subarray(start, end)
        this.#settle(slot, isLent(chunk) ? Buffer.from(reply) : reply)
        return
      }
      // First in line, as settleBulk: the bytes go into the output now.
      this.#output.writeFrom(chunk, start, end)
      this.#settle(slot, EMPTY)
    },
    write: (slot, parts, resume) => {
      if (this.#closed) return true
      if (this.#slots.peek() === slot) {
        this.#write(parts)
        this.#output.flush()
      } else {
        slot.early ??= []
        for (const part of parts) {
          slot.early.push(part)
          this.#earlyBytes += part.length
        }
      }
      if (this.#unsentBytes() <= this.#limits.maxUnsentBytes) return true
      this.#resumers.push(resume)
      return false
    },
    abort: (reason) => {
      // Half a reply is on its way: nothing after it can be understood.
      this.#log.info('resp client closed: its reply could not be completed', {
        client: this.session.addr,
        reason,
      })
      this.#socket.destroy()
    },
  }

  // Arrow properties: one function per connection, not one per command.
  readonly #onCommand = (args: Buffer[]): void => this.#execute(args, EMPTY, 0, 0)
  // GET as the decoder's fast path hands it over: no argument buffers at all.
  readonly #onGet = (chunk: Buffer, start: number, end: number): void =>
    this.#execute(null, chunk, start, end)
  // A pipelined run of GETs, before any of them: their cache entries are
  // brought in together. It changes nothing, so no rule of #execute needs to
  // hold for it; it is skipped where those GETs cannot reach the cache (a
  // client on its own backend connection, or not yet past its handshake).
  readonly #onGets = (chunk: Buffer, spans: Int32Array, count: number): void => {
    if (this.#pinned === null && this.session.established) {
      this.#server.service.prefetchBytes(chunk, spans, count)
    }
  }

  /**
   * Every command's one way in: a decoded command (`args`), or a canonical
   * GET of `key` that the decoder recognised (`args` null), answered by the
   * same readKey as the table's GET. A rule for every command goes here:
   * authentication and permissions are checked here, before the cache is
   * asked, so a hit is refused as a miss is.
   */
  #execute(args: Buffer[] | null, chunk: Buffer, start: number, end: number): void {
    if (this.#ending) return
    this.#server.totals.commands++
    if (this.#handshakeTimer !== undefined) this.#checkHandshake()
    let reply: Reply | Promise<Reply> | undefined
    try {
      if (this.#pinned !== null && !this.#pinned.idle()) {
        reply = pinnedCommand(this.#ctx, this.#pinned, args ?? [GET, chunk.subarray(start, end)])
      } else if (args === null) {
        const user = this.session.user
        // Refusals need the key as a string; a user who may read every key has none.
        reply =
          (user?.unrestricted === true
            ? undefined
            : getRefusal(user, chunk.toString('latin1', start, end))) ??
          readKey(this.#ctx, chunk, start, end)
      } else {
        const found = resolve(args)
        reply =
          found === null
            ? forwardCommand(this.#ctx, args)
            : !('command' in found)
              ? found
              : (refusal(this.session.user, found, args) ?? found.command.run(this.#ctx, args))
      }
    } catch (err) {
      this.#log.error('resp command failed', { error: String(err) })
      reply = error('ERR internal error')
    }
    // AUTH or HELLO AUTH may just have established the session.
    if (this.#handshakeTimer !== undefined) this.#checkHandshake()
    if (reply !== undefined) {
      this.#queue(reply)
    } else if (this.session.quitting) {
      // QUIT relayed on the client's own connection: its slot is taken (later).
      this.#ending = true
      this.#endIfFlushed()
    }
  }

  /**
   * The hot path (CommandContext.hit): a hit with nothing queued before it is
   * encoded straight into the output slab (undefined: already answered);
   * otherwise the reply, to queue behind what is owed.
   */
  /**
   * CommandContext.pin: moves this client onto a backend connection of its
   * own (sidecar/pinned.ts) and sends `args` there; every later command
   * follows it. Bounded by the server's MAX_BACKEND_CONNECTIONS.
   */
  readonly #pin = (args: readonly Buffer[]): Reply | Promise<Reply> | undefined => {
    const server = this.#server
    const forwarder = server.forwarder
    if (forwarder === undefined) return error('ERR no backing redis to forward to (redis-proxy)')
    if (this.#pinned === null) {
      const dedicated = server.dedicated
      if (dedicated.open >= dedicated.max) {
        return error(
          `ERR max number of backend connections reached (MAX_BACKEND_CONNECTIONS=${dedicated.max}) (redis-proxy)`,
        )
      }
      dedicated.open++
      let counted = true
      this.#pinned = new Pinned({
        forwarder,
        resp3: this.session.resp3,
        onUnsolicited: (parts) => this.#deliver(parts),
        onClosed: () => {
          if (counted) dedicated.open--
          counted = false
          // Redis's connection went (killed, restarted): so does the client's,
          // once it has what was owed; it reconnects as it would to Redis.
          this.shutdown()
        },
      })
      this.#unpin = () => {
        if (counted) dedicated.open--
        counted = false
      }
    }
    return pinnedCommand(this.#ctx, this.#pinned, args)
  }

  /** A frame of the dedicated connection no command is owed: after what is owed, in order. */
  #deliver(parts: Buffer[]): void {
    if (this.#closed) return
    if (this.#slots.length === 0) {
      this.#write(parts)
      if (!this.#flushQueued) {
        this.#flushQueued = true
        soon(this.#flushSettled)
      }
    } else {
      this.#slots.push({ reply: parts, early: null })
    }
    if (this.#backlogged()) this.#pinned?.pause()
  }

  /** Whether `slot`'s answer can go into the output now: first in line, nothing of it early. */
  #writableNow(slot: Slot): boolean {
    return !this.#closed && this.#slots.peek() === slot && slot.early === null
  }

  /** The client takes its bytes again: read the dedicated connection again. */
  #relieve(): void {
    if (this.#backlogged()) return
    this.#pinned?.resume()
    if (this.#resumers.length > 0) {
      const resumers = this.#resumers
      this.#resumers = []
      for (const resume of resumers) resume()
    }
  }

  readonly #hitSlot = (slot: number): Reply | undefined => {
    const service = this.#server.service
    const length = service.hitLength(slot)
    if (this.#slots.length > 0) {
      // Queued behind what is owed: its own copy (the slot may be reused).
      const value = Buffer.allocUnsafe(length)
      service.copyHit(slot, value, 0)
      return bulkReply(value)
    }
    if (!this.#closed) this.#output.writeBulkFrom(length, service, slot)
    this.#answeredInChunk++
    if (this.#backlogged()) this.#decoder.stop()
    return undefined
  }

  readonly #hit = (value: Uint8Array): Reply | undefined => {
    if (this.#slots.length > 0) return bulkReply(value)
    if (!this.#closed) this.#output.writeBulk(value)
    this.#answeredInChunk++
    if (this.#backlogged()) this.#decoder.stop()
    return undefined
  }

  #queue(reply: Reply | Promise<Reply>): void {
    if (this.session.quitting) this.#ending = true
    if (reply instanceof Promise) {
      const slot: Slot = { reply: undefined, early: null }
      this.#slots.push(slot)
      const record = this.#server.recordDuration
      const started = this.#chunkStartedAt
      reply.then(
        (answer) => {
          record?.(started)
          this.#settle(slot, answer)
        },
        (err: unknown) => {
          this.#log.error('resp command failed', { error: String(err) })
          this.#settle(slot, error('ERR internal error'))
        },
      )
    } else {
      this.#answeredInChunk++
      if (this.#slots.length === 0) this.#write(reply)
      else this.#slots.push({ reply, early: null })
    }
    if (this.#backlogged()) this.#decoder.stop()
    if (this.#ending) this.#endIfFlushed()
  }

  /** Replies, in order, to what came before; then a protocol error and the close. */
  #fail(message: string): void {
    this.#ending = true
    const reply = error(message)
    if (this.#slots.length === 0) this.#write(reply)
    else this.#slots.push({ reply, early: null })
    this.#endIfFlushed()
  }

  #settle(slot: Slot, reply: Reply): void {
    slot.reply = reply
    if (this.#closed) return
    const slots = this.#slots
    if (slots.peek() !== slot) return
    for (let next = slots.peek(); next !== undefined; next = slots.peek()) {
      // A large reply's parts that came while it waited its turn, then
      // (once it has ended) the rest of it.
      if (next.early !== null) this.#writeEarly(next)
      if (next.reply === undefined) break
      this.#write(next.reply)
      slots.shift()
    }
    // One backend read answers many waiting replies in the same turn: they
    // leave in one write (a microtask later) instead of one syscall each.
    if (!this.#flushQueued) {
      this.#flushQueued = true
      soon(this.#flushSettled)
    }
  }

  readonly #flushSettled = (): void => {
    this.#flushQueued = false
    if (this.#closed) return
    this.#output.flush()
    this.#maybeResume()
    this.#relieve()
    this.#endIfFlushed()
  }

  #writeEarly(slot: Slot): void {
    const early = slot.early as Buffer[]
    slot.early = null
    for (const part of early) this.#earlyBytes -= part.length
    this.#write(early)
  }

  #write(reply: Reply): void {
    if (this.#closed) return
    const output = this.#output
    if (Array.isArray(reply)) {
      for (const part of reply) output.write(part)
    } else {
      output.write(reply)
    }
  }

  #maybeResume(): void {
    if (
      !this.#paused ||
      this.#ending ||
      this.#slots.length > this.#limits.maxPendingReplies / 2 ||
      this.#output.unsent > this.#limits.maxUnsentBytes / 2
    ) {
      return
    }
    const held = this.#held
    if (held !== null) {
      this.#feed(held)
      // Stopped again: wait for the next drain or settled reply.
      if (this.#held !== null || this.#ending) return
    }
    this.#paused = false
    this.#socket.resume()
  }

  #endIfFlushed(): void {
    if (!this.#ending || this.#closed || this.#slots.length > 0) return
    const socket = this.#socket
    if (socket.writableEnded) return
    // Bytes still arriving are read and dropped, so the client's close is
    // seen; one that never closes its side is cut off after a grace period.
    socket.resume()
    this.#output.flush()
    socket.end()
    setTimeout(() => socket.destroy(), END_GRACE_MS).unref()
  }

  #onClose(): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#handshakeTimer)
    this.#handshakeTimer = undefined
    this.#slots = new Fifo<Slot>()
    this.#earlyBytes = 0
    // Backend connections paused for this client read again, its bytes dropped.
    const resumers = this.#resumers
    this.#resumers = []
    for (const resume of resumers) resume()
    // A transaction, a block or a subscription left on the backend ends with
    // its connection: the next client never sees it.
    this.#pinned?.close()
    this.#unpin?.()
    this.#pinned = null
    this.#onClosed()
  }
}
