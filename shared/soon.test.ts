import { describe, expect, it } from 'vitest'
import { soon } from './soon.js'

describe('soon', () => {
  it('runs the task after the current run of code, in order with other microtasks, before I/O and immediates', async () => {
    const order: string[] = []
    const immediate = new Promise<void>((resolve) =>
      setImmediate(() => {
        order.push('immediate')
        resolve()
      }),
    )
    soon(() => order.push('first'))
    queueMicrotask(() => order.push('queued'))
    soon(() => order.push('second'))
    order.push('sync')
    expect(order).toEqual(['sync'])
    await immediate
    expect(order).toEqual(['sync', 'first', 'queued', 'second', 'immediate'])
  })

  it('runs a task queued by a task in the same microtask checkpoint', async () => {
    const order: string[] = []
    soon(() => {
      order.push('outer')
      soon(() => order.push('inner'))
    })
    await new Promise((resolve) => setImmediate(resolve))
    expect(order).toEqual(['outer', 'inner'])
  })
})
