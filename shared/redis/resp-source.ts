import { connect as connectTcp, type Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'
import { BackendError, BackendTimeoutError, BackendUnavailableError } from '../errors.js'
import { backoff } from './ioredis-source.js'
import { ownCopy } from './own-copy.js'
import { Push, type Reply, ReplyDecoder, ReplyError, ReplyProtocolError } from './reply-decoder.js'
import type { RedisSource, SourceState } from './source.js'

export type RespSourceOptions = {
  /** redis:// or rediss:// URL; user, password and database number are honoured. */
  url: string
  /** @default 1000 */
  commandTimeoutMs?: number
  /** @default 2000 */
  connectTimeoutMs?: number
  /** Connection-level failures, for logging; never thrown. */
  onError?: (err: Error) => void
  /** Called each time the connection is (again) ready for reads. */
  onReady?: (info: { resp3: boolean }) => void
  /**
   * Commands run on every new connection after the handshake and before it
   * is ready (CLIENT TRACKING ON, for example), chosen once the protocol is
   * known; their replies go to `onSetup` before the connection is ready.
   */
  setup?: (resp3: boolean) => string[][]
  onSetup?: (replies: Reply[], resp3: boolean) => void
  /** RESP3 pushes that are not replies (client-tracking invalidations). */
  onPush?: (push: Push) => void
  /** Called when a ready connection is lost, before anything is retried. */
  onLost?: () => void
}

/** Keys longer than this are written as bytes of their own, not batched as text. */
const INLINE_KEY_LIMIT = 64 * 1024
/** A batch this long is written at once instead of waiting for the microtask. */
const BATCH_LIMIT = 1024 * 1024

type Waiter = { reject(err: Error): void; deadline: number } & (
  | { get: false; resolve(reply: Reply): void }
  /** A GET: its reply is turned into bytes or a BackendError before resolving. */
  | { get: true; resolve(value: Uint8Array | null): void }
)

/**
 * The native backend source: one pipelined connection speaking RESP3 when the
 * server does (RESP2 otherwise), written for the proxy's one hot command.
 *
 * - Every GET of one event-loop turn, whichever client caused it, leaves in
 *   one write.
 * - Replies are matched to waiters in order (a FIFO with a head index).
 * - Each command has a deadline. Replies are ordered, so when the oldest one
 *   is overdue the connection is stuck: everything pending fails with a
 *   timeout and the connection is replaced. One sweep timer checks the head;
 *   there is no timer per command.
 * - While not connected, reads fail at once; reconnection backs off from
 *   50 ms to 2 s with jitter.
 */
export class RespSource implements RedisSource {
  readonly #url: URL
  readonly #timeoutMs: number
  readonly #connectTimeoutMs: number
  readonly #options: RespSourceOptions
  #socket: Socket | null = null
  #state: SourceState = 'connecting'
  #ready = false
  #resp3 = false
  readonly #decoder = new ReplyDecoder()
  #waiters: (Waiter | undefined)[] = []
  #head = 0
  #batch = ''
  #flushScheduled = false
  #attempt = 0
  #retry: NodeJS.Timeout | undefined
  readonly #sweep: NodeJS.Timeout

  constructor(options: RespSourceOptions) {
    this.#options = options
    this.#url = new URL(options.url)
    this.#timeoutMs = options.commandTimeoutMs ?? 1000
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 2000
    this.#sweep = setInterval(() => this.#checkDeadline(), Math.min(100, this.#timeoutMs / 2))
    this.#sweep.unref()
    this.#connect()
  }

  get(key: string): Promise<Uint8Array | null> {
    if (!this.#ready) {
      return Promise.reject(new BackendUnavailableError(`backing redis is ${this.#state}`))
    }
    return new Promise<Uint8Array | null>((resolve, reject) => {
      // The command is queued before its waiter: a waiter without a command
      // behind it would take the next command's reply, and every later one.
      this.#sendGet(key)
      this.#waiters.push({ resolve, reject, deadline: Date.now() + this.#timeoutMs, get: true })
    })
  }

  state(): SourceState {
    return this.#state
  }

  /** Whether the connection speaks RESP3 (pushes arrive in-band). */
  resp3(): boolean {
    return this.#resp3
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
    const url = this.#url
    const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1'
    const port = Number(url.port || 6379)
    const socket =
      url.protocol === 'rediss:'
        ? connectTls({ host, port, servername: host })
        : connectTcp({ host, port, noDelay: true })
    this.#socket = socket
    socket.setTimeout(this.#connectTimeoutMs, () => {
      socket.destroy(new Error(`connect timed out after ${this.#connectTimeoutMs} ms`))
    })
    socket.once(url.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => {
      socket.setTimeout(0)
      this.#handshake(socket).then(
        () => {
          if (this.#socket !== socket || this.#state === 'closed') return
          this.#attempt = 0
          this.#state = 'ready'
          this.#ready = true
          this.#options.onReady?.({ resp3: this.#resp3 })
        },
        (err: Error) => socket.destroy(err),
      )
    })
    socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk))
    socket.on('error', (err) => this.#options.onError?.(err))
    socket.on('close', () => this.#onClose(socket))
  }

  /** HELLO 3 (with AUTH), falling back to RESP2; SELECT; then the setup commands. */
  async #handshake(socket: Socket): Promise<void> {
    const url = this.#url
    const user = decodeURIComponent(url.username) || 'default'
    const password = url.password === '' ? null : decodeURIComponent(url.password)
    const hello = await this.#call(socket, [
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
    const db = url.pathname.replace(/^\//, '')
    if (db !== '' && db !== '0') {
      const selected = await this.#call(socket, ['SELECT', db])
      if (selected instanceof ReplyError) throw selected
    }
    const commands = this.#options.setup?.(this.#resp3) ?? []
    const replies = await Promise.all(commands.map((args) => this.#call(socket, args)))
    if (this.#socket === socket) this.#options.onSetup?.(replies, this.#resp3)
  }

  /** A command on this socket regardless of readiness (the handshake's own). */
  #call(socket: Socket, args: string[]): Promise<Reply> {
    if (this.#socket !== socket) return Promise.reject(new Error('connection replaced'))
    return new Promise<Reply>((resolve, reject) => {
      this.#waiters.push({ resolve, reject, deadline: Date.now() + this.#timeoutMs, get: false })
      let wire = `*${args.length}\r\n`
      for (const arg of args) wire += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
      socket.write(wire)
    })
  }

  /** Keys are byte strings: their length in latin1 is their length in bytes. */
  #sendGet(key: string): void {
    if (key.length <= INLINE_KEY_LIMIT) {
      this.#batch += `*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`
      if (this.#batch.length >= BATCH_LIMIT) this.#flush()
      else this.#scheduleFlush()
      return
    }
    // A long key goes out as bytes after what is batched, never into the
    // batch string (a string cannot exceed about 512 MiB; a key may).
    const socket = this.#socket
    if (socket === null) throw new BackendUnavailableError('connection to backing redis lost')
    this.#flush()
    socket.write(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n`, 'latin1')
    socket.write(Buffer.from(key, 'latin1'))
    socket.write('\r\n', 'latin1')
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
    const batch = this.#batch
    this.#batch = ''
    if (batch !== '' && this.#socket !== null) this.#socket.write(batch, 'latin1')
  }

  #onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.#socket) return
    try {
      this.#decoder.push(chunk, this.#onReply)
    } catch (err) {
      // Not RESP: nothing more on this connection can be trusted.
      socket.destroy(err instanceof ReplyProtocolError ? err : new Error(String(err)))
    }
  }

  readonly #onReply = (reply: Reply): void => {
    if (reply instanceof Push) {
      this.#options.onPush?.(reply)
      return
    }
    const waiter = this.#waiters[this.#head]
    if (waiter === undefined) throw new ReplyProtocolError('reply without a command')
    this.#waiters[this.#head++] = undefined
    if (this.#head === this.#waiters.length) {
      this.#waiters.length = 0
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
      this.#waiters = this.#waiters.slice(this.#head)
      this.#head = 0
    }
    if (!waiter.get) {
      waiter.resolve(reply)
      return
    }
    // Converted here rather than in a .then: one promise less per miss.
    let value: Uint8Array | null
    try {
      value = toValue(reply)
    } catch (err) {
      waiter.reject(err as Error)
      return
    }
    waiter.resolve(value)
  }

  #checkDeadline(): void {
    const oldest = this.#waiters[this.#head]
    if (oldest === undefined || Date.now() < oldest.deadline) return
    const socket = this.#socket
    this.#failAll(new BackendTimeoutError(`command timed out after ${this.#timeoutMs} ms`))
    socket?.destroy(new Error('backing redis stopped answering'))
  }

  #failAll(err: Error): void {
    const waiters = this.#waiters
    const head = this.#head
    this.#waiters = []
    this.#head = 0
    this.#batch = ''
    this.#decoder.reset()
    for (let i = head; i < waiters.length; i++) waiters[i]?.reject(err)
  }

  #onClose(socket: Socket): void {
    if (socket !== this.#socket) return
    this.#socket = null
    const wasReady = this.#ready
    this.#ready = false
    this.#failAll(new BackendUnavailableError('connection to backing redis lost'))
    if (this.#state === 'closed') return
    this.#state = 'reconnecting'
    if (wasReady) this.#options.onLost?.()
    this.#retry = setTimeout(() => this.#connect(), backoff(this.#attempt++))
  }
}

/** A GET's reply: bytes, null, or the server's error as a BackendError. */
function toValue(reply: Reply): Uint8Array | null {
  if (reply === null) return null
  // A view of the received chunk would pin all of it while cached: copy.
  if (Buffer.isBuffer(reply)) return ownCopy(reply)
  if (reply instanceof ReplyError) throw new BackendError(reply.message)
  throw new BackendError(`unexpected reply to GET: ${String(reply)}`)
}
