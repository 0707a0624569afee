import { connect as connectTcp, type Socket } from 'node:net'
import type { Logger } from '../log.js'
import { backoff } from './reconnect-delay.js'
import { type Reply, ReplyDecoder, ReplyError } from './reply-decoder.js'
import type { Address } from './source.js'

export type SentinelResolverOptions = {
  /** Asked in this order; the first that answers is asked first from then on. */
  sentinels: readonly Address[]
  /** The name the sentinels monitor the primary under. */
  masterName: string
  /** The sentinels' own credentials (not the data nodes'). */
  username?: string | undefined
  password?: string | undefined
  /**
   * Connecting to one sentinel and its answer, together; past it the next
   * sentinel is asked.
   * @default 1000
   */
  timeoutMs?: number
  /**
   * The primary is asked for again this often, and the subscription's
   * sentinel pinged, so a +switch-master missed (or a sentinel that went
   * silent) cannot leave the proxy on a demoted primary for long.
   * @default 10000
   */
  refreshMs?: number
  log: Logger
  /**
   * The primary is now `primary` (found for the first time, or moved):
   * every connection to `previous` must go, and what was read from it may
   * be stale. Called once per change, never for the same address again.
   */
  onSwitch: (primary: Address, previous: Address | undefined) => void
}

/** The channel Sentinel announces a new primary on: `<name> <old-ip> <old-port> <new-ip> <new-port>`. */
const SWITCH_CHANNEL = '+switch-master'

/**
 * Where the primary of a Sentinel-monitored group is, following the Sentinel
 * client guidelines (redis.io/docs/latest/develop/reference/sentinel-clients):
 *
 * - The sentinels are asked `SENTINEL GET-MASTER-ADDR-BY-NAME` in order; the
 *   first that names an address wins and is asked first from then on. One
 *   that cannot be reached in time, refuses, or does not know the name
 *   passes the question on to the next.
 * - The address is not trusted as it is: every data connection asks `ROLE`
 *   on connecting (RespSource's `primaryOnly`) and, refused, calls `check()`,
 *   which asks the sentinels again (so does a connection lost, and a write
 *   answered READONLY).
 * - One connection subscribes to `+switch-master` on one sentinel, moving on
 *   to the next when it is lost; each new subscription asks again, for what
 *   was announced while none was listening. And every `refreshMs` the
 *   sentinels are asked anyway.
 *
 * While no primary is known (sentinels unreachable at start-up, or none of
 * them knows the name) `primary()` is undefined and asking is retried on a
 * backoff. Once known, an address is kept until a sentinel names another:
 * sentinels being unreachable does not make a reachable primary go away.
 */
export class SentinelResolver {
  readonly #options: SentinelResolverOptions
  readonly #sentinels: Address[]
  readonly #timeoutMs: number
  #primary: Address | undefined
  #resolving = false
  /** A check was asked for while one was running: one more after it. */
  #again = false
  #attempt = 0
  #retry: NodeJS.Timeout | undefined
  readonly #refresh: NodeJS.Timeout
  /** Why the last resolve found nothing, logged when it changes. */
  #lastProblem = ''
  #subscriber: Socket | null = null
  /** Index of the sentinel the next subscription goes to. */
  #subscribeNext = 0
  #subscribeAttempt = 0
  #subscribeRetry: NodeJS.Timeout | undefined
  #lastSubscribeProblem = ''
  /** A PING was sent to the subscription's sentinel and nothing came back since. */
  #pingOwed = false
  #closed = false

  constructor(options: SentinelResolverOptions) {
    if (options.sentinels.length === 0) {
      throw new TypeError('Expected `sentinels` to name at least one sentinel, got none')
    }
    this.#options = options
    this.#sentinels = [...options.sentinels]
    this.#timeoutMs = options.timeoutMs ?? 1000
    this.#refresh = setInterval(() => {
      this.check()
      this.#pingSubscriber()
    }, options.refreshMs ?? 10_000)
    this.#refresh.unref()
    this.check()
    this.#subscribe()
  }

  /** The primary known now; undefined until one is. */
  primary(): Address | undefined {
    return this.#primary
  }

  /**
   * Asks the sentinels again, soon: a connection to the primary failed or was
   * refused, or a write was answered READONLY. Checks asked for while one
   * runs make one more after it, not one each.
   */
  check(): void {
    if (this.#closed) return
    if (this.#resolving) {
      this.#again = true
      return
    }
    this.#resolving = true
    clearTimeout(this.#retry)
    this.#retry = undefined
    void this.#resolve().finally(() => {
      this.#resolving = false
      if (this.#again) {
        this.#again = false
        this.check()
      }
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#refresh)
    clearTimeout(this.#retry)
    clearTimeout(this.#subscribeRetry)
    this.#subscriber?.destroy()
    this.#subscriber = null
  }

  async #resolve(): Promise<void> {
    const name = this.#options.masterName
    const problems: string[] = []
    // Over a copy: a sentinel moved to the front meanwhile does not skip another.
    for (const sentinel of [...this.#sentinels]) {
      let reply: Reply | undefined
      let peers: Reply | undefined
      try {
        ;[reply, peers] = await this.#ask(sentinel, [
          ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name],
          // The other sentinels it knows of, asked should the listed ones die.
          ['SENTINEL', 'SENTINELS', name],
        ])
      } catch (err) {
        problems.push(`${show(sentinel)}: ${(err as Error).message}`)
        continue
      }
      if (this.#closed) return
      if (reply instanceof ReplyError) {
        problems.push(`${show(sentinel)}: ${reply.message}`)
        continue
      }
      if (reply === null || reply === undefined) {
        problems.push(`${show(sentinel)}: no master named ${JSON.stringify(name)}`)
        continue
      }
      const address = addressOf(reply)
      if (address === undefined) {
        problems.push(`${show(sentinel)}: unexpected reply ${JSON.stringify(String(reply))}`)
        continue
      }
      const at = this.#sentinels.indexOf(sentinel)
      if (at > 0) {
        this.#sentinels.splice(at, 1)
        this.#sentinels.unshift(sentinel)
      }
      this.#learn(peers ?? null)
      this.#attempt = 0
      this.#lastProblem = ''
      this.#found(address, 'sentinel')
      return
    }
    if (this.#closed) return
    const problem = problems.join('; ')
    if (problem !== this.#lastProblem) {
      this.#lastProblem = problem
      this.#options.log.warn('no sentinel named the primary', {
        master: name,
        error: problem,
        primary: this.#primary === undefined ? null : show(this.#primary),
      })
    }
    // Until one is known, asked again on a backoff; once known, the refresh
    // and the connections' own failures are enough.
    if (this.#primary === undefined) {
      this.#retry = setTimeout(() => this.check(), backoff(this.#attempt++))
    }
  }

  #found(address: Address, via: string): void {
    const previous = this.#primary
    if (previous !== undefined && same(previous, address)) return
    this.#primary = address
    if (previous === undefined) {
      this.#options.log.info('primary found', {
        master: this.#options.masterName,
        primary: show(address),
        via,
      })
    } else {
      this.#options.log.warn('primary moved', {
        master: this.#options.masterName,
        from: show(previous),
        to: show(address),
        via,
      })
    }
    this.#options.onSwitch(address, previous)
  }

  /**
   * Sentinels the group knows of and the list does not, added at its end:
   * asked only once every one listed before them failed. None is ever
   * dropped (one down now may be the one up later).
   */
  #learn(peers: Reply): void {
    if (!Array.isArray(peers)) return
    for (const fields of peers) {
      if (!Array.isArray(fields)) continue
      const field = (name: string): Buffer => {
        for (let i = 0; i + 1 < fields.length; i += 2) {
          const key = fields[i]
          const value = fields[i + 1]
          if (Buffer.isBuffer(key) && key.toString('latin1') === name && Buffer.isBuffer(value)) {
            return value
          }
        }
        return Buffer.alloc(0)
      }
      const address = addressOf([field('ip'), field('port')])
      if (address === undefined) continue
      if (this.#sentinels.some((known) => same(known, address))) continue
      this.#sentinels.push(address)
      this.#options.log.info('sentinel discovered', { sentinel: show(address) })
    }
  }

  /**
   * Commands on a connection of its own to `sentinel`, authenticated first
   * when configured: their replies, errors included. A refused AUTH, a
   * connection that fails or an answer late rejects.
   */
  #ask(sentinel: Address, questions: string[][]): Promise<Reply[]> {
    const auth = this.#auth()
    const commands = [...auth, ...questions]
    return new Promise<Reply[]>((resolve, reject) => {
      const socket = connectTcp({ host: sentinel.host, port: sentinel.port, noDelay: true })
      const decoder = new ReplyDecoder()
      const replies: Reply[] = []
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`no answer within ${this.#timeoutMs} ms`))
      }, this.#timeoutMs)
      socket.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      socket.on('data', (chunk: Buffer) => {
        try {
          decoder.push(chunk, (reply) => replies.push(reply))
        } catch (err) {
          socket.destroy()
          clearTimeout(timer)
          reject(err as Error)
          return
        }
        if (replies.length < commands.length) return
        clearTimeout(timer)
        socket.end()
        const refused = replies.slice(0, auth.length).find((reply) => reply instanceof ReplyError)
        if (refused !== undefined) reject(refused as ReplyError)
        else resolve(replies.slice(auth.length))
      })
      socket.on('close', () => {
        clearTimeout(timer)
        reject(new Error('connection closed before the answer'))
      })
      socket.write(encode(commands))
    })
  }

  #auth(): string[][] {
    const { username, password } = this.#options
    if (password === undefined) return []
    return [username === undefined ? ['AUTH', password] : ['AUTH', username, password]]
  }

  /** Subscribes to +switch-master on the next sentinel; on loss, on the one after it. */
  #subscribe(): void {
    if (this.#closed) return
    this.#subscribeRetry = undefined
    const sentinel = this.#sentinels[this.#subscribeNext % this.#sentinels.length] as Address
    const socket = connectTcp({ host: sentinel.host, port: sentinel.port, noDelay: true })
    this.#subscriber = socket
    this.#pingOwed = false
    const decoder = new ReplyDecoder()
    let problem = ''
    socket.setTimeout(this.#timeoutMs, () => {
      socket.destroy(new Error(`no answer within ${this.#timeoutMs} ms`))
    })
    socket.on('data', (chunk: Buffer) => {
      this.#pingOwed = false
      try {
        decoder.push(chunk, (reply) => this.#onSubscriberReply(socket, sentinel, reply))
      } catch (err) {
        socket.destroy(err as Error)
      }
    })
    socket.on('error', (err) => {
      problem = err.message
    })
    socket.on('close', () => {
      if (this.#subscriber !== socket) return
      this.#subscriber = null
      if (this.#closed) return
      const message = `${show(sentinel)}: ${problem || 'connection closed'}`
      if (message !== this.#lastSubscribeProblem) {
        this.#lastSubscribeProblem = message
        this.#options.log.warn('sentinel subscription lost', { error: message })
      }
      this.#subscribeNext++
      // Each sentinel once at once; a full round of failures backs off.
      const delay =
        this.#subscribeNext % this.#sentinels.length === 0 ? backoff(this.#subscribeAttempt++) : 0
      this.#subscribeRetry = setTimeout(() => this.#subscribe(), delay)
    })
    socket.write(encode([...this.#auth(), ['SUBSCRIBE', SWITCH_CHANNEL]]))
  }

  #onSubscriberReply(socket: Socket, sentinel: Address, reply: Reply): void {
    if (reply instanceof ReplyError) {
      socket.destroy(reply)
      return
    }
    if (!Array.isArray(reply)) return
    const [kind, channel, payload] = reply.map((item) =>
      Buffer.isBuffer(item) ? item.toString('latin1') : item,
    )
    if (kind === 'subscribe') {
      socket.setTimeout(0)
      this.#subscribeAttempt = 0
      this.#lastSubscribeProblem = ''
      this.#options.log.info('sentinel subscription up', { sentinel: show(sentinel) })
      // Anything announced while no subscription was up is missed: ask.
      this.check()
      return
    }
    if (kind !== 'message' || channel !== SWITCH_CHANNEL || typeof payload !== 'string') return
    const [name, , , host, port] = payload.split(' ')
    if (name !== this.#options.masterName || host === undefined || port === undefined) return
    const address = addressOf([Buffer.from(host), Buffer.from(port)])
    if (address !== undefined) this.#found(address, SWITCH_CHANNEL)
  }

  /** A subscription's sentinel that did not answer the last PING is replaced. */
  #pingSubscriber(): void {
    const socket = this.#subscriber
    if (socket === null || socket.connecting) return
    if (this.#pingOwed) {
      socket.destroy(new Error('no answer to PING'))
      return
    }
    this.#pingOwed = true
    socket.write(encode([['PING']]))
  }
}

/** GET-MASTER-ADDR-BY-NAME's `[ip, port]`, or undefined for anything else. */
function addressOf(reply: Reply): Address | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) return undefined
  const [host, port] = reply.map((item) => (Buffer.isBuffer(item) ? item.toString('latin1') : ''))
  const number = Number(port)
  if (
    host === undefined ||
    host === '' ||
    !Number.isInteger(number) ||
    number < 1 ||
    number > 65535
  ) {
    return undefined
  }
  return { host, port: number }
}

function same(a: Address, b: Address): boolean {
  return a.host === b.host && a.port === b.port
}

function show(address: Address): string {
  return address.host.includes(':')
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`
}

function encode(commands: string[][]): string {
  let wire = ''
  for (const args of commands) {
    wire += `*${args.length}\r\n`
    for (const arg of args) wire += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`
  }
  return wire
}
