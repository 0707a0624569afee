import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import { createServer, type Socket } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import type { ReadinessCheck } from '../shared/health.js'
import type { Logger } from '../shared/log.js'
import type { MetricsRegistry, RequestTimer } from '../shared/metrics.js'
import type { ReadThrough } from '../shared/read-through.js'
import { createApp, HIT_CLOSE_HEADERS, HIT_HEADERS, keyFromTarget } from './app.js'

export type HttpServerOptions = {
  service: ReadThrough
  host: string
  port: number
  /** Client connections served at once; the next one gets a 503 and is closed. */
  maxClients: number
  /** How long shutdown waits for requests in flight before cutting them off. */
  shutdownTimeoutMs: number
  /**
   * Milliseconds from a connection opening, or a request beginning, until its
   * headers must have arrived; then a 408 and the close. 0 never. This is what
   * frees the client slot of a connection that never sends a byte.
   */
  headersTimeoutMs: number
  /** Milliseconds until a whole request must have arrived; 0 never. */
  requestTimeoutMs: number
  /** Milliseconds an idle keep-alive connection is kept open; 0 never. */
  keepAliveTimeoutMs: number
  log: Logger
  /** Where this server's figures go, labelled `interface="http"`; also served on `/metrics`. */
  metrics?: MetricsRegistry
  /** @default the backend connection and, when on, invalidation */
  readiness?: readonly ReadinessCheck[]
}

export type HttpServerHandle = {
  readonly port: number
  connections(): number
  /** Stops accepting, lets requests in flight finish, then closes every connection. */
  close(): Promise<void>
}

const REJECT_BODY = 'Too many connections\n'
const REJECT = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n' +
    `Retry-After: 1\r\nConnection: close\r\nContent-Length: ${REJECT_BODY.length}\r\n\r\n${REJECT_BODY}`,
)

/**
 * The Node entry for the HTTP function. A plain TCP server accepts connections
 * and hands them to an http.Server that answers cache hits itself (serveHit)
 * and everything else through the app via @hono/node-server, so a connection over
 * `maxClients` can still be answered with a 503 (net.Server's own
 * maxConnections only drops it silently).
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { service, log, metrics } = options
  let draining = false
  const sockets = new Set<Socket>()
  const app = createApp({
    service,
    draining: () => draining,
    status: () => ({ connections: sockets.size, maxClients: options.maxClients }),
    ...(options.readiness !== undefined && { readiness: options.readiness }),
    ...(metrics !== undefined && { metrics }),
  })
  const untrack = metrics?.track('http', { service, connections: () => sockets.size })
  const record = metrics?.requestTimer('http')
  const fetch = record === undefined ? app.fetch : timed(app.fetch, record)
  const viaApp = getRequestListener(fetch)
  const http = createHttpServer(
    {
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      connectionsCheckingInterval: checkingInterval(options),
    },
    (req, res) => {
      if (!serveHit(service, req, res, draining, record)) void viaApp(req, res)
    },
  )
  const front = createServer({ noDelay: true }, (socket) => {
    if (draining) {
      socket.destroy()
      return
    }
    if (sockets.size >= options.maxClients) {
      reject(socket)
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    http.emit('connection', socket)
  })
  front.on('error', (err) => log.error('http server error', { error: err.message }))

  await new Promise<void>((resolve, rejectListen) => {
    front.once('error', rejectListen)
    front.listen(options.port, options.host, () => {
      front.off('error', rejectListen)
      resolve()
    })
  })
  // http.Server only tracks its connections (idle detection, header and request
  // timeouts) once it has seen 'listening'; it never listens itself here.
  http.emit('listening')
  const address = front.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  log.info('http listening', { host: options.host, port })

  return {
    port,
    connections: () => sockets.size,
    async close() {
      if (draining) return
      draining = true
      // net.Server#close calls back only once every connection has ended, so
      // it is not awaited here: the loop below is what ends them.
      const closed = new Promise<void>((resolve) => front.close(() => resolve()))
      // Responses sent from now on carry `Connection: close`; idle keep-alive
      // connections are closed now and again as requests in flight finish.
      const deadline = Date.now() + options.shutdownTimeoutMs
      http.closeIdleConnections()
      while (sockets.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        http.closeIdleConnections()
      }
      for (const socket of sockets) socket.destroy()
      http.close()
      await closed
      untrack?.()
    },
  }
}

/**
 * node:http enforces the headers and request timeouts only when it sweeps its
 * connections, every `connectionsCheckingInterval` (30 s by default), so a
 * 10 s bound would really be up to 40 s. The sweep does cover sockets handed
 * over with emit('connection') that never send a byte (checked on Node 20:
 * they get the 408 and the close, counted from the hand-over), once the
 * server has seen 'listening'; test/silent-clients.test.ts holds it to that. A quarter of the shorter bound keeps
 * the overshoot within a quarter; a sweep walks every connection, so not more
 * often than every 10 ms, and not less often than every second.
 */
function checkingInterval(options: HttpServerOptions): number {
  const bounds = [options.headersTimeoutMs, options.requestTimeoutMs].filter((ms) => ms > 0)
  if (bounds.length === 0) return 30_000
  return Math.min(1000, Math.max(10, Math.ceil(Math.min(...bounds) / 4)))
}

type Fetch = (request: Request, env?: unknown) => Response | Promise<Response>

/**
 * Times every request around the app itself: no middleware, one clock read on
 * each side. A Response the app returns directly is passed on directly; only
 * a Promise gets one more `then`.
 */
function timed(fetch: Fetch, record: RequestTimer): Fetch {
  return (request, env) => {
    const started = performance.now()
    const response = fetch(request, env)
    if (response instanceof Promise) {
      return response.then((answered) => {
        record(started)
        return answered
      })
    }
    record(started)
    return response
  }
}

// What @hono/node-server passes to Hono verbatim (no URL parsing, no error):
// an origin-form target of these characters without dot segments, and a
// plain Host header.
const VERBATIM_TARGET = /^\/get\/[!#$&-;=?-[\]_a-z~]*$/
const DOT_SEGMENT = /\/\.\.?(?:[/?#]|$)/
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/

/**
 * Cache hits answered on node:http directly, skipping the Fetch API round trip
 * (Request, Hono's Context and routing, Response, header conversion) that costs
 * more per request than everything else a hit does. Only a GET whose target
 * the app would see verbatim and whose key is cached takes this path; it
 * answers exactly what the app answers for a hit. Everything else, including
 * every miss, goes through the app, which counts it.
 */
function serveHit(
  service: ReadThrough,
  req: IncomingMessage,
  res: ServerResponse,
  draining: boolean,
  record: RequestTimer | undefined,
): boolean {
  const started = record === undefined ? 0 : performance.now()
  const target = req.url
  if (req.method !== 'GET' || target === undefined || !VERBATIM_TARGET.test(target)) return false
  const host = req.headers.host
  if (host === undefined || !PLAIN_HOST.test(host) || DOT_SEGMENT.test(target)) return false
  const key = keyFromTarget(target)
  // has() first, so a key that is not cached is counted once, by the app.
  if (key === null || !service.cache.has(key)) return false
  const hit = service.cached(key)
  if (hit === null) return false
  res.writeHead(200, draining ? HIT_CLOSE_HEADERS : HIT_HEADERS)
  res.end(hit)
  record?.(started)
  return true
}

function reject(socket: Socket): void {
  socket.on('error', () => {})
  // Read what the client sends so closing does not turn into a reset that
  // would hide the 503 from it.
  socket.resume()
  socket.end(REJECT)
  socket.setTimeout(2000, () => socket.destroy())
}
