import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect as connectTls } from 'node:tls'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readYourWrites } from './drop-in/read-your-writes.js'
import { askUntil } from './harness/ask-until.js'
import { sample } from './harness/metrics.js'
import { freePort } from './harness/ports.js'
import { type ProxyProcess, spawnProxy, waitServing } from './harness/process.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'
import { makePki } from './harness/tls.js'

type Cluster = {
  proxy: ProxyProcess
  http: number
  resp: number
  metrics: number
}

type LogLine = { msg: string; pid: number; worker?: number; [field: string]: unknown }

const lines = (proxy: ProxyProcess): LogLine[] =>
  proxy
    .logs()
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine)

/** The pid serving each worker slot now, from the workers' own `worker serving` lines. */
function workerPids(proxy: ProxyProcess): Map<number, number> {
  const slots = new Map<number, number>()
  for (const line of lines(proxy)) {
    if (line.msg === 'worker serving' && line.worker !== undefined) slots.set(line.worker, line.pid)
  }
  return slots
}

/** Alive and not a zombie waiting for its parent. */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

/**
 * A GET over a connection of its own, so the cluster hands it to the next
 * worker; over HTTPS when given the CA to trust.
 */
function freshGet(
  port: number,
  path: string,
  timeoutMs = 5000,
  ca?: Buffer,
): Promise<{ status: number; body: string; cache: string | undefined }> {
  return new Promise((resolve, reject) => {
    const options = {
      host: '127.0.0.1',
      port,
      path,
      agent: false,
      headers: { connection: 'close' },
      ...(ca !== undefined && { ca, servername: 'localhost' }),
    }
    const req = (ca === undefined ? request : httpsRequest)(options, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          cache: res.headers['x-cache'] as string | undefined,
        }),
      )
    })
    req.setTimeout(timeoutMs, () =>
      req.destroy(new Error(`${path} not answered in ${timeoutMs} ms`)),
    )
    req.on('error', reject)
    req.end()
  })
}

/** The process that answered, from INFO's proxy section, over a new RESP connection. */
async function respPid(port: number): Promise<number> {
  const conn = await rawConnect(port)
  try {
    conn.send(command('INFO', 'proxy'))
    const [info] = await conn.replies(1)
    return Number(/process_id:(\d+)\r\n/.exec(String(info))?.[1])
  } finally {
    conn.close()
  }
}

let redis: TestRedis
const started: ProxyProcess[] = []

async function startCluster(env: Record<string, string> = {}, ca?: Buffer): Promise<Cluster> {
  const [http, resp, metrics] = [await freePort(), await freePort(), await freePort()]
  const proxy = spawnProxy([], {
    REDIS_URL: redis.url,
    WORKERS: '2',
    PROXY_HOST_HTTP: '127.0.0.1',
    PROXY_PORT_HTTP: String(http),
    PROXY_HOST_TCP: '127.0.0.1',
    PROXY_PORT_TCP: String(resp),
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: String(metrics),
    ...env,
  })
  started.push(proxy)
  await waitServing(proxy, 20_000)
  // Serving is listening; reads reach Redis once each worker's backend (and
  // invalidation) is ready. New connections alternate between the workers, so
  // four ready answers in a row are both workers' word.
  const deadline = Date.now() + 10_000
  for (let inARow = 0; inARow < 4; ) {
    if (Date.now() > deadline) throw new Error(`workers not ready: ${proxy.logs()}`)
    inARow = (await freshGet(http, '/readyz', 5000, ca)).status === 200 ? inARow + 1 : 0
    if (inARow === 0) await sleep(20)
  }
  return { proxy, http, resp, metrics }
}

/** Stops every cluster a test started, primary first, then any worker it left. */
async function stopAll(): Promise<void> {
  for (const proxy of started.splice(0)) {
    const pids = [...workerPids(proxy).values()]
    if (proxy.child.exitCode === null && proxy.child.signalCode === null) {
      proxy.child.kill('SIGTERM')
      await proxy.exited()
    }
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL')
  }
}

beforeAll(async () => {
  redis = await startRedis()
})
afterEach(stopAll)
afterAll(async () => {
  await stopAll()
  await redis?.stop()
})

describe('WORKERS=2', () => {
  it('serves both ports from two worker processes, each with a cache of its own', async () => {
    const { proxy, http, resp } = await startCluster()
    const pids = workerPids(proxy)
    expect([...pids.keys()].sort()).toEqual([1, 2])
    const [one, two] = [...pids.values()]
    expect(one).not.toBe(two)
    expect(pids.has(proxy.child.pid as number)).toBe(false)
    const starting = lines(proxy).filter((line) => line.msg === 'starting')
    expect(starting).toHaveLength(1)
    expect(starting[0]).toMatchObject({ pid: proxy.child.pid, workers: 2 })
    expect(lines(proxy).filter((line) => line.msg === 'serving')).toMatchObject([
      { pid: proxy.child.pid, workers: 2 },
    ])

    // RESP: new connections go to the workers in turn.
    const answered = new Set<number>()
    for (let i = 0; i < 6; i++) answered.add(await respPid(resp))
    expect([...answered].sort()).toEqual([...pids.values()].sort())

    // HTTP: a key read on new connections misses once in each worker's cache.
    await redis.command('SET', 'spread', 'value')
    const answers = []
    for (let i = 0; i < 8; i++) answers.push(await freshGet(http, '/get/spread'))
    expect(answers.every((a) => a.status === 200 && a.body === 'value')).toBe(true)
    expect(answers.filter((a) => a.cache === 'MISS')).toHaveLength(2)
    expect(answers.filter((a) => a.cache === 'HIT')).toHaveLength(6)
  })

  it('answers /metrics with every worker added up, whichever worker is scraped', async () => {
    const { http, resp, metrics } = await startCluster()
    const figure = async (port: number, name: string, labels: Record<string, string> = {}) =>
      sample((await freshGet(port, '/metrics')).body, name, labels)
    const resp0 = await figure(metrics, 'redis_proxy_request_duration_seconds_count', {
      interface: 'resp',
    })
    await redis.command('SET', 'counted', 'v')
    // Eight connections, one per GET: four in each worker.
    const pids = new Set<number>()
    for (let i = 0; i < 8; i++) {
      const conn = await rawConnect(resp)
      conn.send(Buffer.concat([command('GET', 'counted'), command('INFO', 'proxy')]))
      const [value, info] = await conn.replies(2)
      expect(String(value)).toBe('v')
      pids.add(Number(/process_id:(\d+)\r\n/.exec(String(info))?.[1]))
      conn.close()
    }
    expect(pids.size).toBe(2)
    // Sixteen commands; six scrapes on new connections, so both workers answer some.
    for (const port of [http, metrics, http, metrics, http, metrics]) {
      const text = (await freshGet(port, '/metrics')).body
      expect(
        sample(text, 'redis_proxy_request_duration_seconds_count', { interface: 'resp' }),
      ).toBe((resp0 ?? 0) + 16)
      // One miss per worker, the rest hits: both caches counted.
      expect(sample(text, 'redis_proxy_cache_misses_total', { interface: 'http,resp' })).toBe(2)
      expect(sample(text, 'redis_proxy_cache_hits_total', { interface: 'http,resp' })).toBe(6)
      expect(sample(text, 'redis_proxy_cache_keys', { interface: 'http,resp' })).toBe(2)
      expect(sample(text, 'redis_proxy_workers')).toBe(2)
      expect(sample(text, 'redis_proxy_workers_scraped')).toBe(2)
      expect(sample(text, 'redis_proxy_worker_restarts_total')).toBe(0)
      // One family per metric, not one per worker.
      expect(text.match(/^# TYPE redis_proxy_cache_hits_total counter$/gm)).toHaveLength(1)
    }
  })

  it('answers a scrape without a worker that does not answer, and says so', async () => {
    const { proxy, metrics } = await startCluster()
    const [stuck] = [...workerPids(proxy).values()] as [number]
    process.kill(stuck, 'SIGSTOP')
    try {
      // A scrape handed to the stopped worker is not answered; the next
      // connection goes to the other one, which answers within the bound.
      let text: string | undefined
      for (let i = 0; i < 4 && text === undefined; i++) {
        text = await freshGet(metrics, '/metrics', 4000).then(
          (answer) => answer.body,
          () => undefined,
        )
      }
      expect(text).toBeDefined()
      expect(sample(text as string, 'redis_proxy_workers')).toBe(2)
      expect(sample(text as string, 'redis_proxy_workers_scraped')).toBe(1)
    } finally {
      process.kill(stuck, 'SIGCONT')
    }
  })

  it('replaces a worker that dies, logging it once, and keeps its counters counted', async () => {
    const { proxy, resp, metrics } = await startCluster()
    const before = workerPids(proxy)
    const victim = before.get(1) as number
    // Each worker answers a few GETs, and a scrape records them.
    for (let i = 0; i < 4; i++) {
      const conn = await rawConnect(resp)
      conn.send(command('GET', 'anything'))
      await conn.replies(1)
      conn.close()
    }
    const counted = async () =>
      sample(
        (await freshGet(metrics, '/metrics')).body,
        'redis_proxy_request_duration_seconds_count',
        { interface: 'resp' },
      )
    expect(await counted()).toBe(4)

    process.kill(victim, 'SIGKILL')
    const deadline = Date.now() + 10_000
    while (workerPids(proxy).get(1) === victim && Date.now() < deadline) await sleep(20)
    const after = workerPids(proxy)
    expect(after.get(1)).not.toBe(victim)
    expect(after.get(2)).toBe(before.get(2))
    expect(alive(after.get(1) as number)).toBe(true)
    const crashes = lines(proxy).filter((line) => line.msg === 'worker exited, restarting it')
    expect(crashes).toMatchObject([
      { level: 'error', pid: proxy.child.pid, worker: 1, workerPid: victim, signal: 'SIGKILL' },
    ])

    // Both slots serve again, and what the dead worker counted still counts.
    const answered = new Set<number>()
    for (let i = 0; i < 6; i++) answered.add(await respPid(resp))
    expect([...answered].sort()).toEqual([...after.values()].sort())
    const text = (await freshGet(metrics, '/metrics')).body
    expect(sample(text, 'redis_proxy_worker_restarts_total')).toBe(1)
    expect(sample(text, 'redis_proxy_workers')).toBe(2)
    expect(
      sample(text, 'redis_proxy_request_duration_seconds_count', { interface: 'resp' }),
    ).toBeGreaterThanOrEqual(4 + 6)
  })

  it('drains every worker on SIGTERM, answering what they hold, and exits 0 with none left', async () => {
    const { proxy, resp } = await startCluster({ REDIS_COMMAND_TIMEOUT: '5000' })
    const pids = [...workerPids(proxy).values()]
    await redis.command('SET', 'held', 'answered')
    // One connection in each worker, each with a GET held at the backend.
    const conns = [await rawConnect(resp), await rawConnect(resp)]
    const held = new Set<number>()
    for (const conn of conns) {
      conn.send(command('INFO', 'proxy'))
      held.add(Number(/process_id:(\d+)\r\n/.exec(String((await conn.replies(1))[0]))?.[1]))
    }
    expect(held.size).toBe(2)
    await redis.command('CLIENT', 'PAUSE', '1000', 'ALL')
    const infoBytes = conns.map((conn) => conn.received().length)
    for (const conn of conns) conn.send(command('GET', 'held'))
    await sleep(200)
    // Still owed when the signal lands.
    expect(conns.map((conn) => conn.received().length)).toEqual(infoBytes)
    proxy.child.kill('SIGTERM')

    for (const conn of conns) expect(await conn.replies(1)).toEqual([Buffer.from('answered')])
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    for (const pid of pids) expect(alive(pid), `worker ${pid}`).toBe(false)
    await expect(rawConnect(resp)).rejects.toThrow()
    const messages = lines(proxy).map((line) => [line.msg, line.worker])
    expect(messages.filter(([msg]) => msg === 'worker stopped').length).toBe(2)
    expect(messages.at(-1)).toEqual(['stopped', undefined])
    expect(lines(proxy).filter((line) => line.msg.startsWith('worker exited'))).toEqual([])
    await redis.command('PING')
  })

  it('kills a worker still running after SHUTDOWN_TIMEOUT, and still exits 0', async () => {
    const { proxy } = await startCluster({ SHUTDOWN_TIMEOUT: '300' })
    const pids = workerPids(proxy)
    const stuck = pids.get(2) as number
    // A stopped process cannot drain: only the primary's bound ends it.
    process.kill(stuck, 'SIGSTOP')
    proxy.child.kill('SIGTERM')
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    for (const pid of pids.values()) expect(alive(pid), `worker ${pid}`).toBe(false)
    expect(
      lines(proxy).filter((line) => line.msg === 'worker did not stop in time, killing it'),
    ).toMatchObject([{ worker: 2, workerPid: stuck }])
    expect(lines(proxy).at(-1)?.msg).toBe('stopped')
  })

  it('stops every worker and exits 1, without restarting, on a database the server does not have', async () => {
    // redis-server has 16 databases: /16 is refused by the server itself.
    const port = await freePort()
    const proxy = spawnProxy(['http'], {
      REDIS_URL: `${redis.url}/16`,
      WORKERS: '2',
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
    })
    started.push(proxy)
    const { code } = await proxy.exited()
    expect(code).toBe(1)
    expect(proxy.logs()).toContain(
      'redis-proxy: Invalid REDIS_URL: database 16: ERR DB index is out of range',
    )
    // Refused at start-up, or once both listen (the backend answers after
    // listen()): either way the cluster stops, as one process would.
    expect(proxy.logs()).toMatch(
      /"msg":"(start-up failed|stopping: a worker cannot run with this configuration)"/,
    )
    expect(proxy.logs()).not.toContain('restarting it')
    expect(lines(proxy).at(-1)?.msg).not.toBe('stopped')
  })

  it('refuses a bad WORKERS in one line before forking anything', async () => {
    const proxy = spawnProxy(['http'], { WORKERS: '0' })
    started.push(proxy)
    const { code } = await proxy.exited()
    expect(code).toBe(1)
    expect(proxy.logs().trim()).toBe(
      'redis-proxy: Invalid WORKERS="0": expected an integer from 1 to 1024, or auto',
    )
  })
})

describe('WORKERS=2 with a TLS listener', () => {
  it('serves TLS on every port from both workers, and passes SIGHUP on to each', async () => {
    const pki = makePki()
    try {
      const ca = pki.read(pki.ca)
      const { proxy, http, resp, metrics } = await startCluster(
        { PROXY_TLS_CERT_FILE: pki.serverCert, PROXY_TLS_KEY_FILE: pki.serverKey },
        ca,
      )
      const respOverTls = () =>
        new Promise<number>((resolve, reject) => {
          const socket = connectTls({ host: '127.0.0.1', port: resp, ca, servername: 'localhost' })
          let text = ''
          socket.on('secureConnect', () => socket.write(command('INFO', 'proxy')))
          socket.on('data', (chunk: Buffer) => {
            text += chunk.toString()
            const pid = /process_id:(\d+)\r\n/.exec(text)?.[1]
            if (pid !== undefined) {
              socket.destroy()
              resolve(Number(pid))
            }
          })
          socket.on('error', reject)
        })
      const pids = new Set<number>()
      for (let i = 0; i < 4; i++) pids.add(await respOverTls())
      expect([...pids].sort()).toEqual([...workerPids(proxy).values()].sort())
      expect((await freshGet(http, '/healthz', 5000, ca)).status).toBe(200)
      const scraped = await freshGet(metrics, '/metrics', 5000, ca)
      expect(sample(scraped.body, 'redis_proxy_workers_scraped')).toBe(2)

      proxy.child.kill('SIGHUP')
      const deadline = Date.now() + 5000
      const reloads = () =>
        lines(proxy).filter(
          (line) => line.msg === 'tls certificate reloaded' && line.reason === 'SIGHUP',
        )
      while (reloads().length < 2 && Date.now() < deadline) await sleep(20)
      expect(
        reloads()
          .map((line) => line.worker)
          .sort(),
      ).toEqual([1, 2])
      expect(alive(proxy.child.pid as number)).toBe(true)
      expect(await respOverTls()).toBeGreaterThan(0)
    } finally {
      await stopAll()
      pki.remove()
    }
  })
})

describe('WORKERS=2 with CACHE_INVALIDATION=on', () => {
  it('serves every connection the final value after a write storm straight to Redis', async () => {
    const { resp } = await startCluster({
      CACHE_INVALIDATION: 'on',
      // Only an invalidation can explain a fresh value.
      CACHE_GLOBAL_EXPIRY: '600000',
    })
    const keys = Array.from({ length: 40 }, (_, i) => `storm:${i}`)
    const writer = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true })
    const readers = Array.from(
      { length: 12 },
      () => new Redis({ host: '127.0.0.1', port: resp, lazyConnect: true }),
    )
    try {
      await writer.connect()
      for (const reader of readers) await reader.connect()
      // The readers are spread over both workers.
      const pids = new Set<number>()
      for (const reader of readers) {
        const info = await reader.info('proxy')
        pids.add(Number(/process_id:(\d+)\r\n/.exec(info)?.[1]))
      }
      expect(pids.size).toBe(2)
      for (const key of keys) await writer.set(key, 'v0')

      let storming = true
      let round = 0
      const storm = (async () => {
        while (storming) {
          round++
          const pipeline = writer.pipeline()
          for (const key of keys) pipeline.set(key, `v${round}`)
          await pipeline.exec()
        }
      })()
      const reading = readers.map(async (reader) => {
        let reads = 0
        while (storming) {
          await reader.mget(...keys)
          for (const key of keys.slice(0, 8)) await reader.get(key)
          reads++
        }
        return reads
      })
      await sleep(1500)
      storming = false
      await storm
      const reads = await Promise.all(reading)
      expect(reads.every((n) => n > 0)).toBe(true)
      const final = `v${round}`
      expect(await writer.get(keys[0] as string)).toBe(final)

      // The last invalidations reach each worker on its own connection, after
      // the writer's replies: every reader sees the final value once they are
      // in (asked until then, within a bound), and nothing stale after.
      const stale: string[] = []
      for (const [i, reader] of readers.entries()) {
        const all = await askUntil(
          () => reader.mget(...keys),
          (values) => values.every((value) => value === final),
          5000,
        ).catch(() => reader.mget(...keys))
        for (const [j, value] of all.entries()) {
          if (value !== final) stale.push(`reader ${i} MGET ${keys[j]}=${value}`)
        }
        for (const key of keys) {
          const value = await reader.get(key)
          if (value !== final) stale.push(`reader ${i} ${key}=${value}`)
        }
      }
      expect(stale).toEqual([])
    } finally {
      writer.disconnect()
      for (const reader of readers) reader.disconnect()
    }
  }, 30_000)

  it('lets every client read its own writes, on either worker', async () => {
    const { resp } = await startCluster({
      CACHE_INVALIDATION: 'on',
      CACHE_GLOBAL_EXPIRY: '600000',
    })
    const report = await readYourWrites({
      port: resp,
      clients: 20,
      pairs: 300,
      resp3: true,
      prefix: 'ryw-workers',
      timeoutMs: 60_000,
    })
    expect(report).toEqual({ pairs: 6000, stale: 0, unexpected: 0, samples: [] })
  }, 90_000)
})
