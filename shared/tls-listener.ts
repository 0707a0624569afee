import { unwatchFile, watchFile } from 'node:fs'
import type { Socket } from 'node:net'
import {
  createServer,
  type SecureContextOptions,
  type Server,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls'
import type { Logger } from './log.js'
import { checkedContextOptions } from './tls-files.js'

/** The proxy's own certificate, and the CA clients must present a certificate of. */
export type TlsListenerFiles = Readonly<{
  certFile: string
  keyFile: string
  /** Set: mutual TLS, a client without a certificate this CA signed is refused. */
  caFile: string | undefined
}>

/**
 * The certificate every TLS listener of the process serves, kept current:
 * `reload()` rereads the files, and every listener made by `tlsAcceptor` or
 * `follow`ed takes the new context for the connections that come after it.
 * Open connections keep the session they negotiated.
 */
export type TlsListener = {
  /** True when PROXY_TLS_CA_FILE asks clients for a certificate. */
  readonly clientCertificates: boolean
  /** Options for a tls.Server (or https.Server) serving the current certificate. */
  serverOptions(): TlsOptions
  /** Keeps `server`'s context current across reloads; returns the unsubscribe. */
  follow(server: Server): () => void
  /**
   * Rereads the files. A set that does not load (bad PEM, a key that is not
   * the certificate's) keeps the current context and logs one warning.
   */
  reload(reason: string): boolean
  /** Reloads on SIGHUP and when a file changes (polled: see watch's comment); returns the stop. */
  watch(options?: { intervalMs?: number }): () => void
}

/** @default 1000 ms between polls of the certificate files */
const WATCH_INTERVAL_MS = 1000
/** A new certificate and its key are written one after the other: one reload for both. */
const SETTLE_MS = 200

/** Reads and checks the files now: a bad one throws the ConfigError start-up prints. */
export function createTlsListener(files: TlsListenerFiles, log: Logger): TlsListener {
  const load = (): SecureContextOptions =>
    checkedContextOptions({
      cert: ['PROXY_TLS_CERT_FILE', files.certFile],
      key: ['PROXY_TLS_KEY_FILE', files.keyFile],
      ca: files.caFile === undefined ? undefined : ['PROXY_TLS_CA_FILE', files.caFile],
    })
  let current = load()
  const followers = new Set<Server>()
  const clientCertificates = files.caFile !== undefined

  const reload = (reason: string): boolean => {
    let next: SecureContextOptions
    try {
      next = load()
    } catch (err) {
      log.warn('tls certificate reload failed, keeping the previous certificate', {
        reason,
        error: (err as Error).message,
      })
      return false
    }
    current = next
    for (const server of followers) server.setSecureContext(current)
    log.info('tls certificate reloaded', { reason, cert: files.certFile })
    return true
  }

  return {
    clientCertificates,
    serverOptions: () => ({
      ...current,
      requestCert: clientCertificates,
      rejectUnauthorized: clientCertificates,
    }),
    follow(server) {
      followers.add(server)
      return () => followers.delete(server)
    },
    reload,
    watch(options = {}) {
      const interval = options.intervalMs ?? WATCH_INTERVAL_MS
      let settle: NodeJS.Timeout | undefined
      // fs.watchFile polls stat(): unlike fs.watch, it still sees a file
      // replaced by rename (editors, cert-manager, a Kubernetes Secret's
      // symlink swap), because it looks the path up again every time.
      const changed = (now: { mtimeMs: number }, before: { mtimeMs: number }) => {
        if (now.mtimeMs === before.mtimeMs) return
        clearTimeout(settle)
        settle = setTimeout(() => reload('file changed'), SETTLE_MS)
        settle.unref()
      }
      const paths = [
        files.certFile,
        files.keyFile,
        ...(files.caFile === undefined ? [] : [files.caFile]),
      ]
      for (const path of paths) watchFile(path, { interval, persistent: false }, changed)
      const onHangup = () => reload('SIGHUP')
      process.on('SIGHUP', onHangup)
      return () => {
        clearTimeout(settle)
        for (const path of paths) unwatchFile(path, changed)
        process.off('SIGHUP', onHangup)
      }
    },
  }
}

export type TlsAcceptorOptions = {
  /**
   * Milliseconds from accepting until the handshake must be complete; then
   * the socket is destroyed, and its client slot with it. 0 takes Node's
   * 120 s: a handshake is never unbounded.
   */
  handshakeTimeoutMs: number
  /** Called with each client whose handshake completed (and, with mutual TLS, was authorized). */
  onSecure(socket: TLSSocket): void
  /** @default the listener's: true when PROXY_TLS_CA_FILE is set */
  clientCertificates?: boolean
  log: Logger
}

/**
 * TLS for sockets a front net.Server accepted (it counts and refuses clients
 * before any handshake): `accept(raw)` runs the handshake on a tls.Server
 * that never listens, so Node's own client-certificate check applies. The
 * raw socket emits 'close' when its TLS socket closes, so a slot counted on
 * the raw socket is freed either way.
 */
export function tlsAcceptor(
  listener: TlsListener,
  options: TlsAcceptorOptions,
): { accept(raw: Socket): void; close(): void } {
  const clientCertificates = options.clientCertificates ?? listener.clientCertificates
  const server = createServer(
    {
      ...listener.serverOptions(),
      requestCert: clientCertificates,
      rejectUnauthorized: clientCertificates,
      // Node arms this on the TLS socket and disarms it once secure; the
      // handshake's own bytes do not reset it, so it bounds the whole handshake.
      handshakeTimeout: options.handshakeTimeoutMs > 0 ? options.handshakeTimeoutMs : 120_000,
    },
    options.onSecure,
  )
  // A failed or timed-out handshake (no certificate, an unknown CA, plain
  // text on a TLS port, silence). With a listener here Node leaves the socket
  // open (a timeout included), so it is destroyed here: that frees the slot.
  server.on('tlsClientError', (err, socket) => {
    options.log.debug('tls handshake failed', { error: err.message })
    socket.destroy()
  })
  const unfollow = listener.follow(server)
  return {
    accept: (raw) => server.emit('connection', raw),
    close: unfollow,
  }
}
