/**
 * Server-side RESP request decoder: turns the bytes a client sends into
 * commands (`Buffer[]` argument vectors), the way Redis's processInputBuffer
 * does (src/networking.c: processMultibulkBuffer, processInlineBuffer).
 *
 * It is a push parser with continuation state in fields: `push(chunk)` walks a
 * cursor over the chunk and calls `onCommand` once per complete command, so one
 * chunk may carry many pipelined commands and one command may span many chunks
 * (down to one byte per chunk). The result never depends on how the stream was
 * cut into chunks: the same bytes give the same commands and the same error.
 *
 * Two request forms, chosen by the first byte of each request as Redis does:
 * - multibulk (`*<n>\r\n` then n times `$<len>\r\n<bytes>\r\n`): binary-safe;
 * - inline (anything else): a line ended by `\n` or `\r\n`, split like Redis's
 *   sdssplitargs (blanks, "double quotes" with escapes, 'single quotes').
 *
 * Memory grows only with bytes actually received, never with what a client
 * declared: a bulk collects `subarray()` slices of the incoming chunks and is
 * concatenated once when complete; arguments are pushed as they arrive. The
 * caller bounds a whole request (Redis's client-query-buffer-limit) by checking
 * `bufferedBytes` after each push, and a request that never completes by its
 * idle timeout: waiting for more bytes is not an error here.
 */
import { viewAt } from '../../shared/buffer-view.js'

const LF = 10 // \n
const CR = 13 // \r
const SPACE = 32
const TAB = 9
const DOUBLE_QUOTE = 34 // "
const DOLLAR = 36 // $
const SINGLE_QUOTE = 39 // '
const ASTERISK = 42 // *
const MINUS = 45 // -
const ZERO = 48 // 0
const NINE = 57 // 9
const BACKSLASH = 92 // \

/** Decoder states; plain numbers so the dispatch `switch` stays cheap. */
const REQUEST_START = 0 // before the first byte of a request
const MULTIBULK_COUNT = 1 // inside `*<n>\r\n`, after the `*`
const BULK_PREFIX = 2 // expecting the `$` of the next argument
const BULK_COUNT = 3 // inside `$<len>\r\n`, after the `$`
const BULK_DATA = 4 // inside the argument bytes
const BULK_CR = 5 // argument complete, expecting its `\r`
const BULK_LF = 6 // expecting the `\n` after it
const INLINE = 7 // inside an inline line
const DEAD = 8 // a ProtocolError was thrown; input is ignored

/**
 * Negative multibulk counts are ignored like `*0` (Redis accepts any down to
 * LLONG_MIN); larger magnitudes than this are rejected so a count stays an
 * exact JS number. No client sends either.
 */
const MAX_NEGATIVE_COUNT = 1e15

const EMPTY = Buffer.alloc(0)

/**
 * What holding one argument of an unfinished request costs beyond its bytes
 * (its Buffer view and its array slot), charged to `bufferedBytes` so that a
 * million empty arguments count as what they occupy, not as nothing.
 */
export const ARG_OVERHEAD = 128

/** The bytes a request may claim, checked as headers arrive. */
export type DecoderLimits = {
  /**
   * Longest inline request line in bytes, counted up to its `\n`. Redis's
   * PROTO_INLINE_MAX_SIZE.
   * @default 65536
   */
  maxInlineLength: number
  /**
   * Largest bulk argument in bytes. Redis's proto-max-bulk-len.
   * @default 536870912
   */
  maxBulkLength: number
  /**
   * Most arguments in one multibulk request. Redis allows up to INT_MAX; we
   * bound it, as Redis itself did before 7.0.
   * @default 1048576
   */
  maxArrayLength: number
}

export const DEFAULT_DECODER_LIMITS: Readonly<DecoderLimits> = Object.freeze({
  maxInlineLength: 64 * 1024,
  maxBulkLength: 512 * 1024 * 1024,
  maxArrayLength: 1024 * 1024,
})

/** Argument counts up to this get an array of exactly their size. */
const PRESIZED_ARGS = 16

/**
 * The client broke the protocol. `message` is what Redis puts after
 * `-ERR Protocol error: `; the caller replies with that and closes the
 * connection, as Redis does.
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError'
}

/** Receives one command: its arguments, binary-safe, the command name first. */
export type OnCommand = (args: Buffer[]) => void

/**
 * Receives the key of a `GET key` command (any case) as where it lies in the
 * chunk, `chunk[start, end)`: the hot path allocates nothing for it, not even
 * a view, and a cache indexed by key bytes never needs it as a string.
 */
export type OnGet = (chunk: Buffer, start: number, end: number) => void

/**
 * Receives the keys of a run of 2 to LOOK_AHEAD canonical GETs that follow
 * one another in a chunk, before the first of them reaches OnGet: key `i`
 * is `chunk[spans[2i], spans[2i+1])`, for i < count. Lets a cache bring all
 * their entries into the CPU's caches at once (SlabCache.prefetchBytes),
 * instead of waiting on memory once per lookup. `spans` is the decoder's:
 * read it during the call, never keep or change it.
 *
 * The run is then handed to OnGet in order, unless `stop()` ends the push
 * first: the GETs not handed over are announced again by the push that
 * takes them (a `stop()` from OnGets itself hands over none of the run).
 * What the receiver makes of each GET is its own: an announced key may be
 * refused and never looked up.
 */
export type OnGets = (chunk: Buffer, spans: Int32Array, count: number) => void

/**
 * Most GETs read ahead at once. A pipeline of 16 (a common client batch, and
 * the bench's) is one run; 32 entries' lines fit well within the L1 cache.
 * No more than SlabCache's PREFETCH_MAX, which ignores keys past it.
 */
export const LOOK_AHEAD = 32

/**
 * Push parser of client requests. One per connection.
 *
 * Arguments are often views (`viewAt`, as `subarray` would make) of the
 * chunk passed to `push`, not copies: the common case, a whole command
 * inside one chunk, copies nothing.
 * The connection's chunks (shared/socket-read.ts, as a 'data' event's) are
 * Buffers never reused, so the views stay valid after the callback and may
 * be retained. Two caveats:
 * a caller that reuses its chunk buffers must copy the arguments it keeps; and
 * a small view pins its whole chunk (up to 64 KiB), so copy what is kept long
 * term, such as a key stored in a cache (`Buffer.from(arg)` or `toString()`).
 */
export class RequestDecoder {
  readonly #maxInlineLength: number
  readonly #maxBulkLength: number
  readonly #maxArrayLength: number
  readonly #fastGet: boolean
  // The run of GETs read ahead in the chunk being pushed (see OnGets): their
  // keys' spans, and where each command ends.
  readonly #spans = new Int32Array(2 * LOOK_AHEAD)
  readonly #nexts = new Int32Array(LOOK_AHEAD)
  #stopRequested = false
  #stoppedAt = -1

  #state = REQUEST_START

  // `<n>\r\n` of a `*` or `$` header, parsed by hand as its bytes arrive.
  #number = 0
  #digits = 0
  #negative = false
  #sawCR = false

  // The multibulk request being read.
  #argsLeft = 0
  #args: Buffer[] = []
  #argAt = 0
  #argsBytes = 0

  // The bulk argument being read: slices of the chunks it arrived in.
  #bulkLength = 0
  #parts: Buffer[] = []
  #partsBytes = 0
  #completeBulk: Buffer = EMPTY

  // Where the multibulk request being read began, if in the chunk being
  // pushed (see wire()); null for an inline command or a fast-path GET, and
  // between pushes, so a request begun in an earlier chunk has none.
  #wireChunk: Buffer | null = null
  // Its ArrayBuffer and offset, as #decode read them once for the chunk.
  #wireBytes: ArrayBufferLike = EMPTY.buffer
  #wireBase = 0
  #wireStart = 0
  #wireEnd = 0

  // The inline line being read, without its `\n`.
  #lineParts: Buffer[] = []
  #lineBytes = 0

  /** @throws TypeError when a limit is not a positive integer. */
  constructor(limits: Partial<DecoderLimits> = {}) {
    const { maxInlineLength, maxBulkLength, maxArrayLength } = {
      ...DEFAULT_DECODER_LIMITS,
      ...limits,
    }
    this.#maxInlineLength = checkLimit('maxInlineLength', maxInlineLength)
    // Buffer.concat cannot build more than buffer.constants.MAX_LENGTH bytes.
    this.#maxBulkLength = checkLimit('maxBulkLength', maxBulkLength, 2 ** 32)
    this.#maxArrayLength = checkLimit('maxArrayLength', maxArrayLength)
    // Limits so small that they refuse `*2 $3 GET` leave it to the general path.
    this.#fastGet = maxArrayLength >= 2 && maxBulkLength >= 3
  }

  /**
   * Bytes held for the request not yet complete: its arguments read so far
   * (each charged ARG_OVERHEAD more), the partial bulk or inline line. Slack
   * of the chunks that slices pin is not counted.
   */
  get bufferedBytes(): number {
    return this.#argsBytes + this.#partsBytes + this.#completeBulk.length + this.#lineBytes
  }

  /**
   * Feeds the next bytes of the stream. Calls `onCommand` once per command
   * completed by them, in order, synchronously; `*0`, `*-1` and empty inline
   * lines are no command, as in Redis. An incomplete tail is kept for the next
   * push.
   *
   * Throws `ProtocolError` when the stream breaks the protocol, after
   * delivering the commands before the fault. Any throw, including one from
   * `onCommand`, kills the decoder: later pushes are ignored, since the stream
   * position is lost. `onCommand` must not call `push` on the same decoder.
   *
   * @returns bytes of `chunk` consumed: all of them unless `stop()` was called.
   */
  push(chunk: Buffer, onCommand: OnCommand, onGet?: OnGet, onGets?: OnGets): number {
    if (this.#state === DEAD) return chunk.length
    this.#stoppedAt = -1
    try {
      this.#decode(chunk, onCommand, onGet, onGets)
    } catch (error) {
      this.#die()
      throw error
    } finally {
      // A command cut across chunks has no wire; and no chunk is pinned here.
      this.#wireChunk = null
    }
    const stoppedAt = this.#stoppedAt
    this.#stopRequested = false
    return stoppedAt < 0 ? chunk.length : stoppedAt
  }

  /**
   * Asks `push` to return after the command being delivered, before the next
   * one starts; `push` then returns how many bytes it consumed, and the caller
   * pushes the rest later. Lets a connection stop taking commands the moment
   * its replies pile up, instead of at the end of a chunk.
   */
  stop(): void {
    this.#stopRequested = true
  }

  /**
   * During `onCommand`: the command's bytes as the client sent them, when it
   * was a multibulk request that lay whole in the chunk being pushed (a view
   * of it), else null. Valid RESP that Redis reads as the same command: the
   * decoder accepts no more than Redis does.
   */
  wire(): Buffer | null {
    const chunk = this.#wireChunk
    return chunk === null
      ? null
      : viewAt(this.#wireBytes, this.#wireBase + this.#wireStart, this.#wireEnd - this.#wireStart)
  }

  #decode(
    chunk: Buffer,
    onCommand: OnCommand,
    onGet: OnGet | undefined,
    onGets: OnGets | undefined,
  ): void {
    const end = chunk.length
    // Read once per chunk for the arguments' views (see viewAt).
    const bytes = chunk.buffer
    const base = chunk.byteOffset
    let pos = 0
    // GETs of the run read ahead (#readAhead), how many were handed over,
    // and where the read-ahead last found a request that is no whole GET
    // (the general path takes it, without a second look).
    let ahead = 0
    let handed = 0
    let noGetAt = -1
    // Key positions go through Int32Arrays: a chunk of 2 GiB or more (never
    // one read from a socket, at most 64 KiB) takes the general path.
    const fast = this.#fastGet && end <= 0x7fffffff
    const limit = onGets === undefined ? 1 : LOOK_AHEAD
    while (pos < end) {
      switch (this.#state) {
        case REQUEST_START:
          if (this.#stopRequested) {
            this.#stoppedAt = pos
            return
          }
          this.#wireChunk = null
          if (fast && onGet !== undefined) {
            if (handed === ahead && pos !== noGetAt) {
              ahead = this.#readAhead(chunk, pos, limit, onGets)
              handed = 0
              if (ahead < limit) noGetAt = ahead === 0 ? pos : (this.#nexts[ahead - 1] as number)
              // OnGets may have asked to stop.
              if (this.#stopRequested) {
                this.#stoppedAt = pos
                return
              }
            }
            if (handed < ahead) {
              // Each GET of the run is handed over where the read-ahead
              // found it: its bytes are parsed once.
              const spans = this.#spans
              onGet(chunk, spans[2 * handed] as number, spans[2 * handed + 1] as number)
              pos = this.#nexts[handed++] as number
              break
            }
          }
          if (chunk[pos] === ASTERISK) {
            this.#wireChunk = chunk
            this.#wireBytes = bytes
            this.#wireBase = base
            this.#wireStart = pos
            const args = this.#whole(chunk, pos, bytes, base)
            if (args !== null) {
              pos = this.#wireEnd
              onCommand(args)
              break
            }
            pos++
            this.#startNumber()
            this.#state = MULTIBULK_COUNT
          } else {
            this.#state = INLINE
          }
          break

        case MULTIBULK_COUNT: {
          pos = this.#readNumber(chunk, pos, false)
          if (pos < 0) return
          const count = this.#number
          if (count > 0) {
            this.#argsLeft = count
            // Sized for a small count (every common command): a push onto an
            // empty array would reserve 16 slots. A large one grows with the
            // arguments that arrive, never with the count a client declared.
            if (count <= PRESIZED_ARGS) this.#args = new Array(count)
            this.#argAt = 0
            this.#state = BULK_PREFIX
          } else {
            this.#state = REQUEST_START
          }
          break
        }

        case BULK_PREFIX: {
          const byte = chunk[pos] as number
          if (byte !== DOLLAR) {
            throw new ProtocolError(`expected '$', got '${String.fromCharCode(byte)}'`)
          }
          pos++
          this.#startNumber()
          this.#state = BULK_COUNT
          break
        }

        case BULK_COUNT:
          pos = this.#readNumber(chunk, pos, true)
          if (pos < 0) return
          this.#bulkLength = this.#number
          this.#state = BULK_DATA
          break

        case BULK_DATA: {
          const missing = this.#bulkLength - this.#partsBytes
          const available = end - pos
          if (available >= missing + 2 && this.#parts.length === 0) {
            // Fast path: the whole argument and its CRLF are in this chunk.
            if (chunk[pos + missing] !== CR || chunk[pos + missing + 1] !== LF) {
              throw new ProtocolError(BAD_BULK_END)
            }
            const arg = viewAt(bytes, base + pos, missing)
            pos += missing + 2
            this.#wireEnd = pos
            this.#addArg(arg, onCommand)
          } else if (available >= missing) {
            const last = chunk.subarray(pos, pos + missing)
            pos += missing
            if (this.#parts.length === 0) {
              this.#completeBulk = last
            } else {
              this.#parts.push(last)
              this.#completeBulk = Buffer.concat(this.#parts, this.#bulkLength)
              this.#parts = []
              this.#partsBytes = 0
            }
            this.#state = BULK_CR
          } else {
            this.#parts.push(chunk.subarray(pos))
            this.#partsBytes += available
            return
          }
          break
        }

        case BULK_CR:
          if (chunk[pos] !== CR) throw new ProtocolError(BAD_BULK_END)
          pos++
          this.#state = BULK_LF
          break

        case BULK_LF: {
          if (chunk[pos] !== LF) throw new ProtocolError(BAD_BULK_END)
          pos++
          const arg = this.#completeBulk
          this.#completeBulk = EMPTY
          this.#wireEnd = pos
          this.#addArg(arg, onCommand)
          break
        }

        case INLINE:
          pos = this.#readInline(chunk, pos, onCommand)
          if (pos < 0) return
          break

        default:
          return
      }
    }
  }

  /**
   * The arguments of the multibulk request at `pos` (its `*`) when it lies
   * whole in `chunk` and is well formed throughout, with `#wireEnd` set to
   * the byte after it; else null, and the state machine reads the same
   * bytes (waiting for the rest, or failing them with its exact error).
   * Most reads hold whole commands: this reads each header in one pass
   * instead of a state change per byte. It takes nothing the state machine
   * would refuse: no sign, no leading zero, the same limits. The count and
   * the bulk lengths are read by two loops written out: one helper shared by
   * both (and by wholeGet), handing its number back through a module
   * variable, decoded 16 pipelined SETs in 1,364-1,504 against 1,269-1,286
   * ns, MSETs of 10 keys in 505-541 against 494-507.
   */
  #whole(chunk: Buffer, pos: number, bytes: ArrayBufferLike, base: number): Buffer[] | null {
    const end = chunk.length
    let at = pos + 1
    let count = 0
    const countStart = at
    for (; at < end; at++) {
      const byte = chunk[at] as number
      if (byte < ZERO || byte > NINE) break
      count = count * 10 + (byte - ZERO)
      // Each argument takes at least 6 bytes ($0, CRLF, CRLF): a count the
      // chunk cannot hold is not whole here, and the array made below is
      // bounded by bytes received, never by a count declared.
      if (count * 6 > end - at) return null
    }
    const countDigits = at - countStart
    if (
      countDigits === 0 ||
      (countDigits > 1 && chunk[countStart] === ZERO) ||
      count === 0 ||
      count > this.#maxArrayLength ||
      at + 1 >= end ||
      chunk[at] !== CR ||
      chunk[at + 1] !== LF
    ) {
      return null
    }
    at += 2
    const args: Buffer[] = new Array(count)
    for (let i = 0; i < count; i++) {
      if (at >= end || chunk[at] !== DOLLAR) return null
      at++
      let length = 0
      const lengthStart = at
      for (; at < end; at++) {
        const byte = chunk[at] as number
        if (byte < ZERO || byte > NINE) break
        length = length * 10 + (byte - ZERO)
        if (length > this.#maxBulkLength) return null
      }
      const lengthDigits = at - lengthStart
      if (lengthDigits === 0 || (lengthDigits > 1 && chunk[lengthStart] === ZERO)) return null
      if (at + 1 >= end || chunk[at] !== CR || chunk[at + 1] !== LF) return null
      at += 2
      const argEnd = at + length
      if (argEnd + 1 >= end || chunk[argEnd] !== CR || chunk[argEnd + 1] !== LF) return null
      args[i] = viewAt(bytes, base + at, length)
      at = argEnd + 2
    }
    this.#wireEnd = at
    return args
  }

  /**
   * The canonical GETs that follow one another in `chunk` from `pos`, up to
   * `limit`, into #spans and #nexts; a run of two or more is announced to
   * `onGets` before any is handed over. Returns how many: 0 when the request
   * at `pos` is anything else, which then takes the general path.
   */
  #readAhead(chunk: Buffer, pos: number, limit: number, onGets: OnGets | undefined): number {
    const spans = this.#spans
    const nexts = this.#nexts
    let count = 0
    let at = pos
    while (count < limit) {
      const next = wholeGet(chunk, at, this.#maxBulkLength, spans, 2 * count)
      if (next < 0) break
      nexts[count++] = next
      at = next
    }
    if (count >= 2 && onGets !== undefined) onGets(chunk, spans, count)
    return count
  }

  #addArg(arg: Buffer, onCommand: OnCommand): void {
    // At its index: fills a presized array, appends to a growing one.
    this.#args[this.#argAt++] = arg
    if (--this.#argsLeft > 0) {
      this.#argsBytes += arg.length + ARG_OVERHEAD
      this.#state = BULK_PREFIX
      return
    }
    const args = this.#args
    this.#args = []
    this.#argsBytes = 0
    this.#state = REQUEST_START
    onCommand(args)
  }

  #startNumber(): void {
    this.#number = 0
    this.#digits = 0
    this.#negative = false
    this.#sawCR = false
  }

  /**
   * Continues a `<n>\r\n` header from `pos`. Returns the position after its
   * `\n` with the value in `#number`, or -1 when the chunk ends first.
   *
   * Accepts what Redis's string2ll accepts (no `+`, no leading zeros, no
   * `-0`) but fails on the first byte that cannot lead to a valid header
   * instead of waiting for the `\r`: no bytes are buffered, and a header can
   * never grow long (so Redis's "too big mbulk count string" cannot occur).
   * Unlike Redis, the byte after the `\r` must be `\n`.
   */
  #readNumber(chunk: Buffer, pos: number, bulk: boolean): number {
    const end = chunk.length
    let value = this.#number
    let digits = this.#digits
    let limit = bulk
      ? this.#maxBulkLength
      : this.#negative
        ? MAX_NEGATIVE_COUNT
        : this.#maxArrayLength
    while (pos < end) {
      const byte = chunk[pos++] as number
      if (byte >= ZERO && byte <= NINE && !this.#sawCR) {
        // A leading zero must be the whole number, and `-0` is not a number.
        if ((digits > 0 && value === 0) || (byte === ZERO && this.#negative)) {
          throw invalidLength(bulk)
        }
        value = value * 10 + (byte - ZERO)
        digits++
        if (value > limit) throw invalidLength(bulk)
      } else if (byte === CR && digits > 0 && !this.#sawCR) {
        this.#sawCR = true
      } else if (byte === LF && this.#sawCR) {
        this.#number = this.#negative ? -value : value
        return pos
      } else if (byte === MINUS && !bulk && digits === 0 && !this.#negative) {
        this.#negative = true
        limit = MAX_NEGATIVE_COUNT
      } else {
        throw invalidLength(bulk)
      }
    }
    this.#number = value
    this.#digits = digits
    return -1
  }

  /**
   * Continues an inline line from `pos`. Returns the position after its `\n`,
   * or -1 when the chunk ends first.
   */
  #readInline(chunk: Buffer, pos: number, onCommand: OnCommand): number {
    const newline = chunk.indexOf(LF, pos)
    const length = (newline < 0 ? chunk.length : newline) - pos
    // Redis checks only while no `\n` has arrived; checking the completed line
    // too keeps the outcome independent of where the chunks were cut.
    if (this.#lineBytes + length > this.#maxInlineLength) {
      throw new ProtocolError('too big inline request')
    }
    if (newline < 0) {
      this.#lineParts.push(chunk.subarray(pos))
      this.#lineBytes += length
      return -1
    }
    let line = chunk.subarray(pos, newline)
    if (this.#lineParts.length > 0) {
      this.#lineParts.push(line)
      line = Buffer.concat(this.#lineParts, this.#lineBytes + length)
      this.#lineParts = []
      this.#lineBytes = 0
    }
    this.#state = REQUEST_START
    const args = splitArgs(line)
    if (args.length > 0) onCommand(args)
    return newline + 1
  }

  #die(): void {
    this.#state = DEAD
    this.#args = []
    this.#argsBytes = 0
    this.#parts = []
    this.#partsBytes = 0
    this.#completeBulk = EMPTY
    this.#lineParts = []
    this.#lineBytes = 0
  }
}

/**
 * Redis does not check the two bytes after a bulk argument; we do, since
 * anything else there means the client and the server disagree on lengths.
 */
const BAD_BULK_END = 'expected CRLF after bulk argument'

function invalidLength(bulk: boolean): ProtocolError {
  return new ProtocolError(bulk ? 'invalid bulk length' : 'invalid multibulk length')
}

function checkLimit(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new TypeError(`Expected \`${name}\` to be an integer from 1 to ${max}, got \`${value}\``)
  }
  return value
}

/** C's isspace: the blanks sdssplitargs skips between arguments. */
function isSpace(byte: number | undefined): boolean {
  return byte === SPACE || (byte !== undefined && byte >= TAB && byte <= CR)
}

function isHexDigit(byte: number | undefined): byte is number {
  return (
    byte !== undefined &&
    ((byte >= ZERO && byte <= NINE) || (byte >= 65 && byte <= 70) || (byte >= 97 && byte <= 102))
  )
}

function hexValue(byte: number): number {
  return byte <= NINE ? byte - ZERO : (byte | 0x20) - 87
}

/**
 * Splits an inline request line like Redis's sdssplitargs. Arguments without
 * quotes are views of `line`; quoted ones are copies with escapes resolved.
 * One deviation: a NUL byte is an ordinary byte here, where C's string
 * functions would end the line at it.
 *
 * @throws ProtocolError "unbalanced quotes in request" for an unterminated
 * quote, or a closing quote followed by something other than a blank.
 */
export function splitArgs(line: Buffer): Buffer[] {
  const args: Buffer[] = []
  const end = line.length
  let pos = 0
  for (;;) {
    while (pos < end && isSpace(line[pos])) pos++
    if (pos >= end) return args
    const start = pos
    // Fast path: a plain token, returned as a view.
    let byte = line[pos]
    while (
      byte !== undefined &&
      byte !== SPACE &&
      byte !== TAB &&
      byte !== CR &&
      byte !== LF &&
      byte !== DOUBLE_QUOTE &&
      byte !== SINGLE_QUOTE
    ) {
      byte = line[++pos]
    }
    if (byte !== DOUBLE_QUOTE && byte !== SINGLE_QUOTE) {
      args.push(line.subarray(start, pos))
      if (pos < end) pos++ // the blank that ended the token
      continue
    }
    const [arg, next] = quotedToken(line, start, pos)
    args.push(arg)
    pos = next
  }
}

/**
 * Reads the token starting at `start` whose opening quote is at `quote`, the
 * way sdssplitargs does: the bytes before the quote, then the quoted part,
 * which ends the token. Returns the argument and the position after it.
 */
function quotedToken(line: Buffer, start: number, quote: number): [Buffer, number] {
  const out: number[] = []
  for (let i = start; i < quote; i++) out.push(line[i] as number)
  const double = line[quote] === DOUBLE_QUOTE
  for (let pos = quote + 1; ; pos++) {
    const byte = line[pos] // undefined at the end of the line
    const next = line[pos + 1]
    if (byte === undefined) throw unbalancedQuotes()
    if (byte === (double ? DOUBLE_QUOTE : SINGLE_QUOTE)) {
      // A closing quote must end the token.
      if (next !== undefined && !isSpace(next)) throw unbalancedQuotes()
      return [Buffer.from(out), pos + 1]
    }
    if (byte !== BACKSLASH || next === undefined) {
      out.push(byte)
    } else if (!double) {
      // Single quotes know one escape, \'.
      if (next === SINGLE_QUOTE) pos++
      out.push(next === SINGLE_QUOTE ? SINGLE_QUOTE : BACKSLASH)
    } else if (next === 120 /* x */ && isHexDigit(line[pos + 2]) && isHexDigit(line[pos + 3])) {
      out.push(hexValue(line[pos + 2] as number) * 16 + hexValue(line[pos + 3] as number))
      pos += 3
    } else {
      out.push(escapedByte(next))
      pos++
    }
  }
}

/** The byte a backslash escape inside double quotes stands for. */
function escapedByte(byte: number): number {
  switch (byte) {
    case 110: // n
      return LF
    case 114: // r
      return CR
    case 116: // t
      return TAB
    case 98: // b
      return 8
    case 97: // a
      return 7
    default:
      return byte
  }
}

function unbalancedQuotes(): ProtocolError {
  return new ProtocolError('unbalanced quotes in request')
}

// `*2\r\n$3\r\n`, then G E T in any case, then `\r\n$`.
const GET_HEAD = Buffer.from('*2\r\n$3\r\nGET\r\n$', 'latin1')

/**
 * The hot path: for a canonical `*2 $3 GET $<n> <key>` wholly inside `chunk`
 * at `pos`, where its key lies is stored at `spans[into]` (start) and
 * `spans[into + 1]` (end), and the position after it returned. Anything else
 * (another command, a request cut by the chunk's end, a length with a
 * leading zero or over the limit) returns -1 and takes the general path,
 * which then decides exactly as it would have: the result never depends on
 * which path ran.
 */
function wholeGet(
  chunk: Buffer,
  pos: number,
  maxBulkLength: number,
  spans: Int32Array,
  into: number,
): number {
  const end = chunk.length
  if (end - pos < 19) return -1
  for (let i = 0; i < 14; i++) {
    const byte = chunk[pos + i] as number
    // G, E, T may come in either case (0x20 is the ASCII case bit).
    if (
      (i >= 8 && i <= 10 ? byte | 0x20 : byte) !==
      ((GET_HEAD[i] as number) | (i >= 8 && i <= 10 ? 0x20 : 0))
    ) {
      return -1
    }
  }
  let at = pos + 14
  let length = 0
  const first = at
  for (;;) {
    if (at >= end) return -1
    const byte = chunk[at] as number
    if (byte < ZERO || byte > NINE) break
    length = length * 10 + (byte - ZERO)
    if (length > maxBulkLength) return -1
    at++
  }
  const digits = at - first
  if (digits === 0 || (digits > 1 && chunk[first] === ZERO)) return -1
  if (chunk[at] !== CR || at + 1 >= end || chunk[at + 1] !== LF) return -1
  const keyStart = at + 2
  const keyEnd = keyStart + length
  if (keyEnd + 2 > end || chunk[keyEnd] !== CR || chunk[keyEnd + 1] !== LF) return -1
  spans[into] = keyStart
  spans[into + 1] = keyEnd
  return keyEnd + 2
}
