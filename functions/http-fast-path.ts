import { type Server, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { putBytes } from '../shared/bytes.js'
import type { RequestTimer } from '../shared/metrics.js'
import { keepSpare, takeSpare } from '../shared/spare-buffer.js'
import { type KeyAnswer, type KeyReader, keyFromTarget } from './app.js'

/**
 * Key requests read off the socket itself, before node:http sees them.
 *
 * node:http costs more per request than everything else a hit does (its
 * parser's callbacks, IncomingMessage and ServerResponse, a stream write of
 * the head and another of the body). A connection starts here: each request
 * head is parsed from the bytes, and one that is plainly a key request (the
 * strict subset below) is answered from the same key reader as every other
 * path, with the same status, headers and body node:http would send. The
 * first request that is anything else (another path or method, HTTP/1.0, a
 * body, an odd header or byte) hands the connection to node:http with the
 * bytes not yet answered, once every answer before it has been written:
 * node:http then parses it, answers it or refuses it as it always did, and
 * keeps the connection. Nothing this code does not understand is answered by
 * it.
 *
 * The bounds node:http enforces hold here too: a head must be complete
 * within `headersTimeoutMs` of the accept, or the client gets node's 408
 * and the close; a connection idle after its answers for
 * `keepAliveTimeoutMs` (and node's second of grace) is closed; a head longer
 * than `maxHeaderBytes` goes to node:http, which answers 431. A head cut off
 * by the end of what was read goes to node:http at once, which judges its
 * bytes as they come and bounds it from then on, as it bounds a kept-alive
 * connection's next head. The deadlines are checked by one sweep every
 * `checkIntervalMs` over the connections here, as node:http sweeps its own.
 */
export type FastPathOptions = {
  readKey: KeyReader
  /** Where connections go when a request is not for this path. */
  http: Server
  record: RequestTimer | undefined
  headersTimeoutMs: number
  keepAliveTimeoutMs: number
  maxHeaderBytes: number
  checkIntervalMs: number
}

export type FastPath = {
  /** Takes a new connection (plain TCP: TLS sockets go to node:http directly). */
  accept(socket: Socket): void
  /** Connections still here (not handed over, not closed). */
  readonly size: number
  /** Closes the connections with nothing owed and no request begun (shutdown). */
  closeIdle(): void
  close(): void
}

const CR = 13
const LF = 10
const SP = 32
const COLON = 58
const HEAD_END = Buffer.from('\r\n\r\n')
const TIMEOUT_408 = Buffer.from('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n')
/** More header lines than this: node:http decides (it keeps 2000 by default). */
const MAX_HEADER_LINES = 100
/**
 * Answers owed (waiting on Redis, or written behind one that is) beyond
 * which the socket is not read until they are written, as node:http stops
 * reading a client whose answers pile up: a client that pipelines without
 * reading is paused, not buffered without bound.
 */
const MAX_OWED = 256
/**
 * Bytes of answers not yet taken by the client beyond which the rest of a
 * read is not parsed until they drain (RESP's maxUnsentBytes): a client that
 * pipelines requests for a large value without reading would otherwise have
 * each 40-byte request turned into the value's bytes held for it, as many
 * as fit in one read.
 */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024
/**
 * node:http closes an idle connection this long after the Keep-Alive timeout
 * it advertises, so a client reusing it at the limit does not race the close.
 */
const KEEP_ALIVE_GRACE_MS = 1000
/**
 * An answer from this size, due at once, is assembled in the process's spare
 * buffer (shared/spare-buffer.ts) and written at once, instead of in a
 * buffer of its own: smaller ones come from Node's pool. A 100 KiB cached
 * value, copied out of the cache and again next to its head, cost 270-283
 * µs of CPU per request against 47-58 for a bare node:http server (wrk -c
 * 50), most of it the allocator and the full collections that memory set
 * off; copied once into the spare, 36-37.
 */
const SPARE_FROM = 4096

// The same checks as the node:http path's (functions/node.ts): a target the
// adapter would pass verbatim, a plain Host.
const VERBATIM_TARGET = /^\/get\/[!#$&-;=?-[\]_a-z~]*$/
const DOT_SEGMENT = /\/\.\.?(?:[/?#]|$)/
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/

// RFC 9110 tchar, for header names.
const TCHAR = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 48; c <= 57; c++) TCHAR[c] = 1
for (let c = 65; c <= 90; c++) TCHAR[c] = 1
for (let c = 97; c <= 122; c++) TCHAR[c] = 1
// Field value bytes: VCHAR, obs-text, SP and HTAB.
const VALUE_BYTE = new Uint8Array(256)
for (let c = 32; c <= 255; c++) VALUE_BYTE[c] = c === 127 ? 0 : 1
VALUE_BYTE[9] = 1

/** A parsed key request, or null: not one this path answers. */
type KeyRequest = {
  method: 'GET' | 'HEAD'
  target: string
  authorization: string | undefined
  close: boolean
}

/**
 * The head in `buf[start, end)` (its final CRLF CRLF excluded) as a key
 * request, or null for anything else.
 */
export function parseKeyRequest(buf: Buffer, start: number, end: number): KeyRequest | null {
  let method: 'GET' | 'HEAD'
  let at: number
  if (
    buf[start] === 71 &&
    buf[start + 1] === 69 &&
    buf[start + 2] === 84 &&
    buf[start + 3] === SP
  ) {
    method = 'GET'
    at = start + 4
  } else if (
    buf[start] === 72 &&
    buf[start + 1] === 69 &&
    buf[start + 2] === 65 &&
    buf[start + 3] === 68 &&
    buf[start + 4] === SP
  ) {
    method = 'HEAD'
    at = start + 5
  } else {
    return null
  }
  // The request line: target, one space, HTTP/1.1, CRLF. A head of one line
  // has no Host: not one this path answers.
  const lineEnd = buf.indexOf(LF, at)
  if (lineEnd < 0 || lineEnd > end || buf[lineEnd - 1] !== CR) return null
  const requestLineEnd = lineEnd - 1
  const version = requestLineEnd - 9
  if (
    version <= at ||
    buf[version] !== SP ||
    buf.toString('latin1', version + 1, requestLineEnd) !== 'HTTP/1.1'
  ) {
    return null
  }
  const target = buf.toString('latin1', at, version)
  if (!VERBATIM_TARGET.test(target) || DOT_SEGMENT.test(target)) return null

  let host: string | undefined
  let authorization: string | undefined
  let close = false
  let lines = 0
  let line = requestLineEnd + 2
  while (line < end) {
    if (++lines > MAX_HEADER_LINES) return null
    let next = buf.indexOf(LF, line)
    // The last header line ends at `end` (its CRLF begins the head's end).
    if (next < 0 || next > end) next = end + 1
    else if (buf[next - 1] !== CR) return null
    const stop = next - 1
    // The name: tchars up to the colon (no space before it, no obs-fold).
    let colon = line
    while (colon < stop && TCHAR[buf[colon] as number] === 1) colon++
    if (colon === line || colon >= stop || buf[colon] !== COLON) return null
    let from = colon + 1
    let to = stop
    for (let i = from; i < to; i++) if (VALUE_BYTE[buf[i] as number] !== 1) return null
    while (from < to && (buf[from] === SP || buf[from] === 9)) from++
    while (to > from && (buf[to - 1] === SP || buf[to - 1] === 9)) to--
    const name = buf.toString('latin1', line, colon).toLowerCase()
    switch (name) {
      case 'host':
        if (host !== undefined) return null
        host = buf.toString('latin1', from, to)
        break
      case 'authorization':
        if (authorization !== undefined) return null
        authorization = buf.toString('latin1', from, to)
        break
      case 'connection': {
        const value = buf.toString('latin1', from, to).toLowerCase()
        if (value === 'close') close = true
        else if (value !== 'keep-alive') return null
        break
      }
      // A body, a protocol switch or an expectation: node:http's to handle.
      case 'content-length':
      case 'transfer-encoding':
      case 'upgrade':
      case 'expect':
      case 'http2-settings':
        return null
    }
    line = next + 1
  }
  if (host === undefined || !PLAIN_HOST.test(host)) return null
  return { method, target, authorization, close }
}

/** node:http's Date header value, made once a second. */
let dateSecond = -1
let dateValue = ''
function httpDate(now: number): string {
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateValue = new Date(second * 1000).toUTCString()
  }
  return dateValue
}

/**
 * The head of an answer as node:http writes it for `res.writeHead(status,
 * headers); res.end(body)`: the headers in order, then Date, then Connection
 * (and Keep-Alive while the connection stays open). All latin1: its length
 * is its byte count.
 */
function headOf(answer: KeyAnswer, close: boolean, keepAlive: string): string {
  let head = `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'unknown'}\r\n`
  const headers = answer.headers
  let closing = close
  for (const name in headers) {
    if (name === 'Connection') {
      closing = true
      continue
    }
    head += `${name}: ${headers[name]}\r\n`
  }
  head += `Date: ${httpDate(Date.now())}\r\n`
  head += closing ? 'Connection: close\r\n\r\n' : keepAlive
  return head
}

/** `head` and `body` written into `out` from `at`; returns the offset after them. */
function fill(out: Buffer, at: number, head: string, body: Uint8Array | null): number {
  at += out.write(head, at, 'latin1')
  if (body !== null) {
    putBytes(out, body, at)
    at += body.length
  }
  return at
}

/** An answer as one buffer of its own, the body copied (it may be lent). */
function encodeAnswer(answer: KeyAnswer, close: boolean, keepAlive: string): Buffer {
  const head = headOf(answer, close, keepAlive)
  const out = Buffer.allocUnsafe(head.length + (answer.body?.length ?? 0))
  fill(out, 0, head, answer.body)
  return out
}

/** One answer owed, in request order; `close` ends the connection after it. */
type Slot = { parts: Buffer[] | null; close: boolean }

class FastConnection {
  readonly #socket: Socket
  readonly #path: FastPathState
  /** Bytes read and not answered, for node:http once nothing is owed (see #handOver). */
  #held: Buffer | null = null
  /** Bytes read and not parsed yet because answers piled up (see MAX_UNSENT_BYTES). */
  #backlog: Buffer | null = null
  /** The client half-closed with a backlog: end once it is answered. */
  #endAfterBacklog = false
  /** Bytes of answers in this read's `out`, not yet written. */
  #outBytes = 0
  /** Bytes of answers made and waiting in #slots behind one not yet made. */
  #owedBytes = 0
  /** Answers owed after the ones written, oldest first. */
  #slots: Slot[] = []
  /** A request that is not for this path came: nothing more is parsed here. */
  #handingOver = false
  /** An answer closes the connection (or the client half-closed): nothing more is read. */
  #ending = false
  #closed = false
  /** Not read until answers owed or unsent drain (see MAX_OWED). */
  #paused = false
  /** Until the first byte: node:http's headers bound for a silent connection; 0 none. */
  headDeadline = 0
  /** When an idle kept-alive connection is closed; 0 none. */
  idleDeadline = 0

  constructor(socket: Socket, path: FastPathState) {
    this.#socket = socket
    this.#path = path
    socket.on('data', this.#onData)
    socket.on('error', () => {})
    socket.on('close', this.#onClose)
    socket.on('end', this.#onEnd)
    socket.on('drain', this.#maybeResume)
    const ms = path.options.headersTimeoutMs
    this.headDeadline = ms > 0 ? Date.now() + ms : 0
  }

  /** Nothing owed and nothing begun: closed at shutdown as node:http closes its idle ones. */
  get idle(): boolean {
    return (
      this.#slots.length === 0 &&
      this.#held === null &&
      this.#backlog === null &&
      !this.#handingOver
    )
  }

  destroy(): void {
    this.#socket.destroy()
  }

  /** The sweep: node:http's 408 for a silent connection, the close of an idle one. */
  check(now: number): void {
    if (this.headDeadline > 0 && now >= this.headDeadline) {
      this.headDeadline = 0
      this.#ending = true
      this.#socket.end(TIMEOUT_408)
      this.#socket.destroySoon()
    } else if (this.idleDeadline > 0 && now >= this.idleDeadline) {
      this.#socket.destroy()
    }
  }

  /**
   * Answers the whole heads in the chunk. Anything else (a head that is not
   * a plain key request, or one cut off by the chunk's end, whose bytes
   * node:http would judge as they come) goes to node:http with the rest of
   * the bytes, once every answer before it is written.
   */
  readonly #onData = (buf: Buffer): void => {
    if (this.#ending || this.#closed) return
    this.headDeadline = 0
    this.idleDeadline = 0
    if (this.#handingOver) {
      this.#held = this.#held === null ? buf : Buffer.concat([this.#held, buf])
      return
    }
    if (this.#backlog !== null) {
      // Paused for it, so this came with the read that paused: after it.
      this.#backlog = Buffer.concat([this.#backlog, buf])
      return
    }
    const out: Buffer[] = []
    this.#outBytes = 0
    const maxHead = this.#path.options.maxHeaderBytes
    let at = 0
    while (at < buf.length && !this.#ending) {
      if (this.#socket.writableLength + this.#outBytes + this.#owedBytes > MAX_UNSENT_BYTES) {
        this.#backlog = buf.subarray(at)
        break
      }
      const end = buf.indexOf(HEAD_END, at)
      const request = end < 0 || end + 4 - at > maxHead ? null : parseKeyRequest(buf, at, end)
      if (request === null) {
        this.#handingOver = true
        this.#held = buf.subarray(at)
        break
      }
      at = (end as number) + 4
      this.#answer(request, out)
    }
    if (out.length > 0) this.#write(out)
    if (this.#ending) this.#endAfterWrites()
    else if (this.#handingOver) {
      this.#socket.pause()
      this.#handOver()
    } else {
      if (this.#slots.length === 0) this.#armIdle()
      // With a backlog, what resumes it is the 'drain' of the answers past
      // the bound (more than the socket's high-water mark) or, for answers
      // held behind one waiting on Redis, #flushSlots once it comes.
      this.#maybePause()
    }
  }

  #maybePause(): void {
    if (this.#paused) return
    if (
      this.#slots.length >= MAX_OWED ||
      this.#socket.writableNeedDrain ||
      this.#backlog !== null
    ) {
      this.#paused = true
      this.#socket.pause()
    }
  }

  readonly #maybeResume = (): void => {
    if (!this.#paused || this.#handingOver || this.#ending || this.#closed) return
    if (this.#socket.destroyed) return
    if (this.#slots.length >= MAX_OWED / 2 || this.#socket.writableNeedDrain) return
    this.#paused = false
    const backlog = this.#backlog
    if (backlog !== null) {
      this.#backlog = null
      this.#onData(backlog)
      if (this.#paused || this.#ending || this.#closed || this.#handingOver) return
    }
    if (this.#endAfterBacklog) {
      // It half-closed while its requests waited: all of them are read now.
      this.#ending = true
      this.#endAfterWrites()
      return
    }
    this.#socket.resume()
  }

  #answer(request: KeyRequest, out: Buffer[]): void {
    const path = this.#path
    const record = path.options.record
    const started = record === undefined ? 0 : performance.now()
    const answer = path.options.readKey(
      request.method,
      keyFromTarget(request.target),
      request.authorization,
      this.#socket.remoteAddress ?? 'unknown',
    )
    if (!(answer instanceof Promise)) {
      record?.(started)
      const close = request.close || answer.headers.Connection !== undefined
      if (this.#slots.length === 0) {
        const head = headOf(answer, close, path.keepAlive)
        const body = answer.body
        const size = head.length + (body?.length ?? 0)
        // The spare only for a write that can leave at once: a write left
        // queued holds its whole buffer (see shared/spare-buffer.ts).
        if (size < SPARE_FROM || this.#socket.writableLength > 0) {
          const part = Buffer.allocUnsafe(size)
          fill(part, 0, head, body)
          out.push(part)
          this.#outBytes += size
        } else {
          this.#writeNow(out, head, body)
        }
        if (close) this.#ending = true
      } else {
        const part = encodeAnswer(answer, close, path.keepAlive)
        this.#owedBytes += part.length
        this.#slots.push({ parts: [part], close })
        // Nothing after it is read: it ends the connection once written.
        if (close) this.#ending = true
      }
      return
    }
    const slot: Slot = { parts: null, close: request.close }
    this.#slots.push(slot)
    if (request.close) this.#ending = true
    void answer.then((answered) => {
      record?.(started)
      if (answered.headers.Connection !== undefined) slot.close = true
      if (this.#closed) return
      const part = encodeAnswer(answered, slot.close, path.keepAlive)
      this.#owedBytes += part.length
      slot.parts = [part]
      this.#flushSlots()
    })
  }

  /** Writes the answers now due, in order; then ends, hands over or waits. */
  #flushSlots(): void {
    if (this.#closed) return
    const out: Buffer[] = []
    const slots = this.#slots
    while (slots.length > 0 && (slots[0] as Slot).parts !== null) {
      const slot = slots.shift() as Slot
      for (const part of slot.parts as Buffer[]) {
        out.push(part)
        this.#owedBytes -= part.length
      }
      if (slot.close) {
        // What was asked after it is never answered, as on node:http.
        this.#ending = true
        this.#slots = []
        this.#owedBytes = 0
        break
      }
    }
    if (out.length > 0) this.#write(out)
    if (this.#ending) this.#endAfterWrites()
    else if (this.#slots.length > 0) {
      this.#maybeResume()
      return
    } else if (this.#handingOver) this.#handOver()
    else this.#armIdle()
    this.#maybeResume()
  }

  #armIdle(): void {
    const ms = this.#path.options.keepAliveTimeoutMs
    this.idleDeadline = ms > 0 ? Date.now() + ms + KEEP_ALIVE_GRACE_MS : 0
  }

  /**
   * A large answer due now: the answers of this chunk before it (`out`,
   * emptied) and its head and body, copied into the spare buffer and written
   * in one call. Kept for the next one when the kernel took every byte.
   */
  #writeNow(out: Buffer[], head: string, body: Uint8Array | null): void {
    let size = head.length + (body?.length ?? 0)
    for (const part of out) size += part.length
    const spare = takeSpare(size)
    let at = 0
    for (const part of out) {
      putBytes(spare, part, at)
      at += part.length
    }
    out.length = 0
    this.#outBytes = 0
    at = fill(spare, at, head, body)
    const socket = this.#socket
    if (socket.destroyed) {
      keepSpare(spare)
      return
    }
    socket.write(spare.subarray(0, at))
    if (socket.writableLength === 0) keepSpare(spare)
  }

  #write(parts: Buffer[]): void {
    const socket = this.#socket
    if (socket.destroyed) return
    if (parts.length === 1) {
      socket.write(parts[0] as Buffer)
      return
    }
    socket.cork()
    for (const part of parts) socket.write(part)
    socket.uncork()
  }

  /** Once nothing is owed: the close, after what was written. */
  #endAfterWrites(): void {
    if (this.#slots.length > 0) return
    this.#held = null
    this.headDeadline = 0
    this.idleDeadline = 0
    this.#socket.end()
    this.#socket.destroySoon()
  }

  /** Gives the connection to node:http with the bytes it has not answered, once nothing is owed. */
  #handOver(): void {
    if (this.#slots.length > 0 || this.#closed) return
    const socket = this.#socket
    if (socket.readableEnded) {
      // The client half-closed before this request was reached (answers
      // before it were owed to a slow reader or to Redis): node:http cannot
      // be handed bytes after the end of input (unshift would fail and
      // destroy the socket). What came before is answered; the rest goes
      // with the close.
      this.#held = null
      this.#handingOver = false
      this.#ending = true
      this.#endAfterWrites()
      return
    }
    socket.off('data', this.#onData)
    socket.off('close', this.#onClose)
    socket.off('end', this.#onEnd)
    socket.off('drain', this.#maybeResume)
    this.#path.connections.delete(this)
    const held = this.#held
    this.#held = null
    if (held !== null) socket.unshift(held)
    this.#path.options.http.emit('connection', socket)
    socket.resume()
  }

  // A client that half-closes gets what it is owed (as node:http, with the
  // server's allowHalfOpen off, it does not wait for more); then the close.
  readonly #onEnd = (): void => {
    if (this.#handingOver && !this.#ending) {
      // What it sent last is node:http's to answer.
      return
    }
    if (this.#backlog !== null) {
      // What it sent before is answered first (see #maybeResume).
      this.#endAfterBacklog = true
      return
    }
    this.#ending = true
    this.#endAfterWrites()
  }

  readonly #onClose = (): void => {
    this.#closed = true
    this.#slots = []
    this.#owedBytes = 0
    this.#backlog = null
    this.#held = null
    this.#path.connections.delete(this)
  }
}

type FastPathState = {
  readonly options: FastPathOptions
  readonly connections: Set<FastConnection>
  /** What ends a kept-alive answer's head, as node:http writes it. */
  readonly keepAlive: string
}

export function createFastPath(options: FastPathOptions): FastPath {
  const seconds = Math.floor(options.keepAliveTimeoutMs / 1000)
  const state: FastPathState = {
    options,
    connections: new Set(),
    keepAlive:
      options.keepAliveTimeoutMs > 0
        ? `Connection: keep-alive\r\nKeep-Alive: timeout=${seconds}\r\n\r\n`
        : 'Connection: keep-alive\r\n\r\n',
  }
  const sweep = setInterval(() => {
    const now = Date.now()
    for (const connection of state.connections) connection.check(now)
  }, options.checkIntervalMs)
  sweep.unref()
  return {
    accept(socket) {
      state.connections.add(new FastConnection(socket, state))
    },
    get size() {
      return state.connections.size
    },
    closeIdle() {
      for (const connection of state.connections) if (connection.idle) connection.destroy()
    },
    close() {
      clearInterval(sweep)
      for (const connection of state.connections) connection.destroy()
    },
  }
}
