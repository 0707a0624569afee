import type { Socket } from 'node:net'
import { Fifo } from '../shared/fifo.js'
import { ReplyFramer } from '../shared/redis/reply-framer.js'
import type { RedisForwarder, ReplyStream } from '../shared/redis/source.js'
import type { Reply } from './commands/types.js'
import { command as encodeCommand, error } from './resp/encoder.js'

/** A command sent on the dedicated connection, owed its reply's frame. */
type Owed = {
  resolve(reply: Reply): void
  evict: (() => void) | undefined
  stream: ReplyStream | undefined
  /** Part of its reply went to `stream`: if the connection goes, the client's must too. */
  streaming: boolean
}

/** A reply that has come this far without ending is relayed as it arrives (see ReplyStream). */
const STREAM_AFTER = 256 * 1024

export type PinnedOptions = {
  forwarder: RedisForwarder
  resp3: boolean
  /** A frame no command is owed (a message of a subscription, MONITOR's lines): written in order. */
  onUnsolicited(parts: Buffer[]): void
  /** The backend closed the connection (or it could not be made): the client's must close too. */
  onClosed(): void
}

const UNAVAILABLE = error('ERR backing redis unavailable (redis-proxy)')

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
  readonly #framer = new ReplyFramer()
  #closed = false
  #paused = false

  constructor(options: PinnedOptions) {
    this.#options = options
    options.forwarder.dedicated(options.resp3).then(
      (socket) => this.#attach(socket),
      () => this.#fail(),
    )
  }

  /** Sends one command; resolves with its reply's bytes (or an error reply if the connection goes). */
  send(
    args: readonly Uint8Array[],
    evict: (() => void) | undefined,
    stream?: ReplyStream,
  ): Promise<Reply> {
    if (this.#closed) return Promise.resolve(UNAVAILABLE)
    evict?.()
    const bytes = encodeCommand(args)
    return new Promise<Reply>((resolve) => {
      this.#owed.push({ resolve, evict, stream, streaming: false })
      if (this.#socket === null) this.#pending.push(bytes)
      else this.#socket.write(bytes)
    })
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
    if (owed === undefined) {
      this.#options.onUnsolicited(parts)
      return
    }
    owed.evict?.()
    owed.resolve(parts)
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
