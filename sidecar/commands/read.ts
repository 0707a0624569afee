import { BackendError, OverloadedError } from '../../shared/errors.js'
import { keyFromBytes, keyToText } from '../../shared/keys.js'
import {
  arrayHeader,
  BULK_COPY_THRESHOLD,
  bulkHeader,
  CRLF,
  encodeBulk,
  error,
  nullReply,
} from '../resp/encoder.js'
import type { Command, CommandContext, Reply } from './types.js'

/** A value as a bulk reply: copied with its header when small, else three parts. */
export function bulkReply(value: Uint8Array): Reply {
  return value.length < BULK_COPY_THRESHOLD
    ? encodeBulk(value)
    : [bulkHeader(value.length), value, CRLF]
}

/** The one place read failures become RESP errors. */
export function failureReply(err: unknown, key: string): Reply {
  if (err instanceof OverloadedError) return error('ERR proxy overloaded, retry later')
  if (err instanceof BackendError) return error(`ERR Error getting key: ${keyToText(key)}`)
  // Not a read failure: a bug. Still an answer, never a crash.
  return error(`ERR internal error getting key: ${keyToText(key)}`)
}

export const get: Command = {
  name: 'get',
  arity: 2,
  flags: ['readonly', 'fast'],
  keys: [1, 1, 1],
  group: 'string',
  since: '1.0.0',
  summary: 'Returns the string value of a key, from the proxy cache or the backing Redis.',
  run(ctx, args) {
    const key = keyFromBytes(args[1] as Buffer)
    const hit = ctx.server.service.cached(key)
    return hit === null ? loadReply(ctx, key) : bulkReply(hit)
  },
}

/** GET's answer for a key the cache does not hold: read through, nil when missing. */
export function loadReply(ctx: CommandContext, key: string): Promise<Reply> {
  const resp3 = ctx.session.resp3
  return ctx.server.service.load(key).then(
    (value) => (value === null ? nullReply(resp3) : bulkReply(value)),
    (err: unknown) => failureReply(err, key),
  )
}

export const mget: Command = {
  name: 'mget',
  arity: -2,
  flags: ['readonly', 'fast'],
  keys: [1, -1, 1],
  group: 'string',
  since: '1.0.0',
  summary: 'Returns the string values of one or more keys; misses are loaded in parallel.',
  run(ctx, args) {
    const service = ctx.server.service
    const count = args.length - 1
    const keys: string[] = new Array(count)
    const values: (Uint8Array | null)[] = new Array(count)
    // One load per key the cache did not hold, and the position it fills.
    const loads: Promise<void>[] = []
    const loadedAt: number[] = []
    for (let i = 0; i < count; i++) {
      const key = keyFromBytes(args[i + 1] as Buffer)
      keys[i] = key
      const hit = service.cached(key)
      values[i] = hit
      if (hit === null) {
        loadedAt.push(i)
        loads.push(
          service.load(key).then((value) => {
            values[i] = value
          }),
        )
      }
    }
    if (loads.length === 0) return arrayOf(values, ctx)
    return Promise.allSettled(loads).then((outcomes) => {
      // A failure answers the whole command, naming the first key that failed.
      for (let j = 0; j < outcomes.length; j++) {
        const outcome = outcomes[j] as PromiseSettledResult<void>
        if (outcome.status === 'rejected') {
          return failureReply(outcome.reason, keys[loadedAt[j] as number] as string)
        }
      }
      return arrayOf(values, ctx)
    })
  },
}

function arrayOf(values: (Uint8Array | null)[], ctx: CommandContext): Reply {
  const parts: Uint8Array[] = [arrayHeader(values.length)]
  const none = nullReply(ctx.session.resp3)
  for (const value of values) {
    if (value === null) {
      parts.push(none)
    } else {
      const encoded = bulkReply(value)
      if (Array.isArray(encoded)) parts.push(...encoded)
      else parts.push(encoded)
    }
  }
  return parts
}
