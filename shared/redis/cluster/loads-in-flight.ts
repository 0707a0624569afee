/** The node a read is recorded on when it is on no one node's stream. */
export const ELSEWHERE = -1

/**
 * The cache's reads in flight over a cluster, by key: the node each went
 * to. A node's invalidation of a key whose every read in flight went to that
 * node by `getTo` is in order with them on its one connection, as with one
 * Redis (see RespTracking): those reads' GETs ran after the write, and may
 * be stored. A read elsewhere (another node, a redirect, one waiting for the
 * topology, recorded as ELSEWHERE) has no order with that stream: an
 * invalidation then drops the key's reads. Once a key has reads on two
 * nodes it counts as elsewhere until none is left: that only drops more.
 */
export class LoadsInFlight {
  readonly #keys = new Map<string, { node: number; count: number }>()

  /** Keys with reads in flight. */
  get size(): number {
    return this.#keys.size
  }

  /** A read of `key` sent to node `node` (or ELSEWHERE). */
  begin(key: string, node: number): void {
    const entry = this.#keys.get(key)
    if (entry === undefined) this.#keys.set(key, { node, count: 1 })
    else {
      entry.count++
      if (entry.node !== node) entry.node = ELSEWHERE
    }
  }

  /** A read of `key` answered or failed: once for each `begin`. */
  end(key: string): void {
    const entry = this.#keys.get(key)
    if (entry !== undefined && --entry.count === 0) this.#keys.delete(key)
  }

  /** Whether every read of `key` in flight went to node `node` by getTo (or none is in flight). */
  orderedOn(key: string, node: number): boolean {
    const entry = this.#keys.get(key)
    return entry === undefined || entry.node === node
  }
}
