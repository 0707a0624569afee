import { createServer, type ServerResponse } from 'node:http'
import type { AuthGate } from './auth/gate.js'
import { authenticateHttp, isRefusal } from './auth/http.js'
import { checkReadiness, type ReadinessCheck } from './health.js'
import type { Logger } from './log.js'
import type { MetricsRegistry } from './metrics.js'

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
}

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
  const server = createServer((req, res) => {
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
  })
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
  options.log?.info('metrics listening', { host: options.host ?? '0.0.0.0', port })

  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
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
