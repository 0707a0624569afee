import { describe, expect, it } from 'vitest'
import { isRefusal, toKeys } from './ioredis-tracking.js'

function reply(message: string): Error {
  const err = new Error(message)
  err.name = 'ReplyError'
  return err
}

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

describe('isRefusal', () => {
  it('takes an error reply about the command as a refusal to fall back on', () => {
    expect(isRefusal(reply("ERR unknown command 'CLIENT TRACKING'"))).toBe(true)
    expect(
      isRefusal(reply("ERR Unknown subcommand or wrong number of arguments for 'TRACKING'")),
    ).toBe(true)
    expect(
      isRefusal(reply("NOPERM this user has no permissions to run the 'client' command")),
    ).toBe(true)
  })

  it('does not give up on answers that mean "not now"', () => {
    expect(isRefusal(reply('LOADING Redis is loading the dataset in memory'))).toBe(false)
    expect(isRefusal(reply('ERR The client ID you want redirect to does not exist'))).toBe(false)
    expect(isRefusal(new Error('Command timed out'))).toBe(false)
    expect(isRefusal(new Error('Connection is closed.'))).toBe(false)
  })
})
