import { connect } from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { parseKeyRequest } from '../functions/http-fast-path.js'
import { MAX_HEADER_BYTES } from '../functions/node.js'
import { askUntil } from './harness/ask-until.js'
import { SPIN_400_MS } from './harness/busy-script.js'
import { flushBackend, startHttpProxy, type TestHttpProxy } from './harness/proxy.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'

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
  await redis.command('SET', 'k', 'value of k')
  await redis.command('SET', 'a b', 'spaced')
  // Large values: answered from the process's spare buffer (see SPARE_FROM).
  await redis.command('SET', 'big', 'b'.repeat(20_000))
  await redis.command('SET', 'huge', 'h'.repeat(1_500_000))
  // Warm, so both paths answer hits (X-Cache is part of what is compared).
  for (const key of ['k', 'a b', 'big', 'huge']) await proxy.get(key).then((r) => r.arrayBuffer())
})

const QUIET_MS = 300
const HEALTHZ = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'

/**
 * Everything the proxy sends on one connection after `parts` (written one
 * after the other, `gapMs` apart), until it closes or stays quiet. With
 * `viaNode`, the connection first asks for /healthz, which the fast path
 * leaves to node:http, so `parts` are answered there; that answer is left out.
 */
function exchange(parts: string[], options: { viaNode?: boolean; gapMs?: number } = {}) {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(proxy.port, '127.0.0.1')
    let received = ''
    let skipped = options.viaNode !== true
    let quiet: NodeJS.Timeout | undefined
    const done = () => {
      socket.destroy()
      resolve(received)
    }
    const send = async () => {
      for (const part of parts) {
        socket.write(part)
        if (options.gapMs !== undefined) await new Promise((r) => setTimeout(r, options.gapMs))
      }
    }
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1')
      if (!skipped && received.endsWith('ok\n')) {
        skipped = true
        received = ''
        void send()
      }
      clearTimeout(quiet)
      quiet = setTimeout(done, QUIET_MS)
    })
    socket.on('error', reject)
    socket.on('close', () => {
      clearTimeout(quiet)
      resolve(received)
    })
    socket.on('connect', () => {
      if (options.viaNode === true) socket.write(HEALTHZ)
      else void send()
      quiet = setTimeout(done, QUIET_MS * 3)
    })
  })
}

/** The bodies of the 200 answers in `got`, in order (other answers run into the body before them). */
function bodiesOf(got: string): string[] {
  return got.split(/HTTP\/1\.1 200 OK\r\n[\s\S]*?\r\n\r\n/).slice(1)
}

/** Date changes from second to second: the one header the two paths need not share. */
function undated(text: string): string {
  return text.replace(/^Date: .*\r\n/gm, 'Date: -\r\n')
}

const LONG_KEY = 'x'.repeat(70 * 1024)

// Requests the fast path answers, and requests it must leave to node:http
// (odd framing, bodies, other versions, bad bytes, and percent-encoded keys,
// which node:http's path also leaves to the app): either way the client
// gets exactly what node:http alone would have sent.
const CORPUS: Record<string, string> = {
  hit: 'GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  'hit, closing': 'GET /get/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  'hit, keep-alive asked': 'GET /get/k HTTP/1.1\r\nhost: x:5000\r\nconnection: Keep-Alive\r\n\r\n',
  HEAD: 'HEAD /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  'percent-encoded key': 'GET /get/a%20b HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n',
  'bad percent-encoding': 'GET /get/%zz HTTP/1.1\r\nHost: x\r\n\r\n',
  absent: 'GET /get/nothing-here HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n',
  'empty key': 'GET /get/ HTTP/1.1\r\nHost: x\r\n\r\n',
  'two pipelined': 'GET /get/k HTTP/1.1\r\nHost: x\r\n\r\nHEAD /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  'large hit': 'GET /get/big HTTP/1.1\r\nHost: x\r\n\r\n',
  'large hits around a small one':
    'GET /get/big HTTP/1.1\r\nHost: x\r\n\r\nGET /get/k HTTP/1.1\r\nHost: x\r\n\r\nGET /get/huge HTTP/1.1\r\nHost: x\r\n\r\nHEAD /get/big HTTP/1.1\r\nHost: x\r\n\r\n',
  'key then percent-encoded key':
    'GET /get/k HTTP/1.1\r\nHost: x\r\n\r\nGET /get/a%20b HTTP/1.1\r\nHost: x\r\n\r\n',
  'HTTP/1.0': 'GET /get/k HTTP/1.0\r\nHost: x\r\n\r\n',
  'no Host': 'GET /get/k HTTP/1.1\r\n\r\n',
  'two Hosts': 'GET /get/k HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n',
  'Host with a path': 'GET /get/k HTTP/1.1\r\nHost: x/y\r\n\r\n',
  'lower-case method': 'get /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  POST: 'POST /get/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
  'dot segment': 'GET /get/../healthz HTTP/1.1\r\nHost: x\r\n\r\n',
  'absolute form': 'GET http://x/get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  'Content-Length body then a request':
    'GET /get/k HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\n\r\nGET /get/a%20b HTTP/1.1\r\n\r\n',
  'chunked body': 'GET /get/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'Expect 100-continue': 'GET /get/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n',
  Upgrade: 'GET /get/k HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  'bare LF': 'GET /get/k HTTP/1.1\nHost: x\n\n',
  'bare LF in a header': 'GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n',
  'obs-fold': 'GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n',
  'space before colon': 'GET /get/k HTTP/1.1\r\nHost : x\r\n\r\n',
  'NUL in a header': 'GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n',
  'CR in a header': 'GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n',
  'two spaces in the request line': 'GET  /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
  'head over 64 KiB': `GET /get/${LONG_KEY} HTTP/1.1\r\nHost: x\r\n\r\n`,
  'unknown Connection option': 'GET /get/k HTTP/1.1\r\nHost: x\r\nConnection: foo\r\n\r\n',
}

// The corpus entries the fast path answers itself (every head of them is a
// plain key request); it hands the others to node:http.
const FAST = new Set([
  'hit',
  'hit, closing',
  'hit, keep-alive asked',
  'HEAD',
  'absent',
  'empty key',
  'two pipelined',
  'large hit',
  'large hits around a small one',
])

/** Whether every head in `request` is one the fast path answers. */
function allFast(request: string): boolean {
  const bytes = Buffer.from(request, 'latin1')
  let at = 0
  while (at < bytes.length) {
    const end = bytes.indexOf('\r\n\r\n', at)
    if (end < 0 || end + 4 - at > MAX_HEADER_BYTES) return false
    if (parseKeyRequest(bytes, at, end) === null) return false
    at = end + 4
  }
  return true
}

describe('HTTP fast path against node:http', () => {
  for (const [name, request] of Object.entries(CORPUS)) {
    it(`answers ${name} exactly as node:http does (${FAST.has(name) ? 'fast path' : 'handed over'})`, async () => {
      expect(allFast(request)).toBe(FAST.has(name))
      const fast = await exchange([request])
      const viaNode = await exchange([request], { viaNode: true })
      expect(viaNode.length).toBeGreaterThan(0)
      expect(undated(fast)).toBe(undated(viaNode))
    })
  }

  it('leaves a head that comes in pieces to node:http, which answers it and what follows in order', async () => {
    const parts = [
      'GET /get/k HT',
      'TP/1.1\r\nHo',
      'st: x\r\n',
      '\r\nGET /get/a%20b HTTP/1.1\r\nHost: x\r\n\r\n',
    ]
    const pieces = await exchange(parts, { gapMs: 30 })
    const whole = await exchange([parts.join('')], { viaNode: true })
    expect(undated(pieces)).toBe(undated(whole))
    expect(pieces.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2)
    expect(pieces.indexOf('value of k')).toBeLessThan(pieces.indexOf('spaced'))
  })

  it('hands over at the first other request and answers everything before and after it in order', async () => {
    const got = await exchange([
      `GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n${HEALTHZ}GET /get/a%20b HTTP/1.1\r\nHost: x\r\n\r\n`,
    ])
    const statuses = [...got.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])
    expect(statuses).toEqual(['200', '200', '200'])
    const at = ['value of k', 'ok\n', 'spaced'].map((body) => got.indexOf(body))
    expect(at).toEqual([...at].sort((x, y) => x - y))
    expect(at.every((i) => i >= 0)).toBe(true)
  })

  it('answers what a client that half-closes after its requests is owed, then closes', async () => {
    await redis.command('SET', 'cold', 'from redis')
    proxy.service.clear()
    const got = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: proxy.port, host: '127.0.0.1', allowHalfOpen: true })
      let received = ''
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString('latin1')
      })
      socket.on('error', reject)
      socket.on('close', () => resolve(received))
      socket.on('connect', () => {
        socket.end(
          'GET /get/cold HTTP/1.1\r\nHost: x\r\n\r\nGET /get/k HTTP/1.1\r\nHost: x\r\n\r\n',
        )
      })
    })
    expect([...got.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])).toEqual(['200', '200'])
    expect(got.endsWith('value of k')).toBe(true)
  })

  it('answers 3000 pipelined requests of a client that reads only after sending them all', async () => {
    // Answers pass the socket's buffers: the client is paused and resumed as they drain.
    const count = 3000
    const request = 'GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n'
    const got = await new Promise<string>((resolve, reject) => {
      const socket = connect(proxy.port, '127.0.0.1')
      const chunks: Buffer[] = []
      let seen = 0
      socket.pause()
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk)
        seen += chunk.toString('latin1').split('value of k').length - 1
        if (seen >= count) socket.end()
      })
      socket.on('error', reject)
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      socket.on('connect', () => {
        socket.write(request.repeat(count), () => setTimeout(() => socket.resume(), 200))
      })
    })
    expect(got.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(count)
  })

  // The answers pass the socket's buffers, so a written answer is still held
  // when the next is due: each must go out from a buffer of its own (the fast
  // path's spare is not reused meanwhile, node:http's queue holds copies of
  // the cache's lent bytes, and so does the app's Response: a key sent
  // percent-encoded is the app's to answer), whatever the cache does before
  // the client reads.
  for (const path of ['fast path', 'node:http', 'the app'] as const) {
    it(`answers large hits intact to a client that reads only after sending them all (${path})`, async () => {
      const viaNode = path === 'node:http'
      const before = ['a', 'b', 'c'].map((fill, i) => fill.repeat(9000 + 3000 * i))
      // Other bytes, a little shorter: stored where the old ones were.
      const after = ['x', 'y', 'z'].map((fill, i) => fill.repeat(8990 + 3000 * i))
      for (const [i, value] of before.entries()) await redis.command('SET', `v${i}`, value)
      for (let i = 0; i < 3; i++) await proxy.get(`v${i}`).then((r) => r.arrayBuffer())
      const count = 600
      // %3n is the digit n.
      const key = (i: number) => (path === 'the app' ? `v%3${i % 3}` : `v${i % 3}`)
      const request = (i: number) => `GET /get/${key(i)} HTTP/1.1\r\nHost: x\r\n\r\n`
      const replace = async () => {
        for (const [i, value] of after.entries()) await redis.command('SET', `v${i}`, value)
        await vi.waitFor(() => expect(proxy.service.peek('v2')).toBeNull())
        for (let i = 0; i < 3; i++) await proxy.get(`v${i}`).then((r) => r.arrayBuffer())
      }
      const got = await new Promise<string>((resolve, reject) => {
        const socket = connect(proxy.port, '127.0.0.1')
        const chunks: Buffer[] = []
        let seen = 0
        // Shorter than the status line: a line cut by a chunk's end is counted once.
        let tail = ''
        socket.pause()
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          const text = tail + chunk.toString('latin1')
          seen += text.split('HTTP/1.1 200').length - 1
          tail = text.slice(-11)
          if (seen >= count + (viaNode ? 1 : 0)) setTimeout(() => socket.end(), 100)
        })
        socket.on('error', reject)
        socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
        socket.on('connect', () => {
          const all =
            (viaNode ? HEALTHZ : '') + Array.from({ length: count }, (_, i) => request(i)).join('')
          // Answers pile up unread; the cache changes; then the client reads.
          socket.write(all, () =>
            setTimeout(() => void replace().then(() => socket.resume(), reject), 200),
          )
        })
      })
      const bodies = bodiesOf(got).slice(viaNode ? 1 : 0)
      expect(bodies).toHaveLength(count)
      let old = 0
      for (const [i, body] of bodies.entries()) {
        const whole = body === before[i % 3] || body === after[i % 3]
        expect(whole, `answer ${i}: ${body.slice(0, 20)}... (${body.length} B)`).toBe(true)
        if (body === before[i % 3]) old++
      }
      // Some were answered before the change, still unread when it came.
      expect(old).toBeGreaterThan(0)
    })
  }

  /**
   * Sends `requests` in one write and half-closes, reading nothing until
   * `meanwhile` has run (it is given how many hits the proxy has answered
   * since); then everything that comes until the proxy closes.
   */
  async function sendUnread(
    requests: string,
    meanwhile: (answered: () => number) => Promise<void>,
  ) {
    const hitsBefore = proxy.service.stats().hits
    const answered = () => proxy.service.stats().hits - hitsBefore
    const socket = connect(proxy.port, '127.0.0.1')
    const chunks: Buffer[] = []
    let lastDataAt = 0
    socket.pause()
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      lastDataAt = Date.now()
    })
    let error: Error | undefined
    socket.on('error', (err) => {
      error = err
    })
    const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now())))
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()))
    socket.end(requests)
    await meanwhile(answered)
    const answeredUnread = answered()
    socket.resume()
    const closedAt = await closed
    const bodies = bodiesOf(Buffer.concat(chunks).toString('latin1'))
    return { answeredUnread, bodies, closeAfterMs: closedAt - lastDataAt, error }
  }

  /**
   * `count` requests for 'big' (20,000 B), then `tail`, left unread until
   * the proxy stops answering them (no answer more in 200 ms): with no bound
   * that is when it has answered all of them, however slow the machine.
   */
  function pipelineUnread(count: number, tail = '') {
    return sendUnread(
      'GET /get/big HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(count) + tail,
      async (answered) => {
        await askUntil(answered, (n) => n > 0, 5000)
        for (let before = -1; answered() !== before; ) {
          before = answered()
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
      },
    )
  }

  it('stops parsing a client that pipelines requests for a large value without reading, and answers them all once it reads', async () => {
    // 5,000 requests of 20,000 B each: 100 MB of answers for 180 KB sent.
    const count = 5000
    const { answeredUnread, bodies, closeAfterMs, error } = await pipelineUnread(count)
    // 401 here (4 MiB unsent and what the kernel's buffers took); one read
    // of 64 KiB holds about 1,800 of these requests, all answered at once
    // without the bound.
    expect(answeredUnread).toBeLessThan(1000)
    expect(error).toBeUndefined()
    expect(bodies).toHaveLength(count)
    expect(bodies.every((body) => body === 'b'.repeat(20_000))).toBe(true)
    // It half-closed: the close follows its last answer, not the idle sweep.
    expect(closeAfterMs).toBeLessThan(2000)
  })

  it('counts answers waiting behind a miss toward the bound on answers not taken', async () => {
    // Redis busy for 400 ms: the miss waits, and the hits read after it are
    // made and held behind it, not yet written.
    await redis.command('SET', 'cold', 'from redis')
    proxy.service.clear()
    await proxy.get('big').then((r) => r.arrayBuffer())
    const count = 3000
    const busy = redis.command('EVAL', SPIN_400_MS, '0')
    await new Promise((resolve) => setTimeout(resolve, 30))
    const { answeredUnread, bodies } = await sendUnread(
      `GET /get/cold HTTP/1.1\r\nHost: x\r\n\r\n${'GET /get/big HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(count)}`,
      () => new Promise((resolve) => setTimeout(resolve, 200)),
    )
    // While the miss waited: 4 MiB of 20,000 B answers made, no more.
    expect(answeredUnread).toBeGreaterThan(0)
    expect(answeredUnread).toBeLessThan(count / 4)
    await busy
    expect(bodies[0]).toBe('from redis')
    expect(bodies.slice(1)).toHaveLength(count)
    expect(bodies.slice(1).every((body) => body === 'b'.repeat(20_000))).toBe(true)
  })

  it('answers what came before a request for node:http that waited behind unread answers, then closes when the client had half-closed', async () => {
    // node:http cannot be handed bytes after the end of input.
    const count = 3000
    const { bodies, closeAfterMs, error } = await pipelineUnread(count, HEALTHZ)
    expect(error).toBeUndefined()
    expect(bodies.slice(0, count).every((body) => body === 'b'.repeat(20_000))).toBe(true)
    // node:http answers it when the end of input had not been seen yet when
    // it came to be parsed, else it goes with the close: never a reset.
    expect(bodies.slice(count)).toEqual(bodies.length > count ? ['ok\n'] : [])
    expect(closeAfterMs).toBeLessThan(2000)
  })

  it('keeps request order when a miss waits on Redis and hits follow it', async () => {
    await redis.command('SET', 'cold', 'from redis')
    proxy.service.clear()
    await proxy.get('k').then((r) => r.arrayBuffer())
    const got = await exchange([
      'GET /get/cold HTTP/1.1\r\nHost: x\r\n\r\nGET /get/k HTTP/1.1\r\nHost: x\r\n\r\nGET /get/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    ])
    expect([...got.matchAll(/X-Cache: (\w+)/g)].map((m) => m[1])).toEqual(['MISS', 'HIT', 'HIT'])
    expect(got.indexOf('from redis')).toBeLessThan(got.indexOf('value of k'))
    expect(got.endsWith('value of k')).toBe(true)
  })
})
