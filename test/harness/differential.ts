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
export type Side = { send(args: readonly (string | Buffer)[]): Promise<string>; close(): void }

export async function openSide(port: number): Promise<Side> {
  const socket: Socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  const framer = new ReplyFramer()
  const replies: string[] = []
  const waiting: ((reply: string) => void)[] = []
  socket.on('data', (chunk: Buffer) => {
    framer.push(chunk, (parts, push) => {
      const text = (push ? '(push)' : '') + Buffer.concat(parts).toString('latin1')
      const next = waiting.shift()
      if (next === undefined) replies.push(text)
      else next(text)
    })
  })
  return {
    send(args) {
      socket.write(command(...args))
      return next(replies, waiting)
    },
    close: () => socket.destroy(),
  }
}

function next(replies: string[], waiting: ((reply: string) => void)[]): Promise<string> {
  const ready = replies.shift()
  if (ready !== undefined) return Promise.resolve(ready)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000)
    waiting.push((reply) => {
      clearTimeout(timer)
      resolve(reply)
    })
  })
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
      const [x, y] = await Promise.all([a.send(step), b.send(step)])
      out.push({ step: step.join(' '), direct: x, proxied: y })
    }
    return out
  } finally {
    a.close()
    b.close()
  }
}
