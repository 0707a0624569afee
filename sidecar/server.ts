import { createServer, type Socket } from 'node:net'
import type { AuthGate } from '../shared/auth/gate.js'
import type { Logger } from '../shared/log.js'
import type { MetricsRegistry } from '../shared/metrics.js'
import type { ReadThrough } from '../shared/read-through.js'
import type { ServerView } from './commands/types.js'
import { Connection, type ConnectionLimits } from './connection.js'

export type RespServerOptions = {
  service: ReadThrough
  host: string
  port: number
  /** Client connections served at once; the next gets Redis's own refusal and is closed. */
  maxClients: number
  /** Milliseconds without a byte from a client before it is disconnected; 0 never. */
  idleTimeoutMs: number
  /**
   * Milliseconds a connection has to complete its first command (see
   * Connection's `handshakeTimeoutMs`); 0 never. Without it, `maxClients`
   * connections that never send a byte would refuse everyone else for good.
   */
  handshakeTimeoutMs: number
  /** How long shutdown waits for replies owed before cutting connections off. */
  shutdownTimeoutMs: number
  log: Logger
  limits?: Partial<ConnectionLimits>
  /** Where this server's figures go, labelled `interface="resp"`. */
  metrics?: MetricsRegistry
  /** Who may connect and read what (AUTH, HELLO AUTH). */
  gate?: AuthGate
}

export type RespServerHandle = {
  readonly port: number
  connections(): number
  /** Stops accepting, answers what was already received, then closes every connection. */
  close(): Promise<void>
}

const MAX_CLIENTS_REACHED = Buffer.from('-ERR max number of clients reached\r\n')

/** The RESP sidecar: a TCP server that real Redis clients use as if it were Redis. */
export async function startRespServer(options: RespServerOptions): Promise<RespServerHandle> {
  const { log } = options
  const connections = new Set<Connection>()
  let nextId = 1
  let closing = false
  let listening = options.port
  const view: ServerView = {
    service: options.service,
    get port() {
      return listening
    },
    maxClients: options.maxClients,
    startedAt: Date.now(),
    connections: () => connections.size,
    totals: { connections: 0, commands: 0, rejected: 0 },
    ...(options.metrics !== undefined && {
      recordDuration: options.metrics.requestTimer('resp'),
    }),
  }
  const untrack = options.metrics?.track('resp', {
    service: options.service,
    connections: () => connections.size,
  })
  const totals = view.totals

  // allowHalfOpen: a client that half-closes still gets the replies it is owed.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket: Socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    totals.connections++
    if (connections.size >= options.maxClients) {
      totals.rejected++
      socket.on('error', () => {})
      socket.end(MAX_CLIENTS_REACHED)
      setTimeout(() => socket.destroy(), 1000).unref()
      return
    }
    const connection: Connection = new Connection({
      socket,
      id: nextId++,
      server: view,
      log,
      ...(options.limits === undefined ? {} : { limits: options.limits }),
      idleTimeoutMs: options.idleTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      onClosed: () => connections.delete(connection),
    })
    connections.add(connection)
  })
  server.on('error', (err) => log.error('resp server error', { error: err.message }))

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : options.port
  listening = port
  log.info('resp listening', { host: options.host, port })

  return {
    port,
    connections: () => connections.size,
    async close() {
      if (closing) return
      closing = true
      // Not awaited: net.Server#close calls back only after every connection ended.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const connection of connections) connection.shutdown()
      const deadline = Date.now() + options.shutdownTimeoutMs
      while (connections.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      for (const connection of connections) connection.destroy()
      await closed
      untrack?.()
    },
  }
}
