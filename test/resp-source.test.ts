import { createServer } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../shared/config.js'
import { createService } from '../shared/create-service.js'
import { BackendReplyError, BackendTimeoutError } from '../shared/errors.js'
import { silentLogger } from '../shared/log.js'
import type { ReadThrough } from '../shared/read-through.js'
import { nativeBackend } from '../shared/redis/native-backend.js'
import { RespSource, type RespSourceOptions } from '../shared/redis/resp-source.js'
import type { Loaded } from '../shared/redis/source.js'
import { askUntil } from './harness/ask-until.js'
import { busyWithScript, rejectedCalls } from './harness/busy-script.js'
import { listenOnLoopback } from './harness/ports.js'
import { waitReady } from './harness/proxy.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { parseCommand, type ScriptedRedis, startScriptedRedis } from './harness/scripted-redis.js'

let redis: TestRedis
let service: ReadThrough | undefined
let source: RespSource | undefined
let scripted: ScriptedRedis | undefined

beforeAll(async () => {
  redis = await startRedis()
})

afterAll(async () => {
  await redis?.stop()
})

afterEach(async () => {
  await service?.close()
  await source?.close()
  await scripted?.close()
  service = source = scripted = undefined
  await redis.command('FLUSHALL')
})

async function startService(env: Record<string, string>): Promise<ReadThrough> {
  const config = loadConfig({ REDIS_URL: redis.url, LOG_LEVEL: 'silent', ...env })
  service = createService(config, nativeBackend(config, config.http.redisUrl, silentLogger))
  await waitReady(service)
  return service
}

/** A RespSource, once its first connection is ready. */
async function openSource(options: RespSourceOptions): Promise<RespSource> {
  await new Promise<void>((resolve) => {
    source = new RespSource({
      ...options,
      onReady: (info) => {
        options.onReady?.(info)
        resolve()
      },
    })
  })
  return source as RespSource
}

const text = (value: Uint8Array | null | undefined) =>
  value == null ? value : Buffer.from(value).toString()

describe('native RESP source: slow replies', () => {
  it('times out only the reads a 600 ms CLIENT PAUSE holds up, keeping 100 cached keys and the connection', async () => {
    const reads = await startService({ REDIS_COMMAND_TIMEOUT: '200' })
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`)
    for (const key of keys) await redis.command('SET', key, `v-${key}`)
    await redis.command('SET', 'during', 'during-value')
    await Promise.all(keys.map((key) => reads.get(key)))
    expect(keys.filter((key) => reads.peek(key) === null)).toEqual([])

    await redis.command('CLIENT', 'PAUSE', '600')
    const pausedAt = performance.now()
    const error = await Promise.resolve(reads.get('during')).catch((err: unknown) => err)
    const failedAfter = performance.now() - pausedAt
    expect(error).toBeInstanceOf(BackendTimeoutError)
    expect(failedAfter).toBeGreaterThanOrEqual(190)
    expect(reads.backend()).toBe('ready')

    await sleep(Math.max(0, 600 - (performance.now() - pausedAt)) + 200)
    // Replacing the connection would have cleared the cache (tracking may have
    // missed writes meanwhile): every key is still there.
    expect(keys.filter((key) => reads.peek(key) === null)).toEqual([])
    expect(reads.invalidation()).toBe('on')
    // The late reply took its own slot: the next reads get their own values.
    await redis.command('SET', 'after', 'after-value')
    expect(text(await reads.get('after'))).toBe('after-value')
    expect(text(await reads.get('during'))).toBe('during-value')
    // And the connection still carries invalidations.
    await redis.command('SET', 'k0', 'new')
    for (let i = 0; i < 200 && reads.peek('k0') !== null; i++) await sleep(10)
    expect(reads.peek('k0')).toBeNull()
  })

  it('reads a 200 MB value whose bytes take longer than REDIS_COMMAND_TIMEOUT to arrive', async () => {
    const size = 200 * 1024 * 1024
    // SETRANGE past the end grows the string in Redis itself: nothing this
    // large crosses the harness's own connection.
    await redis.command('SETRANGE', 'huge', String(size - 3), 'end')
    await redis.command('SETRANGE', 'huge', '0', 'start')
    // Redis takes about 250 ms here to start the reply (it copies the value
    // into its reply buffers first) and the transfer about 2 s: the deadline
    // passes while the bytes are arriving, not before the first one.
    const reader = await openSource({ url: redis.url, commandTimeoutMs: 500 })
    let loaded = await reader.get('huge', performance.now() + 500)
    expect(loaded?.value.byteLength).toBe(size)
    const value = Buffer.from(loaded?.value as Uint8Array)
    expect(value.toString('latin1', 0, 5)).toBe('start')
    expect(value.toString('latin1', size - 3)).toBe('end')
    expect(value[size / 2]).toBe(0)
    loaded = null
    await redis.command('DEL', 'huge')
    await redis.command('SET', 'small', 'x')
    expect(text((await reader.get('small', performance.now() + 1000))?.value)).toBe('x')
  }, 30_000)

  it('replaces a connection that sends nothing for the liveness window, failing everything pending', async () => {
    scripted = await startScriptedRedis((key) =>
      key === 'silent' ? { delayMs: 60_000, value: 'late' } : { delayMs: 0, value: `v-${key}` },
    )
    let readies = 0
    let losses = 0
    const reader = await openSource({
      url: scripted.url,
      commandTimeoutMs: 200,
      livenessTimeoutMs: 1000,
      onReady: () => readies++,
      onLost: () => losses++,
    })
    const silentAt = performance.now()
    await expect(reader.get('silent', silentAt + 200)).rejects.toBeInstanceOf(BackendTimeoutError)
    // Slow is not dead: the connection stays until the window has passed.
    expect(performance.now() - silentAt).toBeLessThan(1000)
    expect([reader.state(), readies, losses]).toEqual(['ready', 1, 0])

    // Asked with a long deadline: it fails when the connection is declared dead.
    const pending = reader.get('queued', performance.now() + 20_000)
    const error = await pending.catch((err: unknown) => err)
    const failedAfter = performance.now() - silentAt
    expect(error).toBeInstanceOf(BackendTimeoutError)
    expect((error as Error).message).toMatch(/nothing from backing redis for 1000 ms/)
    expect(failedAfter).toBeGreaterThanOrEqual(950)
    expect(failedAfter).toBeLessThan(10_000)

    // The socket closes, then a new connection is made and gets ready.
    for (let i = 0; i < 300 && readies < 2; i++) await sleep(10)
    expect([reader.state(), readies, losses]).toEqual(['ready', 2, 1])
    expect(text((await reader.get('fresh', performance.now() + 1000))?.value)).toBe('v-fresh')
  })

  it('honours the deadline it is given, not one of its own', async () => {
    await redis.command('SET', 'k', 'v')
    const reader = await openSource({ url: redis.url, commandTimeoutMs: 5000 })
    await expect(reader.get('k', performance.now() - 1)).rejects.toBeInstanceOf(BackendTimeoutError)
    await redis.command('CLIENT', 'PAUSE', '1000')
    const askedAt = performance.now()
    await expect(reader.get('k', askedAt + 300)).rejects.toBeInstanceOf(BackendTimeoutError)
    expect(performance.now() - askedAt).toBeLessThan(950)
  })

  it('answers getTo once, never before it returns: a value, and a failure found at once', async () => {
    await redis.command('SET', 'k', 'v')
    const reader = await openSource({ url: redis.url })
    const answers: string[] = []
    const done = (name: string) => ({
      loaded: (loaded: Loaded | null) => answers.push(`${name}: ${text(loaded?.value)}`),
      failed: (err: Error) => answers.push(`${name}: ${err.name}`),
    })
    reader.getTo('k', performance.now() + 1000, done('value'))
    reader.getTo('k', performance.now() - 1, done('late'))
    expect(answers).toEqual([])
    // Until both have come (the value takes a round trip), however slow the machine.
    for (const deadline = Date.now() + 5000; answers.length < 2 && Date.now() < deadline; ) {
      await sleep(10)
    }
    expect(answers).toEqual(['late: BackendTimeoutError', 'value: v'])
    await reader.close()
    reader.getTo('k', performance.now() + 1000, done('closed'))
    expect(answers).toHaveLength(2)
    await sleep(0)
    expect(answers[2]).toBe('closed: BackendUnavailableError')
  })
})

describe('native RESP source: setup commands', () => {
  it('sends what onSetup answers a refusal with, and is ready only once that is answered', async () => {
    const heard: string[][] = []
    // Real refusals: BCAST prefixes that overlap, then one BCAST would take.
    const plan = [
      [['CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', 'a', 'PREFIX', 'ab']],
      [['CLIENT', 'TRACKING', 'ON']],
    ]
    await openSource({
      url: redis.url,
      setup: () => plan[0] as string[][],
      onSetup: (replies) => {
        heard.push(
          replies.map((r) =>
            r instanceof Error ? (r.message.split(' ')[0] as string) : String(r),
          ),
        )
        return plan[heard.length]
      },
    })
    expect(heard).toEqual([['ERR'], ['OK']])
    const clients = String(await redis.command('CLIENT', 'LIST'))
    // The source's connection tracks the keys it reads (t), not by broadcast (B).
    expect([...clients.matchAll(/ flags=(\S*) /g)].map((m) => m[1])).toContain('t')
    expect(clients).not.toMatch(/ flags=\S*B/)
  })
})

describe("native RESP source: pushes between a read's replies", () => {
  it('tells onPush the key of a read that had its GET answered and not yet its PTTL', async () => {
    // A RESP3 server that answers `GET a` with the value, a push, then the
    // PTTL, and `GET b` with the push first: the two orders Redis can give.
    const push = (key: string) => `>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\n${key}\r\n`
    const server = createServer((socket) => {
      let pending = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk])
        for (;;) {
          const parsed = parseCommand(pending)
          if (parsed === undefined) return
          pending = pending.subarray(parsed.end)
          const [name, key] = [parsed.args[0]?.toUpperCase(), parsed.args[1]]
          if (name === 'HELLO') socket.write('%1\r\n$5\r\nproto\r\n:3\r\n')
          else if (name === 'GET' && key === 'a') socket.write(`$1\r\nv\r\n${push('a')}`)
          else if (name === 'GET') socket.write(`${push(key ?? '')}$1\r\nv\r\n`)
          else if (name === 'PTTL') socket.write(':-1\r\n')
          else socket.write('+OK\r\n')
        }
      })
    })
    const port = await listenOnLoopback(server)
    const heard: [string, string | undefined][] = []
    try {
      const opened = await openSource({
        url: `redis://127.0.0.1:${port}`,
        onPush: (p, midRead) => heard.push([String((p.items[1] as Buffer[])[0]), midRead]),
      })
      const read = (key: string) =>
        new Promise<Loaded | null>((resolve, reject) =>
          opened.getTo(key, performance.now() + 5000, { loaded: resolve, failed: reject }),
        )
      expect(await read('a')).toMatchObject({ ttlMs: null })
      expect(await read('b')).toMatchObject({ ttlMs: null })
      expect(heard).toEqual([
        ['a', 'a'],
        ['b', undefined],
      ])
    } finally {
      server.close()
    }
  })
})

describe('native RESP source: setup rounds', () => {
  it('fails a connection whose setup keeps asking, and tries again', async () => {
    const errors: string[] = []
    let rounds = 0
    source = new RespSource({
      url: redis.url,
      setup: () => [['PING']],
      onSetup: () => {
        rounds++
        return [['PING']]
      },
      onError: (err) => errors.push(err.message),
    })
    await askUntil(
      async () => errors.length,
      (n) => n >= 2,
    )
    expect(errors.slice(0, 2)).toEqual([
      'connection setup did not settle',
      'connection setup did not settle',
    ])
    // Four rounds a connection, then a new connection.
    expect(rounds).toBeGreaterThanOrEqual(8)
    expect(source.state()).not.toBe('ready')
  })
})

describe('native RESP source: a Redis busy with a script', () => {
  it('takes SELECT answered BUSY at first connect for no refusal of the database: retried, then ready', async () => {
    const busy = await startRedis(['--busy-reply-threshold', '100'])
    let done: (() => Promise<void>) | undefined
    try {
      done = await busyWithScript(busy)
      const refused: string[] = []
      const errors: string[] = []
      const ready = openSource({
        url: `${busy.url}/1`,
        onRefused: (reason) => refused.push(reason),
        onError: (err) => errors.push(err.message),
      })
      // The handshake has met BUSY (SELECT's) before the script is killed.
      await askUntil(
        async () => [...errors, ...refused],
        (seen) => seen.some((message) => message.includes('BUSY')),
      )
      expect(refused).toEqual([])
      await done()
      await ready
      expect(refused).toEqual([])
      expect(await rejectedCalls(busy, 'select')).toBeGreaterThan(0)
    } finally {
      await source?.close()
      source = undefined
      await done?.()
      await busy.stop()
    }
  })
})

describe('native RESP source: forwarded commands', () => {
  it('answers a reply within one received chunk by its bounds, and one across chunks as its parts, byte for byte', async () => {
    const big = 'x'.repeat(1 << 20)
    await redis.command('SET', 'big', big)
    const relay = await openSource({ url: redis.url, protocol: 2 })
    const heard: { how: string; bytes: Buffer }[] = []
    const done = {
      replied: (parts: Buffer[]) => heard.push({ how: 'parts', bytes: Buffer.concat(parts) }),
      repliedIn: (chunk: Buffer, start: number, end: number) =>
        heard.push({ how: 'bounds', bytes: Buffer.from(chunk.subarray(start, end)) }),
      failed: (err: Error) => heard.push({ how: err.name, bytes: Buffer.alloc(0) }),
    }
    const args = (...words: string[]) => words.map((word) => Buffer.from(word))
    relay.send(args('SET', 'k', 'v'), performance.now() + 5000, done)
    relay.send(args('INCR', 'n'), performance.now() + 5000, done)
    relay.send(args('GET', 'big'), performance.now() + 5000, done)
    const until = async (count: number) => {
      for (const deadline = Date.now() + 5000; heard.length < count && Date.now() < deadline; ) {
        await sleep(10)
      }
    }
    await until(3)
    // Sent once the megabyte is in, so no read boundary can fall inside its reply.
    relay.send(args('GET', 'k'), performance.now() + 5000, done)
    await until(4)
    expect(
      heard.map(({ how, bytes }) => [how, bytes.length > 100 ? bytes.length : String(bytes)]),
    ).toEqual([
      ['bounds', '+OK\r\n'],
      ['bounds', ':1\r\n'],
      // A megabyte comes in many reads: its parts, in order.
      ['parts', `$${big.length}\r\n${big}\r\n`.length],
      ['bounds', '$1\r\nv\r\n'],
    ])
    expect(heard[2]?.bytes.toString()).toBe(`$${big.length}\r\n${big}\r\n`)
  })
})

describe('native RESP source: a value with its TTL', () => {
  it('answers the TTL with the value: PTTL, null without expiry, nothing for a missing key', async () => {
    await redis.command('SET', 'expiring', 'e', 'PX', '10000')
    await redis.command('SET', 'forever', 'f')
    const reader = await openSource({ url: redis.url })
    const deadline = performance.now() + 1000
    const [expiring, forever, missing] = await Promise.all([
      reader.get('expiring', deadline),
      reader.get('forever', deadline),
      reader.get('missing', deadline),
    ])
    expect(text(expiring?.value)).toBe('e')
    expect(expiring?.ttlMs).toBeGreaterThan(5000)
    expect(expiring?.ttlMs).toBeLessThanOrEqual(10_000)
    expect(forever?.ttlMs).toBeNull()
    expect(text(forever?.value)).toBe('f')
    expect(missing).toBeNull()
  })

  it('does not serve a key with PX 300 from the cache once Redis has expired it', async () => {
    const reads = await startService({
      CACHE_INVALIDATION: 'off',
      CACHE_GLOBAL_EXPIRY: '600000',
    })
    await redis.command('SET', 'short-lived', 'v', 'PX', '300')
    await redis.command('SET', 'long-lived', 'v')
    const setAt = performance.now()
    expect(text(await reads.get('short-lived'))).toBe('v')
    expect(text(await reads.get('long-lived'))).toBe('v')
    expect(reads.peek('short-lived')).not.toBeNull()
    await sleep(Math.max(0, 300 - (performance.now() - setAt)) + 150)
    expect(reads.peek('short-lived')).toBeNull()
    expect(reads.peek('long-lived')).not.toBeNull()
    expect(await reads.get('short-lived')).toBeNull()
  })

  it('answers a value whose key expired between GET and PTTL, with a TTL of 0 so it is not stored', async () => {
    scripted = await startScriptedRedis((key) => ({ delayMs: 0, value: `v-${key}` }), {
      pttl: (key) => (key === 'gone' ? -2 : 1234),
    })
    const reader = await openSource({ url: scripted.url })
    const deadline = performance.now() + 1000
    const [gone, kept] = await Promise.all([
      reader.get('gone', deadline),
      reader.get('kept', deadline),
    ])
    expect({ value: text(gone?.value), ttlMs: gone?.ttlMs }).toEqual({ value: 'v-gone', ttlMs: 0 })
    expect({ value: text(kept?.value), ttlMs: kept?.ttlMs }).toEqual({
      value: 'v-kept',
      ttlMs: 1234,
    })
  })

  it('rejects a WRONGTYPE key with a BackendReplyError and stays in step', async () => {
    await redis.command('RPUSH', 'list', 'item')
    await redis.command('SET', 'after', 'a')
    const reader = await openSource({ url: redis.url })
    const deadline = performance.now() + 1000
    const [list, after] = await Promise.allSettled([
      reader.get('list', deadline),
      reader.get('after', deadline),
    ])
    expect(list.status === 'rejected' && list.reason).toBeInstanceOf(BackendReplyError)
    expect(list.status === 'rejected' && (list.reason as Error).message).toMatch(/^WRONGTYPE/)
    expect(after.status === 'fulfilled' && text(after.value?.value)).toBe('a')
  })
})
