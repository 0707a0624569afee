/**
 * Finds where each reply a Redis server sends begins and ends, without
 * decoding it: the proxy relays forwarded commands' replies byte for byte, so
 * it needs their boundaries, not their values. A push parser with a cursor,
 * like the decoders: `push(chunk, onFrame)` walks the new bytes once, keeps
 * only the counts of the aggregates still open and at most one header line
 * cut by a chunk boundary, and hands over each complete reply as the slices
 * of the chunks it spans (views, never copies), so a large reply costs no
 * extra memory and relays with one write per slice.
 *
 * RESP2 and RESP3: `>` pushes are framed like any reply and flagged, so the
 * caller routes them apart from replies to commands; `|` attributes are part
 * of the reply they precede.
 */

const CR = 13
const LF = 10

const BLOB_STRING = 36 // $
const VERBATIM_STRING = 61 // =
const BLOB_ERROR = 33 // !
const ARRAY = 42 // *
const SET = 126 // ~
const MAP = 37 // %
const PUSH = 62 // >
const ATTRIBUTE = 124 // |
const LINE_TYPES = new Set([43, 45, 58, 40, 44, 95, 35]) // + - : ( , _ #

/** A header (`*3`, `$100`) longer than this is not RESP. */
const MAX_HEADER = 32
/** A simple line (`+OK`, `-ERR ...`) longer than this is not a sane reply. */
export const MAX_LINE = 64 * 1024 * 1024

/**
 * A reply that has come this far without ending is handed over in parts
 * (takeHeld) by those that relay it, rather than held whole.
 */
export const STREAM_AFTER = 256 * 1024

export class FrameError extends Error {
  override readonly name = 'FrameError'
}

/** One complete reply: its bytes as slices of the received chunks, in order. */
export type OnFrame = (parts: Buffer[], push: boolean) => void

/** A complete reply within one chunk, `chunk[start, end)`: true when taken (see push). */
export type OnWhole = (chunk: Buffer, start: number, end: number, push: boolean) => boolean

export class ReplyFramer {
  // Items still owed by each open aggregate, innermost last.
  #open: number[] = []
  #parts: Buffer[] = []
  #push = false
  // Part of the reply in progress was handed over (takeHeld): when it ends,
  // what is left is not a whole reply, and is never offered to onWhole.
  #heldTaken = false
  // Where the current item stands: reading its type and header line, its
  // payload (bulk bytes + CRLF), or the rest of a simple line.
  #inHeader = false
  #type = 0
  // The header line read so far, as numbers, not bytes kept: its length, the
  // value of its digits, its sign, whether the last byte was the CR, and
  // whether a byte made it malformed (said at its LF, as a whole line).
  #headerLength = 0
  #headerValue = 0
  #headerDigits = 0
  #headerSign = 1
  #headerCR = false
  #headerBad = false
  #lineLength = 0
  #payload = 0
  #inLine = false

  /** Bytes of the reply in progress held so far (its slices). */
  get pendingBytes(): number {
    let sum = 0
    for (const part of this.#parts) sum += part.length
    return sum
  }

  /** Whether part of a reply has been received and not yet handed over. */
  partial(): boolean {
    return (
      this.#open.length > 0 ||
      this.#parts.length > 0 ||
      this.#inHeader ||
      this.#inLine ||
      this.#payload > 0
    )
  }

  /** Whether the reply in progress is a push (`>`), which is never handed over in parts. */
  get heldIsPush(): boolean {
    return this.#push
  }

  /**
   * Hands over the slices of the reply in progress received so far, to be
   * relayed before it ends (a large reply, whose reader should not wait for
   * all of it nor the proxy hold all of it); its frame, when it ends, brings
   * only the slices after them.
   */
  takeHeld(): Buffer[] {
    const parts = this.#parts
    this.#parts = []
    if (parts.length > 0) this.#heldTaken = true
    return parts
  }

  /**
   * Copies the slices of the reply in progress that `lent` says lie in
   * memory about to be reused (a lent read's, see
   * shared/socket-read.ts), so they outlive the read. Only the last push's
   * slice can be: each earlier one was kept at the end of its own push.
   */
  keepHeld(lent: (part: Buffer) => boolean): void {
    const parts = this.#parts
    for (let i = parts.length - 1; i >= 0 && lent(parts[i] as Buffer); i--) {
      parts[i] = Buffer.from(parts[i] as Buffer)
    }
  }

  reset(): void {
    this.#open = []
    this.#parts = []
    this.#push = false
    this.#heldTaken = false
    this.#inHeader = false
    this.#payload = 0
    this.#inLine = false
    this.#lineLength = 0
  }

  /**
   * Walks `chunk`, handing over each reply that ends in it. `onWhole`, when
   * given, is offered first each reply that lies within this one chunk, as
   * its bounds: one that takes it (true) makes no slice and no array (the
   * read path's GET and PTTL replies); otherwise `onFrame` gets it.
   */
  push(chunk: Buffer, onFrame: OnFrame, onWhole?: OnWhole): void {
    let pos = 0
    let frameStart = 0
    const end = chunk.length
    while (pos < end) {
      if (this.#payload > 0) {
        // Bulk bytes and their CRLF: skipped, not looked at.
        const take = Math.min(this.#payload, end - pos)
        pos += take
        this.#payload -= take
        if (this.#payload === 0) {
          if (chunk[pos - 1] !== LF) throw new FrameError('bulk reply not ended by CRLF')
          if (this.#itemDone()) frameStart = this.#emit(chunk, frameStart, pos, onFrame, onWhole)
        }
        continue
      }
      if (this.#inLine) {
        const lf = chunk.indexOf(LF, pos)
        if (lf === -1) {
          this.#lineLength += end - pos
          if (this.#lineLength > MAX_LINE) throw new FrameError('reply line too long')
          pos = end
          continue
        }
        this.#lineLength = 0
        this.#inLine = false
        pos = lf + 1
        if (this.#itemDone()) frameStart = this.#emit(chunk, frameStart, pos, onFrame, onWhole)
        continue
      }
      // A new item: its type byte, then (for counted types) a header line.
      if (!this.#inHeader) {
        const type = chunk[pos] as number
        if (this.#open.length === 0 && this.#parts.length === 0 && pos === frameStart) {
          this.#push = type === PUSH
        }
        pos++
        if (LINE_TYPES.has(type)) {
          this.#inLine = true
          this.#lineLength = 0
          continue
        }
        if (
          type !== BLOB_STRING &&
          type !== VERBATIM_STRING &&
          type !== BLOB_ERROR &&
          type !== ARRAY &&
          type !== SET &&
          type !== MAP &&
          type !== PUSH &&
          type !== ATTRIBUTE
        ) {
          throw new FrameError(`unexpected reply type byte ${type}`)
        }
        this.#type = type
        this.#inHeader = true
        this.#headerLength = 0
        this.#headerValue = 0
        this.#headerDigits = 0
        this.#headerSign = 1
        this.#headerCR = false
        this.#headerBad = false
        continue
      }
      // The header's digits, up to its LF.
      const lf = this.#headerBytes(chunk, pos, end)
      if (lf === -1) {
        pos = end
        continue
      }
      pos = lf + 1
      const count = this.#headerNumber()
      this.#inHeader = false
      const type = this.#type
      if (type === BLOB_STRING || type === VERBATIM_STRING || type === BLOB_ERROR) {
        if (count < 0) {
          if (this.#itemDone()) frameStart = this.#emit(chunk, frameStart, pos, onFrame, onWhole)
        } else {
          this.#payload = count + 2
        }
        continue
      }
      // An aggregate: a map or attribute owes two items per entry.
      const items = type === MAP || type === ATTRIBUTE ? count * 2 : count
      if (type === ATTRIBUTE) {
        // The attribute's entries, then the reply it annotates (one more item).
        this.#open.push(items + 1)
        if (items + 1 === 0 && this.#itemDone()) {
          frameStart = this.#emit(chunk, frameStart, pos, onFrame, onWhole)
        }
        continue
      }
      if (count <= 0) {
        if (this.#itemDone()) frameStart = this.#emit(chunk, frameStart, pos, onFrame, onWhole)
        continue
      }
      this.#open.push(items)
    }
    if (frameStart < end && this.partial()) this.#parts.push(chunk.subarray(frameStart, end))
  }

  /**
   * Reads header bytes from `pos` up to the line's LF, or to `end` when the
   * chunk ends first; returns the LF's position, or -1. A line is `-`?, digits,
   * CR: anything else is malformed, said at the LF as for the whole line.
   */
  #headerBytes(chunk: Buffer, pos: number, end: number): number {
    let length = this.#headerLength
    let value = this.#headerValue
    let digits = this.#headerDigits
    let cr = this.#headerCR
    let bad = this.#headerBad
    let lf = -1
    for (let i = pos; i < end; i++) {
      const byte = chunk[i] as number
      if (byte === LF) {
        lf = i
        break
      }
      if (length >= MAX_HEADER) throw new FrameError('reply header too long')
      length++
      // Something after a CR: the CR was not the line's end.
      if (cr) bad = true
      cr = byte === CR
      if (cr) continue
      if (length === 1 && byte === 45) {
        this.#headerSign = -1
        continue
      }
      const d = byte - 48
      if (d < 0 || d > 9) {
        bad = true
      } else {
        value = value * 10 + d
        digits++
      }
    }
    this.#headerLength = length
    this.#headerValue = value
    this.#headerDigits = digits
    this.#headerCR = cr
    this.#headerBad = bad
    return lf
  }

  /** The header line just ended, as its number. */
  #headerNumber(): number {
    if (this.#headerBad || !this.#headerCR || this.#headerDigits === 0) {
      throw new FrameError('malformed reply header')
    }
    if (this.#headerValue > 2 ** 32) throw new FrameError('reply length out of range')
    return this.#headerSign * this.#headerValue
  }

  /** One item ended: close every aggregate it completes. True when a whole reply ended. */
  #itemDone(): boolean {
    const open = this.#open
    while (open.length > 0) {
      const last = open.length - 1
      const left = (open[last] as number) - 1
      if (left > 0) {
        open[last] = left
        return false
      }
      open.pop()
    }
    return true
  }

  /** Hands over the reply ending at `pos`; returns where the next one starts. */
  #emit(
    chunk: Buffer,
    frameStart: number,
    pos: number,
    onFrame: OnFrame,
    onWhole: OnWhole | undefined,
  ): number {
    const held = this.#parts
    const taken = this.#heldTaken
    this.#heldTaken = false
    let parts: Buffer[]
    if (held.length === 0) {
      if (!taken && onWhole?.(chunk, frameStart, pos, this.#push) === true) {
        this.#push = false
        return pos
      }
      // A reply within one chunk, nearly every one: a one-slot array, where
      // a push onto an empty one would allocate room for 16.
      parts = [chunk.subarray(frameStart, pos)]
    } else {
      held.push(chunk.subarray(frameStart, pos))
      parts = held
      this.#parts = []
    }
    const push = this.#push
    this.#push = false
    onFrame(parts, push)
    return pos
  }
}
