/**
 * What the bench's bare node:net floors (bare-resp.ts, bare-forward.ts)
 * share: finding where RESP lines and commands end, a socket's bytes kept
 * until their frame is whole, and replies gathered per socket and written
 * once per loop turn, after the turn's reads, as the sidecar's output does
 * (sidecar/resp/output.ts flushSoon; writes through shared/socket-write.ts).
 */
import type { Socket } from 'node:net'
import { copyBytes } from '../../shared/bytes.js'
import { SocketWriter } from '../../shared/socket-write.js'

const SLAB_BYTES = 64 * 1024
const CR = 13
const MINUS = 45
export const STAR = 42
export const DOLLAR = 36

/** Where the line starting at `at` ends (its CR), or -1 when not all of it is here. */
export function lineEnd(bytes: Buffer, at: number): number {
  const cr = bytes.indexOf(CR, at)
  return cr < 0 || cr + 1 >= bytes.length ? -1 : cr
}

/** The integer in `bytes[from, to)`: a count or a length, -1 for a nil. */
export function readInt(bytes: Buffer, from: number, to: number): number {
  if (bytes[from] === MINUS) return -readInt(bytes, from + 1, to)
  let n = 0
  for (let i = from; i < to; i++) n = n * 10 + (bytes[i] as number) - 48
  return n
}

/** Where the name of the command `frameCommand` last framed whole lies: `bytes[nameAt, nameAt + nameLength)`. */
export let nameAt = 0
export let nameLength = 0

/**
 * The end of the command at `at` (with `nameAt` and `nameLength` set), or
 * -1 when it is not all here yet. No allocation per command, so the floors
 * count none. Multibulk only, as the load tools send; anything else throws,
 * which ends the floor's process and the bench part with it.
 */
export function frameCommand(bytes: Buffer, at: number): number {
  if (bytes[at] !== STAR) throw new Error('bare floor: multibulk commands only')
  const headEnd = lineEnd(bytes, at)
  if (headEnd < 0) return -1
  const count = readInt(bytes, at + 1, headEnd)
  let cursor = headEnd + 2
  let name = 0
  let length0 = 0
  for (let arg = 0; arg < count; arg++) {
    if (cursor >= bytes.length) return -1
    if (bytes[cursor] !== DOLLAR) throw new Error('bare floor: bulk arguments only')
    const lenEnd = lineEnd(bytes, cursor)
    if (lenEnd < 0) return -1
    const length = readInt(bytes, cursor + 1, lenEnd)
    const body = lenEnd + 2
    if (body + length + 2 > bytes.length) return -1
    if (arg === 0) {
      name = body
      length0 = length
    }
    cursor = body + length + 2
  }
  nameAt = name
  nameLength = length0
  return cursor
}

/** The end of the frame at `at`, or -1 when it is not all here yet. */
export type Frame = (bytes: Buffer, at: number) => number

/** A socket's bytes not yet framed: the tail of the last read, joined to the next. */
export class Framing {
  #held: Buffer | null = null

  /** Calls `whole` for each whole frame in `chunk` (after what was held). */
  take(
    chunk: Buffer,
    frame: Frame,
    whole: (bytes: Buffer, from: number, to: number) => void,
  ): void {
    const bytes = this.#held === null ? chunk : Buffer.concat([this.#held, chunk])
    let at = 0
    while (at < bytes.length) {
      const next = frame(bytes, at)
      if (next < 0) break
      whole(bytes, at, next)
      at = next
    }
    this.#held = at < bytes.length ? bytes.subarray(at) : null
  }
}

/** Bytes gathered for one socket and written once per loop turn. */
export class Out {
  readonly #writer: SocketWriter
  #slab = Buffer.allocUnsafe(SLAB_BYTES)
  #start = 0
  #end = 0
  #due = false

  constructor(socket: Socket) {
    this.#writer = new SocketWriter(socket, () => {})
  }

  put(bytes: Uint8Array, from: number, to: number): void {
    const length = to - from
    if (this.#end + length > this.#slab.length) {
      this.flush()
      if (this.#end + length > this.#slab.length) {
        this.#slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, length))
        this.#start = 0
        this.#end = 0
      }
    }
    // As the sidecar's output copies a reply in (no view made).
    this.#end = copyBytes(bytes, from, to, this.#slab, this.#end)
    if (!this.#due) {
      this.#due = true
      due.push(this)
      if (due.length === 1) setImmediate(flushDue)
    }
  }

  flush(): void {
    this.#due = false
    if (this.#end === this.#start) return
    this.#writer.write(this.#slab.subarray(this.#start, this.#end))
    // Taken by the kernel at once: the slab is free again, as the sidecar's output reuses it.
    if (this.#writer.pending === 0) this.#end = 0
    this.#start = this.#end
  }
}

// Every socket written in this loop turn, written once after the turn's reads.
let due: Out[] = []
function flushDue(): void {
  const run = due
  due = []
  for (const out of run) out.flush()
}
