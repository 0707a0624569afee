/**
 * One measurement of one cache in a fresh process, so JIT state and heap
 * left by another implementation cannot colour it. Prints one JSON line.
 *
 *   node cache-worker.js ops  <impl> <uniform|zipf> <ops> <capacity> <keyspace> [<timedOps>]
 *   node --expose-gc cache-worker.js whole <impl> <entries> <keyBytes> <valueBytes>
 *
 * impl: `slab` (SlabCache, the proxy's cache: the key's bytes hashed where
 * they lie in a request chunk, the value copied out with copyValue),
 * `lru-cache-bytes` (the npm package used as the proxy would have to: each
 * key decoded from the same bytes to a string, the value copied out),
 * `lru-cache` (the package with ready-made key strings, whose hashes V8
 * keeps: its best case, which a request never brings), or `ours` (LruCache,
 * the in-heap cache SlabCache replaced; `whole` only).
 */
import { LRUCache } from 'lru-cache'
import { LruCache } from '../../shared/cache/lru-cache.js'
import { SlabCache } from '../../shared/cache/slab-cache.js'

export const IMPLS = ['slab', 'lru-cache-bytes', 'lru-cache', 'ours'] as const
type Impl = (typeof IMPLS)[number]
const TTL_MS = 3_600_000
// Zipf-like: the key of popularity rank r is drawn with weight 1 / r^s.
export const ZIPF_EXPONENT = 0.9

const [mode, impl] = process.argv.slice(2, 4) as [string, Impl]
if (!(IMPLS as readonly string[]).includes(impl)) throw new TypeError(`unknown cache \`${impl}\``)

if (mode === 'ops') {
  const [dist, ops, capacity, keyspace, timedOps = ops] = process.argv.slice(4)
  report(
    opsPerSecond(
      impl,
      dist as 'uniform' | 'zipf',
      +(ops ?? 0),
      +(capacity ?? 0),
      +(keyspace ?? 0),
      +(timedOps ?? 0),
    ),
  )
} else if (mode === 'whole') {
  const [entries, keyBytes, valueBytes] = process.argv.slice(4)
  report(wholePerEntry(impl, +(entries ?? 0), +(keyBytes ?? 0), +(valueBytes ?? 0)))
} else {
  throw new TypeError(`unknown mode \`${mode}\``)
}

function report(result: Record<string, number>): void {
  process.stdout.write(`BENCH_JSON ${JSON.stringify(result)}\n`)
}

/** Small seeded PRNG (mulberry32): the same key sequence for every cache. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function keySequence(dist: 'uniform' | 'zipf', ops: number, keyspace: number): Uint32Array {
  const next = random(42)
  const seq = new Uint32Array(ops)
  if (dist === 'uniform') {
    for (let i = 0; i < ops; i++) seq[i] = Math.floor(next() * keyspace)
    return seq
  }
  const cdf = new Float64Array(keyspace)
  let sum = 0
  for (let r = 0; r < keyspace; r++) {
    sum += 1 / (r + 1) ** ZIPF_EXPONENT
    cdf[r] = sum
  }
  for (let i = 0; i < ops; i++) {
    const x = next() * sum
    let lo = 0
    let hi = keyspace - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((cdf[mid] as number) < x) lo = mid + 1
      else hi = mid
    }
    seq[i] = lo
  }
  return seq
}

/**
 * get; on a miss, set: what the read-through does. One untimed pass of the
 * `ops` long sequence fills the cache and warms the JIT; then three timed
 * passes over its first `timedOps` (at most `ops`), reporting the median
 * pass. A shorter timed pass reads the cache the whole sequence filled.
 */
function opsPerSecond(
  impl: Impl,
  dist: 'uniform' | 'zipf',
  ops: number,
  capacity: number,
  keyspace: number,
  timedOps: number,
): Record<string, number> {
  if (!(timedOps >= 1 && timedOps <= ops)) {
    throw new RangeError(`Expected \`timedOps\` to be from 1 to ${ops}, got \`${timedOps}\``)
  }
  const keys = Array.from({ length: keyspace }, (_, i) => `key:${i}`)
  const seq = keySequence(dist, ops, keyspace)
  const value = new Uint8Array(100)
  const pass =
    impl === 'slab'
      ? slabPass(capacity, keys, seq, value)
      : impl === 'lru-cache-bytes'
        ? lruBytesPass(capacity, keys, seq, value)
        : impl === 'lru-cache'
          ? lruPass(capacity, keys, seq, value)
          : unmeasured(impl)
  pass(ops)
  const passes = [pass(timedOps), pass(timedOps), pass(timedOps)].sort((a, b) => a.ms - b.ms)
  const mid = passes[1] as Pass
  const cpu = [...passes].sort((a, b) => a.cpuMs - b.cpuMs)[1] as Pass
  return {
    opsPerSec: (timedOps / mid.ms) * 1000,
    opsPerCpuSec: (timedOps / cpu.cpuMs) * 1000,
    hitRatio: mid.hits / timedOps,
  }
}

type Pass = { ms: number; cpuMs: number; hits: number }

/** Wall and CPU time of one pass; CPU time does not count time spent waiting for a core. */
function timed(body: () => number): Pass {
  const cpuBefore = process.cpuUsage()
  const start = performance.now()
  const hits = body()
  const ms = performance.now() - start
  const cpu = process.cpuUsage(cpuBefore)
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, hits }
}

/** Every key's latin1 bytes back to back in one buffer, as keys arrive inside request chunks. */
function packKeys(keys: string[]): { bytes: Buffer; starts: Uint32Array } {
  const starts = new Uint32Array(keys.length + 1)
  for (let i = 0; i < keys.length; i++) {
    starts[i + 1] = (starts[i] as number) + (keys[i] as string).length
  }
  const bytes = Buffer.alloc(starts[keys.length] as number)
  for (let i = 0; i < keys.length; i++)
    bytes.write(keys[i] as string, starts[i] as number, 'latin1')
  return { bytes, starts }
}

/**
 * lru-cache as the proxy would use it: a request brings the key as bytes,
 * so each lookup first makes a string of them (whose hash V8 then computes
 * afresh), and a hit's value is copied into the reply.
 */
function lruBytesPass(capacity: number, keys: string[], seq: Uint32Array, value: Uint8Array) {
  const cache = new LRUCache<string, Uint8Array>({ max: capacity, ttl: TTL_MS })
  const { bytes, starts } = packKeys(keys)
  const out = new Uint8Array(64 * 1024)
  return (count: number) =>
    timed(() => {
      let hits = 0
      for (let i = 0; i < count; i++) {
        const k = seq[i] as number
        const key = bytes.toString('latin1', starts[k] as number, starts[k + 1] as number)
        const found = cache.get(key)
        if (found === undefined) cache.set(key, value)
        else {
          out.set(found)
          hits++
        }
      }
      return hits
    })
}

function unmeasured(impl: Impl): never {
  throw new TypeError(`\`${impl}\` is measured by \`whole\` only`)
}

function slabPass(capacity: number, keys: string[], seq: Uint32Array, value: Uint8Array) {
  const cache = new SlabCache({ capacity, ttlMs: TTL_MS })
  const { bytes, starts } = packKeys(keys)
  const out = new Uint8Array(64 * 1024)
  return (count: number) =>
    timed(() => {
      let hits = 0
      for (let i = 0; i < count; i++) {
        const k = seq[i] as number
        const start = starts[k] as number
        const end = starts[k + 1] as number
        const slot = cache.getBytes(bytes, start, end)
        if (slot < 0) cache.setBytes(bytes, start, end, value)
        else {
          cache.copyValue(slot, out)
          hits++
        }
      }
      return hits
    })
}

/** lru-cache with ready-made key strings (its best case); a hit's value is copied out, as the others do. */
function lruPass(capacity: number, keys: string[], seq: Uint32Array, value: Uint8Array) {
  const cache = new LRUCache<string, Uint8Array>({ max: capacity, ttl: TTL_MS })
  const out = new Uint8Array(64 * 1024)
  return (count: number) =>
    timed(() => {
      let hits = 0
      for (let i = 0; i < count; i++) {
        const key = keys[seq[i] as number] as string
        const found = cache.get(key)
        if (found === undefined) cache.set(key, value)
        else {
          out.set(found)
          hits++
        }
      }
      return hits
    })
}

/**
 * Everything the cache costs per entry, its keys and values included: each
 * key and value is made as it is stored and then dropped by the caller, so
 * what is still held after a GC is what the cache keeps.
 */
function wholePerEntry(
  impl: Impl,
  entries: number,
  keyBytes: number,
  valueBytes: number,
): Record<string, number> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('run with --expose-gc')
  const used = () => {
    gc()
    gc()
    const m = process.memoryUsage()
    return { heap: m.heapUsed, arrayBuffers: m.arrayBuffers }
  }
  const prefix = 'key:'
  const keyOf = (i: number) => prefix + String(i).padStart(keyBytes - prefix.length, '0')
  const before = used()
  let cache: unknown
  if (impl === 'slab') {
    const slab = new SlabCache({ capacity: entries, ttlMs: TTL_MS })
    for (let i = 0; i < entries; i++) slab.set(keyOf(i), new Uint8Array(valueBytes))
    cache = slab
  } else if (impl === 'lru-cache' || impl === 'lru-cache-bytes') {
    // The same store either way: how keys reach it makes no difference here.
    const theirs = new LRUCache<string, Uint8Array>({ max: entries, ttl: TTL_MS })
    for (let i = 0; i < entries; i++) theirs.set(keyOf(i), new Uint8Array(valueBytes))
    cache = theirs
  } else if (impl === 'ours') {
    const ours = new LruCache<Uint8Array>({ capacity: entries, ttlMs: TTL_MS })
    for (let i = 0; i < entries; i++) ours.set(keyOf(i), new Uint8Array(valueBytes))
    cache = ours
  } else {
    throw new TypeError(`\`${impl}\` has no whole measurement`)
  }
  const after = used()
  if (cache === undefined) throw new Error('unreachable')
  const heap = (after.heap - before.heap) / entries
  const arrayBuffers = (after.arrayBuffers - before.arrayBuffers) / entries
  return {
    bytesPerEntry: heap + arrayBuffers,
    heapPerEntry: heap,
    arrayBuffersPerEntry: arrayBuffers,
  }
}
