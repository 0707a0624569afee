import type { Socket } from 'node:net'
import type { CommandTable } from './command-table.js'

/**
 * The one port every backend implements. Keys are byte strings: one UTF-16 code
 * unit per byte (latin1), so any binary key survives the trip and can be a Map
 * key. Values are raw bytes. A missing key is `null`; failures reject with the
 * named errors of shared/errors.ts.
 */
export type RedisSource = {
  /**
   * Reads one key: its value and the time it has left in Redis, read in the
   * same round trip (GET and PTTL pipelined, or the backend's equivalent), so
   * the cache never keeps a value longer than Redis keeps the key.
   *
   * `deadline` is a `performance.now()` reading (monotonic milliseconds): the
   * read fails with a BackendTimeoutError once it passes, however long the
   * request already waited before reaching the source. A source that cannot
   * cancel its I/O still settles by then.
   */
  get(key: string, deadline: number): Promise<Loaded | null>
  /**
   * As `get`, answered through `done` instead of a promise: once, and never
   * before it returns (a failure found at once comes a microtask later). For
   * a source that reads every miss of the RESP path (RespSource): no
   * promise, no reactions and no microtask per read. ReadThrough uses it
   * where a source has it, `get` elsewhere.
   */
  getTo?(key: string, deadline: number, done: LoadDone, bytes?: KeyBytes): void
  /** What the connection is doing now, for status and readiness. */
  state(): SourceState
  close(): Promise<void>
}

/**
 * A key's bytes (its latin1 encoding) where they already lie, `chunk[start,
 * end)`, for a caller that has them (a request's key): sent and stored from
 * there instead of encoded from the string again.
 */
export type KeyBytes = {
  readonly keyChunk: Uint8Array
  readonly keyStart: number
  readonly keyEnd: number
}

/** Who a read answers by callback (RedisSource.getTo). */
export type LoadDone = {
  /**
   * With `takesLent` true, `loaded.value` may be lent (`loaded.lent`): a
   * view of a read's memory (shared/socket-read.ts, lendingReadOption),
   * valid only during the call, copied by the taker if kept. Otherwise it
   * is the taker's own.
   */
  loaded(loaded: Loaded | null): void
  failed(err: Error): void
  readonly takesLent?: boolean
}

/** A value read from Redis. */
export type Loaded = {
  readonly value: Uint8Array
  /**
   * Milliseconds the key had left in Redis when read (PTTL), or null when it
   * has no expiry. The cache caps the entry's lifetime by it.
   */
  readonly ttlMs: number | null
  /** `value` is valid only during the call that hands it over (see LoadDone.takesLent). */
  readonly lent?: boolean
}

/**
 * PTTL's answer as the time left: -1 is a key without expiry; -2 means the key
 * is gone, which after a GET found it means it expired (or was deleted) in
 * between, so the value has no time left at all.
 */
export function ttlFromPttl(pttl: number): number | null {
  if (pttl === -1) return null
  return Math.max(pttl, 0)
}

export type SourceState = 'connecting' | 'ready' | 'reconnecting' | 'closed'

/** A server's host (a name or an address, IPv6 without brackets) and port. */
export type Address = Readonly<{ host: string; port: number }>

/** A redis:// URL's server, as every connection to it is made. */
export function urlAddress(url: URL): Address {
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: Number(url.port || 6379),
  }
}

/**
 * Where a large forwarded reply's bytes go while it is still arriving, so the
 * proxy never holds it whole: memory is bounded by what the client takes,
 * not by what Redis sends. Replies shorter than a threshold never see it;
 * their bytes come whole with the answer.
 */
export type ReplyStream = {
  /**
   * The next bytes of the reply, in order (the answer brings the rest).
   * False: the client is full; the connection is not read until `resume`.
   */
  write(parts: Buffer[], resume: () => void): boolean
  /**
   * The reply will not be completed (the connection went, or the client took
   * nothing for too long while others waited behind it): the bytes already
   * written are all there will be, so the client's connection must close.
   */
  abort(reason: string): void
}

/**
 * Who hears a forwarded command's answer (RedisForwarder.send), once: an
 * object the caller already has, not a closure per command.
 */
export type RawDone = {
  /** The reply's bytes as the server sent them, as slices of the received chunks. */
  replied(parts: Buffer[]): void
  /**
   * The reply whole within one received chunk, `chunk[start, end)`, before
   * any slice of it is made: copied from there when it can be written now.
   * The chunk may be lent (shared/socket-read.ts, lendingReadOption): valid
   * only during the call, so what is kept is a copy.
   */
  repliedIn(chunk: Buffer, start: number, end: number): void
  failed(err: Error): void
}

/**
 * Commands relayed to the backing Redis as clients sent them, their replies
 * relayed as the server sent them (the drop-in RESP interface). Node only.
 */
export type RedisForwarder = {
  /** The backend's own command table, once connected (undefined before). */
  commands(): CommandTable | undefined
  /**
   * Sends the command on a shared pipelined connection speaking the client's
   * protocol (RESP3 shares the connection the cache's reads use, so its
   * commands and reads run in the order they were sent) and answers the
   * reply's bytes. Fails at once while the backend is not connected, and
   * with a BackendTimeoutError after the command timeout. With `stream`, a
   * large reply's bytes go there as they arrive (see ReplyStream).
   */
  forward(args: readonly Uint8Array[], resp3: boolean, stream?: ReplyStream): Promise<Buffer[]>
  /**
   * As `forward`, answered by `done` once (with the bytes, or the error;
   * possibly before `send` returns) instead of a promise: what the sidecar
   * uses for each client command. With `wire`, those bytes are what goes
   * out where a single connection takes the command (a cluster routes and
   * splits by `args`).
   */
  send(
    args: readonly Uint8Array[],
    resp3: boolean,
    done: RawDone,
    stream?: ReplyStream,
    /** `args` as the client sent them (RESP), to send as they are; else they are encoded. */
    wire?: Buffer | null,
  ): void
  /**
   * A backend connection of one client's own (a transaction, a blocking
   * pop, a subscription), connected and authenticated, speaking the client's
   * protocol: its bytes are the caller's to relay. In front of a cluster, on
   * the primary serving `slot` (any primary without one).
   */
  dedicated(resp3: boolean, slot?: number): Promise<Socket>
  /** Set when the backend is a Redis Cluster: what the sidecar needs to know of its slots. */
  cluster?: ClusterRouting
  close(): Promise<void>
}

/** The address a client reached the proxy at: what the proxy advertises as the cluster's one node. */
export type SelfAddress = { readonly host: string; readonly port: number }

/**
 * CLUSTER SLOTS, SHARDS, NODES or MYID (`cluster|slots`...) as the proxy
 * answers them, as reply bytes; undefined for any other command.
 */
export type SelfView = (name: string, self: SelfAddress, resp3: boolean) => Buffer[] | undefined

export type ClusterRouting = {
  /**
   * The slot every key of the command hashes to; null for a command without
   * keys (or unknown), -1 when its keys span slots.
   */
  slotOf(args: readonly Uint8Array[]): number | null | typeof CROSS_SLOT
  /** The primary serving `slot` now, as `host:port`. */
  nodeOf(slot: number): string | undefined
  selfView: SelfView
}

/** ClusterRouting.slotOf's answer for keys in more than one slot. */
export const CROSS_SLOT = -1
