import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import { createServer, type Socket } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import type { AuthGate } from '../shared/auth/gate.js'
import type { ReadinessCheck } from '../shared/health.js'
import type { Logger } from '../shared/log.js'
import type { MetricsRegistry, RequestTimer } from '../shared/metrics.js'
import type { ReadThrough } from '../shared/read-through.js'
import { type TlsListener, tlsAcceptor } from '../shared/tls-listener.js'
import {
  createApp,
  createKeyReader,
  type GetClientAddress,
  type KeyAnswer,
  type KeyReader,
  keyFromTarget,
} from './app.js'
import { createFastPath } from './http-fast-path.js'

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
  /** Who may read what; without it nothing asks for credentials. */
  gate?: AuthGate
  /** HTTPS (PROXY_TLS_CERT_FILE): the handshake is bounded by `headersTimeoutMs`. */
  tls?: TlsListener
}

export type HttpServerHandle = {
  readonly port: number
  connections(): number
  /** Stops accepting, lets requests in flight finish, then closes every connection. */
  close(): Promise<void>
}

/**
 * The request line and headers together, key included (Node's default is
 * 16 KiB). A key, percent-encoded, must fit in this with the rest of the
 * head; a longer one is answered 431. RESP takes keys of any length.
 */
export const MAX_HEADER_BYTES = 64 * 1024

const REJECT_BODY = 'Too many connections\n'
const REJECT = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n' +
    `Retry-After: 1\r\nConnection: close\r\nContent-Length: ${REJECT_BODY.length}\r\n\r\n${REJECT_BODY}`,
)

/**
 * The Node entry for the HTTP function. A plain TCP server accepts connections
 * and hands them to an http.Server that answers key requests itself (serveKey)
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
    ...(options.gate !== undefined && { gate: options.gate }),
    clientAddress: nodeClientAddress,
  })
  const untrack = metrics?.track('http', { service, connections: () => sockets.size })
  const record = metrics?.requestTimer('http')
  const fetch = record === undefined ? app.fetch : timed(app.fetch, record)
  const viaApp = getRequestListener(fetch)
  const readKey = createKeyReader({
    service,
    draining: () => draining,
    ...(options.gate !== undefined && { gate: options.gate }),
  })
  const http = createHttpServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: options.headersTimeoutMs,
      requestTimeout: options.requestTimeoutMs,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      connectionsCheckingInterval: checkingInterval(options),
    },
    (req, res) => {
      if (!serveKey(readKey, req, res, record)) void viaApp(req, res)
    },
  )
  // Plain TCP connections start on the fast path, which hands them to
  // http.Server at their first request that is not a plain key request.
  const fast = createFastPath({
    readKey,
    http,
    record,
    headersTimeoutMs: options.headersTimeoutMs,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs,
    maxHeaderBytes: MAX_HEADER_BYTES,
    checkIntervalMs: checkingInterval(options),
  })
  // With TLS, http.Server sees a connection only once its handshake is done;
  // the client slot is held from the accept (`sockets` holds raw sockets,
  // which close with their TLS socket). A refused client completes the
  // handshake too, so it reads the 503 instead of a bare close.
  const tls =
    options.tls === undefined
      ? undefined
      : {
          admitted: tlsAcceptor(options.tls, {
            handshakeTimeoutMs: options.headersTimeoutMs,
            onSecure: (socket) => http.emit('connection', socket),
            log,
          }),
          refused: tlsAcceptor(options.tls, {
            handshakeTimeoutMs: options.headersTimeoutMs,
            onSecure: reject,
            log,
          }),
        }
  // allowHalfOpen: a client that half-closes after its requests still gets
  // the answers the fast path owes it (node:http decides for its own).
  const front = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    if (draining) {
      socket.destroy()
      return
    }
    if (sockets.size >= options.maxClients) {
      if (tls === undefined) reject(socket)
      else {
        socket.on('error', () => {})
        tls.refused.accept(socket)
      }
      return
    }
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    if (tls === undefined) fast.accept(socket)
    else {
      // Before the TLS socket exists a reset would be an unhandled error.
      socket.on('error', () => {})
      tls.admitted.accept(socket)
    }
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
  log.info('http listening', { host: options.host, port, tls: options.tls !== undefined })

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
      fast.closeIdle()
      while (sockets.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
        http.closeIdleConnections()
        fast.closeIdle()
      }
      fast.close()
      for (const socket of sockets) socket.destroy()
      http.close()
      tls?.admitted.close()
      tls?.refused.close()
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

/**
 * The client address port on Node: the socket's peer, as getConnInfo reads
 * it (the fast path reads the same socket property directly). A proxy in
 * front makes every client its address: see the README's Security section.
 */
export const nodeClientAddress: GetClientAddress = (c) => getConnInfo(c).remote.address ?? 'unknown'

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

/**
 * The @hono/node-server release whose Request construction the checks below
 * were read from (its `getRequestListener` builds the URL from the target and
 * Host as they are when they match these, and parses them otherwise). A test
 * compares it with the installed one, so an upgrade is read again before the
 * fast path trusts it.
 */
export const FAST_PATH_ADAPTER_VERSION = '2.1.9'

// What @hono/node-server passes to Hono verbatim (no URL parsing, no error):
// an origin-form target of these characters without dot segments, and a
// plain Host header.
const VERBATIM_TARGET = /^\/get\/[!#$&-;=?-[\]_a-z~]*$/
const DOT_SEGMENT = /\/\.\.?(?:[/?#]|$)/
const PLAIN_HOST = /^[a-z0-9._-]+(?::(?:[1-5]\d{3,4}|[6-9]\d{3}))?$/

/**
 * Key requests answered on node:http directly, skipping the Fetch API round
 * trip (Request, Hono's Context and routing, Response, header conversion)
 * that costs more per request than everything else a hit does. It skips
 * nothing else: the answer comes from the app's own key reader (the one
 * function behind the app's `/get/*` route, which has no middleware), and
 * only a GET or HEAD whose target and Host the adapter would hand to the app
 * verbatim takes this path, so the key is the one the app would read.
 * Everything else goes through the app.
 */
function serveKey(
  readKey: KeyReader,
  req: IncomingMessage,
  res: ServerResponse,
  record: RequestTimer | undefined,
): boolean {
  const method = req.method
  const target = req.url
  if ((method !== 'GET' && method !== 'HEAD') || target === undefined) return false
  if (!VERBATIM_TARGET.test(target) || DOT_SEGMENT.test(target)) return false
  const host = req.headers.host
  if (host === undefined || !PLAIN_HOST.test(host)) return false
  const started = record === undefined ? 0 : performance.now()
  const answer = readKey(
    method,
    keyFromTarget(target),
    req.headers.authorization,
    req.socket.remoteAddress ?? 'unknown',
  )
  if (answer instanceof Promise) {
    void answer.then((answered) => {
      send(res, answered)
      record?.(started)
    })
  } else {
    send(res, answer)
    record?.(started)
  }
  return true
}

function send(res: ServerResponse, answer: KeyAnswer): void {
  if (res.destroyed) return
  res.writeHead(answer.status, answer.headers)
  if (answer.body === null) res.end()
  // A lent body is copied: node:http may hold it until the client takes it.
  else res.end(answer.lent ? Buffer.from(answer.body) : answer.body)
}

function reject(socket: Socket): void {
  socket.on('error', () => {})
  // Read what the client sends so closing does not turn into a reset that
  // would hide the 503 from it.
  socket.resume()
  socket.end(REJECT)
  socket.setTimeout(2000, () => socket.destroy())
}
