import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyToBytes } from '../shared/keys.js'
import { createIoredisPerReadSource, createIoredisSource } from '../shared/redis/ioredis-source.js'
import { RespSource } from '../shared/redis/resp-source.js'
import { createUpstashRestSource } from '../shared/redis/upstash-rest-source.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'
import { startScriptedRedis } from './harness/scripted-redis.js'
import { createUpstashRest } from './harness/upstash-rest.js'
import { type BackendUnderTest, describeRedisSource } from './source-behaviour.js'

let redis: TestRedis
const rest = createUpstashRest()

beforeAll(async () => {
  redis = await startRedis()
  rest.listen()
})

afterAll(async () => {
  rest.close()
  await redis?.stop()
})

/** A real redis-server: SIGSTOP makes it stall with connections open, SIGKILL takes it down. */
function realRedis(open: BackendUnderTest['open']): BackendUnderTest {
  return {
    open,
    async set(key, value, pxMs) {
      const expiry = pxMs === undefined ? [] : ['PX', String(pxMs)]
      await redis.command('SET', keyToBytes(key), Buffer.from(value), ...expiry)
    },
    async setWrongType(key) {
      await redis.command('RPUSH', keyToBytes(key), 'item')
    },
    async reset() {
      await redis.command('FLUSHALL')
    },
    async stall() {
      const pid = redis.pid() as number
      process.kill(pid, 'SIGSTOP')
      return async () => void process.kill(pid, 'SIGCONT')
    },
    async takeDown() {
      await redis.kill()
      return () => redis.restart()
    },
  }
}

describeRedisSource('ioredis, one long-lived connection', () =>
  realRedis(async ({ commandTimeoutMs }) => {
    const source = createIoredisSource({ url: redis.url, commandTimeoutMs })
    // This source fails fast while disconnected, so reads start once it is ready.
    if (source.client.status !== 'ready') {
      await new Promise((resolve) => source.client.once('ready', resolve))
    }
    return source
  }),
)

describeRedisSource('native RESP, one pipelined connection (Node)', () =>
  realRedis(async ({ commandTimeoutMs }) => {
    let source: RespSource | undefined
    await new Promise<void>((resolve) => {
      source = new RespSource({ url: redis.url, commandTimeoutMs, onReady: () => resolve() })
    })
    return source as RespSource
  }),
)

describeRedisSource('ioredis, a connection per read (Workers over TCP)', () =>
  realRedis(async ({ commandTimeoutMs }) =>
    createIoredisPerReadSource({ url: redis.url, commandTimeoutMs }),
  ),
)

describeRedisSource('Upstash REST (msw, following the documented protocol)', () => ({
  async open({ commandTimeoutMs }) {
    return createUpstashRestSource({ url: rest.url, token: rest.token, commandTimeoutMs })
  },
  async set(key, value, pxMs) {
    rest.set(key, value, pxMs)
  },
  async setWrongType(key) {
    rest.setList(key)
  },
  async reset() {
    rest.flush()
  },
  async stall() {
    const resume = rest.stall()
    return async () => resume()
  },
  async takeDown() {
    const restore = rest.takeDown()
    return async () => restore()
  },
}))

describe('ioredis source specifics', () => {
  it('answers a TTL of 0 when the key is gone by the PTTL (-2 after a value)', async () => {
    const scripted = await startScriptedRedis(() => ({ delayMs: 0, value: 'v' }), {
      pttl: () => -2,
    })
    const source = createIoredisSource({ url: scripted.url })
    try {
      await new Promise((resolve) => source.client.once('ready', resolve))
      const loaded = await source.get('k', performance.now() + 10_000)
      expect(Buffer.from(loaded?.value as Uint8Array).toString()).toBe('v')
      expect(loaded?.ttlMs).toBe(0)
    } finally {
      await source.close()
      await scripted.close()
    }
  })
})

describe('native RESP source specifics', () => {
  it('reads a key of 100 KiB, written as bytes rather than batched text, and stays in step', async () => {
    let source: RespSource | undefined
    await new Promise<void>((resolve) => {
      source = new RespSource({ url: redis.url, onReady: () => resolve() })
    })
    try {
      const long = 'k'.repeat(100 * 1024)
      await redis.command('SET', long, 'long')
      await redis.command('SET', 'short', 'short')
      const deadline = performance.now() + 10_000
      const [a, b, c] = await Promise.all([
        source?.get('short', deadline),
        source?.get(long, deadline),
        source?.get('short', deadline),
      ])
      expect([a, b, c].map((v) => Buffer.from(v?.value as Uint8Array).toString())).toEqual([
        'short',
        'long',
        'short',
      ])
    } finally {
      await source?.close()
    }
  })
})
