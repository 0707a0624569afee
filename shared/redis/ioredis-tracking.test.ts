import { describe, expect, it } from 'vitest'
import { toKeys } from './ioredis-tracking.js'

describe('toKeys', () => {
  it('reads an invalidation as raw key bytes, one char per byte', () => {
    expect(toKeys([Buffer.from('plain'), Buffer.from([0xff, 0x00, 0x41])])).toEqual([
      'plain',
      '\xff\x00A',
    ])
    expect(toKeys(Buffer.from('één'))).toEqual([Buffer.from('één').toString('latin1')])
  })

  it('reads a flush, or anything it does not understand, as "everything changed"', () => {
    expect(toKeys(null)).toBeNull()
    expect(toKeys(42)).toBeNull()
  })
})
