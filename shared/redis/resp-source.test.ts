import { describe, expect, it } from 'vitest'
import { type Reply, ReplyDecoder } from './reply-decoder.js'
import { quickReply } from './resp-source.js'

/** What the general decoder makes of one whole frame. */
function decoded(frame: Buffer): Reply[] {
  const replies: Reply[] = []
  new ReplyDecoder().push(frame, (reply) => replies.push(reply))
  return replies
}

describe('quickReply (the read path’s GET and PTTL replies)', () => {
  it.each([
    '$5\r\nhello\r\n',
    '$0\r\n\r\n',
    '$12\r\nhello\r\nworld\r\n',
    `$${'x'.repeat(1000).length}\r\n${'x'.repeat(1000)}\r\n`,
    ':0\r\n',
    ':-1\r\n',
    ':-2\r\n',
    ':3599999\r\n',
    ':999999999999999\r\n',
  ])('reads %j as the decoder does', (text) => {
    const frame = Buffer.from(text, 'latin1')
    const quick = quickReply(frame)
    expect(quick).not.toBeUndefined()
    expect(decoded(frame)).toEqual([quick])
  })

  it('reads a reply inside a larger buffer by its bounds as it reads it alone', () => {
    for (const text of ['$5\r\nhello\r\n', ':-2\r\n', ':3599999\r\n', '$3\r\nabcd\r\n']) {
      const chunk = Buffer.from(`:1\r\n${text}+OK\r\n`, 'latin1')
      const alone = quickReply(Buffer.from(text, 'latin1'))
      expect(quickReply(chunk, 4, 4 + text.length)).toEqual(alone)
    }
  })

  it('hands a bulk back as a view of the frame, not a copy', () => {
    const frame = Buffer.from('$3\r\nabc\r\n')
    const quick = quickReply(frame) as Buffer
    expect(quick.buffer).toBe(frame.buffer)
    expect(quick.toString()).toBe('abc')
  })

  it.each([
    // Other types and nil: the decoder's.
    '$-1\r\n',
    '_\r\n',
    '+OK\r\n',
    '-ERR wrong\r\n',
    '*1\r\n:1\r\n',
    '>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n',
    // Malformed: left to the decoder, which refuses it.
    '$5\r\nhell\r\n\r\n',
    '$3\r\nabcd\r\n',
    '$3\nabc\r\n',
    '$\r\n\r\n',
    '$+3\r\nabc\r\n',
    ':\r\n',
    ':-\r\n',
    ':12a\r\n',
    ':1234567890123456\r\n',
    '$3\r\nabc\r',
  ])('leaves %j to the general decoder', (text) => {
    expect(quickReply(Buffer.from(text, 'latin1'))).toBeUndefined()
  })
})
