/**
 * A first-in first-out queue on an array with a head index: `shift()` would
 * move every element on each dequeue, which a hot path (replies owed to a
 * client, commands owed a backend reply, fetches waiting for a slot) cannot
 * afford. The array is emptied when the head catches up and compacted when
 * the dead prefix outgrows the live part, so memory follows what is queued.
 */
export class Fifo<T> {
  #items: (T | undefined)[] = []
  #head = 0

  get length(): number {
    return this.#items.length - this.#head
  }

  push(item: T): void {
    this.#items.push(item)
  }

  /** The oldest item, or undefined when empty. */
  peek(): T | undefined {
    return this.#items[this.#head]
  }

  /** The item `offset` places after the oldest (0 is the oldest), or undefined. */
  at(offset: number): T | undefined {
    return this.#items[this.#head + offset]
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  shift(): T | undefined {
    if (this.#head === this.#items.length) return undefined
    const item = this.#items[this.#head]
    this.#items[this.#head++] = undefined
    if (this.#head === this.#items.length) {
      this.#items.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head)
      this.#head = 0
    }
    return item
  }

  /** Removes every item and returns them, oldest first. */
  drain(): T[] {
    const rest = this.#items.slice(this.#head) as T[]
    this.#items = []
    this.#head = 0
    return rest
  }
}
