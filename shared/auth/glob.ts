/**
 * Redis's glob matcher (`stringmatchlen` in src/util.c, case-sensitive form),
 * translated step for step so an ACL key pattern admits exactly the keys it
 * admits in Redis: `*`, `?`, `[abc]`, `[^a]`, `[a-z]` (ends in either order),
 * `\` escapes, and the same answers for malformed patterns (`[` unclosed, a
 * trailing `\`).
 *
 * Both strings are byte strings (one char per byte, latin1), as keys are
 * everywhere in the proxy (shared/keys.ts). Bytes compare as unsigned values:
 * Redis compares C `char`s, which are signed on x86-64 and unsigned on arm64,
 * so a range with an end at or above 0x80 differs between Redis builds; this
 * matcher agrees with the arm64 build.
 */
export function stringMatch(pattern: string, subject: string): boolean {
  return matchFrom(pattern, 0, subject, 0, { skipLongerMatches: false }, 0)
}

const STAR = 0x2a // *
const QUESTION = 0x3f // ?
const OPEN = 0x5b // [
const CLOSE = 0x5d // ]
const CARET = 0x5e // ^
const DASH = 0x2d // -
const BACKSLASH = 0x5c // \

/**
 * Redis gives up (no match) beyond this many nested stars, which bounds the
 * stack; `KEYS "*?"×50000` relies on it (tests/unit/keyspace.tcl).
 */
const MAX_NESTING = 1000

type MatchState = { skipLongerMatches: boolean }

function matchFrom(
  p: string,
  pi: number,
  s: string,
  si: number,
  state: MatchState,
  nesting: number,
): boolean {
  if (nesting > MAX_NESTING) return false
  const pEnd = p.length
  const sEnd = s.length
  while (pi < pEnd && si < sEnd) {
    const pc = p.charCodeAt(pi)
    if (pc === STAR) {
      // charCodeAt past the end is NaN, as C reads the terminating NUL.
      while (p.charCodeAt(pi + 1) === STAR) pi++
      if (pi === pEnd - 1) return true
      while (si < sEnd) {
        if (matchFrom(p, pi + 1, s, si, state, nesting + 1)) return true
        if (state.skipLongerMatches) return false
        si++
      }
      // The rest of the pattern matches nowhere in the rest of the subject,
      // so no earlier star can help by swallowing more: every caller stops.
      state.skipLongerMatches = true
      return false
    }
    if (pc === QUESTION) {
      si++
    } else if (pc === OPEN) {
      const sc = s.charCodeAt(si)
      pi++
      const not = p.charCodeAt(pi) === CARET
      if (not) pi++
      let match = false
      for (;;) {
        const c = p.charCodeAt(pi)
        if (c === BACKSLASH && pEnd - pi >= 2) {
          pi++
          if (p.charCodeAt(pi) === sc) match = true
        } else if (c === CLOSE) {
          break
        } else if (pi === pEnd) {
          // Unclosed class: step back so the outer step lands on the end.
          pi--
          break
        } else if (pEnd - pi >= 3 && p.charCodeAt(pi + 1) === DASH) {
          let start = c
          let end = p.charCodeAt(pi + 2)
          if (start > end) [start, end] = [end, start]
          pi += 2
          if (sc >= start && sc <= end) match = true
        } else if (c === sc) {
          match = true
        }
        pi++
      }
      if (not) match = !match
      if (!match) return false
      si++
    } else {
      if (pc === BACKSLASH && pEnd - pi >= 2) pi++
      if (p.charCodeAt(pi) !== s.charCodeAt(si)) return false
      si++
    }
    pi++
    if (si === sEnd) {
      while (p.charCodeAt(pi) === STAR) pi++
      break
    }
  }
  return pi === pEnd && si === sEnd
}
