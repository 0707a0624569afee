import type { User } from '../shared/auth/acl.js'
import { BackendTimeoutError, BackendUnavailableError } from '../shared/errors.js'
import { keyFromBytes } from '../shared/keys.js'
import type { ReadThrough } from '../shared/read-through.js'
import { type CommandSpec, type KeyPositions, keyPositions } from '../shared/redis/command-table.js'
import type { RawDone } from '../shared/redis/source.js'
import { NOAUTH } from './access.js'
import { resetSession, wrongArity } from './commands/connection.js'
import type { CommandContext, Later, Reply } from './commands/types.js'
import type { Pinned } from './pinned.js'
import { error } from './resp/encoder.js'

/**
 * The drop-in part of the sidecar: every command it does not answer itself
 * goes to the backing Redis as the client sent it, and the reply comes back
 * as Redis sent it. The backend's own command table (COMMAND) says what
 * exists, its arity, ACL categories and keys, so permissions hold for
 * forwarded commands as for the local ones, in Redis's order (unknown
 * command, arity, authentication, command rules, keys).
 *
 * Read-your-writes: a write's keys (from its key specs; a write without keys,
 * FLUSHALL, clears everything) are evicted when it is sent and again when its
 * reply arrives, before the client sees it (needless, and skipped, when no
 * backend read began in between: see ReadThrough.flightsBegun), and any read
 * of them in flight is not stored (ReadThrough.invalidate). Redis's own
 * invalidation comes after the write's reply, too late for the client that
 * wrote. A relayed command goes out as the bytes the client sent
 * (CommandContext.wire) when it came whole in one read.
 */

/**
 * Commands that change the state of the connection that runs them, or wait
 * on it: on the shared pipelined connections they would leak into every
 * other client's commands, so they are refused until the client has a
 * backend connection of its own.
 */
const OWN_CONNECTION = new Set([
  'multi',
  'exec',
  'discard',
  'watch',
  'unwatch',
  'subscribe',
  'psubscribe',
  'ssubscribe',
  'unsubscribe',
  'punsubscribe',
  'sunsubscribe',
  'monitor',
  'sync',
  'psync',
  'replconf',
  'readonly',
  'readwrite',
  'asking',
  'wait',
  'waitaof',
])

/** Redis's wording, byte for byte: name and the quoted arguments both cut at 128. */
export function unknownCommand(args: readonly Buffer[]): Reply {
  let quoted = ''
  for (let i = 1; i < args.length && quoted.length < 128; i++) {
    quoted += `'${(args[i] as Buffer).subarray(0, 128 - quoted.length).toString('latin1')}' `
  }
  const name = (args[0] as Buffer).subarray(0, 128).toString('latin1')
  return error(`ERR unknown command '${name}', with args beginning with: ${quoted}`, 'latin1')
}

const UNAVAILABLE = error('ERR backing redis unavailable (redis-proxy)')
const TIMED_OUT = error(
  'ERR backing redis did not answer within REDIS_COMMAND_TIMEOUT (redis-proxy)',
)
const NO_KEY_PERMISSION: Reply = Buffer.from(
  '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
)

/** The one place forwarding failures become RESP errors. */
function forwardFailure(err: unknown): Reply {
  if (err instanceof BackendTimeoutError) return TIMED_OUT
  if (err instanceof BackendUnavailableError) return UNAVAILABLE
  return error(`ERR ${String((err as Error)?.message ?? err)} (redis-proxy)`)
}

/** A command the sidecar does not answer itself: refused, or relayed to the backend. */
export function forwardCommand(
  ctx: CommandContext,
  args: Buffer[],
): Reply | Promise<Reply> | undefined {
  const forwarder = ctx.server.forwarder
  if (forwarder === undefined) return unknownCommand(args)
  const table = forwarder.commands()
  // Before the first connection: nothing to tell a command from a typo with.
  if (table === undefined) return UNAVAILABLE
  const spec = table.lookup(args)
  if (spec === undefined) return unknownCommand(args)
  const arity = spec.arity
  if ((arity > 0 && args.length !== arity) || args.length < -arity) return wrongArity(spec.name)
  const user = ctx.session.user
  if (user === null) return NOAUTH
  // A read by a user who may touch every key needs no keys: neither its
  // permission nor read-your-writes asks for them.
  const keys = user.unrestricted && !mayWrite(spec) ? NO_KEYS : keyPositions(spec, args)
  const refused = user.unrestricted ? undefined : permission(user, spec, args, keys)
  if (refused !== undefined) return refused
  const self = selfView(ctx, spec)
  if (self !== undefined) return self
  if (needsOwnConnection(spec, args)) return ctx.pin(args)
  return relay(ctx, spec, args, keys)
}

const DISCARD = Buffer.from('DISCARD')
const EXECABORT = error('EXECABORT Transaction discarded because of previous errors.')

/** Commands answered by the proxy itself that a dedicated connection cannot take. */
const PROXY_ONLY = new Set(['auth', 'hello'])

/**
 * A command of a client on its own backend connection (see sidecar/pinned.ts):
 * checked as every forwarded command is, then sent there, whatever it is
 * (its reads too: nothing is cached for such a client).
 */
export function pinnedCommand(
  ctx: CommandContext,
  pinned: Pinned,
  args: readonly Buffer[],
): Reply | Promise<Reply> | undefined {
  const table = ctx.server.forwarder?.commands()
  if (table === undefined) return UNAVAILABLE
  const spec = table.lookup(args)
  // Unknown commands and wrong arity are Redis's to answer here: inside
  // MULTI they also abort the transaction (EXECABORT), as only Redis can.
  if (spec === undefined) return pinned.send(args, undefined)
  const arity = spec.arity
  if ((arity > 0 && args.length !== arity) || args.length < -arity) {
    return pinned.send(args, undefined)
  }
  const session = ctx.session
  const keys = keyPositions(spec, args)
  const refused = session.user === null ? NOAUTH : permission(session.user, spec, args, keys)
  if (refused !== undefined) {
    // Redis aborts a transaction a refused command was sent in; the
    // backend never saw this one, so EXEC is answered for it (see below).
    if (pinned.inMulti) pinned.aborted = true
    return refused
  }
  const name = spec.name
  if (PROXY_ONLY.has(name)) {
    return error(
      `ERR ${name.toUpperCase()} is not taken on a connection in a transaction, a subscription or another database (redis-proxy): RESET first`,
    )
  }
  const self = selfView(ctx, spec)
  if (self !== undefined) return self
  if (name === 'quit') session.quitting = true
  if (name === 'reset') {
    // The backend connection resets itself (RESP2, no MULTI, no
    // subscriptions); the proxy's side of the session does too.
    resetSession(ctx)
  }
  let evict = mayWrite(spec) ? written(ctx, spec, args, keys) : undefined
  if (name === 'multi') {
    pinned.inMulti = true
    pinned.queued = []
  } else if (name === 'exec' || name === 'discard' || name === 'reset') {
    const queued = name === 'exec' ? pinned.queued : []
    const aborted = pinned.aborted && name === 'exec'
    pinned.inMulti = false
    pinned.aborted = false
    pinned.queued = []
    if (aborted) {
      // Redis would discard it; so does the backend, and the client hears Redis's words.
      return pinned.send([DISCARD], undefined, 'discard').then(() => EXECABORT)
    }
    if (queued.length > 0) {
      evict = () => {
        for (const each of queued) each()
      }
    }
  } else if (pinned.inMulti && evict !== undefined) {
    // Queued, not run: its keys change when EXEC runs.
    pinned.queued.push(evict)
    evict = undefined
  }
  const later = ctx.later()
  pinned.send(args, evict, name, later).then((reply) => later.settle(reply))
  return undefined
}

/**
 * In front of a cluster, CLUSTER SLOTS, SHARDS, NODES and MYID describe the
 * proxy, at the address this client reached it by, as the one node of every
 * slot: cluster-aware clients then send everything here. In front of one
 * Redis they are forwarded like any command.
 */
function selfView(ctx: CommandContext, spec: CommandSpec): Reply | undefined {
  const cluster = ctx.server.forwarder?.cluster
  if (cluster === undefined || !spec.name.startsWith('cluster|')) return undefined
  return cluster.selfView(spec.name, ctx.session.local, ctx.session.resp3)
}

function needsOwnConnection(spec: CommandSpec, args: readonly Buffer[]): boolean {
  const name = spec.name
  if (OWN_CONNECTION.has(name)) return true
  if (!spec.isBlocking) return false
  // XREAD and XREADGROUP block only with BLOCK.
  if (name === 'xread' || name === 'xreadgroup') {
    return args.some((arg) => arg.length === 5 && arg.toString('latin1').toUpperCase() === 'BLOCK')
  }
  return true
}

/**
 * A command's keys, found once for both the permission check and
 * read-your-writes: their positions in `args`. Names (strings) are made
 * only for a user whose key patterns must be checked.
 */
type Keys = Pick<KeyPositions, 'positions' | 'writes'>

const NO_KEYS: Keys = { positions: [], writes: [] }

function permission(
  user: User,
  spec: CommandSpec,
  args: readonly Buffer[],
  keys: Keys,
): Reply | undefined {
  const bar = spec.name.indexOf('|')
  const container = bar === -1 ? spec.name : spec.name.slice(0, bar)
  const first =
    bar !== -1
      ? spec.name.slice(bar + 1)
      : args.length > 1
        ? (args[1] as Buffer).toString('utf8')
        : undefined
  if (!user.canRun(container, first, spec.categories)) {
    return error(`NOPERM this user has no permissions to run the '${spec.name}' command`)
  }
  if (user.unrestricted) return undefined
  for (let i = 0; i < keys.positions.length; i++) {
    const mode = keys.writes[i] === true ? 'write' : 'read'
    const name = keyFromBytes(args[keys.positions[i] as number] as Buffer)
    if (!user.keyAccess(name, mode)) return NO_KEY_PERMISSION
  }
  return undefined
}

/** Sends the command on a shared connection; its answer settles its place in the reply order. */
function relay(ctx: CommandContext, spec: CommandSpec, args: Buffer[], keys: Keys): undefined {
  const session = ctx.session
  const forwarder = ctx.server.forwarder as NonNullable<typeof ctx.server.forwarder>
  const later = ctx.later()
  if (!mayWrite(spec)) {
    forwarder.send(args, session.resp3, new Relayed(later), later, ctx.wire())
    return undefined
  }
  const write = new RelayedWrite(later, ctx, spec.keySpecs.length === 0, args, keys.positions)
  write.evict()
  session.writesInFlight++
  forwarder.send(args, session.resp3, write, later, ctx.wire())
  return undefined
}

/**
 * A relayed command's answer, settling its place in the reply order: one
 * object per command, the reply copied from the received chunk straight
 * into the client's output when it is first in line.
 */
class Relayed implements RawDone {
  constructor(readonly later: Later) {}
  replied(parts: Buffer[]): void {
    this.answered()
    this.later.settle(parts)
  }
  repliedIn(chunk: Buffer, start: number, end: number): void {
    this.answered()
    this.later.settleIn(chunk, start, end)
  }
  failed(err: Error): void {
    this.answered()
    this.later.settle(forwardFailure(err))
  }
  /** Before the client hears the answer. */
  answered(): void {}
}

/**
 * A relayed write: its keys are evicted when it is sent and again when its
 * answer comes, before the client sees it (see the top of this file).
 */
class RelayedWrite extends Relayed {
  constructor(
    later: Later,
    readonly ctx: CommandContext,
    /** A write that names no keys (FLUSHALL): everything is stale. */
    readonly everything: boolean,
    readonly args: readonly Buffer[],
    readonly positions: readonly number[],
  ) {
    super(later)
  }
  /** ReadThrough.flightsBegun when the keys were last evicted. */
  #evictedAt = -1
  evict(): void {
    const service = this.ctx.server.service
    this.#evictedAt = service.flightsBegun()
    evictWritten(service, this.everything, this.args, this.positions)
  }
  override answered(): void {
    // Not known to have run when it failed, but it may have: evicted anyway,
    // unless no fetch has begun since the first eviction, which could have
    // stored the keys again.
    if (this.ctx.server.service.flightsBegun() !== this.#evictedAt) this.evict()
    this.ctx.session.writesInFlight--
  }
}

/**
 * Whether a command may change its keys: a write, or a command that names
 * keys and is not read-only. EVAL, EVALSHA and FCALL are flagged neither
 * write nor readonly (a script may do either): their declared keys are
 * evicted as a write's, so the client's next read sees what the script did
 * without waiting for Redis's invalidation, which comes on another
 * connection than a RESP2 client's reply.
 */
function mayWrite(spec: CommandSpec): boolean {
  return spec.isWrite || (!spec.isReadonly && spec.keySpecs.length > 0)
}

/** What a write makes stale in the cache: its keys, or everything when it names none. */
function written(
  ctx: CommandContext,
  spec: CommandSpec,
  args: readonly Buffer[],
  keys: Keys,
): () => void {
  const service = ctx.server.service
  const everything = spec.keySpecs.length === 0
  return () => evictWritten(service, everything, args, keys.positions)
}

/** Evicts a write's keys (`args` at `positions`), or everything for a write that names none. */
function evictWritten(
  service: ReadThrough,
  everything: boolean,
  args: readonly Buffer[],
  positions: readonly number[],
): void {
  if (everything) {
    service.clear()
    return
  }
  service.invalidateEach(args, positions)
}

/**
 * A read the cache would answer, relayed instead: for a RESP2 client with a
 * write in flight, whose write runs on another backend connection than the
 * cache's reads, so only the same connection keeps the read after the write.
 */
export function relayRead(ctx: CommandContext, args: Buffer[]): boolean {
  const forwarder = ctx.server.forwarder
  if (forwarder === undefined || ctx.session.resp3 || ctx.session.writesInFlight === 0) {
    return false
  }
  const later = ctx.later()
  forwarder.send(args, false, new Relayed(later), later)
  return true
}
