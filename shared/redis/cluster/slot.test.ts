import { describe, expect, it } from 'vitest'
import { crc16, keyHashSlot, slotOfKey } from './slot.js'

// Every expected slot below is what `redis-cli CLUSTER KEYSLOT <key>` answered
// on a Redis 7.0 cluster node.
const KEYSLOT: [string, number][] = [
  ['foo', 12182],
  ['bar', 5061],
  ['hello', 866],
  ['123456789', 12739],
  ['', 0],
  ['{user1000}.following', 3443],
  ['{user1000}.followers', 3443],
  // The first `{` and the first `}` after it; an empty tag hashes the whole key.
  ['foo{}{bar}', 8363],
  ['foo{{bar}}zap', 4015],
  ['foo{bar}{zap}', 5061],
  ['{}', 15257],
  ['a{', 14311],
  ['}{', 12793],
]

describe('keyHashSlot', () => {
  it.each(KEYSLOT)('puts %j in slot %i as CLUSTER KEYSLOT does', (key, slot) => {
    expect(keyHashSlot(Buffer.from(key))).toBe(slot)
    expect(slotOfKey(key)).toBe(slot)
  })

  it('hashes bytes, not text', () => {
    expect(keyHashSlot(Buffer.from([0xff]))).toBe(7920)
    expect(slotOfKey('\xff')).toBe(7920)
  })

  it('computes CRC16/XMODEM as crc16.c documents it', () => {
    // crc16.c: "Output for "123456789" : 31C3".
    expect(crc16(Buffer.from('123456789'))).toBe(0x31c3)
  })

  it('gives keys sharing a hash tag one slot, whatever surrounds it', () => {
    const slot = keyHashSlot(Buffer.from('{order:42}'))
    expect(slot).toBe(keyHashSlot(Buffer.from('order:42')))
    for (const key of ['{order:42}:items', 'x{order:42}y', '{order:42}{other}']) {
      expect(keyHashSlot(Buffer.from(key))).toBe(slot)
    }
  })
})
