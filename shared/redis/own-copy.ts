/**
 * A copy of `bytes` in memory of its own, for values that will be cached. A
 * view into a received chunk pins the whole chunk, and Buffer.from() copies
 * small values into a shared 8 KiB pool slab, which pins the slab: either way
 * one long-lived value keeps kilobytes alive, and under eviction churn the
 * process grows until every cached value holds a chunk or slab of its own.
 */
export function ownCopy(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength)
  copy.set(bytes)
  return copy
}
