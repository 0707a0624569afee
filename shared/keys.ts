/**
 * Keys travel as byte strings (one char per byte, latin1) so RESP's binary keys
 * and HTTP's UTF-8 keys share one cache. These helpers convert at the edges.
 */

const NON_ASCII = /[\u0080-\uffff]/

/** A byte string shown as UTF-8 text (invalid sequences become U+FFFD). */
export function keyToText(key: string): string {
  return NON_ASCII.test(key) ? Buffer.from(key, 'latin1').toString('utf8') : key
}

export function keyFromBytes(bytes: Uint8Array): string {
  // A Buffer (every RESP argument) needs no view of its own.
  return (
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  ).toString('latin1')
}

export function keyToBytes(key: string): Buffer {
  return Buffer.from(key, 'latin1')
}

/**
 * The keys the cache may hold (CACHE_PREFIXES): those that start with one of
 * these prefixes' bytes (UTF-8, as the environment gives them). Redis is
 * asked to broadcast writes under them only, so a key outside them is read
 * through every time and never stored: no write to it would be heard of.
 */
export class KeyPrefixes {
  readonly #bytes: readonly Buffer[]
  // The same prefixes as byte strings, for keys that arrive as one.
  readonly #strings: readonly string[]

  constructor(prefixes: readonly string[]) {
    this.#bytes = prefixes.map((prefix) => Buffer.from(prefix, 'utf8'))
    this.#strings = this.#bytes.map((bytes) => bytes.toString('latin1'))
  }

  /** Whether `key` (a byte string) starts with one of the prefixes. */
  has(key: string): boolean {
    for (const prefix of this.#strings) if (key.startsWith(prefix)) return true
    return false
  }

  /** Whether the key `bytes[start..end)` starts with one of the prefixes. */
  hasBytes(bytes: Uint8Array, start: number, end: number): boolean {
    for (const prefix of this.#bytes) {
      if (end - start < prefix.length) continue
      let at = 0
      while (at < prefix.length && bytes[start + at] === prefix[at]) at++
      if (at === prefix.length) return true
    }
    return false
  }
}

/**
 * Why two of `prefixes` cannot both be asked of Redis (one starts with the
 * other, which CLIENT TRACKING BCAST refuses), or undefined.
 */
export function prefixOverlap(prefixes: readonly string[]): string | undefined {
  const bytes = prefixes.map((prefix) => Buffer.from(prefix, 'utf8'))
  for (let i = 0; i < bytes.length; i++) {
    for (let j = 0; j < bytes.length; j++) {
      const [a, b] = [bytes[i] as Buffer, bytes[j] as Buffer]
      if (i !== j && b.length >= a.length && b.subarray(0, a.length).equals(a)) {
        return `'${prefixes[j]}' overlaps '${prefixes[i]}', which already covers it`
      }
    }
  }
  return undefined
}
