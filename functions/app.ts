import type { Context } from 'hono'
import { Hono } from 'hono'
import { BackendTimeoutError, OverloadedError } from '../shared/errors.js'
import {
  backendConnected,
  checkReadiness,
  invalidationEstablished,
  type ReadinessCheck,
} from '../shared/health.js'
import { keyToText } from '../shared/keys.js'
import type { ReadThrough } from '../shared/read-through.js'

export type AppDeps = {
  service: ReadThrough
  /** True once shutdown has begun: responses then ask clients to close the connection. */
  draining?: () => boolean
  /** Extra fields for `GET /` (the entry point knows what it wired up). */
  status?: () => Record<string, unknown>
  /**
   * What `/readyz` waits for; 200 only while every check passes.
   * @default the backend connection and, when on, invalidation
   */
  readiness?: readonly ReadinessCheck[]
  /** Serves `GET /metrics`; without it (runtimes with no registry) the path is 404. */
  metrics?: MetricsEndpoint
}

/** The Prometheus text of a registry, as a port: the app never imports one. */
export type MetricsEndpoint = {
  readonly contentType: string
  render(): Promise<string>
}

const PREFIX = '/get/'
const TEXT = { 'Content-Type': 'text/plain; charset=utf-8' }
const GET_HEAD = 'GET, HEAD'

// Value replies are built from constant init objects: no Headers object, no
// per-request header work in Hono's Context, and on @hono/node-server a plain
// headers object goes straight to writeHead. Every Response copies its init,
// so sharing them is safe on every runtime.
const VALUE = 'application/octet-stream'
/** Headers of a 200 from the cache; the `…_CLOSE` ones once shutdown has begun. */
export const HIT_HEADERS = { 'Content-Type': VALUE, 'X-Cache': 'HIT' }
export const HIT_CLOSE_HEADERS = { ...HIT_HEADERS, Connection: 'close' }
const HIT: ResponseInit = { status: 200, headers: HIT_HEADERS }
const HIT_CLOSE: ResponseInit = { status: 200, headers: HIT_CLOSE_HEADERS }
const MISS: ResponseInit = { status: 200, headers: { 'Content-Type': VALUE, 'X-Cache': 'MISS' } }
const MISS_CLOSE: ResponseInit = {
  status: 200,
  headers: { 'Content-Type': VALUE, 'X-Cache': 'MISS', Connection: 'close' },
}

/**
 * The HTTP function: `GET /get/{key}` through the read-through service. It only
 * translates; every caching decision lives in the service. Runtime-neutral: the
 * Node and Workers entries pass in what they built.
 */
export function createApp({ service, draining, status, readiness, metrics }: AppDeps): Hono {
  const app = new Hono()
  const checks = readiness ?? [backendConnected(service), invalidationEstablished(service)]

  app.get('/', (c) => {
    const stats = service.stats()
    return c.json({
      service: 'redis-proxy',
      status: 'ok',
      backend: service.backend(),
      invalidation: service.invalidation(),
      cache: stats,
      ...status?.(),
    })
  })

  // Alive while the process answers at all: nothing here depends on Redis, so a
  // backend outage never gets the process restarted (readiness covers that).
  app.get('/healthz', (c) => c.text('ok\n', 200, TEXT))

  app.get('/readyz', (c) => {
    const result = checkReadiness(checks)
    // Draining: ask the load balancer to stop sending traffic while in-flight
    // requests finish.
    if (draining?.()) return c.json({ ready: false, draining: true, checks: result.checks }, 503)
    return c.json(result, result.ready ? 200 : 503)
  })

  if (metrics !== undefined) {
    app.get('/metrics', async (c) =>
      c.body(await metrics.render(), 200, { 'Content-Type': metrics.contentType }),
    )
  }

  // One handler for every method, so a GET matches exactly one route: Hono
  // then calls it without composing middleware, and a hit, answered without
  // a promise, takes @hono/node-server's synchronous path. (Hono runs HEAD
  // as GET and drops the body.)
  app.all('/get/*', (c) => {
    const method = c.req.method
    if (method !== 'GET' && method !== 'HEAD') {
      return c.text('Method Not Allowed', 405, { ...TEXT, Allow: GET_HEAD })
    }
    const key = keyFromPath(c.req.url)
    if (key === null) return c.text('Bad percent-encoding in key', 400, TEXT)
    const closing = draining?.() === true
    const hit = service.get(key)
    if (!(hit instanceof Promise)) return value(hit, closing ? HIT_CLOSE : HIT)
    return miss(c, key, hit, closing)
  })

  async function miss(
    c: Context,
    key: string,
    loading: Promise<Uint8Array | null>,
    closing: boolean,
  ): Promise<Response> {
    if (closing) c.header('Connection', 'close')
    try {
      const loaded = await loading
      if (loaded === null) return c.text(`${keyToText(key)} not found!`, 404, TEXT)
      return value(loaded, closing ? MISS_CLOSE : MISS)
    } catch (err) {
      return failure(c, err, key)
    }
  }

  return app
}

function value(bytes: Uint8Array, init: ResponseInit): Response {
  // The body type wants an ArrayBuffer-backed view; Buffers from ioredis are.
  return new Response(bytes as Uint8Array<ArrayBuffer>, init)
}

/** The one place read failures become HTTP statuses. */
function failure(c: Context, err: unknown, key: string): Response {
  if (err instanceof OverloadedError) {
    return c.text('Overloaded, retry later', 503, { ...TEXT, 'Retry-After': '1' })
  }
  const status = err instanceof BackendTimeoutError ? 504 : 502
  return c.text(`Error getting key: ${keyToText(key)}`, status, TEXT)
}

/**
 * The key is the rest of the path after /get/, percent-decoded to bytes (so any
 * binary key can be asked for), as a byte string. Null when the encoding is bad.
 * Query strings are not part of the key; a literal `?` or `#` must be sent as %3F / %23.
 */
export function keyFromPath(url: string): string | null {
  const pathStart = url.indexOf('/', url.indexOf('//') + 2)
  return keyFromTarget(url, url.indexOf(PREFIX, pathStart) + PREFIX.length)
}

/** The key in `target` from `start` (just after `/get/`) to the query string, as keyFromPath. */
export function keyFromTarget(target: string, start = PREFIX.length): string | null {
  const query = target.indexOf('?', start)
  return percentDecodeToBytes(query === -1 ? target.slice(start) : target.slice(start, query))
}

/** `%XX` to the byte XX; every other char is ASCII here (URLs arrive normalized). */
export function percentDecodeToBytes(raw: string): string | null {
  let percent = raw.indexOf('%')
  if (percent === -1) return raw
  let out = ''
  let from = 0
  while (percent !== -1) {
    const hi = hex(raw.charCodeAt(percent + 1))
    const lo = hex(raw.charCodeAt(percent + 2))
    if (hi < 0 || lo < 0) return null
    out += raw.slice(from, percent) + String.fromCharCode(hi * 16 + lo)
    from = percent + 3
    percent = raw.indexOf('%', from)
  }
  return out + raw.slice(from)
}

function hex(code: number): number {
  if (code >= 48 && code <= 57) return code - 48
  if (code >= 65 && code <= 70) return code - 55
  if (code >= 97 && code <= 102) return code - 87
  return -1
}
