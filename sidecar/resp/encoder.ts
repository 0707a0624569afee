/**
 * RESP reply builders for the sidecar. Constant replies are encoded once at
 * module load; a bulk reply is header + value + CRLF, and a large value is
 * written without being copied.
 *
 * Returned Buffers may be shared (constants, cached headers): never mutate
 * them.
 */

import { putBytes } from '../../shared/bytes.js'

const CR = 13
const LF = 10

export const CRLF = Buffer.from('\r\n')
export const OK = Buffer.from('+OK\r\n')
export const PONG = Buffer.from('+PONG\r\n')
/** RESP2 null: `$-1\r\n`. */
export const NULL_BULK = Buffer.from('$-1\r\n')
/** RESP3 null: `_\r\n`. */
export const NULL_RESP3 = Buffer.from('_\r\n')
export const EMPTY_ARRAY = Buffer.from('*0\r\n')

/**
 * Values shorter than this are copied with their header and CRLF (into one
 * Buffer, or into a connection's output slab): copying a few KiB costs less
 * than a write of its own. Longer values are written by reference, never
 * copied.
 */
export const BULK_COPY_THRESHOLD = 4096

const CACHED_HEADERS = 1024
const bulkHeaders: Buffer[] = Array.from({ length: CACHED_HEADERS }, (_, n) =>
  Buffer.from(`$${n}\r\n`, 'latin1'),
)

/** `$<length>\r\n`; lengths below 1024 come from a cache. */
export function bulkHeader(length: number): Buffer {
  return bulkHeaders[length] ?? header('$', checkCount('length', length))
}

/** A bulk reply as one Buffer; copies the value. Use for small values. */
export function encodeBulk(value: Uint8Array): Buffer {
  const length = value.length
  const head = bulkHeaders[length]
  const headLength = head === undefined ? digitCount(length) + 3 : head.length
  const out = Buffer.allocUnsafe(headLength + length + 2)
  if (head === undefined) {
    out.write(`$${length}\r\n`, 0, 'latin1')
  } else {
    head.copy(out, 0)
  }
  putBytes(out, value, headLength)
  out[headLength + length] = CR
  out[headLength + length + 1] = LF
  return out
}

/**
 * A value as a bulk reply: one Buffer (header, value, CRLF) for a value under
 * BULK_COPY_THRESHOLD bytes, else the three parts, so the value itself is
 * never copied.
 */
export function bulkReply(value: Uint8Array): Buffer | Uint8Array[] {
  return value.length < BULK_COPY_THRESHOLD
    ? encodeBulk(value)
    : [bulkHeader(value.length), value, CRLF]
}

/** A bulk reply of text, encoded as UTF-8. */
export function bulkString(text: string): Buffer {
  const length = Buffer.byteLength(text)
  const headLength = digitCount(length) + 3
  const out = Buffer.allocUnsafe(headLength + length + 2)
  out.write(`$${length}\r\n`, 0, 'latin1')
  out.write(text, headLength, 'utf8')
  out[headLength + length] = CR
  out[headLength + length + 1] = LF
  return out
}

/** `+<text>\r\n`; CR and LF in `text` become spaces, so it stays one line. */
export function simpleString(text: string): Buffer {
  return Buffer.from(`+${oneLine(text)}\r\n`)
}

/**
 * `-<message>\r\n`. The message starts with its error code (`ERR ...`,
 * `WRONGTYPE ...`); CR and LF in it become spaces, as Redis does, since it
 * may quote what a client sent. `latin1` for a message built from byte
 * strings (client arguments as sent), so their bytes go back unchanged.
 */
export function error(message: string, encoding: 'utf8' | 'latin1' = 'utf8'): Buffer {
  return Buffer.from(`-${oneLine(message)}\r\n`, encoding)
}

/** `:<n>\r\n`. */
export function integer(n: number | bigint): Buffer {
  if (typeof n === 'number' && !Number.isSafeInteger(n)) {
    throw new TypeError(`Expected \`n\` to be a safe integer, got \`${n}\``)
  }
  return header(':', n)
}

/** `*<count>\r\n`, followed by `count` replies. */
export function arrayHeader(count: number): Buffer {
  return count === 0 ? EMPTY_ARRAY : header('*', checkCount('count', count))
}

/** RESP3 `%<count>\r\n`, followed by `count` key and value replies. */
export function mapHeader(count: number): Buffer {
  return header('%', checkCount('count', count))
}

/** The null reply of the connection's protocol version. */
export function nullReply(resp3: boolean): Buffer {
  return resp3 ? NULL_RESP3 : NULL_BULK
}

function header(prefix: string, n: number | bigint): Buffer {
  return Buffer.from(`${prefix}${n}\r\n`, 'latin1')
}

function checkCount(name: string, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new TypeError(`Expected \`${name}\` to be an integer from 0 and up, got \`${n}\``)
  }
  return n
}

function digitCount(n: number): number {
  let digits = 1
  while (n >= 10) {
    n = Math.floor(n / 10)
    digits++
  }
  return digits
}

function oneLine(text: string): string {
  return /[\r\n]/.test(text) ? text.replace(/[\r\n]/g, ' ') : text
}

/**
 * A structured reply for the rarely used commands (HELLO, COMMAND, INFO):
 * strings are bulk strings, `{ simple }` a status line, numbers integers,
 * `null` the protocol's null, arrays arrays, and a `Map` a RESP3 map (a flat
 * array of key, value, key, value in RESP2, as Redis sends it).
 */
export type Structured =
  | string
  | number
  | null
  | { simple: string }
  | Structured[]
  | Map<string, Structured>

/** Encodes a Structured reply for a connection of the given protocol version. */
export function encodeStructured(value: Structured, resp3: boolean): Buffer {
  const parts: Buffer[] = []
  appendStructured(parts, value, resp3)
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
}

function appendStructured(parts: Buffer[], value: Structured, resp3: boolean): void {
  if (value === null) {
    parts.push(nullReply(resp3))
  } else if (typeof value === 'string') {
    parts.push(bulkString(value))
  } else if (typeof value === 'number') {
    parts.push(integer(value))
  } else if (Array.isArray(value)) {
    parts.push(arrayHeader(value.length))
    for (const item of value) appendStructured(parts, item, resp3)
  } else if (value instanceof Map) {
    parts.push(resp3 ? mapHeader(value.size) : arrayHeader(value.size * 2))
    for (const [key, item] of value) {
      parts.push(bulkString(key))
      appendStructured(parts, item, resp3)
    }
  } else {
    parts.push(simpleString(value.simple))
  }
}

/** A command as clients send it (an array of bulk strings), for a backend connection. */
export function command(args: readonly Uint8Array[]): Buffer {
  let size = 0
  for (const arg of args) size += arg.length
  const head = `*${args.length}\r\n`
  const out = Buffer.allocUnsafe(Buffer.byteLength(head) + size + args.length * 16)
  let at = out.write(head, 0, 'latin1')
  for (const arg of args) {
    at += out.write(`$${arg.length}\r\n`, at, 'latin1')
    putBytes(out, arg, at)
    at += arg.length
    out[at++] = 13
    out[at++] = 10
  }
  return out.subarray(0, at)
}
