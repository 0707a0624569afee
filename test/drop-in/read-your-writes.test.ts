import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { listenOnLoopback } from '../harness/ports.js'
import { startRespProxy, type TestRespProxy } from '../harness/proxy.js'
import { startRedis, type TestRedis } from '../harness/redis-server.js'
import { command, rawConnect } from '../harness/resp-client.js'
import { parseCommand } from '../harness/scripted-redis.js'
import { readYourWrites } from './read-your-writes.js'

describe('read-your-writes load against redis-server', () => {
  let redis: TestRedis

  beforeAll(async () => {
    redis = await startRedis()
  })

  afterAll(async () => {
    await redis?.stop()
  })

  test('50 clients x 200 pairs never read a stale value', async () => {
    const report = await readYourWrites({ port: redis.port, clients: 50, pairs: 200 })
    expect(report).toEqual({ pairs: 10_000, stale: 0, unexpected: 0, samples: [] })
  })

  test('with MULTI/EXEC pairs as well, never a stale value', async () => {
    const report = await readYourWrites({
      port: redis.port,
      clients: 50,
      pairs: 200,
      multi: true,
      prefix: 'ryw-multi',
    })
    expect(report).toEqual({ pairs: 10_000, stale: 0, unexpected: 0, samples: [] })
  })
})

describe.each([
  ['on', false],
  ['on', true],
  ['off', false],
  ['off', true],
])(
  'read-your-writes through the proxy with CACHE_INVALIDATION=%s (RESP3: %s)',
  (invalidation, resp3) => {
    let redis: TestRedis
    let proxy: TestRespProxy

    beforeAll(async () => {
      redis = await startRedis()
      // A long expiry: only the proxy's own eviction can explain a fresh read.
      proxy = await startRespProxy(redis.url, {
        CACHE_GLOBAL_EXPIRY: '600000',
        CACHE_INVALIDATION: invalidation,
      })
    })

    afterAll(async () => {
      await proxy?.close()
      await redis?.stop()
    })

    test('50 clients x 2,000 SET/GET, INCR/GET and HSET+DEL/GET pairs, pipelined, never read a stale value', async () => {
      const report = await readYourWrites({
        port: proxy.port,
        clients: 50,
        pairs: 2000,
        resp3,
        timeoutMs: 120_000,
        prefix: `ryw-${invalidation}-${resp3}`,
      })
      expect(report).toEqual({ pairs: 100_000, stale: 0, unexpected: 0, samples: [] })
      // A RESP3 client's reads go through the cache (each right after its write
      // evicted the key, on the same backend connection); a RESP2 client's
      // reads that follow a write in flight are relayed on the write's connection.
      const { misses } = proxy.service.stats()
      if (resp3) expect(misses).toBeGreaterThanOrEqual(100_000)
      else expect(misses).toBe(0)
    }, 150_000)
  },
)

test('with MULTI/EXEC pairs too, each client then on a backend connection of its own, never a stale value', async () => {
  const redis = await startRedis()
  const proxy = await startRespProxy(redis.url, { CACHE_GLOBAL_EXPIRY: '600000' })
  try {
    const report = await readYourWrites({
      port: proxy.port,
      clients: 50,
      pairs: 2000,
      multi: true,
      timeoutMs: 120_000,
      prefix: 'ryw-multi-proxy',
    })
    expect(report).toEqual({ pairs: 100_000, stale: 0, unexpected: 0, samples: [] })
  } finally {
    await proxy.close()
    await redis.stop()
  }
}, 150_000)

describe('read-your-writes against a responder that caches GET forever', () => {
  let stale: StaleResponder

  beforeAll(async () => {
    stale = await startStaleResponder()
  })

  afterAll(async () => {
    await stale?.close()
  })

  // Per client, 8 pairs: the first GET of k fills the responder's cache and
  // is right; each later pair on k (SET, INCR, and MULTI when on) reads that
  // first value; the hash pairs read a key only ever missing, so they pass.
  test('counts each GET that misses its own SET or INCR', async () => {
    const report = await readYourWrites({ port: stale.port, clients: 3, pairs: 8, prefix: 'set' })
    // Pairs 0..7 rotate SET, INCR, HSET+DEL: k is read by pairs 0 1 3 4 6 7.
    expect(report).toMatchObject({ pairs: 24, stale: 3 * 5, unexpected: 0 })
    expect(report.samples[0]).toMatch(/^stale: client \d pair 1: /)
  })

  test('counts each GET that misses its own MULTI/EXEC', async () => {
    const report = await readYourWrites({
      port: stale.port,
      clients: 3,
      pairs: 8,
      multi: true,
      prefix: 'multi',
    })
    // SET, INCR, HSET+DEL, MULTI in rotation: k is read by pairs 0 1 3 4 5 7.
    expect(report).toMatchObject({ pairs: 24, stale: 3 * 5, unexpected: 0 })
    expect(report.samples.some((sample) => /pair 3: .*QUEUED/.test(sample))).toBe(true)
  })

  test('counts a write answered unlike Redis as unexpected, not stale', async () => {
    stale.failWrites(true)
    try {
      const report = await readYourWrites({
        port: stale.port,
        clients: 1,
        pairs: 3,
        prefix: 'fail',
      })
      expect(report).toMatchObject({ pairs: 3, stale: 0, unexpected: 3 })
    } finally {
      stale.failWrites(false)
    }
  })
})

test('a run against a server that never answers fails within its time bound', async () => {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
  })
  const port = await listenOnLoopback(silent)
  try {
    await expect(readYourWrites({ port, clients: 2, pairs: 5, timeoutMs: 300 })).rejects.toThrow(
      'read-your-writes: 0 of 10 pairs done in 300 ms',
    )
  } finally {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => silent.close(() => resolve()))
  }
})

type StaleResponder = { port: number; failWrites(on: boolean): void; close(): Promise<void> }

/**
 * A RESP server whose writes reach its store but whose GET answers from a
 * cache that is filled on the first read and never invalidated: the bug the
 * load generator exists to catch. Each connection's keys are its own client's,
 * so one store serves all.
 */
async function startStaleResponder(): Promise<StaleResponder> {
  const store = new Map<string, string | Map<string, string>>()
  const cache = new Map<string, string>()
  const sockets = new Set<Socket>()
  let failing = false

  const bulk = (value: string): string => `$${Buffer.byteLength(value)}\r\n${value}\r\n`
  const execute = (args: string[]): string => {
    const [name = '', key = ''] = args
    if (failing && name !== 'GET') return '-ERR scripted failure\r\n'
    switch (name.toUpperCase()) {
      case 'SET':
        store.set(key, args[2] ?? '')
        return '+OK\r\n'
      case 'INCR': {
        const next = String(Number(store.get(key) ?? '0') + 1)
        store.set(key, next)
        return `:${next}\r\n`
      }
      case 'HSET': {
        const hash = new Map([[args[2] ?? '', args[3] ?? '']])
        store.set(key, hash)
        return ':1\r\n'
      }
      case 'DEL':
        return store.delete(key) ? ':1\r\n' : ':0\r\n'
      case 'GET': {
        const cached = cache.get(key)
        if (cached !== undefined) return cached
        const value = store.get(key)
        const reply =
          value === undefined
            ? '$-1\r\n'
            : typeof value === 'string'
              ? bulk(value)
              : '-WRONGTYPE Operation against a key holding the wrong kind of value\r\n'
        cache.set(key, reply)
        return reply
      }
      default:
        return `-ERR unknown command '${name}'\r\n`
    }
  }

  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffered = Buffer.alloc(0)
    let queued: string[][] | undefined
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      let out = ''
      for (;;) {
        const parsed = parseCommand(buffered)
        if (parsed === undefined) break
        buffered = buffered.subarray(parsed.end)
        const name = (parsed.args[0] ?? '').toUpperCase()
        if (name === 'MULTI') {
          queued = []
          out += '+OK\r\n'
        } else if (name === 'EXEC' && queued !== undefined) {
          out += `*${queued.length}\r\n${queued.map(execute).join('')}`
          queued = undefined
        } else if (queued !== undefined) {
          queued.push(parsed.args)
          out += '+QUEUED\r\n'
        } else {
          out += execute(parsed.args)
        }
      }
      if (out !== '') socket.write(out)
    })
  })
  const port = await listenOnLoopback(server)
  return {
    port,
    failWrites: (on) => {
      failing = on
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

describe.each([false, true])(
  'a script’s writes to its declared keys, with CACHE_INVALIDATION=off (RESP3: %s)',
  (resp3) => {
    test('the next GET sees what EVAL, EVALSHA and FCALL wrote, not the cached value', async () => {
      const redis = await startRedis()
      // No invalidation from Redis and a long expiry: only the proxy's own
      // eviction, when the script's reply comes, can make the next read fresh.
      const proxy = await startRespProxy(redis.url, {
        CACHE_GLOBAL_EXPIRY: '600000',
        CACHE_INVALIDATION: 'off',
      })
      const client = await rawConnect(proxy.port)
      const ask = async (...args: string[]) => {
        client.send(command(...args))
        const [reply] = await client.replies(1)
        return reply === null ? null : String(reply)
      }
      try {
        if (resp3) await ask('HELLO', '3')
        const cachedNow = async (expected: string) => {
          const before = proxy.service.stats().hits
          expect(await ask('GET', 'script:k')).toBe(expected)
          expect(await ask('GET', 'script:k')).toBe(expected)
          // The second read came from the cache.
          expect(proxy.service.stats().hits).toBeGreaterThan(before)
        }
        expect(await ask('SET', 'script:k', 'old')).toBe('OK')
        await cachedNow('old')
        await ask('EVAL', "return redis.call('SET', KEYS[1], ARGV[1])", '1', 'script:k', 'eval')
        await cachedNow('eval')
        const sha = await ask('SCRIPT', 'LOAD', "return redis.call('SET', KEYS[1], ARGV[1])")
        await ask('EVALSHA', String(sha), '1', 'script:k', 'evalsha')
        await cachedNow('evalsha')
        await ask(
          'FUNCTION',
          'LOAD',
          "#!lua name=ryw\nredis.register_function('setk', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
        )
        await ask('FCALL', 'setk', '1', 'script:k', 'fcall')
        await cachedNow('fcall')
        await ask('EVAL', "return redis.call('DEL', KEYS[1])", '1', 'script:k')
        expect(await ask('GET', 'script:k')).toBeNull()
      } finally {
        client.close()
        await proxy.close()
        await redis.stop()
      }
    }, 30_000)
  },
)
