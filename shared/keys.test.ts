import { describe, expect, it } from 'vitest'
import { KeyPrefixes, keyFromBytes, prefixOverlap } from './keys.js'

describe('KeyPrefixes', () => {
  const prefixes = new KeyPrefixes(['user:', 'é/', 'x'])

  it.each([
    ['user:1', true],
    ['user:', true],
    ['user', false],
    ['users:1', false],
    ['xyz', true],
    ['', false],
    ['other', false],
  ])('%j is under the prefixes: %s (as a string and as bytes)', (key, under) => {
    const bytes = Buffer.from(key, 'utf8')
    expect(prefixes.has(keyFromBytes(bytes))).toBe(under)
    // Inside a larger chunk, as a RESP argument is.
    const chunk = Buffer.concat([Buffer.from('$$'), bytes, Buffer.from('\r\n')])
    expect(prefixes.hasBytes(chunk, 2, 2 + bytes.length)).toBe(under)
  })

  it('compares UTF-8 prefixes byte for byte, as Redis does', () => {
    const key = Buffer.from('é/k', 'utf8')
    expect(prefixes.hasBytes(key, 0, key.length)).toBe(true)
    expect(prefixes.has(keyFromBytes(key))).toBe(true)
    // The same text in latin1 is other bytes.
    const latin1 = Buffer.from('é/k', 'latin1')
    expect(prefixes.hasBytes(latin1, 0, latin1.length)).toBe(false)
  })

  it('does not read past the key into the rest of the chunk', () => {
    const chunk = Buffer.from('useruser:')
    expect(prefixes.hasBytes(chunk, 0, 4)).toBe(false)
  })
})

describe('prefixOverlap', () => {
  it.each([
    [['a', 'b'], undefined],
    [['user:', 'users:'], undefined],
    [['a', 'ab'], "'ab' overlaps 'a', which already covers it"],
    [['ab', 'a'], "'ab' overlaps 'a', which already covers it"],
    [['k', 'k'], "'k' overlaps 'k', which already covers it"],
  ])('%j: %s', (list, why) => {
    expect(prefixOverlap(list)).toBe(why)
  })
})
