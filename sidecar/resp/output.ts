import type { Socket } from 'node:net'
import { viewAt } from '../../shared/buffer-view.js'
import { copyBytes, putBytes } from '../../shared/bytes.js'
import { isLent } from '../../shared/socket-read.js'
import { SocketWriter } from '../../shared/socket-write.js'
import { keepSpare, takeSpare } from '../../shared/spare-buffer.js'
import { BULK_COPY_THRESHOLD, bulkHeader } from './encoder.js'

const CR = 13
const LF = 10

/** Bytes of slab a connection writes small replies into before one socket write. */
const SLAB_SIZE = 16 * 1024
/** Below this much room left after a flush the kernel did not take whole, a new slab is taken. */
const COPY_LIMIT = BULK_COPY_THRESHOLD
/** The most a held batch in a spare grows to before it is sent (see Output). */
const BATCH_MAX = 256 * 1024
/**
 * A part in hand at least this long is written by reference, after the
 * batch before it, instead of being copied next to it: copying it would cost
 * more than the system call it saves.
 */
const OWN_COPY_MAX = 64 * 1024
const CRLF = Buffer.from('\r\n')

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
 * A connection's outgoing bytes, as Redis keeps a reply buffer: replies are
 * copied into a slab and a batch goes out in one write (a SocketWriter's,
 * straight to the socket's handle), instead of one write request per reply.
 *
 * A batch too large for the slab (a cached value of some KiB) moves to a
 * larger buffer, the process's spare (shared/spare-buffer.ts) or, for a
 * socket whose write may be left queued, one of its own size (#bigBuffer),
 * with every reply after it until it is sent: at once when the reply is complete,
 * or, while the connection holds its output (`hold`, over the replies to one
 * received chunk), when it is released or passes BATCH_MAX, so a pipeline of
 * large hits goes out in one write or a few, as Redis writes a client's
 * replies with one writev of up to 64 KiB or more. Sent before the next
 * client's chunk is read, the spare is free again for it while the kernel
 * takes every write at once. A part in hand of OWN_COPY_MAX or more is
 * written by reference after what precedes it.
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
  #slab: Buffer = Buffer.allocUnsafe(SLAB_SIZE)
  // The slab's ArrayBuffer and offset, read once per slab: each flush's view
  // is made over them (viewAt), not by subarray, which pays a species lookup
  // and those two getters on every write.
  #slabBuffer = this.#slab.buffer
  #slabOffset = this.#slab.byteOffset
  /** Where this batch is written: the slab, or a spare it outgrew (see #room). */
  #buf: Buffer = this.#slab
  /** The batch: #buf[#start, #end). */
  #start = 0
  #end = 0
  /** While the batch is in a spare: where the slab's free room starts. */
  #slabAt = 0
  #holding = false
  #due = false

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

  /**
   * Until `release`, a batch in a spare is not sent after each reply but
   * with the ones after it: for the replies to one received chunk.
   */
  hold(): void {
    this.#holding = true
  }

  /** Ends `hold`: a batch in a spare is sent now (the slab's waits for flushSoon). */
  release(): void {
    this.#holding = false
    if (this.#buf !== this.#slab) this.#sendSpare()
  }

  write(part: Uint8Array): void {
    const length = part.length
    if (length >= OWN_COPY_MAX) {
      this.flush()
      this.#writer.write(part)
      return
    }
    if (this.#end + length > this.#buf.length) this.#room(length)
    putBytes(this.#buf, part, this.#end)
    this.#end += length
    this.#written()
  }

  /** `bytes[start, end)`, as `write` would write that view, without making it. */
  writeFrom(bytes: Buffer, start: number, end: number): void {
    const length = end - start
    // Lent bytes are valid only now: copied whatever their size.
    if (length >= OWN_COPY_MAX && !isLent(bytes)) {
      this.write(bytes.subarray(start, end))
      return
    }
    if (this.#end + length > this.#buf.length) this.#room(length)
    // Most replies (+OK, an integer) are short: copied with no view made.
    this.#end = copyBytes(bytes, start, end, this.#buf, this.#end)
    this.#written()
  }

  /** A bulk reply of `value`: header, bytes and CRLF, with no intermediate buffer. */
  writeBulk(value: Uint8Array): void {
    const length = value.length
    const header = bulkHeader(length)
    if (length >= OWN_COPY_MAX && !isLent(value)) {
      this.write(header)
      this.write(value)
      this.write(CRLF)
      return
    }
    const size = header.length + length + 2
    if (this.#end + size > this.#buf.length) this.#room(size)
    this.#end = putBulk(this.#buf, this.#end, header, value)
    this.#written()
  }

  /**
   * A bulk reply of a cached value, copied from the cache (`copy`, as
   * ReadThrough.copyHit) straight into the batch, whatever its size: the
   * cache may move its bytes before a write by reference completes.
   */
  writeBulkFrom(length: number, source: HitSource, slot: number): void {
    const header = bulkHeader(length)
    const size = header.length + length + 2
    if (this.#end + size > this.#buf.length) this.#room(size)
    this.#end = putBulkFrom(this.#buf, this.#end, header, source, slot)
    this.#written()
  }

  /**
   * Room for `size` more bytes after the batch. In the slab: the slab from
   * its start when they fit in one (the batch so far sent first, as
   * before); otherwise the batch moves to a spare with room for them, where
   * it stays until sent. In a spare: a larger one, up to BATCH_MAX; past
   * it, the spare's batch is sent and the bytes go where a new batch would.
   * Written as three (the batch with the header, the value by reference,
   * the CRLF with the next batch) from a buffer of its own, a 16 KiB cached
   * value cost 40 µs of CPU per GET at pipeline 1 against Redis's 14, at
   * 0.48x its rate; in one write from the spare, 19 against 14 µs, at 0.84x
   * (redis-benchmark -c 50).
   */
  #room(size: number): void {
    const batch = this.#end - this.#start
    if (this.#buf === this.#slab) {
      if (batch + size <= SLAB_SIZE) {
        this.#renew()
        return
      }
      const spare = this.#bigBuffer(batch + size)
      if (batch > 0) copyBytes(this.#slab, this.#start, this.#end, spare, 0)
      // The slab's batch is in the spare now: its room starts where it began.
      this.#slabAt = this.#start
      this.#buf = spare
      this.#start = 0
      this.#end = batch
      return
    }
    if (batch + size <= BATCH_MAX) {
      const larger = this.#bigBuffer(Math.min(BATCH_MAX, Math.max(batch + size, 2 * batch)))
      copyBytes(this.#buf, 0, batch, larger, 0)
      // Never written: free to keep.
      keepSpare(this.#buf)
      this.#buf = larger
      return
    }
    this.#sendSpare()
    this.#room(size)
  }

  /**
   * A buffer for a batch the slab cannot hold: the spare when its write will
   * leave at once, to a plain socket with nothing queued; else one of its
   * own size, since a write left queued holds its whole buffer (a TLS
   * socket's writes always complete later) and must not hold a spare many
   * times its bytes. The unsent bound (maxUnsentBytes) counts bytes, so a
   * client that stops reading holds at most one spare beyond it.
   */
  #bigBuffer(size: number): Buffer {
    const writer = this.#writer
    return writer.direct && writer.pending === 0 ? takeSpare(size) : Buffer.allocUnsafe(size)
  }

  /** After each write: a batch in a spare goes out now unless the output is held. */
  #written(): void {
    if (this.#buf !== this.#slab && !this.#holding) this.#sendSpare()
  }

  /** Writes the batch in the spare, now, and goes back to the slab. */
  #sendSpare(): void {
    const spare = this.#buf
    const length = this.#end
    this.#buf = this.#slab
    this.#start = this.#slabAt
    this.#end = this.#slabAt
    if (this.#socket.destroyed) {
      keepSpare(spare)
      return
    }
    const writer = this.#writer
    writer.write(viewAt(spare.buffer, spare.byteOffset, length))
    if (writer.pending === 0) {
      // Taken at once: neither it nor any part of the slab is held now.
      keepSpare(spare)
      this.#start = 0
      this.#end = 0
    } else if (this.#slab.length - this.#end < COPY_LIMIT) {
      this.#renew()
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
    if (this.#buf !== this.#slab) {
      this.#sendSpare()
      return
    }
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
    this.#buf = this.#slab
    this.#start = 0
    this.#end = 0
  }
}
