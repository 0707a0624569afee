/**
 * Up to this many bytes a loop beats `set` of a view: making the view
 * (`subarray`) costs more than copying a short reply or key byte by byte.
 */
export const LOOP_BELOW = 32

/**
 * Copies `source[start, end)` into `target` at `at` and returns the offset
 * after it: by a loop when short (no view made), else by `set`.
 */
export function copyBytes(
  source: Uint8Array,
  start: number,
  end: number,
  target: Uint8Array,
  at: number,
): number {
  const length = end - start
  if (length < LOOP_BELOW) {
    for (let i = 0; i < length; i++) target[at + i] = source[start + i] as number
  } else {
    target.set(start === 0 && end === source.length ? source : source.subarray(start, end), at)
  }
  return at + length
}
