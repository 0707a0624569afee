import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { AuthFailureLimiter } from '../shared/auth/failures.js'
import { backendConnected } from '../shared/health.js'
import { createLogger } from '../shared/log.js'
import { startMetricsServer } from '../shared/metrics-server.js'
import { sample } from './harness/metrics.js'
import { flushBackend, startHttpProxy, type TestHttpProxy } from './harness/proxy.js'
import { backendGetCount, sleep, startRedis, type TestRedis } from './harness/redis-server.js'

/**
 * HTTP authentication against a real redis-server, through the real Node
 * server (fast path and app), with users from a password file and an ACL
 * file on disk as an operator writes them.
 */
const run = promisify(execFile)

const ACL = [
  '# readers of the cache:* keys only',
  'user alice on >alice-pw ~cache:* +@read',
  'user carol off >carol-pw ~* +@all',
  // May read every key, may not run GET.
  'user dave on >dave-pw ~* +@all -get',
  '',
].join('\n')

let redis: TestRedis
let proxy: TestHttpProxy
let dir: string
const logLines: string[] = []

const basic = (user: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
})
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const refusedLog = () =>
  logLines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === 'authentication refused')
const failures = async (reason: string) =>
  sample(await await proxy.metrics.render(), 'redis_proxy_auth_failures_total', {
    interface: 'http',
    reason,
  }) ?? 0

beforeAll(async () => {
  redis = await startRedis()
  dir = mkdtempSync(join(tmpdir(), 'redis-proxy-http-auth-'))
  writeFileSync(join(dir, 'password'), 'default-pw\n')
  writeFileSync(join(dir, 'users.acl'), ACL)
  proxy = await startHttpProxy(
    redis.url,
    {
      PROXY_PASSWORD_FILE: join(dir, 'password'),
      PROXY_ACL_FILE: join(dir, 'users.acl'),
    },
    createLogger('info', (line) => logLines.push(line)),
    // The limiter has a test of its own below; here every guess is a plain 401.
    { limiter: new AuthFailureLimiter({ maxFailures: 1_000_000 }) },
  )
})

afterAll(async () => {
  await proxy?.close()
  await redis?.stop()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

beforeEach(async () => {
  await flushBackend(redis, proxy.service)
  logLines.length = 0
})

describe('HTTP authentication against a real redis-server', () => {
  it('answers 401 with a Basic and a Bearer challenge to a request without credentials', async () => {
    await redis.command('SET', 'cache:1', 'one')
    for (const method of ['GET', 'HEAD']) {
      const res = await proxy.get('cache:1', { method })
      expect(res.status, method).toBe(401)
      expect(res.headers.get('www-authenticate')).toBe(
        'Basic realm="redis-proxy", charset="UTF-8", Bearer realm="redis-proxy"',
      )
      expect(res.headers.get('x-cache')).toBeNull()
      expect(await res.text()).toBe(method === 'GET' ? 'Authentication required' : '')
    }
    // A scheme the proxy does not take is no credentials at all.
    const digest = await proxy.get('cache:1', { headers: { authorization: 'Digest username=x' } })
    expect(digest.status).toBe(401)
    // Nothing was read on anyone's behalf.
    expect(proxy.service.stats().misses).toBe(0)
    // No credentials is not a failed authentication.
    expect(refusedLog()).toEqual([])
  })

  it('answers 401 alike to a wrong password, an unknown user and a disabled user; logs and counts each without the password', async () => {
    await redis.command('SET', 'cache:1', 'one')
    const before = await failures('wrongpass')
    const attempts = [
      bearer('not-the-password'),
      basic('default', 'nope-pw'),
      basic('alice', 'default-pw'),
      basic('mallory', 'alice-pw'),
      // The right password of a user that is off.
      basic('carol', 'carol-pw'),
    ]
    for (const headers of attempts) {
      const res = await proxy.get('cache:1', { headers })
      expect(res.status, headers.authorization).toBe(401)
      expect(res.headers.get('www-authenticate')).toContain('Basic realm="redis-proxy"')
      expect(await res.text()).toBe('Invalid username or password')
    }
    expect(await failures('wrongpass')).toBe(before + attempts.length)
    const logged = refusedLog()
    expect(logged.map((line) => line.user)).toEqual([
      'default',
      'default',
      'alice',
      'mallory',
      'carol',
    ])
    for (const line of logged) {
      expect(line).toMatchObject({ level: 'warn', interface: 'http', client: '127.0.0.1' })
    }
    const all = logLines.join('\n')
    for (const password of ['not-the-password', 'nope-pw', 'default-pw', 'alice-pw', 'carol-pw']) {
      expect(all).not.toContain(password)
    }
  })

  it('reads with Bearer <default password> and with Basic user:password, from Redis and then the cache', async () => {
    await redis.command('SET', 'cache:1', 'one')
    const first = await proxy.get('cache:1', { headers: bearer('default-pw') })
    expect(first.status).toBe(200)
    expect(first.headers.get('x-cache')).toBe('MISS')
    expect(await first.text()).toBe('one')
    const second = await proxy.get('cache:1', { headers: basic('alice', 'alice-pw') })
    expect(second.status).toBe(200)
    expect(second.headers.get('x-cache')).toBe('HIT')
    expect(await second.text()).toBe('one')
    const basicDefault = await proxy.get('cache:1', { headers: basic('default', 'default-pw') })
    expect(basicDefault.status).toBe(200)
    // A missing key is still 404 to a user who may read it.
    expect((await proxy.get('cache:nope', { headers: bearer('default-pw') })).status).toBe(404)
  })

  it('refuses a user limited to ~cache:* any other key, from the cache and from Redis alike', async () => {
    await redis.command('SET', 'secret', 'classified')
    // Another user's read puts the value in the cache.
    const byDefault = await proxy.get('secret', { headers: bearer('default-pw') })
    expect(await byDefault.text()).toBe('classified')
    expect(proxy.service.stats().keys).toBe(1)
    const hits = proxy.service.stats().hits

    const fromCache = await proxy.get('secret', { headers: basic('alice', 'alice-pw') })
    expect(fromCache.status).toBe(403)
    expect(fromCache.headers.get('x-cache')).toBeNull()
    expect(await fromCache.text()).toBe('No permission to read key: secret')
    expect(proxy.service.stats().hits).toBe(hits)

    proxy.service.clear()
    const gets = await backendGetCount(redis)
    const fromRedis = await proxy.get('secret', { headers: basic('alice', 'alice-pw') })
    expect(fromRedis.status).toBe(403)
    expect(await fromRedis.text()).toBe('No permission to read key: secret')
    // Refused before the read: Redis was not asked, and whether the key exists is not told.
    expect(await backendGetCount(redis)).toBe(gets)
    expect((await proxy.get('absent', { headers: basic('alice', 'alice-pw') })).status).toBe(403)

    // A user whose rules deny GET itself may read no key at all.
    await redis.command('SET', 'cache:1', 'one')
    expect((await proxy.get('cache:1', { headers: basic('dave', 'dave-pw') })).status).toBe(403)
    // A forbidden read is not a failed authentication.
    expect(refusedLog()).toEqual([])
  })

  it('lets curl in with -u and with a Bearer header, and not without', async () => {
    await redis.command('SET', 'cache:curl', 'via curl')
    const url = `${proxy.url}/get/cache:curl`
    const curl = async (...args: string[]) => {
      const { stdout } = await run('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', ...args, url])
      const newline = stdout.lastIndexOf('\n')
      return { body: stdout.slice(0, newline), status: Number(stdout.slice(newline + 1)) }
    }
    expect(await curl('-u', 'alice:alice-pw')).toEqual({ body: 'via curl', status: 200 })
    expect(await curl('-H', 'Authorization: Bearer default-pw')).toEqual({
      body: 'via curl',
      status: 200,
    })
    expect(await curl('-u', 'alice:wrong')).toEqual({
      body: 'Invalid username or password',
      status: 401,
    })
    expect(await curl()).toEqual({ body: 'Authentication required', status: 401 })
  })

  it('leaves /healthz and /readyz open, and lets any authenticated user see / and /metrics', async () => {
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200)
    expect((await fetch(`${proxy.url}/readyz`)).status).toBe(200)
    for (const path of ['/', '/metrics']) {
      const none = await fetch(`${proxy.url}${path}`)
      expect(none.status, path).toBe(401)
      expect(none.headers.get('www-authenticate')).toContain('Bearer realm="redis-proxy"')
      expect(await none.text()).not.toContain('redis_proxy')
      expect((await fetch(`${proxy.url}${path}`, { headers: bearer('wrong') })).status).toBe(401)
      // alice may read only cache:* keys, and still sees the status and metrics.
      const alice = await fetch(`${proxy.url}${path}`, { headers: basic('alice', 'alice-pw') })
      expect(alice.status, path).toBe(200)
      expect(await alice.text()).toContain(path === '/' ? '"redis-proxy"' : 'redis_proxy_')
    }
  })

  it('applies the same rule on the METRICS_PORT listener', async () => {
    const server = await startMetricsServer({
      registry: proxy.metrics,
      host: '127.0.0.1',
      port: 0,
      readiness: [backendConnected(proxy.service)],
      gate: proxy.gate,
    })
    try {
      const url = `http://127.0.0.1:${server.port}`
      expect((await fetch(`${url}/healthz`)).status).toBe(200)
      expect((await fetch(`${url}/readyz`)).status).toBe(200)
      const none = await fetch(`${url}/metrics`)
      expect(none.status).toBe(401)
      expect(none.headers.get('www-authenticate')).toContain('Basic realm="redis-proxy"')
      expect((await fetch(`${url}/metrics`, { headers: basic('alice', 'nope') })).status).toBe(401)
      const scraped = await fetch(`${url}/metrics`, { headers: bearer('default-pw') })
      expect(scraped.status).toBe(200)
      expect(await scraped.text()).toContain('redis_proxy_auth_failures_total')
    } finally {
      await server.close()
    }
  })
})

describe('the failure limiter over HTTP, with its defaults', () => {
  let limited: TestHttpProxy
  beforeAll(async () => {
    limited = await startHttpProxy(redis.url, { PROXY_PASSWORD: 'limit-pw' })
  })
  afterAll(async () => limited?.close())

  it('answers 429 with Retry-After after 10 failures, even to the right password, then lets the client in once the block is over', async () => {
    await redis.command('SET', 'k', 'v')
    for (let i = 0; i < 10; i++) {
      expect((await limited.get('k', { headers: bearer(`guess-${i}`) })).status).toBe(401)
    }
    const blocked = await limited.get('k', { headers: bearer('limit-pw') })
    expect(blocked.status).toBe(429)
    expect(blocked.headers.get('retry-after')).toBe('1')
    expect(await blocked.text()).toBe('Too many failed authentications, retry later')
    const text = await limited.metrics.render()
    const count = (reason: string) =>
      sample(text, 'redis_proxy_auth_failures_total', { interface: 'http', reason })
    expect(count('wrongpass')).toBe(10)
    expect(count('limited')).toBe(1)
    // The first block is 1 s; well past it, the right password works again.
    await sleep(1500)
    const after = await limited.get('k', { headers: bearer('limit-pw') })
    expect(after.status).toBe(200)
    expect(await after.text()).toBe('v')
  })
})
