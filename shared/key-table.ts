/**
 * Values by their string key (`value.key`), for ReadThrough's fetches in
 * progress: an open-addressing table (linear probing, backward-shift
 * deletion, no tombstones) over a seeded hash of the key's characters. It
 * only grows: a Map emptied and refilled by every burst of misses shrinks
 * and regrows its storage each time (about 100 B allocated per miss at 50
 * clients pipelining 16 misses, measured with V8's sampling heap profiler);
 * this table keeps the size of the most fetches that were ever in progress
 * at once, which the service's parallel and queue limits bound.
 */
export class KeyTable<T extends { readonly key: string; readonly keyHash: number }> {
  #slots: (T | undefined)[]
  #mask: number
  #size = 0
  // Seeded per table, so which keys collide cannot be worked out offline.
  readonly #seed = (Math.random() * 2 ** 32) | 0

  constructor(initialSlots = 256) {
    let slots = 8
    while (slots < initialSlots) slots *= 2
    this.#slots = new Array<T | undefined>(slots).fill(undefined)
    this.#mask = slots - 1
  }

  get size(): number {
    return this.#size
  }

  /** The value under `key`, whose `hashOf` is `hash`. */
  get(key: string, hash: number): T | undefined {
    const slots = this.#slots
    const mask = this.#mask
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const value = slots[i]
      if (value === undefined || value.key === key) return value
    }
  }

  /** Adds `value` (its `keyHash` this table's `hashOf` its key), whose key must not be in the table. */
  add(value: T): void {
    if (2 * (this.#size + 1) > this.#slots.length) this.#grow()
    this.#place(value)
    this.#size++
  }

  /** Removes `value` if it is the one under its key; true if it was. */
  remove(value: T): boolean {
    const slots = this.#slots
    const mask = this.#mask
    let i = value.keyHash & mask
    for (;;) {
      const found = slots[i]
      if (found === undefined) return false
      if (found === value) break
      i = (i + 1) & mask
    }
    // Backward shift: each later value of the run moves into the hole
    // unless its home lies after the hole (cyclically).
    let hole = i
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const next = slots[j]
      if (next === undefined) break
      const home = next.keyHash & mask
      const stays = hole < j ? home > hole && home <= j : home > hole || home <= j
      if (!stays) {
        slots[hole] = next
        hole = j
      }
    }
    slots[hole] = undefined
    this.#size--
    return true
  }

  /** Every value, then none: the table keeps its size. */
  drain(): T[] {
    const values: T[] = []
    if (this.#size === 0) return values
    const slots = this.#slots
    for (let i = 0; i < slots.length; i++) {
      const value = slots[i]
      if (value !== undefined) {
        values.push(value)
        slots[i] = undefined
      }
    }
    this.#size = 0
    return values
  }

  #place(value: T): void {
    const slots = this.#slots
    const mask = this.#mask
    let i = value.keyHash & mask
    while (slots[i] !== undefined) i = (i + 1) & mask
    slots[i] = value
  }

  #grow(): void {
    const old = this.#slots
    this.#slots = new Array<T | undefined>(old.length * 2).fill(undefined)
    this.#mask = this.#slots.length - 1
    for (const value of old) if (value !== undefined) this.#place(value)
  }

  /**
   * The key's hash, to keep beside it (`keyHash`): Murmur3's mixing over its
   * UTF-16 code units, seeded; a small integer (31 bits), which V8 stores
   * in a field without boxing.
   */
  hashOf(key: string): number {
    let h = this.#seed
    const length = key.length
    for (let i = 0; i < length; i++) {
      let k = Math.imul(key.charCodeAt(i), 0xcc9e2d51)
      k = (k << 15) | (k >>> 17)
      h ^= Math.imul(k, 0x1b873593)
      h = (h << 13) | (h >>> 19)
      h = (Math.imul(h, 5) + 0xe6546b64) | 0
    }
    h ^= length
    h ^= h >>> 16
    h = Math.imul(h, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    return (h ^ (h >>> 16)) & 0x3fffffff
  }
}
