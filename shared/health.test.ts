import { describe, expect, it } from 'vitest'
import { backendConnected, checkReadiness, invalidationEstablished } from './health.js'
import type { InvalidationMode } from './invalidation.js'
import type { SourceState } from './redis/source.js'

describe('checkReadiness', () => {
  it('is ready only when every check passes, and says which failed', () => {
    let state: SourceState = 'ready'
    let invalidating = false
    const checks = [
      backendConnected({ backend: () => state }),
      { name: 'invalidation', ready: () => invalidating },
    ]
    expect(checkReadiness(checks)).toEqual({
      ready: false,
      checks: { backend: true, invalidation: false },
    })
    invalidating = true
    expect(checkReadiness(checks).ready).toBe(true)
    state = 'reconnecting'
    expect(checkReadiness(checks)).toEqual({
      ready: false,
      checks: { backend: false, invalidation: true },
    })
  })

  it('waits for invalidation only while it is on and not established', () => {
    const expected: [InvalidationMode, boolean][] = [
      ['on', true],
      ['off', true],
      ['unsupported', true],
      ['connecting', false],
      ['lost', false],
    ]
    for (const [mode, ready] of expected) {
      const check = invalidationEstablished({ invalidation: () => mode })
      expect([mode, checkReadiness([check])]).toEqual([
        mode,
        { ready, checks: { invalidation: ready } },
      ])
    }
  })

  it('is ready with no checks at all', () => {
    expect(checkReadiness([])).toEqual({ ready: true, checks: {} })
  })
})
