import { type Reply, ReplyDecoder } from '../reply-decoder.js'
import { type NodeAddress, nodeAddress, splitAddress } from './topology.js'

/**
 * The reply bytes the cluster backend reads (redirections, parts of a split
 * command) and writes (their merge), as raw RESP frames like every
 * forwarded reply.
 */

export const CROSSSLOT = Buffer.from("-CROSSSLOT Keys in request don't hash to the same slot\r\n")
export const OK = Buffer.from('+OK\r\n')
const MINUS = 45

/** One framed reply as a value (a slot table, a SCAN page, an MGET part). */
export function decodeFrame(parts: readonly Buffer[]): Reply {
  const decoder = new ReplyDecoder()
  let value: Reply | undefined
  let count = 0
  for (const part of parts) {
    decoder.push(part, (reply) => {
      value = reply
      count++
    })
  }
  if (count !== 1) throw new Error('expected exactly one reply in a frame')
  return value as Reply
}

export function isError(parts: readonly Buffer[]): boolean {
  return parts[0]?.[0] === MINUS
}

/** An error frame's message, without `-` and CRLF. */
export function errorText(parts: readonly Buffer[]): string {
  return Buffer.concat(parts).toString('latin1').slice(1).replace(/\r\n$/, '')
}

export type Moved = {
  readonly kind: 'moved' | 'ask'
  readonly slot: number
  readonly address: NodeAddress
}

export type Redirect =
  | Moved
  /** TRYAGAIN (keys of a slot being migrated) or CLUSTERDOWN (a failover under way). */
  | { readonly kind: 'retry' }

/**
 * What a cluster error asks of the client, if anything. MOVED and ASK name
 * the node as `host:port`, or `:port` for the unknown endpoint: the host of
 * the node that answered.
 */
export function redirectOf(message: string, fromHost: string): Redirect | undefined {
  if (message.startsWith('TRYAGAIN') || message.startsWith('CLUSTERDOWN')) return { kind: 'retry' }
  const match = /^(MOVED|ASK) (\d+) (\S+)$/.exec(message)
  if (match === null) return undefined
  // Redis writes an IPv6 address unbracketed (`::1:7000`): the port follows the last colon.
  const endpoint = match[3] as string
  const colon = endpoint.lastIndexOf(':')
  if (colon === -1) return undefined
  const host = endpoint.slice(0, colon)
  const target = endpoint.startsWith('[')
    ? splitAddress(endpoint)
    : splitAddress(host === '' ? endpoint : `[${host}]:${endpoint.slice(colon + 1)}`)
  if (target === undefined) return undefined
  return {
    kind: match[1] === 'MOVED' ? 'moved' : 'ask',
    slot: Number(match[2]),
    address: nodeAddress(target.host === '' ? fromHost : target.host, target.port),
  }
}

export function integer(value: number | bigint): Buffer {
  return Buffer.from(`:${value}\r\n`, 'latin1')
}

function bulk(value: Buffer | string): Buffer[] {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : value
  return [Buffer.from(`$${bytes.length}\r\n`, 'latin1'), bytes, Buffer.from('\r\n')]
}

const NIL2 = Buffer.from('$-1\r\n')
const NIL3 = Buffer.from('_\r\n')

/** An array of bulk strings and nils, in the client's protocol. */
export function bulkArray(values: readonly (Buffer | null)[], resp3: boolean): Buffer[] {
  const out: Buffer[] = [Buffer.from(`*${values.length}\r\n`, 'latin1')]
  for (const value of values) {
    if (value === null) out.push(resp3 ? NIL3 : NIL2)
    else out.push(...bulk(value))
  }
  return out
}

/** The sum of integer replies (DEL, EXISTS, DBSIZE across slots and nodes), or the first error. */
export function sumOf(replies: readonly Buffer[][]): Buffer[] {
  let sum = 0n
  for (const parts of replies) {
    if (isError(parts)) return parts
    const value = decodeFrame(parts)
    if (typeof value !== 'number') return parts
    sum += BigInt(value)
  }
  return [integer(sum)]
}

/** The first error among the replies, or the first reply (FLUSHALL, SCRIPT LOAD on every node). */
export function firstErrorOrFirst(replies: readonly Buffer[][]): Buffer[] {
  for (const parts of replies) if (isError(parts)) return parts
  return replies[0] ?? [OK]
}

/** Arrays joined into one (KEYS of every node), or the first error. */
export function concatArrays(replies: readonly Buffer[][]): Buffer[] {
  let count = 0
  const bodies: Buffer[] = []
  for (const parts of replies) {
    if (isError(parts)) return parts
    const bytes = Buffer.concat(parts)
    const eol = bytes.indexOf('\r\n')
    const n = Number(bytes.toString('latin1', 1, eol))
    if (!(n > 0)) continue
    count += n
    bodies.push(bytes.subarray(eol + 2))
  }
  return [Buffer.from(`*${count}\r\n`, 'latin1'), ...bodies]
}

/** One RESP value as the client's protocol writes it (the proxy's own CLUSTER answers). */
export type Value = string | number | Buffer | Value[] | { readonly map: [string, Value][] }

export function encode(value: Value, resp3: boolean): Buffer[] {
  if (typeof value === 'number') return [integer(value)]
  if (typeof value === 'string' || Buffer.isBuffer(value)) return bulk(value)
  if (Array.isArray(value)) {
    const out: Buffer[] = [Buffer.from(`*${value.length}\r\n`, 'latin1')]
    for (const item of value) out.push(...encode(item, resp3))
    return out
  }
  const entries = value.map
  const out: Buffer[] = [
    Buffer.from(resp3 ? `%${entries.length}\r\n` : `*${entries.length * 2}\r\n`),
  ]
  for (const [key, item] of entries) out.push(...bulk(key), ...encode(item, resp3))
  return out
}
