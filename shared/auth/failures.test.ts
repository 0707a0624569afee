import { describe, expect, test } from 'vitest'
import { AuthFailureLimiter, type AuthFailureLimiterOptions } from './failures.js'

function limiter(options: AuthFailureLimiterOptions = {}) {
  const clock = { time: 1_000_000, now: () => clock.time }
  return { clock, limiter: new AuthFailureLimiter({ clock, ...options }) }
}

function fail(target: AuthFailureLimiter, address: string, times: number): void {
  for (let i = 0; i < times; i++) target.recordFailure(address)
}

describe('AuthFailureLimiter', () => {
  test('blocks an address for a second at its tenth failure within a minute', () => {
    const { clock, limiter: l } = limiter()
    fail(l, '10.0.0.1', 9)
    expect(l.retryAfter('10.0.0.1')).toBe(0)
    l.recordFailure('10.0.0.1')
    expect(l.retryAfter('10.0.0.1')).toBe(1000)
    clock.time += 400
    expect(l.retryAfter('10.0.0.1')).toBe(600)
    clock.time += 600
    expect(l.retryAfter('10.0.0.1')).toBe(0)
  })

  test('does not block failures spread wider than the window', () => {
    const { clock, limiter: l } = limiter()
    fail(l, 'a', 9)
    clock.time += 59_999
    l.recordFailure('a') // the tenth, just inside the window that began with the first
    expect(l.retryAfter('a')).toBe(1000)
    l.recordSuccess('a')
    fail(l, 'a', 9)
    clock.time += 60_000 // a window counts from its first failure
    fail(l, 'a', 9)
    expect(l.retryAfter('a')).toBe(0)
    l.recordFailure('a')
    expect(l.retryAfter('a')).toBe(1000)
  })

  test('doubles the block for each failure on probation, up to the longest block', () => {
    const { clock, limiter: l } = limiter({ maxBlockMs: 5000 })
    fail(l, 'a', 10)
    const blocks: number[] = []
    for (let i = 0; i < 5; i++) {
      blocks.push(l.retryAfter('a'))
      clock.time += l.retryAfter('a')
      l.recordFailure('a') // one failure is enough once blocked before
    }
    expect(blocks).toEqual([1000, 2000, 4000, 5000, 5000])
  })

  test('forgets an address quiet for a window after its block, counting afresh', () => {
    const { clock, limiter: l } = limiter()
    fail(l, 'a', 10)
    clock.time += 1000 + 60_000
    l.recordFailure('a')
    expect(l.retryAfter('a')).toBe(0)
    fail(l, 'a', 9)
    expect(l.retryAfter('a')).toBe(1000)
  })

  test('keeps an address on probation until it has been quiet for a whole window', () => {
    const { clock, limiter: l } = limiter()
    fail(l, 'a', 10)
    clock.time += 1000 + 59_999
    l.recordFailure('a')
    expect(l.retryAfter('a')).toBe(2000)
  })

  test('a success forgets the failures', () => {
    const { limiter: l } = limiter()
    fail(l, 'a', 9)
    l.recordSuccess('a')
    l.recordFailure('a')
    expect(l.retryAfter('a')).toBe(0)
    expect(l.size).toBe(1)
  })

  test('counts each address on its own', () => {
    const { limiter: l } = limiter({ maxFailures: 2 })
    fail(l, 'a', 2)
    l.recordFailure('b')
    expect(l.retryAfter('a')).toBe(1000)
    expect(l.retryAfter('b')).toBe(0)
  })

  test('tracks at most maxAddresses, forgetting the one that failed longest ago', () => {
    const { limiter: l } = limiter({ maxFailures: 1, maxAddresses: 3 })
    fail(l, 'a', 1)
    fail(l, 'b', 1)
    fail(l, 'c', 1)
    l.recordFailure('a') // a failed again: b is now the oldest
    l.recordFailure('d')
    expect(l.size).toBe(3)
    expect(l.retryAfter('b')).toBe(0)
    expect(l.retryAfter('a')).toBe(2000)
    expect(l.retryAfter('c')).toBe(1000)
    expect(l.retryAfter('d')).toBe(1000)
  })

  test('stays bounded under a flood of addresses', () => {
    const { limiter: l } = limiter({ maxAddresses: 100 })
    for (let i = 0; i < 10_000; i++) l.recordFailure(`10.0.${i >> 8}.${i & 255}`)
    expect(l.size).toBe(100)
  })

  test.each([
    [{ maxFailures: 0 }, 'Expected `maxFailures` to be an integer from 1 and up, got `0`'],
    [{ windowMs: 1.5 }, 'Expected `windowMs` to be an integer from 1 and up, got `1.5`'],
    [{ maxAddresses: -1 }, 'Expected `maxAddresses` to be an integer from 1 and up, got `-1`'],
    [
      { blockMs: 10, maxBlockMs: 5 },
      'Expected `maxBlockMs` to be at least `blockMs` (10), got `5`',
    ],
  ])('refuses %j', (options, message) => {
    expect(() => new AuthFailureLimiter(options)).toThrow(new TypeError(message))
  })
})
