import { describe, expect, it, vi } from 'vitest'
import {
  isPassingError,
  Push,
  type Reply,
  ReplyDecoder,
  ReplyError,
  ReplyProtocolError,
} from './reply-decoder.js'

/** Replies decoded from `bytes` cut into the given chunks. */
function decode(chunks: Buffer[]): Reply[] {
  const decoder = new ReplyDecoder()
  const replies: Reply[] = []
  for (const chunk of chunks) decoder.push(chunk, (reply) => replies.push(reply))
  return replies
}

function everySplit(bytes: Buffer): Buffer[][] {
  const splits: Buffer[][] = [[bytes], Array.from(bytes, (byte) => Buffer.from([byte]))]
  for (let cut = 1; cut < bytes.length; cut++)
    splits.push([bytes.subarray(0, cut), bytes.subarray(cut)])
  return splits
}

const cases: [string, string, Reply[]][] = [
  ['a bulk string', '$5\r\nhello\r\n', [Buffer.from('hello')]],
  ['a binary bulk string', '$4\r\n\r\n\0\xff\r\n', [Buffer.from('\r\n\0\xff', 'latin1')]],
  ['an empty bulk string', '$0\r\n\r\n', [Buffer.alloc(0)]],
  ['a RESP2 null', '$-1\r\n', [null]],
  ['a RESP3 null', '_\r\n', [null]],
  ['a simple string', '+OK\r\n', ['OK']],
  [
    'an error',
    '-WRONGTYPE Operation against a key\r\n',
    [new ReplyError('WRONGTYPE Operation against a key')],
  ],
  ['a bulk error', '!9\r\nERR bad x\r\n', [new ReplyError('ERR bad x')]],
  ['an integer', ':42\r\n', [42]],
  ['a boolean', '#t\r\n#f\r\n', [true, false]],
  ['a verbatim string', '=9\r\ntxt:hello\r\n', [Buffer.from('hello')]],
  ['a nested array', '*2\r\n$1\r\na\r\n*1\r\n:1\r\n', [[Buffer.from('a'), [1]]]],
  ['a map, flattened', '%1\r\n+proto\r\n:3\r\n', [['proto', 3]]],
  [
    'an invalidation push then a reply',
    '>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n$1\r\nv\r\n',
    [new Push([Buffer.from('invalidate'), [Buffer.from('k')]]), Buffer.from('v')],
  ],
  [
    'a flush push',
    '>2\r\n$10\r\ninvalidate\r\n_\r\n',
    [new Push([Buffer.from('invalidate'), null])],
  ],
  ['pipelined replies', '$1\r\na\r\n$-1\r\n:7\r\n', [Buffer.from('a'), null, 7]],
  ['a negative integer (PTTL of a missing key)', ':-2\r\n', [-2]],
  ['a big number and a double', '(12345678901234\r\n,1.5\r\n', [12345678901234, '1.5']],
  ['a RESP2 null array', '*-1\r\n', [null]],
  ['empty aggregates', '*0\r\n%0\r\n>0\r\n', [[], [], new Push([])]],
  ['a set', '~2\r\n+a\r\n+b\r\n', [['a', 'b']]],
  ['an attribute, dropped', '|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n', [Buffer.from('v')]],
  ['an attribute inside an array', '*2\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n', [[1, 2]]],
  [
    'a push between two halves of a GET and PTTL pair',
    '$2\r\nvv\r\n>2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n:-1\r\n',
    [
      Buffer.from('vv'),
      new Push([Buffer.from('invalidate'), [Buffer.from('a'), Buffer.from('b')]]),
      -1,
    ],
  ],
  [
    'a nested empty bulk at the end of an array',
    '*2\r\n$0\r\n\r\n$0\r\n\r\n',
    [[Buffer.alloc(0), Buffer.alloc(0)]],
  ],
]

describe('ReplyDecoder', () => {
  for (const [name, input, expected] of cases) {
    it(`decodes ${name} the same however the stream is cut`, () => {
      for (const chunks of everySplit(Buffer.from(input, 'latin1'))) {
        expect(decode(chunks)).toEqual(expected)
      }
    })
  }

  it('joins a large bulk that arrives over many chunks', () => {
    const value = Buffer.alloc(1024 * 1024, 5)
    const bytes = Buffer.concat([
      Buffer.from(`$${value.length}\r\n`),
      value,
      Buffer.from('\r\n:1\r\n'),
    ])
    const chunks: Buffer[] = []
    for (let at = 0; at < bytes.length; at += 65536) chunks.push(bytes.subarray(at, at + 65536))
    const replies = decode(chunks)
    expect(replies).toHaveLength(2)
    expect((replies[0] as Buffer).equals(value)).toBe(true)
    expect(replies[1]).toBe(1)
  })

  it('decodes a 200,000-key invalidation push cut into 1 KiB chunks in one pass', () => {
    const keys = Array.from({ length: 200_000 }, (_, i) => `key:${i}`)
    const parts = [`>2\r\n$10\r\ninvalidate\r\n*${keys.length}\r\n`]
    for (const key of keys) parts.push(`$${key.length}\r\n${key}\r\n`)
    const bytes = Buffer.from(parts.join(''), 'latin1')
    const decoder = new ReplyDecoder()
    const replies: Reply[] = []
    // Every line the decoder reads is found by one indexOf. Parsing the
    // unfinished array again from its start on each chunk, as the decoder
    // did, made that 1.1e9 searches here (and minutes): count them.
    const indexOf = vi.spyOn(Buffer.prototype, 'indexOf')
    let searches: number
    try {
      for (let at = 0; at < bytes.length; at += 1024) {
        decoder.push(bytes.subarray(at, at + 1024), (reply) => replies.push(reply))
        if (indexOf.mock.calls.length > 3 * keys.length) break
      }
    } finally {
      searches = indexOf.mock.calls.length
      indexOf.mockRestore()
    }
    expect(searches).toBeLessThan(2 * keys.length)
    expect(replies).toHaveLength(1)
    const push = replies[0] as Push
    expect(push).toBeInstanceOf(Push)
    const got = push.items[1] as Buffer[]
    expect(got).toHaveLength(keys.length)
    expect(got[0]?.toString()).toBe('key:0')
    expect(got[199_999]?.toString()).toBe('key:199999')
    expect(decoder.partial()).toBe(false)
  })

  it('tells whether part of a reply is held, through a bulk, an array and a cut header', () => {
    const decoder = new ReplyDecoder()
    const none = () => {}
    expect(decoder.partial()).toBe(false)
    decoder.push(Buffer.from('$5\r\nhe'), none)
    expect(decoder.partial()).toBe(true)
    decoder.push(Buffer.from('llo\r\n*2\r\n:1\r\n'), none)
    expect(decoder.partial()).toBe(true)
    decoder.push(Buffer.from(':2\r\n:3'), none)
    expect(decoder.partial()).toBe(true)
    decoder.push(Buffer.from('\r\n'), none)
    expect(decoder.partial()).toBe(false)
    decoder.push(Buffer.from('*1\r\n'), none)
    decoder.reset()
    expect(decoder.partial()).toBe(false)
  })

  it('gives a bulk joined from many chunks an allocation of exactly its length', () => {
    const body = Buffer.alloc(256 * 1024, 7)
    const bytes = Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')])
    const chunks: Buffer[] = []
    for (let at = 0; at < bytes.length; at += 1000) chunks.push(bytes.subarray(at, at + 1000))
    const [value] = decode(chunks) as Buffer[]
    expect(value?.equals(body)).toBe(true)
    expect(value?.byteOffset).toBe(0)
    expect(value?.buffer.byteLength).toBe(body.length)
  })

  it('throws a ReplyProtocolError for bytes that are not RESP', () => {
    expect(() => decode([Buffer.from('?nope\r\n')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from('$3\r\nabcXY')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from('$3\r\nab'), Buffer.from('cXY')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from('*x\r\n')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from(':\r\n')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from('+OK\rX')])).toThrow(ReplyProtocolError)
  })
})

describe('isPassingError', () => {
  it.each([
    ['BUSY Redis is busy running a script.', true],
    ['LOADING Redis is loading the dataset in memory', true],
    ['MASTERDOWN Link with MASTER is down', true],
    ['TRYAGAIN Multiple keys request during rehashing of slot', true],
    ['CLUSTERDOWN The cluster is down', true],
    ["ERR unknown subcommand 'TRACKING'", false],
    ["NOPERM this user has no permissions to run the 'client|tracking' command", false],
    ['BUSYKEY Target key name already exists.', false],
    ['ERR BUSY', false],
  ])('%j: %s', (message, passing) => {
    expect(isPassingError(new ReplyError(message))).toBe(passing)
  })

  it('is false for anything not an error', () => {
    expect(isPassingError('BUSY')).toBe(false)
    expect(isPassingError(undefined)).toBe(false)
  })
})
