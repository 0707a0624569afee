import { describe, expect, it } from 'vitest'
import { IdleGc, type IdleGcParts } from './idle-gc.js'

const MiB = 1024 * 1024

/** Parts whose readings the test sets; `collect` shrinks the young generation to `shrinkTo`. */
function fakeParts(young: number) {
  const state = { busy: 0, young, shrinkTo: 1 * MiB, collections: 0, clock: 0 }
  const parts: IdleGcParts = {
    busy: () => state.busy,
    youngBytes: () => state.young,
    collect: () => {
      state.collections++
      state.clock += 7
      state.young = state.shrinkTo
    },
    now: () => state.clock,
  }
  return { state, parts }
}

/** A young generation of 32 MiB that collections give nothing back of (V8 still counting traffic). */
function neverShrinks() {
  const { state, parts } = fakeParts(32 * MiB)
  state.shrinkTo = 32 * MiB
  return { state, gc: new IdleGc({ intervalMs: 5000 }, parts) }
}

describe('IdleGc', () => {
  it('collects once after an idle interval while the young generation is large', () => {
    const { state, parts } = fakeParts(32 * MiB)
    const seen: unknown[] = []
    const gc = new IdleGc({ intervalMs: 5000, onCollect: (r) => seen.push(r) }, parts)
    expect(gc.check()).toEqual({ youngBefore: 32 * MiB, youngAfter: 1 * MiB, ms: 7 })
    expect(seen).toEqual([{ youngBefore: 32 * MiB, youngAfter: 1 * MiB, ms: 7 }])
    // Given back: the next idle intervals have nothing to do.
    expect(gc.check()).toBeNull()
    expect(gc.check()).toBeNull()
    expect(state.collections).toBe(1)
  })

  it('leaves a busy process alone however large its young generation', () => {
    const { state, parts } = fakeParts(32 * MiB)
    const gc = new IdleGc({ intervalMs: 5000 }, parts)
    for (const busy of [0.01, 0.2, 1]) {
      state.busy = busy
      expect(gc.check()).toBeNull()
    }
    expect(state.collections).toBe(0)
  })

  it('leaves a young generation of youngAbove or less alone', () => {
    const { state, parts } = fakeParts(4 * MiB)
    const gc = new IdleGc({ intervalMs: 5000 }, parts)
    expect(gc.check()).toBeNull()
    state.young = 4 * MiB + 1
    expect(gc.check()).not.toBeNull()
    expect(state.collections).toBe(1)
  })

  it('takes its idle bar and size bar from the options', () => {
    const { state, parts } = fakeParts(3 * MiB)
    const gc = new IdleGc({ intervalMs: 5000, idleBelow: 0.5, youngAbove: 2 * MiB }, parts)
    state.busy = 0.4
    expect(gc.check()).not.toBeNull()
  })

  it('tries again at the next idle interval, then waits twice as long after each failure', () => {
    const { gc } = neverShrinks()
    const ran = Array.from({ length: 20 }, () => gc.check() !== null)
    // Collections at intervals 0, 1, 3, 7, 15: skipping 0, then 1, 3, 7.
    expect(ran.flatMap((r, i) => (r ? [i] : []))).toEqual([0, 1, 3, 7, 15])
  })

  it("leaves its own collection's time out of the next interval's busy share", () => {
    // At a 100 ms interval a 7 ms collection is 7% of the next interval,
    // which the loop's utilization reports as busy.
    const { state, parts } = fakeParts(32 * MiB)
    state.shrinkTo = 32 * MiB
    let ownMs = 0
    const collect = parts.collect
    parts.collect = () => {
      collect()
      ownMs = 7
    }
    parts.busy = () => {
      const busy = state.busy + ownMs / 100
      ownMs = 0
      return busy
    }
    const skips: string[] = []
    const gc = new IdleGc({ intervalMs: 100, onSkip: (why) => skips.push(why) }, parts)
    const ran = Array.from({ length: 20 }, () => gc.check() !== null)
    // As with no time of its own: the backoff still doubles.
    expect(ran.flatMap((r, i) => (r ? [i] : []))).toEqual([0, 1, 3, 7, 15])
    expect(skips.filter((why) => why === 'busy')).toEqual([])
    // Traffic on top of a collection's time is busy.
    state.busy = 0.02
    gc.check()
    expect(skips.at(-1)).toBe('busy')
  })

  it('does not take a busy look right after its own collection for traffic coming back', () => {
    // V8's own work after a full collection runs on the loop as well: the
    // look after one can read busy once the collection's time is left out.
    const { state, parts } = fakeParts(32 * MiB)
    state.shrinkTo = 32 * MiB
    let after = false
    const collect = parts.collect
    parts.collect = () => {
      collect()
      after = true
    }
    parts.busy = () => {
      const busy = state.busy + (after ? 0.02 : 0)
      after = false
      return busy
    }
    const skips: string[] = []
    const gc = new IdleGc({ intervalMs: 1000, onSkip: (why) => skips.push(why) }, parts)
    const ran = Array.from({ length: 40 }, () => gc.check() !== null)
    // Each busy look after a collection waits as a backoff look does: the
    // waits still double (1, 1, 3, 7, 15 looks between collections).
    expect(ran.flatMap((r, i) => (r ? [i] : []))).toEqual([0, 2, 4, 8, 16, 32])
    expect(skips.slice(0, 6)).toEqual(['busy', 'busy', 'busy', 'backoff', 'backoff', 'busy'])
    // Busy with no collection before it is traffic: the backoff starts over.
    state.busy = 0.5
    gc.check()
    state.busy = 0
    const next = Array.from({ length: 3 }, () => gc.check() !== null)
    expect(next).toEqual([true, false, true])
  })

  it('gives the young generation back at the second try, as V8 did after a fill', () => {
    const { state, gc } = neverShrinks()
    expect(gc.check()?.youngAfter).toBe(32 * MiB)
    state.shrinkTo = 1 * MiB
    expect(gc.check()?.youngAfter).toBe(1 * MiB)
    expect(state.collections).toBe(2)
  })

  it('starts the backoff over once traffic comes back', () => {
    const { state, gc } = neverShrinks()
    gc.check() // collects, gives nothing back
    gc.check() // collects again, gives nothing back: the next one would be skipped
    state.busy = 0.5
    gc.check()
    state.busy = 0
    expect(gc.check()).not.toBeNull()
  })

  it('caps the wait at 63 idle intervals between tries', () => {
    const { gc } = neverShrinks()
    let last = -1
    const gaps: number[] = []
    for (let i = 0; i < 600; i++) {
      if (gc.check() !== null) {
        if (last >= 0) gaps.push(i - last - 1)
        last = i
      }
    }
    expect(gaps.slice(0, 8)).toEqual([0, 1, 3, 7, 15, 31, 63, 63])
    expect(Math.max(...gaps)).toBe(63)
  })

  it('says why each look that ran no collection ran none', () => {
    const { state, parts } = fakeParts(32 * MiB)
    state.shrinkTo = 32 * MiB
    const skips: string[] = []
    const gc = new IdleGc({ intervalMs: 5000, onSkip: (why) => skips.push(why) }, parts)
    state.busy = 0.5
    gc.check()
    state.busy = 0
    gc.check() // collects, gives nothing back
    gc.check() // collects again: the next look is skipped
    gc.check()
    state.shrinkTo = 1 * MiB
    gc.check() // collects, gives it back
    gc.check()
    expect(skips).toEqual(['busy', 'backoff', 'small'])
    expect(state.collections).toBe(3)
  })

  it('stops for good, and says why, when a collection throws', () => {
    const { state, parts } = fakeParts(32 * MiB)
    const failure = new ReferenceError('gc is not defined')
    let calls = 0
    parts.collect = () => {
      calls++
      throw failure
    }
    const errors: unknown[] = []
    const gc = new IdleGc({ intervalMs: 5000, onError: (e) => errors.push(e) }, parts)
    expect(gc.check()).toBeNull()
    expect(errors).toEqual([failure])
    for (let i = 0; i < 200; i++) gc.check()
    expect(calls).toBe(1)
    state.busy = 0.5
    gc.check()
    state.busy = 0
    expect(gc.check()).toBeNull()
    expect(calls).toBe(1)
  })

  it('takes an option given as undefined as its default', () => {
    const { state, parts } = fakeParts(4 * MiB)
    const gc = new IdleGc({ intervalMs: 5000, idleBelow: undefined, youngAbove: undefined }, parts)
    // At the default youngAbove (4 MiB) nothing is collected; busy 0.5 is busy.
    expect(gc.check()).toBeNull()
    state.young = 8 * MiB
    state.busy = 0.5
    expect(gc.check()).toBeNull()
    state.busy = 0
    expect(gc.check()).not.toBeNull()
  })

  it('refuses an idle bar or a size bar that is not a number in range', () => {
    const { parts } = fakeParts(0)
    for (const idleBelow of [0, -0.1, 1.5, Number.NaN]) {
      expect(() => new IdleGc({ intervalMs: 5000, idleBelow }, parts)).toThrow(
        `Expected \`idleBelow\` to be a number above 0 up to 1, got \`${idleBelow}\``,
      )
    }
    for (const youngAbove of [-1, Number.NaN]) {
      expect(() => new IdleGc({ intervalMs: 5000, youngAbove }, parts)).toThrow(
        `Expected \`youngAbove\` to be a number from 0 and up, got \`${youngAbove}\``,
      )
    }
  })

  it('refuses an interval that is not a whole number of ms from 1', () => {
    const { parts } = fakeParts(0)
    for (const intervalMs of [0, -1, 1.5, Number.NaN]) {
      expect(() => new IdleGc({ intervalMs }, parts)).toThrow(
        `Expected \`intervalMs\` to be an integer from 1 and up, got \`${intervalMs}\``,
      )
    }
  })
})
