import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'

/**
 * The Worker as `wrangler deploy` bundles it (wrangler.toml, nodejs_compat),
 * inside workerd, in front of a real redis-server. Each request goes through a
 * service binding to the Worker: its own request context, as in production.
 */
type Bindings = {
  PROXY: Fetcher
  PROXY_CLOSED: Fetcher
  PROXY_SILENT: Fetcher
  PROXY_BAD_CONFIG: Fetcher
  PROXY_SHORT_EXPIRY: Fetcher
  PROXY_AUTH: Fetcher
  PROXY_ACL_FILE: Fetcher
  REDIS: Fetcher
}
const bindings = env as unknown as Bindings

/** One command to the real redis-server; arguments and bulk replies are byte strings. */
async function redis(...args: string[]): Promise<unknown> {
  const res = await bindings.REDIS.fetch('http://redis/', {
    method: 'POST',
    body: JSON.stringify({ args }),
  })
  const { reply } = (await res.json()) as { reply: unknown }
  return reply
}

const get = (path: string, worker: Fetcher = bindings.PROXY) =>
  worker.fetch(`http://proxy.test${path}`)

/** The body as UTF-8; values come as application/octet-stream, which .text() warns about. */
const text = async (res: Response) => new TextDecoder().decode(await res.arrayBuffer())

/** Backend GETs Redis has served, from INFO commandstats. */
async function backendGets(): Promise<number> {
  const info = String(await redis('INFO', 'commandstats'))
  return Number(/cmdstat_get:calls=(\d+)/.exec(info)?.[1] ?? 0)
}

beforeEach(async () => {
  await redis('FLUSHALL')
})

/**
 * Lets time pass in workerd. Its clock advances only across I/O: a timer is
 * I/O, so the Worker's next request sees the time move on.
 */
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// The expiries below are 1 s, so the first reads land well inside them, and
// this is well past them: a busy machine cannot make either side flaky.
const PAST_EXPIRY_MS = 2500

describe('the Worker in workerd against a real redis-server', () => {
  it('answers a miss from Redis, then the same key from the isolate cache without asking Redis', async () => {
    await redis('SET', 'greeting', 'hello')
    const before = await backendGets()

    const first = await get('/get/greeting')
    expect(first.status).toBe(200)
    expect(first.headers.get('x-cache')).toBe('MISS')
    expect(await text(first)).toBe('hello')

    // Changed behind the cache's back: a later request still sees the cached value.
    await redis('SET', 'greeting', 'changed')
    const second = await get('/get/greeting')
    expect(second.headers.get('x-cache')).toBe('HIT')
    expect(await text(second)).toBe('hello')
    expect(await backendGets()).toBe(before + 1)
  })

  it('answers 404 "{key} not found!" and does not cache the miss', async () => {
    const missing = await get('/get/nope')
    expect(missing.status).toBe(404)
    expect(await missing.text()).toBe('nope not found!')

    await redis('SET', 'nope', 'now here')
    const later = await get('/get/nope')
    expect(later.status).toBe(200)
    expect(later.headers.get('x-cache')).toBe('MISS')
    expect(await text(later)).toBe('now here')
  })

  it('returns binary values byte for byte under binary keys, on a miss and on a hit', async () => {
    const every = Uint8Array.from({ length: 256 }, (_, i) => i)
    await redis('SET', '\u00ff\u0000/', String.fromCharCode(...every))
    for (const round of ['MISS', 'HIT']) {
      const res = await get('/get/%FF%00%2F')
      expect(res.status).toBe(200)
      expect(res.headers.get('x-cache')).toBe(round)
      expect(res.headers.get('content-type')).toBe('application/octet-stream')
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(every)
    }
  })

  it('coalesces concurrent requests for one key into one backend GET', async () => {
    await redis('SET', 'shared', 'once')
    const before = await backendGets()
    const answers = await Promise.all(Array.from({ length: 5 }, () => get('/get/shared')))
    for (const res of answers) expect(await text(res)).toBe('once')
    expect(await backendGets()).toBe(before + 1)
  })

  it('answers 502 when Redis answers an error (WRONGTYPE), and does not cache it', async () => {
    await redis('RPUSH', 'list', 'item')
    const res = await get('/get/list')
    expect(res.status).toBe(502)
    expect(await res.text()).toBe('Error getting key: list')

    await redis('DEL', 'list')
    await redis('SET', 'list', 'now a string')
    expect((await get('/get/list')).status).toBe(200)
  })

  it('reads a value from Redis again once CACHE_GLOBAL_EXPIRY has passed since it was cached', async () => {
    const short = bindings.PROXY_SHORT_EXPIRY
    await redis('SET', 'ages', 'first')
    expect(await text(await get('/get/ages', short))).toBe('first')
    // Changed behind the cache's back: while the entry lives, the cached value answers.
    await redis('SET', 'ages', 'second')
    const hit = await get('/get/ages', short)
    expect(hit.headers.get('x-cache')).toBe('HIT')
    expect(await text(hit)).toBe('first')

    await sleep(PAST_EXPIRY_MS)
    const later = await get('/get/ages', short)
    expect(later.headers.get('x-cache')).toBe('MISS')
    expect(await text(later)).toBe('second')
  })

  it('never serves a value after its key expired in Redis (PX shorter than the cache expiry)', async () => {
    await redis('SET', 'brief', 'soon gone', 'PX', '1000')
    expect(await text(await get('/get/brief'))).toBe('soon gone')
    expect((await get('/get/brief')).headers.get('x-cache')).toBe('HIT')

    await sleep(PAST_EXPIRY_MS)
    const gone = await get('/get/brief')
    expect(gone.status).toBe(404)
    expect(await gone.text()).toBe('brief not found!')
  })

  it('reports the Workers runtime and the TCP source on GET /', async () => {
    const res = await get('/')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ runtime: 'workers', source: 'tcp', backend: 'ready' })
  })
})

describe('the Worker in workerd against a failing backend', () => {
  it('answers 502 when Redis cannot be reached', async () => {
    const res = await get('/get/k', bindings.PROXY_CLOSED)
    expect(res.status).toBe(502)
    expect(await res.text()).toBe('Error getting key: k')
  })

  it('answers 504 when Redis does not answer within REDIS_COMMAND_TIMEOUT', async () => {
    const res = await get('/get/k', bindings.PROXY_SILENT)
    expect(res.status).toBe(504)
    expect(await res.text()).toBe('Error getting key: k')
  })

  it('answers 500 naming a bad binding instead of starting', async () => {
    const res = await get('/get/k', bindings.PROXY_BAD_CONFIG)
    expect(res.status).toBe(500)
    expect(await res.text()).toContain('Invalid CACHE_CAPACITY="0"')
  })
})

describe('the Worker in workerd over the Upstash REST protocol', () => {
  const rest = bindings as unknown as {
    PROXY_REST: Fetcher
    PROXY_REST_BAD_TOKEN: Fetcher
    PROXY_REST_SILENT: Fetcher
    UPSTASH: Fetcher
  }
  const upstash = async (op: string, key = '', value = '', px?: number) => {
    const res = await rest.UPSTASH.fetch('http://upstash/', {
      method: 'POST',
      body: JSON.stringify({ op, key, value, px }),
    })
    return ((await res.json()) as { requests: number }).requests
  }

  beforeEach(async () => {
    await upstash('flush')
  })

  it('answers a miss through REST, then a hit from the isolate cache', async () => {
    await upstash('set', 'greeting', 'hello')
    const first = await get('/get/greeting', rest.PROXY_REST)
    expect(first.headers.get('x-cache')).toBe('MISS')
    expect(await text(first)).toBe('hello')
    const second = await get('/get/greeting', rest.PROXY_REST)
    expect(second.headers.get('x-cache')).toBe('HIT')
    expect(await text(second)).toBe('hello')
    // One REST GET for the two requests: the hit never left the isolate.
    expect(await upstash('count')).toBe(1)
  })

  it('returns binary values under binary keys byte for byte (base64 on the wire)', async () => {
    const every = Uint8Array.from({ length: 256 }, (_, i) => i)
    await upstash('set', '\u00ff\u0000/', String.fromCharCode(...every))
    const res = await get('/get/%FF%00%2F', rest.PROXY_REST)
    expect(res.status).toBe(200)
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(every)
  })

  it('never serves a value after its key expired (PTTL read in the same pipeline)', async () => {
    await upstash('set', 'brief', 'soon gone', 1000)
    expect(await text(await get('/get/brief', rest.PROXY_REST))).toBe('soon gone')
    expect((await get('/get/brief', rest.PROXY_REST)).headers.get('x-cache')).toBe('HIT')

    await sleep(PAST_EXPIRY_MS)
    expect((await get('/get/brief', rest.PROXY_REST)).status).toBe(404)
  })

  it('answers 404 for a missing key and 502 for a Redis error', async () => {
    const missing = await get('/get/nope', rest.PROXY_REST)
    expect(missing.status).toBe(404)
    expect(await missing.text()).toBe('nope not found!')
    await upstash('setList', 'list')
    expect((await get('/get/list', rest.PROXY_REST)).status).toBe(502)
  })

  it('answers 502 when the token is refused (401)', async () => {
    await upstash('set', 'k', 'v')
    expect((await get('/get/k', rest.PROXY_REST_BAD_TOKEN)).status).toBe(502)
  })

  it('answers 504 when the REST API does not answer within REDIS_COMMAND_TIMEOUT', async () => {
    expect((await get('/get/k', rest.PROXY_REST_SILENT)).status).toBe(504)
  })

  it('reports the REST source on GET /', async () => {
    const res = await get('/', rest.PROXY_REST)
    expect(await res.json()).toMatchObject({ runtime: 'workers', source: 'rest', backend: 'ready' })
  })
})

describe('the Worker with a password binding', () => {
  const auth = (path: string, authorization?: string) =>
    bindings.PROXY_AUTH.fetch(`http://proxy.test${path}`, {
      headers: authorization === undefined ? {} : { authorization },
    })
  const basic = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`

  it('answers 401 with its challenge without credentials or with a wrong password', async () => {
    await redis('SET', 'cache:1', 'one')
    const none = await auth('/get/cache:1')
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe(
      'Basic realm="redis-proxy", charset="UTF-8", Bearer realm="redis-proxy"',
    )
    expect(await none.text()).toBe('Authentication required')
    expect((await auth('/get/cache:1', 'Bearer wrong')).status).toBe(401)
    expect((await auth('/', undefined)).status).toBe(401)
    // The probes stay open.
    expect((await auth('/healthz')).status).toBe(200)
  })

  it('answers 200 with Bearer <PROXY_PASSWORD>, and with Basic for an inline PROXY_ACL user', async () => {
    await redis('SET', 'cache:1', 'one')
    const res = await auth('/get/cache:1', 'Bearer worker-pw')
    expect(res.status).toBe(200)
    expect(await text(res)).toBe('one')
    const reader = await auth('/get/cache:1', basic('reader', 'reader-pw'))
    expect(reader.status).toBe(200)
    expect(reader.headers.get('x-cache')).toBe('HIT')
  })

  it('answers 403 for a key outside the user pattern, cached or not', async () => {
    await redis('SET', 'secret', 'classified')
    expect((await auth('/get/secret', basic('reader', 'reader-pw'))).status).toBe(403)
    // Cached by the default user's read: still not the reader's to read.
    expect(await text(await auth('/get/secret', 'Bearer worker-pw'))).toBe('classified')
    const cached = await auth('/get/secret', basic('reader', 'reader-pw'))
    expect(cached.status).toBe(403)
    expect(await cached.text()).toBe('No permission to read key: secret')
  })

  it('refuses PROXY_ACL_FILE in one line: the Worker has no filesystem', async () => {
    const res = await get('/get/k', bindings.PROXY_ACL_FILE)
    expect(res.status).toBe(500)
    expect(await res.text()).toBe(
      'redis-proxy: Invalid PROXY_ACL_FILE="/etc/users.acl": this runtime has no filesystem\n',
    )
  })
})
