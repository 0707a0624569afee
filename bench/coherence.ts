/**
 * Coherence latency: how long after Redis acknowledges a write by another
 * client the HTTP proxy serves the new value, with CACHE_INVALIDATION=on.
 *
 *   npm run bench:coherence                  # 1000 writes
 *   WRITES=200 npm run bench:coherence
 *
 * Starts its own redis-server and the built proxy (dist/main.js http) on free
 * loopback ports, stops both when done or after MAX_SECONDS, and prints one
 * JSON line. For each write: the key is read through the proxy until it is a
 * cache HIT of the current value, then SET by a separate connection; the clock
 * starts when Redis answers OK and stops at the first proxy answer carrying the
 * new value (the proxy is asked back to back, so the resolution is one HTTP
 * round trip, also reported).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { freePort } from '../test/harness/ports.js'
import { startRedis, type TestRedis } from '../test/harness/redis-server.js'

const WRITES = Number(process.env.WRITES ?? 1000)
const MAX_SECONDS = Number(process.env.MAX_SECONDS ?? 180)
/** A write not seen by then counts as a failure, not as a latency. */
const PER_WRITE_TIMEOUT_MS = 2000
const KEYS = 16
const MAIN = fileURLToPath(new URL('../main.js', import.meta.url))

async function main(): Promise<void> {
  const deadline = Date.now() + MAX_SECONDS * 1000
  let redis: TestRedis | undefined
  let proxy: ChildProcess | undefined
  let writer: Writer | undefined
  try {
    redis = await startRedis()
    const port = await freePort()
    proxy = spawn(process.execPath, [MAIN, 'http'], {
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_URL: redis.url,
        PROXY_HOST_HTTP: '127.0.0.1',
        PROXY_PORT_HTTP: String(port),
        CACHE_GLOBAL_EXPIRY: '600000',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    const base = `http://127.0.0.1:${port}`
    await waitFor(async () => (await status(base)).invalidation === 'on', 10_000)
    writer = await Writer.open(redis.port)

    const latencies: number[] = []
    const roundTrips: number[] = []
    let failures = 0
    let staleAfterFresh = 0
    for (let i = 0; i < WRITES && Date.now() < deadline; i++) {
      const key = `coherence:${i % KEYS}`
      const previous = `v${i - KEYS}`
      if (i < KEYS) await writer.set(key, previous)
      // Cached and current before the write.
      for (;;) {
        const started = performance.now()
        const answer = await get(base, key)
        roundTrips.push(performance.now() - started)
        if (answer.body === previous && answer.cache === 'HIT') break
      }
      const value = `v${i}`
      await writer.set(key, value)
      const acked = performance.now()
      let seen = false
      while (performance.now() - acked < PER_WRITE_TIMEOUT_MS) {
        const answer = await get(base, key)
        if (answer.body === value) {
          latencies.push(performance.now() - acked)
          seen = true
          break
        }
      }
      if (!seen) failures++
      // Once seen, the old value must never come back.
      if ((await get(base, key)).body !== value) staleAfterFresh++
    }

    const sorted = latencies.sort((a, b) => a - b)
    const trips = roundTrips.sort((a, b) => a - b)
    const final = await status(base)
    process.stdout.write(
      `${JSON.stringify({
        bench: 'coherence',
        transport: 'http',
        writes: latencies.length + failures,
        failures,
        staleAfterFresh,
        writeToFreshMs: {
          p50: round(percentile(sorted, 0.5)),
          p99: round(percentile(sorted, 0.99)),
          max: round(sorted.at(-1) ?? Number.NaN),
        },
        hitRoundTripMs: { p50: round(percentile(trips, 0.5)), p99: round(percentile(trips, 0.99)) },
        invalidations: final.cache.invalidations,
        node: process.version,
      })}\n`,
    )
  } finally {
    writer?.close()
    if (proxy !== undefined && proxy.exitCode === null) {
      const exited = new Promise((resolve) => proxy?.once('exit', resolve))
      proxy.kill('SIGTERM')
      await exited
    }
    await redis?.stop()
  }
}

type Status = { invalidation: string; cache: { invalidations: number } }

async function status(base: string): Promise<Status> {
  const res = await fetch(`${base}/`)
  return (await res.json()) as Status
}

async function get(base: string, key: string): Promise<{ body: string; cache: string | null }> {
  const res = await fetch(`${base}/get/${key}`)
  return { body: await res.text(), cache: res.headers.get('x-cache') }
}

/** One kept-open connection that sends SET and waits for +OK: the "other client". */
class Writer {
  #pending: (() => void) | undefined
  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true)
    socket.on('data', () => {
      const done = this.#pending
      this.#pending = undefined
      done?.()
    })
  }

  static open(port: number): Promise<Writer> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Writer(socket)))
      socket.once('error', reject)
    })
  }

  set(key: string, value: string): Promise<void> {
    return new Promise((resolve) => {
      this.#pending = resolve
      this.socket.write(
        `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`,
      )
    })
  }

  close(): void {
    this.socket.destroy()
  }
}

async function waitFor(ok: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await ok()) return
    } catch {}
    if (Date.now() > deadline) throw new Error('proxy did not come up with invalidation on')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

await main()
