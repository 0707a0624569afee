import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { createApp, keyFromTarget } from '../functions/app.js'
import { FAST_PATH_ADAPTER_VERSION } from '../functions/node.js'
import { AuthFailureLimiter } from '../shared/auth/failures.js'
import { askUntil } from './harness/ask-until.js'
import { flushBackend, startHttpProxy, type TestHttpProxy } from './harness/proxy.js'
import { backendGetCount, sleep, startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis
let proxy: TestHttpProxy

beforeAll(async () => {
  redis = await startRedis()
  proxy = await startHttpProxy(redis.url, { CACHE_CAPACITY: '1000', CACHE_GLOBAL_EXPIRY: '60000' })
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
})

beforeEach(async () => {
  await flushBackend(redis, proxy.service)
})

describe('GET /get/{key} against a real redis-server', () => {
  it('answers a miss from Redis, then the same key from the cache without asking Redis', async () => {
    await redis.command('SET', 'greeting', 'hello')
    const before = await backendGetCount(redis)

    const first = await proxy.get('greeting')
    expect(first.status).toBe(200)
    expect(first.headers.get('x-cache')).toBe('MISS')
    expect(await first.text()).toBe('hello')

    const second = await proxy.get('greeting')
    expect(second.headers.get('x-cache')).toBe('HIT')
    expect(await second.text()).toBe('hello')
    expect(await backendGetCount(redis)).toBe(before + 1)
  })

  it('answers 404 with "{key} not found!", and the value once another client creates the key', async () => {
    const missing = await proxy.get('nope')
    expect(missing.status).toBe(404)
    expect(await missing.text()).toBe('nope not found!')

    await redis.command('SET', 'nope', 'now here')
    // The 404 is cached while invalidation is on; the SET's invalidation
    // comes on the proxy's own connection to Redis, so a read sent the
    // instant the SET is acknowledged may still meet it, briefly.
    const later = await askUntil(
      async () => {
        const res = await proxy.get('nope')
        return { status: res.status, body: await res.text() }
      },
      (answer) => answer.status !== 404,
    )
    expect(later).toEqual({ status: 200, body: 'now here' })
  })

  it('returns all 256 byte values and a 1 MiB value byte for byte', async () => {
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const big = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff
    await redis.command('SET', 'bin', every)
    await redis.command('SET', 'big', big)

    for (const round of ['MISS', 'HIT']) {
      const res = await proxy.get('bin')
      expect(res.headers.get('x-cache')).toBe(round)
      expect(Buffer.from(await res.arrayBuffer()).equals(every)).toBe(true)
      const large = await proxy.get('big')
      expect(large.headers.get('x-cache')).toBe(round)
      expect(Buffer.from(await large.arrayBuffer()).equals(big)).toBe(true)
    }
  })

  it('treats the empty string as a value', async () => {
    await redis.command('SET', 'empty', '')
    const res = await proxy.get('empty')
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('')
  })

  it('serves odd keys: slashes, spaces, percent signs, UTF-8 and binary bytes', async () => {
    const keys = ['a/b/c', 'with space', '100%', 'ключ-🔑', 'q?x=1#frag', '']
    for (const key of keys) await redis.command('SET', key, `v:${key}`)
    for (const key of keys) {
      const res = await proxy.get(key)
      expect(res.status, key).toBe(200)
      expect(await res.text()).toBe(`v:${key}`)
    }
    // A key that is not UTF-8 at all, asked for by its percent-encoded bytes.
    await redis.command('SET', Buffer.from([0xff, 0x00, 0x0d, 0x0a]), 'raw')
    const raw = await fetch(`${proxy.url}/get/%FF%00%0D%0A`)
    expect(await raw.text()).toBe('raw')
    // Unencoded slashes are part of the key too.
    const slashed = await fetch(`${proxy.url}/get/a/b/c`)
    expect(await slashed.text()).toBe('v:a/b/c')
  })

  it('rejects bad percent-encoding with 400', async () => {
    const res = await fetch(`${proxy.url}/get/bad%zzkey`)
    expect(res.status).toBe(400)
  })

  it('answers HEAD like GET without a body, and other methods with 405', async () => {
    await redis.command('SET', 'h', 'abc')
    const head = await fetch(`${proxy.url}/get/h`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(await head.text()).toBe('')
    const post = await fetch(`${proxy.url}/get/h`, { method: 'POST' })
    expect(post.status).toBe(405)
    expect(post.headers.get('allow')).toBe('GET, HEAD')
  })

  it('reports its status as JSON on GET /', async () => {
    const res = await fetch(`${proxy.url}/`)
    expect(res.status).toBe(200)
    const body = (await res.json()) as { status: string; backend: string }
    expect(body.status).toBe('ok')
    expect(body.backend).toBe('ready')
  })

  it('coalesces 20 concurrent misses of one key into one backend GET', async () => {
    await redis.command('SET', 'hot', 'value')
    const before = await backendGetCount(redis)
    // Pause Redis so the first GET is still in flight when the other 19 arrive.
    await redis.command('CLIENT', 'PAUSE', '300', 'ALL')
    const answers = await Promise.all(Array.from({ length: 20 }, () => proxy.get('hot')))
    const bodies = await Promise.all(answers.map((res) => res.text()))
    expect(bodies).toEqual(Array(20).fill('value'))
    expect(await backendGetCount(redis)).toBe(before + 1)
  })

  it('answers 502 for a WRONGTYPE key and does not cache the error', async () => {
    await redis.command('LPUSH', 'list', 'x')
    const before = await backendGetCount(redis)
    for (let i = 0; i < 2; i++) {
      const res = await proxy.get('list')
      expect(res.status).toBe(502)
      expect(await res.text()).toBe('Error getting key: list')
    }
    expect(await backendGetCount(redis)).toBe(before + 2)
    await redis.command('DEL', 'list')
    await redis.command('SET', 'list', 'fixed')
    expect(await (await proxy.get('list')).text()).toBe('fixed')
  })
})

describe('cache policy seen through Redis', () => {
  const EXPIRY_MS = 60_000
  let small: TestHttpProxy
  beforeAll(async () => {
    // Expiry alone: with invalidation on, the write below would evict `e` at once.
    // An expiry no pause of a busy machine reaches: the expiry test skips the clock instead.
    small = await startHttpProxy(redis.url, {
      CACHE_CAPACITY: '2',
      CACHE_GLOBAL_EXPIRY: String(EXPIRY_MS),
      CACHE_INVALIDATION: 'off',
    })
  })
  afterAll(async () => small?.close())

  it('evicts the least recently read key when a new key arrives', async () => {
    await redis.command('MSET', 'a', '1', 'b', '2', 'c', '3')
    await small.get('a') // miss
    await small.get('b') // miss
    await small.get('a') // hit: a is now more recent than b
    const before = await backendGetCount(redis)
    await small.get('c') // miss: evicts b
    expect((await small.get('a')).headers.get('x-cache')).toBe('HIT')
    expect((await small.get('c')).headers.get('x-cache')).toBe('HIT')
    expect((await small.get('b')).headers.get('x-cache')).toBe('MISS')
    // c, then b again: 2 GETs reached Redis.
    expect(await backendGetCount(redis)).toBe(before + 2)
  })

  it('expires a value after the global expiry, even if it was read meanwhile', async () => {
    // The cache's clock reads performance.now(): real time plus the skips below.
    const realNow = performance.now.bind(performance)
    let skipped = 0
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => realNow() + skipped)
    try {
      await redis.command('SET', 'e', 'old')
      expect((await small.get('e')).headers.get('x-cache')).toBe('MISS')
      await redis.command('SET', 'e', 'new')
      // A second before the end: only a second of real time could spoil it.
      skipped += EXPIRY_MS - 1000
      const hit = await small.get('e')
      expect(hit.headers.get('x-cache')).toBe('HIT')
      expect(await hit.text()).toBe('old')
      // The whole expiry has passed since the value was stored, real time aside.
      skipped += 1000
      // The clock holds its last reading until its 1 ms timer runs (see systemClock).
      await sleep(2)
      const fresh = await small.get('e')
      expect(fresh.headers.get('x-cache')).toBe('MISS')
      expect(await fresh.text()).toBe('new')
    } finally {
      clock.mockRestore()
    }
  })
})

describe('client limit', () => {
  it('answers the connection over MAX_CLIENTS with 503 and serves a freed slot again', async () => {
    const limited = await startHttpProxy(redis.url, { MAX_CLIENTS: '2' })
    try {
      await redis.command('SET', 'k', 'v')
      const first = await rawRequest(limited.port, '/get/k')
      const second = await rawRequest(limited.port, '/get/k')
      expect(first.response).toContain('200 OK')
      expect(second.response).toContain('200 OK')
      const third = await rawRequest(limited.port, '/get/k')
      expect(third.response).toContain('503 Service Unavailable')
      await third.closed
      // The proxy sees the close a moment after the client does: a new
      // connection is served once it has, answered 503 until then.
      first.socket.end()
      await first.closed
      let fourth = await rawRequest(limited.port, '/get/k')
      const deadline = Date.now() + 2000
      while (!fourth.response.includes('200 OK') && Date.now() < deadline) {
        fourth.socket.destroy()
        await sleep(20)
        fourth = await rawRequest(limited.port, '/get/k')
      }
      expect(fourth.response).toContain('200 OK')
      for (const conn of [second, third, fourth]) conn.socket.destroy()
    } finally {
      await limited.close()
    }
  })
})

/**
 * One keep-alive request on its own socket, left open so it holds a client
 * slot; resolves once the whole response (headers and Content-Length body) is in.
 */
function rawRequest(
  port: number,
  path: string,
): Promise<{ response: string; closed: Promise<void>; socket: import('node:net').Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let response = ''
    const closed = new Promise<void>((done) => socket.once('close', () => done()))
    socket.on('error', reject)
    socket.on('data', (chunk) => {
      response += chunk.toString('latin1')
      const end = response.indexOf('\r\n\r\n')
      if (end === -1) return
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(response.slice(0, end))?.[1] ?? 0)
      if (response.length >= end + 4 + length) resolve({ response, closed, socket })
    })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`)
  })
}

/** One request with the head written as given (Host included); resolves once the whole response is in. */
function exchange(
  port: number,
  head: string,
): Promise<{ status: number; headers: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        port,
        host: '127.0.0.1',
        method: head.split(' ')[0],
        path: head.split(' ')[1],
        setHost: false,
        headers: headersOf(head),
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          const headers: Record<string, string> = {}
          for (const [name, value] of Object.entries(res.headers)) headers[name] = String(value)
          resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) })
        })
      },
    )
    req.on('error', reject)
    req.end()
  })
}

function headersOf(head: string): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon)] = line.slice(colon + 1).trim()
  }
  return headers
}

describe('HTTP framing and the one way in to a key', () => {
  it('`/get` alone names no key, whatever the Host header says', async () => {
    await redis.command('SET', '://evil.com/get', 'leaked')
    const gets = await backendGetCount(redis)
    for (const path of ['/get', '/get?x=1']) {
      const res = await exchange(proxy.port, `GET ${path} HTTP/1.1\r\nHost: evil.com`)
      expect(res.status, path).toBe(404)
      expect(res.body.toString(), path).not.toContain('leaked')
    }
    expect(await backendGetCount(redis)).toBe(gets)
  })

  it('sends Content-Length and nosniff on hits, misses, 404s and HEAD', async () => {
    await redis.command('SET', 'framed', 'twelve bytes')
    for (const round of ['MISS', 'HIT']) {
      const res = await exchange(proxy.port, 'GET /get/framed HTTP/1.1\r\nHost: localhost')
      expect(res.headers['x-cache']).toBe(round)
      expect(res.headers['content-length']).toBe('12')
      expect(res.headers['transfer-encoding']).toBeUndefined()
      expect(res.headers['x-content-type-options']).toBe('nosniff')
      expect(res.body.toString()).toBe('twelve bytes')
    }
    const head = await exchange(proxy.port, 'HEAD /get/framed HTTP/1.1\r\nHost: localhost')
    expect(head.headers['content-length']).toBe('12')
    expect(head.body.length).toBe(0)
    const missing = await exchange(proxy.port, 'HEAD /get/absent HTTP/1.1\r\nHost: localhost')
    expect(missing.status).toBe(404)
    expect(missing.headers['content-length']).toBe(String('absent not found!'.length))
    expect(missing.headers['x-content-type-options']).toBe('nosniff')
  })

  it('serves a 40 KiB key and answers 431 for a head over 64 KiB', async () => {
    const key = 'k'.repeat(40 * 1024)
    await redis.command('SET', key, 'long key')
    const res = await exchange(proxy.port, `GET /get/${key} HTTP/1.1\r\nHost: localhost`)
    expect(res.status).toBe(200)
    expect(res.body.toString()).toBe('long key')
    const tooLong = await exchange(
      proxy.port,
      `GET /get/${'k'.repeat(65 * 1024)} HTTP/1.1\r\nHost: localhost`,
    )
    expect(tooLong.status).toBe(431)
  })

  it('answers key requests on the Node fast path exactly as the app does', async () => {
    await redis.command('SET', 'same', 'value')
    await redis.command('SET', 'a/b c%', 'odd')
    await redis.command('HSET', 'hash', 'f', 'v')
    // A second proxy over the same Redis that asks for credentials: the
    // default user's password, and alice, who may read only `same`. Its
    // limiter never blocks, so the wrong guesses below stay plain 401s.
    const guarded = await startHttpProxy(
      redis.url,
      {
        PROXY_PASSWORD: 'fast-pw',
        PROXY_ACL: 'user alice on >alice-pw ~same +@read',
        CACHE_CAPACITY: '1000',
      },
      undefined,
      { limiter: new AuthFailureLimiter({ maxFailures: 1_000_000 }) },
    )
    const basic = (user: string, password: string) =>
      `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
    const sides = [
      { proxy, authorizations: [undefined] },
      {
        proxy: guarded,
        authorizations: [
          undefined,
          'Bearer fast-pw',
          'Bearer wrong',
          basic('default', 'fast-pw'),
          basic('alice', 'alice-pw'),
          basic('alice', 'wrong'),
          'Basic !!!',
        ],
      },
    ]
    const heads = [
      'GET /get/same',
      'HEAD /get/same',
      'GET /get/a%2Fb%20c%25',
      'GET /get/absent',
      'HEAD /get/absent',
      'GET /get/hash',
      'GET /get/bad%zz',
      'POST /get/same',
      'GET /get/same?x=1',
    ]
    const statuses = new Set<number>()
    try {
      for (const side of sides) {
        // The app on its own, over the same service and gate: what every other
        // runtime serves. The client address is the one the Node side sees.
        const app = createApp({
          service: side.proxy.service,
          gate: side.proxy.gate,
          clientAddress: () => '127.0.0.1',
        })
        // Each side starts from the same cache: empty (a miss), or holding the key (a hit).
        const prepare = async (path: string, warm: boolean) => {
          side.proxy.service.clear()
          const key = keyFromTarget(path)
          if (warm && typeof key === 'string')
            await Promise.resolve(side.proxy.service.get(key)).catch(() => {})
        }
        for (const authorization of side.authorizations) {
          const header = authorization === undefined ? '' : `\r\nAuthorization: ${authorization}`
          for (const head of heads) {
            for (const warm of [false, true]) {
              const [method, path] = head.split(' ') as [string, string]
              const where = `${head} ${authorization ?? '(no credentials)'} (${warm ? 'cached' : 'not cached'})`
              await prepare(path, warm)
              const viaNode = await exchange(
                side.proxy.port,
                `${head} HTTP/1.1\r\nHost: localhost${header}`,
              )
              await prepare(path, warm)
              const viaApp = await app.request(`http://localhost${path}`, {
                method,
                headers: authorization === undefined ? {} : { authorization },
              })
              statuses.add(viaApp.status)
              expect(viaNode.status, where).toBe(viaApp.status)
              expect(viaNode.body.toString('latin1'), where).toBe(
                Buffer.from(await viaApp.arrayBuffer()).toString('latin1'),
              )
              for (const [name, value] of viaApp.headers) {
                // The app's answers carry their own Content-Length, and HEAD's too.
                expect(viaNode.headers[name], `${where}: ${name}`).toBe(value)
              }
            }
          }
        }
      }
    } finally {
      await guarded.close()
    }
    // Every kind of answer was compared, refusals included.
    expect([...statuses].sort()).toEqual([200, 400, 401, 403, 404, 405, 502])
  })

  it('trusts the adapter only at the version the fast path was checked against, and the app has no middleware to skip', () => {
    const installed = JSON.parse(
      readFileSync(
        new URL('../node_modules/@hono/node-server/package.json', import.meta.url),
        'utf8',
      ),
    ) as { version: string }
    expect(installed.version).toBe(FAST_PATH_ADAPTER_VERSION)
    const app = createApp({ service: proxy.service })
    // Every route is one handler of its own: none is middleware (`use`, or a
    // second handler on a path), so skipping Hono for /get/* skips no rule.
    const routes = app.routes.map((route) => `${route.method} ${route.path}`)
    expect(routes.filter((route) => route.includes('/get/'))).toEqual(['ALL /get/*'])
    expect(new Set(routes).size).toBe(routes.length)
    expect(routes.some((route) => route.endsWith('*') && !route.endsWith('/get/*'))).toBe(false)
  })
})
