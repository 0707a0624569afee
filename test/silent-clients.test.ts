import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { type ProxyProcess, spawnProxy, waitServing } from './harness/process.js'
import { startHttpProxy } from './harness/proxy.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

const BOUND_MS = 500
// The proxy, redis-server and other suites share two cores: the bound is
// checked from below exactly and from above with a wide margin.
const MARGIN_MS = 3000

let redis: TestRedis
let proxy: ProxyProcess
let httpPort: number
let respPort: number

beforeAll(async () => {
  redis = await startRedis()
  await redis.command('SET', 'k', 'v')
  ;[httpPort, respPort] = [await freePort(), await freePort()]
  proxy = spawnProxy([], {
    REDIS_URL: redis.url,
    PROXY_HOST_HTTP: '127.0.0.1',
    PROXY_PORT_HTTP: String(httpPort),
    PROXY_HOST_TCP: '127.0.0.1',
    PROXY_PORT_TCP: String(respPort),
    MAX_CLIENTS: '20',
    HTTP_HEADERS_TIMEOUT: String(BOUND_MS),
    HTTP_REQUEST_TIMEOUT: String(BOUND_MS),
    RESP_HANDSHAKE_TIMEOUT: String(BOUND_MS),
  })
  // Not fetch: its pool would keep a connection open, and take a slot.
  await waitServing(proxy)
})

afterAll(async () => {
  proxy?.child.kill('SIGTERM')
  await proxy?.exited()
  await redis?.stop()
})

type Silent = { socket: Socket; openedAt: number; closedAt: Promise<number> }

/** A connection that sends nothing; `closedAt` resolves when the proxy closes it. */
function openSilent(port: number): Promise<Silent> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    socket.resume()
    const closedAt = new Promise<number>((done) => socket.once('close', () => done(Date.now())))
    socket.once('error', reject)
    socket.once('connect', () => {
      socket.off('error', reject)
      socket.on('error', () => {})
      resolve({ socket, openedAt: Date.now(), closedAt })
    })
  })
}

/** Everything one raw HTTP request gets back, until the proxy closes or `Connection: close` ends it. */
function httpExchange(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let received = ''
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(received))
    socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
  })
}

/** `promise`, or a failure naming what did not happen within the bound and its margin. */
function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`waited ${BOUND_MS + MARGIN_MS} ms for ${what}`)),
      BOUND_MS + MARGIN_MS,
    )
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

describe('silent connections against MAX_CLIENTS=20', () => {
  it('closes 20 silent sockets on each port within the bound, then serves a new client', async () => {
    const http = await Promise.all(Array.from({ length: 20 }, () => openSilent(httpPort)))
    const resp = await Promise.all(Array.from({ length: 20 }, () => openSilent(respPort)))
    const openedAt = Math.max(...[...http, ...resp].map((silent) => silent.openedAt))

    // They hold every slot: without the bounds, this is how it would stay.
    // Connections are accepted in order, so these are counted after all 20.
    expect(await httpExchange(httpPort, '/get/k')).toContain('503 Service Unavailable')
    const refused = await rawConnect(respPort)
    expect(await refused.replies(1)).toEqual([new Error('ERR max number of clients reached')])
    refused.close()

    const httpClosed = await within(
      Promise.all(http.map((silent) => silent.closedAt)),
      'the silent HTTP sockets to be closed',
    )
    const respClosed = await within(
      Promise.all(resp.map((silent) => silent.closedAt)),
      'the silent RESP sockets to be closed',
    )
    for (const [i, closedAt] of httpClosed.entries()) {
      expect(closedAt - (http[i] as Silent).openedAt).toBeGreaterThanOrEqual(BOUND_MS - 50)
    }
    for (const [i, closedAt] of respClosed.entries()) {
      expect(closedAt - (resp[i] as Silent).openedAt).toBeGreaterThanOrEqual(BOUND_MS - 50)
    }

    // The server counts a connection gone on its own 'close', which can come
    // a moment after the client saw the socket close: a new client may be
    // refused once in that moment, not after it.
    let served = await httpExchange(httpPort, '/get/k')
    for (let i = 0; i < 20 && served.startsWith('HTTP/1.1 503'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 25))
      served = await httpExchange(httpPort, '/get/k')
    }
    expect(served).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(served.endsWith('\r\n\r\nv')).toBe(true)
    const client = await rawConnect(respPort)
    client.send(command('GET', 'k'))
    expect(await client.replies(1)).toEqual([Buffer.from('v')])
    client.close()
    expect(Date.now() - openedAt).toBeLessThan(BOUND_MS + MARGIN_MS)
  })
})

describe('HTTP connection timeouts', () => {
  it('answers 408 and closes a client that trickles its headers past HTTP_HEADERS_TIMEOUT', async () => {
    const bounded = await startHttpProxy(redis.url, {
      HTTP_HEADERS_TIMEOUT: String(BOUND_MS),
      HTTP_REQUEST_TIMEOUT: String(BOUND_MS * 4),
    })
    try {
      const socket = connect(bounded.port, '127.0.0.1')
      socket.on('error', () => {})
      let received = ''
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1')
      })
      const closed = new Promise<number>((resolve) =>
        socket.once('close', () => resolve(Date.now())),
      )
      await new Promise((resolve) => socket.once('connect', resolve))
      const opened = Date.now()
      // A header line every 50 ms: activity, but never the blank line that ends them.
      socket.write('GET /get/k HTTP/1.1\r\nHost: x\r\n')
      const drip = setInterval(() => socket.write('X-Drip: 1\r\n'), 50)
      const closedAt = await within(closed, 'the trickling client to be closed').finally(() => {
        clearInterval(drip)
        socket.destroy()
      })
      expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/)
      expect(closedAt - opened).toBeGreaterThanOrEqual(BOUND_MS - 50)
    } finally {
      await bounded.close()
    }
  })

  it('closes an idle keep-alive connection after HTTP_KEEPALIVE_TIMEOUT', async () => {
    // Whole seconds, as the Keep-Alive header states them.
    const keepAliveMs = 1000
    const bounded = await startHttpProxy(redis.url, { HTTP_KEEPALIVE_TIMEOUT: String(keepAliveMs) })
    try {
      const socket = connect(bounded.port, '127.0.0.1')
      socket.on('error', () => {})
      let received = ''
      let answeredAt = 0
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1')
        if (received.endsWith('\r\n\r\nv')) answeredAt = Date.now()
      })
      const closed = new Promise<number>((resolve) =>
        socket.once('close', () => resolve(Date.now())),
      )
      socket.write('GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n')
      const closedAt = await within(closed, 'the idle keep-alive connection to be closed').finally(
        () => socket.destroy(),
      )
      expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
      expect(received).toContain('\r\nKeep-Alive: timeout=1\r\n')
      // node:http closes a second after the advertised time, so a client that
      // reuses the connection right at the limit does not race the close.
      expect(closedAt - answeredAt).toBeGreaterThanOrEqual(keepAliveMs - 50)
    } finally {
      await bounded.close()
    }
  })
})
