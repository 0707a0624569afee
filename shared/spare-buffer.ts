/**
 * One buffer for the process's large outgoing writes (a cached value of some
 * KiB with its header), each assembled in it and handed to the socket at
 * once. While the kernel takes every write at once, as it does for a client
 * that keeps up, nothing holds the buffer after the write, and the next large
 * reply uses it again: no allocation per reply. A buffer of its own for each
 * (or for each copy of the value on its way) was tens to hundreds of
 * megabytes a second of memory outside V8's heap, which V8 answers with full
 * collections (see sidecar/resp/output.ts and functions/http-fast-path.ts
 * for what each cost).
 */

/**
 * The smallest buffer taken, and the largest kept for the next write: a
 * write the kernel takes only in part holds its whole buffer until the rest
 * is sent, so a client that stops reading can hold one spare, no more than
 * this, beyond the bytes counted as unsent to it (callers give a client
 * that already has bytes queued a buffer of its own size instead).
 */
const SPARE_MIN = 64 * 1024
const SPARE_MAX = 256 * 1024

let spare: Buffer | null = null

/**
 * A buffer of at least `size` bytes, its content undefined: the kept one
 * when it is large enough, else a new one (rounded up to a power of two
 * from 64 KiB, so one serves writes of similar sizes; exact above 256 KiB).
 * Give it back with `keepSpare` once nothing holds it.
 */
export function takeSpare(size: number): Buffer {
  if (spare !== null && spare.length >= size) {
    const taken = spare
    spare = null
    return taken
  }
  if (size > SPARE_MAX) return Buffer.allocUnsafe(size)
  return Buffer.allocUnsafe(Math.max(SPARE_MIN, 2 ** Math.ceil(Math.log2(size))))
}

/**
 * Keeps `buffer` for the next `takeSpare`, when nothing holds it any more
 * (the kernel took every byte written from it at once): the larger of it and
 * the one kept, up to 256 KiB.
 */
export function keepSpare(buffer: Buffer): void {
  if (buffer.length <= SPARE_MAX && (spare === null || spare.length < buffer.length)) {
    spare = buffer
  }
}
