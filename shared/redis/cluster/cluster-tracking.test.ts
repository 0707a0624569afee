import { describe, expect, it } from 'vitest'
import type { InvalidationTarget } from '../../invalidation.js'
import { silentLogger } from '../../log.js'
import { Push, ReplyError } from '../reply-decoder.js'
import type { RespTracking } from '../resp-tracking.js'
import { ClusterTracking } from './cluster-tracking.js'

/** A target that records what the channel asked of it. */
function recorder() {
  const calls: string[] = []
  const target: InvalidationTarget = {
    invalidateBytes: (key) => calls.push(`invalidate ${Buffer.from(key).toString('latin1')}`),
    evictBytes: (key) => calls.push(`evict ${Buffer.from(key).toString('latin1')}`),
    evictSpans(bytes, spans, count) {
      for (let i = 0; i < count; i++)
        this.evictBytes(bytes.subarray(spans[2 * i], spans[2 * i + 1]))
    },
    clear: () => calls.push('clear'),
    suspendStores: () => calls.push('suspend'),
    resumeStores: () => calls.push('resume'),
  }
  return { calls, target }
}

/** A node's connection coming up with tracking on, as RespSource drives its hooks. */
function establish(node: RespTracking): void {
  node.sourceHooks().onSetup?.(['OK'], true)
}

describe('ClusterTracking', () => {
  it('stores only once every node is tracked, and is on only then', () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const a = channel.add()
    const b = channel.add()
    expect(channel.mode()).toBe('connecting')
    establish(a)
    expect(calls).toEqual(['suspend', 'clear'])
    expect(channel.mode()).toBe('connecting')
    establish(b)
    expect(calls).toEqual(['suspend', 'clear', 'clear', 'resume'])
    expect(channel.mode()).toBe('on')
  })

  it("evicts only when the node's stream orders every load of the key (orderedHere), else drops them too", () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const ordered = new Set(['here'])
    const a = channel.add((key) => ordered.has(Buffer.from(key).toString('latin1')))
    establish(a)
    a.sourceHooks().onPush?.(
      new Push([Buffer.from('invalidate'), [Buffer.from('here'), Buffer.from('there')]]),
      undefined,
    )
    // Between a load's two replies, its key's loads are dropped whatever the node.
    a.sourceHooks().onPush?.(new Push([Buffer.from('invalidate'), [Buffer.from('here')]]), 'here')
    expect(calls.slice(-3)).toEqual(['evict here', 'invalidate there', 'invalidate here'])
    // Read where it lies in the received chunk (evictSpans): judged key by key the same way.
    calls.length = 0
    const push = Buffer.from(
      '>2\r\n$10\r\ninvalidate\r\n*2\r\n$5\r\nthere\r\n$4\r\nhere\r\n',
      'latin1',
    )
    expect(a.sourceHooks().onPushIn?.(push, 0, push.length, undefined)).toBe(true)
    expect(calls).toEqual(['invalidate there', 'evict here'])
  })

  it("passes every node's invalidations on, dropping loads in flight too (no order across nodes)", () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const a = channel.add()
    establish(a)
    a.sourceHooks().onPush?.(new Push([Buffer.from('invalidate'), [Buffer.from('k1')]]), undefined)
    a.sourceHooks().onPush?.(new Push([Buffer.from('invalidate'), null]), undefined)
    expect(calls.slice(-2)).toEqual(['invalidate k1', 'clear'])
  })

  it('clears everything and stops storing when one node is lost, until it is back', () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const a = channel.add()
    const b = channel.add()
    establish(a)
    establish(b)
    calls.length = 0
    b.sourceHooks().onLost?.()
    channel.lost()
    expect(channel.mode()).toBe('lost')
    expect(calls).toEqual(['suspend', 'clear'])
    establish(b)
    expect(channel.mode()).toBe('on')
    expect(calls).toEqual(['suspend', 'clear', 'clear', 'resume'])
  })

  it('clears what a primary gone from the topology served, and stores again without it', () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const a = channel.add()
    const b = channel.add()
    establish(a)
    establish(b)
    b.sourceHooks().onLost?.()
    calls.length = 0
    channel.remove(b)
    expect(calls).toEqual(['clear', 'resume'])
    expect(channel.mode()).toBe('on')
  })

  it('falls back to expiry-only caching when a node refuses tracking', () => {
    const channel = new ClusterTracking(silentLogger, 'bcast')
    const { calls, target } = recorder()
    channel.start(target)
    const a = channel.add()
    // BCAST refused, then tracking the keys read refused too.
    const refused = new ReplyError('ERR unknown subcommand')
    expect(a.sourceHooks().onSetup?.([refused], true)).toEqual([['CLIENT', 'TRACKING', 'ON']])
    expect(channel.mode()).toBe('connecting')
    a.sourceHooks().onSetup?.([refused], true)
    expect(channel.mode()).toBe('unsupported')
    expect(calls).toEqual(['suspend', 'resume'])
  })
})
