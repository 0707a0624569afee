import { describe, expect, test } from 'vitest'
import { stringMatch } from './glob.js'

// [pattern, subject, matches]. Subjects and patterns are byte strings.
// The first group is from Redis's tests/unit/keyspace.tcl; the answers of the
// rest were checked against Redis's own stringmatchlen (src/util.c) built with
// unsigned chars, along with 300,000 random patterns over these characters.
const cases: ReadonlyArray<readonly [string, string, boolean]> = [
  // keyspace.tcl: KEYS with pattern, KEYS with hashtag
  ['foo*', 'foo_a', true],
  ['foo*', 'key_x', false],
  ['*', 'foo_a', true],
  ['{a}*', '{a}x', true],
  ['{a}*', '{b}a', false],
  ['*{b}*', '{b}c', true],
  ['*{b}*', '{a}z', false],
  // keyspace.tcl: regressions for long nested loops
  ['a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(40), false],
  // Redis gives up beyond 1000 nested stars, though this would match.
  ['*?'.repeat(50_000), 'a'.repeat(50_000), false],
  ['*?'.repeat(999), 'a'.repeat(999), true],

  // literals and ?
  ['', '', true],
  ['abc', 'abc', true],
  ['abc', 'abd', false],
  ['abc', 'ab', false],
  ['ab', 'abc', false],
  ['a?c', 'abc', true],
  ['a?c', 'ac', false],
  ['???', 'abc', true],
  // a star never matches an empty subject: Redis's loop needs a byte to start
  ['*', '', false],
  ['**', '', false],
  ['a*', 'a', true],
  ['a**', 'a', true],
  ['*a', 'a', true],
  ['a*b*c', 'axxbyyc', true],
  ['a*b*c', 'axxbyy', false],
  ['*.txt', 'notes.txt.bak', false],

  // classes
  ['[abc]', 'b', true],
  ['[abc]', 'd', false],
  ['[^abc]', 'd', true],
  ['[^abc]', 'a', false],
  ['[a-c]x', 'bx', true],
  ['[a-c]x', 'dx', false],
  ['[c-a]', 'b', true], // ends in either order
  // 'a-]' is a range from ']' to 'a', so the class is never closed
  ['[a-]', '-', false],
  ['[a-]', '^', true],
  ['[-a]', '-', true],
  ['[]]', ']', false], // ']' first still closes the class: '[]' is empty, then ']'
  ['[]]', ']]', false],
  ['[\\]]', ']', true], // an escaped ']' is a member
  ['[\\-]', '-', true],
  ['[a\\-z]', 'b', false], // escaped dash: not a range
  ['[^]', 'x', true], // empty negated class admits any byte
  ['[]', 'x', false],
  // an unclosed class ends at the pattern's end
  ['[abc', 'a', true],
  ['[abc', 'ab', false],
  ['[', 'x', false],
  ['[^', 'x', true],

  // escapes
  ['\\*', '*', true],
  ['\\*', 'a', false],
  ['\\?', '?', true],
  ['\\[a]', '[a]', true],
  ['a\\', 'a\\', true], // a trailing backslash is literal
  ['\\\\', '\\', true],
  ['\\a', 'a', true],

  // bytes: NUL and high bytes are ordinary characters
  ['a\x00*', 'a\x00b', true],
  ['a?b', 'a\x00b', true],
  ['\xff*', '\xff\xfe', true],
  ['[\x80-\xff]', '\xc3', true],
  ['[\x80-\xff]', 'A', false],
  ['[^\x00]', '\x00', false],
  ['caf\xc3\xa9:*', 'caf\xc3\xa9:1', true], // 'café:' as its UTF-8 bytes
  ['caf?:*', 'caf\xc3\xa9:1', false], // é is two bytes
  ['caf??:*', 'caf\xc3\xa9:1', true],
]

describe('stringMatch', () => {
  test.each(cases)('%j against %j is %s', (pattern, subject, expected) => {
    expect(stringMatch(pattern, subject)).toBe(expected)
  })

  test('answers a pathological pattern quickly instead of backtracking exponentially', () => {
    const started = performance.now()
    expect(stringMatch(`${'*a'.repeat(30)}b`, 'a'.repeat(5000))).toBe(false)
    expect(performance.now() - started).toBeLessThan(1000)
  })
})
