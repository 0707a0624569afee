import type { RequestTimer } from '../../shared/metrics.js'
import type { ReadThrough } from '../../shared/read-through.js'

/**
 * An encoded reply: one buffer, or parts written in order (a large bulk value
 * goes out as header, value, CRLF so the value is never copied).
 */
export type Reply = Uint8Array | Uint8Array[]

/** Per-connection state the commands read and change. */
export type Session = {
  readonly id: number
  readonly addr: string
  /** RESP3 once `HELLO 3` was accepted; RESP2 otherwise. */
  resp3: boolean
  name: string | null
  libName: string | null
  libVer: string | null
  /** Set by QUIT: reply, flush what is owed, then close. */
  quitting: boolean
  /**
   * Whether the client has passed the handshake; until then the connection
   * is closed when its handshake bound runs out. Today its first complete
   * command establishes it (see Connection); once authentication exists, a
   * successful AUTH will set it instead, and the same bound closes
   * connections that never authenticate.
   */
  established: boolean
}

/** What the process knows about itself, for INFO and CLIENT. */
export type ServerView = {
  readonly service: ReadThrough
  readonly port: number
  readonly maxClients: number
  readonly startedAt: number
  connections(): number
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
}

/**
 * One command: its COMMAND metadata and its handler. `arity` follows Redis:
 * positive is exact, negative is a minimum, both counting the name.
 */
export type Command = {
  readonly name: string
  readonly arity: number
  readonly flags: readonly string[]
  readonly keys: readonly [first: number, last: number, step: number]
  readonly group: string
  readonly since: string
  readonly summary: string
  /** The reply, one to wait for, or undefined when the command answered already (see `hit`). */
  run(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> | undefined
}
