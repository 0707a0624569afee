import { describe, expect, it } from 'vitest'
import { confirmation } from './pinned.js'

const frame = (text: string) => Buffer.from(text, 'latin1')

describe('confirmation (the subscription counts Redis confirms)', () => {
  it.each([
    ['subscribe, RESP2', '*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n', { shard: false, count: 1 }],
    [
      'subscribe, RESP3 push',
      '>3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:2\r\n',
      { shard: false, count: 2 },
    ],
    ['psubscribe', '*3\r\n$10\r\npsubscribe\r\n$3\r\nc:*\r\n:12\r\n', { shard: false, count: 12 }],
    [
      'unsubscribe of a channel',
      '*3\r\n$11\r\nunsubscribe\r\n$1\r\nc\r\n:0\r\n',
      { shard: false, count: 0 },
    ],
    [
      'unsubscribe with none left, RESP2 nil',
      '*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n',
      { shard: false, count: 0 },
    ],
    [
      'punsubscribe with none left, RESP3 null',
      '>3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n',
      { shard: false, count: 0 },
    ],
    [
      'ssubscribe counts shard channels',
      '*3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n',
      { shard: true, count: 1 },
    ],
    ['sunsubscribe', '>3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n', { shard: true, count: 0 }],
    [
      'a channel name holding CRLF and a colon',
      '*3\r\n$9\r\nsubscribe\r\n$5\r\na\r\n:9\r\n:3\r\n',
      { shard: false, count: 3 },
    ],
  ])('%s', (_, text, expected) => {
    expect(confirmation([frame(text)])).toEqual(expected)
    // The same frame in pieces, as reads may cut it: at every byte.
    const bytes = frame(text)
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(confirmation([bytes.subarray(0, cut), bytes.subarray(cut)])).toEqual(expected)
    }
  })

  it.each([
    ['a message', '*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\n:1\r\n'],
    ['a pattern message', '*4\r\n$8\r\npmessage\r\n$3\r\nc:*\r\n$1\r\nc\r\n$2\r\nhi\r\n'],
    ['a shard message', '>3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$2\r\nhi\r\n'],
    ['a reply of three elements to another command', '*3\r\n$9\r\nsubscribx\r\n$1\r\nc\r\n:1\r\n'],
    ['a simple string', '+OK\r\n'],
    ['an array of two', '*2\r\n$9\r\nsubscribe\r\n:1\r\n'],
    ['a count that is not an integer reply', '*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n'],
    [
      'a message on a channel named like a confirmation',
      '*3\r\n$7\r\nmessage\r\n$9\r\nsubscribe\r\n$2\r\n:1\r\n',
    ],
  ])('ignores %s', (_, text) => {
    expect(confirmation([frame(text)])).toBeNull()
  })
})

describe('confirmation of a long frame', () => {
  it('reads only its ends: a confirmation of a 100 KiB channel name, in three pieces', () => {
    const name = 'c'.repeat(100 * 1024)
    const bytes = Buffer.from(
      `*3\r\n$9\r\nsubscribe\r\n$${name.length}\r\n${name}\r\n:4\r\n`,
      'latin1',
    )
    const pieces = [
      bytes.subarray(0, 5),
      bytes.subarray(5, bytes.length - 3),
      bytes.subarray(bytes.length - 3),
    ]
    expect(confirmation(pieces)).toEqual({ shard: false, count: 4 })
  })
})
