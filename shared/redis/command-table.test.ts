import { describe, expect, it } from 'vitest'
import { nameCode } from './command-table.js'

const code = (name: string) => nameCode(Buffer.from(name, 'latin1'))

describe('nameCode', () => {
  it('gives a name the same code in any case, as Redis compares names', () => {
    expect(code('GET')).toBe(code('get'))
    expect(code('gEt')).toBe(code('get'))
    expect(code('LPUSH')).toBe(code('lpush'))
  })

  it('tells apart names that differ in a byte, in length, or only outside A-Z', () => {
    const names = [
      'get',
      'set',
      'ge',
      'gett',
      'g',
      '',
      'getx',
      'a@',
      'a`',
      'a[',
      'a{',
      '\x00',
      '\x00\x00',
    ]
    const codes = names.map(code)
    expect(new Set(codes).size).toBe(names.length)
  })

  it('has no code for a name longer than 6 bytes', () => {
    expect(code('expire')).toBeGreaterThan(0)
    expect(code('command')).toBe(-1)
  })
})
