import { TopologyError } from '../../errors.js'
import type { Reply } from '../reply-decoder.js'
import { SLOTS } from './slot.js'

/**
 * A Redis Cluster's layout as CLUSTER SLOTS describes it: which primary owns
 * each range of slots. Pure data; the connections live in cluster-backend.ts.
 */

/** A primary's address as `host:port` (IPv6 in brackets), the key nodes are known by. */
export type NodeAddress = string

export type SlotRange = {
  readonly start: number
  readonly end: number
  readonly primary: NodeAddress
  /** The primary's node ID (40 hex characters), '' when the server did not give one. */
  readonly id: string
}

/** `host:port` as a URL authority: an IPv6 address in brackets. */
export function nodeAddress(host: string, port: number): NodeAddress {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`
}

/** Host and port of `host:port` (`[v6]:port`); undefined when it is not one. */
export function splitAddress(address: string): { host: string; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address)
  if (match === null) return undefined
  const port = Number(match[3])
  if (port < 1 || port > 65535) return undefined
  return { host: match[1] ?? match[2] ?? '', port }
}

/**
 * The ranges of a CLUSTER SLOTS reply (RESP2 or RESP3): `[start, end,
 * [host, port, id, ...], replicas...]` each. An empty or `?` host is the
 * one the question was asked of (Redis's unknown endpoint), as its docs say.
 */
export function parseClusterSlots(reply: Reply, askedHost: string): SlotRange[] {
  if (!Array.isArray(reply)) throw new TopologyError('CLUSTER SLOTS did not answer an array')
  const ranges: SlotRange[] = []
  for (const entry of reply) {
    if (!Array.isArray(entry) || entry.length < 3) {
      throw new TopologyError('CLUSTER SLOTS: a range without a primary')
    }
    const [start, end, primary] = entry
    if (
      typeof start !== 'number' ||
      typeof end !== 'number' ||
      !(start >= 0 && end >= start && end < SLOTS)
    ) {
      throw new TopologyError(`CLUSTER SLOTS: bad range ${String(start)}-${String(end)}`)
    }
    if (!Array.isArray(primary) || primary.length < 2) {
      throw new TopologyError('CLUSTER SLOTS: a primary without an address')
    }
    const host = text(primary[0])
    const port = primary[1]
    if (typeof port !== 'number' || port < 1 || port > 65535) {
      throw new TopologyError(`CLUSTER SLOTS: bad port ${String(port)}`)
    }
    ranges.push({
      start,
      end,
      primary: nodeAddress(host === '' || host === '?' ? askedHost : host, port),
      id: primary.length > 2 ? text(primary[2]) : '',
    })
  }
  return ranges
}

function text(reply: Reply | undefined): string {
  if (Buffer.isBuffer(reply)) return reply.toString('latin1')
  if (typeof reply === 'string') return reply
  if (reply === null || reply === undefined) return ''
  throw new TopologyError(`CLUSTER SLOTS: expected a string, got ${String(reply)}`)
}

/**
 * Slot -> primary, with the primaries in the order of the first slot each
 * owns (the order fan-out commands visit them in and SCAN's cursor numbers
 * them by).
 */
export class SlotMap {
  readonly #owners: (NodeAddress | undefined)[]
  readonly #primaries: NodeAddress[]
  readonly #ids: ReadonlyMap<NodeAddress, string>

  constructor(ranges: readonly SlotRange[]) {
    this.#owners = new Array<NodeAddress | undefined>(SLOTS).fill(undefined)
    const first = new Map<NodeAddress, number>()
    const ids = new Map<NodeAddress, string>()
    for (const range of ranges) {
      this.#owners.fill(range.primary, range.start, range.end + 1)
      const seen = first.get(range.primary)
      if (seen === undefined || range.start < seen) first.set(range.primary, range.start)
      if (range.id !== '') ids.set(range.primary, range.id)
    }
    this.#primaries = [...first.entries()].sort((a, b) => a[1] - b[1]).map(([address]) => address)
    this.#ids = ids
  }

  owner(slot: number): NodeAddress | undefined {
    return this.#owners[slot]
  }

  /** A MOVED reply's news, before the next refresh confirms it. */
  move(slot: number, address: NodeAddress): void {
    this.#owners[slot] = address
    if (!this.#primaries.includes(address)) this.#primaries.push(address)
  }

  primaries(): readonly NodeAddress[] {
    return this.#primaries
  }

  id(address: NodeAddress): string | undefined {
    return this.#ids.get(address)
  }

  /** Whether every slot has an owner (Redis's cluster_state:ok needs it too). */
  complete(): boolean {
    return this.#owners.every((owner) => owner !== undefined)
  }

  /** Whether any slot's owner differs from `other`'s. */
  differs(other: SlotMap): boolean {
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.#owners[slot] !== other.#owners[slot]) return true
    }
    return false
  }
}
