import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameError, ReplyFramer } from './reply-framer.js'

/** Frames `chunks` and returns each reply's bytes as text, with a `>` mark for pushes. */
function frame(chunks: Buffer[]): string[] {
  const framer = new ReplyFramer()
  const out: string[] = []
  for (const chunk of chunks) {
    framer.push(chunk, (parts, push) => {
      out.push((push ? '>' : '') + Buffer.concat(parts).toString('latin1'))
    })
  }
  expect(framer.partial()).toBe(false)
  return out
}

/**
 * As `frame`, with an `onWhole` that takes every other reply it is offered:
 * what it takes must lie within one chunk, and with what `onFrame` gets be
 * every reply, in order.
 */
function frameOffered(chunks: Buffer[]): string[] {
  const framer = new ReplyFramer()
  const out: string[] = []
  let offers = 0
  for (const chunk of chunks) {
    framer.push(
      chunk,
      (parts, push) => {
        out.push((push ? '>' : '') + Buffer.concat(parts).toString('latin1'))
      },
      (whole, start, end, push) => {
        expect(whole).toBe(chunk)
        expect(0 <= start && start < end && end <= chunk.length).toBe(true)
        if (offers++ % 2 === 1) return false
        out.push((push ? '>' : '') + whole.toString('latin1', start, end))
        return true
      },
    )
  }
  expect(framer.partial()).toBe(false)
  return out
}

/** Every way the table cases are cut: whole, byte by byte, and at every boundary. */
function cuts(bytes: Buffer): Buffer[][] {
  const ways: Buffer[][] = [[bytes], [...bytes].map((b) => Buffer.from([b]))]
  for (let at = 1; at < bytes.length; at++) ways.push([bytes.subarray(0, at), bytes.subarray(at)])
  return ways
}

const CASES: [name: string, replies: string[]][] = [
  ['simple strings, errors, integers', ['+OK\r\n', '-ERR no\r\n', ':42\r\n', ':-1\r\n']],
  ['bulk strings with CRLF inside', ['$5\r\nhe\r\no\r\n', '$0\r\n\r\n', '$-1\r\n']],
  [
    'nested arrays and nulls',
    ['*2\r\n*1\r\n$1\r\na\r\n*0\r\n', '*-1\r\n', '*3\r\n:1\r\n$-1\r\n+x\r\n'],
  ],
  [
    'RESP3 maps, sets, doubles, booleans, big numbers, nulls',
    ['%2\r\n+a\r\n:1\r\n+b\r\n~1\r\n,1.5\r\n', '_\r\n', '#t\r\n', '(12345678901234567890\r\n'],
  ],
  ['verbatim strings and blob errors', ['=8\r\ntxt:abcd\r\n', '!3\r\nERR\r\n']],
  [
    'an attribute before its reply',
    ['|1\r\n+key-popularity\r\n*2\r\n$1\r\na\r\n,0.19\r\n$2\r\nok\r\n'],
  ],
]

describe('ReplyFramer', () => {
  it.each(CASES)('frames %s however the bytes are cut', (_, replies) => {
    const all = Buffer.from(replies.join(''), 'latin1')
    for (const chunks of cuts(all)) expect(frame(chunks)).toEqual(replies)
  })

  it.each(CASES)('hands a reply over in parts taken while it arrives, %s', (_, replies) => {
    // takeHeld after every chunk: the parts taken and the frame's own, in
    // order, are the reply's bytes exactly, and push flags are unchanged.
    const all = Buffer.from(replies.join(''), 'latin1')
    for (const chunks of cuts(all)) {
      const framer = new ReplyFramer()
      const out: string[] = []
      let taken: Buffer[] = []
      for (const chunk of chunks) {
        framer.push(
          chunk,
          (parts, push) => {
            out.push((push ? '>' : '') + Buffer.concat([...taken, ...parts]).toString('latin1'))
            taken = []
          },
          (whole, start, end, push) => {
            // Offered whole: none of it was handed over before.
            expect(taken).toEqual([])
            out.push((push ? '>' : '') + whole.toString('latin1', start, end))
            return true
          },
        )
        taken.push(...framer.takeHeld())
        expect(framer.pendingBytes).toBe(0)
      }
      expect(out).toEqual(replies)
    }
  })

  it('flags pushes so they can be routed apart from replies', () => {
    const bytes = Buffer.from('>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n', 'latin1')
    for (const chunks of cuts(bytes)) {
      expect(frame(chunks)).toEqual(['>>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n', '+OK\r\n'])
    }
  })

  it('hands over views of the received chunks, not copies', () => {
    const chunk = Buffer.from('$3\r\nabc\r\n+OK\r\n')
    const framer = new ReplyFramer()
    const seen: Buffer[][] = []
    framer.push(chunk, (parts) => seen.push(parts))
    expect(seen).toHaveLength(2)
    expect(seen[0]?.[0]?.buffer).toBe(chunk.buffer)
  })

  it('frames a 10 MB bulk cut into 64 KiB chunks in one pass, holding only slices', () => {
    const size = 10 * 1024 * 1024
    const bytes = Buffer.concat([
      Buffer.from(`$${size}\r\n`),
      Buffer.alloc(size, 7),
      Buffer.from('\r\n'),
    ])
    const framer = new ReplyFramer()
    let frames = 0
    let framed = 0
    for (let at = 0; at < bytes.length; at += 65536) {
      framer.push(bytes.subarray(at, at + 65536), (parts) => {
        frames++
        for (const part of parts) framed += part.length
      })
    }
    expect(frames).toBe(1)
    expect(framed).toBe(bytes.length)
  })

  it.each([
    ['an unknown type byte', 'x\r\n'],
    ['a header that is not a number', '*a\r\n'],
    ['a bulk not ended by CRLF', '$1\r\naXY'],
    ['a header without end', `*${'1'.repeat(40)}`],
    ['a header with no digits', '$\r\n'],
    ['a header of a sign alone', '$-\r\n'],
    ['a header with two signs', '$--1\r\n'],
    ['a header with a sign after a digit', '*1-\r\n'],
    ['a header whose CR is not last', '*1\r2\r\n'],
    ['a header with two CRs', '$1\r\r\n'],
    ['a header ended by LF alone', '$1\na\r\n'],
    ['a length above 2^32', `$${2 ** 32 + 1}\r\n`],
  ])('refuses %s, whole or cut at any byte', (_, bytes) => {
    const wire = Buffer.from(bytes, 'latin1')
    expect(() => frame([wire])).toThrow(FrameError)
    for (let cut = 1; cut < wire.length; cut++) {
      expect(() => frame([wire.subarray(0, cut), wire.subarray(cut)])).toThrow(FrameError)
    }
  })

  it('frames any sequence of RESP3 replies exactly, however it is chunked', () => {
    const leaf = fc.oneof(
      fc.string().map((s) => `+${s.replace(/[\r\n]/g, '')}\r\n`),
      fc.string().map((s) => `-ERR ${s.replace(/[\r\n]/g, '')}\r\n`),
      fc.integer().map((n) => `:${n}\r\n`),
      fc.uint8Array({ maxLength: 40 }).map((b) => {
        const text = Buffer.from(b).toString('latin1')
        return `$${b.length}\r\n${text}\r\n`
      }),
      fc.constantFrom('$-1\r\n', '*-1\r\n', '_\r\n', '#f\r\n', ',-0.5\r\n', '*0\r\n', '%0\r\n'),
    )
    const { reply } = fc.letrec<{ reply: string }>((tie) => ({
      reply: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc
          .array(tie('reply'), { maxLength: 4 })
          .map((items) => `*${items.length}\r\n${items.join('')}`),
        fc
          .array(fc.tuple(leaf, tie('reply')), { maxLength: 3 })
          .map((entries) => `%${entries.length}\r\n${entries.map(([k, v]) => k + v).join('')}`),
      ),
    }))
    fc.assert(
      fc.property(
        fc.array(reply, { minLength: 1, maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 30 }),
        (replies, sizes) => {
          const bytes = Buffer.from(replies.join(''), 'latin1')
          const chunks: Buffer[] = []
          let at = 0
          for (let i = 0; at < bytes.length; i++) {
            const size = sizes[i % sizes.length] as number
            chunks.push(bytes.subarray(at, at + size))
            at += size
          }
          expect(frame(chunks)).toEqual(replies)
          expect(frameOffered(chunks)).toEqual(replies)
        },
      ),
      { numRuns: 300 },
    )
  })
})
