import type { User } from '../../shared/auth/acl.js'
import type { AuthGate } from '../../shared/auth/gate.js'
import type { RequestTimer } from '../../shared/metrics.js'
import type { ReadThrough } from '../../shared/read-through.js'
import type { RedisForwarder, ReplyStream, SelfAddress } from '../../shared/redis/source.js'

/**
 * An encoded reply: one buffer, or parts written in order (a large bulk value
 * goes out as header, value, CRLF so the value is never copied).
 */
export type Reply = Uint8Array | Uint8Array[]

/** Per-connection state the commands read and change. */
export type Session = {
  readonly id: number
  readonly addr: string
  /**
   * The address and port the client reached the proxy at: what the proxy
   * advertises as itself in front of a cluster (CLUSTER SLOTS).
   */
  readonly local: SelfAddress
  /** The client's IP address alone: what the failed-login limiter counts by. */
  readonly ip: string
  /**
   * Who the commands run as: null until the client authenticates, when the
   * gate requires it (Redis's unauthenticated client), else the default user.
   */
  user: User | null
  /** RESP3 once `HELLO 3` was accepted; RESP2 otherwise. */
  resp3: boolean
  name: string | null
  libName: string | null
  libVer: string | null
  /** Set by QUIT: reply, flush what is owed, then close. */
  quitting: boolean
  /** Forwarded writes not yet answered (see sidecar/forward.ts, relayRead). */
  writesInFlight: number
  /**
   * Whether the client has passed the handshake; until then the connection
   * is closed when its handshake bound runs out. With no password required,
   * its first complete command establishes it (see Connection); otherwise
   * only a successful AUTH or HELLO AUTH does, so the same bound closes
   * connections that never authenticate.
   */
  established: boolean
}

/** What the process knows about itself, for INFO and CLIENT. */
export type ServerView = {
  readonly service: ReadThrough
  /** Where commands the sidecar does not answer itself go; without it they are unknown. */
  readonly forwarder?: RedisForwarder
  /** Clients on backend connections of their own, and how many may be (MAX_BACKEND_CONNECTIONS). */
  readonly dedicated: { open: number; readonly max: number }
  /** Where AUTH and HELLO AUTH check passwords. */
  readonly gate: AuthGate
  readonly port: number
  readonly maxClients: number
  readonly startedAt: number
  connections(): number
  /** Every client connected now, for CLIENT LIST and CLIENT KILL. */
  clients(): Iterable<{ readonly session: Session; destroy(): void }>
  /** Counters kept by the server for INFO's stats section. */
  readonly totals: { connections: number; commands: number; rejected: number }
  /** Records each command's duration (redis_proxy_request_duration_seconds) when metrics are on. */
  readonly recordDuration?: RequestTimer
}

export type CommandContext = {
  readonly session: Session
  readonly server: ServerView
  /**
   * Answers with a cached value as a bulk reply: encoded straight into the
   * connection's output when nothing is owed before it (undefined: already
   * answered), else the reply to queue.
   */
  hit(value: Uint8Array): Reply | undefined
  /** As `hit`, for the value in a slot of the service's cache (ReadThrough.hitSlot), copied now. */
  hitSlot(slot: number): Reply | undefined
  /**
   * Moves the client onto a backend connection of its own and sends `args`
   * there (a command that gives a connection state: MULTI, a blocking pop,
   * SUBSCRIBE...); every later command of the client goes there too.
   */
  pin(args: readonly Buffer[]): Reply | Promise<Reply> | undefined
  /**
   * Takes the command's place in the reply order for an answer that comes
   * later (a forwarded command): the command then returns undefined and
   * settles it once. No promise per command; a large reply's bytes can be
   * written through it while they arrive (it is a ReplyStream too).
   */
  later(): Later
  /**
   * The command's bytes as the client sent them (a multibulk request within
   * one received chunk, as a view), or null: what a relayed command sends on
   * as it is instead of encoding its arguments again.
   */
  wire(): Buffer | null
}

/** A reply owed in order, settled once (see CommandContext.later). */
export type Later = ReplyStream & {
  settle(reply: Reply): void
  /**
   * Settles with `value` as a bulk reply: written straight into the
   * connection's output when nothing is owed before it, with no reply
   * buffer of its own (a GET miss's answer); encoded and kept otherwise.
   * `value` may be lent (valid only during the call, see
   * FetchWaiter.takesLent): what is kept is a copy, and a lent value is
   * always under the output's by-reference size (a lending read is at most
   * 64 KiB), so the write copies it too.
   */
  settleBulk(value: Uint8Array): void
  /**
   * Settles with the reply bytes `chunk[start, end)` (a forwarded reply as
   * received): copied straight into the connection's output when nothing is
   * owed before it, else copied and kept. `chunk` may be lent, as the
   * value of settleBulk, and is valid only during the call.
   */
  settleIn(chunk: Buffer, start: number, end: number): void
}

/** A subcommand of a container command (CLIENT ID, ACL WHOAMI): what ACL rules and COMMAND see. */
export type Subcommand = {
  /** Lower case, without the container's name. */
  readonly name: string
  readonly arity: number
  readonly flags: readonly string[]
  /** As `Command.categories`. */
  readonly categories: readonly string[]
}

/**
 * One command: its COMMAND metadata and its handler. `arity` follows Redis:
 * positive is exact, negative is a minimum, both counting the name.
 */
export type Command = {
  readonly name: string
  readonly arity: number
  /** Redis's flags as COMMAND INFO reports them; `no_auth` lets it run before AUTH. */
  readonly flags: readonly string[]
  /**
   * ACL categories without the `@`, as Redis 7.0's COMMAND INFO reports them
   * (`read`, `string`, `fast` for GET): the `+@category` rules match these.
   */
  readonly categories: readonly string[]
  /**
   * A container's subcommands by lower-case name. The dispatcher finds the
   * subcommand and checks its arity before permissions, as Redis does, so
   * `run` sees only a known subcommand with the right number of arguments.
   */
  readonly subcommands?: ReadonlyMap<string, Subcommand>
  readonly keys: readonly [first: number, last: number, step: number]
  readonly group: string
  readonly since: string
  readonly summary: string
  /** The reply, one to wait for, or undefined when the command answered already (see `hit`). */
  run(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> | undefined
}
