import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { openSide, type Side } from '../harness/differential.js'
import { startRespProxy } from '../harness/proxy.js'
import { startRedis, type TestRedis } from '../harness/redis-server.js'
import { command, rawConnect } from '../harness/resp-client.js'
import { STATEFUL, type StatefulFamily } from './corpus.js'

/**
 * The sequences that give a connection state (transactions, WATCH, blocking
 * pops woken by another client, subscriptions, MONITOR), each side with
 * several connections of its own: Redis itself, and the proxy in front of an
 * identical Redis. Every frame is compared as bytes (MONITOR's lines, which
 * carry times and addresses, by their type).
 */

/** Runs one family on a side; every frame read, labelled with its step. */
async function run(port: number, family: StatefulFamily, resp3: boolean): Promise<string[]> {
  const conns = new Map<number, Side>()
  const out: string[] = []
  const conn = async (n: number): Promise<Side> => {
    let c = conns.get(n)
    if (c === undefined) {
      c = await openSide(port)
      conns.set(n, c)
      if (resp3) {
        c.send(['HELLO', '3'])
        await c.next()
      }
    }
    return c
  }
  try {
    for (const [i, step] of family.steps.entries()) {
      const c = await conn(step.conn)
      if (step.command !== undefined) c.send(step.command)
      for (let r = 0; r < (step.replies ?? 1); r++) {
        const frame = await c.next()
        const label = `${i} ${step.command?.join(' ') ?? '(read)'}`
        out.push(`${label}: ${step.compare === 'type' ? frame[0] : frame}`)
      }
      // A command whose reply is read later (a blocked pop) must reach the
      // server before the next step's command on another connection.
      if (step.replies === 0) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return out
  } finally {
    for (const c of conns.values()) c.close()
  }
}

let a: TestRedis
let b: TestRedis
let proxy: Awaited<ReturnType<typeof startRespProxy>>

beforeAll(async () => {
  ;[a, b] = await Promise.all([startRedis(), startRedis()])
  proxy = await startRespProxy(b.url, { CACHE_GLOBAL_EXPIRY: '600000' })
})

afterAll(async () => {
  await proxy?.close()
  await Promise.all([a?.stop(), b?.stop()])
})

describe.each([false, true])(
  'stateful commands through the proxy answer as Redis (RESP3: %s)',
  (resp3) => {
    test.each(STATEFUL.map((family) => [family.family, family] as const))(
      '%s',
      async (_, family) => {
        const direct = await run(a.port, family, resp3)
        const proxied = await run(proxy.port, family, resp3)
        expect(proxied).toEqual(direct)
      },
      30_000,
    )
  },
)

describe('clients on backend connections of their own', () => {
  test('a client that disconnects in a transaction or a block leaves nothing behind', async () => {
    const multi = await rawConnect(proxy.port)
    multi.send(Buffer.concat([command('MULTI'), command('SET', 'left:k', 'queued')]))
    await multi.replies(2)
    const blocked = await rawConnect(proxy.port)
    blocked.send(command('BLPOP', 'left:l', '0'))
    // Each has its backend connection now: one in MULTI (flag x), one blocked (flag b).
    await expectFlagged(b, { x: 1, b: 1 })
    multi.close()
    blocked.close()
    await expectFlagged(b, { x: 0, b: 0 })
    // The queued SET never ran; a later push is not taken by a ghost BLPOP.
    expect(await b.command('GET', 'left:k')).toBeNull()
    await b.command('RPUSH', 'left:l', 'x')
    expect(await b.command('LLEN', 'left:l')).toBe(1)
  })

  test('reads after EXEC see the transaction, and a watched key changed by another client aborts it', async () => {
    const c = await rawConnect(proxy.port)
    // Cached first, so EXEC must evict it.
    await b.command('SET', 'tx:k', 'before')
    c.send(command('GET', 'tx:k'))
    await c.replies(1)
    const other = await rawConnect(proxy.port)
    other.send(command('GET', 'tx:k'))
    await other.replies(1)
    c.send(Buffer.concat([command('MULTI'), command('SET', 'tx:k', 'after'), command('EXEC')]))
    expect(await c.replies(3)).toEqual(['OK', 'QUEUED', ['OK']])
    // Another client, on the shared path and the cache, sees the write at once.
    other.send(command('GET', 'tx:k'))
    expect(await other.replies(1)).toEqual([Buffer.from('after')])
    c.send(command('WATCH', 'tx:k'))
    await c.replies(1)
    other.send(command('SET', 'tx:k', 'raced'))
    await other.replies(1)
    c.send(Buffer.concat([command('MULTI'), command('SET', 'tx:k', 'lost'), command('EXEC')]))
    expect(await c.replies(3)).toEqual(['OK', 'QUEUED', null])
    c.close()
    other.close()
  })

  test('SELECT of another database is served on the client own connection and not cached', async () => {
    await b.command('SET', 'db:k', 'zero')
    const c = await rawConnect(proxy.port)
    c.send(
      Buffer.concat([
        command('GET', 'db:k'),
        command('SELECT', '1'),
        command('SET', 'db:k', 'one'),
        command('GET', 'db:k'),
        command('SELECT', '99'),
      ]),
    )
    const replies = await c.replies(5)
    expect(replies.slice(0, 4)).toEqual([Buffer.from('zero'), 'OK', 'OK', Buffer.from('one')])
    expect(String(replies[4])).toContain('DB index is out of range')
    // Database 0, and its cache, are untouched.
    const other = await rawConnect(proxy.port)
    other.send(command('GET', 'db:k'))
    expect(await other.replies(1)).toEqual([Buffer.from('zero')])
    c.close()
    other.close()
  })

  test('MAX_BACKEND_CONNECTIONS bounds them with a clear error, and a freed one is usable again', async () => {
    const small = await startRespProxy(b.url, { MAX_BACKEND_CONNECTIONS: '2' })
    try {
      const held = await Promise.all([rawConnect(small.port), rawConnect(small.port)])
      for (const c of held) {
        c.send(command('MULTI'))
        expect(await c.replies(1)).toEqual(['OK'])
      }
      const third = await rawConnect(small.port)
      third.send(Buffer.concat([command('MULTI'), command('PING')]))
      const [refused, pong] = await third.replies(2)
      expect(String(refused)).toContain('max number of backend connections reached')
      expect(pong).toBe('PONG')
      held[0]?.close()
      await until(async () => {
        third.send(command('MULTI'))
        return String((await third.replies(1))[0]) === 'OK'
      })
      held[1]?.close()
      third.close()
    } finally {
      await small.close()
    }
  })
})

/** Until Redis lists this many clients in MULTI (x) and blocked (b). */
async function expectFlagged(redis: TestRedis, want: { x: number; b: number }): Promise<void> {
  await until(async () => {
    const flags = String(await redis.command('CLIENT', 'LIST'))
      .trim()
      .split('\n')
      .map((line) => /flags=(\S+)/.exec(line)?.[1] ?? '')
    const count = (flag: string) => flags.filter((f) => f.includes(flag)).length
    return count('x') === want.x && count('b') === want.b
  })
}

async function until(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
