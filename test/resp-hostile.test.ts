import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { DEFAULT_CONNECTION_LIMITS } from '../sidecar/connection.js'
import { freePort } from './harness/ports.js'
import { memoryOf, type ProxyProcess, spawnProxy, waitServing } from './harness/process.js'
import { startRespProxy, type TestRespProxy } from './harness/proxy.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

let redis: TestRedis
let proxy: TestRespProxy

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startRespProxy(redis.url)
  await redis.command('SET', 'k', 'v')
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

/** A fresh client can still GET through the proxy. */
async function othersAreServed(): Promise<void> {
  const other = await rawConnect(proxy.port)
  other.send(command('GET', 'k'))
  expect(await other.replies(1, 2000)).toEqual([Buffer.from('v')])
  other.close()
}

describe('hostile input', () => {
  const protocolErrors: [string, string, string][] = [
    ['an absurd multibulk length', '*99999999999999\r\n', 'invalid multibulk length'],
    ['an absurd bulk length', '*1\r\n$99999999999\r\n', 'invalid bulk length'],
    [
      'garbage where a bulk should start',
      '*2\r\n\x00\xff\xfe garbage\r\n',
      "expected '$', got '\x00'",
    ],
    ['a huge inline line', `GET ${'x'.repeat(70 * 1024)}`, 'too big inline request'],
    ['unbalanced quotes', 'GET "oops\r\n', 'unbalanced quotes in request'],
  ]
  for (const [name, bytes, message] of protocolErrors) {
    it(`answers ${name} with a protocol error, closes that connection, and serves others`, async () => {
      const conn = await rawConnect(proxy.port)
      conn.send(Buffer.concat([command('PING'), Buffer.from(bytes, 'latin1')]))
      const replies = await conn.replies(2)
      expect(replies[0]).toBe('PONG')
      expect(replies[1]).toEqual(new Error(`ERR Protocol error: ${message}`))
      await conn.closed()
      await othersAreServed()
    })
  }

  it('survives random bytes from many clients', async () => {
    const conns = await Promise.all(Array.from({ length: 20 }, () => rawConnect(proxy.port)))
    for (const [i, conn] of conns.entries()) {
      const bytes = Buffer.alloc(4096)
      for (let j = 0; j < bytes.length; j++) bytes[j] = (j * 7919 + i * 104729) & 0xff
      conn.send(bytes)
    }
    await sleep(100)
    await othersAreServed()
    for (const conn of conns) conn.close()
  })
})

describe('memory a hostile client can make the sidecar hold (its own process)', () => {
  // The sidecar runs alone in a process of its own: in this one, the test's
  // own buffers and the runner's would move the figures as much as the proxy.
  let sidecar: ProxyProcess
  let port: number
  beforeEach(async () => {
    port = await freePort()
    sidecar = spawnProxy(['resp'], {
      REDIS_URL: redis.url,
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(port),
    })
    await waitServing(sidecar)
    // Listening comes before the backend connection: wait for the first answer.
    const deadline = Date.now() + 10_000
    for (;;) {
      const conn = await rawConnect(port)
      conn.send(command('GET', 'k'))
      const [reply] = await conn.replies(1)
      conn.close()
      if (!(reply instanceof Error)) break
      if (Date.now() > deadline) throw reply
      await sleep(20)
    }
  })
  afterEach(async () => {
    sidecar.child.kill('SIGTERM')
    await sidecar.exited()
  })
  const memory = () => memoryOf(sidecar.child.pid as number)

  /** A fresh client can still GET through the sidecar. */
  async function served(): Promise<void> {
    const other = await rawConnect(port)
    other.send(command('GET', 'k'))
    expect(await other.replies(1, 5000)).toEqual([Buffer.from('v')])
    other.close()
  }

  it('holds only the bytes received for a declared 500 MB bulk that never arrives', async () => {
    await served()
    const before = memory()
    const conns = await Promise.all(Array.from({ length: 5 }, () => rawConnect(port)))
    for (const conn of conns) {
      conn.send(`*2\r\n$3\r\nGET\r\n$${500 * 1024 * 1024}\r\n`)
      conn.send(Buffer.alloc(64 * 1024, 1))
    }
    // Served after those bytes arrived: the sidecar has read them by now,
    // and an allocation of the declared length would have happened on reading.
    await served()
    const after = memory()
    // Five clients that declared 2.5 GB between them cost about what they
    // sent. Resident memory alone would miss an allocation of the declared
    // length whose pages were never written; the address space counts it.
    expect(after.peakRss - before.rss).toBeLessThan(64 * 1024 * 1024)
    expect(after.virtual - before.virtual).toBeLessThan(256 * 1024 * 1024)
    for (const conn of conns) expect(conn.socket.destroyed).toBe(false)
    for (const conn of conns) conn.close()
  })

  it('stops taking commands mid-chunk from clients that do not read, bounding their replies', async () => {
    // Inline GETs are 9 bytes; a 4095-byte value is copied into each reply.
    // One 64 KiB chunk of them asks for 30 MB of replies: the limit must hold
    // inside a chunk, not only between chunks.
    const value = Buffer.alloc(4095, 0x62)
    await redis.command('SET', 'v4k', value)
    const warm = await rawConnect(port)
    warm.send(command('GET', 'v4k'))
    await warm.replies(1)
    warm.close()

    const before = memory()
    const requests = Math.floor(65_000 / 8)
    const chunk = Buffer.from('GET v4k\n'.repeat(requests))
    const greedy = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const socket = connect(port, '127.0.0.1')
        await new Promise((resolve) => socket.once('connect', resolve))
        socket.pause()
        socket.write(chunk)
        return socket
      }),
    )
    await served()
    // About 4 MiB each (the bound) plus kernel buffers; unbounded it is 300 MB.
    expect(memory().peakRss - before.rss).toBeLessThan(128 * 1024 * 1024)
    // Once they read, each gets every reply.
    const expected = requests * (`$${value.length}\r\n`.length + value.length + 2)
    expect(await Promise.all(greedy.map((socket) => drain(socket, expected)))).toEqual(
      Array(10).fill(expected),
    )
    for (const socket of greedy) socket.destroy()
  })

  it('stops reading from a client that does not read its replies, and serves others meanwhile', async () => {
    // 3000-byte replies are copied with their header: an unbounded server would
    // hold 50,000 of them (150 MB) for a client that never reads.
    const value = Buffer.alloc(3000, 0x61)
    await redis.command('SET', 'wide', value)
    const warm = await rawConnect(port)
    warm.send(command('GET', 'wide'))
    await warm.replies(1)
    warm.close()

    const before = memory()
    const greedy = connect(port, '127.0.0.1')
    await new Promise((resolve) => greedy.once('connect', resolve))
    greedy.pause()
    const requests = 50_000
    greedy.write(Buffer.concat(Array.from({ length: requests }, () => command('GET', 'wide'))))
    await served()
    expect(memory().peakRss - before.rss).toBeLessThan(64 * 1024 * 1024)
    // Once it reads, it gets every reply.
    const expected = requests * (`$${value.length}\r\n`.length + value.length + 2)
    expect(await drain(greedy, expected)).toBe(expected)
    greedy.destroy()
  })
})

describe('the request size bound (client-query-buffer-limit)', () => {
  it('is 1 GiB unless set otherwise', () => {
    expect(DEFAULT_CONNECTION_LIMITS.maxRequestBytes).toBe(1024 * 1024 * 1024)
  })

  const cases: [string, Buffer][] = [
    // 100 KiB of a declared 1 MB bulk: over a 64 KiB bound before it ends.
    [
      'one large argument',
      Buffer.concat([
        Buffer.from('*2\r\n$3\r\nGET\r\n$1000000\r\n'),
        Buffer.alloc(100 * 1024, 0x61),
      ]),
    ],
    // 1000 one-byte arguments are 7 KB on the wire, but each is charged 128
    // bytes more than its length: 129 KB held, over the bound.
    ['many small arguments', Buffer.from(`*2000\r\n$4\r\nMGET\r\n${'$1\r\nx\r\n'.repeat(1000)}`)],
  ]
  for (const [name, bytes] of cases) {
    it(`answers a request that holds more than the bound with -ERR too big request (${name}), closes it, and serves others`, async () => {
      const bounded = await startRespProxy(redis.url, {}, { maxRequestBytes: 64 * 1024 })
      try {
        const conn = await rawConnect(bounded.port)
        conn.send(command('PING'))
        conn.send(bytes)
        expect(await conn.replies(2)).toEqual([
          'PONG',
          new Error('ERR Protocol error: too big request'),
        ])
        await conn.closed()
        const other = await rawConnect(bounded.port)
        other.send(command('GET', 'k'))
        expect(await other.replies(1)).toEqual([Buffer.from('v')])
        other.close()
      } finally {
        await bounded.close()
      }
    })
  }
})

describe('client limits', () => {
  it('refuses the connection over MAX_CLIENTS as Redis does, and reuses a freed slot', async () => {
    const limited = await startRespProxy(redis.url, { MAX_CLIENTS: '2' })
    try {
      const first = await rawConnect(limited.port)
      const second = await rawConnect(limited.port)
      first.send(command('PING'))
      second.send(command('PING'))
      expect([...(await first.replies(1)), ...(await second.replies(1))]).toEqual(['PONG', 'PONG'])

      const third = await rawConnect(limited.port)
      expect(await third.replies(1)).toEqual([new Error('ERR max number of clients reached')])
      await third.closed()

      first.close()
      await first.closed()
      // The proxy sees the close a moment after the client does: until it
      // has, a new connection is refused as above.
      let fourth = await rawConnect(limited.port)
      fourth.send(command('GET', 'k'))
      let [reply] = await fourth.replies(1)
      const deadline = Date.now() + 2000
      while (reply instanceof Error && Date.now() < deadline) {
        fourth.close()
        await sleep(20)
        fourth = await rawConnect(limited.port)
        fourth.send(command('GET', 'k'))
        ;[reply] = await fourth.replies(1)
      }
      expect(reply).toEqual(Buffer.from('v'))
      second.close()
      fourth.close()
    } finally {
      await limited.close()
    }
  })

  it('disconnects a client idle for IDLE_TIMEOUT and keeps an active one', async () => {
    const timed = await startRespProxy(redis.url, { IDLE_TIMEOUT: '1000' })
    try {
      const idle = await rawConnect(timed.port)
      const active = await rawConnect(timed.port)
      const opened = Date.now()
      let idleClosedAt = 0
      void idle.closed().then(() => {
        idleClosedAt = Date.now()
      })
      // A command every 100 ms: only a 900 ms stall of the machine would make it idle.
      while (idleClosedAt === 0 && Date.now() - opened < 5000) {
        active.send(command('PING'))
        expect(await active.replies(1)).toEqual(['PONG'])
        await sleep(100)
      }
      expect(idleClosedAt - opened).toBeGreaterThanOrEqual(950)
      expect(active.socket.destroyed).toBe(false)
      active.close()
    } finally {
      await timed.close()
    }
  })

  it('keeps a client that only receives under IDLE_TIMEOUT: what it is sent is activity', async () => {
    const timed = await startRespProxy(redis.url, { IDLE_TIMEOUT: '1000' })
    try {
      const subscriber = await rawConnect(timed.port)
      subscriber.send(command('SUBSCRIBE', 'idle:channel'))
      await subscriber.replies(1)
      const opened = Date.now()
      let closedAt = 0
      void subscriber.closed().then(() => {
        closedAt = Date.now()
      })
      // A message every 100 ms for 3 s; the subscriber itself sends nothing.
      let published = 0
      while (closedAt === 0 && Date.now() - opened < 3000) {
        await redis.command('PUBLISH', 'idle:channel', `m${published++}`)
        await sleep(100)
      }
      expect(closedAt).toBe(0)
      expect(await subscriber.replies(published)).toHaveLength(published)
      subscriber.close()
    } finally {
      await timed.close()
    }
  })
})

describe('IDLE_TIMEOUT spares who Redis spares', () => {
  /** Whether `conn` is still open `ms` from now. */
  async function openAfter(conn: { socket: Socket }, ms: number): Promise<boolean> {
    await sleep(ms)
    return !conn.socket.destroyed && conn.socket.readyState === 'open'
  }

  it('keeps a silent subscriber (channel, pattern, shard channel, RESP2 and RESP3), a client blocked in BLPOP and one in MONITOR, as Redis with `timeout` does; closes a plain idle one', async () => {
    const timed = await startRespProxy(redis.url, { IDLE_TIMEOUT: '500' })
    // Redis's own `timeout` is in seconds: 1 s, on a redis-server of its
    // own (on the proxy's backend it would close the proxy's connections).
    const reference = await startRedis()
    await reference.command('CONFIG', 'SET', 'timeout', '1')
    try {
      // Each client's commands, and how many replies to wait for (none for
      // BLPOP, which blocks; none over RESP3, whose pushes the raw client
      // does not parse: a short wait instead).
      const open = async (port: number, replies: number, ...commands: Buffer[]) => {
        const conn = await rawConnect(port)
        for (const c of commands) conn.send(c)
        if (replies > 0) await conn.replies(replies)
        else await sleep(100)
        return conn
      }
      // A RESP3 subscriber on a bare socket: what it is sent is not parsed.
      const openResp3 = async (port: number) => {
        const socket = connect(port, '127.0.0.1')
        socket.on('error', () => {})
        socket.on('data', () => {})
        await once(socket, 'connect')
        socket.write(Buffer.concat([command('HELLO', '3'), command('SUBSCRIBE', 'idle:r3')]))
        await sleep(100)
        return { socket, close: () => socket.destroy() }
      }
      const kinds = (port: number) =>
        Promise.all([
          open(port, 0),
          open(port, 2, command('SUBSCRIBE', 'idle:a', 'idle:b')),
          open(port, 1, command('PSUBSCRIBE', 'idle:*')),
          open(port, 1, command('SSUBSCRIBE', 'idle:s')),
          openResp3(port),
          open(port, 0, command('BLPOP', `idle:list:${port}`, '0')),
          open(port, 1, command('MONITOR')),
        ])
      const [viaProxy, direct] = await Promise.all([kinds(timed.port), kinds(reference.port)])
      const names = ['plain', 'subscribe', 'psubscribe', 'ssubscribe', 'resp3', 'blpop', 'monitor']
      const stillOpen = (conns: { socket: Socket }[]) =>
        Object.fromEntries(names.map((name, i) => [name, !conns[i]?.socket.destroyed]))
      // Redis closes idle clients from a cron: within about 2 s of its 1 s.
      await sleep(2500)
      const expected = {
        plain: false,
        subscribe: true,
        psubscribe: true,
        ssubscribe: true,
        resp3: true,
        blpop: true,
        monitor: true,
      }
      expect(stillOpen(direct)).toEqual(expected)
      expect(stillOpen(viaProxy)).toEqual(expected)
      for (const conn of [...viaProxy, ...direct]) conn.close()
    } finally {
      await reference.stop()
      await timed.close()
    }
  }, 15_000)

  it('times a client out again once it has left those modes (UNSUBSCRIBE from all, RESET, a BLPOP answered), and one that only looks like them', async () => {
    const timed = await startRespProxy(redis.url, { IDLE_TIMEOUT: '500' })
    try {
      const unsubscribed = await rawConnect(timed.port)
      unsubscribed.send(command('SUBSCRIBE', 'idle:x', 'idle:y'))
      await unsubscribed.replies(2)
      const reset = await rawConnect(timed.port)
      reset.send(command('PSUBSCRIBE', 'idle:p*'))
      await reset.replies(1)
      const blocked = await rawConnect(timed.port)
      blocked.send(command('BLPOP', 'idle:answered', '0'))
      const partly = await rawConnect(timed.port)
      partly.send(command('SUBSCRIBE', 'idle:x', 'idle:y'))
      await partly.replies(2)
      // Shard channels are counted apart: unsubscribing from every channel
      // leaves the shard one.
      const sharded = await rawConnect(timed.port)
      sharded.send(command('SSUBSCRIBE', 'idle:s'))
      sharded.send(command('SUBSCRIBE', 'idle:c'))
      await sharded.replies(2)
      // On its own backend connection (SELECT), a reply that reads like a
      // subscription's confirmation is not one.
      const lookalike = await rawConnect(timed.port)
      lookalike.send(command('SELECT', '1'))
      lookalike.send(command('EVAL', "return {'subscribe', 'c', 1}", '0'))
      expect(await lookalike.replies(2)).toEqual([
        'OK',
        [Buffer.from('subscribe'), Buffer.from('c'), 1],
      ])
      // Still in their modes after more than the timeout.
      expect(await openAfter(unsubscribed, 800)).toBe(true)
      expect([reset, blocked, partly, sharded].map((c) => !c.socket.destroyed)).toEqual([
        true,
        true,
        true,
        true,
      ])
      expect(lookalike.socket.destroyed).toBe(true)
      unsubscribed.send(command('UNSUBSCRIBE'))
      await unsubscribed.replies(2)
      reset.send(command('RESET'))
      expect(await reset.replies(1)).toEqual(['RESET'])
      await redis.command('RPUSH', 'idle:answered', 'v')
      expect(await blocked.replies(1)).toEqual([[Buffer.from('idle:answered'), Buffer.from('v')]])
      partly.send(command('UNSUBSCRIBE', 'idle:x'))
      await partly.replies(1)
      sharded.send(command('UNSUBSCRIBE'))
      await sharded.replies(1)
      // Closed within a few timeouts; the others stay.
      await Promise.race([
        Promise.all([unsubscribed.closed(), reset.closed(), blocked.closed()]),
        sleep(3000),
      ])
      expect([unsubscribed, reset, blocked].map((c) => c.socket.destroyed)).toEqual([
        true,
        true,
        true,
      ])
      expect([partly, sharded].map((c) => c.socket.destroyed)).toEqual([false, false])
      partly.close()
      sharded.close()
    } finally {
      await timed.close()
    }
  }, 15_000)

  it('times out a client owed a large reply on its own connection that stopped reading it, as Redis does', async () => {
    const timed = await startRespProxy(redis.url, { IDLE_TIMEOUT: '500' })
    // In database 1: a client that SELECTs it gets a backend connection of its own.
    const admin = await rawConnect(redis.port)
    try {
      admin.send(command('SELECT', '1'))
      admin.send(command('SET', 'idle:big', 'x'.repeat(32 * 1024 * 1024)))
      expect(await admin.replies(2, 10_000)).toEqual(['OK', 'OK'])
      const stalled = await rawConnect(timed.port)
      stalled.send(command('SELECT', '1'))
      await stalled.replies(1)
      stalled.socket.pause()
      stalled.send(command('GET', 'idle:big'))
      // A paused socket sees no close: it reads again after a few timeouts,
      // and finds the connection closed with the reply cut short, where a
      // client still served would get all of it and stay open.
      await sleep(2000)
      stalled.socket.resume()
      await Promise.race([stalled.closed(), sleep(5000)])
      expect(stalled.socket.destroyed).toBe(true)
      expect(stalled.received().length).toBeLessThan(32 * 1024 * 1024)
    } finally {
      admin.send(command('DEL', 'idle:big'))
      await admin.replies(1)
      admin.close()
      await timed.close()
    }
  }, 15_000)
})

describe('the handshake bound (RESP_HANDSHAKE_TIMEOUT)', () => {
  it('closes a client that trickles a partial first command, and keeps one that completed a command', async () => {
    const bounded = await startRespProxy(redis.url, { RESP_HANDSHAKE_TIMEOUT: '300' })
    try {
      const established = await rawConnect(bounded.port)
      established.send(command('PING'))
      expect(await established.replies(1)).toEqual(['PONG'])
      const trickler = await rawConnect(bounded.port)
      const opened = Date.now()
      // A byte every 50 ms: activity, but never a whole command.
      const partial = command('GET', 'k')
      let sent = 0
      const drip = setInterval(() => {
        if (sent < partial.length - 1) trickler.send(partial.subarray(sent, ++sent))
      }, 50)
      await trickler.closed()
      clearInterval(drip)
      expect(Date.now() - opened).toBeGreaterThanOrEqual(250)
      // Longer than the bound since the established client connected.
      await sleep(300)
      expect(established.socket.destroyed).toBe(false)
      established.send(command('GET', 'k'))
      expect(await established.replies(1)).toEqual([Buffer.from('v')])
      established.close()
    } finally {
      await bounded.close()
    }
  })
})

describe('fair use of the shared backend queue', () => {
  it('keeps an MGET of thousands of missing keys from refusing other clients', async () => {
    const small = await startRespProxy(redis.url, { MAX_PARALLEL: '4', MAX_QUEUE: '100' })
    try {
      const a = await rawConnect(small.port)
      const b = await rawConnect(small.port)
      const keys = Array.from({ length: 3000 }, (_, i) => `absent:${i}`)
      a.send(command('MGET', ...keys))
      await sleep(5)
      b.send(command('GET', 'k'))
      expect(await b.replies(1)).toEqual([Buffer.from('v')])
      const [all] = await a.replies(1, 20_000)
      expect(all).toEqual(Array(3000).fill(null))
      a.close()
      b.close()
    } finally {
      await small.close()
    }
  })

  it('answers COMMAND INFO of 2,000 names as Redis does (the backend describes them), and carries on', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(
      Buffer.concat([command('COMMAND', 'INFO', ...Array(2000).fill('get')), command('PING')]),
    )
    const [infos, pong] = await conn.replies(2)
    expect(infos).toHaveLength(2000)
    expect(pong).toBe('PONG')
    conn.close()
  })
})

/** Resumes a paused socket and resolves with the bytes read once `expected` have arrived. */
function drain(socket: Socket, expected: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (received >= expected) resolve(received)
    })
    socket.on('error', reject)
    socket.on('close', () => reject(new Error(`closed after ${received} of ${expected} bytes`)))
    socket.resume()
  })
}
