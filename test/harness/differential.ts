import { connect, type Socket } from 'node:net'
import { ReplyFramer } from '../../shared/redis/reply-framer.js'
import { command } from './resp-client.js'

/**
 * The same commands sent to two servers (Redis itself and the proxy in front
 * of an identical Redis), one connection each, and every reply's exact bytes
 * collected: the differential harness of the drop-in tests. Replies are
 * split with the project's ReplyFramer, which has its own tests; a reply is
 * compared as bytes, never as a decoded value.
 */
export type Side = {
  /** Sends a command without waiting for its reply. */
  send(args: readonly (string | Buffer)[]): void
  /** The next frame received (a reply, a message, a push), as bytes; fails after 5 s. */
  next(): Promise<string>
  close(): void
}

export async function openSide(port: number): Promise<Side> {
  const socket: Socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  const framer = new ReplyFramer()
  const frames: string[] = []
  const waiting: ((frame: string) => void)[] = []
  socket.on('data', (chunk: Buffer) => {
    framer.push(chunk, (parts, push) => {
      const text = (push ? '(push)' : '') + Buffer.concat(parts).toString('latin1')
      const waiter = waiting.shift()
      if (waiter === undefined) frames.push(text)
      else waiter(text)
    })
  })
  return {
    send: (args) => socket.write(command(...args)),
    next() {
      const ready = frames.shift()
      if (ready !== undefined) return Promise.resolve(ready)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000)
        waiting.push((frame) => {
          clearTimeout(timer)
          resolve(frame)
        })
      })
    },
    close: () => socket.destroy(),
  }
}

/** Runs `steps` on both sides in lockstep; returns the pairs of replies, labelled. */
export async function differential(
  direct: number,
  proxied: number,
  steps: readonly (readonly string[])[],
): Promise<{ step: string; direct: string; proxied: string }[]> {
  const [a, b] = await Promise.all([openSide(direct), openSide(proxied)])
  try {
    const out: { step: string; direct: string; proxied: string }[] = []
    for (const step of steps) {
      a.send(step)
      b.send(step)
      const [x, y] = await Promise.all([a.next(), b.next()])
      out.push({ step: step.join(' '), direct: x, proxied: y })
    }
    return out
  } finally {
    a.close()
    b.close()
  }
}
