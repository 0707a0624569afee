import { connect, type Socket } from 'node:net'
import { parseReply, type RespValue } from './redis-server.js'

/**
 * A raw RESP connection for tests that must control the exact bytes sent and
 * see the exact replies: pipelining in one write, hostile input, closes.
 */
export type RawConnection = {
  readonly socket: Socket
  send(bytes: string | Buffer): void
  /** Waits for `count` more replies (or fails after `timeoutMs`). */
  replies(count: number, timeoutMs?: number): Promise<RespValue[]>
  /** Every byte received so far. */
  received(): Buffer
  /** Resolves when the server has closed the connection. */
  closed(): Promise<void>
  close(): void
}

export async function rawConnect(port: number): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  let buffered = Buffer.alloc(0)
  let parsedUpTo = 0
  const parsed: RespValue[] = []
  let taken = 0
  let waiter: (() => void) | undefined
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    for (;;) {
      const reply = parseReply(buffered, parsedUpTo)
      if (reply === undefined) break
      parsed.push(reply.value)
      parsedUpTo = reply.end
    }
    waiter?.()
  })
  socket.on('close', () => waiter?.())
  return {
    socket,
    send: (bytes) => socket.write(bytes),
    async replies(count, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs
      while (parsed.length - taken < count) {
        if (socket.destroyed && parsed.length - taken < count) {
          throw new Error(`connection closed after ${parsed.length - taken} of ${count} replies`)
        }
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`got ${parsed.length - taken} of ${count} replies`)
        await new Promise<void>((resolve) => {
          waiter = resolve
          setTimeout(resolve, Math.min(left, 50))
        })
      }
      const out = parsed.slice(taken, taken + count)
      taken += count
      return out
    },
    received: () => buffered,
    closed: () => ended,
    close: () => socket.destroy(),
  }
}

/** A multibulk command, as clients send it. */
export function command(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}
