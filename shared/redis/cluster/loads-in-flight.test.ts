import { describe, expect, it } from 'vitest'
import { ELSEWHERE, LoadsInFlight } from './loads-in-flight.js'

describe('LoadsInFlight', () => {
  it('is ordered on any node for a key with no read in flight', () => {
    const loads = new LoadsInFlight()
    expect(loads.orderedOn('k', 0)).toBe(true)
    expect(loads.size).toBe(0)
  })

  it('is ordered on the one node every read of the key went to, and on no other', () => {
    const loads = new LoadsInFlight()
    loads.begin('k', 1)
    loads.begin('k', 1)
    expect(loads.orderedOn('k', 1)).toBe(true)
    expect(loads.orderedOn('k', 2)).toBe(false)
    // Other keys are their own.
    expect(loads.orderedOn('j', 2)).toBe(true)
  })

  it('counts reads on two nodes, or by the promise path, as elsewhere until none is left', () => {
    const loads = new LoadsInFlight()
    loads.begin('k', 1)
    loads.begin('k', 2)
    expect(loads.orderedOn('k', 1)).toBe(false)
    expect(loads.orderedOn('k', 2)).toBe(false)
    loads.end('k')
    // One read left, but which one is not known: still elsewhere.
    expect(loads.orderedOn('k', 1)).toBe(false)
    loads.end('k')
    expect(loads.orderedOn('k', 1)).toBe(true)
    expect(loads.size).toBe(0)

    loads.begin('j', ELSEWHERE)
    expect(loads.orderedOn('j', 1)).toBe(false)
    loads.end('j')
    expect(loads.size).toBe(0)
  })

  it('forgets a key once each begin has had its end', () => {
    const loads = new LoadsInFlight()
    loads.begin('k', 3)
    loads.begin('k', 3)
    loads.end('k')
    expect(loads.size).toBe(1)
    loads.end('k')
    expect(loads.size).toBe(0)
    // An end too many changes nothing.
    loads.end('k')
    expect(loads.size).toBe(0)
  })
})
