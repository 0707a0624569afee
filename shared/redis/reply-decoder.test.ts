import { describe, expect, it } from 'vitest'
import { Push, type Reply, ReplyDecoder, ReplyError, ReplyProtocolError } from './reply-decoder.js'

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

  it('throws a ReplyProtocolError for bytes that are not RESP', () => {
    expect(() => decode([Buffer.from('?nope\r\n')])).toThrow(ReplyProtocolError)
    expect(() => decode([Buffer.from('$3\r\nabcXY')])).toThrow(ReplyProtocolError)
  })
})
