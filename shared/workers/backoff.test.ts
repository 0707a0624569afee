import { describe, expect, it } from 'vitest'
import { RestartBackoff } from './backoff.js'

function fakeClock(start = 1_000_000) {
  let now = start
  return {
    now: () => now,
    advance(ms: number) {
      now += ms
    },
  }
}

describe('RestartBackoff', () => {
  it('doubles the wait for a worker that keeps dying soon after it starts, up to the cap', () => {
    const clock = fakeClock()
    const backoff = new RestartBackoff({ initialMs: 100, maxMs: 1000, clock })
    const waits: number[] = []
    for (let i = 0; i < 7; i++) {
      backoff.started(1)
      clock.advance(50)
      waits.push(backoff.exited(1))
    }
    expect(waits).toEqual([100, 200, 400, 800, 1000, 1000, 1000])
  })

  it('restarts at the first wait again once a worker ran long enough', () => {
    const clock = fakeClock()
    const backoff = new RestartBackoff({ initialMs: 100, resetAfterMs: 10_000, clock })
    for (let i = 0; i < 3; i++) {
      backoff.started(1)
      backoff.exited(1)
    }
    backoff.started(1)
    clock.advance(10_000)
    expect(backoff.exited(1)).toBe(100)
    backoff.started(1)
    clock.advance(1)
    expect(backoff.exited(1)).toBe(200)
  })

  it('counts each worker slot on its own', () => {
    const clock = fakeClock()
    const backoff = new RestartBackoff({ initialMs: 100, clock })
    backoff.started(1)
    backoff.exited(1)
    backoff.started(1)
    expect(backoff.exited(1)).toBe(200)
    backoff.started(2)
    expect(backoff.exited(2)).toBe(100)
  })

  it('stays at the cap however long the crash loop lasts', () => {
    const backoff = new RestartBackoff({ initialMs: 100, maxMs: 30_000, clock: fakeClock() })
    let wait = 0
    for (let i = 0; i < 2000; i++) {
      backoff.started(1)
      wait = backoff.exited(1)
    }
    expect(wait).toBe(30_000)
  })
})
