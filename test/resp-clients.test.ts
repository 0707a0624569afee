import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { createClient, RESP_TYPES } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRespProxy, type TestRespProxy } from './harness/proxy.js'
import { backendGetCount, startRedis, type TestRedis } from './harness/redis-server.js'

const run = promisify(execFile)

let redis: TestRedis
let proxy: TestRespProxy
const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i))

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startRespProxy(redis.url)
  await redis.command('SET', 'greeting', 'hello world')
  await redis.command('SET', 'bin', binary)
  await redis.command('SET', 'empty', '')
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

describe('redis-cli', () => {
  const cli = async (port: number, args: string[]) =>
    (
      await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
        encoding: 'buffer',
      })
    ).stdout

  for (const protocol of [[], ['-3']]) {
    const label = protocol.length === 0 ? 'RESP2' : 'RESP3'
    it(`prints what it prints against Redis itself (${label})`, async () => {
      for (const args of [
        ['GET', 'greeting'],
        ['GET', 'missing'],
        ['GET', 'bin'],
        ['--no-raw', 'GET', 'bin'],
        ['GET', 'empty'],
        ['MGET', 'greeting', 'missing', 'bin'],
        ['PING'],
        ['NOSUCH', 'x'],
      ]) {
        const viaProxy = await cli(proxy.port, [...protocol, ...args])
        const direct = await cli(redis.port, [...protocol, ...args])
        expect(viaProxy.toString('latin1'), args.join(' ')).toBe(direct.toString('latin1'))
      }
    })
  }
})

describe('redis-benchmark', () => {
  for (const pipeline of ['1', '16']) {
    it(`runs -t get at pipeline ${pipeline} with no errors, served from the cache`, async () => {
      await redis.command('SET', 'key:__rand_int__', 'x'.repeat(64))
      const before = await backendGetCount(redis)
      const { stdout, stderr } = await run(
        'redis-benchmark',
        [
          '-h',
          '127.0.0.1',
          '-p',
          String(proxy.port),
          '-t',
          'get',
          '-n',
          '20000',
          '-c',
          '20',
          '-P',
          pipeline,
          '-q',
        ],
        { timeout: 30_000 },
      )
      const output = `${stdout}\n${stderr}`
      expect(output).toMatch(/GET: [\d.]+ requests per second/)
      expect(output).not.toMatch(/error/i)
      // 20,000 GETs of one key: a handful reach Redis (concurrent first misses coalesce).
      expect((await backendGetCount(redis)) - before).toBeLessThanOrEqual(1)
    })
  }
})

describe('ioredis (RESP3 by default)', () => {
  let client: Redis
  beforeAll(async () => {
    client = new Redis({ host: '127.0.0.1', port: proxy.port, lazyConnect: true })
    await client.connect()
  })
  afterAll(async () => {
    await client?.quit()
  })

  it('passes its ready check and negotiates RESP3', async () => {
    expect(client.status).toBe('ready')
    const hello = (await client.call('HELLO', '3')) as unknown[]
    expect(hello).toContain('proto')
    expect(hello[hello.indexOf('proto') + 1]).toBe(3)
  })

  it('gets hits, misses and binary values', async () => {
    expect(await client.get('greeting')).toBe('hello world')
    expect(await client.get('greeting')).toBe('hello world')
    expect(await client.get('missing')).toBeNull()
    expect((await client.getBuffer('bin'))?.equals(binary)).toBe(true)
    expect(await client.get('empty')).toBe('')
  })

  it('runs a pipeline and MGET', async () => {
    const results = await client.pipeline().get('greeting').get('missing').getBuffer('bin').exec()
    expect(results?.map(([err]) => err)).toEqual([null, null, null])
    expect(results?.[0]?.[1]).toBe('hello world')
    expect(results?.[1]?.[1]).toBeNull()
    expect((results?.[2]?.[1] as Buffer | undefined)?.equals(binary)).toBe(true)
    expect(await client.mget('greeting', 'missing')).toEqual(['hello world', null])
  })

  it('writes through the proxy and reads its write back', async () => {
    expect(await client.set('ioredis-x', 'y')).toBe('OK')
    expect(await client.get('ioredis-x')).toBe('y')
    expect(await client.incr('ioredis-n')).toBe(1)
    await expect(client.call('NOSUCH')).rejects.toThrow(/unknown command 'NOSUCH'/)
    expect(await client.ping()).toBe('PONG')
  })
})

describe('node-redis (the redis package, RESP3)', () => {
  const connect = () => createClient({ socket: { host: '127.0.0.1', port: proxy.port }, RESP: 3 })
  let connected: ReturnType<typeof connect>
  beforeAll(async () => {
    connected = connect()
    connected.on('error', () => {})
    await connected.connect()
  })
  afterAll(async () => {
    await connected?.close()
  })

  it('negotiates RESP3 and names its library', async () => {
    const info = String(await connected.sendCommand(['CLIENT', 'INFO']))
    expect(info).toContain('resp=3')
    expect(info).toMatch(/lib-name=node-redis/)
  })

  it('gets hits, misses and binary values', async () => {
    expect(await connected.get('greeting')).toBe('hello world')
    expect(await connected.get('greeting')).toBe('hello world')
    expect(await connected.get('missing')).toBeNull()
    const bytes = connected.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
    expect(((await bytes.get('bin')) as unknown as Buffer).equals(binary)).toBe(true)
    expect(await connected.mGet(['greeting', 'missing'])).toEqual(['hello world', null])
  })

  it('pipelines many GETs', async () => {
    const answers = await Promise.all(Array.from({ length: 100 }, () => connected.get('greeting')))
    expect(answers).toEqual(Array(100).fill('hello world'))
  })
})

describe('redis-py (Debian python3-redis, RESP2)', () => {
  // Debian's interpreter, where python3-redis installs (.ci/run installs it).
  const python = '/usr/bin/python3'
  const script = `
import sys, redis
r = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]))
out = {
  'ping': r.ping(),
  'hit': [r.get('greeting'), r.get('greeting')],
  'miss': r.get('missing'),
  'empty': r.get('empty'),
  'binary': r.get('bin') == bytes(range(256)),
  'mget': r.mget(['greeting', 'missing']),
}
p = r.pipeline(transaction=False)
for _ in range(50): p.get('greeting')
out['pipeline'] = len([v for v in p.execute() if v == b'hello world'])
out['written'] = [r.set('py-x', 'y'), r.get('py-x'), r.incr('py-n'), r.hset('py-h', 'f', 'v'), r.hget('py-h', 'f')]
try:
  r.execute_command('NOSUCH')
  out['refused'] = None
except redis.exceptions.ResponseError as e:
  out['refused'] = str(e)
print(repr(out))
`

  it('gets hits, misses, binary values, MGET and a pipeline', async () => {
    const { stdout } = await run(python, ['-c', script, String(proxy.port)], { timeout: 20_000 })
    expect(stdout.trim()).toBe(
      repr({
        ping: true,
        hit: ["b'hello world'", "b'hello world'"],
        miss: null,
        empty: "b''",
        binary: true,
        mget: ["b'hello world'", null],
        pipeline: 50,
        written: [true, "b'y'", 1, 1, "b'v'"],
        refused: "unknown command 'NOSUCH', with args beginning with: ",
      }),
    )
  })
})

/** Python's repr of a dict of the given shape (values already in Python syntax where they are bytes). */
function repr(value: Record<string, unknown>): string {
  const show = (v: unknown): string => {
    if (v === null) return 'None'
    if (v === true) return 'True'
    if (typeof v === 'number') return String(v)
    if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`
    if (typeof v === 'string') return v.startsWith("b'") ? v : `"${v}"`
    return String(v)
  }
  return `{${Object.entries(value)
    .map(([k, v]) => `'${k}': ${show(v)}`)
    .join(', ')}}`
}
