import { createServer, type Socket } from 'node:net'
import { createUsers } from '../shared/auth/acl.js'
import { AuthGate } from '../shared/auth/gate.js'
import type { Logger } from '../shared/log.js'
import type { MetricsRegistry } from '../shared/metrics.js'
import type { ReadThrough } from '../shared/read-through.js'
import type { RedisForwarder } from '../shared/redis/source.js'
import { type TlsListener, tlsAcceptor } from '../shared/tls-listener.js'
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
   * Milliseconds a connection has to complete its first command, or to log
   * in when the gate requires a password (see Connection's
   * `handshakeTimeoutMs`); 0 never. Without it, `maxClients`
   * connections that never send a byte would refuse everyone else for good.
   */
  handshakeTimeoutMs: number
  /** How long shutdown waits for replies owed before cutting connections off. */
  shutdownTimeoutMs: number
  log: Logger
  limits?: Partial<ConnectionLimits>
  /** Where this server's figures go, labelled `interface="resp"`. */
  metrics?: MetricsRegistry
  /**
   * Users and the check of their passwords (AUTH, HELLO AUTH).
   * @default an open gate over createUsers(): Redis's `default` user, `on nopass ~* &* +@all`
   */
  gate?: AuthGate
  /** TLS on the port (PROXY_TLS_CERT_FILE): the handshake is bounded by `handshakeTimeoutMs`. */
  tls?: TlsListener
  /**
   * Where the commands the sidecar does not answer itself go (the drop-in
   * interface); without it they are answered as unknown.
   */
  forwarder?: RedisForwarder
  /**
   * Clients on backend connections of their own at once (a transaction, a
   * blocking pop, a subscription); the next one is refused with an error.
   * @default 1000
   */
  maxBackendConnections?: number
  /**
   * Client ids (CLIENT ID, CLIENT LIST, CLIENT KILL ID) are `first`,
   * `first + step`, ...: with WORKERS=N, worker k of N numbers its clients
   * k, k+N, k+2N, so no two connections to the port share an id and a
   * CLIENT KILL ID answered by the wrong worker finds no client instead of a
   * stranger's.
   * @default { first: 1, step: 1 }
   */
  clientIds?: Readonly<{ first: number; step: number }>
}

export const DEFAULT_MAX_BACKEND_CONNECTIONS = 1000

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
  let nextId = options.clientIds?.first ?? 1
  const idStep = options.clientIds?.step ?? 1
  let closing = false
  let listening = options.port
  const view: ServerView = {
    service: options.service,
    ...(options.forwarder !== undefined && { forwarder: options.forwarder }),
    gate: options.gate ?? new AuthGate({ users: createUsers(), log }),
    get port() {
      return listening
    },
    maxClients: options.maxClients,
    dedicated: { open: 0, max: options.maxBackendConnections ?? DEFAULT_MAX_BACKEND_CONNECTIONS },
    startedAt: Date.now(),
    connections: () => connections.size,
    clients: () => connections,
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

  const serve = (socket: Socket) => {
    // A TLS handshake can complete after shutdown began: not served.
    if (closing) {
      socket.destroy()
      return
    }
    const connection: Connection = new Connection({
      socket,
      id: nextId,
      server: view,
      log,
      ...(options.limits === undefined ? {} : { limits: options.limits }),
      idleTimeoutMs: options.idleTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      onClosed: () => connections.delete(connection),
    })
    nextId += idStep
    connections.add(connection)
  }
  const refuse = (socket: Socket) => {
    socket.on('error', () => {})
    socket.end(MAX_CLIENTS_REACHED)
    setTimeout(() => socket.destroy(), 1000).unref()
  }
  // With TLS, a refused client still completes the handshake (bounded like
  // any other) so it can read Redis's refusal instead of a bare close.
  const tls =
    options.tls === undefined
      ? undefined
      : {
          admitted: tlsAcceptor(options.tls, {
            handshakeTimeoutMs: options.handshakeTimeoutMs,
            onSecure: serve,
            log,
          }),
          refused: tlsAcceptor(options.tls, {
            handshakeTimeoutMs: options.handshakeTimeoutMs,
            onSecure: refuse,
            log,
          }),
        }
  // Every accepted socket holds a client slot from the accept, through the TLS
  // handshake, until it closes; a raw socket closes with its TLS socket.
  const slots = new Set<Socket>()

  // allowHalfOpen: a client that half-closes still gets the replies it is owed.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket: Socket) => {
    if (closing) {
      socket.destroy()
      return
    }
    totals.connections++
    if (slots.size >= options.maxClients) {
      totals.rejected++
      if (tls === undefined) refuse(socket)
      else {
        socket.on('error', () => {})
        tls.refused.accept(socket)
      }
      return
    }
    slots.add(socket)
    socket.once('close', () => slots.delete(socket))
    if (tls === undefined) serve(socket)
    else {
      // Before the TLS socket exists a reset would be an unhandled error.
      socket.on('error', () => {})
      tls.admitted.accept(socket)
    }
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
  log.info('resp listening', { host: options.host, port, tls: options.tls !== undefined })

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
      // Handshakes still under way have no Connection yet.
      for (const socket of slots) socket.destroy()
      tls?.admitted.close()
      tls?.refused.close()
      await closed
      untrack?.()
    },
  }
}
