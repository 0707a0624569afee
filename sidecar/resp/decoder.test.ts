import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ARG_OVERHEAD,
  type DecoderLimits,
  LOOK_AHEAD,
  ProtocolError,
  RequestDecoder,
  splitArgs,
} from './decoder.js'

type Outcome = { commands: string[][]; error?: string; buffered: number }

/** An argument as latin1 text; the command name upper-cased, as the fast path reports it. */
const text = (arg: Buffer, i: number) =>
  i === 0 ? arg.toString('latin1').toUpperCase() : arg.toString('latin1')

/**
 * Feeds `chunks` to a fresh decoder and records commands (as latin1 text) and
 * the error. `fastGet`: the GET fast path on; `'ahead'`: with the read-ahead
 * of pipelined GETs too, whose every announcement must name exactly the GETs
 * then handed over (checked here).
 */
function decode(
  chunks: Buffer[],
  limits: Partial<DecoderLimits> = {},
  fastGet: boolean | 'ahead' = false,
): Outcome {
  const decoder = new RequestDecoder(limits)
  const commands: string[][] = []
  // Which path handed over each command: the fast path's GETs are marked.
  const fastPath: boolean[] = []
  let error: string | undefined
  // The GET fast path must be invisible: its commands are recorded as the general path's are.
  const onGet = fastGet
    ? (chunk: Buffer, start: number, end: number) => {
        commands.push(['GET', chunk.toString('latin1', start, end)])
        fastPath.push(true)
      }
    : undefined
  const announced: { at: number; keys: string[] }[] = []
  const onGets =
    fastGet === 'ahead'
      ? (chunk: Buffer, spans: Int32Array, count: number) => {
          const keys: string[] = []
          for (let i = 0; i < count; i++) {
            keys.push(chunk.toString('latin1', spans[2 * i], spans[2 * i + 1]))
          }
          announced.push({ at: commands.length, keys })
        }
      : undefined
  for (const chunk of chunks) {
    try {
      decoder.push(
        chunk,
        (args) => {
          commands.push(args.map(text))
          fastPath.push(false)
        },
        onGet,
        onGets,
      )
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      error ??= err.message
    }
  }
  for (const { at, keys } of announced) {
    expect(keys.length).toBeGreaterThanOrEqual(2)
    expect(keys.length).toBeLessThanOrEqual(LOOK_AHEAD)
    expect(commands.slice(at, at + keys.length)).toEqual(keys.map((key) => ['GET', key]))
    expect(fastPath.slice(at, at + keys.length)).toEqual(keys.map(() => true))
  }
  return error === undefined
    ? { commands, buffered: decoder.bufferedBytes }
    : { commands, error, buffered: decoder.bufferedBytes }
}

/** The same bytes whole, one byte at a time, and cut in two at every boundary. */
function everySplit(bytes: Buffer): Buffer[][] {
  const splits: Buffer[][] = [[bytes], Array.from(bytes, (byte) => Buffer.from([byte]))]
  for (let cut = 1; cut < bytes.length; cut++) {
    splits.push([bytes.subarray(0, cut), bytes.subarray(cut)])
  }
  return splits
}

const b = (text: string) => Buffer.from(text, 'latin1')

/** A canonical `GET key`, as clients send it. */
const get = (key: string) => `*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`

type Case = {
  name: string
  input: string
  commands: string[][]
  error?: string
  limits?: Partial<DecoderLimits>
}

const cases: Case[] = [
  {
    name: 'one multibulk command',
    input: '*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n',
    commands: [['GET', 'key']],
  },
  {
    name: 'pipelined commands in one stream',
    input: '*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*1\r\n$4\r\nPING\r\n',
    commands: [['GET', 'a'], ['GET', 'b'], ['PING']],
  },
  {
    name: 'binary-safe arguments (CR, LF, NUL, high bytes)',
    input: '*2\r\n$3\r\nGET\r\n$6\r\n\r\n\0\xff*$\r\n',
    commands: [['GET', '\r\n\0\xff*$']],
  },
  {
    name: 'pipelined GETs in any case, binary keys, an empty key',
    input:
      '*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\ngEt\r\n$3\r\n\r\n\xff\r\n*2\r\n$3\r\nget\r\n$0\r\n\r\n',
    commands: [
      ['GET', 'a'],
      ['GET', '\r\n\xff'],
      ['GET', ''],
    ],
  },
  {
    name: 'a GET with a leading-zero length',
    input: '*2\r\n$3\r\nGET\r\n$01\r\na\r\n',
    commands: [],
    error: 'invalid bulk length',
  },
  {
    name: 'a GET whose key is not followed by CRLF',
    input: '*2\r\n$3\r\nGET\r\n$1\r\nab\r\n',
    commands: [],
    error: 'expected CRLF after bulk argument',
  },
  {
    name: 'GET with three arguments, which is not the fast path',
    input: '*3\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n',
    commands: [['GET', 'a', 'b']],
  },
  {
    name: 'an empty bulk argument',
    input: '*2\r\n$3\r\nGET\r\n$0\r\n\r\n',
    commands: [['GET', '']],
  },
  { name: '*0 is no command', input: '*0\r\n*1\r\n$4\r\nPING\r\n', commands: [['PING']] },
  {
    name: 'a negative count is no command',
    input: '*-1\r\n*1\r\n$4\r\nPING\r\n',
    commands: [['PING']],
  },
  { name: 'an inline command', input: 'GET key\r\n', commands: [['GET', 'key']] },
  { name: 'an inline command ended by LF alone', input: 'PING\n', commands: [['PING']] },
  { name: 'inline blanks are skipped', input: '  GET \t key  \r\n', commands: [['GET', 'key']] },
  { name: 'an empty inline line is no command', input: '\r\n\nPING\r\n', commands: [['PING']] },
  {
    name: 'inline double quotes with escapes',
    input: 'SET "a b" "\\x41\\n\\"q\\""\r\n',
    commands: [['SET', 'a b', 'A\n"q"']],
  },
  { name: 'inline single quotes', input: "ECHO 'it\\'s'\r\n", commands: [['ECHO', "it's"]] },
  {
    name: 'inline and multibulk mixed',
    input: 'PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO x\r\n',
    commands: [['PING'], ['ECHO', 'hi'], ['ECHO', 'x']],
  },
  {
    name: 'unbalanced inline quotes',
    input: 'PING\r\nGET "abc\r\n',
    commands: [['PING']],
    error: 'unbalanced quotes in request',
  },
  {
    name: 'a closing quote glued to a token',
    input: 'GET "a"b\r\n',
    commands: [],
    error: 'unbalanced quotes in request',
  },
  {
    name: 'a letter in a multibulk count',
    input: '*2\r\n$3\r\nGET\r\n$1\r\na\r\n*x\r\n',
    commands: [['GET', 'a']],
    error: 'invalid multibulk length',
  },
  {
    name: 'a multibulk count over the limit',
    input: '*1048577\r\n',
    commands: [],
    error: 'invalid multibulk length',
  },
  {
    name: 'a count with a leading zero',
    input: '*01\r\n$4\r\nPING\r\n',
    commands: [],
    error: 'invalid multibulk length',
  },
  {
    name: 'a small count over a small limit in a whole command',
    input: '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n',
    commands: [],
    error: 'invalid multibulk length',
    limits: { maxArrayLength: 2 },
  },
  {
    name: 'a bulk length with a leading zero',
    input: '*1\r\n$04\r\nPING\r\n',
    commands: [],
    error: 'invalid bulk length',
  },
  {
    name: 'a bulk length over a small limit in a whole command',
    input: '*2\r\n$3\r\nGET\r\n$5\r\nlarge\r\n',
    commands: [],
    error: 'invalid bulk length',
    limits: { maxBulkLength: 4 },
  },
  {
    name: 'a command of more arguments than are presized, whole and split',
    input: `*17\r\n$4\r\nMSET\r\n${'$1\r\nk\r\n$1\r\nv\r\n'.repeat(8)}`,
    commands: [['MSET', ...Array.from({ length: 8 }, () => ['k', 'v']).flat()]],
  },
  {
    name: 'an empty bulk as the last argument',
    input: '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n',
    commands: [['ECHO', ''], ['PING']],
  },
  {
    name: 'a bulk length over 512 MB',
    input: '*1\r\n$536870913\r\n',
    commands: [],
    error: 'invalid bulk length',
  },
  {
    name: 'a negative bulk length',
    input: '*1\r\n$-1\r\n',
    commands: [],
    error: 'invalid bulk length',
  },
  {
    name: 'something other than $ where a bulk starts',
    input: '*1\r\n:4\r\nPING\r\n',
    commands: [],
    error: "expected '$', got ':'",
  },
  {
    name: 'a bulk not followed by CRLF',
    input: '*1\r\n$4\r\nPINGXX',
    commands: [],
    error: 'expected CRLF after bulk argument',
  },
  {
    name: 'a CR not followed by LF in a header',
    input: '*1\rX',
    commands: [],
    error: 'invalid multibulk length',
  },
  {
    name: 'an inline line over the limit',
    input: `${'x'.repeat(65)}\r\n`,
    commands: [],
    error: 'too big inline request',
    limits: { maxInlineLength: 64 },
  },
  {
    name: 'an inline line at the limit',
    input: `ECHO ${'x'.repeat(59)}\r\n`,
    commands: [['ECHO', 'x'.repeat(59)]],
    limits: { maxInlineLength: 65 },
  },
]

describe('RequestDecoder', () => {
  for (const c of cases) {
    it(`decodes ${c.name} the same however the stream is cut, with or without the GET fast path`, () => {
      for (const chunks of everySplit(b(c.input))) {
        for (const fastGet of [false, true, 'ahead'] as const) {
          const outcome = decode(chunks, c.limits, fastGet)
          expect(outcome.commands).toEqual(c.commands)
          expect(outcome.error).toBe(c.error)
        }
      }
    })
  }

  it('keeps no bytes for a declared bulk that has not arrived', () => {
    const outcome = decode([b('*2\r\n$3\r\nGET\r\n$500000000\r\n')])
    expect(outcome.commands).toEqual([])
    expect(outcome.error).toBeUndefined()
    expect(outcome.buffered).toBe(3 + ARG_OVERHEAD)
  })

  it('waits for the rest of a command whose declared count the chunk cannot hold', () => {
    const outcome = decode([b('*1000000\r\n$4\r\nPING\r\n')])
    expect(outcome.commands).toEqual([])
    expect(outcome.error).toBeUndefined()
    expect(outcome.buffered).toBe(4 + ARG_OVERHEAD)
  })

  it('counts buffered bytes as they arrive, not as declared', () => {
    const decoder = new RequestDecoder()
    decoder.push(b('*2\r\n$3\r\nGET\r\n$100\r\n'), () => {})
    decoder.push(Buffer.alloc(40), () => {})
    expect(decoder.bufferedBytes).toBe(3 + ARG_OVERHEAD + 40)
  })

  it('charges held arguments for their overhead, so many empty ones add up', () => {
    const decoder = new RequestDecoder()
    decoder.push(Buffer.from(`*1000\r\n${'$0\r\n\r\n'.repeat(999)}`), () => {})
    expect(decoder.bufferedBytes).toBe(999 * ARG_OVERHEAD)
  })

  it('stops between commands when asked, and says how much it consumed', () => {
    const decoder = new RequestDecoder()
    const seen: string[] = []
    const bytes = b('*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nECHO x\r\n')
    const consumed = decoder.push(bytes, (args) => {
      seen.push(String(args[0]))
      decoder.stop()
    })
    expect(seen).toEqual(['PING'])
    expect(consumed).toBe(14)
    const rest = decoder.push(bytes.subarray(consumed), (args) => seen.push(String(args[0])))
    expect(rest).toBe(bytes.length - consumed)
    expect(seen).toEqual(['PING', 'GET', 'ECHO'])
  })

  it('announces each run of pipelined GETs, up to LOOK_AHEAD at a time, before handing them over', () => {
    const set = '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n'
    const keys = Array.from({ length: 40 }, (_, i) => `key:${i}`)
    const runs: number[] = []
    const events: string[] = []
    const decoder = new RequestDecoder()
    const push = (text: string) =>
      decoder.push(
        b(text),
        (args) => events.push(String(args[0])),
        (chunk, start, end) => events.push(chunk.toString('latin1', start, end)),
        (_chunk, _spans, count) => {
          runs.push(count)
          events.push(`ahead ${count}`)
        },
      )
    push(keys.map(get).join(''))
    expect(runs).toEqual([32, 8])
    expect(events).toEqual(['ahead 32', ...keys.slice(0, 32), 'ahead 8', ...keys.slice(32)])
    // A run ends at any other command; a lone GET is not announced.
    runs.length = 0
    events.length = 0
    push(get('a') + get('b') + set + get('c') + set + get('d') + get('e') + get('f'))
    expect(runs).toEqual([2, 3])
    expect(events).toEqual(['ahead 2', 'a', 'b', 'SET', 'c', 'SET', 'ahead 3', 'd', 'e', 'f'])
    // A GET cut by the chunk's end ends the run and waits for its tail.
    runs.length = 0
    events.length = 0
    push(get('g') + get('h') + get('i').slice(0, 18))
    push(get('i').slice(18))
    expect(runs).toEqual([2])
    expect(events).toEqual(['ahead 2', 'g', 'h', 'GET'])
  })

  it('stops inside a run of GETs when asked, and hands over the rest when pushed again', () => {
    const bytes = b(['a', 'b', 'c', 'd'].map(get).join(''))
    const decoder = new RequestDecoder()
    const seen: string[] = []
    const announced: string[][] = []
    const onGet = (chunk: Buffer, start: number, end: number) => {
      seen.push(chunk.toString('latin1', start, end))
      if (seen.length === 2) decoder.stop()
    }
    const onGets = (chunk: Buffer, spans: Int32Array, count: number) => {
      const keys: string[] = []
      for (let i = 0; i < count; i++) {
        keys.push(chunk.toString('latin1', spans[2 * i], spans[2 * i + 1]))
      }
      announced.push(keys)
    }
    const none = () => {}
    const consumed = decoder.push(bytes, none, onGet, onGets)
    expect(seen).toEqual(['a', 'b'])
    expect(consumed).toBe(2 * get('a').length)
    decoder.push(bytes.subarray(consumed), none, onGet, onGets)
    expect(seen).toEqual(['a', 'b', 'c', 'd'])
    // The GETs the first push did not hand over are announced again with the push that does.
    expect(announced).toEqual([
      ['a', 'b', 'c', 'd'],
      ['c', 'd'],
    ])
  })

  it('hands over none of a run whose announcement asks to stop', () => {
    const bytes = b(`${get('a')}${get('b')}`)
    const decoder = new RequestDecoder()
    const seen: string[] = []
    const onGet = (chunk: Buffer, start: number, end: number) => {
      seen.push(chunk.toString('latin1', start, end))
    }
    expect(
      decoder.push(
        bytes,
        () => {},
        onGet,
        () => decoder.stop(),
      ),
    ).toBe(0)
    expect(seen).toEqual([])
    expect(decoder.push(bytes, () => {}, onGet)).toBe(bytes.length)
    expect(seen).toEqual(['a', 'b'])
  })

  it('offers a command whole in one chunk as its exact bytes (wire), and no bytes for any other', () => {
    const decoder = new RequestDecoder()
    const seen: (string | null)[] = []
    const record = () => {
      const wire = decoder.wire()
      seen.push(wire === null ? null : wire.toString('latin1'))
    }
    const set = '*3\r\n$3\r\nset\r\n$1\r\nk\r\n$5\r\nv\r\nxy\r\n'
    const big = `*2\r\n$4\r\nECHO\r\n$300\r\n${'z'.repeat(300)}\r\n`
    // Two commands, an inline one, and a GET the fast path takes.
    decoder.push(b(`${set}${big}PING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), record, record)
    expect(seen).toEqual([set, big, null, null])
    // Cut across chunks (anywhere in it): no wire, the arguments as ever.
    for (let cut = 1; cut < set.length; cut++) {
      seen.length = 0
      decoder.push(b(set.slice(0, cut)), record)
      decoder.push(b(set.slice(cut)), record)
      expect(seen).toEqual([null])
    }
    // Outside onCommand there is none.
    expect(decoder.wire()).toBeNull()
  })

  it('ignores everything after a protocol error', () => {
    const decoder = new RequestDecoder()
    const seen: string[][] = []
    const collect = (args: Buffer[]) => seen.push(args.map(String))
    expect(() => decoder.push(b('*x\r\n'), collect)).toThrow(ProtocolError)
    decoder.push(b('*1\r\n$4\r\nPING\r\n'), collect)
    expect(seen).toEqual([])
  })

  it('rejects limits that are not positive integers', () => {
    expect(() => new RequestDecoder({ maxArrayLength: 0 })).toThrow(TypeError)
    expect(() => new RequestDecoder({ maxBulkLength: 2 ** 33 })).toThrow(TypeError)
  })

  describe('fuzzed input', () => {
    const frame = fc
      .array(fc.uint8Array({ maxLength: 20 }), { minLength: 1, maxLength: 4 })
      // Half the frames are GETs, so the fast path meets valid and mutated ones.
      .chain((args) =>
        fc
          .boolean()
          .map((get) => (get ? [Uint8Array.from(Buffer.from('GET')), ...args.slice(0, 1)] : args)),
      )
      .map((args) => {
        const parts = [Buffer.from(`*${args.length}\r\n`)]
        for (const arg of args) {
          parts.push(Buffer.from(`$${arg.length}\r\n`), Buffer.from(arg), Buffer.from('\r\n'))
        }
        return {
          bytes: Buffer.concat(parts),
          args: args.map((a, i) => text(Buffer.from(a), i)),
        }
      })

    it('decodes any sequence of well-formed frames whatever the chunking', () => {
      fc.assert(
        fc.property(
          fc.array(frame, { maxLength: 6 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (frames, cuts) => {
            const bytes = Buffer.concat(frames.map((f) => f.bytes))
            for (const fastGet of [false, 'ahead'] as const) {
              const outcome = decode(cutAt(bytes, cuts), {}, fastGet)
              expect(outcome.error).toBeUndefined()
              expect(outcome.commands).toEqual(frames.map((f) => f.args))
            }
          },
        ),
        { numRuns: 500 },
      )
    })

    it('never throws anything but a ProtocolError and never depends on the chunking', () => {
      const hostile = fc.oneof(
        fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
        // Valid frames with bytes flipped, cut or repeated.
        fc.tuple(frame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([f, at, byte]) => {
          const copy = Buffer.from(f.bytes)
          copy[at % copy.length] = byte
          return copy
        }),
        fc.tuple(frame, fc.nat()).map(([f, at]) => f.bytes.subarray(0, at % f.bytes.length)),
      )
      fc.assert(
        fc.property(
          fc.array(hostile, { maxLength: 4 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (pieces, cuts) => {
            const bytes = Buffer.concat(pieces)
            // decode() rethrows anything that is not a ProtocolError, failing the property.
            const whole = decode([bytes], { maxBulkLength: 1024, maxArrayLength: 16 })
            const cut = decode(
              cutAt(bytes, cuts),
              { maxBulkLength: 1024, maxArrayLength: 16 },
              true,
            )
            const ahead = decode(
              cutAt(bytes, cuts),
              { maxBulkLength: 1024, maxArrayLength: 16 },
              'ahead',
            )
            expect(ahead).toEqual(whole)
            const bytewise = decode(
              Array.from(bytes, (byte) => Buffer.from([byte])),
              { maxBulkLength: 1024, maxArrayLength: 16 },
            )
            expect(cut).toEqual(whole)
            expect(bytewise).toEqual(whole)
            // Held bytes never exceed what was received.
            // An argument takes at least 6 bytes (`$0\r\n\r\n`) and is charged ARG_OVERHEAD more.
            expect(whole.buffered).toBeLessThanOrEqual(bytes.length * (1 + ARG_OVERHEAD / 6))
          },
        ),
        { numRuns: 1000 },
      )
    })
  })
})

describe('splitArgs', () => {
  it('splits like Redis sdssplitargs', () => {
    expect(splitArgs(b('a  "b c"  \'d\'')).map(String)).toEqual(['a', 'b c', 'd'])
    expect(splitArgs(b('"\\x4g"')).map(String)).toEqual(['x4g'])
    expect(splitArgs(b('')).map(String)).toEqual([])
  })
})

/** `bytes` cut at the given positions (taken modulo its length), in order. */
function cutAt(bytes: Buffer, cuts: number[]): Buffer[] {
  if (bytes.length === 0) return [bytes]
  const points = [...new Set(cuts.map((cut) => cut % bytes.length))].sort((x, y) => x - y)
  const chunks: Buffer[] = []
  let from = 0
  for (const point of points) {
    chunks.push(bytes.subarray(from, point))
    from = point
  }
  chunks.push(bytes.subarray(from))
  return chunks
}
