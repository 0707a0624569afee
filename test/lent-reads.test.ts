import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startDelayRelay } from './harness/delay-relay.js'
import { flushBackend, startRespProxy, type TestRespProxy } from './harness/proxy.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

/**
 * The backend connection reads into memory that the next read reuses
 * (shared/socket-read.ts, lendingReadOption): whatever outlives a read must
 * be a copy. The suite runs with REDIS_PROXY_POISON_READS=1
 * (vitest.config.ts), so a view kept past its read holds 0xEE bytes at
 * once. These drive each way a reply's bytes can outlive the read they came
 * in, against a real redis-server, and check every byte.
 */

let redis: TestRedis
let proxy: TestRespProxy

beforeAll(async () => {
  expect(process.env.REDIS_PROXY_POISON_READS).toBe('1')
  redis = await startRedis()
  proxy = await startRespProxy(redis.url, { CACHE_CAPACITY: '1000' })
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

beforeEach(async () => {
  await flushBackend(redis, proxy.service)
})

/** `length` bytes that differ from their neighbours' and from the poison. */
function pattern(length: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(length)
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) % 251
  return bytes
}

describe('replies read into reused memory', () => {
  it('keeps a forwarded reply and a miss answered behind an MGET still waiting, byte for byte', async () => {
    // MGET answers through a promise, after the read that completes it: the
    // GET's value and the SET's reply, in that same read, wait behind it.
    // (The GET goes first: behind a write of its client still in flight it
    // would be relayed, not read through.)
    const big = pattern(10_000, 1)
    await redis.command('SET', 'lent:a', 'va')
    await redis.command('SET', 'lent:b', 'vb')
    await redis.command('SET', 'lent:c', big)
    const conn = await rawConnect(proxy.port)
    conn.send(
      Buffer.concat([
        command('MGET', 'lent:a', 'lent:b'),
        command('GET', 'lent:c'),
        command('SET', 'lent:d', 'vd'),
        command('ECHO', 'after'),
      ]),
    )
    const replies = await conn.replies(4)
    expect(replies[0]).toEqual([Buffer.from('va'), Buffer.from('vb')])
    expect(Buffer.compare(replies[1] as Buffer, big)).toBe(0)
    expect(replies[2]).toBe('OK')
    expect(replies[3]).toEqual(Buffer.from('after'))
    conn.close()
  })

  it('keeps large forwarded replies and values that span many reads, byte for byte', async () => {
    const values = [300_000, 70_000, 65_529, 4_096].map((length, i) => pattern(length, i + 7))
    for (const [i, value] of values.entries()) await redis.command('SET', `lent:big:${i}`, value)
    const conn = await rawConnect(proxy.port)
    // GETRANGE is forwarded (its reply relayed as received, streamed past
    // 256 KiB); GET is read through the cache; both pipelined, so replies
    // share reads with each other.
    const requests: Buffer[] = []
    for (let i = 0; i < values.length; i++) {
      requests.push(command('GETRANGE', `lent:big:${i}`, '0', '-1'))
      requests.push(command('GET', `lent:big:${i}`))
    }
    conn.send(Buffer.concat(requests))
    const replies = await conn.replies(2 * values.length, 10_000)
    for (const [i, value] of values.entries()) {
      expect(Buffer.compare(replies[2 * i] as Buffer, value)).toBe(0)
      expect(Buffer.compare(replies[2 * i + 1] as Buffer, value)).toBe(0)
    }
    // Stored from those reads: the cache answers the same bytes.
    for (const [i, value] of values.entries()) {
      conn.send(command('GET', `lent:big:${i}`))
      expect(Buffer.compare((await conn.replies(1))[0] as Buffer, value)).toBe(0)
    }
    conn.close()
  })

  it('keeps the parts of a large forwarded reply streamed while a read before it waits', async () => {
    // Replies on the connection that reads through the cache come 300 ms
    // late; a RESP2 client's forwarded command goes on the other one, so its
    // 600 KB reply is streamed (past 256 KiB) while the miss before it is
    // owed: its parts wait in line, kept, and are written after the miss.
    const relay = await startDelayRelay(redis.port, 300)
    const delayed = await startRespProxy(relay.url, { CACHE_CAPACITY: '1000' })
    try {
      const value = pattern(600_000, 3)
      await redis.command('SET', 'lent:stream', value)
      await redis.command('SET', 'lent:first', 'first')
      const conn = await rawConnect(delayed.port)
      conn.send(
        Buffer.concat([
          command('GET', 'lent:first'),
          command('GETRANGE', 'lent:stream', '0', '-1'),
        ]),
      )
      const replies = await conn.replies(2, 10_000)
      expect(replies[0]).toEqual(Buffer.from('first'))
      expect(Buffer.compare(replies[1] as Buffer, value)).toBe(0)
      conn.close()
    } finally {
      await delayed.close()
      await relay.close()
    }
  })

  it('answers many clients whose misses share reads, each its own value', async () => {
    const count = 200
    const values = Array.from({ length: count }, (_, i) => pattern(1_000 + i * 97, i))
    for (const [i, value] of values.entries()) await redis.command('SET', `lent:m:${i}`, value)
    const clients = await Promise.all(Array.from({ length: 20 }, () => rawConnect(proxy.port)))
    const answers = await Promise.all(
      clients.map(async (conn, c) => {
        const mine = values.map((_, i) => i).filter((i) => i % clients.length === c)
        conn.send(Buffer.concat(mine.map((i) => command('GET', `lent:m:${i}`))))
        const replies = await conn.replies(mine.length, 10_000)
        return mine.map((i, k) => Buffer.compare(replies[k] as Buffer, values[i] as Buffer))
      }),
    )
    expect(answers.flat()).toEqual(new Array(count).fill(0))
    for (const conn of clients) conn.close()
  })
})
