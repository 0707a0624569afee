import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Config } from '../../config.js'
import { maskUrl } from '../../config.js'
import type { Backend } from '../../create-service.js'
import { BackendReplyError, BackendUnavailableError } from '../../errors.js'
import { keyFromBytes, keyToBytes } from '../../keys.js'
import type { Logger } from '../../log.js'
import { backendTlsOptions } from '../../tls-files.js'
import { type CommandSpec, type CommandTable, keyPositions } from '../command-table.js'
import { openDedicated } from '../dedicated.js'
import { ReplyFramer } from '../reply-framer.js'
import { RespSource, toLoaded } from '../resp-source.js'
import type { RespTracking } from '../resp-tracking.js'
import {
  type ClusterRouting,
  CROSS_SLOT,
  type KeyBytes,
  type LoadDone,
  type Loaded,
  type RedisForwarder,
  type RedisSource,
  type SelfView,
  type SourceState,
} from '../source.js'
import { ClusterTracking } from './cluster-tracking.js'
import { ELSEWHERE, LoadsInFlight } from './loads-in-flight.js'
import {
  bulkArray,
  CROSSSLOT,
  concatArrays,
  decodeFrame,
  encode,
  errorText,
  firstErrorOrFirst,
  integer,
  isError,
  type Moved,
  redirectOf,
  sumOf,
} from './replies.js'
import { keyHashSlot, SLOTS, slotOfKey } from './slot.js'
import { type NodeAddress, parseClusterSlots, SlotMap, splitAddress } from './topology.js'

/** Redirections followed for one command before its last reply is the client's. */
const MAX_REDIRECTS = 5
/** Wait between tries while a slot has no ready primary (failover) or Redis says TRYAGAIN. */
const RETRY_MS = 50
/** How often the need for a refresh is checked (a node down, a MOVED seen, the interval due). */
const TICK_MS = 200

const ASKING = Buffer.from('ASKING')
const GET = Buffer.from('GET')
const PTTL = Buffer.from('PTTL')
const SCAN = Buffer.from('SCAN')

/** Multi-key commands split per slot and merged when their keys span slots. */
const SPLIT = new Set(['mget', 'del', 'unlink', 'exists', 'touch', 'mset'])
/** Sharded pub/sub: the channels hash to slots (their key specs say not_key). */
const SHARDED = new Set(['spublish', 'ssubscribe', 'sunsubscribe'])
/** Commands whose slot is an argument, not a key's. */
const SLOT_ARGUMENT = new Set(['cluster|countkeysinslot', 'cluster|getkeysinslot'])
/** What the proxy answers about the cluster itself (see SelfView). */
export const SELF_VIEW = new Set([
  'cluster|slots',
  'cluster|shards',
  'cluster|nodes',
  'cluster|myid',
])

/** A primary: the cache's RESP3 connection (tracking on it) and RESP2 clients' connection. */
type ClusterNode = {
  /** This connection's own number (an address may be connected again later). */
  readonly id: number
  readonly address: NodeAddress
  readonly host: string
  readonly url: string
  readonly source: RespSource
  readonly resp2: RespSource | undefined
  readonly tracking: RespTracking | undefined
}

/**
 * A cache read sent to one node's connection by getTo: answered in order
 * with that node's pushes. A redirect (MOVED, ASK, TRYAGAIN) goes back to
 * the cluster, which answers it by the promise path. A class, not closures:
 * one per miss.
 */
class NodeRead implements LoadDone {
  constructor(
    readonly cluster: Cluster,
    readonly node: ClusterNode,
    readonly slot: number,
    readonly key: string,
    readonly deadline: number,
    readonly done: LoadDone,
  ) {}
  loaded(loaded: Loaded | null): void {
    this.cluster.loads.end(this.key)
    this.done.loaded(loaded)
  }
  failed(err: Error): void {
    this.cluster.loads.end(this.key)
    this.cluster.retryRead(this, err)
  }
}

/**
 * The Node backend for a Redis Cluster (REDIS_CLUSTER_NODES): one Backend
 * the service and the sidecar use as they use one Redis.
 *
 * - Topology: CLUSTER SLOTS from a connected primary (the seeds until one
 *   is), read at start, every REDIS_CLUSTER_REFRESH, after a MOVED, and
 *   every TICK_MS while a primary is down or a slot has no owner.
 * - Per primary: one pipelined RESP3 RespSource (the cache's GETs, RESP3
 *   clients' commands, client tracking in-band) and one RESP2 one for RESP2
 *   clients' commands, as the native backend has for its one Redis.
 * - Routing: a GET by its key's slot; a forwarded command by the slot of its
 *   keys (the backend's own key specs), keyless ones to the first ready
 *   primary; MOVED updates the slot and retries there, ASK sends ASKING and
 *   the command to the target without touching the map, TRYAGAIN and
 *   CLUSTERDOWN are retried until the command timeout.
 * - Multi-key: MGET, DEL, UNLINK, EXISTS, TOUCH and MSET across slots are
 *   split per slot and merged (integers summed, MSET +OK: no longer atomic);
 *   any other command across slots is answered Redis's CROSSSLOT.
 * - Fan-out: KEYS, DBSIZE, FLUSHALL, FLUSHDB, SCAN (cursor carries the node),
 *   RANDOMKEY, SCRIPT LOAD/EXISTS/FLUSH and FUNCTION LOAD/DELETE/FLUSH/RESTORE
 *   on every primary.
 */
export function clusterBackend(
  config: Config,
  log: Logger,
  hooks: { forwarding?: boolean } = {},
): Backend {
  const cluster = new Cluster(config, log, hooks.forwarding === true)
  const backend: Backend = { source: cluster }
  if (cluster.tracking !== undefined) backend.invalidation = cluster.tracking
  if (hooks.forwarding === true) backend.forwarder = cluster.forwarder()
  return backend
}

class Cluster implements RedisSource {
  readonly tracking: ClusterTracking | undefined
  readonly loads = new LoadsInFlight()
  #nextNodeId = 0
  readonly #config: Config
  readonly #log: Logger
  readonly #forwarding: boolean
  readonly #tls: ReturnType<typeof backendTlsOptions>
  readonly #seeds: readonly string[]
  readonly #timeoutMs: number
  readonly #refreshMs: number
  readonly #nodes = new Map<NodeAddress, ClusterNode>()
  #map: SlotMap | undefined
  #refreshing: Promise<void> | undefined
  #refreshedAt = Number.NEGATIVE_INFINITY
  #wantRefresh = true
  #everReady = false
  #closed = false
  #lastRefreshError = ''
  readonly #tick: NodeJS.Timeout

  constructor(config: Config, log: Logger, forwarding: boolean) {
    const cluster = config.cluster
    if (cluster === undefined) throw new TypeError('Expected `config.cluster` to be set')
    this.#config = config
    this.#log = log
    this.#forwarding = forwarding
    this.#tls = backendTlsOptions(config)
    this.#seeds = cluster.seeds
    this.#refreshMs = cluster.refreshMs
    this.#timeoutMs = config.redis.commandTimeoutMs
    this.tracking =
      config.cache.invalidation === 'on'
        ? new ClusterTracking(log, config.cache.tracking, config.cache.prefixes)
        : undefined
    this.#tick = setInterval(() => this.#maybeRefresh(), TICK_MS)
    this.#tick.unref()
    this.#maybeRefresh()
  }

  // --- RedisSource: the cache's reads, by slot ---------------------------

  get(key: string, deadline: number): Promise<Loaded | null> {
    return this.#get(slotOfKey(key), key, deadline, 0)
  }

  /**
   * The cache's reads (ReadThrough uses getTo where a source has it): sent
   * by the owner's getTo, so each is answered in order with that node's
   * pushes (see LoadsInFlight); anything else by the promise path.
   */
  getTo(key: string, deadline: number, done: LoadDone, bytes?: KeyBytes): void {
    const slot = slotOfKey(key)
    const node = this.#ownerOf(slot)
    if (node === undefined || node.source.state() !== 'ready') {
      this.#track(key, this.#get(slot, key, deadline, 0), done)
      return
    }
    this.loads.begin(key, node.id)
    try {
      node.source.getTo(key, deadline, new NodeRead(this, node, slot, key, deadline, done), bytes)
    } catch (err) {
      // Not answered, then (getTo answers once, never before it returns).
      this.loads.end(key)
      throw err
    }
  }

  /** A NodeRead that failed: a redirect is followed by the promise path; anything else is its answer. */
  retryRead(read: NodeRead, err: Error): void {
    let next: Promise<Loaded | null>
    try {
      next = this.#redirect(err, read.node, read.slot, read.key, read.deadline, 0)
    } catch (failure) {
      read.done.failed(failure as Error)
      return
    }
    this.#track(read.key, next, read.done)
  }

  /** A read by the promise path, answered through `done`: in flight on no one node's stream. */
  #track(key: string, pending: Promise<Loaded | null>, done: LoadDone): void {
    this.loads.begin(key, ELSEWHERE)
    pending.then(
      (loaded) => {
        this.loads.end(key)
        done.loaded(loaded)
      },
      (err: unknown) => {
        this.loads.end(key)
        done.failed(err as Error)
      },
    )
  }

  #get(slot: number, key: string, deadline: number, hops: number): Promise<Loaded | null> {
    const node = this.#ownerOf(slot)
    if (node === undefined || node.source.state() !== 'ready') {
      return this.#later(deadline, () => this.#get(slot, key, deadline, hops), unavailable(slot))
    }
    return node.source
      .get(key, deadline)
      .catch((err: unknown) => this.#redirect(err, node, slot, key, deadline, hops))
  }

  /** Where a read that failed on `node` goes next (MOVED, ASK, TRYAGAIN...); throws `err` if nowhere. */
  #redirect(
    err: unknown,
    node: ClusterNode,
    slot: number,
    key: string,
    deadline: number,
    hops: number,
  ): Promise<Loaded | null> {
    if (!(err instanceof BackendReplyError) || hops >= MAX_REDIRECTS) throw err
    const redirect = redirectOf(err.message, node.host)
    if (redirect === undefined) throw err
    if (redirect.kind === 'moved') {
      this.#moved(redirect)
      return this.#get(slot, key, deadline, hops + 1)
    }
    if (redirect.kind === 'ask') return this.#askGet(redirect.address, key, deadline, err)
    return this.#later(
      deadline,
      () => this.#get(slot, key, deadline, hops + 1),
      () => err,
    )
  }

  /** A key being imported by another node: ASKING before each of GET and PTTL there. */
  async #askGet(
    address: NodeAddress,
    key: string,
    deadline: number,
    err: Error,
  ): Promise<Loaded | null> {
    const node = this.#nodeAt(address)
    if (node.source.state() !== 'ready') throw err
    const bytes = keyToBytes(key)
    const source = node.source
    // Four commands in one batch, in order: ASKING holds for the next one only.
    const replies = await Promise.all([
      source.forward([ASKING], deadline),
      source.forward([GET, bytes], deadline),
      source.forward([ASKING], deadline),
      source.forward([PTTL, bytes], deadline),
    ])
    return toLoaded(decodeFrame(replies[1]), decodeFrame(replies[3]))
  }

  state(): SourceState {
    if (this.#closed) return 'closed'
    const map = this.#map
    let ready = map?.complete() === true
    if (ready) {
      for (const node of this.#nodes.values()) ready &&= node.source.state() === 'ready'
    }
    if (ready) {
      this.#everReady = true
      return 'ready'
    }
    return this.#everReady ? 'reconnecting' : 'connecting'
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#tick)
    const nodes = [...this.#nodes.values()]
    this.#nodes.clear()
    await Promise.all(nodes.map((node) => closeNode(node)))
  }

  // --- Topology ------------------------------------------------------------

  #ownerOf(slot: number): ClusterNode | undefined {
    const address = this.#map?.owner(slot)
    return address === undefined ? undefined : this.#nodes.get(address)
  }

  /** The node keyless commands go to: the first ready primary in slot order. */
  #anyNode(): ClusterNode | undefined {
    let first: ClusterNode | undefined
    for (const address of this.#map?.primaries() ?? []) {
      const node = this.#nodes.get(address)
      if (node === undefined) continue
      if (node.source.state() === 'ready') return node
      first ??= node
    }
    return first
  }

  /** A known primary, or a connection to one a MOVED or ASK just named. */
  #nodeAt(address: NodeAddress): ClusterNode {
    let node = this.#nodes.get(address)
    if (node === undefined) {
      node = this.#connect(address)
      this.#nodes.set(address, node)
    }
    return node
  }

  #moved(redirect: Moved): void {
    this.#nodeAt(redirect.address)
    this.#map?.move(redirect.slot, redirect.address)
    this.#wantRefresh = true
  }

  #maybeRefresh(): void {
    if (this.#closed || this.#refreshing !== undefined) return
    let due =
      this.#wantRefresh ||
      this.#map === undefined ||
      !this.#map.complete() ||
      performance.now() - this.#refreshedAt >= this.#refreshMs
    for (const node of this.#nodes.values()) due ||= node.source.state() !== 'ready'
    if (!due) return
    this.#wantRefresh = false
    this.#refreshedAt = performance.now()
    this.#refreshing = this.#refresh().finally(() => {
      this.#refreshing = undefined
    })
  }

  async #refresh(): Promise<void> {
    let failure = 'no node to ask'
    // Connected primaries first (in slot order), then the seeds.
    const asked: { host: string; ask: () => Promise<Buffer[]> }[] = []
    for (const address of this.#map?.primaries() ?? []) {
      const node = this.#nodes.get(address)
      if (node === undefined || node.source.state() !== 'ready') continue
      asked.push({
        host: node.host,
        ask: () =>
          node.source.forward(
            [Buffer.from('CLUSTER'), Buffer.from('SLOTS')],
            performance.now() + this.#timeoutMs,
          ),
      })
    }
    for (const seed of this.#seeds) {
      asked.push({
        host: new URL(seed).hostname.replace(/^\[|\]$/g, ''),
        ask: () => this.#oneShot(seed, ['CLUSTER', 'SLOTS']),
      })
    }
    for (const { host, ask } of asked) {
      if (this.#closed) return
      try {
        const parts = await ask()
        if (isError(parts)) throw new Error(errorText(parts))
        const ranges = parseClusterSlots(decodeFrame(parts), host)
        if (ranges.length === 0) throw new Error('CLUSTER SLOTS: no slot is assigned')
        this.#apply(new SlotMap(ranges))
        this.#lastRefreshError = ''
        return
      } catch (err) {
        failure = (err as Error).message
      }
    }
    if (failure !== this.#lastRefreshError) {
      this.#lastRefreshError = failure
      this.#log.warn('redis cluster topology not read', { error: failure })
    }
  }

  #apply(next: SlotMap): void {
    if (this.#closed) return
    const previous = this.#map
    this.#map = next
    const primaries = new Set(next.primaries())
    for (const address of primaries) this.#nodeAt(address)
    for (const [address, node] of this.#nodes) {
      if (primaries.has(address)) continue
      // No longer a primary (failed over, removed): what it served goes with it.
      this.#nodes.delete(address)
      if (node.tracking !== undefined) this.tracking?.remove(node.tracking)
      void closeNode(node)
    }
    if (previous === undefined || previous.differs(next)) {
      this.#log.info('redis cluster topology', { primaries: [...primaries] })
    }
  }

  #connect(address: NodeAddress): ClusterNode {
    const target = splitAddress(address) as { host: string; port: number }
    const url = new URL(this.#seeds[0] as string)
    url.hostname = target.host.includes(':') ? `[${target.host}]` : target.host
    url.port = String(target.port)
    const nodeUrl = url.toString()
    const redis = maskUrl(nodeUrl)
    const id = this.#nextNodeId++
    const tracking = this.tracking?.add(
      (key) => this.loads.size === 0 || this.loads.orderedOn(keyFromBytes(key), id),
    )
    const trackingHooks = tracking?.sourceHooks()
    let lastError = ''
    const timeouts = {
      commandTimeoutMs: this.#config.redis.commandTimeoutMs,
      livenessTimeoutMs: this.#config.redis.livenessTimeoutMs,
      connectTimeoutMs: this.#config.redis.connectTimeoutMs,
    }
    const source = new RespSource({
      url: nodeUrl,
      commandTable: this.#forwarding,
      ...(this.#tls !== undefined && { tls: this.#tls }),
      ...timeouts,
      onError: (err) => {
        if (err.message === lastError) return
        lastError = err.message
        this.#log.warn('redis cluster node error', { redis, error: err.message })
      },
      onReady: ({ resp3 }) => {
        lastError = ''
        this.#log.info('redis cluster node ready', { redis, resp3 })
      },
      ...trackingHooks,
      onLost: () => {
        trackingHooks?.onLost?.()
        this.tracking?.lost()
        this.#wantRefresh = true
      },
    })
    const resp2 = this.#forwarding
      ? new RespSource({
          url: nodeUrl,
          protocol: 2,
          ...(this.#tls !== undefined && { tls: this.#tls }),
          ...timeouts,
        })
      : undefined
    return { id, address, host: target.host, url: nodeUrl, source, resp2, tracking }
  }

  /** One command on a connection of its own (a seed, before any primary is connected). */
  async #oneShot(url: string, args: string[]): Promise<Buffer[]> {
    const socket = await openDedicated({
      url,
      resp3: false,
      ...(this.#tls !== undefined && { tls: this.#tls }),
      timeoutMs: this.#config.redis.connectTimeoutMs,
    })
    return new Promise<Buffer[]>((resolve, reject) => {
      const framer = new ReplyFramer()
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`no reply to ${args.join(' ')} within ${this.#timeoutMs} ms`))
      }, this.#timeoutMs)
      socket.on('data', (chunk: Buffer) => {
        try {
          framer.push(chunk, (parts) => {
            clearTimeout(timer)
            // Copied: the slices belong to chunks of a socket about to close.
            resolve([Buffer.concat(parts)])
            socket.destroy()
          })
        } catch (err) {
          clearTimeout(timer)
          socket.destroy()
          reject(err as Error)
        }
      })
      socket.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      socket.on('close', () => {
        clearTimeout(timer)
        reject(new Error('connection closed before the reply'))
      })
      let wire = `*${args.length}\r\n`
      for (const arg of args) wire += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
      socket.write(wire)
    })
  }

  /**
   * Tries again in RETRY_MS while the deadline allows (a refresh may bring a
   * new owner, a promoted replica); otherwise the fallback answers.
   */
  #later<T>(deadline: number, again: () => Promise<T>, fallback: () => Error | T): Promise<T> {
    this.#wantRefresh = true
    if (performance.now() + RETRY_MS >= deadline || this.#closed) {
      const answer = fallback()
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer)
    }
    return new Promise<void>((resolve) => setTimeout(resolve, RETRY_MS)).then(again)
  }

  // --- Forwarding ------------------------------------------------------------

  commands(): CommandTable | undefined {
    for (const node of this.#nodes.values()) {
      const table = node.source.commands()
      if (table !== undefined) return table
    }
    return undefined
  }

  forwarder(): RedisForwarder {
    const routing: ClusterRouting = {
      slotOf: (args) => {
        const spec = this.commands()?.lookup(args)
        if (spec === undefined) return null
        const slot = this.#route(spec, args)
        return slot === CROSS ? CROSS_SLOT : slot
      },
      nodeOf: (slot) => this.#map?.owner(slot),
      selfView,
    }
    return {
      commands: () => this.commands(),
      forward: (args, resp3) => this.#forward(args, resp3),
      // Replies are held whole here: a MOVED or a reply to merge must be
      // read to the end before anything is relayed.
      send: (args, resp3, done) => {
        this.#forward(args, resp3).then(
          (parts) => done.replied(parts),
          (err: Error) => done.failed(err),
        )
      },
      dedicated: (resp3, slot) => this.#dedicated(resp3, slot),
      cluster: routing,
      close: async () => {
        await Promise.all([...this.#nodes.values()].map((node) => node.resp2?.close()))
      },
    }
  }

  #forward(args: readonly Uint8Array[], resp3: boolean): Promise<Buffer[]> {
    const deadline = performance.now() + this.#timeoutMs
    const spec = this.commands()?.lookup(args)
    // Unknown to the table: a node answers it as Redis does.
    if (spec === undefined) return this.#send(null, args, resp3, deadline, 0)
    const name = spec.name
    const fanOut = this.#fanOut(name, args, resp3, deadline)
    if (fanOut !== undefined) return fanOut
    if (SLOT_ARGUMENT.has(name)) {
      const slot = Number(Buffer.from(args[2] as Uint8Array).toString('latin1'))
      if (Number.isInteger(slot) && slot >= 0 && slot < SLOTS) {
        return this.#send(slot, args, resp3, deadline, 0)
      }
    }
    const slot = this.#route(spec, args)
    if (slot !== CROSS) return this.#send(slot, args, resp3, deadline, 0)
    if (SPLIT.has(name)) return this.#split(spec, args, resp3, deadline)
    return Promise.resolve([CROSSSLOT])
  }

  /** The slot every key of the command hashes to, null without keys, CROSS across slots. */
  #route(spec: CommandSpec, args: readonly Uint8Array[]): number | null | typeof CROSS {
    let positions: readonly number[]
    if (SHARDED.has(spec.name)) {
      positions =
        spec.name === 'spublish' ? [1] : Array.from({ length: args.length - 1 }, (_, i) => i + 1)
    } else {
      const found = keyPositions(spec, args)
      // Key specs that cannot say (SORT's BY/GET): the first argument is the
      // key; a wrong guess comes back as MOVED, or CROSSSLOT from Redis itself.
      if (!found.exact) positions = args.length > 1 ? [1] : []
      else positions = found.positions
    }
    let slot: number | null = null
    for (const at of positions) {
      const arg = args[at]
      if (arg === undefined) continue
      const each = keyHashSlot(arg)
      if (slot === null) slot = each
      else if (each !== slot) return CROSS
    }
    return slot
  }

  /** Sends to the slot's primary (keyless: any), following redirections. */
  #send(
    slot: number | null,
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
    hops: number,
  ): Promise<Buffer[]> {
    const node = slot === null ? this.#anyNode() : this.#ownerOf(slot)
    if (node === undefined || node.source.state() !== 'ready') {
      // Not sent: safe to try again once a primary serves the slot.
      return this.#later(
        deadline,
        () => this.#send(slot, args, resp3, deadline, hops),
        unavailable(slot),
      )
    }
    return this.#sendTo(node, args, resp3, deadline, hops, false)
  }

  #sendTo(
    node: ClusterNode,
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
    hops: number,
    asking: boolean,
  ): Promise<Buffer[]> {
    const connection = resp3 ? node.source : (node.resp2 as RespSource)
    // Both in the same batch, in order: ASKING holds for the next command only.
    if (asking) connection.forward([ASKING], deadline).catch(() => {})
    return connection.forward(args, deadline).then((parts) => {
      if (!isError(parts) || hops >= MAX_REDIRECTS) return parts
      const redirect = redirectOf(errorText(parts), node.host)
      if (redirect === undefined) return parts
      if (redirect.kind === 'moved') {
        this.#moved(redirect)
        return this.#send(redirect.slot, args, resp3, deadline, hops + 1)
      }
      if (redirect.kind === 'ask') {
        const target = this.#nodeAt(redirect.address)
        if (target.source.state() !== 'ready') return parts
        return this.#sendTo(target, args, resp3, deadline, hops + 1, true)
      }
      return this.#later(
        deadline,
        () => this.#sendTo(node, args, resp3, deadline, hops + 1, false),
        () => parts,
      )
    })
  }

  /** Keys across slots: one command per slot (in parallel), merged as the one command answers. */
  #split(
    spec: CommandSpec,
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
  ): Promise<Buffer[]> {
    const name = spec.name
    const pairs = name === 'mset'
    const positions = keyPositions(spec, args).positions
    const groups = new Map<number, number[]>()
    for (const at of positions) {
      const slot = keyHashSlot(args[at] as Uint8Array)
      const group = groups.get(slot)
      if (group === undefined) groups.set(slot, [at])
      else group.push(at)
    }
    const order = [...groups]
    const sent = order.map(([slot, group]) => {
      const sub: Uint8Array[] = [args[0] as Uint8Array]
      for (const at of group) {
        sub.push(args[at] as Uint8Array)
        if (pairs) sub.push(args[at + 1] as Uint8Array)
      }
      return this.#send(slot, sub, resp3, deadline, 0)
    })
    return Promise.all(sent).then((replies) => {
      for (const parts of replies) if (isError(parts)) return parts
      if (pairs) return firstErrorOrFirst(replies)
      if (name !== 'mget') return sumOf(replies)
      const values: (Buffer | null)[] = new Array(args.length - 1).fill(null)
      order.forEach(([, group], i) => {
        const got = decodeFrame(replies[i] as Buffer[])
        if (!Array.isArray(got)) return
        group.forEach((at, j) => {
          const value = got[j]
          values[at - 1] = Buffer.isBuffer(value) ? value : null
        })
      })
      return bulkArray(values, resp3)
    })
  }

  /** The commands that mean every node (undefined: route as usual). */
  #fanOut(
    name: string,
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
  ): Promise<Buffer[]> | undefined {
    switch (name) {
      case 'keys':
        return this.#everyNode(args, resp3, deadline).then(concatArrays)
      case 'dbsize':
        return this.#everyNode(args, resp3, deadline).then(sumOf)
      case 'flushall':
      case 'flushdb':
      case 'script|load':
      case 'script|flush':
      case 'function|load':
      case 'function|delete':
      case 'function|flush':
      case 'function|restore':
        return this.#everyNode(args, resp3, deadline).then(firstErrorOrFirst)
      case 'script|exists':
        return this.#everyNode(args, resp3, deadline).then(allExist)
      case 'scan':
        return this.#scan(args, resp3, deadline)
      case 'randomkey':
        return this.#randomKey(args, resp3, deadline)
      default:
        return undefined
    }
  }

  /** The command on every primary, in slot order, each waited for until ready. */
  #everyNode(args: readonly Uint8Array[], resp3: boolean, deadline: number): Promise<Buffer[][]> {
    const primaries = this.#map?.primaries() ?? []
    if (primaries.length === 0) return Promise.reject(unavailable(null)())
    return Promise.all(primaries.map((address) => this.#sendAt(address, args, resp3, deadline)))
  }

  #sendAt(
    address: NodeAddress,
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
  ): Promise<Buffer[]> {
    const node = this.#nodes.get(address)
    if (node === undefined || node.source.state() !== 'ready') {
      return this.#later(
        deadline,
        () => this.#sendAt(address, args, resp3, deadline),
        () => new BackendUnavailableError(`redis cluster node ${address} is not connected`),
      )
    }
    return (resp3 ? node.source : (node.resp2 as RespSource)).forward(args, deadline)
  }

  /**
   * SCAN over every primary in slot order: the cursor the client sees is
   * `nodeCursor * primaries + nodeIndex`, so 0 starts at the first node and
   * a node's own 0 moves on to the next; the last node's 0 is the end.
   */
  async #scan(args: readonly Uint8Array[], resp3: boolean, deadline: number): Promise<Buffer[]> {
    const primaries = this.#map?.primaries() ?? []
    const count = BigInt(primaries.length)
    const raw = Buffer.from(args[1] as Uint8Array).toString('latin1')
    let cursor: bigint
    try {
      cursor = /^\d+$/.test(raw) ? BigInt(raw) : -1n
    } catch {
      cursor = -1n
    }
    if (count === 0n || cursor < 0n || cursor >= 2n ** 64n) {
      // Redis's own answer for a bad cursor (or unavailable).
      return this.#send(null, args, resp3, deadline, 0)
    }
    const index = Number(cursor % count)
    const inner = cursor / count
    const sub = [SCAN, Buffer.from(String(inner)), ...args.slice(2)]
    const parts = await this.#sendAt(primaries[index] as NodeAddress, sub, resp3, deadline)
    if (isError(parts)) return parts
    const page = decodeFrame(parts)
    if (!Array.isArray(page) || !Buffer.isBuffer(page[0]) || !Array.isArray(page[1])) return parts
    const next = BigInt(page[0].toString('latin1'))
    const out =
      next !== 0n ? next * count + BigInt(index) : index + 1 < primaries.length ? index + 1 : 0
    const keys = page[1].filter((key): key is Buffer => Buffer.isBuffer(key))
    return [
      Buffer.from('*2\r\n') as Buffer,
      ...encode(String(out), resp3),
      ...bulkArray(keys, resp3),
    ]
  }

  /** A random key of a random primary; an empty one passes to the next. */
  async #randomKey(
    args: readonly Uint8Array[],
    resp3: boolean,
    deadline: number,
  ): Promise<Buffer[]> {
    const primaries = this.#map?.primaries() ?? []
    const start = Math.floor(Math.random() * primaries.length)
    let last: Buffer[] | undefined
    for (let i = 0; i < primaries.length; i++) {
      const address = primaries[(start + i) % primaries.length] as NodeAddress
      last = await this.#sendAt(address, args, resp3, deadline)
      if (isError(last) || decodeFrame(last) !== null) return last
    }
    return last ?? this.#send(null, args, resp3, deadline, 0)
  }

  #dedicated(resp3: boolean, slot: number | undefined): Promise<Socket> {
    const node = slot === undefined ? this.#anyNode() : this.#ownerOf(slot)
    if (node === undefined) return Promise.reject(unavailable(slot ?? null)())
    return openDedicated({
      url: node.url,
      resp3,
      ...(this.#tls !== undefined && { tls: this.#tls }),
      timeoutMs: this.#config.redis.connectTimeoutMs,
    })
  }
}

const CROSS = Symbol('crossslot')

function unavailable(slot: number | null): () => Error {
  return () =>
    new BackendUnavailableError(
      slot === null
        ? 'no redis cluster node connected'
        : `no connected primary serves slot ${slot}`,
    )
}

async function closeNode(node: ClusterNode): Promise<void> {
  await Promise.all([node.source.close(), node.resp2?.close()])
}

/** SCRIPT EXISTS on every node: a script exists only where every node has it. */
function allExist(replies: readonly Buffer[][]): Buffer[] {
  let flags: number[] | undefined
  for (const parts of replies) {
    if (isError(parts)) return parts
    const got = decodeFrame(parts)
    if (!Array.isArray(got)) return parts
    const each = got.map((value) => (value === 1 || value === true ? 1 : 0))
    flags = flags === undefined ? each : flags.map((flag, i) => flag & (each[i] ?? 0))
  }
  const out: Buffer[] = [Buffer.from(`*${flags?.length ?? 0}\r\n`)]
  for (const flag of flags ?? []) out.push(integer(flag))
  return out
}

/**
 * CLUSTER SLOTS, SHARDS, NODES and MYID as the proxy answers them in front
 * of a cluster: itself, at the address the client reached it by, the one
 * primary of every slot, so cluster-aware clients send everything here.
 */
const selfView: SelfView = (name, self, resp3) => {
  const id = createHash('sha1').update(`redis-proxy ${self.host}:${self.port}`).digest('hex')
  switch (name) {
    case 'cluster|slots':
      return encode([[0, SLOTS - 1, [self.host, self.port, id]]], resp3)
    case 'cluster|shards':
      return encode(
        [
          {
            map: [
              ['slots', [0, SLOTS - 1]],
              [
                'nodes',
                [
                  {
                    map: [
                      ['id', id],
                      ['port', self.port],
                      ['ip', self.host],
                      ['endpoint', self.host],
                      ['role', 'master'],
                      ['replication-offset', 0],
                      ['health', 'online'],
                    ],
                  },
                ],
              ],
            ],
          },
        ],
        resp3,
      )
    case 'cluster|nodes': {
      const host = self.host.includes(':') ? `[${self.host}]` : self.host
      return encode(`${id} ${host}:${self.port}@0 myself,master - 0 0 1 connected 0-16383\n`, resp3)
    }
    case 'cluster|myid':
      return encode(id, resp3)
    default:
      return undefined
  }
}
