import { connect as connectTcp, isIP, type Socket } from 'node:net'
import { type ConnectionOptions, connect as connectTls } from 'node:tls'
import { copyBytes } from '../bytes.js'
import { turnNow } from '../clock.js'
import {
  BackendError,
  BackendReplyError,
  BackendTimeoutError,
  BackendUnavailableError,
} from '../errors.js'
import { Fifo } from '../fifo.js'
import { isLent, lendingReadOption } from '../socket-read.js'
import { SocketWriter } from '../socket-write.js'
import { CommandTable } from './command-table.js'
import { backoff } from './reconnect-delay.js'
import {
  isPassingError,
  Push,
  type Reply,
  ReplyDecoder,
  ReplyError,
  ReplyProtocolError,
} from './reply-decoder.js'
import { FrameError, ReplyFramer, STREAM_AFTER } from './reply-framer.js'
import {
  type Address,
  type KeyBytes,
  type LoadDone,
  type Loaded,
  type RawDone,
  type RedisSource,
  type ReplyStream,
  type SourceState,
  urlAddress,
} from './source.js'

export type RespSourceOptions = {
  /** redis:// or rediss:// URL; user, password and database number are honoured. */
  url: string
  /**
   * Where to connect, asked anew on every (re)connect. While it answers
   * undefined (no primary known yet), the source stays unready and asks
   * again on its backoff, or at once on `reconnect()`.
   * @default the URL's host and port
   */
  address?: () => Address | undefined
  /**
   * Every new connection asks `ROLE` and is refused unless the server says
   * it is a primary (Sentinel: the address may be a replica by the time it
   * is reached). A server that will not say (ROLE not permitted) is trusted.
   * @default false
   */
  primaryOnly?: boolean
  /**
   * A connection attempt failed, or a connection was lost, other than by
   * `reconnect()` or `close()`: where the address comes from may want to
   * look again (Sentinel).
   */
  onDown?: (err: Error) => void
  /**
   * 3: `HELLO 3`, falling back to RESP2 on a server without it (the read
   * path, with tracking). 2: RESP2 only, for relaying RESP2 clients' commands
   * byte for byte.
   * @default 3
   */
  protocol?: 2 | 3
  /**
   * Reads the server's command table (`COMMAND`) on every new connection,
   * before it is ready: see `commands()`.
   * @default false
   */
  commandTable?: boolean
  /**
   * How long the handshake's own commands may take; reads carry their own
   * deadline (see RedisSource.get).
   * @default 1000
   */
  commandTimeoutMs?: number
  /**
   * Milliseconds without a single byte from the server, while replies are
   * owed, after which the connection is declared dead and replaced. At least
   * `commandTimeoutMs`: a slow reply only fails its own read.
   * @default 5000
   */
  livenessTimeoutMs?: number
  /** @default 2000 */
  connectTimeoutMs?: number
  /**
   * For rediss://: the CA to trust, a client certificate and key, the server
   * name (SNI and the name the certificate must carry). Certificates are
   * always verified.
   * @default the system CAs, the URL's host
   */
  tls?: ConnectionOptions
  /** Connection-level failures, for logging; never thrown. */
  onError?: (err: Error) => void
  /** Called each time the connection is (again) ready for reads. */
  onReady?: (info: { resp3: boolean }) => void
  /**
   * Commands run on every new connection after the handshake and before it
   * is ready (CLIENT TRACKING ON, for example), chosen once the protocol is
   * known; their replies go to `onSetup` before the connection is ready.
   * `onSetup` may answer with more commands (a fallback for one refused),
   * whose replies come back to it in turn.
   */
  setup?: (resp3: boolean) => string[][]
  onSetup?: (replies: Reply[], resp3: boolean) => string[][] | undefined
  /**
   * RESP3 pushes that are not replies (client-tracking invalidations), with
   * the key (a byte string) of the read between its two replies, if one is
   * (its GET answered, its PTTL not yet): what a push then tells of ran
   * after that GET, where it comes before the GET of every other read still
   * unanswered.
   */
  onPush?: (push: Push, midRead: string | undefined) => void
  /**
   * A push that lies whole in one received chunk, `chunk[start, end)`,
   * offered before it is decoded (with `midRead` as for onPush): true when
   * taken, and onPush is not called for it; false leaves it to onPush. Lets
   * the commonest push, an invalidation, be read where it lies.
   */
  onPushIn?: (chunk: Buffer, start: number, end: number, midRead: string | undefined) => boolean
  /** Called when a ready connection is lost, before anything is retried. */
  onLost?: () => void
  /**
   * The server refused the database of the URL before the source was ever
   * ready (`SELECT` out of range: the server has fewer databases): no retry
   * can change it, so the source closes and says why. Once it has been ready,
   * a refusal is retried like any failed connection.
   */
  onRefused?: (reason: string) => void
}

/** Rounds of setup commands a connection runs at most (a first ask and its fallbacks). */
const MAX_SETUP_ROUNDS = 4

/** Keys longer than this are written as bytes of their own, not batched as text. */
const INLINE_KEY_LIMIT = 64 * 1024
const ARRAY_BYTE = 42 // *
const BULK_BYTE = 36 // $
const GET_BULK = Buffer.from('$3\r\nGET\r\n')
const CRLF_PTTL_BULK = Buffer.from('\r\n*2\r\n$4\r\nPTTL\r\n')

/**
 * Commands are encoded into slabs of this size; a full one is written at
 * once instead of waiting for the end of the loop turn.
 */
const SLAB_SIZE = 128 * 1024
/** Bytes of one `*n`/`$n` header and the CRLF after its payload, at most (n < 2^32). */
const HEADER_BYTES = 15

/**
 * One command owed replies, in the order they were sent. A GET is pipelined
 * with a PTTL of its key: two replies for one waiter.
 */
type Waiter = {
  /** performance.now() reading after which the caller is answered a timeout. */
  readonly deadline: number
  /** Replies still to come for it. */
  owed: number
  /**
   * Set once its caller has been answered (a timeout): its replies still
   * take their slots in the stream, and are decoded and dropped.
   */
  settled: boolean
  reject(err: Error): void
} & (
  | { readonly get: false; readonly raw: false; resolve(reply: Reply): void }
  /** A forwarded command: its reply's bytes as received, never decoded. */
  | RawWaiter
  | GetWaiter
)

/**
 * A forwarded command: its reply's bytes as received, never decoded. A class,
 * not an object with closures: the forwarding path makes one per command.
 */
class RawWaiter {
  readonly get = false
  readonly raw = true
  owed = 1
  settled = false
  /**
   * Part of its reply went to `stream`: from then on it is never timed out
   * (the client has half a reply), only completed or aborted.
   */
  streaming = false
  constructor(
    readonly deadline: number,
    readonly done: RawDone,
    readonly stream: ReplyStream | undefined,
  ) {}
  resolve(parts: Buffer[]): void {
    this.done.replied(parts)
  }
  reject(err: Error): void {
    this.done.failed(err)
  }
}

/**
 * A read (GET and PTTL of one key): answered once both replies are in. A
 * class, not an object with closures: the miss path makes one per miss.
 */
class GetWaiter {
  readonly get = true
  readonly raw = false
  owed = 2
  settled = false
  /** The GET's reply, kept until its PTTL arrives. */
  value: Reply | undefined = undefined
  constructor(
    readonly deadline: number,
    readonly done: LoadDone,
    /** Its key, for a push between its two replies (see onPush). */
    readonly key: string,
  ) {}
  resolve(loaded: Loaded | null): void {
    this.done.loaded(loaded)
  }
  reject(err: Error): void {
    this.done.failed(err)
  }
}

/**
 * The native backend source: one pipelined connection speaking RESP3 when the
 * server does (RESP2 otherwise), written for the proxy's one hot command.
 *
 * - Every GET of one event-loop turn, whichever client caused it, leaves in
 *   one write, each followed by a PTTL of its key, so a value comes with the
 *   time its key has left.
 * - Replies are matched to waiters in order (a FIFO with a head index).
 * - A slow reply costs only the reads waiting for it. Each read has its own
 *   deadline; one sweep timer (no timer per command) answers overdue reads a
 *   timeout, one by one, and their replies are dropped when they come. The
 *   connection is kept: replacing it would fail every other read and, with
 *   tracking, clear the cache. The reply being received when its deadline
 *   passes is not timed out while its bytes keep coming (a large value).
 * - The connection is declared dead only when replies are owed and not one
 *   byte arrived for `livenessTimeoutMs`; then everything pending fails.
 * - While not connected, reads fail at once; reconnection backs off from
 *   50 ms to 2 s with jitter.
 */
export class RespSource implements RedisSource {
  readonly #url: URL
  readonly #address: () => Address | undefined
  readonly #timeoutMs: number
  readonly #livenessMs: number
  readonly #connectTimeoutMs: number
  readonly #options: RespSourceOptions
  #socket: Socket | null = null
  #state: SourceState = 'connecting'
  #ready = false
  #resp3 = false
  // Every reply is framed (where it ends, as slices of the received chunks);
  // only those a caller wants as values are decoded, so a forwarded reply is
  // relayed as the very bytes the server sent.
  readonly #framer = new ReplyFramer()
  readonly #decoder = new ReplyDecoder()
  #commands: CommandTable | undefined
  // Filled and emptied by every loop turn's reads: keeps room for thousands.
  readonly #waiters = new Fifo<Waiter>(4096)
  /** When the last byte arrived, or replies began to be owed after none were. */
  #heardAt = 0
  /** The streamed reply whose client is full: the socket is not read until it takes more. */
  #pausedFor: Waiter | null = null
  #pausedAt = 0
  // The commands of this loop turn, encoded: slab[start, end) is not yet
  // written; what is before start is the socket's until it is sent, so a
  // slab is filled further, then replaced by a fresh one, unless the socket
  // took every byte at once: then it is filled again from the start.
  #slab = Buffer.allocUnsafe(SLAB_SIZE)
  #start = 0
  #end = 0
  #flushScheduled = false
  /** The connected socket's writer (see #flush); null while connecting. */
  #writer: SocketWriter | null = null
  #attempt = 0
  #everReady = false
  #retry: NodeJS.Timeout | undefined
  readonly #sweep: NodeJS.Timeout

  constructor(options: RespSourceOptions) {
    this.#options = options
    this.#url = new URL(options.url)
    const fixed = urlAddress(this.#url)
    this.#address = options.address ?? (() => fixed)
    this.#timeoutMs = options.commandTimeoutMs ?? 1000
    this.#livenessMs = options.livenessTimeoutMs ?? Math.max(5000, this.#timeoutMs)
    if (!(this.#livenessMs >= this.#timeoutMs)) {
      throw new TypeError(
        `Expected \`livenessTimeoutMs\` to be at least \`commandTimeoutMs\` (${this.#timeoutMs}), got \`${this.#livenessMs}\``,
      )
    }
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2000
    // Judged after the poll phase that follows the timer (setImmediate): bytes
    // that arrived while the process was busy are read before any read is
    // called overdue or the connection silent.
    this.#sweep = setInterval(
      () => setImmediate(() => this.#checkDeadlines()),
      Math.min(100, this.#timeoutMs / 2),
    )
    this.#sweep.unref()
    this.#connect()
  }

  get(key: string, deadline: number): Promise<Loaded | null> {
    return new Promise<Loaded | null>((resolve, reject) =>
      this.getTo(key, deadline, { loaded: resolve, failed: reject }),
    )
  }

  getTo(key: string, deadline: number, done: LoadDone, bytes?: KeyBytes): void {
    if (!this.#ready) {
      const err = new BackendUnavailableError(`backing redis is ${this.#state}`)
      queueMicrotask(() => done.failed(err))
      return
    }
    const now = turnNow()
    if (deadline <= now) {
      const err = new BackendTimeoutError('deadline passed before the read was sent')
      queueMicrotask(() => done.failed(err))
      return
    }
    // The command is queued before its waiter: a waiter without a command
    // behind it would take the next command's reply, and every later one.
    this.#sendGet(key, bytes)
    this.#owe(now, new GetWaiter(deadline, done, key))
  }

  state(): SourceState {
    return this.#state
  }

  /** The server's command table, read on the current connection (with `commandTable`). */
  commands(): CommandTable | undefined {
    return this.#commands
  }

  /**
   * Sends one command as the client sent it (its arguments) and answers its
   * reply's bytes exactly as the server sent them: slices of the received
   * chunks, to write on as they are. It shares the pipeline with the reads,
   * so it runs in order with every read sent before or after it.
   */
  forward(args: readonly Uint8Array[], deadline: number, stream?: ReplyStream): Promise<Buffer[]> {
    return new Promise<Buffer[]>((resolve, reject) => {
      this.send(
        args,
        deadline,
        {
          replied: resolve,
          // Kept by the promise: a lent chunk's bytes are copied.
          repliedIn: (chunk, start, end) => {
            const reply = chunk.subarray(start, end)
            resolve([isLent(chunk) ? Buffer.from(reply) : reply])
          },
          failed: reject,
        },
        stream,
      )
    })
  }

  /**
   * As `forward`, answered by `done` instead of a promise (once, possibly
   * before `send` returns when the command cannot be sent): the forwarding
   * path sends one per client command.
   */
  send(
    args: readonly Uint8Array[],
    deadline: number,
    done: RawDone,
    stream?: ReplyStream,
    wire?: Buffer | null,
  ): void {
    if (!this.#ready) {
      done.failed(new BackendUnavailableError(`backing redis is ${this.#state}`))
      return
    }
    const now = turnNow()
    if (deadline <= now) {
      done.failed(new BackendTimeoutError('deadline passed before the command was sent'))
      return
    }
    if (wire != null) this.#sendWire(wire)
    else this.#sendCommand(args)
    this.#owe(now, new RawWaiter(deadline, done, stream))
  }

  /**
   * Drops the connection, failing what it owes, and connects again at once
   * to the address asked anew: the primary moved. Stores and tracking see a
   * lost connection, as for any other.
   */
  reconnect(): void {
    if (this.#state === 'closed') return
    clearTimeout(this.#retry)
    this.#retry = undefined
    this.#attempt = 0
    const socket = this.#socket
    if (socket !== null) {
      this.#lose()
      socket.destroy()
    }
    this.#connect()
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#ready = false
    clearInterval(this.#sweep)
    clearTimeout(this.#retry)
    const socket = this.#socket
    // Detached first: QUIT's reply and anything else still arriving is ignored.
    this.#socket = null
    this.#failAll(new BackendUnavailableError('source closed'))
    if (socket !== null && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve())
        socket.end('*1\r\n$4\r\nQUIT\r\n')
        setTimeout(() => socket.destroy(), 500).unref()
      })
    }
  }

  #connect(): void {
    if (this.#state === 'closed') return
    this.#retry = undefined
    const url = this.#url
    const address = this.#address()
    if (address === undefined) {
      // Nothing to connect to yet: whoever knows the address says so with
      // reconnect(); the backoff is only the fallback.
      this.#retry = setTimeout(() => this.#connect(), backoff(this.#attempt++))
      return
    }
    const { host, port } = address
    const onChunk = (chunk: Buffer): void => this.#onData(socket, chunk)
    const socket =
      url.protocol === 'rediss:'
        ? connectTls({
            host,
            port,
            // SNI takes names only; an address is still checked against the
            // certificate's IP entries.
            ...(isIP(host) === 0 && { servername: host }),
            ...this.#options.tls,
            rejectUnauthorized: true,
          })
        : connectTcp({ host, port, noDelay: true, onread: lendingReadOption(onChunk) })
    this.#socket = socket
    this.#writer = null
    socket.setTimeout(this.#connectTimeoutMs, () => {
      socket.destroy(new Error(`connect timed out after ${this.#connectTimeoutMs} ms`))
    })
    socket.once(url.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => {
      socket.setTimeout(0)
      // Redis reads what it is sent; nothing waits on a drain here.
      if (this.#socket === socket) this.#writer = new SocketWriter(socket, () => {})
      this.#handshake(socket).then(
        () => {
          if (this.#socket !== socket || this.#state === 'closed') return
          this.#attempt = 0
          this.#state = 'ready'
          this.#ready = true
          this.#everReady = true
          this.#options.onReady?.({ resp3: this.#resp3 })
        },
        // A connection already replaced (reconnect()) fails quietly: its
        // handshake failing is no news.
        (err: Error) => (this.#socket === socket ? socket.destroy(err) : socket.destroy()),
      )
    })
    // A TLS backend reads by 'data', as before: only the plain TCP path was
    // measured with onread (tls.connect takes the option too).
    if (url.protocol === 'rediss:') socket.on('data', onChunk)
    socket.on('error', (err) => this.#options.onError?.(err))
    socket.on('close', () => this.#onClose(socket))
  }

  /** HELLO 3 (with AUTH), falling back to RESP2; SELECT; then the setup commands. */
  async #handshake(socket: Socket): Promise<void> {
    const url = this.#url
    const user = decodeURIComponent(url.username) || 'default'
    const password = url.password === '' ? null : decodeURIComponent(url.password)
    const hello =
      this.#options.protocol === 2
        ? new ReplyError('NOPROTO RESP2 asked for')
        : await this.#call(socket, [
            'HELLO',
            '3',
            ...(password === null ? [] : ['AUTH', user, password]),
          ])
    if (hello instanceof ReplyError) {
      if (!/NOPROTO|unknown command/i.test(hello.message)) throw hello
      this.#resp3 = false
      if (password !== null) {
        const auth = await this.#call(
          socket,
          url.username === '' ? ['AUTH', password] : ['AUTH', user, password],
        )
        if (auth instanceof ReplyError) throw auth
      }
    } else {
      this.#resp3 = true
    }
    if (this.#options.primaryOnly === true) {
      const role = await this.#call(socket, ['ROLE'])
      const refusal = notPrimary(role)
      if (refusal !== undefined) throw new BackendUnavailableError(refusal)
    }
    const db = url.pathname.replace(/^\//, '')
    if (db !== '' && db !== '0') {
      const selected = await this.#call(socket, ['SELECT', db])
      // Busy (a script running) or loading is no answer about the database:
      // retried, not taken for a refusal that ends the process.
      if (isPassingError(selected)) throw selected
      if (selected instanceof ReplyError) {
        if (!this.#everReady && this.#options.onRefused !== undefined) {
          const reason = `database ${db}: ${selected.message}`
          void this.close()
          this.#options.onRefused(reason)
        }
        throw selected
      }
    }
    if (this.#options.commandTable === true) {
      // A server that will not describe its commands (a Redis-compatible
      // proxy, an ACL user without +command) still serves reads; commands
      // to forward then have no table (see RedisForwarder.commands).
      const table = await this.#call(socket, ['COMMAND'])
      // Busy (a script running) or loading: this connection is retried,
      // not left without a table.
      if (isPassingError(table)) throw table
      this.#commands = readTable(table)
    }
    // onSetup hears at least once, no commands meaning nothing was asked;
    // its answers are bounded, so a hook that keeps asking fails the handshake.
    let commands = this.#options.setup?.(this.#resp3) ?? []
    for (let round = 1; ; round++) {
      const replies = await Promise.all(commands.map((args) => this.#call(socket, args)))
      if (this.#socket !== socket) return
      commands = this.#options.onSetup?.(replies, this.#resp3) ?? []
      if (commands.length === 0) break
      if (round === MAX_SETUP_ROUNDS) throw new Error('connection setup did not settle')
    }
  }

  /** A command on this socket regardless of readiness (the handshake's own). */
  #call(socket: Socket, args: string[]): Promise<Reply> {
    if (this.#socket !== socket) return Promise.reject(new Error('connection replaced'))
    return new Promise<Reply>((resolve, reject) => {
      const now = performance.now()
      this.#owe(now, {
        resolve,
        reject,
        deadline: now + this.#timeoutMs,
        owed: 1,
        settled: false,
        get: false,
        raw: false,
      })
      let wire = `*${args.length}\r\n`
      for (const arg of args) wire += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
      socket.write(wire)
    })
  }

  #owe(now: number, waiter: Waiter): void {
    // Silence counts from when a reply is first owed, not from the last byte
    // of an idle connection.
    if (this.#waiters.length === 0) this.#heardAt = now
    this.#waiters.push(waiter)
  }

  /**
   * GET then PTTL of the same key, back to back in the same write: Redis runs
   * them one after the other, so the TTL is the value's. Keys are byte
   * strings: their length in latin1 is their length in bytes. The key is
   * copied from `given` when the caller has its bytes, else encoded.
   */
  #sendGet(key: string, given: KeyBytes | undefined): void {
    const length = key.length
    if (length <= INLINE_KEY_LIMIT) {
      this.#room(2 * (length + 2 * HEADER_BYTES) + 8)
      this.#header(ARRAY_BYTE, 2)
      this.#copy(GET_BULK)
      this.#header(BULK_BYTE, length)
      const keyAt = this.#end
      if (given === undefined) this.#latin1(key)
      else this.#copyFrom(given.keyChunk, given.keyStart, given.keyEnd)
      this.#copy(CRLF_PTTL_BULK)
      this.#header(BULK_BYTE, length)
      // The PTTL's key: the GET's bytes again, moved within the slab rather
      // than encoded a second time from the string.
      this.#slab.copyWithin(this.#end, keyAt, keyAt + length)
      this.#end += length
      this.#crlf()
      this.#scheduleFlush()
      return
    }
    // A long key goes out as bytes of its own after what is batched.
    const socket = this.#socket
    if (socket === null) throw new BackendUnavailableError('connection to backing redis lost')
    this.#flush()
    const bytes = Buffer.from(key, 'latin1')
    socket.write(`*2\r\n$3\r\nGET\r\n$${length}\r\n`, 'latin1')
    socket.write(bytes)
    socket.write(`\r\n*2\r\n$4\r\nPTTL\r\n$${length}\r\n`, 'latin1')
    socket.write(bytes)
    socket.write('\r\n', 'latin1')
  }

  /** A command as RESP wants it, batched with the reads of this loop turn when small. */
  #sendCommand(args: readonly Uint8Array[]): void {
    let size = 0
    for (const arg of args) size += arg.length
    if (size <= INLINE_KEY_LIMIT) {
      this.#room(size + (args.length + 1) * HEADER_BYTES)
      this.#header(ARRAY_BYTE, args.length)
      for (const arg of args) {
        this.#header(BULK_BYTE, arg.length)
        this.#copy(arg)
        this.#crlf()
      }
      this.#scheduleFlush()
      return
    }
    const socket = this.#socket
    if (socket === null) throw new BackendUnavailableError('connection to backing redis lost')
    this.#flush()
    socket.write(`*${args.length}\r\n`, 'latin1')
    for (const arg of args) {
      socket.write(`$${arg.length}\r\n`, 'latin1')
      socket.write(arg)
      socket.write('\r\n', 'latin1')
    }
  }

  /** A command's bytes as a client sent them: batched when small, else written as they are. */
  #sendWire(wire: Buffer): void {
    if (wire.length <= INLINE_KEY_LIMIT) {
      this.#room(wire.length)
      this.#copy(wire)
      this.#scheduleFlush()
      return
    }
    const socket = this.#socket
    if (socket === null) throw new BackendUnavailableError('connection to backing redis lost')
    this.#flush()
    socket.write(wire)
  }

  /** Makes room for `bytes` more in the slab: a full one is written now and replaced. */
  #room(bytes: number): void {
    if (this.#end + bytes <= this.#slab.length) return
    this.#flush()
    // Emptied into the kernel at once (see #flush): room again from the start.
    if (this.#end + bytes <= this.#slab.length) return
    this.#slab = Buffer.allocUnsafe(Math.max(SLAB_SIZE, bytes))
    this.#start = 0
    this.#end = 0
  }

  /** `*n\r\n` or `$n\r\n`, digits written by hand: no string per header. */
  #header(type: number, n: number): void {
    const slab = this.#slab
    let at = this.#end
    slab[at++] = type
    if (n < 10) {
      slab[at++] = 48 + n
    } else {
      const digits = n < 100 ? 2 : n < 1000 ? 3 : Math.floor(Math.log10(n)) + 1
      for (let i = at + digits - 1, rest = n; i >= at; i--, rest = Math.floor(rest / 10)) {
        slab[i] = 48 + (rest % 10)
      }
      at += digits
    }
    slab[at++] = 13
    slab[at++] = 10
    this.#end = at
  }

  #crlf(): void {
    const slab = this.#slab
    slab[this.#end++] = 13
    slab[this.#end++] = 10
  }

  #copy(bytes: Uint8Array): void {
    this.#end = copyBytes(bytes, 0, bytes.length, this.#slab, this.#end)
  }

  #copyFrom(bytes: Uint8Array, start: number, end: number): void {
    this.#end = copyBytes(bytes, start, end, this.#slab, this.#end)
  }

  /** A byte string (one char per byte) as its bytes. */
  #latin1(text: string): void {
    const length = text.length
    if (length < 32) {
      const slab = this.#slab
      const at = this.#end
      for (let i = 0; i < length; i++) slab[at + i] = text.charCodeAt(i)
      this.#end = at + length
    } else {
      this.#end += this.#slab.write(text, this.#end, 'latin1')
    }
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    // After the poll phase (setImmediate), not after this callback (a
    // microtask): the misses of every client socket read in this loop turn
    // leave in one write. Measured here at 50 clients without pipelining,
    // every GET a miss: 12.4-12.9 µs of CPU and 36.5-37.1k GET/s per request
    // against 18.0-18.4 µs and 28.0-28.4k with a microtask.
    setImmediate(this.#flushLater)
  }

  readonly #flushLater = (): void => {
    this.#flushScheduled = false
    this.#flush()
  }

  #flush(): void {
    const start = this.#start
    const end = this.#end
    if (end === start) return
    this.#start = end
    const socket = this.#socket
    if (socket === null) return
    const bytes = this.#slab.subarray(start, end)
    const writer = this.#writer
    if (writer !== null) writer.write(bytes)
    else socket.write(bytes)
    // Taken by the kernel at once: nothing holds the slab, it is reused.
    if ((writer === null ? socket.writableLength : writer.pending) === 0) {
      this.#start = 0
      this.#end = 0
    }
  }

  #onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.#socket) return
    this.#heardAt = performance.now()
    try {
      this.#framer.push(chunk, this.#onFrame, this.#onWhole)
      if (this.#framer.pendingBytes >= STREAM_AFTER) this.#relayHeld(socket)
      this.#keepLent()
    } catch (err) {
      // Not RESP: nothing more on this connection can be trusted.
      socket.destroy(
        err instanceof ReplyProtocolError || err instanceof FrameError
          ? err
          : new Error(String(err)),
      )
    }
  }

  /**
   * At the end of a lent read (see lendingReadOption): what outlives it is
   * copied, which is only the slices of a reply not yet whole and the
   * value of a read whose GET is answered and whose PTTL is not. Every
   * other use of the read's bytes happened during it, or copied them: the
   * replies handed over whole (#onWhole, whose takers copy what they keep),
   * and the frames handed over in slices, copied first (#onFrame). Reading
   * each chunk into a buffer of its own instead cost a 16 KiB miss 7 µs of
   * V8 full collections (the buffers are memory outside the heap, which
   * V8 collects by its growth), 1.4 µs of allocation and 1.8 of copying.
   */
  #keepLent(): void {
    this.#framer.keepHeld(isLent)
    const head = this.#waiters.peek()
    if (head?.get) {
      const value = head.value
      if (value instanceof Uint8Array && isLent(value)) head.value = Buffer.from(value)
    }
  }

  /**
   * A large reply still arriving: what came so far goes to its stream (or is
   * dropped, for a command already answered a timeout). A client that cannot
   * take it pauses the connection: Redis then holds the rest, and every
   * command behind it waits, so the pause is bounded (see #checkDeadlines).
   */
  #relayHeld(socket: Socket): void {
    const framer = this.#framer
    const head = this.#waiters.peek()
    if (head === undefined || !head.raw || framer.heldIsPush) return
    if (head.settled) {
      framer.takeHeld()
      return
    }
    const stream = head.stream
    if (stream === undefined) return
    head.streaming = true
    const resume = () => {
      if (this.#pausedFor !== head) return
      this.#pausedFor = null
      this.#heardAt = performance.now()
      if (this.#socket === socket) socket.resume()
    }
    const parts = framer.takeHeld()
    // Kept by the stream (queued, or written by reference): no lent bytes.
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as Buffer
      if (isLent(part)) parts[i] = Buffer.from(part)
    }
    if (!stream.write(parts, resume)) {
      this.#pausedFor = head
      this.#pausedAt = performance.now()
      socket.pause()
    }
  }

  readonly #onFrame = (parts: Buffer[], push: boolean): void => {
    // A reply in slices (or one #onWhole left): its last slice may be of a
    // lent read, and whoever takes the slices may keep them.
    for (let i = parts.length - 1; i >= 0 && isLent(parts[i] as Buffer); i--) {
      parts[i] = Buffer.from(parts[i] as Buffer)
    }
    if (push) {
      const reply = this.#decode(parts)
      if (reply instanceof Push) {
        const head = this.#waiters.peek()
        this.#options.onPush?.(reply, head?.get === true && head.owed === 1 ? head.key : undefined)
      }
      return
    }
    const head = this.#waiters.peek()
    if (head === undefined) throw new ReplyProtocolError('reply without a command')
    if (head.raw) {
      this.#waiters.shift()
      if (head.settled) return
      head.settled = true
      head.resolve(parts)
      return
    }
    this.#onReply(this.#decode(parts))
  }

  /**
   * A reply within one chunk, offered before it is sliced: a forwarded
   * command's goes to its caller as bounds, a read's GET or PTTL reply is
   * read from them (no slice, no array); anything else is left to #onFrame.
   */
  readonly #onWhole = (chunk: Buffer, start: number, end: number, push: boolean): boolean => {
    const head = this.#waiters.peek()
    if (push) {
      const midRead = head?.get === true && head.owed === 1 ? head.key : undefined
      return this.#options.onPushIn?.(chunk, start, end, midRead) === true
    }
    if (head === undefined) return false
    if (head.raw) {
      this.#waiters.shift()
      if (head.settled) return true
      head.settled = true
      head.done.repliedIn(chunk, start, end)
      return true
    }
    if (!head.get) return false
    const quick = quickReply(chunk, start, end)
    if (quick === undefined) return false
    this.#onReply(quick)
    return true
  }

  /** One framed reply as a value. */
  #decode(parts: Buffer[]): Reply {
    // A GET's bulk and a PTTL's integer in one part, the read path's every
    // reply, read here without the general decoder; anything else, or
    // anything unexpected in these, goes to it.
    if (parts.length === 1) {
      const quick = quickReply(parts[0] as Buffer)
      if (quick !== undefined) return quick
    }
    this.#decoded = 0
    for (const part of parts) this.#decoder.push(part, this.#take)
    if (this.#decoded !== 1) throw new ReplyProtocolError('a frame that is not one reply')
    const reply = this.#value as Reply
    this.#value = undefined
    return reply
  }

  // The decoder's callback for #decode: a field, not a closure per frame.
  #value: Reply | undefined
  #decoded = 0
  readonly #take = (value: Reply): void => {
    this.#value = value
    this.#decoded++
  }

  #onReply(reply: Reply): void {
    const waiter = this.#waiters.peek()
    if (waiter === undefined) throw new ReplyProtocolError('reply without a command')
    if (--waiter.owed > 0) {
      if (waiter.get) waiter.value = reply
      return
    }
    this.#waiters.shift()
    if (waiter.settled) return
    waiter.settled = true
    if (!waiter.get) {
      // A raw waiter never gets here (see #onFrame).
      ;(waiter as { resolve(reply: Reply): void }).resolve(reply)
      return
    }
    // Converted here rather than in a .then: one promise less per miss. A
    // value of the read being handled is lent: to a taker that copies what
    // it keeps as it is, to any other a copy.
    let value = waiter.value as Reply
    let lent = false
    if (Buffer.isBuffer(value) && isLent(value)) {
      if (waiter.done.takesLent === true) lent = true
      else value = Buffer.from(value)
    }
    let loaded: Loaded | null
    try {
      loaded = toLoaded(value, reply, lent)
    } catch (err) {
      waiter.reject(err as Error)
      return
    }
    waiter.resolve(loaded)
  }

  /** The sweep: overdue reads answered a timeout one by one; a silent connection replaced. */
  #checkDeadlines(): void {
    const waiters = this.#waiters
    if (waiters.length === 0) return
    const now = performance.now()
    const paused = this.#pausedFor
    if (paused !== null) {
      // Paused for one client, every command behind it waits: for half the
      // time a command may take (so those behind it still make their
      // deadlines), then the client is cut off and the rest of its reply
      // read and dropped. Silence meanwhile is ours, not the server's.
      if (now - this.#pausedAt >= this.#timeoutMs / 2) {
        this.#pausedFor = null
        paused.settled = true
        if (paused.raw)
          paused.stream?.abort('took nothing of a large reply for half of REDIS_COMMAND_TIMEOUT')
        paused.reject(new BackendTimeoutError('the client took nothing of a large reply'))
        this.#heardAt = now
        this.#socket?.resume()
      } else {
        this.#heardAt = now
      }
    }
    if (now - this.#heardAt >= this.#livenessMs) {
      const socket = this.#socket
      this.#failAll(
        new BackendTimeoutError(
          `nothing from backing redis for ${this.#livenessMs} ms: connection replaced`,
        ),
      )
      socket?.destroy(new Error('backing redis stopped answering'))
      return
    }
    // The head's reply may be the one arriving: while its bytes keep coming
    // (a large value) it is not timed out; if they stop, it is. A GET's value
    // already in, with its PTTL still to come, counts as arriving too.
    const head = waiters.peek() as Waiter
    const started = this.#framer.partial() || (head.get && head.value !== undefined)
    const receiving = started && now - this.#heardAt < this.#timeoutMs
    for (let i = receiving ? 1 : 0; i < waiters.length; i++) {
      const waiter = waiters.at(i) as Waiter
      if (waiter.settled || now < waiter.deadline || (waiter.raw && waiter.streaming)) continue
      waiter.settled = true
      waiter.reject(new BackendTimeoutError(`no reply from backing redis by the read's deadline`))
    }
  }

  #failAll(err: Error): void {
    const waiters = this.#waiters.drain()
    // Commands encoded and not yet written never leave.
    this.#start = this.#end
    this.#framer.reset()
    this.#decoder.reset()
    this.#pausedFor = null
    for (const waiter of waiters) {
      if (waiter.settled) continue
      waiter.settled = true
      if (waiter.raw && waiter.streaming) waiter.stream?.abort(err.message)
      waiter.reject(err)
    }
  }

  #onClose(socket: Socket): void {
    if (socket !== this.#socket) return
    this.#lose()
    if (this.#state === 'closed') return
    this.#options.onDown?.(new BackendUnavailableError('connection to backing redis lost'))
    this.#retry = setTimeout(() => this.#connect(), backoff(this.#attempt++))
  }

  /** The current connection is no longer this source's: what it owes fails. */
  #lose(): void {
    this.#socket = null
    this.#writer = null
    const wasReady = this.#ready
    this.#ready = false
    this.#failAll(new BackendUnavailableError('connection to backing redis lost'))
    if (this.#state === 'closed') return
    this.#state = 'reconnecting'
    if (wasReady) this.#options.onLost?.()
  }
}

const DOLLAR = 36 // $
const COLON = 58 // :
const MINUS = 45 // -
const CR = 13
const LF = 10

/**
 * A frame that is one bulk string (`$n` CRLF bytes CRLF, a view of them) or
 * one integer of at most 15 digits, or undefined for anything else,
 * well-formed or not: the general decoder then reads it (and refuses it).
 */
export function quickReply(
  frame: Buffer,
  start = 0,
  end = frame.length,
): Buffer | number | undefined {
  const type = frame[start]
  if (end - start < 4 || frame[end - 2] !== CR || frame[end - 1] !== LF) return undefined
  if (type === COLON) {
    let at = start + 1
    const negative = frame[at] === MINUS
    if (negative) at++
    const digitsEnd = end - 2
    if (at === digitsEnd || digitsEnd - at > 15) return undefined
    let n = 0
    for (; at < digitsEnd; at++) {
      const digit = (frame[at] as number) - 48
      if (digit < 0 || digit > 9) return undefined
      n = n * 10 + digit
    }
    return negative ? -n : n
  }
  if (type !== DOLLAR) return undefined
  let at = start + 1
  let length = 0
  for (; at < end && frame[at] !== CR; at++) {
    const digit = (frame[at] as number) - 48
    // A sign (the RESP2 nil, `$-1`) or anything else: the decoder's.
    if (digit < 0 || digit > 9 || at - start > 10) return undefined
    length = length * 10 + digit
  }
  if (at === start + 1 || frame[at + 1] !== LF) return undefined
  const body = at + 2
  if (body + length + 2 !== end) return undefined
  return frame.subarray(body, body + length)
}

/**
 * A GET's reply and its PTTL's: the value and the time its key has left, null
 * for a missing key, the server's error as a BackendReplyError. `lent`: the
 * value is valid only during the call it is handed over in (see Loaded.lent).
 */
export function toLoaded(get: Reply, pttl: Reply, lent = false): Loaded | null {
  if (get === null) return null
  if (get instanceof ReplyError) throw new BackendReplyError(get.message)
  if (!Buffer.isBuffer(get)) throw new BackendError(`unexpected reply to GET: ${String(get)}`)
  if (typeof pttl !== 'number') {
    throw new BackendError(`unexpected reply to PTTL: ${String(pttl)}`)
  }
  // -1: no expiry. -2 after a value: the key expired between the two
  // commands; the value was true when read, but must not be stored.
  const ttlMs = pttl === -1 ? null : Math.max(0, pttl)
  // A view of the received chunk, as it came: the cache copies what it
  // keeps. The chunk may be lent (see #keepLent and #onReply): the caller
  // says who may take it so, and copies for anyone else.
  return { value: get, ttlMs, lent }
}

/**
 * Why ROLE's reply is not a primary's, or undefined when it is. A server
 * that refuses ROLE itself (an ACL user without +role, a Redis-compatible
 * server without it) cannot be checked and is trusted.
 */
export function notPrimary(role: Reply): string | undefined {
  if (role instanceof ReplyError) return undefined
  const first = Array.isArray(role) ? role[0] : undefined
  const name = Buffer.isBuffer(first) ? first.toString('latin1') : String(first)
  return name === 'master' ? undefined : `not a primary: ROLE says ${name}`
}

/** The command table from COMMAND's reply; undefined for an error or a reply that is not one. */
function readTable(reply: Reply): CommandTable | undefined {
  if (reply instanceof ReplyError) return undefined
  try {
    return CommandTable.fromReply(reply)
  } catch {
    return undefined
  }
}
