import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AuthGate } from './auth/gate.js'
import { authenticateHttp, isRefusal } from './auth/http.js'
import { checkReadiness, type ReadinessCheck } from './health.js'
import type { Logger } from './log.js'
import type { MetricsRegistry } from './metrics.js'
import type { TlsListener } from './tls-listener.js'

export type MetricsServerOptions = {
  registry: MetricsRegistry
  port: number
  /** @default '0.0.0.0' */
  host?: string
  /** What `/readyz` waits for. @default none: ready while the process serves */
  readiness?: readonly ReadinessCheck[]
  log?: Logger
  /**
   * When it requires authentication, `/metrics` needs any authenticated user,
   * as on the HTTP server; `/healthz` and `/readyz` stay open for probes.
   */
  gate?: AuthGate
  /**
   * HTTPS with the proxy's certificate. Client certificates are not asked
   * for even with PROXY_TLS_CA_FILE: kubelet probes cannot present one.
   */
  tls?: TlsListener
}

/** Scrapes and probes finish a handshake at once; a client that does not is cut off. */
const HANDSHAKE_TIMEOUT_MS = 10_000

export type MetricsServerHandle = {
  readonly port: number
  close(): Promise<void>
}

const TEXT = 'text/plain; charset=utf-8'

/**
 * `/metrics`, `/healthz` and `/readyz` on a port of their own (METRICS_PORT),
 * for a process that serves no HTTP of its own, such as the RESP sidecar run
 * alone. Plain node:http: scrapes and probes are a few requests a minute.
 */
export async function startMetricsServer(
  options: MetricsServerOptions,
): Promise<MetricsServerHandle> {
  const { registry } = options
  const checks = options.readiness ?? []
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return send(res, 405, TEXT, 'Method Not Allowed\n', { Allow: 'GET, HEAD' })
    }
    switch (path) {
      case '/metrics': {
        const user = authenticateHttp(
          options.gate,
          req.headers.authorization,
          req.socket.remoteAddress ?? 'unknown',
        )
        if (isRefusal(user)) return send(res, user.status, TEXT, `${user.body}\n`, user.headers)
        registry.render().then(
          (text) => send(res, 200, registry.contentType, text),
          (err: unknown) => send(res, 500, TEXT, `${String(err)}\n`),
        )
        return
      }
      case '/healthz':
        return send(res, 200, TEXT, 'ok\n')
      case '/readyz': {
        const result = checkReadiness(checks)
        return send(res, result.ready ? 200 : 503, 'application/json', JSON.stringify(result))
      }
      default:
        return send(res, 404, TEXT, 'Not Found\n')
    }
  }
  const tls = options.tls
  const secure =
    tls === undefined
      ? undefined
      : createHttpsServer(
          {
            ...tls.serverOptions(),
            requestCert: false,
            rejectUnauthorized: false,
            handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
          },
          handle,
        )
  const unfollow = secure === undefined ? undefined : tls?.follow(secure)
  const server = secure ?? createServer(handle)
  server.on('clientError', (_err, socket) => socket.destroy())

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host ?? '0.0.0.0', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  options.log?.info('metrics listening', {
    host: options.host ?? '0.0.0.0',
    port,
    tls: tls !== undefined,
  })

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        unfollow?.()
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
