import type { Server as HttpServer } from 'node:http'
import { createServer, type Socket } from 'node:net'
import { createAdaptorServer } from '@hono/node-server'
import type { ReadinessCheck } from '../shared/health.js'
import type { Logger } from '../shared/log.js'
import type { MetricsRegistry, RequestTimer } from '../shared/metrics.js'
import type { ReadThrough } from '../shared/read-through.js'
import { createApp } from './app.js'

export type HttpServerOptions = {
  service: ReadThrough
  host: string
  port: number
  /** Client connections served at once; the next one gets a 503 and is closed. */
  maxClients: number
  /** How long shutdown waits for requests in flight before cutting them off. */
  shutdownTimeoutMs: number
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
 * and hands them to the Hono adaptor's http.Server, so a connection over
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
  const fetch = metrics === undefined ? app.fetch : timed(app.fetch, metrics.requestTimer('http'))
  const http = createAdaptorServer({ fetch }) as HttpServer
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

function reject(socket: Socket): void {
  socket.on('error', () => {})
  // Read what the client sends so closing does not turn into a reset that
  // would hide the 503 from it.
  socket.resume()
  socket.end(REJECT)
  socket.setTimeout(2000, () => socket.destroy())
}
