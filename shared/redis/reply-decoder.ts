/**
 * Client-side RESP2/RESP3 reply decoder for the native backend source.
 *
 * A push parser: `push(chunk, onReply)` emits every complete top-level reply
 * in the bytes so far. An incomplete reply is kept and parsed again when more
 * bytes arrive, except that a bulk string waiting for its body records how
 * many bytes it needs, so a large value arriving over many chunks is joined
 * once instead of re-parsed per chunk.
 *
 * Values: bulk and verbatim strings are Buffers (binary-safe, views of the
 * received bytes), simple strings and doubles are strings, integers numbers,
 * nulls null, booleans booleans, arrays/sets/maps arrays (maps flattened to
 * key, value, ...), errors ReplyError values (not thrown), and RESP3 pushes
 * Push values, which the caller routes apart from command replies.
 */

const CR = 13
const LF = 10

/** An error reply from the server, such as `WRONGTYPE ...`. */
export class ReplyError extends Error {
  override readonly name = 'ReplyError'
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

// Parse results that are not values: more bytes are needed.
const INCOMPLETE = Symbol('incomplete')

export class ReplyDecoder {
  #pending: Buffer[] = []
  #pendingBytes = 0
  /** Bytes needed before parsing again is worthwhile. */
  #need = 0
  #pos = 0
  #buf: Buffer = Buffer.alloc(0)

  push(chunk: Buffer, onReply: (reply: Reply) => void): void {
    this.#pending.push(chunk)
    this.#pendingBytes += chunk.length
    if (this.#pendingBytes < this.#need) return
    let buf = this.#pending.length === 1 ? chunk : Buffer.concat(this.#pending, this.#pendingBytes)
    this.#pending = []
    this.#pendingBytes = 0
    this.#need = 0
    let start = 0
    while (start < buf.length) {
      this.#buf = buf
      this.#pos = start
      const reply = this.#value()
      if (reply === INCOMPLETE) break
      start = this.#pos
      onReply(reply)
    }
    if (start < buf.length) {
      buf = buf.subarray(start)
      this.#pending.push(buf)
      this.#pendingBytes = buf.length
      this.#need = Math.max(this.#need - start, buf.length + 1)
    }
    this.#buf = Buffer.alloc(0)
  }

  /** Drops any partial reply (the connection it came from is gone). */
  reset(): void {
    this.#pending = []
    this.#pendingBytes = 0
    this.#need = 0
  }

  #line(): string | typeof INCOMPLETE {
    const buf = this.#buf
    const start = this.#pos
    const end = buf.indexOf(CR, start)
    if (end === -1 || end + 1 >= buf.length) return INCOMPLETE
    if (buf[end + 1] !== LF) throw new ReplyProtocolError('expected CRLF')
    this.#pos = end + 2
    return buf.toString('latin1', start, end)
  }

  /** The body of a bulk whose type byte was just read, without its first `skip` bytes. */
  #bulk(skip: number): Buffer | null | typeof INCOMPLETE {
    const buf = this.#buf
    const start = this.#pos - 1
    const length = this.#length()
    if (length === INCOMPLETE) return INCOMPLETE
    if (length < 0) return null
    const end = this.#pos + length
    if (end + 2 > buf.length) {
      // Parsed again from the reply's start once the whole body has arrived.
      this.#need = Math.max(this.#need, end + 2)
      this.#pos = start
      return INCOMPLETE
    }
    if (buf[end] !== CR || buf[end + 1] !== LF) throw new ReplyProtocolError('bad bulk end')
    const body = buf.subarray(this.#pos + skip, end)
    this.#pos = end + 2
    return body
  }

  #length(): number | typeof INCOMPLETE {
    const line = this.#line()
    if (line === INCOMPLETE) return INCOMPLETE
    const n = Number(line)
    if (!Number.isSafeInteger(n)) throw new ReplyProtocolError(`bad length ${JSON.stringify(line)}`)
    return n
  }

  #value(): Reply | typeof INCOMPLETE {
    const buf = this.#buf
    if (this.#pos >= buf.length) return INCOMPLETE
    const type = buf[this.#pos++]
    switch (type) {
      case 36: // $ bulk string
        return this.#bulk(0)
      case 61: // = verbatim string: a 4-byte format prefix (`txt:`), then the text
        return this.#bulk(4)
      case 33: {
        // ! bulk error
        const body = this.#bulk(0)
        return body === INCOMPLETE || body === null ? body : new ReplyError(body.toString())
      }
      case 43: // + simple string
        return this.#line()
      case 45: {
        // - error
        const line = this.#line()
        return line === INCOMPLETE ? INCOMPLETE : new ReplyError(line)
      }
      case 58: // : integer
      case 40: {
        // ( big number
        const line = this.#line()
        return line === INCOMPLETE ? INCOMPLETE : Number(line)
      }
      case 44: // , double
        return this.#line()
      case 95: // _ null
        return this.#line() === INCOMPLETE ? INCOMPLETE : null
      case 35: {
        // # boolean
        const line = this.#line()
        return line === INCOMPLETE ? INCOMPLETE : line === 't'
      }
      case 42: // * array
      case 126: // ~ set
      case 37: // % map
      case 62: // > push
      case 124: {
        // | attribute: parsed and dropped, then the value it annotates
        let count = this.#length()
        if (count === INCOMPLETE) return INCOMPLETE
        if (count < 0) return null
        if (type === 37 || type === 124) count *= 2
        const items: Reply[] = []
        for (let i = 0; i < count; i++) {
          const item = this.#value()
          if (item === INCOMPLETE) return INCOMPLETE
          items.push(item)
        }
        if (type === 124) return this.#value()
        return type === 62 ? new Push(items) : items
      }
      default:
        throw new ReplyProtocolError(
          `unknown reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`,
        )
    }
  }
}
