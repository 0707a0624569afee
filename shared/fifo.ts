/**
 * A first-in first-out queue on a ring buffer: `shift()` on an array would
 * move every element on each dequeue, which a hot path (replies owed to a
 * client, commands owed a backend reply, fetches waiting for a slot) cannot
 * afford. The ring keeps its room when it empties, so a queue that fills and
 * drains with every burst (the backend connection's replies owed: hundreds
 * per loop turn at 50 clients pipelining 16) does not regrow its array each
 * time; room past `keep` slots is given back once the queue is empty, so
 * memory follows what is queued.
 */
export class Fifo<T> {
  readonly #keep: number
  #items: (T | undefined)[] = EMPTY as (T | undefined)[]
  #head = 0
  #size = 0
  // items.length - 1; the length is a power of two (or 0 before the first push).
  #mask = -1

  /** `keep`: the most slots kept while empty (a queue per client keeps few). */
  constructor(keep = 64) {
    this.#keep = keep
  }

  get length(): number {
    return this.#size
  }

  push(item: T): void {
    if (this.#size === this.#items.length) this.#grow()
    this.#items[(this.#head + this.#size) & this.#mask] = item
    this.#size++
  }

  /** The oldest item, or undefined when empty. */
  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head]
  }

  /** The item `offset` places after the oldest (0 is the oldest), or undefined. */
  at(offset: number): T | undefined {
    if (offset < 0 || offset >= this.#size) return undefined
    return this.#items[(this.#head + offset) & this.#mask]
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined
    const head = this.#head
    const item = this.#items[head]
    this.#items[head] = undefined
    this.#size--
    if (this.#size === 0) {
      this.#head = 0
      if (this.#items.length > this.#keep) this.#reset()
    } else {
      this.#head = (head + 1) & this.#mask
    }
    return item
  }

  /** Removes every item and returns them, oldest first. */
  drain(): T[] {
    const rest: T[] = new Array(this.#size)
    for (let i = 0; i < this.#size; i++) rest[i] = this.#items[(this.#head + i) & this.#mask] as T
    this.#reset()
    return rest
  }

  #reset(): void {
    this.#items = EMPTY as (T | undefined)[]
    this.#mask = -1
    this.#head = 0
    this.#size = 0
  }

  #grow(): void {
    const old = this.#items
    const length = old.length === 0 ? FIRST_SLOTS : old.length * 2
    const items = new Array<T | undefined>(length).fill(undefined)
    for (let i = 0; i < this.#size; i++) items[i] = old[(this.#head + i) & this.#mask]
    this.#items = items
    this.#head = 0
    this.#mask = length - 1
  }
}

const EMPTY: unknown[] = []
const FIRST_SLOTS = 16
