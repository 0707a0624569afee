import { type Context, Hono } from 'hono'
import type { User } from '../shared/auth/acl.js'
import type { AuthGate } from '../shared/auth/gate.js'
import { authenticateHttp, type HttpRefusal, isRefusal } from '../shared/auth/http.js'
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
  /**
   * Who may read what (see shared/auth/http.ts). Without it nothing asks for
   * credentials: the app as built by a test or a deployment with no users.
   */
  gate?: AuthGate
  /** @default every client is `unknown` (one limiter entry for all) */
  clientAddress?: GetClientAddress
}

/**
 * The client's address, as a port: each runtime knows it its own way
 * (@hono/node-server's getConnInfo on Node, CF-Connecting-IP on Workers), and
 * the app never asks which runtime it is on. It keys the failure limiter and
 * names the client in the log.
 */
export type GetClientAddress = (c: Context) => string

/** The Prometheus text of a registry, as a port: the app never imports one. */
export type MetricsEndpoint = {
  readonly contentType: string
  render(): Promise<string>
}

const PREFIX = '/get/'
const TEXT = { 'Content-Type': 'text/plain; charset=utf-8' }
const GET_HEAD = 'GET, HEAD'
const VALUE = 'application/octet-stream'
const UTF8 = new TextEncoder()

/**
 * One answer to `GET` or `HEAD /get/{key}`, runtime-neutral: the Hono route
 * turns it into a Response, the Node entry's fast path writes it to
 * node:http directly. `headers` always has Content-Length (the body's, for a
 * HEAD too). Headers are a plain object: @hono/node-server hands one straight
 * to writeHead.
 */
export type KeyAnswer = {
  readonly status: number
  readonly headers: Record<string, string>
  /** Null for HEAD. */
  readonly body: Uint8Array | null
  /**
   * The body is a cached value lent by the cache (ReadThrough.lend): valid
   * only until the cache next changes, so whoever writes it copies it
   * before anything else runs (toResponse does), never keeps it.
   */
  readonly lent: boolean
}

/**
 * Answers a key request: GET /get/{key} has this one implementation, whichever
 * path a request takes to it (see createApp and functions/node.ts), so a rule
 * for reading keys, authentication and permissions included, holds on every
 * path. `key` is null when its percent-encoding is bad; `authorization` is
 * the request's Authorization header and `address` the client's.
 */
export type KeyReader = (
  method: string,
  key: string | null,
  authorization: string | undefined,
  address: string,
) => KeyAnswer | Promise<KeyAnswer>

export type KeyReaderDeps = Pick<AppDeps, 'service' | 'draining' | 'gate'>

/** What COMMAND INFO says of GET: the categories a `-@read` or `+@string` rule is about. */
const GET_CATEGORIES: readonly string[] = Object.freeze(['read', 'string', 'fast'])

export function createKeyReader({ service, draining, gate }: KeyReaderDeps): KeyReader {
  return (method, key, authorization, address) => {
    // Before anything else, so nothing (not even whether a method is served)
    // is told to a client that is not allowed in.
    const user = authenticateHttp(gate, authorization, address)
    if (isRefusal(user)) return refusal(user, method)
    if (method !== 'GET' && method !== 'HEAD') {
      return text(405, 'Method Not Allowed', method, false, { Allow: GET_HEAD })
    }
    if (key === null) return text(400, 'Bad percent-encoding in key', method, false)
    // Before the cache: a value another user's read put there is no more
    // this user's to read than the one in Redis.
    if (user !== null && !mayRead(user, key)) {
      return text(403, `No permission to read key: ${keyToText(key)}`, method, false)
    }
    const closing = draining?.() === true
    const hit = service.lend(key)
    if (hit === null) return text(404, `${keyToText(key)} not found!`, method, closing)
    if (!(hit instanceof Promise)) return valueAnswer(hit, 'HIT', method, closing, true)
    return hit.then(
      (loaded) =>
        loaded === null
          ? text(404, `${keyToText(key)} not found!`, method, closing)
          : valueAnswer(loaded, 'MISS', method, closing, false),
      (err: unknown) => failure(err, key, method, closing),
    )
  }
}

/** As Redis decides a GET: the command's rules, then the key's read patterns. */
function mayRead(user: User, key: string): boolean {
  return user.canRun('get', undefined, GET_CATEGORIES) && user.keyAccess(key, 'read')
}

function refusal(refused: HttpRefusal, method: string): KeyAnswer {
  return text(refused.status, refused.body, method, false, refused.headers)
}

function valueAnswer(
  value: Uint8Array,
  cache: 'HIT' | 'MISS',
  method: string,
  closing: boolean,
  lent: boolean,
): KeyAnswer {
  const headers: Record<string, string> = {
    'Content-Type': VALUE,
    'Content-Length': String(value.length),
    // A value is whatever bytes the key holds: never let a browser guess
    // it is HTML or script.
    'X-Content-Type-Options': 'nosniff',
    'X-Cache': cache,
  }
  if (closing) headers.Connection = 'close'
  return { status: 200, headers, body: method === 'HEAD' ? null : value, lent }
}

function text(
  status: number,
  body: string,
  method: string,
  closing: boolean,
  extra?: Record<string, string>,
): KeyAnswer {
  const bytes = UTF8.encode(body)
  const headers: Record<string, string> = {
    ...TEXT,
    'Content-Length': String(bytes.length),
    'X-Content-Type-Options': 'nosniff',
    ...extra,
  }
  if (closing) headers.Connection = 'close'
  return { status, headers, body: method === 'HEAD' ? null : bytes, lent: false }
}

/** The one place read failures become HTTP statuses. */
function failure(err: unknown, key: string, method: string, closing: boolean): KeyAnswer {
  if (err instanceof OverloadedError) {
    return text(503, 'Overloaded, retry later', method, closing, { 'Retry-After': '1' })
  }
  const status = err instanceof BackendTimeoutError ? 504 : 502
  return text(status, `Error getting key: ${keyToText(key)}`, method, closing)
}

/** The answer as a Fetch API Response. */
export function toResponse(answer: KeyAnswer): Response {
  // The body type wants an ArrayBuffer-backed view; values are. A lent one
  // is copied: the Response is read after this returns, and neither
  // @hono/node-server's Response (which hands its body to node:http as it
  // is) nor workerd's (which keeps a view of a BufferSource) copies it.
  const body = (answer.lent ? answer.body?.slice() : answer.body) as Uint8Array<ArrayBuffer> | null
  return new Response(body, { status: answer.status, headers: answer.headers })
}

/**
 * The HTTP function: `GET /get/{key}` through the read-through service. It only
 * translates; every caching decision lives in the service. Runtime-neutral: the
 * Node and Workers entries pass in what they built.
 *
 * No middleware: each route is one handler, so Hono calls it without
 * composing anything, and the Node fast path, which skips Hono for key
 * requests, skips nothing (a test checks the route table).
 */
export function createApp(deps: AppDeps): Hono {
  const { service, draining, status, readiness, metrics, gate } = deps
  const clientAddress = deps.clientAddress ?? unknownClient
  const app = new Hono()
  const checks = readiness ?? [backendConnected(service), invalidationEstablished(service)]
  const readKey = createKeyReader(deps)
  /**
   * `/` and `/metrics` tell what the cache holds and how busy it is: any
   * authenticated user may see them (no command rule is about them), a
   * client that is not may not. The probes stay open.
   */
  const refused = (c: Context): Response | undefined => {
    const user = authenticateHttp(gate, c.req.header('authorization'), clientAddress(c))
    return isRefusal(user) ? toResponse(refusal(user, c.req.method)) : undefined
  }

  app.get('/', (c) => {
    const denied = refused(c)
    if (denied !== undefined) return denied
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
    app.get(
      '/metrics',
      async (c) =>
        refused(c) ?? c.body(await metrics.render(), 200, { 'Content-Type': metrics.contentType }),
    )
  }

  // One handler for every method, so a request matches exactly one route, and
  // a hit, answered without a promise, takes @hono/node-server's synchronous
  // path. Only `/get/` followed by the key names a key: `/get` alone is 404.
  // (Hono runs HEAD as GET; the reader answers HEAD itself with no body.)
  app.all('/get/*', (c): Response | Promise<Response> => {
    const key = keyFromPath(c.req.url)
    // As Hono's own answer for a path no route serves.
    if (key === undefined) return c.text('404 Not Found', 404)
    const answer = readKey(c.req.method, key, c.req.header('authorization'), clientAddress(c))
    return answer instanceof Promise ? answer.then(toResponse) : toResponse(answer)
  })

  return app
}

const unknownClient: GetClientAddress = () => 'unknown'

/**
 * The key is the rest of the path after /get/, percent-decoded to bytes (so any
 * binary key can be asked for), as a byte string. Null when the encoding is bad;
 * undefined when the path is not under /get/ (`/get` alone names no key).
 * Query strings are not part of the key; a literal `?` or `#` must be sent as %3F / %23.
 */
export function keyFromPath(url: string): string | null | undefined {
  const pathStart = url.indexOf('/', url.indexOf('//') + 2)
  // Hono's `/get/*` also matches `/get` itself, which names no key.
  if (pathStart === -1 || !url.startsWith(PREFIX, pathStart)) return undefined
  return keyFromTarget(url, pathStart + PREFIX.length)
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
