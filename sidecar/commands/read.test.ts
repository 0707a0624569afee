import { describe, expect, it } from 'vitest'
// The command table first, as the server loads it: read.ts alone would
// evaluate before the table that lists it (read -> forward -> access -> index).
import './index.js'
import { readKey } from './read.js'
import type { CommandContext } from './types.js'

/** A context whose cache holds nothing and which records what each miss hands the service. */
function missContext() {
  const fetches: unknown[][] = []
  const later = { settle() {}, settleBulk() {} }
  const ctx = {
    session: { writesInFlight: 0, resp3: false },
    server: {
      service: {
        hitSlot: () => -1,
        fetchTo: (...args: unknown[]) => {
          fetches.push(args)
        },
      },
    },
    later: () => later,
  } as unknown as CommandContext
  return { ctx, fetches }
}

describe('readKey on a miss', () => {
  it('hands the fetch a view of the key when the buffer it lies in is small', () => {
    const { ctx, fetches } = missContext()
    // Node's pool (8 KiB), as a small received chunk is.
    const pooled = Buffer.from('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n')
    expect(pooled.buffer.byteLength).toBeLessThanOrEqual(8192)
    readKey(ctx, pooled, 17, 20)
    // A chunk of its own of 5,000 bytes.
    const own = Buffer.alloc(5000, 'k')
    readKey(ctx, own, 0, 3)
    expect(fetches.map((args) => args.length)).toEqual([5, 5])
    expect(fetches[0]?.[0]).toBe('key')
    expect(fetches[0]?.slice(2)).toEqual([pooled, 17, 20])
  })

  it('keeps no view into a large chunk, whether handed the chunk or the key alone', () => {
    const { ctx, fetches } = missContext()
    // A 60 KB argument and a GET read at once: the fast path hands over the
    // chunk, the command table's GET the key's own 3-byte view of it.
    const chunk = Buffer.alloc(64 * 1024, 'p')
    chunk.write('key', 1000, 'latin1')
    readKey(ctx, chunk, 1000, 1003)
    readKey(ctx, chunk.subarray(1000, 1003), 0, 3)
    expect(fetches.map((args) => args.length)).toEqual([2, 2])
    expect(fetches.map((args) => args[0])).toEqual(['key', 'key'])
  })
})
