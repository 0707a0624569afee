import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sample } from './harness/metrics.js'
import { freePort } from './harness/ports.js'
import { spawnProxy, waitForHttp } from './harness/process.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => redis?.stop())

describe('the proxy process', () => {
  it('finishes requests in flight on SIGTERM, then exits 0', async () => {
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      // Longer than the pause below: the backend is slow, not failing.
      REDIS_COMMAND_TIMEOUT: '5000',
    })
    const base = `http://127.0.0.1:${port}`
    await waitForHttp(`${base}/`)
    await redis.command('SET', 'slow', 'answered')

    const status = async () =>
      ((await (await fetch(`${base}/`)).json()) as { cache: Record<string, number> }).cache
    const coalescedBefore = (await status()).coalesced ?? 0

    // Hold the backend so the requests are still in flight when the signal lands.
    await redis.command('CLIENT', 'PAUSE', '1500', 'ALL')
    const inflight = Array.from({ length: 10 }, (_, i) =>
      fetch(`${base}/get/slow`, { headers: { 'x-n': String(i) } }),
    )
    // The signal lands once the proxy has all ten: one backend GET, nine joining it.
    const deadline = Date.now() + 1200
    for (;;) {
      const cache = await status()
      if (cache.inflight === 1 && (cache.coalesced ?? 0) - coalescedBefore === 9) break
      if (Date.now() > deadline) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const held = await status()
    expect(held.inflight).toBe(1)
    expect((held.coalesced ?? 0) - coalescedBefore).toBe(9)
    proxy.child.kill('SIGTERM')

    const answers = await Promise.all(inflight)
    for (const res of answers) {
      expect(res.status).toBe(200)
      expect(await res.text()).toBe('answered')
    }
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    await expect(fetch(`${base}/`)).rejects.toThrow()
    expect(proxy.logs()).toContain('"msg":"stopped"')
  })

  it('loses no request in flight on SIGTERM under load, and logs no line per request', async () => {
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      // The backend is held longer than the default 1 s command timeout below.
      REDIS_COMMAND_TIMEOUT: '5000',
    })
    const base = `http://127.0.0.1:${port}`
    await waitForHttp(`${base}/`)
    const keys = Array.from({ length: 60 }, (_, i) => `load:${i}`)
    for (const key of keys) await redis.command('SET', key, `value of ${key}`)
    const status = async () =>
      ((await (await fetch(`${base}/`)).json()) as { cache: Record<string, number> }).cache
    const coalescedBefore = (await status()).coalesced ?? 0

    // 300 requests over 60 keys, all held at the backend: 60 GETs running, 240
    // requests waiting on them. The signal lands only once the proxy has every
    // one of them, so each is a request it accepted and must answer.
    await redis.command('CLIENT', 'PAUSE', '1500', 'ALL')
    const requests = Array.from({ length: 300 }, (_, i) => {
      const key = keys[i % keys.length] as string
      return fetch(`${base}/get/${key}`).then(async (res) => ({
        key,
        status: res.status,
        body: await res.text(),
      }))
    })
    const deadline = Date.now() + 1200
    for (;;) {
      const cache = await status()
      const waiting = (cache.coalesced ?? 0) - coalescedBefore
      if ((cache.inflight === 60 && waiting === 240) || Date.now() > deadline) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    const held = await status()
    expect(held.inflight).toBe(60)
    expect((held.coalesced ?? 0) - coalescedBefore).toBe(240)
    proxy.child.kill('SIGTERM')

    const answers = await Promise.all(requests)
    expect(answers.filter((a) => a.status !== 200 || a.body !== `value of ${a.key}`)).toEqual([])
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })

    const lines = proxy
      .logs()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; level: string })
    const messages = lines.map((line) => line.msg)
    // Start-up and shutdown lines only: 300 requests left no trace at info.
    expect(messages[0]).toBe('starting')
    expect(messages).toContain('shutting down')
    expect(messages.at(-1)).toBe('stopped')
    expect(messages).toContain('serving')
    expect(lines.length).toBeLessThan(12)
    expect(proxy.logs()).not.toContain('load:')
  })

  it('cuts off requests still in flight after SHUTDOWN_TIMEOUT on both interfaces, then exits 0', async () => {
    const [httpPort, respPort] = [await freePort(), await freePort()]
    const proxy = spawnProxy([], {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(httpPort),
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(respPort),
      SHUTDOWN_TIMEOUT: '500',
      // Longer than the pause below: only the shutdown bound can end these requests.
      REDIS_COMMAND_TIMEOUT: '10000',
    })
    const base = `http://127.0.0.1:${httpPort}`
    await waitForHttp(`${base}/`)
    const status = async () =>
      ((await (await fetch(`${base}/`)).json()) as { cache: { inflight: number } }).cache
    // Reads reach Redis only once the backend is ready; before, they fail at once.
    const readyBy = Date.now() + 10_000
    while ((await fetch(`${base}/readyz`)).status !== 200 && Date.now() < readyBy) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }

    await redis.command('CLIENT', 'PAUSE', '3000', 'ALL')
    const http = connect(httpPort, '127.0.0.1')
    http.on('error', () => {})
    let httpReceived = ''
    http.on('data', (chunk: Buffer) => {
      httpReceived += chunk.toString()
    })
    const httpClosed = new Promise<number>((resolve) =>
      http.once('close', () => resolve(Date.now())),
    )
    http.write('GET /get/held-http HTTP/1.1\r\nHost: x\r\n\r\n')
    const resp = await rawConnect(respPort)
    const respClosed = resp.closed().then(() => Date.now())
    resp.send(command('GET', 'held-resp'))
    // Both GETs reached the backend: each is a request the proxy accepted.
    const deadline = Date.now() + 2000
    while ((await status()).inflight < 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect((await status()).inflight).toBe(2)

    const signalled = Date.now()
    proxy.child.kill('SIGTERM')
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    const exitedAt = Date.now()
    // The 500 ms bound, not the 3 s pause; a wide margin above for a busy machine.
    expect(exitedAt - signalled).toBeGreaterThanOrEqual(450)
    expect(exitedAt - signalled).toBeLessThan(2500)
    expect((await httpClosed) - signalled).toBeGreaterThanOrEqual(450)
    expect((await respClosed) - signalled).toBeGreaterThanOrEqual(450)
    // Cut off, not answered.
    expect(httpReceived).toBe('')
    expect(resp.received().length).toBe(0)
    expect(proxy.logs()).toContain('"msg":"stopped"')
    // Until the pause is over, so the next test finds Redis answering.
    await redis.command('PING')
  })

  it('logs its effective configuration once at start-up, with secrets masked', async () => {
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: `redis://app:s3cret@127.0.0.1:${await freePort()}/2`,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      CACHE_CAPACITY: '1234',
    })
    await waitForHttp(`http://127.0.0.1:${port}/healthz`)
    proxy.child.kill('SIGTERM')
    await proxy.exited()
    expect(proxy.logs()).not.toContain('s3cret')
    const starting = proxy
      .logs()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .filter((line) => line.msg === 'starting')
    expect(starting).toHaveLength(1)
    expect(starting[0]).toMatchObject({
      level: 'info',
      interfaces: ['http'],
      config: {
        http: { host: '127.0.0.1', port, redisUrl: expect.stringContaining('app:***@127.0.0.1') },
        cache: { capacity: 1234 },
      },
    })
  })

  it('refuses to start on a bad value, naming it in one line', async () => {
    const proxy = spawnProxy(['http'], { CACHE_CAPACITY: '0' })
    const { code } = await proxy.exited()
    expect(code).toBe(1)
    expect(proxy.logs().trim()).toBe(
      'redis-proxy: Invalid CACHE_CAPACITY="0": expected an integer from 1 to 16777216',
    )
  })

  it('refuses to start on a database the server does not have, in one line', async () => {
    // redis-server has 16 databases by default: /16 is well-formed, and out of range there.
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: `${redis.url}/16`,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
    })
    const { code } = await proxy.exited()
    expect(code).toBe(1)
    const lines = proxy.logs().trim().split('\n')
    expect(lines.at(-1)).toBe(
      'redis-proxy: Invalid REDIS_URL: database 16: ERR DB index is out of range',
    )
  })

  it('listens only on loopback without credentials, every listener', async () => {
    const [httpPort, respPort, metricsPort] = [await freePort(), await freePort(), await freePort()]
    const proxy = spawnProxy([], {
      REDIS_URL: redis.url,
      PROXY_PORT_HTTP: String(httpPort),
      PROXY_PORT_TCP: String(respPort),
      METRICS_PORT: String(metricsPort),
    })
    try {
      await waitForHttp(`http://127.0.0.1:${httpPort}/healthz`)
      const listening = proxy
        .logs()
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { msg: string; host?: string })
        .filter((line) => line.msg.endsWith('listening'))
      expect(listening.map((line) => [line.msg, line.host]).sort()).toEqual([
        ['http listening', '127.0.0.1'],
        ['metrics listening', '127.0.0.1'],
        ['resp listening', '127.0.0.1'],
      ])
      // Where this machine has an address of its own, nothing answers there.
      const external = Object.values(networkInterfaces())
        .flat()
        .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)
      if (external !== undefined) {
        for (const port of [httpPort, respPort, metricsPort]) {
          await expect(fetch(`http://${external.address}:${port}/healthz`)).rejects.toThrow()
        }
      }
    } finally {
      proxy.child.kill('SIGTERM')
      await proxy.exited()
    }
  })

  it.each(['PROXY_HOST_HTTP', 'PROXY_HOST_TCP', 'METRICS_HOST'])(
    'refuses to start on a non-loopback %s without credentials, in one line saying how to set a password',
    async (name) => {
      const proxy = spawnProxy([], { REDIS_URL: redis.url, [name]: '0.0.0.0' })
      const { code } = await proxy.exited()
      expect(code).toBe(1)
      expect(proxy.logs().trim()).toBe(
        `redis-proxy: Invalid ${name}="0.0.0.0": no password is set, so only loopback is allowed; set PROXY_PASSWORD (or PROXY_PASSWORD_FILE, PROXY_ACL_FILE), or PROXY_TRUSTED_NETWORK=true if everyone who can reach it may read every key`,
      )
    },
  )

  it('listens on every address with a password from a file, asks HTTP clients for it, counts failures, and never logs it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-process-'))
    const passwordFile = join(dir, 'password')
    writeFileSync(passwordFile, 'file-s3cret\n')
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: redis.url,
      PROXY_PORT_HTTP: String(port),
      PROXY_PASSWORD_FILE: passwordFile,
    })
    try {
      const base = `http://127.0.0.1:${port}`
      await waitForHttp(`${base}/healthz`)
      const starting = JSON.parse(proxy.logs().split('\n')[0] as string)
      expect(starting.config.http.host).toBe('0.0.0.0')
      expect(starting.config.auth).toEqual({
        requiresAuth: true,
        configured: true,
        trustedNetwork: false,
      })
      await redis.command('SET', 'guarded', 'value')
      expect((await fetch(`${base}/get/guarded`)).status).toBe(401)
      const wrong = await fetch(`${base}/get/guarded`, {
        headers: { authorization: 'Bearer file-s3cret-not' },
      })
      expect(wrong.status).toBe(401)
      const right = await fetch(`${base}/get/guarded`, {
        headers: { authorization: 'Bearer file-s3cret' },
      })
      expect(await right.text()).toBe('value')
      const metrics = await fetch(`${base}/metrics`, {
        headers: { authorization: 'Bearer file-s3cret' },
      })
      expect(
        sample(await metrics.text(), 'redis_proxy_auth_failures_total', {
          interface: 'http',
          reason: 'wrongpass',
        }),
      ).toBe(1)
    } finally {
      proxy.child.kill('SIGTERM')
      await proxy.exited()
      rmSync(dir, { recursive: true, force: true })
    }
    expect(proxy.logs()).toContain('"msg":"authentication refused"')
    expect(proxy.logs()).not.toContain('file-s3cret')
  })
})
