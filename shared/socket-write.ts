import type { Socket } from 'node:net'
import { getSystemErrorName } from 'node:util'

/**
 * Writing a socket's bytes without Node's writable stream, the counterpart
 * of shared/socket-read.ts.
 *
 * `socket.write` goes through the stream's bookkeeping on every call
 * (`writeOrBuffer`, `_write`, a new write request, `onwrite`, and a
 * `process.nextTick` for its `afterWrite`) before the handle's `writeBuffer`
 * tries the kernel. At one reply per write (pipeline 1) that is a fixed cost
 * per request: a bare node:net server answering GETs at pipeline 1 spent
 * 2.45-2.67 against 2.67-2.95 µs of user time per request writing this way
 * (redis-benchmark -c 50, 400,000 requests, 4 alternated runs each, the
 * server pinned to one core).
 *
 * The handle's `writeBuffer` takes a write request made by Node's
 * `WriteWrap`, which only the `stream_wrap` binding exports. The request is
 * kept and used again while writes complete at once (the kernel took every
 * byte: the request was never handed to libuv); one that libuv queued is
 * left to it and a new one made for the next write. Where the binding is
 * missing or names things otherwise, or the socket is not a plain TCP socket
 * with a handle, every write is `socket.write`.
 *
 * Order. libuv keeps a stream's writes in the order they were handed to it,
 * and the writable stream hands a chunk to the handle at once when it holds
 * none; while it holds some (a write of its own still queued), a direct
 * write would overtake them, so it goes through `socket.write` too. A socket
 * still connecting, ended or destroyed is left to `socket.write` as well,
 * which buffers, refuses or drops as it always did.
 *
 * Activity. `socket.write` restarts the socket's idle timer (`setTimeout`)
 * on every write and again when a queued write completes, so a client that
 * only receives (a subscriber) is not idle; a direct write does the same.
 */

type WriteReq = {
  handle: unknown
  oncomplete: (this: WriteReq, status: number) => void
  async: boolean
  bytes: number
  buffer: Uint8Array | null
  writer: SocketWriter | null
}

/** What a direct write asks of the socket beyond its public API. */
type TimedSocket = Socket & {
  /** The idle timeout in ms, when `setTimeout` set one. */
  timeout?: number
  /** Restarts the idle timer, as net.Socket does on its own writes. */
  _unrefTimer?: () => void
}

type StreamHandle = {
  writeBuffer(req: WriteReq, bytes: Uint8Array): number
}

type Binding = {
  WriteWrap: new () => WriteReq
  streamBaseState: Int32Array
  kLastWriteWasAsync: number
}

function loadBinding(): Binding | null {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<Binding> }).binding(
      'stream_wrap',
    )
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = binding
    if (
      typeof WriteWrap !== 'function' ||
      !(streamBaseState instanceof Int32Array) ||
      typeof kLastWriteWasAsync !== 'number'
    ) {
      return null
    }
    return { WriteWrap, streamBaseState, kLastWriteWasAsync }
  } catch {
    return null
  }
}

let binding: Binding | null | undefined

function onComplete(this: WriteReq, status: number): void {
  const writer = this.writer
  const bytes = this.buffer?.length ?? 0
  this.buffer = null
  this.writer = null
  writer?.completed(bytes, status)
}

/**
 * A socket's writes, straight to its handle where it can (see above).
 * `onDrain` is called once after a write libuv had to queue, when it and
 * every write behind it (the stream's included) are written, as the
 * socket's own 'drain' after a write it buffered; never for a socket
 * destroyed or ended.
 */
export class SocketWriter {
  readonly #socket: TimedSocket
  readonly #handle: StreamHandle | null
  readonly #onDrain: () => void
  #req: WriteReq | null = null
  /** Bytes of direct writes libuv has queued and not yet written. */
  #queued = 0
  /** A direct write was queued: onDrain is owed once everything is written. */
  #owed = false
  /** The callback of a stream write made while onDrain is owed. */
  readonly #streamWritten = (): void => this.#drained()

  constructor(socket: Socket, onDrain: () => void) {
    if (binding === undefined) binding = loadBinding()
    this.#socket = socket
    this.#onDrain = onDrain
    const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle
    const plain = !(socket as Socket & { encrypted?: boolean }).encrypted
    this.#handle =
      binding !== null && plain && typeof handle?.writeBuffer === 'function'
        ? (handle as StreamHandle)
        : null
  }

  /** Whether writes go to the handle directly (for tests). */
  get direct(): boolean {
    return this.#handle !== null
  }

  /** Bytes written and not yet taken by the kernel: the stream's and the handle's. */
  get pending(): number {
    return this.#queued + this.#socket.writableLength
  }

  write(bytes: Uint8Array): void {
    const socket = this.#socket
    const handle = this.#handle
    if (
      handle === null ||
      socket.writableLength > 0 ||
      socket.connecting ||
      socket.writableEnded ||
      socket.destroyed ||
      (socket as unknown as { _handle: unknown })._handle !== handle
    ) {
      // While onDrain is owed, whichever of these writes and the queued
      // ones completes last calls it.
      if (this.#owed) socket.write(bytes, this.#streamWritten)
      else socket.write(bytes)
      return
    }
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = binding as Binding
    let req = this.#req
    if (req === null) {
      req = new WriteWrap()
      req.handle = handle
      req.oncomplete = onComplete
      req.async = false
      req.bytes = 0
      req.buffer = null
      req.writer = null
      this.#req = req
    }
    const err = handle.writeBuffer(req, bytes)
    if (err !== 0) {
      // The request may have been handed to libuv and disposed: not reused.
      this.#req = null
      socket.destroy(writeError(err))
      return
    }
    if (socket.timeout) socket._unrefTimer?.()
    if (streamBaseState[kLastWriteWasAsync] !== 0) {
      // libuv holds the request and reads `bytes` until it is done: both
      // stay referenced until its completion.
      req.async = true
      req.buffer = bytes
      req.writer = this
      this.#req = null
      this.#queued += bytes.length
      this.#owed = true
    }
  }

  /** A queued write's completion (from its request). */
  completed(bytes: number, status: number): void {
    this.#queued -= bytes
    const socket = this.#socket
    if (status < 0) {
      socket.destroy(writeError(status))
      return
    }
    // As net.Socket's own completions: nothing for a socket already gone or
    // ending, whose owner must not be told it may write again.
    if (socket.destroyed || socket.writableEnded) return
    if (socket.timeout) socket._unrefTimer?.()
    this.#drained()
  }

  /**
   * onDrain, once owed and nothing is left: neither queued direct writes
   * nor the stream's own bytes (a stream write that did not fill it emits
   * no 'drain' of its own).
   */
  #drained(): void {
    const socket = this.#socket
    if (!this.#owed || this.#queued > 0 || socket.writableLength > 0) return
    if (socket.destroyed || socket.writableEnded) return
    this.#owed = false
    this.#onDrain()
  }
}

function writeError(code: number): NodeJS.ErrnoException {
  const name = getSystemErrorName(code)
  const error: NodeJS.ErrnoException = new Error(`write ${name}`)
  error.errno = code
  error.code = name
  error.syscall = 'write'
  return error
}
