import type { CacheStats } from './lru-cache.js'

/**
 * The naive reference the caches' property tests check them against (only
 * tests import it): an array ordered from least to most recently used,
 * scanned linearly. It states the documented semantics directly, for
 * LruCache and SlabCache alike.
 */
export type ModelEntry<V> = { key: string; value: V; expiresAt: number }

export class ModelCache<V> {
  entries: ModelEntry<V>[] = []
  stats: CacheStats = { hits: 0, misses: 0, evictions: 0, expirations: 0 }

  constructor(
    readonly capacity: number,
    readonly ttlMs: number,
    readonly clock: { now(): number },
  ) {}

  #expired(entry: ModelEntry<V>): boolean {
    return this.clock.now() >= entry.expiresAt
  }

  #find(key: string): number {
    return this.entries.findIndex((e) => e.key === key)
  }

  get(key: string): V | null {
    const i = this.#find(key)
    const entry = this.entries[i]
    if (entry === undefined) {
      this.stats.misses++
      return null
    }
    this.entries.splice(i, 1)
    if (this.#expired(entry)) {
      this.stats.misses++
      this.stats.expirations++
      return null
    }
    this.stats.hits++
    this.entries.push(entry)
    return entry.value
  }

  peek(key: string): V | null {
    const entry = this.entries[this.#find(key)]
    return entry === undefined || this.#expired(entry) ? null : entry.value
  }

  set(key: string, value: V, ttlMs = this.ttlMs): void {
    if (ttlMs <= 0) {
      this.delete(key)
      return
    }
    const i = this.#find(key)
    const existing = this.entries[i]
    if (existing !== undefined) {
      if (this.#expired(existing)) this.stats.expirations++
      this.entries.splice(i, 1)
    } else if (this.entries.length === this.capacity) {
      const lru = this.entries.shift() as ModelEntry<V>
      if (this.#expired(lru)) this.stats.expirations++
      else this.stats.evictions++
    }
    this.entries.push({ key, value, expiresAt: this.clock.now() + Math.min(ttlMs, this.ttlMs) })
  }

  delete(key: string): boolean {
    const i = this.#find(key)
    const entry = this.entries[i]
    if (entry === undefined) return false
    this.entries.splice(i, 1)
    if (this.#expired(entry)) {
      this.stats.expirations++
      return false
    }
    return true
  }

  clear(): void {
    this.entries = []
  }
}
