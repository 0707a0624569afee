import { describe, expect, it } from 'vitest'
import type { TrackingSetting } from '../config.js'
import type { InvalidationTarget } from '../invalidation.js'
import { createLogger } from '../log.js'
import { Push, type Reply, ReplyDecoder, ReplyError } from './reply-decoder.js'
import { ReplyFramer } from './reply-framer.js'
import { RespTracking } from './resp-tracking.js'

/** A channel with its source hooks, a target recording what it is told, and the warnings logged. */
function setup(mode: TrackingSetting = 'bcast', prefixes: string[] = []) {
  const lines: string[] = []
  const tracking = new RespTracking(
    createLogger('info', (line) => lines.push(line)),
    mode,
    prefixes,
  )
  const calls: string[] = []
  // How many keys each evictSpans was given: the keys themselves go to
  // `calls` as evictions, so both ways of evicting compare equal there.
  const spanCalls: number[] = []
  const target: InvalidationTarget = {
    invalidateBytes: (key) =>
      calls.push(`invalidate ${JSON.stringify(Buffer.from(key).toString('latin1'))}`),
    evictBytes: (key) => calls.push(`evict ${JSON.stringify(Buffer.from(key).toString('latin1'))}`),
    evictSpans(bytes, spans, count) {
      spanCalls.push(count)
      for (let i = 0; i < count; i++)
        this.evictBytes(bytes.subarray(spans[2 * i], spans[2 * i + 1]))
    },
    clear: () => calls.push('clear'),
    suspendStores: () => calls.push('suspend'),
    resumeStores: () => calls.push('resume'),
  }
  const hooks = tracking.sourceHooks()
  const warnings = () => lines.map((line) => JSON.parse(line)).filter((l) => l.level === 'warn')
  /**
   * Server bytes routed as the source routes them (RespSource.#onWhole and
   * #onFrame): framed, a push that lies whole in one chunk offered to
   * onPushIn first, anything it does not take decoded and given to onPush.
   * `cut` splits the bytes into two chunks there.
   */
  const receive = (bytes: string, midRead?: string, cut?: number) => {
    const framer = new ReplyFramer()
    const whole = Buffer.from(bytes, 'latin1')
    const chunks = cut === undefined ? [whole] : [whole.subarray(0, cut), whole.subarray(cut)]
    for (const chunk of chunks) {
      framer.push(
        Buffer.from(chunk),
        (parts, push) => {
          if (!push) return
          new ReplyDecoder().push(Buffer.concat(parts), (reply: Reply) => {
            if (reply instanceof Push) hooks.onPush?.(reply, midRead)
          })
        },
        (chunk, start, end, push) => push && hooks.onPushIn?.(chunk, start, end, midRead) === true,
      )
    }
  }
  return { tracking, target, calls, spanCalls, hooks, warnings, receive }
}

const BCAST = ['CLIENT', 'TRACKING', 'ON', 'BCAST']
const KEYS = ['CLIENT', 'TRACKING', 'ON']

describe('RespTracking', () => {
  it('suspends stores from start-up until CLIENT TRACKING answers OK, then clears and resumes', () => {
    const { tracking, target, calls, hooks } = setup()
    tracking.start(target)
    expect(tracking.mode()).toBe('connecting')
    expect(calls).toEqual(['suspend'])
    expect(hooks.setup?.(true)).toEqual([BCAST])
    hooks.onSetup?.(['OK'], true)
    expect(tracking.mode()).toBe('on')
    expect(calls).toEqual(['suspend', 'clear', 'resume'])
  })

  it('is lost with the connection (stores suspended, one warning) and clears and resumes on the next', () => {
    const { tracking, target, calls, hooks, warnings } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    hooks.onLost?.()
    expect(tracking.mode()).toBe('lost')
    expect(calls).toEqual(['suspend'])
    expect(warnings().map((w) => w.msg)).toEqual([
      expect.stringMatching(/^invalidation channel lost/),
    ])
    // A write may have been missed while disconnected: the new connection
    // asks for tracking again, and only its OK clears and resumes.
    expect(hooks.setup?.(true)).toEqual([BCAST])
    expect(calls).toEqual(['suspend'])
    hooks.onSetup?.(['OK'], true)
    expect(tracking.mode()).toBe('on')
    expect(calls).toEqual(['suspend', 'clear', 'resume'])
  })

  it('evicts each key an invalidate push names, by its bytes, leaving loads in flight (in order on its stream)', () => {
    const { tracking, target, calls, hooks, receive } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    receive('>2\r\n$10\r\ninvalidate\r\n*3\r\n$1\r\na\r\n$2\r\n\xff\x00\r\n$3\r\nk/2\r\n')
    expect(calls).toEqual(['evict "a"', 'evict "ÿ\\u0000"', 'evict "k/2"'])
    // Between a read's GET and PTTL replies, the write ran after that GET:
    // that read's key has its loads dropped too, by its bytes; the other
    // keys' reads are all still to be answered, so they are only evicted.
    calls.length = 0
    receive('>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n', 'a')
    expect(calls).toEqual(['invalidate "a"'])
    calls.length = 0
    receive(
      '>2\r\n$10\r\ninvalidate\r\n*3\r\n$1\r\nb\r\n$2\r\n\xff\x00\r\n$2\r\nab\r\n',
      '\xff\x00',
    )
    // (The read's key as it is met; the others together, once the push is read.)
    expect(calls).toEqual(['invalidate "ÿ\\u0000"', 'evict "b"', 'evict "ab"'])
  })

  it('evicts the keys of a push read in place together, in one call however many it names', () => {
    const { tracking, target, calls, spanCalls, hooks, receive } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    // Under BCAST one push names every key written in a turn of Redis's loop:
    // more than the 16 the channel first has room for.
    const keys = Array.from({ length: 40 }, (_, i) => `key:${i}`)
    receive(
      `>2\r\n$10\r\ninvalidate\r\n*${keys.length}\r\n${keys.map((k) => `$${k.length}\r\n${k}\r\n`).join('')}`,
    )
    receive('>2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n')
    expect(spanCalls).toEqual([40, 2])
    expect(calls).toEqual([...keys, 'a', 'b'].map((k) => `evict ${JSON.stringify(k)}`))
  })

  it('reads an invalidation where it lies and leaves anything else to the decoder, with the same effect', () => {
    const pushes = [
      '>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n',
      '>2\r\n$10\r\ninvalidate\r\n*2\r\n$0\r\n\r\n$12\r\nkey\r\nwith\x00lf\r\n',
      '>2\r\n$10\r\ninvalidate\r\n*0\r\n',
      // Not read in place: a key that is not a bulk string, the nil of a flush,
      // another kind of push, and an invalidation in two chunks.
      '>2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\nb\r\n:7\r\n',
      '>2\r\n$10\r\ninvalidate\r\n_\r\n',
      '>2\r\n$10\r\nINVALIDATE\r\n*1\r\n$1\r\nc\r\n',
      '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n',
      // Bounds that hold more than the one push: not what the framer gives.
      '>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nd\r\n+OK\r\n',
    ]
    const taken: boolean[] = []
    for (const [i, push] of pushes.entries()) {
      const inPlace = setup()
      inPlace.tracking.start(inPlace.target)
      inPlace.hooks.onSetup?.(['OK'], true)
      inPlace.calls.length = 0
      const bytes = Buffer.from(push, 'latin1')
      taken.push(
        inPlace.hooks.onPushIn?.(bytes, 0, bytes.length, i === 1 ? '' : undefined) === true,
      )
      const decoded = setup()
      decoded.tracking.start(decoded.target)
      decoded.hooks.onSetup?.(['OK'], true)
      decoded.calls.length = 0
      new ReplyDecoder().push(bytes, (reply: Reply) => {
        if (reply instanceof Push) decoded.hooks.onPush?.(reply, i === 1 ? '' : undefined)
      })
      if (taken[i] === true) expect(inPlace.calls).toEqual(decoded.calls)
      else expect(inPlace.calls).toEqual([])
    }
    expect(taken).toEqual([true, true, true, false, false, false, false, false])
    // Through the framer, as the source routes them: the same as decoded,
    // a push cut across two chunks included.
    const { tracking, target, calls, hooks, receive } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    receive(`${pushes[1]}${pushes[3]}${pushes[0]}`, undefined, 30)
    expect(calls).toEqual(['evict ""', 'evict "key\\r\\nwith\\u0000lf"', 'evict "b"', 'evict "a"'])
  })

  it('clears everything on a null invalidation (FLUSHALL, FLUSHDB)', () => {
    const { tracking, target, calls, hooks, receive } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    receive('>2\r\n$10\r\ninvalidate\r\n_\r\n')
    expect(calls).toEqual(['clear'])
  })

  it('ignores pushes that are not invalidations', () => {
    const { tracking, target, calls, hooks, receive } = setup()
    tracking.start(target)
    hooks.onSetup?.(['OK'], true)
    calls.length = 0
    receive('>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n')
    expect(calls).toEqual([])
  })

  it('asks Redis to track the keys read with CACHE_TRACKING=keys', () => {
    const { tracking, target, calls, hooks } = setup('keys')
    tracking.start(target)
    expect(hooks.setup?.(true)).toEqual([KEYS])
    expect(hooks.onSetup?.(['OK'], true)).toBeUndefined()
    expect(tracking.mode()).toBe('on')
    expect(calls).toEqual(['suspend', 'clear', 'resume'])
  })

  it('asks for broadcasts under CACHE_PREFIXES only, and for the keys read without them on a refusal', () => {
    const { tracking, target, hooks } = setup('bcast', ['user:', 'page:'])
    tracking.start(target)
    expect(hooks.setup?.(true)).toEqual([[...BCAST, 'PREFIX', 'user:', 'PREFIX', 'page:']])
    expect(hooks.onSetup?.([new ReplyError('ERR no BCAST')], true)).toEqual([KEYS])
    const keys = setup('keys', ['user:'])
    expect(keys.hooks.setup?.(true)).toEqual([KEYS])
  })

  it('tracks the keys read, with one warning, on a server that refuses BCAST, and keeps to it', () => {
    const { tracking, target, calls, hooks, warnings } = setup()
    tracking.start(target)
    expect(hooks.setup?.(true)).toEqual([BCAST])
    const refusal = new ReplyError('ERR BCAST not supported')
    expect(hooks.onSetup?.([refusal], true)).toEqual([KEYS])
    // Nothing stored until the fallback's OK.
    expect(tracking.mode()).toBe('connecting')
    expect(calls).toEqual(['suspend'])
    expect(hooks.onSetup?.(['OK'], true)).toBeUndefined()
    expect(tracking.mode()).toBe('on')
    expect(calls).toEqual(['suspend', 'clear', 'resume'])
    // The next connection asks for what worked, and nothing more is said.
    hooks.onLost?.()
    expect(hooks.setup?.(true)).toEqual([KEYS])
    hooks.onSetup?.(['OK'], true)
    expect(tracking.mode()).toBe('on')
    expect(warnings().map((w) => [w.msg, w.error])).toEqual([
      [expect.stringMatching(/refuses CLIENT TRACKING BCAST/), 'ERR BCAST not supported'],
      [expect.stringMatching(/^invalidation channel lost/), undefined],
    ])
  })

  it.each([
    'BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.',
    'LOADING Redis is loading the dataset in memory',
  ])(
    'takes %j for a passing state, not a refusal: the connection fails and tracking is asked again',
    (message) => {
      const { tracking, target, calls, hooks, warnings } = setup()
      tracking.start(target)
      const busy = new ReplyError(message)
      expect(() => hooks.onSetup?.([busy], true)).toThrow(busy)
      expect(tracking.mode()).toBe('connecting')
      expect(calls).toEqual(['suspend'])
      expect(warnings()).toEqual([])
      expect(hooks.setup?.(true)).toEqual([BCAST])
      // Also when it answers the fallback.
      hooks.onSetup?.([new ReplyError('ERR no BCAST')], true)
      expect(() => hooks.onSetup?.([busy], true)).toThrow(busy)
      expect(tracking.mode()).toBe('connecting')
      expect(hooks.setup?.(true)).toEqual([KEYS])
    },
  )

  it('falls back to expiry only with one warning when the server refuses CLIENT TRACKING', () => {
    const { tracking, target, calls, hooks, warnings } = setup('keys')
    tracking.start(target)
    hooks.onSetup?.([new ReplyError("ERR unknown command 'CLIENT TRACKING'")], true)
    expect(tracking.mode()).toBe('unsupported')
    expect(calls).toEqual(['suspend', 'resume'])
    // Not asked again, and reconnections change nothing and say nothing.
    expect(hooks.setup?.(true)).toEqual([])
    hooks.onLost?.()
    hooks.onSetup?.([], true)
    expect(tracking.mode()).toBe('unsupported')
    expect(calls).toEqual(['suspend', 'resume'])
    expect(warnings()).toEqual([
      expect.objectContaining({
        msg: expect.stringMatching(/^backing redis refuses client tracking/),
        error: "ERR unknown command 'CLIENT TRACKING'",
      }),
    ])
  })

  it('falls back to expiry only with one warning on a server without RESP3', () => {
    const { tracking, target, calls, hooks, warnings } = setup()
    tracking.start(target)
    expect(hooks.setup?.(false)).toEqual([])
    hooks.onSetup?.([], false)
    expect(tracking.mode()).toBe('unsupported')
    expect(calls).toEqual(['suspend', 'resume'])
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0].error).toMatch(/HELLO 3 refused/)
  })
})
