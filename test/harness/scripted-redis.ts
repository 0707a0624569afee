import { createServer, type Server, type Socket } from 'node:net'
import { listenOnLoopback } from './ports.js'

/**
 * A scriptable RESP server for what a real redis-server cannot be made to do:
 * answer each GET after a delay of the test's choosing, the delays running
 * independently, while it records how many GETs were outstanding at once.
 * On one connection replies still leave in request order, as RESP requires
 * (a fast GET waits behind a slow one); across connections they do not. Handshake commands get the replies ioredis
 * and other clients accept; SUBSCRIBE is acknowledged (nothing is ever
 * published). Requests must be multibulk (what clients send).
 */
export type ScriptedRedis = {
  readonly port: number
  readonly url: string
  /** Most GETs received and not yet answered at any one moment. */
  peakOutstanding(): number
  /** GETs received so far, by key. */
  gets(): string[]
  /** Keys of the GET replies written so far, in the order they were written. */
  answered(): string[]
  /** Resolves once a GET of `key` has been received (at once if it already was). */
  received(key: string): Promise<void>
  /** Resolves once `count` GETs have been received in all. */
  whenGets(count: number): Promise<void>
  /**
   * Until the returned function is called, no GET is answered (each still
   * waits its delay as well): a test can have every request arrive before
   * the first answer, however slowly they come.
   */
  hold(): () => void
  /** CLIENT TRACKING commands received so far. */
  trackingRequests(): number
  close(): Promise<void>
}

export type ScriptedReply = { delayMs: number; value: string | null }

export type ScriptedRedisOptions = {
  /** Answer CLIENT TRACKING as a server without it does (Redis before 6, some proxies). */
  refuseTracking?: boolean
  /**
   * PTTL's answer for a key, for what Redis cannot be made to do on cue (-2
   * right after a GET found the key). @default -1, no expiry
   */
  pttl?: (key: string) => number
}

export async function startScriptedRedis(
  answer: (key: string) => ScriptedReply,
  options: ScriptedRedisOptions = {},
): Promise<ScriptedRedis> {
  let outstanding = 0
  let peak = 0
  const received: string[] = []
  const answered: string[] = []
  const waiting: { key: string; resolve: () => void }[] = []
  const counting: { count: number; resolve: () => void }[] = []
  let trackingRequests = 0
  let held: Promise<void> | undefined
  const sockets = new Set<Socket>()

  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffered = Buffer.alloc(0)
    // Replies on one connection must leave in request order even when their
    // delays differ: each waits for the one before it.
    let previous: Promise<void> = Promise.resolve()
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      for (;;) {
        const parsed = parseCommand(buffered)
        if (parsed === undefined) break
        buffered = buffered.subarray(parsed.end)
        if ((parsed.args[0] ?? '').toUpperCase() === 'QUIT') {
          void previous.then(() => socket.end('+OK\r\n'))
          return
        }
        const reply = respond(parsed.args)
        const before = previous
        const isGet = (parsed.args[0] ?? '').toUpperCase() === 'GET'
        const key = parsed.args[1] ?? ''
        previous = reply.then(async (bytes) => {
          await before
          if (socket.destroyed) return
          if (isGet) answered.push(key)
          socket.write(bytes)
        })
      }
    })
  })

  const respond = async (args: string[]): Promise<Buffer> => {
    const name = (args[0] ?? '').toUpperCase()
    if (name !== 'GET') {
      if (name === 'INFO') return bulk('# Server\r\nredis_version:7.0.0\r\nloading:0\r\n')
      if (name === 'PING') return Buffer.from('+PONG\r\n')
      if (name === 'PTTL') return Buffer.from(`:${options.pttl?.(args[1] ?? '') ?? -1}\r\n`)
      const sub = (args[1] ?? '').toUpperCase()
      if (name === 'CLIENT' && sub === 'ID') return Buffer.from(':1\r\n')
      if (name === 'CLIENT' && sub === 'TRACKING') {
        trackingRequests++
        if (options.refuseTracking) return Buffer.from("-ERR unknown command 'CLIENT TRACKING'\r\n")
      }
      if (name === 'SUBSCRIBE') {
        const channel = args[1] ?? ''
        return Buffer.concat([
          Buffer.from('*3\r\n'),
          bulk('subscribe'),
          bulk(channel),
          Buffer.from(':1\r\n'),
        ])
      }
      if (name === 'HELLO') return Buffer.from("-ERR unknown command 'HELLO'\r\n")
      return Buffer.from('+OK\r\n')
    }
    const key = args[1] ?? ''
    received.push(key)
    for (const waiter of waiting.filter((w) => w.key === key)) waiter.resolve()
    for (const waiter of counting.filter((w) => w.count <= received.length)) waiter.resolve()
    outstanding++
    peak = Math.max(peak, outstanding)
    const { delayMs, value } = answer(key)
    await new Promise((resolve) => setTimeout(resolve, delayMs))
    await held
    outstanding--
    return value === null ? Buffer.from('$-1\r\n') : bulk(value)
  }

  const port = await listenOnLoopback(server)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    peakOutstanding: () => peak,
    gets: () => [...received],
    answered: () => [...answered],
    received: (key) =>
      received.includes(key)
        ? Promise.resolve()
        : new Promise((resolve) => waiting.push({ key, resolve })),
    trackingRequests: () => trackingRequests,
    whenGets: (count) =>
      received.length >= count
        ? Promise.resolve()
        : new Promise((resolve) => counting.push({ count, resolve })),
    hold() {
      let release!: () => void
      held = new Promise((resolve) => {
        release = resolve
      })
      return () => {
        held = undefined
        release()
      }
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

function bulk(text: string): Buffer {
  const bytes = Buffer.from(text)
  return Buffer.concat([Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n')])
}

/** One `*<n>` multibulk command from the front of `buf`, or undefined when incomplete. */
export function parseCommand(buf: Buffer): { args: string[]; end: number } | undefined {
  let eol = buf.indexOf('\r\n')
  if (eol === -1) return undefined
  const count = Number(buf.toString('latin1', 1, eol))
  let at = eol + 2
  const args: string[] = []
  for (let i = 0; i < count; i++) {
    eol = buf.indexOf('\r\n', at)
    if (eol === -1) return undefined
    const length = Number(buf.toString('latin1', at + 1, eol))
    if (buf.length < eol + 2 + length + 2) return undefined
    args.push(buf.toString('latin1', eol + 2, eol + 2 + length))
    at = eol + 2 + length + 2
  }
  return { args, end: at }
}
