import type { Socket } from 'node:net'
import { viewAt } from '../../shared/buffer-view.js'
import { copyBytes, putBytes } from '../../shared/bytes.js'
import { SocketWriter } from '../../shared/socket-write.js'
import { keepSpare, takeSpare } from '../../shared/spare-buffer.js'
import { BULK_COPY_THRESHOLD, bulkHeader } from './encoder.js'

const CR = 13
const LF = 10

/** Bytes of slab a connection writes small replies into before one socket write. */
const SLAB_SIZE = 16 * 1024
/** Parts at least this long do not go into the slab (see #own). */
const COPY_LIMIT = BULK_COPY_THRESHOLD
/**
 * A part in hand at least this long is written by reference, after the
 * batch before it, instead of being copied next to it: copying it would cost
 * more than the system call it saves.
 */
const OWN_COPY_MAX = 64 * 1024
const CRLF = Buffer.from('\r\n')
const EMPTY = Buffer.alloc(0)

/** Where a cached value is copied from (ReadThrough.copyHit). */
type HitSource = { copyHit(slot: number, target: Uint8Array, offset: number): number }

/** `header`, `value` and CRLF into `target` at `at`; the offset after them. */
function putBulk(target: Uint8Array, at: number, header: Buffer, value: Uint8Array): number {
  putBytes(target, header, at)
  at += header.length
  putBytes(target, value, at)
  at += value.length
  target[at++] = CR
  target[at++] = LF
  return at
}

/** As putBulk, the value copied from the cache's `slot`. */
function putBulkFrom(
  target: Uint8Array,
  at: number,
  header: Buffer,
  source: HitSource,
  slot: number,
): number {
  putBytes(target, header, at)
  at = source.copyHit(slot, target, at + header.length)
  target[at++] = CR
  target[at++] = LF
  return at
}

// Outputs with bytes to send at the end of this loop turn (see flushSoon).
let due: Output[] = []
let dueScheduled = false

function flushDue(): void {
  dueScheduled = false
  const outputs = due
  due = []
  for (const output of outputs) output.flush()
}

/**
 * A connection's outgoing bytes, as Redis keeps a reply buffer: small replies
 * are copied into a slab and a batch goes out in one write (a SocketWriter's,
 * straight to the socket's handle), instead of one write request per reply.
 * Large parts (a big cached value) are written by reference after whatever
 * precedes them.
 *
 * A flushed region stays held by the writer (libuv, or the socket's stream)
 * until written; the next batch starts after it, and a fresh slab is taken
 * when the rest is too small. When the kernel took every byte at once
 * (nothing pending), no part is held any more and the next batch starts at
 * the beginning again.
 */
export class Output {
  readonly #socket: Socket
  readonly #writer: SocketWriter
  #slab = Buffer.allocUnsafe(SLAB_SIZE)
  // The slab's ArrayBuffer and offset, read once per slab: each flush's view
  // is made over them (viewAt), not by subarray, which pays a species lookup
  // and those two getters on every write.
  #slabBuffer = this.#slab.buffer
  #slabOffset = this.#slab.byteOffset
  #start = 0
  #end = 0
  #due = false
  /** The buffer #own gave, until #sendOwned writes it. */
  #owned: Buffer = EMPTY

  /**
   * @param onDrain called when bytes the kernel could not take at once have
   *   all been written (see SocketWriter), as the socket's 'drain'.
   */
  constructor(socket: Socket, onDrain: () => void = () => {}) {
    this.#socket = socket
    this.#writer = new SocketWriter(socket, onDrain)
  }

  /** Bytes written and not yet flushed to the socket. */
  get buffered(): number {
    return this.#end - this.#start
  }

  /** Bytes flushed to the socket and not yet taken by the kernel. */
  get unsent(): number {
    return this.#writer.pending
  }

  write(part: Uint8Array): void {
    const length = part.length
    if (length >= COPY_LIMIT) {
      if (length < OWN_COPY_MAX) {
        const at = this.#own(length)
        putBytes(this.#owned, part, at)
        this.#sendOwned(at + length)
        return
      }
      this.flush()
      this.#writer.write(part)
      return
    }
    if (this.#end + length > this.#slab.length) this.#renew()
    putBytes(this.#slab, part, this.#end)
    this.#end += length
  }

  /** `bytes[start, end)`, as `write` would write that view, without making it. */
  writeFrom(bytes: Buffer, start: number, end: number): void {
    const length = end - start
    if (length >= COPY_LIMIT) {
      this.write(bytes.subarray(start, end))
      return
    }
    if (this.#end + length > this.#slab.length) this.#renew()
    // Most replies (+OK, an integer) are short: copied with no view made.
    this.#end = copyBytes(bytes, start, end, this.#slab, this.#end)
  }

  /** A bulk reply of `value`: header, bytes and CRLF, with no intermediate buffer. */
  writeBulk(value: Uint8Array): void {
    const length = value.length
    const header = bulkHeader(length)
    const size = header.length + length + 2
    if (length < COPY_LIMIT) {
      if (this.#end + size > this.#slab.length) this.#renew()
      this.#end = putBulk(this.#slab, this.#end, header, value)
    } else if (length < OWN_COPY_MAX) {
      const at = this.#own(size)
      this.#sendOwned(putBulk(this.#owned, at, header, value))
    } else {
      this.write(header)
      this.write(value)
      this.write(CRLF)
    }
  }

  /**
   * A bulk reply of a cached value, copied from the cache (`copy`, as
   * ReadThrough.copyHit) straight into the slab; a large one into a buffer
   * with the batch before it, written at once (see #own): a copy is made
   * either way, since the cache may move its bytes before a write by
   * reference completes.
   */
  writeBulkFrom(length: number, source: HitSource, slot: number): void {
    const header = bulkHeader(length)
    const size = header.length + length + 2
    if (length < COPY_LIMIT) {
      if (this.#end + size > this.#slab.length) this.#renew()
      this.#end = putBulkFrom(this.#slab, this.#end, header, source, slot)
    } else {
      const at = this.#own(size)
      this.#sendOwned(putBulkFrom(this.#owned, at, header, source, slot))
    }
  }

  /**
   * A reply too large for the slab, whatever the slab holds: the batch not
   * yet flushed is moved to the start of a buffer (the spare) with room for
   * `extra` more bytes, to be written from the returned offset and sent by
   * #sendOwned, in one system call (Redis writes a large reply with what
   * precedes it in one writev). Written as three (the batch with the
   * header, the value by reference, the CRLF with the next batch) from a
   * buffer of its own, a 16 KiB cached value cost 40 µs of CPU per GET at
   * pipeline 1 against Redis's 14, at 0.48x its rate; assembled here, 19
   * against 14 µs, at 0.84x (redis-benchmark -c 50).
   */
  #own(extra: number): number {
    const batch = this.#end - this.#start
    const owned = takeSpare(batch + extra)
    if (batch > 0) copyBytes(this.#slab, this.#start, this.#end, owned, 0)
    this.#start = this.#end
    this.#owned = owned
    return batch
  }

  /** Writes the first `length` bytes of the buffer #own gave, now. */
  #sendOwned(length: number): void {
    const owned = this.#owned
    this.#owned = EMPTY
    if (this.#socket.destroyed) {
      keepSpare(owned)
      return
    }
    const writer = this.#writer
    writer.write(viewAt(owned.buffer, owned.byteOffset, length))
    if (writer.pending === 0) {
      // Taken at once: neither it nor any part of the slab is held now.
      keepSpare(owned)
      this.#start = 0
      this.#end = 0
    }
  }

  /**
   * Sends what was written once this loop turn's I/O has been read (a
   * setImmediate shared by every connection), as Redis writes its clients'
   * replies before it next waits for events: every client read in one turn
   * is answered in one run of writes, so the peer wakes once for many of
   * them instead of once per write.
   */
  flushSoon(): void {
    if (this.#end === this.#start || this.#due) return
    this.#due = true
    due.push(this)
    if (!dueScheduled) {
      dueScheduled = true
      setImmediate(flushDue)
    }
  }

  /** Sends what was written since the last flush. */
  flush(): void {
    this.#due = false
    if (this.#end === this.#start) return
    if (this.#socket.destroyed) {
      this.#start = this.#end
      return
    }
    const writer = this.#writer
    writer.write(viewAt(this.#slabBuffer, this.#slabOffset + this.#start, this.#end - this.#start))
    if (writer.pending === 0) {
      // The kernel took every byte at once (the usual case): nothing holds
      // any part of the slab now, so the next batch reuses it from the
      // start. A fresh slab per few batches was tens of megabytes a second
      // of buffers for V8 to account, which set off its full collections.
      this.#start = 0
      this.#end = 0
      return
    }
    this.#start = this.#end
    if (this.#slab.length - this.#end < COPY_LIMIT) this.#renew()
  }

  #renew(): void {
    this.flush()
    // Emptied into the kernel at once: the same slab serves again.
    if (this.#end === 0) return
    this.#slab = Buffer.allocUnsafe(SLAB_SIZE)
    this.#slabBuffer = this.#slab.buffer
    this.#slabOffset = this.#slab.byteOffset
    this.#start = 0
    this.#end = 0
  }
}
