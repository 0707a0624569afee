/**
 * Client-side RESP2/RESP3 reply decoder for the native backend source.
 *
 * A push parser with a cursor: `push(chunk, onReply)` walks the new bytes
 * once and emits every top-level reply they complete. Nothing is parsed
 * twice: an unfinished array keeps its items on a stack of open aggregates,
 * an unfinished bulk keeps the slices received so far (joined once, when its
 * last byte arrives), and only a header line cut by a chunk boundary (a few
 * bytes) is carried over and joined with the next chunk. So a large
 * invalidation push or a large value costs the same however it is cut.
 *
 * Values: bulk and verbatim strings are Buffers (binary-safe; views of the
 * received bytes when a bulk arrived in one chunk), simple strings and doubles
 * are strings, integers numbers, nulls null, booleans booleans,
 * arrays/sets/maps arrays (maps flattened to key, value, ...), errors
 * ReplyError values (not thrown), and RESP3 pushes Push values, which the
 * caller routes apart from command replies. Attributes are parsed and dropped.
 */
import { viewAt } from '../buffer-view.js'

const CR = 13
const LF = 10
const MINUS = 45

const BLOB_STRING = 36 // $
const VERBATIM_STRING = 61 // =, a 4-byte format prefix (`txt:`) before the text
const BLOB_ERROR = 33 // !
const SIMPLE_STRING = 43 // +
const SIMPLE_ERROR = 45 // -
const INTEGER = 58 // :
const BIG_NUMBER = 40 // (
const DOUBLE = 44 // ,
const NULL = 95 // _
const BOOLEAN = 35 // #
const ARRAY = 42 // *
const SET = 126 // ~
const MAP = 37 // %
const PUSH = 62 // >
const ATTRIBUTE = 124 // |

/** An error reply from the server, such as `WRONGTYPE ...`. */
export class ReplyError extends Error {
  override readonly name = 'ReplyError'
}

// Error codes Redis gives for a state that passes (a script running, a
// dataset loading, a primary link or cluster down, a slot migrating), not
// for a command it will never take.
const PASSING = /^(?:BUSY|LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN)\b/

/** Whether `reply` is an error Redis answers only for now: asking again later may succeed. */
export function isPassingError(reply: Reply | undefined): reply is ReplyError {
  return reply instanceof ReplyError && PASSING.test(reply.message)
}

/** A RESP3 out-of-band push (`>`), such as a client-tracking invalidation. */
export class Push {
  constructor(readonly items: Reply[]) {}
}

export type Reply = Buffer | string | number | boolean | null | ReplyError | Push | Reply[]

/** Thrown when the bytes are not RESP: the connection must be dropped. */
export class ReplyProtocolError extends Error {
  override readonly name = 'ReplyProtocolError'
}

/** An aggregate whose header was read and whose items are still arriving. */
type Open = { readonly type: number; remaining: number; readonly items: Reply[] }

const NO_BULK = -1

export class ReplyDecoder {
  /** The start of a header line the last chunk cut: a copy (it is short), joined with the next. */
  #line: Buffer | null = null
  /** Aggregates being filled, outermost first. */
  #open: Open[] = []
  /** The bulk whose body is arriving: its type, declared length, slices so far. */
  #bulkType = 0
  #bulkLength = NO_BULK
  #bulkParts: Buffer[] = []
  #bulkHave = 0

  /** Whether part of a reply has arrived and the rest has not. */
  partial(): boolean {
    return this.#line !== null || this.#bulkLength !== NO_BULK || this.#open.length > 0
  }

  push(chunk: Buffer, onReply: (reply: Reply) => void): void {
    let buf = chunk
    let pos = 0
    // Where the first line's CR may be: the carried part holds none, except
    // perhaps as its last byte (the LF is what was missing).
    let scanFrom = 0
    if (this.#line !== null) {
      scanFrom = this.#line.length - 1
      buf = Buffer.concat([this.#line, chunk])
      this.#line = null
    }
    // Read once per chunk for the bodies' views (see viewAt).
    const bytes = buf.buffer
    const base = buf.byteOffset
    while (pos < buf.length) {
      if (this.#bulkLength !== NO_BULK) {
        pos = this.#bulkBody(buf, pos, onReply)
        continue
      }
      const eol = buf.indexOf(CR, Math.max(pos + 1, scanFrom))
      scanFrom = 0
      if (eol === -1 || eol + 1 >= buf.length) {
        this.#line = Buffer.from(buf.subarray(pos))
        return
      }
      if (buf[eol + 1] !== LF) throw new ReplyProtocolError('expected CRLF')
      const type = buf[pos] as number
      const start = pos + 1
      pos = eol + 2
      switch (type) {
        case BLOB_STRING:
        case VERBATIM_STRING:
        case BLOB_ERROR: {
          const length = integer(buf, start, eol)
          if (length < 0) {
            this.#complete(null, onReply)
          } else if (pos + length + 2 <= buf.length) {
            // The whole body is in this chunk: a view, no copy.
            if (buf[pos + length] !== CR || buf[pos + length + 1] !== LF) {
              throw new ReplyProtocolError('bad bulk end')
            }
            const body = viewAt(bytes, base + pos, length)
            pos += length + 2
            this.#complete(bulkValue(type, body), onReply)
          } else {
            this.#bulkType = type
            this.#bulkLength = length
          }
          break
        }
        case SIMPLE_STRING:
        case DOUBLE:
          this.#complete(buf.toString('latin1', start, eol), onReply)
          break
        case SIMPLE_ERROR:
          this.#complete(new ReplyError(buf.toString('latin1', start, eol)), onReply)
          break
        case INTEGER:
          this.#complete(integer(buf, start, eol), onReply)
          break
        case BIG_NUMBER:
          this.#complete(Number(buf.toString('latin1', start, eol)), onReply)
          break
        case NULL:
          this.#complete(null, onReply)
          break
        case BOOLEAN:
          this.#complete(buf[start] === 116 /* t */, onReply)
          break
        case ARRAY:
        case SET:
        case MAP:
        case PUSH:
        case ATTRIBUTE: {
          let count = integer(buf, start, eol)
          if (count < 0) {
            this.#complete(null, onReply)
            break
          }
          if (type === MAP || type === ATTRIBUTE) count *= 2
          if (count > 0) this.#open.push({ type, remaining: count, items: [] })
          else if (type !== ATTRIBUTE) this.#complete(type === PUSH ? new Push([]) : [], onReply)
          break
        }
        default:
          throw new ReplyProtocolError(
            `unknown reply type ${JSON.stringify(String.fromCharCode(type))}`,
          )
      }
    }
  }

  /** Drops any partial reply (the connection it came from is gone). */
  reset(): void {
    this.#line = null
    this.#open = []
    this.#bulkLength = NO_BULK
    this.#bulkParts = []
    this.#bulkHave = 0
  }

  /** Takes what `buf` holds of the bulk in progress (body, then CRLF); answers the new cursor. */
  #bulkBody(buf: Buffer, pos: number, onReply: (reply: Reply) => void): number {
    const total = this.#bulkLength + 2
    const take = Math.min(total - this.#bulkHave, buf.length - pos)
    this.#bulkParts.push(buf.subarray(pos, pos + take))
    this.#bulkHave += take
    if (this.#bulkHave < total) return pos + take
    const parts = this.#bulkParts
    const length = this.#bulkLength
    this.#bulkParts = []
    this.#bulkHave = 0
    this.#bulkLength = NO_BULK
    const last = parts[parts.length - 1] as Buffer
    const lf = last[last.length - 1]
    const cr = last.length >= 2 ? last[last.length - 2] : (parts[parts.length - 2] as Buffer).at(-1)
    if (cr !== CR || lf !== LF) throw new ReplyProtocolError('bad bulk end')
    // Joined once, without the CRLF: a body of more than a few KiB gets an
    // allocation of exactly its length (see toValue in resp-source.ts).
    this.#complete(bulkValue(this.#bulkType, Buffer.concat(parts, length)), onReply)
    return pos + take
  }

  /** A value is complete: it fills its aggregate's next slot, or is a reply. */
  #complete(complete: Reply, onReply: (reply: Reply) => void): void {
    let value = complete
    for (;;) {
      const top = this.#open[this.#open.length - 1]
      if (top === undefined) {
        onReply(value)
        return
      }
      top.items.push(value)
      if (--top.remaining > 0) return
      this.#open.pop()
      // An attribute annotates the value after it, which fills the slot the
      // attribute was in front of.
      if (top.type === ATTRIBUTE) return
      value = top.type === PUSH ? new Push(top.items) : top.items
    }
  }
}

function bulkValue(type: number, body: Buffer): Reply {
  if (type === VERBATIM_STRING) return body.subarray(4)
  if (type === BLOB_ERROR) return new ReplyError(body.toString())
  return body
}

/** The decimal integer in `buf[start, end)`: lengths and counts, without a string per line. */
function integer(buf: Buffer, start: number, end: number): number {
  const negative = buf[start] === MINUS
  let at = negative ? start + 1 : start
  if (at === end) throw new ReplyProtocolError('bad integer: no digits')
  let n = 0
  for (; at < end; at++) {
    const digit = (buf[at] as number) - 48
    if (digit < 0 || digit > 9) {
      throw new ReplyProtocolError(
        `bad integer ${JSON.stringify(buf.toString('latin1', start, end))}`,
      )
    }
    n = n * 10 + digit
  }
  if (!Number.isSafeInteger(n)) throw new ReplyProtocolError('integer out of range')
  return negative ? -n : n
}
