import { connect } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { askUntil } from './harness/ask-until.js'
import { flushBackend, startRespProxy, type TestRespProxy } from './harness/proxy.js'
import {
  backendGetCount,
  parseReply,
  type RespValue,
  startRedis,
  type TestRedis,
} from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'
import { startScriptedRedis } from './harness/scripted-redis.js'

let redis: TestRedis
let proxy: TestRespProxy

beforeAll(async () => {
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

/** Sends one request to the proxy and one to Redis itself; returns both replies' raw bytes. */
async function bothRaw(bytes: Buffer | string): Promise<{ proxy: string; redis: string }> {
  const [viaProxy, direct] = await Promise.all([rawConnect(proxy.port), rawConnect(redis.port)])
  viaProxy.send(bytes)
  direct.send(bytes)
  await Promise.all([viaProxy.replies(1), direct.replies(1)])
  const result = {
    proxy: viaProxy.received().toString('latin1'),
    redis: direct.received().toString('latin1'),
  }
  viaProxy.close()
  direct.close()
  return result
}

describe('GET over RESP against a real redis-server', () => {
  it('answers a miss from Redis, then the same key from the cache without asking Redis', async () => {
    await redis.command('SET', 'greeting', 'hello')
    const before = await backendGetCount(redis)
    const conn = await rawConnect(proxy.port)
    conn.send(command('GET', 'greeting'))
    expect(await conn.replies(1)).toEqual([Buffer.from('hello')])
    conn.send(command('get', 'greeting'))
    expect(await conn.replies(1)).toEqual([Buffer.from('hello')])
    expect(await backendGetCount(redis)).toBe(before + 1)
    conn.close()
  })

  it('answers nil for a missing key, and its value once another client creates it', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(command('GET', 'nope'))
    expect(await conn.replies(1)).toEqual([null])
    await redis.command('SET', 'nope', 'now')
    // The nil is cached (Redis tracks missing keys read); the SET's
    // invalidation reaches the proxy on its own connection, so a read sent
    // the instant the SET is acknowledged may still see the nil, as with
    // Redis's own client-side caching. It must not see it for long.
    const answer = await askUntil(
      async () => {
        conn.send(command('GET', 'nope'))
        return (await conn.replies(1))[0]
      },
      (value) => value !== null,
    )
    expect(answer).toEqual(Buffer.from('now'))
    conn.close()
  })

  it('returns binary keys and values, and a 1 MiB value, byte for byte', async () => {
    const key = Buffer.from([0, 0xff, 13, 10, 0x80])
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const big = Buffer.alloc(1024 * 1024, 7)
    big[12345] = 0
    await redis.command('SET', key, every)
    await redis.command('SET', 'big', big)
    const conn = await rawConnect(proxy.port)
    for (let round = 0; round < 2; round++) {
      conn.send(Buffer.concat([command('GET', key), command('GET', 'big')]))
      const [small, large] = (await conn.replies(2)) as Buffer[]
      // Buffer#equals: a deep toEqual walks a MiB element by element.
      expect(small?.equals(every)).toBe(true)
      expect(large?.equals(big)).toBe(true)
    }
    conn.close()
  })

  it('answers MGET through the cache, in order, with nil for missing keys', async () => {
    await redis.command('MSET', 'a', '1', 'b', '2')
    const conn = await rawConnect(proxy.port)
    conn.send(command('GET', 'a'))
    await conn.replies(1)
    const before = await backendGetCount(redis)
    conn.send(command('MGET', 'a', 'missing', 'b', 'a'))
    expect(await conn.replies(1)).toEqual([
      [Buffer.from('1'), null, Buffer.from('2'), Buffer.from('1')],
    ])
    // a was cached; missing and b were read once each.
    expect(await backendGetCount(redis)).toBe(before + 2)
    conn.close()
  })

  it('answers GET of a key that is not a string with Redis own WRONGTYPE, byte for byte, and does not cache it', async () => {
    await redis.command('LPUSH', 'list', 'x')
    const both = await bothRaw(command('GET', 'list'))
    expect(both.proxy).toBe(both.redis)
    expect(both.proxy).toBe(
      '-WRONGTYPE Operation against a key holding the wrong kind of value\r\n',
    )
    await redis.command('DEL', 'list')
    await redis.command('SET', 'list', 'fixed')
    const conn = await rawConnect(proxy.port)
    conn.send(command('GET', 'list'))
    expect(await conn.replies(1)).toEqual([Buffer.from('fixed')])
    conn.close()
  })

  it('answers MGET as Redis does when a key is not a string: nil for it, values for the rest', async () => {
    await redis.command('SET', 's', 'str')
    await redis.command('LPUSH', 'list', 'x')
    await redis.command('HSET', 'hash', 'f', 'v')
    const request = command('MGET', 's', 'list', 'missing', 'hash', 's')
    const both = await bothRaw(request)
    expect(both.proxy).toBe(both.redis)
    expect(both.proxy).toBe('*5\r\n$3\r\nstr\r\n$-1\r\n$-1\r\n$-1\r\n$3\r\nstr\r\n')
  })

  it('answers 200 pipelined GETs sent in one write, in order', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`)
    for (let i = 0; i < keys.length; i += 2) await redis.command('SET', keys[i] as string, `v${i}`)
    const conn = await rawConnect(proxy.port)
    const batch = Buffer.concat(keys.map((key) => command('GET', key)))
    for (let round = 0; round < 2; round++) {
      conn.send(batch)
      const replies = await conn.replies(200)
      expect(replies).toEqual(keys.map((_, i) => (i % 2 === 0 ? Buffer.from(`v${i}`) : null)))
    }
    conn.close()
  })

  it('answers pipelined hits of large values whole, to a client that reads only after the cache changed them', async () => {
    // Replies to one read leave together from the process's spare buffer;
    // a client that does not read leaves writes queued, and the cache's
    // entries are freed and reused meanwhile: every reply must still be a
    // whole value, in order.
    const before = ['a', 'b', 'c'].map((fill, i) => Buffer.from(fill.repeat(9000 + 3000 * i)))
    const after = ['x', 'y', 'z'].map((fill, i) => Buffer.from(fill.repeat(8990 + 3000 * i)))
    const setAll = async (values: Buffer[]) => {
      for (const [i, value] of values.entries()) await redis.command('SET', `v${i}`, value)
    }
    const warm = async () => {
      const conn = await rawConnect(proxy.port)
      conn.send(Buffer.concat([0, 1, 2, 0].map((i) => command('GET', `v${i}`))))
      await conn.replies(4)
      conn.close()
    }
    await setAll(before)
    await redis.command('SET', 's', 'small')
    await warm()
    // More than the kernel's socket buffers hold (several MiB on loopback),
    // so some writes stay queued in the proxy.
    const keys = Array.from({ length: 2000 }, (_, i) => (i % 10 === 9 ? 's' : `v${i % 3}`))
    const socket = connect(proxy.port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.pause()
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.write(Buffer.concat(keys.map((key) => command('GET', key))))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await setAll(after)
    await askUntil(
      () => proxy.service.peek('v2'),
      (value) => value === null,
    )
    await warm()
    socket.resume()
    // Read until quiet, then parse it all (no copy of what came per chunk).
    let seen = -1
    while (seen !== chunks.length) {
      seen = chunks.length
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
    socket.destroy()
    const received = Buffer.concat(chunks)
    const replies: RespValue[] = []
    for (let at = 0; at < received.length; ) {
      const reply = parseReply(received, at)
      if (reply === undefined) break
      replies.push(reply.value)
      at = reply.end
    }
    expect(replies).toHaveLength(keys.length)
    let old = 0
    for (const [i, key] of keys.entries()) {
      const reply = replies[i] as Buffer
      if (key === 's') {
        expect(reply).toEqual(Buffer.from('small'))
        continue
      }
      const n = Number(key.slice(1))
      const whole = reply.equals(before[n] as Buffer) || reply.equals(after[n] as Buffer)
      expect(whole, `reply ${i}: ${reply.subarray(0, 10)}... (${reply.length} B)`).toBe(true)
      if (reply.equals(before[n] as Buffer)) old++
    }
    expect(old).toBeGreaterThan(0)
  })

  it('answers and caches a miss that came after a large argument in the same read, as any other', async () => {
    await redis.command('SET', 'padded', 'value')
    const before = await backendGetCount(redis)
    const conn = await rawConnect(proxy.port)
    // One write: an ECHO of 60 KB, then the GET (whose fetch then keeps no view of the chunk).
    conn.send(Buffer.concat([command('ECHO', 'p'.repeat(60_000)), command('GET', 'padded')]))
    const replies = await conn.replies(2)
    expect(replies[1]).toEqual(Buffer.from('value'))
    conn.send(command('GET', 'padded'))
    expect(await conn.replies(1)).toEqual([Buffer.from('value')])
    expect(await backendGetCount(redis)).toBe(before + 1)
    conn.close()
  })

  it('answers inline commands as telnet sends them', async () => {
    await redis.command('SET', 'k', 'v')
    const conn = await rawConnect(proxy.port)
    conn.send('GET k\r\nPING\r\n')
    expect(await conn.replies(2)).toEqual([Buffer.from('v'), 'PONG'])
    conn.close()
  })
})

describe('errors worded exactly as Redis words them', () => {
  const requests: [string, Buffer | string][] = [
    ['an unknown command with arguments', command('NOSUCHCMD', 'a', 'b')],
    ['an unknown command without arguments', command('NOSUCHCMD')],
    ['an unknown command with long arguments', command('nosuch', 'x'.repeat(100), 'y'.repeat(100))],
    ['an unknown command with binary arguments', command('NOSUCH', Buffer.from([0xff, 0xfe]))],
    ['an unknown inline command', 'NOSUCH a b\r\n'],
    ['GET without a key', command('GET')],
    ['GET with two keys', command('GET', 'a', 'b')],
    ['MGET without keys', command('MGET')],
    ['ECHO without a message', command('ECHO')],
    ['PING with two messages', command('PING', 'a', 'b')],
    ['SELECT of a non-number', command('SELECT', 'abc')],
    ['HELLO with an unsupported version', command('HELLO', '4')],
    ['HELLO with a non-number version', command('HELLO', 'x')],
    ['CLIENT without a subcommand', command('CLIENT')],
    ['CLIENT with an unknown subcommand', command('CLIENT', 'NOSUCH')],
    ['CLIENT SETNAME with a space', command('CLIENT', 'SETNAME', 'a b')],
    ['COMMAND with an unknown subcommand', command('COMMAND', 'NOSUCH')],
  ]
  for (const [name, request] of requests) {
    it(`answers ${name} like Redis`, async () => {
      const { proxy: viaProxy, redis: direct } = await bothRaw(request)
      expect(viaProxy).toBe(direct)
    })
  }

  it('forwards what it does not answer itself, and a pipelined GET sees the write before it', async () => {
    await redis.command('SET', 'kept', 'original')
    const conn = await rawConnect(proxy.port)
    // Cached first: the write must evict it, not race it.
    conn.send(command('GET', 'kept'))
    await conn.replies(1)
    conn.send(
      Buffer.concat([
        command('SET', 'kept', 'changed'),
        command('GET', 'kept'),
        command('INCR', 'n'),
        command('CONFIG', 'GET', 'maxmemory'),
        command('DEL', 'kept'),
        command('GET', 'kept'),
      ]),
    )
    const replies = await conn.replies(6)
    expect(replies).toEqual([
      'OK',
      Buffer.from('changed'),
      1,
      [Buffer.from('maxmemory'), Buffer.from('0')],
      1,
      null,
    ])
    expect(await redis.command('GET', 'n')).toEqual(Buffer.from('1'))
    conn.close()
  })

  it('answers a command Redis does not know as Redis does, without asking Redis', async () => {
    const both = await bothRaw(command('NOSUCH', 'a', 'b'))
    expect(both.proxy).toBe(both.redis)
    expect(both.proxy).toBe("-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n")
  })

  it('keeps the connection usable after an error', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(Buffer.concat([command('NOSUCH', 'a', 'b'), command('PING')]))
    const [err, pong] = await conn.replies(2)
    expect(err).toBeInstanceOf(Error)
    expect(pong).toBe('PONG')
    conn.close()
  })
})

describe('connection commands answered locally', () => {
  const same: [string, Buffer][] = [
    ['PING', command('PING')],
    ['PING with a message', command('PING', 'hi there')],
    ['ECHO', command('ECHO', Buffer.from([0, 1, 2, 255]))],
    ['SELECT 0', command('SELECT', '0')],
    ['CLIENT GETNAME before a name is set', command('CLIENT', 'GETNAME')],
    ['QUIT', command('QUIT')],
  ]
  for (const [name, request] of same) {
    it(`answers ${name} like Redis`, async () => {
      const { proxy: viaProxy, redis: direct } = await bothRaw(request)
      expect(viaProxy).toBe(direct)
    })
  }

  it('answers SELECT of another database on a backend connection of its own, and a bad index as Redis does', async () => {
    const [viaProxy, direct] = await Promise.all([rawConnect(proxy.port), rawConnect(redis.port)])
    for (const conn of [viaProxy, direct]) {
      conn.send(Buffer.concat([command('SELECT', '1'), command('SELECT', '99')]))
      await conn.replies(2)
      conn.close()
    }
    expect(viaProxy.received().toString('latin1')).toBe(direct.received().toString('latin1'))
    expect(direct.received().toString('latin1')).toBe('+OK\r\n-ERR DB index is out of range\r\n')
  })

  it('closes the connection after QUIT, once earlier replies are sent', async () => {
    await redis.command('SET', 'k', 'v')
    const conn = await rawConnect(proxy.port)
    conn.send(Buffer.concat([command('GET', 'k'), command('QUIT'), command('PING')]))
    expect(await conn.replies(2)).toEqual([Buffer.from('v'), 'OK'])
    await conn.closed()
    expect(conn.received().toString()).not.toContain('PONG')
  })

  it('answers a client that half-closes after sending, as Redis does', async () => {
    await redis.command('SET', 'half', 'closed')
    for (const port of [proxy.port, redis.port]) {
      const socket = connect(port, '127.0.0.1')
      const received: Buffer[] = []
      socket.on('data', (chunk: Buffer) => received.push(chunk))
      const closed = new Promise((resolve) => socket.once('close', resolve))
      // A miss first: its reply waits on the backend when the FIN arrives.
      socket.end(
        Buffer.concat([command('GET', 'nosuchkey'), command('GET', 'half'), command('PING')]),
      )
      await closed
      expect(Buffer.concat(received).toString(), `port ${port}`).toBe(
        '$-1\r\n$6\r\nclosed\r\n+PONG\r\n',
      )
    }
  })

  it('negotiates RESP3 with HELLO 3: a map reply, and _ for a missing key', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(command('HELLO', '3', 'SETNAME', 'me'))
    const [hello] = (await conn.replies(1)) as RespValue[][]
    expect(conn.received().toString('latin1').startsWith('%7\r\n')).toBe(true)
    const facts = Object.fromEntries(
      Array.from({ length: (hello?.length ?? 0) / 2 }, (_, i) => [
        String(hello?.[2 * i]),
        hello?.[2 * i + 1],
      ]),
    )
    expect(facts).toMatchObject({
      server: Buffer.from('redis'),
      proto: 3,
      mode: Buffer.from('standalone'),
    })
    conn.send(command('GET', 'missing'))
    await conn.replies(1)
    expect(conn.received().toString('latin1').endsWith('_\r\n')).toBe(true)
    conn.send(command('CLIENT', 'GETNAME'))
    expect(await conn.replies(1)).toEqual([Buffer.from('me')])
    conn.send(command('RESET'))
    expect(await conn.replies(1)).toEqual(['RESET'])
    conn.send(command('GET', 'missing'))
    await conn.replies(1)
    expect(conn.received().toString('latin1').endsWith('$-1\r\n')).toBe(true)
    conn.close()
  })

  it('answers CLIENT ID, SETNAME, GETNAME and SETINFO', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(
      Buffer.concat([
        command('CLIENT', 'ID'),
        command('CLIENT', 'SETNAME', 'worker-1'),
        command('CLIENT', 'GETNAME'),
        command('CLIENT', 'SETINFO', 'LIB-NAME', 'mylib'),
        command('CLIENT', 'SETINFO', 'lib-ver', '1.2.3'),
        command('CLIENT', 'INFO'),
      ]),
    )
    const [id, setname, getname, libName, libVer, info] = await conn.replies(6)
    expect(typeof id).toBe('number')
    expect([setname, getname, libName, libVer]).toEqual(['OK', Buffer.from('worker-1'), 'OK', 'OK'])
    expect(String(info)).toContain(`id=${id} `)
    expect(String(info)).toContain('name=worker-1 ')
    expect(String(info)).toContain('lib-name=mylib lib-ver=1.2.3')
    conn.close()
  })

  it("describes every command with the backend's own COMMAND, byte for byte", async () => {
    for (const request of [
      command('COMMAND', 'COUNT'),
      command('COMMAND', 'INFO', 'get', 'nosuch', 'client|kill'),
      command('COMMAND', 'DOCS', 'get'),
      command('COMMAND', 'GETKEYS', 'MSET', 'a', '1', 'b', '2'),
    ]) {
      const both = await bothRaw(request)
      expect(both.proxy).toBe(both.redis)
    }
  })

  it('reports cache figures in INFO proxy and server facts in INFO', async () => {
    await redis.command('SET', 'k', 'v')
    const conn = await rawConnect(proxy.port)
    const figure = async (name: string) => {
      conn.send(command('INFO', 'proxy'))
      const info = String((await conn.replies(1))[0])
      expect(info).toMatch(/^# Proxy\r\n/)
      expect(info).not.toContain('# Server')
      return Number(new RegExp(`${name}:(\\d+)\r\n`).exec(info)?.[1])
    }
    const hits = await figure('cache_hits')
    const misses = await figure('cache_misses')
    // One at a time: pipelined, the second GET k would join the first's load.
    for (const key of ['k', 'k', 'zz']) {
      conn.send(command('GET', key))
      await conn.replies(1)
    }
    expect(await figure('cache_hits')).toBe(hits + 1)
    expect(await figure('cache_misses')).toBe(misses + 2)
    // k, and zz known missing (invalidation is on: Redis tracks missing keys read).
    expect(await figure('cache_keys')).toBe(2)
    conn.send(command('INFO'))
    const all = String((await conn.replies(1))[0])
    for (const section of ['# Server', '# Clients', '# Stats', '# Proxy'])
      expect(all).toContain(section)
    expect(all).toContain('redis_version:')
    expect(all).toMatch(/connected_clients:[1-9]/)
    conn.close()
  })

  it('lists its own clients with CLIENT LIST and kills them with CLIENT KILL, as Redis does', async () => {
    const [a, b] = await Promise.all([rawConnect(proxy.port), rawConnect(proxy.port)])
    a.send(command('CLIENT', 'ID'))
    b.send(Buffer.concat([command('CLIENT', 'SETNAME', 'victim'), command('CLIENT', 'ID')]))
    const [idA] = await a.replies(1)
    const [, idB] = await b.replies(2)
    a.send(command('CLIENT', 'LIST'))
    const list = String((await a.replies(1))[0])
    expect(list).toContain(`id=${idA} `)
    expect(list).toContain(`id=${idB} `)
    expect(list).toContain('name=victim')
    a.send(command('CLIENT', 'LIST', 'ID', String(idB)))
    expect(
      String((await a.replies(1))[0])
        .trim()
        .split('\n'),
    ).toHaveLength(1)
    a.send(
      Buffer.concat([
        command('CLIENT', 'KILL', 'ID', String(idB)),
        command('CLIENT', 'KILL', 'ADDR', '1.2.3.4:5'),
      ]),
    )
    expect(await a.replies(2)).toEqual([1, 0])
    await b.closed()
    // Errors worded as Redis words them.
    const both = await bothRaw(command('CLIENT', 'KILL', '1.2.3.4:5'))
    expect(both.proxy).toBe(both.redis)
    const syntax = await bothRaw(command('CLIENT', 'KILL', 'NOSUCH', 'x'))
    expect(syntax.proxy).toBe(syntax.redis)
    a.close()
  })

  it("answers INFO with the backend's own sections and the proxy's added, in the client's protocol", async () => {
    await redis.command('SET', 'info-k', 'v')
    const conn = await rawConnect(proxy.port)
    conn.send(Buffer.concat([command('INFO', 'keyspace'), command('INFO', 'server')]))
    const [keyspace, server] = (await conn.replies(2)).map(String)
    // Redis's figures, not the proxy's: the keys it holds, its own version and port.
    expect(keyspace).toMatch(/^# Keyspace\r\ndb0:keys=\d+/)
    expect(keyspace).not.toContain('# Proxy')
    expect(server).toContain(`tcp_port:${redis.port}\r\n`)
    conn.send(command('INFO'))
    const all = String((await conn.replies(1))[0])
    expect(all).toMatch(/# Server\r\n[\s\S]*# Keyspace\r\n[\s\S]*\r\n\r\n# Proxy\r\n/)
    conn.close()
    // RESP3: a verbatim string, as Redis answers INFO there (read as bytes:
    // the harness's parser has no verbatim type).
    const raw = connect(proxy.port, '127.0.0.1')
    let bytes = ''
    raw.on('data', (chunk: Buffer) => {
      bytes += chunk.toString('latin1')
    })
    raw.write(Buffer.concat([command('HELLO', '3'), command('INFO', 'memory', 'proxy')]))
    const deadline = Date.now() + 5000
    while (!/# Proxy\r\n[\s\S]*\r\n\r\n$/.test(bytes) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    raw.destroy()
    expect(bytes).toMatch(/\r\n=\d+\r\ntxt:# Memory\r\n[\s\S]*# Proxy\r\n/)
    const length = Number(/\r\n=(\d+)\r\n/.exec(bytes)?.[1])
    expect(Buffer.byteLength(bytes.slice(bytes.indexOf('txt:# Memory')), 'latin1')).toBe(length + 2)
  })
})

describe('ordering against a slow backend', () => {
  it('returns replies in request order when their backend answers arrive in another order', async () => {
    // `first` takes 300 ms, the rest 10 ms; on one backend connection the
    // scripted server answers in the order it was asked.
    const backend = await startScriptedRedis((key) => ({
      delayMs: key === 'first' ? 300 : 10,
      value: `v:${key}`,
    }))
    const slowProxy = await startRespProxy(backend.url, { MAX_PARALLEL: '8' })
    try {
      const warm = await rawConnect(slowProxy.port)
      warm.send(command('GET', 'hit'))
      await warm.replies(1)
      // Another client asks for `first` before ours does: its backend answer
      // comes first, though ours asks for it after `a`.
      warm.send(command('GET', 'first'))
      await backend.received('first')
      const keys = ['a', 'hit', 'first', 'b']
      const conn = await rawConnect(slowProxy.port)
      conn.send(Buffer.concat(keys.map((key) => command('GET', key))))
      expect(await conn.replies(keys.length)).toEqual(keys.map((key) => Buffer.from(`v:${key}`)))
      // Answered by the backend as first, a, b (hit from the cache): not the
      // order the replies owed to this client were asked in.
      expect(backend.answered()).toEqual(['hit', 'first', 'a', 'b'])
      expect(await warm.replies(1)).toEqual([Buffer.from('v:first')])
      expect(backend.peakOutstanding()).toBeGreaterThan(1)
      warm.close()
      conn.close()
    } finally {
      await slowProxy.close()
      await backend.close()
    }
  })
})
