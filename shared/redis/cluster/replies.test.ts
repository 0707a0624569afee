import { describe, expect, it } from 'vitest'
import {
  bulkArray,
  concatArrays,
  decodeFrame,
  encode,
  firstErrorOrFirst,
  redirectOf,
  sumOf,
} from './replies.js'

const frame = (text: string) => [Buffer.from(text)]
const joined = (parts: Buffer[]) => Buffer.concat(parts).toString()

describe('redirectOf', () => {
  it('reads MOVED and ASK with their slot and node, the unknown endpoint as the answering host', () => {
    expect(redirectOf('MOVED 3999 127.0.0.1:6381', 'h')).toEqual({
      kind: 'moved',
      slot: 3999,
      address: '127.0.0.1:6381',
    })
    expect(redirectOf('ASK 12 :7002', '10.0.0.9')).toEqual({
      kind: 'ask',
      slot: 12,
      address: '10.0.0.9:7002',
    })
    expect(redirectOf('MOVED 1 ::1:7000', 'h')).toEqual({
      kind: 'moved',
      slot: 1,
      address: '[::1]:7000',
    })
  })

  it('tells a retry (TRYAGAIN, CLUSTERDOWN) from any other error', () => {
    expect(redirectOf('TRYAGAIN Multiple keys request during rehashing of slot', 'h')).toEqual({
      kind: 'retry',
    })
    expect(redirectOf('CLUSTERDOWN The cluster is down', 'h')).toEqual({ kind: 'retry' })
    expect(redirectOf('WRONGTYPE Operation against a key', 'h')).toBeUndefined()
    expect(redirectOf('MOVED nonsense', 'h')).toBeUndefined()
  })
})

describe('merging the parts of a split command', () => {
  it('sums integers, or answers the first error', () => {
    expect(joined(sumOf([frame(':2\r\n'), frame(':0\r\n'), frame(':5\r\n')]))).toBe(':7\r\n')
    expect(joined(sumOf([frame(':2\r\n'), frame('-ERR boom\r\n')]))).toBe('-ERR boom\r\n')
    expect(joined(firstErrorOrFirst([frame('+OK\r\n'), frame('-ERR no\r\n')]))).toBe('-ERR no\r\n')
    expect(joined(firstErrorOrFirst([frame('$2\r\nab\r\n'), frame('$2\r\nab\r\n')]))).toBe(
      '$2\r\nab\r\n',
    )
  })

  it('joins arrays (KEYS of every node), empty ones included', () => {
    const keys = concatArrays([
      frame('*2\r\n$1\r\na\r\n$1\r\nb\r\n'),
      frame('*0\r\n'),
      frame('*1\r\n$1\r\nc\r\n'),
    ])
    expect(decodeFrame(keys)).toEqual([Buffer.from('a'), Buffer.from('b'), Buffer.from('c')])
  })

  it('writes nils in the client protocol', () => {
    expect(joined(bulkArray([Buffer.from('x'), null], false))).toBe('*2\r\n$1\r\nx\r\n$-1\r\n')
    expect(joined(bulkArray([null], true))).toBe('*1\r\n_\r\n')
  })

  it('writes maps as RESP3 maps, flattened for RESP2', () => {
    const value = { map: [['port', 7000]] as [string, number][] }
    expect(joined(encode(value, true))).toBe('%1\r\n$4\r\nport\r\n:7000\r\n')
    expect(joined(encode(value, false))).toBe('*2\r\n$4\r\nport\r\n:7000\r\n')
  })
})
