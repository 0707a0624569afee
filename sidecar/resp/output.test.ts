import type { Socket } from 'node:net'
import { connect } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { isLent, lendingReadOption } from '../../shared/socket-read.js'
import {
  closeLoopback,
  collect,
  listening,
  pair,
  track,
  until,
} from '../../test/harness/loopback.js'
import { Output } from './output.js'

afterEach(closeLoopback)

/** A socket that records each write, as the bytes it held at the time. */
function recordingSocket() {
  const writes: Buffer[] = []
  const refs: Uint8Array[] = []
  const socket = {
    write(chunk: Uint8Array) {
      refs.push(chunk)
      writes.push(Buffer.from(chunk))
      return true
    },
  } as unknown as Socket
  return { socket, writes, refs }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

describe('Output', () => {
  it('flushSoon sends every output once, after this turn, with what was written meanwhile', async () => {
    const a = recordingSocket()
    const b = recordingSocket()
    const outA = new Output(a.socket)
    const outB = new Output(b.socket)
    outA.write(Buffer.from('+1\r\n'))
    outA.flushSoon()
    outB.write(Buffer.from('+x\r\n'))
    outB.flushSoon()
    outA.write(Buffer.from('+2\r\n'))
    outA.flushSoon()
    expect([a.writes, b.writes]).toEqual([[], []])
    await turn()
    expect(a.writes.map(String)).toEqual(['+1\r\n+2\r\n'])
    expect(b.writes.map(String)).toEqual(['+x\r\n'])
    // Nothing written: nothing scheduled, nothing sent.
    outA.flushSoon()
    await turn()
    expect(a.writes).toHaveLength(1)
  })

  it('drops what flushSoon left for a socket destroyed meanwhile', async () => {
    const { socket, writes } = recordingSocket()
    const out = new Output(socket)
    out.write(Buffer.from('+late\r\n'))
    out.flushSoon()
    ;(socket as unknown as { destroyed: boolean }).destroyed = true
    await turn()
    expect(writes).toEqual([])
    expect(out.buffered).toBe(0)
  })

  it('sends the small replies of one batch in one write, in order', () => {
    const { socket, writes } = recordingSocket()
    const out = new Output(socket)
    out.write(Buffer.from('+OK\r\n'))
    out.writeBulk(Buffer.from('hello'))
    out.writeBulk(Buffer.alloc(0))
    expect(writes).toEqual([])
    out.flush()
    expect(writes.map(String)).toEqual(['+OK\r\n$5\r\nhello\r\n$0\r\n\r\n'])
    out.flush()
    expect(writes).toHaveLength(1)
  })

  it('writes a large value by reference after what precedes it', () => {
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    const big = Buffer.alloc(100_000, 7)
    out.write(Buffer.from('+A\r\n'))
    out.writeBulk(big)
    out.write(Buffer.from('+B\r\n'))
    out.flush()
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([Buffer.from('+A\r\n$100000\r\n'), big, Buffer.from('\r\n+B\r\n')]),
      ),
    ).toBe(true)
    expect(refs).toContain(big)
  })

  it('copies a range of a received chunk as that view would be written, short or large', () => {
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    const big = Buffer.alloc(100_000, 9)
    const chunk = Buffer.concat([Buffer.from('xx+OK\r\n:42\r\n'), big, Buffer.from('yy')])
    out.writeFrom(chunk, 2, 7)
    out.write(Buffer.from('+A\r\n'))
    out.writeFrom(chunk, 7, 12)
    out.writeFrom(chunk, 12, 12 + big.length)
    out.writeFrom(chunk, 12 + big.length, chunk.length)
    out.flush()
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([Buffer.from('+OK\r\n+A\r\n:42\r\n'), big, Buffer.from('yy')]),
      ),
    ).toBe(true)
    // Large: written by reference (a view of the chunk), not copied.
    expect(refs.some((ref) => ref.buffer === chunk.buffer && ref.length === big.length)).toBe(true)
    // Short: copied into the slab, never a view of the chunk.
    expect(refs.filter((ref) => ref.buffer === chunk.buffer)).toHaveLength(1)
  })

  it('copies lent bytes, a range or a value, however large: the read reuses them', async () => {
    const { port, accepted } = await listening()
    const sent = Buffer.alloc(1 << 20)
    for (let i = 0; i < sent.length; i++) sent[i] = i % 253
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    let used = false
    // Bytes read before the chosen read: where its bytes lie in `sent`.
    let before = 0
    const done = new Promise<number>((resolve) => {
      const reader = track(
        connect({
          port,
          host: '127.0.0.1',
          onread: lendingReadOption((chunk) => {
            // A whole read of 64 KiB: the output's by-reference size.
            if (used) return
            if (chunk.length !== 64 * 1024) {
              before += chunk.length
              return
            }
            used = true
            expect(isLent(chunk)).toBe(true)
            out.writeFrom(chunk, 0, chunk.length)
            out.writeBulk(chunk)
            out.flush()
            reader.destroy()
            resolve(chunk.length)
          }),
        }),
      )
    })
    const [writer] = await accepted
    writer.on('error', () => {})
    writer.write(sent)
    const length = await done
    expect(refs.some((ref) => isLent(ref))).toBe(false)
    const expected = sent.subarray(before, before + length)
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([expected, Buffer.from(`$${length}\r\n`), expected, Buffer.from('\r\n')]),
      ),
    ).toBe(true)
  })

  it('reuses its slab from the start once the socket took every byte at once, and only then', () => {
    const { socket, writes, refs } = recordingSocket()
    let pending = 0
    Object.defineProperty(socket, 'writableLength', { get: () => pending })
    const out = new Output(socket)
    out.write(Buffer.from('+1\r\n'))
    out.flush()
    out.write(Buffer.from('+2\r\n'))
    out.flush()
    // Both batches at the slab's first byte: the first was in the kernel already.
    expect([refs[0]?.byteOffset, refs[1]?.byteOffset]).toEqual([0, 0])
    expect(refs[0]?.buffer).toBe(refs[1]?.buffer)
    // Bytes still queued in the socket: the next batch goes after them.
    pending = 5
    out.write(Buffer.from('+3\r\n'))
    out.flush()
    out.write(Buffer.from('+4\r\n'))
    out.flush()
    expect(refs[3]?.byteOffset).toBe((refs[2]?.byteOffset ?? 0) + 4)
    expect(Buffer.from(refs[2] as Uint8Array).toString()).toBe('+3\r\n')
    expect(writes.map(String)).toEqual(['+1\r\n', '+2\r\n', '+3\r\n', '+4\r\n'])
  })

  it('never overwrites bytes already handed to the socket', () => {
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    // Many batches of replies just under the copy limit fill several slabs.
    for (let batch = 0; batch < 50; batch++) {
      out.writeBulk(Buffer.alloc(4000, batch))
      out.flush()
    }
    for (let batch = 0; batch < 50; batch++) {
      const written = refs[batch] as Uint8Array
      expect(Buffer.from(written).equals(writes[batch] as Buffer)).toBe(true)
      expect(written[10]).toBe(batch)
    }
  })

  /** A cache as ReadThrough.copyHit serves it: the value copied into the target. */
  const cacheOf = (value: Buffer) => ({
    copyHit(_slot: number, target: Uint8Array, offset: number): number {
      target.set(value, offset)
      return offset + value.length
    },
  })

  it('sends a large cached value with the batch before it in one write, at once', () => {
    const { socket, writes } = recordingSocket()
    Object.defineProperty(socket, 'writableLength', { get: () => 0 })
    const out = new Output(socket)
    const value = Buffer.alloc(16_384, 3)
    out.write(Buffer.from('+A\r\n'))
    out.writeBulkFrom(value.length, cacheOf(value), 0)
    // Not left for the end of the turn: its buffer is free again at once.
    expect(writes).toHaveLength(1)
    out.write(Buffer.from('+B\r\n'))
    out.flush()
    expect(writes.map((w) => w.length)).toEqual([4 + 8 + 16_384 + 2, 4])
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([Buffer.from('+A\r\n$16384\r\n'), value, Buffer.from('\r\n+B\r\n')]),
      ),
    ).toBe(true)
  })

  it('sends a value in hand up to 64 KiB in one write with its header and CRLF', () => {
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    const value = Buffer.alloc(60_000, 5)
    out.write(Buffer.from('+A\r\n'))
    out.writeBulk(value)
    expect(writes).toHaveLength(1)
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([Buffer.from('+A\r\n$60000\r\n'), value, Buffer.from('\r\n')]),
      ),
    ).toBe(true)
    // Copied, not written by reference.
    expect(refs.some((ref) => ref.buffer === value.buffer)).toBe(false)
    // A part of that size written alone goes the same way.
    out.write(value)
    expect(writes).toHaveLength(2)
    expect((writes[1] as Buffer).equals(value)).toBe(true)
  })

  it('assembles large replies in the spare again while the kernel takes every write at once; a client with bytes queued gets buffers of their own size', async () => {
    const { client, server } = await pair()
    // What the writer hands the socket's handle, as it is handed.
    const refs: Uint8Array[] = []
    type WriteBuffer = (req: unknown, bytes: Uint8Array) => number
    const handle = (server as unknown as { _handle: { writeBuffer: WriteBuffer } })._handle
    const writeBuffer = handle.writeBuffer.bind(handle)
    handle.writeBuffer = (req: unknown, bytes: Uint8Array) => {
      refs.push(bytes)
      return writeBuffer(req, bytes)
    }
    const out = new Output(server)
    const values = [1, 2, 3, 4].map((fill) => Buffer.alloc(20_000, fill))
    const expected: Buffer[] = []
    const send = (value: Buffer) => {
      out.writeBulkFrom(value.length, cacheOf(value), 0)
      expected.push(Buffer.from(`$${value.length}\r\n`), value, Buffer.from('\r\n'))
    }
    send(values[0] as Buffer)
    send(values[1] as Buffer)
    expect(out.unsent).toBe(0)
    expect(refs[1]?.buffer).toBe(refs[0]?.buffer)
    // The client does not read: the kernel's buffers fill, writes stay queued.
    while (out.unsent === 0) send(values[2] as Buffer)
    const queuedFrom = refs.length
    for (let i = 0; i < 20; i++) send(values[i % 4] as Buffer)
    const sizes = refs.slice(queuedFrom).map((ref) => ref.buffer.byteLength)
    expect(sizes).toEqual(refs.slice(queuedFrom).map((ref) => ref.length))
    // Every byte arrives, in order, none overwritten while queued.
    const received = collect(client)
    client.resume()
    const total = expected.reduce((n, part) => n + part.length, 0)
    await until(() => received.reduce((n, c) => n + c.length, 0) >= total)
    expect(Buffer.concat(received).equals(Buffer.concat(expected))).toBe(true)
  })

  it('sends a cached value larger than the kept buffer in one write of its own', () => {
    const { socket, writes } = recordingSocket()
    Object.defineProperty(socket, 'writableLength', { get: () => 0 })
    const out = new Output(socket)
    const value = Buffer.alloc(3 * 1024 * 1024, 9)
    out.write(Buffer.from('+A\r\n'))
    out.writeBulkFrom(value.length, cacheOf(value), 0)
    expect(writes).toHaveLength(1)
    expect(
      (writes[0] as Buffer).equals(
        Buffer.concat([Buffer.from(`+A\r\n$${value.length}\r\n`), value, Buffer.from('\r\n')]),
      ),
    ).toBe(true)
  })

  it('while held, sends large and small replies together at release, in order, in writes of up to 256 KiB', () => {
    const { socket, writes } = recordingSocket()
    Object.defineProperty(socket, 'writableLength', { get: () => 0 })
    const out = new Output(socket)
    const values = Array.from({ length: 20 }, (_, i) => Buffer.alloc(16_384, i))
    const expected: Buffer[] = []
    out.hold()
    for (const [i, value] of values.entries()) {
      out.writeBulkFrom(value.length, cacheOf(value), 0)
      expected.push(Buffer.from('$16384\r\n'), value, Buffer.from('\r\n'))
      out.write(Buffer.from(`:${i}\r\n`))
      expected.push(Buffer.from(`:${i}\r\n`))
    }
    // 20 replies of 16 KiB: past 256 KiB once, so one write so far.
    expect(writes).toHaveLength(1)
    out.release()
    expect(writes).toHaveLength(2)
    expect(writes.every((w) => w.length <= 256 * 1024)).toBe(true)
    expect(Buffer.concat(writes).equals(Buffer.concat(expected))).toBe(true)
    // Released: the next large reply goes at once again.
    const again = Buffer.alloc(16_384, 9)
    out.writeBulkFrom(again.length, cacheOf(again), 0)
    expect(writes).toHaveLength(3)
  })

  it('while held, writes a part of 64 KiB or more by reference after the batch before it', () => {
    const { socket, writes, refs } = recordingSocket()
    const out = new Output(socket)
    const large = Buffer.alloc(20_000, 1)
    const huge = Buffer.alloc(100_000, 2)
    out.hold()
    out.writeBulkFrom(large.length, cacheOf(large), 0)
    out.writeBulk(huge)
    out.write(Buffer.from('+A\r\n'))
    out.release()
    out.flush()
    expect(refs).toContain(huge)
    expect(
      Buffer.concat(writes).equals(
        Buffer.concat([
          Buffer.from('$20000\r\n'),
          large,
          Buffer.from('\r\n$100000\r\n'),
          huge,
          Buffer.from('\r\n+A\r\n'),
        ]),
      ),
    ).toBe(true)
  })
})
