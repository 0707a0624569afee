import { describe, expect, it } from 'vitest'
import { TopologyError } from '../../errors.js'
import type { Reply } from '../reply-decoder.js'
import { nodeAddress, parseClusterSlots, SlotMap, splitAddress } from './topology.js'

const b = (text: string) => Buffer.from(text)
const ID_A = 'a'.repeat(40)
const ID_B = 'b'.repeat(40)

// As Redis 7.0 answers CLUSTER SLOTS (RESP3 maps arrive flattened: [] here).
const SLOTS_REPLY: Reply = [
  [8192, 16383, [b('127.0.0.1'), 7001, b(ID_B), []], [b('127.0.0.1'), 7004, b('c'.repeat(40)), []]],
  [0, 8191, [b(''), 7000, b(ID_A), []]],
]

describe('parseClusterSlots', () => {
  it('reads each range with its primary, the unknown endpoint as the host asked', () => {
    expect(parseClusterSlots(SLOTS_REPLY, '10.0.0.5')).toEqual([
      { start: 8192, end: 16383, primary: '127.0.0.1:7001', id: ID_B },
      { start: 0, end: 8191, primary: '10.0.0.5:7000', id: ID_A },
    ])
  })

  it('refuses what is not a slot table', () => {
    expect(() => parseClusterSlots(b('nope'), 'h')).toThrow(TopologyError)
    expect(() => parseClusterSlots([[0, 99999, [b('h'), 1]]], 'h')).toThrow(/bad range/)
    expect(() => parseClusterSlots([[0, 1, [b('h'), 0]]], 'h')).toThrow(/bad port/)
  })
})

describe('SlotMap', () => {
  it('owns every slot by range and orders primaries by their first slot', () => {
    const map = new SlotMap(parseClusterSlots(SLOTS_REPLY, '127.0.0.1'))
    expect(map.owner(0)).toBe('127.0.0.1:7000')
    expect(map.owner(8191)).toBe('127.0.0.1:7000')
    expect(map.owner(8192)).toBe('127.0.0.1:7001')
    expect(map.primaries()).toEqual(['127.0.0.1:7000', '127.0.0.1:7001'])
    expect(map.id('127.0.0.1:7001')).toBe(ID_B)
    expect(map.complete()).toBe(true)
  })

  it('knows a map with a gap is incomplete and tells maps apart', () => {
    const partial = new SlotMap([{ start: 0, end: 100, primary: 'h:1', id: '' }])
    expect(partial.complete()).toBe(false)
    expect(partial.owner(101)).toBeUndefined()
    const full = new SlotMap(parseClusterSlots(SLOTS_REPLY, '127.0.0.1'))
    const same = new SlotMap(parseClusterSlots(SLOTS_REPLY, '127.0.0.1'))
    expect(full.differs(same)).toBe(false)
    same.move(5, '127.0.0.1:7001')
    expect(full.differs(same)).toBe(true)
  })
})

describe('addresses', () => {
  it('writes and reads host:port, IPv6 in brackets', () => {
    expect(nodeAddress('::1', 7000)).toBe('[::1]:7000')
    expect(splitAddress('[::1]:7000')).toEqual({ host: '::1', port: 7000 })
    expect(splitAddress('redis-0.example:6380')).toEqual({ host: 'redis-0.example', port: 6380 })
    expect(splitAddress('host')).toBeUndefined()
    expect(splitAddress('host:0')).toBeUndefined()
    expect(splitAddress('host:70000')).toBeUndefined()
  })
})
