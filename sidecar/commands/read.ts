import { NIL } from '../../shared/cache/slab-cache.js'
import { BackendError, BackendReplyError, OverloadedError } from '../../shared/errors.js'
import { keyFromBytes, keyToText } from '../../shared/keys.js'
import type { FetchWaiter } from '../../shared/read-through.js'
import { relayRead } from '../forward.js'
import { arrayHeader, bulkReply, error, nullReply } from '../resp/encoder.js'
import type { Command, CommandContext, Later, Reply } from './types.js'

const GET_NAME = Buffer.from('GET')

/** The one place read failures become RESP errors. */
export function failureReply(err: unknown, key: string): Reply {
  if (err instanceof OverloadedError) return error('ERR proxy overloaded, retry later')
  // Redis's own answer for this key (WRONGTYPE ...), as Redis gives it.
  if (err instanceof BackendReplyError) return error(err.message, 'latin1')
  if (err instanceof BackendError) return error(`ERR Error getting key: ${keyToText(key)}`)
  // Not a read failure: a bug. Still an answer, never a crash.
  return error(`ERR internal error getting key: ${keyToText(key)}`)
}

export const get: Command = {
  name: 'get',
  arity: 2,
  flags: ['readonly', 'fast'],
  categories: ['read', 'string', 'fast'],
  keys: [1, 1, 1],
  group: 'string',
  since: '1.0.0',
  summary: 'Returns the string value of a key, from the proxy cache or the backing Redis.',
  run: (ctx, args) => {
    const key = args[1] as Buffer
    return readKey(ctx, key, 0, key.length)
  },
}

/**
 * GET's one implementation: the command table's `get` and the decoder's fast
 * path (a canonical GET handed over as its key) both end here, so whatever
 * holds for GET holds on both.
 */
export function readKey(
  ctx: CommandContext,
  bytes: Buffer,
  start: number,
  end: number,
): Reply | Promise<Reply> | undefined {
  if (ctx.session.writesInFlight > 0) {
    if (relayRead(ctx, [GET_NAME, bytes.subarray(start, end)])) return undefined
  }
  // Found by its bytes and copied from the cache into the reply: a hit
  // makes no string of the key and no copy of the value.
  const service = ctx.server.service
  const slot = service.hitSlot(bytes, start, end)
  if (slot >= 0) {
    if (!service.hitIsNil(slot)) return ctx.hitSlot(slot)
    if (service.nilServable()) return nullReply(ctx.session.resp3)
  }
  const key = bytes.toString('latin1', start, end)
  const reply = new MissReply(ctx.later(), key, ctx.session.resp3)
  // The fetch keeps a view of the key's bytes, and with it the whole
  // ArrayBuffer they lie in, until Redis answers: only a small one, so a
  // client that pads its GETs with large arguments cannot make each miss
  // hold 64 KiB. The buffer is measured, not `bytes`: the command table's
  // GET hands over the key's own view of its chunk. A received chunk lies
  // in a buffer of its own when it is 4 KiB or more, else in Node's 8 KiB
  // pool (shared/socket-read.ts).
  if (bytes.buffer.byteLength <= KEY_VIEW_BUFFER_LIMIT) {
    service.fetchTo(key, reply, bytes, start, end)
  } else {
    service.fetchTo(key, reply)
  }
  return undefined
}

/** The largest buffer a miss keeps a view into (see readKey): Node's pool size. */
const KEY_VIEW_BUFFER_LIMIT = 8192

/**
 * GET's answer for a key the cache does not hold, in the command's reply
 * slot: nil when missing. A class, not closures: one per miss.
 */
class MissReply implements FetchWaiter {
  /** settleBulk copies the value, into the output or a reply kept in line. */
  readonly takesLent = true
  constructor(
    readonly later: Later,
    readonly key: string,
    readonly resp3: boolean,
  ) {}
  loaded(value: Uint8Array | null): void {
    if (value === null) {
      this.later.settle(nullReply(this.resp3))
      return
    }
    try {
      this.later.settleBulk(value)
    } catch (err) {
      // A bug, not the client's doing: still an answer, never a crash.
      this.later.settle(failureReply(err, this.key))
    }
  }
  failed(err: Error): void {
    this.later.settle(failureReply(err, this.key))
  }
}

/**
 * Most backend reads one MGET runs at once: a command with thousands of
 * missing keys must not fill the service's shared queue (MAX_QUEUE) and get
 * every other client's misses refused.
 */
export const MGET_PARALLEL = 64

export const mget: Command = {
  name: 'mget',
  arity: -2,
  flags: ['readonly', 'fast'],
  categories: ['read', 'string', 'fast'],
  keys: [1, -1, 1],
  group: 'string',
  since: '1.0.0',
  summary: 'Returns the string values of one or more keys; misses are loaded in parallel.',
  run(ctx, args) {
    if (ctx.session.writesInFlight > 0) {
      if (relayRead(ctx, args)) return undefined
    }
    const service = ctx.server.service
    const count = args.length - 1
    const keys: string[] = new Array(count)
    const values: (Uint8Array | null)[] = new Array(count)
    // Positions the cache could not answer.
    const missing: number[] = []
    for (let i = 0; i < count; i++) {
      const key = keyFromBytes(args[i + 1] as Buffer)
      keys[i] = key
      // Misses are loaded below, MGET_PARALLEL at a time, not all at once by get().
      const hit = service.cached(key)
      // NIL: the cache knows the key is missing.
      values[i] = hit === NIL ? null : hit
      if (hit === null) missing.push(i)
    }
    if (missing.length === 0) return arrayOf(values, ctx)
    return loadAll(ctx, keys, values, missing)
  },
}

/**
 * Loads the missing positions, at most MGET_PARALLEL at a time. As Redis's
 * MGET, a key that is not a string is nil (the backend's WRONGTYPE answer);
 * any other failure (timeout, outage, overload) answers the whole command,
 * naming its key like GET's error, and no further loads start.
 */
async function loadAll(
  ctx: CommandContext,
  keys: string[],
  values: (Uint8Array | null)[],
  missing: number[],
): Promise<Reply> {
  const service = ctx.server.service
  let next = 0
  let failure: Reply | undefined
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < missing.length) {
      const at = missing[next++] as number
      const key = keys[at] as string
      try {
        values[at] = await service.load(key)
      } catch (err) {
        if (err instanceof BackendReplyError) values[at] = null
        else failure ??= failureReply(err, key)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(MGET_PARALLEL, missing.length) }, worker))
  return failure ?? arrayOf(values, ctx)
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
