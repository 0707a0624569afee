import { connect, type Socket } from 'node:net'
import { ReplyFramer } from '../../shared/redis/reply-framer.js'
import { command } from '../harness/resp-client.js'

/**
 * A load generator for read-your-writes: N clients, each on its own
 * connection and its own keys, each doing M pairs of a write and a GET of
 * what it just wrote, the pair pipelined in one write so the GET is on the
 * wire before the write is answered. A GET that does not see its own write
 * is a stale read: what a cache in front of Redis must never serve.
 *
 * The pairs, in rotation on a client's keys `<prefix>:<client>:k|h`:
 * - SET k v, GET k: sees v (each v is new, so an older value is caught);
 * - INCR k, GET k: sees the number INCR answered;
 * - HSET h f v + DEL h, GET h: sees nil, neither the hash nor an old value;
 * - MULTI, SET k v, EXEC, GET k: sees v (only with `multi`).
 * The writes' own replies are checked too; a pair whose write was not
 * answered as Redis answers is counted as unexpected, not judged stale.
 */
export type ReadYourWritesOptions = {
  port: number
  /** @default 50 */
  clients?: number
  /** Pairs per client. @default 200 */
  pairs?: number
  /** Include the MULTI/EXEC pair. @default false */
  multi?: boolean
  /** Open each connection with HELLO 3 (a missing key is then `_`). @default false */
  resp3?: boolean
  /** The whole run fails (rejects) after this long. @default 30_000 */
  timeoutMs?: number
  /** Prefix of every key, so that runs on one server do not share keys. @default 'ryw' */
  prefix?: string
}

export type ReadYourWritesReport = {
  /** Pairs completed, all clients together. */
  pairs: number
  /** GETs that did not see their own pair's write. */
  stale: number
  /** Pairs whose write was not answered as Redis answers it. */
  unexpected: number
  /** The first few stale or unexpected pairs, for a failure message. */
  samples: string[]
}

type Pair = { bytes: Buffer; judge(replies: readonly string[]): 'ok' | 'stale' | 'unexpected' }

const OK = '+OK\r\n'
const QUEUED = '+QUEUED\r\n'
const NIL = '$-1\r\n'
const NIL3 = '_\r\n'
const ONE = ':1\r\n'
const INTEGER = /^:(-?\d+)\r\n$/

const bulk = (text: string): string => `$${Buffer.byteLength(text)}\r\n${text}\r\n`
const MAX_SAMPLES = 10

function pairFor(kind: number, key: string, hash: string, value: string, nil: string): Pair {
  switch (kind) {
    case 0:
      return {
        bytes: Buffer.concat([command('SET', key, value), command('GET', key)]),
        judge: ([set, get]) => (set !== OK ? 'unexpected' : get === bulk(value) ? 'ok' : 'stale'),
      }
    case 1:
      return {
        bytes: Buffer.concat([command('INCR', key), command('GET', key)]),
        judge: ([incr, get]) => {
          const n = INTEGER.exec(incr ?? '')?.[1]
          if (n === undefined) return 'unexpected'
          return get === bulk(n) ? 'ok' : 'stale'
        },
      }
    case 2:
      return {
        bytes: Buffer.concat([
          command('HSET', hash, 'f', value),
          command('DEL', hash),
          command('GET', hash),
        ]),
        judge: ([hset, del, get]) =>
          hset !== ONE || del !== ONE ? 'unexpected' : get === nil ? 'ok' : 'stale',
      }
    default:
      return {
        bytes: Buffer.concat([
          command('MULTI'),
          command('SET', key, value),
          command('EXEC'),
          command('GET', key),
        ]),
        judge: ([multi, queued, exec, get]) =>
          multi !== OK || queued !== QUEUED || exec !== `*1\r\n${OK}`
            ? 'unexpected'
            : get === bulk(value)
              ? 'ok'
              : 'stale',
      }
  }
}

/** Frames per pair kind: the writes and the GET. */
const FRAMES = [2, 2, 3, 4]

export async function readYourWrites(
  options: ReadYourWritesOptions,
): Promise<ReadYourWritesReport> {
  const { port, clients = 50, pairs = 200, multi = false, timeoutMs = 30_000 } = options
  const prefix = options.prefix ?? 'ryw'
  const kinds = multi ? 4 : 3
  const report: ReadYourWritesReport = { pairs: 0, stale: 0, unexpected: 0, samples: [] }
  const sockets = new Set<Socket>()

  const runClient = async (client: number): Promise<void> => {
    const socket = connect(port, '127.0.0.1')
    sockets.add(socket)
    const framer = new ReplyFramer()
    let frames: string[] = []
    let wanted = 0
    let delivered: ((frames: string[]) => void) | undefined
    let failed: ((error: Error) => void) | undefined
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk, (parts) => {
        frames.push(Buffer.concat(parts).toString('latin1'))
        if (frames.length === wanted && delivered !== undefined) {
          const done = frames
          frames = []
          delivered(done)
        }
      })
    })
    const closed = (error?: Error) =>
      failed?.(error ?? new Error(`client ${client}: connection closed by the server`))
    socket.on('error', closed)
    socket.on('close', () => closed())
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      failed = reject
    })

    if (options.resp3) {
      wanted = 1
      await new Promise<string[]>((resolve, reject) => {
        delivered = resolve
        failed = reject
        socket.write(command('HELLO', '3'))
      })
    }
    const key = `${prefix}:${client}:k`
    const hash = `${prefix}:${client}:h`
    try {
      for (let i = 0; i < pairs; i++) {
        const kind = i % kinds
        // Every value is new to the key: a stale read cannot pass for a fresh one.
        const pair = pairFor(kind, key, hash, String((i + 1) * 1000), options.resp3 ? NIL3 : NIL)
        wanted = FRAMES[kind] ?? 0
        const replies = await new Promise<string[]>((resolve, reject) => {
          delivered = resolve
          failed = reject
          socket.write(pair.bytes)
        })
        report.pairs++
        const verdict = pair.judge(replies)
        if (verdict === 'ok') continue
        report[verdict]++
        if (report.samples.length < MAX_SAMPLES) {
          report.samples.push(`${verdict}: client ${client} pair ${i}: ${JSON.stringify(replies)}`)
        }
      }
    } finally {
      failed = undefined
      socket.destroy()
      sockets.delete(socket)
    }
  }

  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const socket of sockets) socket.destroy()
      reject(
        new Error(
          `read-your-writes: ${report.pairs} of ${clients * pairs} pairs done in ${timeoutMs} ms`,
        ),
      )
    }, timeoutMs)
  })
  try {
    await Promise.race([
      Promise.all(Array.from({ length: clients }, (_, c) => runClient(c))),
      timeout,
    ])
    return report
  } finally {
    clearTimeout(timer)
    for (const socket of sockets) socket.destroy()
  }
}
