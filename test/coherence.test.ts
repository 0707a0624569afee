import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { createLogger, type Logger } from '../shared/log.js'
import { askUntil } from './harness/ask-until.js'
import { busyWithScript, rejectedCalls } from './harness/busy-script.js'
import { type DelayRelay, startDelayRelay } from './harness/delay-relay.js'
import { proxiedRedis } from './harness/proxied-redis.js'
import {
  startHttpProxy,
  startRespProxy,
  type TestHttpProxy,
  type TestRespProxy,
  waitReady,
} from './harness/proxy.js'
import { backendGetCount, sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { type RewriteRelay, startRewriteRelay } from './harness/rewrite-relay.js'
import { type ScriptedRedis, startScriptedRedis } from './harness/scripted-redis.js'
import { type SplitRelay, startSplitRelay } from './harness/split-relay.js'

type Answer = { status: number; body: string; cache: string | null }

async function read(proxy: TestHttpProxy, path: string): Promise<Answer> {
  const res = await fetch(`${proxy.url}/get/${path}`)
  return { status: res.status, body: await res.text(), cache: res.headers.get('x-cache') }
}

async function invalidationMode(proxy: TestHttpProxy): Promise<string> {
  const status = (await (await fetch(`${proxy.url}/`)).json()) as { invalidation: string }
  return status.invalidation
}

/** A key read twice, so it is certainly cached. */
async function cached(proxy: TestHttpProxy, path: string, value: string): Promise<void> {
  expect(await read(proxy, path)).toMatchObject({ status: 200, body: value })
  expect(await read(proxy, path)).toEqual({ status: 200, body: value, cache: 'HIT' })
}

/** Redis's view of the proxy's tracking: the flags of its tracking client, the keys it remembers. */
async function trackingSeenByRedis(redis: TestRedis): Promise<{ flags: string[]; keys: number }> {
  const clients = String(await redis.command('CLIENT', 'LIST'))
  const flags = [...clients.matchAll(/ flags=(\S*) /g)]
    .map((m) => m[1] as string)
    .filter((f) => f.includes('t'))
  const stats = String(await redis.command('INFO', 'stats'))
  const keys = Number(/tracking_total_keys:(\d+)/.exec(stats)?.[1])
  return { flags, keys }
}

describe.each([
  ['bcast', ['tB'], 0],
  ['keys', ['t'], 3],
] as const)(
  'with CACHE_INVALIDATION=on and CACHE_TRACKING=%s, a write by another client reaches the cache',
  (tracking, flags, remembered) => {
    let redis: TestRedis
    let proxy: TestHttpProxy
    // A long expiry, so only an invalidation can explain a fresh value.
    proxiedRedis(
      { env: { CACHE_GLOBAL_EXPIRY: '600000', CACHE_TRACKING: tracking } },
      (parts) => ({ redis, proxy } = parts),
    )

    it('reports the mode in GET /', async () => {
      expect(await invalidationMode(proxy)).toBe('on')
    })

    it('asks Redis for the tracking named, which remembers keys read only when told to', async () => {
      for (const key of ['seen-1', 'seen-2', 'seen-3']) {
        await redis.command('SET', `${key}`, 'v')
        await read(proxy, key)
      }
      expect(await trackingSeenByRedis(redis)).toEqual({ flags, keys: remembered })
    })

    it('SET: the next read answers the new value', async () => {
      await redis.command('SET', 'set-me', 'old')
      await cached(proxy, 'set-me', 'old')
      await redis.command('SET', 'set-me', 'new')
      const fresh = await askUntil(
        () => read(proxy, 'set-me'),
        (a) => a.body !== 'old',
      )
      expect(fresh).toEqual({ status: 200, body: 'new', cache: 'MISS' })
      expect(await read(proxy, 'set-me')).toEqual({ status: 200, body: 'new', cache: 'HIT' })
    })

    it('DEL: the key is gone', async () => {
      await redis.command('SET', 'del-me', 'here')
      await cached(proxy, 'del-me', 'here')
      await redis.command('DEL', 'del-me')
      const gone = await askUntil(
        () => read(proxy, 'del-me'),
        (a) => a.status !== 200,
      )
      expect(gone).toEqual({ status: 404, body: 'del-me not found!', cache: null })
    })

    it('EXPIRE firing in Redis: the key is gone, long before the cache expiry', async () => {
      await redis.command('SET', 'short-lived', 'soon gone', 'PX', '300')
      await cached(proxy, 'short-lived', 'soon gone')
      const gone = await askUntil(
        () => read(proxy, 'short-lived'),
        (a) => a.status !== 200,
        3000,
      )
      expect(gone.status).toBe(404)
    })

    it('FLUSHALL: every cached key is gone', async () => {
      const keys = ['f1', 'f2', 'f3']
      for (const key of keys) {
        await redis.command('SET', key, `v-${key}`)
        await cached(proxy, key, `v-${key}`)
      }
      await redis.command('FLUSHALL')
      for (const key of keys) {
        expect(
          await askUntil(
            () => read(proxy, key),
            (a) => a.status !== 200,
          ),
        ).toMatchObject({ status: 404 })
      }
    })

    it('binary and UTF-8 keys are evicted by their raw bytes', async () => {
      const binary = Buffer.from([0xff, 0x00, 0x2f, 0x41])
      const utf8 = Buffer.from('clé/ключ', 'utf8')
      const paths = ['%FF%00%2FA', encodeURIComponent('clé/ключ')]
      await redis.command('SET', binary, 'b1')
      await redis.command('SET', utf8, 'u1')
      await cached(proxy, paths[0] as string, 'b1')
      await cached(proxy, paths[1] as string, 'u1')
      await redis.command('SET', binary, 'b2')
      await redis.command('SET', utf8, 'u2')
      expect(
        await askUntil(
          () => read(proxy, paths[0] as string),
          (a) => a.body !== 'b1',
        ),
      ).toMatchObject({ body: 'b2' })
      expect(
        await askUntil(
          () => read(proxy, paths[1] as string),
          (a) => a.body !== 'u1',
        ),
      ).toMatchObject({ body: 'u2' })
    })

    it('GETs racing SETs never leave a stale entry behind', async () => {
      const keys = Array.from({ length: 8 }, (_, i) => `race-${i}`)
      const rounds = 40
      for (let round = 0; round < rounds; round++) {
        await Promise.all(
          keys.map(async (key) => {
            const value = `${key}:${round}`
            // Reads in flight while the write lands: some start before it, some after.
            await Promise.all([
              read(proxy, key),
              redis.command('SET', key, value),
              read(proxy, key),
              sleep(1).then(() => read(proxy, key)),
            ])
            // Whatever the interleaving, the cache must not keep an older value.
            await askUntil(
              () => read(proxy, key),
              (a) => a.body === value,
            )
            expect(await read(proxy, key)).toMatchObject({ body: value })
          }),
        )
      }
    })
  },
)

describe.each(['bcast', 'keys'])(
  "with CACHE_TRACKING=%s, a write that Redis runs between a load's GET and PTTL",
  (tracking) => {
    let redis: TestRedis
    let relay: SplitRelay
    let proxy: TestHttpProxy
    proxiedRedis(
      {
        env: { CACHE_GLOBAL_EXPIRY: '600000', CACHE_TRACKING: tracking },
        relay: startSplitRelay,
      },
      (parts) => ({ redis, relay, proxy } = parts),
    )

    it('leaves the value the GET read answered but not stored: the write came after it', async () => {
      await redis.command('SET', 'split', 'old')
      relay.arm('split', () => redis.command('SET', 'split', 'new'))
      // Redis ran the GET before the write: this request is answered the old value.
      expect(await read(proxy, 'split')).toEqual({ status: 200, body: 'old', cache: 'MISS' })
      expect(relay.splits()).toBe(1)
      // The write's invalidation came between the two replies: nothing stale kept.
      expect(await read(proxy, 'split')).toEqual({ status: 200, body: 'new', cache: 'MISS' })
      expect(await read(proxy, 'split')).toEqual({ status: 200, body: 'new', cache: 'HIT' })
    })

    // With `keys`, Redis tells only of keys this connection has read, and it
    // reads split-b only after the write: no push would name it.
    it.runIf(tracking === 'bcast')(
      'stores the load of another key that push names: its GET ran after the write',
      async () => {
        await redis.command('SET', 'split-a', 'a')
        await redis.command('SET', 'split-b', 'old')
        const begun = proxy.service.flightsBegun()
        const splits = relay.splits()
        relay.arm('split-a', async () => {
          // Both loads are on their way (split-b's GET behind the held PTTL).
          await askUntil(
            () => proxy.service.flightsBegun(),
            (n) => n >= begun + 2,
          )
          await redis.command('SET', 'split-b', 'new')
        })
        const [a, b] = await Promise.all([read(proxy, 'split-a'), read(proxy, 'split-b')])
        expect(relay.splits()).toBe(splits + 1)
        expect(a).toEqual({ status: 200, body: 'a', cache: 'MISS' })
        expect(b).toEqual({ status: 200, body: 'new', cache: 'MISS' })
        // The push came between split-a's replies and named split-b only:
        // both loads were kept.
        expect(await read(proxy, 'split-a')).toEqual({ status: 200, body: 'a', cache: 'HIT' })
        expect(await read(proxy, 'split-b')).toEqual({ status: 200, body: 'new', cache: 'HIT' })
      },
    )
  },
)

describe('a server that refuses BCAST', () => {
  let redis: TestRedis
  let relay: RewriteRelay
  let proxy: TestHttpProxy
  const lines: string[] = []
  const warnings = () =>
    lines.filter((line) => line.includes('"level":"warn"')).map((line) => JSON.parse(line).msg)
  proxiedRedis(
    {
      env: { CACHE_GLOBAL_EXPIRY: '600000' },
      log: createLogger('info', (line) => lines.push(line)),
      // Redis answers CLIENT TRACKING ON BCASX with a syntax error.
      relay: (port) => startRewriteRelay(port, 'BCAST', 'BCASX'),
    },
    (parts) => ({ redis, relay, proxy } = parts),
  )

  it('is asked to track the keys read instead, with one warning, and its writes evict', async () => {
    expect(await invalidationMode(proxy)).toBe('on')
    expect(relay.rewrites()).toBe(1)
    expect(warnings()).toEqual([expect.stringMatching(/refuses CLIENT TRACKING BCAST/)])
    await redis.command('SET', 'fb', 'old')
    await cached(proxy, 'fb', 'old')
    expect(await trackingSeenByRedis(redis)).toEqual({ flags: ['t'], keys: 1 })
    await redis.command('SET', 'fb', 'new')
    expect(
      await askUntil(
        () => read(proxy, 'fb'),
        (a) => a.body !== 'old',
      ),
    ).toMatchObject({ body: 'new' })
  })

  it('is not asked for BCAST again when the connection comes back', async () => {
    const clients = String(await redis.command('CLIENT', 'LIST'))
    const id = /(?:^|\n)id=(\d+) [^\n]* flags=t /.exec(clients)?.[1]
    expect(id).toBeDefined()
    await redis.command('CLIENT', 'KILL', 'ID', id as string)
    await askUntil(
      () => trackingSeenByRedis(redis),
      (seen) => seen.flags.length === 1,
    )
    expect(
      await askUntil(
        () => invalidationMode(proxy),
        (mode) => mode === 'on',
      ),
    ).toBe('on')
    expect(relay.rewrites()).toBe(1)
    expect(warnings()).toEqual([
      expect.stringMatching(/refuses CLIENT TRACKING BCAST/),
      expect.stringMatching(/^invalidation channel lost/),
    ])
  })
})

describe('with CACHE_PREFIXES, only keys under them are cached and heard of', () => {
  let redis: TestRedis
  let proxy: TestHttpProxy
  proxiedRedis(
    { env: { CACHE_GLOBAL_EXPIRY: '600000', CACHE_PREFIXES: 'c:,é:' } },
    (parts) => ({ redis, proxy } = parts),
  )

  it('caches a key under a prefix and evicts it on a write', async () => {
    await redis.command('SET', 'c:k', 'old')
    await cached(proxy, 'c:k', 'old')
    await redis.command('SET', 'c:k', 'new')
    expect(
      await askUntil(
        () => read(proxy, 'c:k'),
        (a) => a.body !== 'old',
      ),
    ).toMatchObject({ body: 'new' })
  })

  it('reads a key outside them from Redis every time, found or missing', async () => {
    await redis.command('SET', 'o:k', 'v')
    const gets = await backendGetCount(redis)
    for (let i = 0; i < 3; i++) {
      expect(await read(proxy, 'o:k')).toEqual({ status: 200, body: 'v', cache: 'MISS' })
      expect(await read(proxy, 'o:absent')).toMatchObject({ status: 404 })
    }
    expect((await backendGetCount(redis)) - gets).toBe(6)
  })

  it('hears of no write outside them: Redis broadcasts only under the prefixes', async () => {
    await redis.command('SET', 'é:k', 'é')
    await cached(proxy, '%C3%A9:k', 'é')
    const before = proxy.service.stats().invalidations
    await redis.command('SET', 'o:k', 'w')
    await redis.command('SET', 'other', 'w')
    await redis.command('SET', 'é:k', 'é2')
    // Redis sends invalidations in order: once the last is in, any earlier one is too.
    await askUntil(
      // The service's keys are byte strings: é:k's UTF-8 bytes, one char each.
      () => proxy.service.peek(Buffer.from('é:k').toString('latin1')),
      (value) => value === null,
    )
    expect(proxy.service.stats().invalidations - before).toBe(1)
  })
})

describe('over RESP, the sidecar uses the same service and hears the same writes', () => {
  let redis: TestRedis
  let proxy: TestRespProxy
  let client: Redis

  beforeAll(async () => {
    redis = await startRedis()
    proxy = await startRespProxy(redis.url, {
      CACHE_GLOBAL_EXPIRY: '600000',
    })
    client = new Redis(proxy.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    await client.connect()
  })
  afterAll(async () => {
    client?.disconnect()
    await proxy?.close()
    await redis?.stop()
  })

  it('SET, DEL and FLUSHALL by another client reach GET and INFO', async () => {
    expect(await client.info('proxy')).toContain('invalidation:on')
    await redis.command('SET', 'r', 'old')
    expect(await client.get('r')).toBe('old')
    const hits = proxy.service.stats().hits
    expect(await client.get('r')).toBe('old')
    expect(proxy.service.stats().hits).toBe(hits + 1)

    await redis.command('SET', 'r', 'new')
    expect(
      await askUntil(
        () => client.get('r'),
        (v) => v !== 'old',
      ),
    ).toBe('new')
    await redis.command('DEL', 'r')
    expect(
      await askUntil(
        () => client.get('r'),
        (v) => v !== 'new',
      ),
    ).toBeNull()

    await redis.command('SET', 'r', 'again')
    // The nil read just above is cached: the SET's invalidation may come after its OK.
    expect(
      await askUntil(
        () => client.get('r'),
        (v) => v !== null,
      ),
    ).toBe('again')
    expect(await client.get('r')).toBe('again')
    await redis.command('FLUSHALL')
    expect(
      await askUntil(
        () => client.get('r'),
        (v) => v !== 'again',
      ),
    ).toBeNull()
  })
})

describe.each(['bcast', 'keys'])('keys that do not exist, with CACHE_TRACKING=%s', (tracking) => {
  let redis: TestRedis
  let on: TestHttpProxy
  let off: TestHttpProxy

  beforeAll(async () => {
    redis = await startRedis()
    on = await startHttpProxy(redis.url, {
      CACHE_GLOBAL_EXPIRY: '600000',
      CACHE_TRACKING: tracking,
    })
    off = await startHttpProxy(redis.url, {
      CACHE_INVALIDATION: 'off',
      CACHE_GLOBAL_EXPIRY: '600000',
    })
  })
  afterAll(async () => {
    await on?.close()
    await off?.close()
    await redis?.stop()
  })

  it('are answered 404 from the cache while invalidation is on, and a write that creates one reaches it', async () => {
    const before = await backendGetCount(redis)
    for (let i = 0; i < 20; i++) {
      expect(await read(on, 'nil:a')).toMatchObject({ status: 404, body: 'nil:a not found!' })
    }
    // One backend read for twenty 404s: Redis reports the write that
    // creates the key (by broadcast, or as it tracks a key read even when
    // missing), so the nil is as coherent as a value.
    expect((await backendGetCount(redis)) - before).toBe(1)
    await redis.command('SET', 'nil:a', 'now here')
    expect(
      await askUntil(
        () => read(on, 'nil:a'),
        (answer) => answer.status === 200,
      ),
    ).toMatchObject({ status: 200, body: 'now here' })
  })

  it('are asked of Redis every time while invalidation is off', async () => {
    const before = await backendGetCount(redis)
    for (let i = 0; i < 5; i++) expect((await read(off, 'nil:b')).status).toBe(404)
    expect((await backendGetCount(redis)) - before).toBe(5)
    // So a key created later is seen at once, not after the expiry.
    await redis.command('SET', 'nil:b', 'v')
    expect(await read(off, 'nil:b')).toMatchObject({ status: 200, body: 'v' })
  })

  it('are answered nil over RESP from the cache, in GET and MGET', async () => {
    const proxy = await startRespProxy(redis.url, { CACHE_GLOBAL_EXPIRY: '600000' })
    const client = new Redis(proxy.url, { lazyConnect: true, maxRetriesPerRequest: 0 })
    try {
      await client.connect()
      await redis.command('SET', 'nil:there', 'x')
      const before = await backendGetCount(redis)
      for (let i = 0; i < 10; i++) {
        expect(await client.get('nil:c')).toBeNull()
        expect(await client.mget('nil:c', 'nil:there')).toEqual([null, 'x'])
      }
      // nil:c once, nil:there once.
      expect((await backendGetCount(redis)) - before).toBe(2)
      await redis.command('SET', 'nil:c', 'made')
      expect(
        await askUntil(
          () => client.get('nil:c'),
          (value) => value !== null,
        ),
      ).toBe('made')
    } finally {
      client.disconnect()
      await proxy.close()
    }
  })
})

// Tracking is in-band: Redis writes a GET's reply and the invalidation of a
// later write in order on one stream, so however late the reply reaches the
// proxy, the invalidation comes after it and evicts what it stored.
describe.each(['bcast', 'keys'])(
  'with CACHE_TRACKING=%s, a write that lands while the GET reading the old value is still in flight',
  (tracking) => {
    let redis: TestRedis
    let relay: DelayRelay
    let proxy: TestHttpProxy
    proxiedRedis(
      {
        env: { REDIS_COMMAND_TIMEOUT: '5000', CACHE_TRACKING: tracking },
        // Written before the proxy connects: with BCAST, a write after it
        // would reach the proxy as an invalidation a second later, while its
        // first read is in flight, and keep that read from being stored.
        prepare: (redis) => redis.command('SET', 'slow', 'old'),
        // Everything Redis sends the proxy arrives a second late: room for a
        // noisy machine to get the write in while the GET's reply is on its way.
        relay: (port) => startDelayRelay(port, 1000),
      },
      (parts) => ({ redis, relay, proxy } = parts),
    )

    it("is stored when the write ran before it: the write's invalidation comes first on the stream", async () => {
      // Once the proxy's connection has sent a GET, the relay holds back
      // all it receives.
      await read(proxy, 'warm')
      // Never read before. With BCAST the write's invalidation is on its
      // way (a second late) when the read's GET leaves; Redis runs that GET
      // after the write, so its reply, behind the invalidation, is current.
      await redis.command('SET', 'early', 'two')
      expect(await read(proxy, 'early')).toEqual({ status: 200, body: 'two', cache: 'MISS' })
      expect(await read(proxy, 'early')).toEqual({ status: 200, body: 'two', cache: 'HIT' })
    })

    it('is answered to the request that asked, and evicted by the invalidation that follows it', async () => {
      // Cached (so, without BCAST, Redis tracks `slow` for the proxy); then evicted by a write.
      await cached(proxy, 'slow', 'old')
      await redis.command('SET', 'slow', 'before')
      await askUntil(
        () => proxy.service.peek('slow'),
        (value) => value === null,
      )
      const gets = await backendGetCount(redis)
      const loading = read(proxy, 'slow')
      // Once Redis has answered the GET (with "before"), write again.
      await askUntil(
        () => backendGetCount(redis),
        (count) => count > gets,
      )
      await redis.command('SET', 'slow', 'after')
      expect(await loading).toEqual({ status: 200, body: 'before', cache: 'MISS' })
      expect(
        await askUntil(
          () => read(proxy, 'slow'),
          (a) => a.body !== 'before',
        ),
      ).toEqual({ status: 200, body: 'after', cache: 'MISS' })
    })
  },
)

describe('a Redis busy with a script when the proxy connects', () => {
  let redis: TestRedis
  let close: (() => Promise<void>) | undefined
  let client: Redis | undefined

  beforeAll(async () => {
    // BUSY for most commands once a script has run 100 ms.
    redis = await startRedis(['--busy-reply-threshold', '100'])
  })
  afterEach(async () => {
    client?.disconnect()
    await close?.()
    client = close = undefined
  })
  afterAll(async () => {
    await redis?.stop()
  })

  /**
   * `start`ed (with a logger for its backend) while Redis runs a script,
   * which is killed once the proxy has logged the BUSY it met: a busy
   * Redis answers nothing that could tell, the proxy's log does. Redis's
   * own count of the command's rejected calls confirms which one met it.
   */
  async function startWhileBusy<T>(
    start: (log: Logger) => Promise<T>,
    command: string,
  ): Promise<T> {
    const before = await rejectedCalls(redis, command)
    const done = await busyWithScript(redis)
    const lines: string[] = []
    const starting = start(createLogger('warn', (line) => lines.push(line)))
    try {
      await askUntil(
        () => lines.join(''),
        (logged) => logged.includes('BUSY'),
      )
    } finally {
      await done()
    }
    const started = await starting
    expect(await rejectedCalls(redis, command)).toBeGreaterThan(before)
    return started
  }

  it('CLIENT TRACKING answered BUSY is asked again once it is done, not taken for a refusal', async () => {
    const proxy = await startWhileBusy(
      (log) => startHttpProxy(redis.url, {}, log),
      'client|tracking',
    )
    close = () => proxy.close()
    expect(await invalidationMode(proxy)).toBe('on')
  })

  it('COMMAND answered BUSY is asked again once it is done, so commands are forwarded', async () => {
    const proxy = await startWhileBusy(
      (log) => startRespProxy(redis.url, { CACHE_INVALIDATION: 'off' }, undefined, undefined, log),
      'command',
    )
    close = () => proxy.close()
    client = new Redis({ port: proxy.port, lazyConnect: true, maxRetriesPerRequest: 0 })
    await client.connect()
    expect(await client.set('after-busy', 'v')).toBe('OK')
    expect(await client.get('after-busy')).toBe('v')
  })
})

describe('backend faults with CACHE_INVALIDATION=on', () => {
  let redis: TestRedis
  let proxy: TestHttpProxy
  proxiedRedis(
    { env: { CACHE_GLOBAL_EXPIRY: '600000', REDIS_COMMAND_TIMEOUT: '500' } },
    (parts) => ({ redis, proxy } = parts),
  )

  it('after Redis restarts with a changed value, never serves the old one', async () => {
    await redis.command('SET', 'k', 'old')
    await cached(proxy, 'k', 'old')

    await redis.kill()
    await askUntil(
      () => invalidationMode(proxy),
      (mode) => mode === 'lost',
    )
    // While the channel is down, what is cached is served (until its expiry).
    expect(await read(proxy, 'k')).toEqual({ status: 200, body: 'old', cache: 'HIT' })

    await redis.restart()
    await redis.command('SET', 'k', 'new')
    // From the moment the data connection is back, the cache holds nothing from before.
    const deadline = Date.now() + 10_000
    while (proxy.service.backend() !== 'ready') {
      if (Date.now() > deadline) throw new Error('no reconnection')
      await sleep(5)
    }
    for (let i = 0; i < 20; i++) {
      expect(await read(proxy, 'k')).toMatchObject({ status: 200, body: 'new' })
    }
    await waitReady(proxy.service, 10_000)
    expect(await invalidationMode(proxy)).toBe('on')

    // Tracking is back, redirected to the new subscriber: writes evict again.
    await cached(proxy, 'k', 'new')
    await redis.command('SET', 'k', 'newer')
    expect(
      await askUntil(
        () => read(proxy, 'k'),
        (a) => a.body !== 'new',
      ),
    ).toMatchObject({ body: 'newer' })
  })
})

describe('expiry only', () => {
  let redis: TestRedis
  let backend: ScriptedRedis | undefined
  let proxy: TestHttpProxy | undefined

  beforeAll(async () => {
    redis = await startRedis()
  })
  afterEach(async () => {
    await proxy?.close()
    await backend?.close()
    proxy = undefined
    backend = undefined
  })
  afterAll(async () => redis?.stop())

  it('CACHE_INVALIDATION=off keeps the old value until the expiry', async () => {
    const expiryMs = 60_000
    const off = await startHttpProxy(redis.url, {
      CACHE_INVALIDATION: 'off',
      CACHE_GLOBAL_EXPIRY: String(expiryMs),
    })
    proxy = off
    expect(await invalidationMode(off)).toBe('off')
    // The cache's clock reads performance.now(): real time plus a skip to the expiry.
    const realNow = performance.now.bind(performance)
    let skipped = 0
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => realNow() + skipped)
    try {
      await redis.command('SET', 'e', 'old')
      await cached(off, 'e', 'old')
      await redis.command('SET', 'e', 'new')
      // Far longer than an invalidation takes to arrive when it is on.
      await sleep(200)
      expect(await read(off, 'e')).toEqual({ status: 200, body: 'old', cache: 'HIT' })
      skipped += expiryMs
      expect(
        await askUntil(
          () => read(off, 'e'),
          (a) => a.body !== 'old',
        ),
      ).toEqual({ status: 200, body: 'new', cache: 'MISS' })
    } finally {
      clock.mockRestore()
    }
    const pubsub = String(await redis.command('CLIENT', 'LIST', 'TYPE', 'pubsub'))
    expect(pubsub).toBe('')
  })

  it('a backend without RESP3 gives one warning and expiry-only caching', async () => {
    // The scripted server refuses HELLO like a Redis before 6, which has no tracking either.
    backend = await startScriptedRedis((key) => ({ delayMs: 0, value: `v:${key}` }))
    const lines: string[] = []
    const refused = await startHttpProxy(
      backend.url,
      {},
      createLogger('info', (line) => lines.push(line)),
    )
    proxy = refused
    expect(await invalidationMode(refused)).toBe('unsupported')
    expect(await read(refused, 'k')).toEqual({ status: 200, body: 'v:k', cache: 'MISS' })
    expect(await read(refused, 'k')).toEqual({ status: 200, body: 'v:k', cache: 'HIT' })
    expect(backend.gets()).toEqual(['k'])
    expect(backend.trackingRequests()).toBe(0)
    const warnings = lines.filter((line) => line.includes('"level":"warn"'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('refuses client tracking')
    expect(warnings[0]).toContain('RESP3')
  })
})
