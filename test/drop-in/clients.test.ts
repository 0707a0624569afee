import { spawn } from 'node:child_process'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startRespProxy, type TestRespProxy } from '../harness/proxy.js'
import { sleep, startRedis, type TestRedis } from '../harness/redis-server.js'

/**
 * Real clients, unchanged, through the proxy: redis-benchmark, redis-cli,
 * ioredis, node-redis and redis-py. Each runs the same thing twice, against a
 * Redis of its own and through the proxy in front of an identical Redis, and
 * the two results are compared with each other and with what is expected.
 */

type Side = {
  readonly name: string
  readonly port: number
  /** The Redis that serves this side (behind the proxy, or the one spoken to directly). */
  readonly server: TestRedis
}

let direct: TestRedis
let backend: TestRedis
let proxy: TestRespProxy
let sides: Side[]

beforeAll(async () => {
  direct = await startRedis()
  backend = await startRedis()
  proxy = await startRespProxy(backend.url)
  sides = [
    { name: 'redis', port: direct.port, server: direct },
    { name: 'proxy', port: proxy.port, server: backend },
  ]
})

afterAll(async () => {
  await proxy?.close()
  await backend?.stop()
  await direct?.stop()
})

/** Both sides, the direct one first; the result of `each` on each. */
async function onBoth<T>(each: (side: Side) => Promise<T>): Promise<{ redis: T; proxy: T }> {
  const [a, b] = sides
  if (a === undefined || b === undefined) throw new Error('sides not started')
  return { redis: await each(a), proxy: await each(b) }
}

type Ran = { code: number | null; stdout: Buffer; stderr: string }

/** A child process fed `input` on stdin, killed after `timeoutMs`. */
function runProcess(
  file: string,
  args: string[],
  input: string | Buffer = '',
  timeoutMs = 30_000,
): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() })
    })
    child.stdin.end(input)
  })
}

/** Until Redis reports `count` clients blocked (so a push wakes a pop rather than preceding it). */
async function blockedClients(server: TestRedis, count: number): Promise<void> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const info = String(await server.command('INFO', 'clients'))
    const blocked = Number(/blocked_clients:(\d+)/.exec(info)?.[1] ?? 0)
    if (blocked >= count) return
    if (Date.now() > deadline) throw new Error(`${count} blocked clients expected, ${blocked} seen`)
    await sleep(20)
  }
}

describe('redis-benchmark, default test set', () => {
  const bench = async (side: Side) => {
    const ran = await runProcess(
      'redis-benchmark',
      ['-h', '127.0.0.1', '-p', String(side.port), '-n', '2000', '-c', '10', '-q'],
      '',
      120_000,
    )
    const output = `${ran.stdout.toString()}\n${ran.stderr}`
    // Progress lines end in \r; each test's result is the last segment of its line.
    const results = output
      .split(/[\r\n]/)
      .map((line) => line.trim())
      .flatMap((line) => {
        const found = /^(.+): ([\d.]+) requests per second/.exec(line)
        return found?.[1] === undefined ? [] : [{ name: found[1], rps: Number(found[2]) }]
      })
    return { code: ran.code, stderr: ran.stderr, output, results }
  }

  test('runs every test it runs against Redis, exit 0, no error and no CONFIG warning', async () => {
    const { redis, proxy } = await onBoth(bench)
    expect(redis.code).toBe(0)
    expect(proxy.code, proxy.output).toBe(0)
    expect(proxy.stderr).toBe('')
    expect(proxy.output).not.toMatch(/error|warning|CONFIG/i)
    const names = proxy.results.map((r) => r.name)
    expect(names).toEqual(redis.results.map((r) => r.name))
    for (const name of ['PING_INLINE', 'SET', 'GET', 'INCR', 'LPOP', 'ZPOPMIN', 'MSET (10 keys)']) {
      expect(names).toContain(name)
    }
    expect(names.some((name) => name.startsWith('LRANGE_600'))).toBe(true)
    for (const { name, rps } of proxy.results) expect(rps, name).toBeGreaterThan(0)
  }, 240_000)
})

describe('redis-cli', () => {
  const cli = (side: Side, args: string[], input?: string | Buffer) =>
    runProcess('redis-cli', ['-h', '127.0.0.1', '-p', String(side.port), ...args], input)

  test('-x takes the value from stdin, bytes included', async () => {
    const value = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const { redis, proxy } = await onBoth(async (side) => {
      const text = await cli(side, ['-x', 'SET', 'x:text'], 'hello')
      const bytes = await cli(side, ['-x', 'SET', 'x:bytes'], value)
      return {
        set: [text.stdout.toString(), bytes.stdout.toString()],
        text: (await cli(side, ['GET', 'x:text'])).stdout.toString(),
        bytes: await side.server.command('GET', 'x:bytes'),
        // Through the side itself, after the write: the proxy's cache must not answer from before it.
        strlen: (await cli(side, ['STRLEN', 'x:bytes'])).stdout.toString(),
      }
    })
    expect(proxy).toEqual({ set: ['OK\n', 'OK\n'], text: 'hello\n', bytes: value, strlen: '256\n' })
    expect(proxy).toEqual(redis)
  })

  test('--scan --pattern lists the keys it lists against Redis, across cursors', async () => {
    const { redis, proxy } = await onBoth(async (side) => {
      const load = ['MSET', ...Array.from({ length: 60 }, (_, i) => [`scan:${i}`, 'v']).flat()]
      await side.server.command(...load, 'noscan:1', 'v', 'noscan:2', 'v')
      const ran = await cli(side, ['--scan', '--pattern', 'scan:*'])
      expect(ran.code).toBe(0)
      return ran.stdout.toString().split('\n').filter(Boolean).sort()
    })
    expect(proxy).toEqual(Array.from({ length: 60 }, (_, i) => `scan:${i}`).sort())
    expect(proxy).toEqual(redis)
  })

  test('--pipe sends a thousand commands and reads every reply', async () => {
    const commands = Array.from({ length: 1000 }, (_, i) => `SET pipe:${i} ${i}\r\n`).join('')
    const { redis, proxy } = await onBoth(async (side) => {
      const ran = await cli(side, ['--pipe'], `${commands}INCR pipe:999\r\n`)
      return {
        code: ran.code,
        output: `${ran.stdout.toString()}${ran.stderr}`,
        last: (await cli(side, ['GET', 'pipe:999'])).stdout.toString(),
      }
    })
    expect(proxy.code).toBe(0)
    expect(proxy.output).toContain('errors: 0, replies: 1001')
    expect(proxy.last).toBe('1000\n')
    expect(proxy).toEqual(redis)
  })

  for (const protocol of [[], ['-3']]) {
    test(`an interactive session on stdin runs MULTI/EXEC on one connection (${protocol.length === 0 ? 'RESP2' : 'RESP3'})`, async () => {
      const { redis, proxy } = await onBoth(async (side) => {
        await side.server.command('DEL', 'a')
        const ran = await cli(side, protocol, 'GET a\nMULTI\nSET a 1\nINCR a\nEXEC\nGET a\n')
        return { code: ran.code, stdout: ran.stdout.toString('latin1') }
      })
      expect(proxy).toEqual({ code: 0, stdout: '\nOK\nQUEUED\nQUEUED\nOK\n2\n2\n' })
      expect(proxy).toEqual(redis)
    })
  }
})

describe('ioredis', () => {
  const open = (side: Side) => new Redis({ host: '127.0.0.1', port: side.port, lazyConnect: true })

  /** Runs `body` with `count` connected clients, quitting them all afterwards. */
  async function withClients<T>(
    side: Side,
    count: number,
    body: (clients: Redis[]) => Promise<T>,
  ): Promise<T> {
    const clients = Array.from({ length: count }, () => open(side))
    try {
      await Promise.all(clients.map((client) => client.connect()))
      return await body(clients)
    } finally {
      await Promise.all(clients.map((client) => client.quit().catch(() => {})))
    }
  }

  test('a transaction, then the value it wrote', async () => {
    const { redis, proxy } = await onBoth((side) =>
      withClients(side, 1, async ([client]) => {
        if (client === undefined) throw new Error('no client')
        await client.set('io:tx', 'before')
        const before = await client.get('io:tx')
        const exec = await client.multi().set('io:tx', '1').incr('io:tx').exec()
        return { before, exec, after: await client.get('io:tx') }
      }),
    )
    expect(proxy).toEqual({
      before: 'before',
      exec: [
        [null, 'OK'],
        [null, 2],
      ],
      after: '2',
    })
    expect(proxy).toEqual(redis)
  })

  test('Lua through eval and defineCommand (EVALSHA, NOSCRIPT, EVAL)', async () => {
    const { redis, proxy } = await onBoth((side) =>
      withClients(side, 1, async ([client]) => {
        if (client === undefined) throw new Error('no client')
        await client.script('FLUSH')
        await client.set('io:lua', '10')
        const cached = await client.get('io:lua')
        const evaluated = await client.eval(
          "return redis.call('INCRBY', KEYS[1], ARGV[1])",
          1,
          'io:lua',
          '5',
        )
        const afterEval = await client.get('io:lua')
        client.defineCommand('appendTwice', {
          numberOfKeys: 1,
          lua: "redis.call('APPEND', KEYS[1], ARGV[1]); return redis.call('APPEND', KEYS[1], ARGV[1])",
        })
        const custom = client as Redis & {
          appendTwice(key: string, value: string): Promise<number>
        }
        // The first call meets NOSCRIPT and falls back to EVAL; the second is served by EVALSHA.
        const first = await custom.appendTwice('io:lua', '!')
        const second = await custom.appendTwice('io:lua', '?')
        return { cached, evaluated, afterEval, first, second, after: await client.get('io:lua') }
      }),
    )
    expect(proxy).toEqual({
      cached: '10',
      evaluated: 15,
      afterEval: '15',
      first: 4,
      second: 6,
      after: '15!!??',
    })
    expect(proxy).toEqual(redis)
  })

  test('a subscriber receives what another client publishes', async () => {
    const { redis, proxy } = await onBoth((side) =>
      withClients(side, 2, async ([subscriber, publisher]) => {
        if (subscriber === undefined || publisher === undefined) throw new Error('no client')
        const received = new Promise<[string, string]>((resolve) =>
          subscriber.once('message', (channel: string, message: string) =>
            resolve([channel, message]),
          ),
        )
        const subscribed = await subscriber.subscribe('io:chan')
        const receivers = await publisher.publish('io:chan', 'hello')
        return { subscribed, receivers, received: await received }
      }),
    )
    expect(proxy).toEqual({ subscribed: 1, receivers: 1, received: ['io:chan', 'hello'] })
    expect(proxy).toEqual(redis)
  })

  test('a BLPOP is woken by an RPUSH from another client', async () => {
    const { redis, proxy } = await onBoth((side) =>
      withClients(side, 2, async ([waiter, pusher]) => {
        if (waiter === undefined || pusher === undefined) throw new Error('no client')
        await pusher.del('io:queue')
        const popped = waiter.blpop('io:queue', 10)
        await blockedClients(side.server, 1)
        const pushed = await pusher.rpush('io:queue', 'job')
        return { pushed, popped: await popped, left: await pusher.llen('io:queue') }
      }),
    )
    expect(proxy).toEqual({ pushed: 1, popped: ['io:queue', 'job'], left: 0 })
    expect(proxy).toEqual(redis)
  })

  test('a pipeline of writes and reads, an error in its midst', async () => {
    const { redis, proxy } = await onBoth((side) =>
      withClients(side, 1, async ([client]) => {
        if (client === undefined) throw new Error('no client')
        await client.del('io:p', 'io:list')
        const results = await client
          .pipeline()
          .set('io:p', '1')
          .get('io:p')
          .incr('io:p')
          .get('io:p')
          .rpush('io:list', 'a', 'b')
          .incr('io:list')
          .lrange('io:list', 0, -1)
          .exec()
        return results?.map(([error, value]) => (error === null ? value : String(error)))
      }),
    )
    expect(proxy).toEqual([
      'OK',
      '1',
      2,
      '2',
      2,
      'ReplyError: WRONGTYPE Operation against a key holding the wrong kind of value',
      ['a', 'b'],
    ])
    expect(proxy).toEqual(redis)
  })
})

for (const RESP of [2, 3] as const) {
  describe(`node-redis (RESP${RESP})`, () => {
    const connect = async (side: Side) => {
      const client = createClient({ socket: { host: '127.0.0.1', port: side.port }, RESP })
      client.on('error', () => {})
      await client.connect()
      return client
    }
    const key = (name: string) => `nr${RESP}:${name}`

    test('set and get, and a transaction', async () => {
      const { redis, proxy } = await onBoth(async (side) => {
        const client = await connect(side)
        try {
          const set = await client.set(key('k'), 'v')
          const get = await client.get(key('k'))
          const exec = await client.multi().set(key('k'), 'w').get(key('k')).exec()
          return { set, get, exec, after: await client.get(key('k')) }
        } finally {
          client.destroy()
        }
      })
      expect(proxy).toEqual({ set: 'OK', get: 'v', exec: ['OK', 'w'], after: 'w' })
      expect(proxy).toEqual(redis)
    })

    test('a duplicate() subscriber receives what the client publishes', async () => {
      const { redis, proxy } = await onBoth(async (side) => {
        const client = await connect(side)
        const subscriber = client.duplicate()
        subscriber.on('error', () => {})
        try {
          await subscriber.connect()
          let deliver: (got: [string, string]) => void = () => {}
          const received = new Promise<[string, string]>((resolve) => {
            deliver = resolve
          })
          await subscriber.subscribe(key('chan'), (message, channel) => deliver([channel, message]))
          const receivers = await client.publish(key('chan'), 'hello')
          return { receivers, received: await received }
        } finally {
          subscriber.destroy()
          client.destroy()
        }
      })
      expect(proxy).toEqual({ receivers: 1, received: [key('chan'), 'hello'] })
      expect(proxy).toEqual(redis)
    })

    test('sendCommand of commands the proxy forwards', async () => {
      const { redis, proxy } = await onBoth(async (side) => {
        const client = await connect(side)
        try {
          await client.del(key('h'))
          return {
            hset: await client.sendCommand(['HSET', key('h'), 'f', 'v', 'g', 'w']),
            hgetall: await client.sendCommand(['HGETALL', key('h')]),
            encoding: await client.sendCommand(['OBJECT', 'ENCODING', key('h')]),
            type: await client.sendCommand(['TYPE', key('h')]),
          }
        } finally {
          client.destroy()
        }
      })
      expect(proxy).toMatchObject({ hset: 2, encoding: 'listpack', type: 'hash' })
      expect(proxy).toEqual(redis)
    })
  })
}

describe('redis-py (Debian python3-redis, RESP2)', () => {
  // Debian's interpreter, where python3-redis installs (.ci/run installs it).
  const python = '/usr/bin/python3'
  const script = `
import sys, redis
port = int(sys.argv[1])
r = redis.Redis(host='127.0.0.1', port=port)
r.delete('py:a', 'py:l')
out = {}
p = r.pipeline(transaction=False)
p.set('py:a', 1).incr('py:a').get('py:a').rpush('py:l', 'x', 'y').lrange('py:l', 0, -1)
out['plain'] = p.execute()
p = r.pipeline(transaction=True)
p.set('py:a', 10).incr('py:a').get('py:a')
out['multi'] = p.execute()
out['after'] = r.get('py:a')
sub = redis.Redis(host='127.0.0.1', port=port).pubsub()
sub.subscribe('py:chan')
out['subscribed'] = sub.get_message(timeout=5)
out['published'] = r.publish('py:chan', b'hi')
out['message'] = sub.get_message(timeout=5)
sub.close()
print(repr(out))
`

  test('pipelines with and without a transaction, and pub/sub', async () => {
    const { redis, proxy } = await onBoth(async (side) => {
      const ran = await runProcess(python, ['-c', script, String(side.port)], '', 20_000)
      return { code: ran.code, stdout: ran.stdout.toString(), stderr: ran.stderr }
    })
    expect(proxy).toEqual({
      code: 0,
      stdout:
        "{'plain': [True, 2, b'2', 2, [b'x', b'y']], 'multi': [True, 11, b'11'], 'after': b'11', " +
        "'subscribed': {'type': 'subscribe', 'pattern': None, 'channel': b'py:chan', 'data': 1}, " +
        "'published': 1, " +
        "'message': {'type': 'message', 'pattern': None, 'channel': b'py:chan', 'data': b'hi'}}\n",
      stderr: '',
    })
    expect(proxy).toEqual(redis)
  })
})
