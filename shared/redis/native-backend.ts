import type { Socket } from 'node:net'
import { turnNow } from '../clock.js'
import type { Config } from '../config.js'
import { maskUrl } from '../config.js'
import type { Backend } from '../create-service.js'
import { BackendUnavailableError } from '../errors.js'
import type { InvalidationChannel, InvalidationTarget } from '../invalidation.js'
import type { Logger } from '../log.js'
import { backendTlsOptions } from '../tls-files.js'
import { openDedicated } from './dedicated.js'
import { RespSource } from './resp-source.js'
import { RespTracking } from './resp-tracking.js'
import { SentinelResolver } from './sentinel.js'
import type { RawDone } from './source.js'

/** OpenSSL's verification codes and Node's host-name check, as `err.code`. */
const TLS_VERIFY_FAILURE = /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_TLS_CERT_ALTNAME)/

/**
 * The Node backend: one pipelined RESP3 connection (the native client); with
 * CACHE_INVALIDATION=on, client tracking rides on it in-band.
 *
 * With REDIS_SENTINELS, every connection (the cache's, the RESP2 relay's, and
 * each dedicated one when it opens) goes where the SentinelResolver says the
 * primary is, and is refused unless ROLE says primary. When the primary
 * moves, the shared connections reconnect to the new one, the dedicated ones
 * are closed (their clients see the server go away, as with Redis itself),
 * and the cache is cleared: what was read from the old primary may be writes
 * the new one never received. Until a primary is known and connected, the
 * backend is not ready.
 */
export function nativeBackend(
  config: Config,
  redisUrl: string,
  log: Logger,
  hooks: { onRefused?: (reason: string) => void; forwarding?: boolean } = {},
): Backend {
  const sentinel = config.sentinel
  const redis =
    sentinel === undefined ? maskUrl(redisUrl) : `sentinel master ${sentinel.masterName}`
  // Created last (it calls back only once it has asked a sentinel, never
  // synchronously); the connections ask it where to go on every connect.
  let resolver: SentinelResolver | undefined
  const located =
    sentinel === undefined
      ? {}
      : {
          address: () => resolver?.primary(),
          primaryOnly: true,
          onDown: () => resolver?.check(),
        }
  // A down backend reports the same error on every retry: log changes, not repeats.
  let lastError = ''
  const tracking =
    config.cache.invalidation === 'on'
      ? new RespTracking(log, config.cache.tracking, config.cache.prefixes)
      : undefined
  const tls = backendTlsOptions(config)
  const source = new RespSource({
    url: redisUrl,
    ...located,
    // The drop-in interface needs the backend's command table.
    commandTable: hooks.forwarding === true,
    ...(tls !== undefined && { tls }),
    commandTimeoutMs: config.redis.commandTimeoutMs,
    livenessTimeoutMs: config.redis.livenessTimeoutMs,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    onError: (err) => {
      if (err.message === lastError) return
      lastError = err.message
      // Named apart: retrying cannot fix a certificate, and nothing falls
      // back to an unverified connection, so the backend stays not ready.
      const code = (err as NodeJS.ErrnoException).code ?? ''
      if (TLS_VERIFY_FAILURE.test(code)) {
        log.warn('backing redis certificate rejected', { redis, error: err.message, code })
      } else {
        log.warn('backing redis error', { redis, error: err.message })
      }
    },
    onReady: ({ resp3 }) => {
      lastError = ''
      const primary = resolver?.primary()
      log.info('backing redis ready', {
        redis,
        resp3,
        ...(primary !== undefined && { primary: `${primary.host}:${primary.port}` }),
      })
    },
    ...tracking?.sourceHooks(),
    ...(hooks.onRefused !== undefined && { onRefused: hooks.onRefused }),
  })
  // The cache, told to forget everything when the primary moves.
  let target: InvalidationTarget | undefined
  const invalidation: InvalidationChannel | undefined =
    sentinel === undefined
      ? tracking
      : {
          start: (service) => {
            target = service
            tracking?.start(service)
          },
          mode: () => tracking?.mode() ?? 'off',
          close: async () => {
            await resolver?.close()
            await tracking?.close()
          },
        }
  const backend: Backend = invalidation === undefined ? { source } : { source, invalidation }
  let resp2: RespSource | undefined
  // Dedicated connections open now, closed when the primary moves.
  const dedicated = new Set<Socket>()
  if (hooks.forwarding === true) {
    // RESP2 clients' commands need a RESP2 connection: their replies are
    // relayed byte for byte, and RESP3's types have no RESP2 bytes of their own.
    let lastResp2Error = ''
    const relay = new RespSource({
      url: redisUrl,
      ...located,
      protocol: 2,
      ...(tls !== undefined && { tls }),
      commandTimeoutMs: config.redis.commandTimeoutMs,
      livenessTimeoutMs: config.redis.livenessTimeoutMs,
      connectTimeoutMs: config.redis.connectTimeoutMs,
      onError: (err) => {
        // As the read connection's: changes, not every retry of an outage.
        if (err.message === lastResp2Error) return
        lastResp2Error = err.message
        log.warn('backing redis error', { redis, connection: 'resp2', error: err.message })
      },
      onReady: () => {
        lastResp2Error = ''
      },
    })
    resp2 = relay
    const timeoutMs = config.redis.commandTimeoutMs
    backend.forwarder = {
      commands: () => source.commands(),
      forward: (args, resp3, stream) => {
        const sent = (resp3 ? source : relay).forward(args, turnNow() + timeoutMs, stream)
        if (sentinel === undefined) return sent
        return sent.then((parts) => {
          // A primary demoted without our hearing of it yet: ask the sentinels.
          if (isReadOnly(parts)) resolver?.check()
          return parts
        })
      },
      send: (args, resp3, done, stream, wire) => {
        const to = resp3 ? source : relay
        const deadline = turnNow() + timeoutMs
        if (sentinel === undefined) {
          to.send(args, deadline, done, stream, wire)
          return
        }
        to.send(args, deadline, new ReadOnlyWatch(done, () => resolver?.check()), stream, wire)
      },
      dedicated: async (resp3) => {
        const primary = resolver?.primary()
        if (sentinel !== undefined && primary === undefined) {
          throw new BackendUnavailableError('no primary known from the sentinels yet')
        }
        const socket = await openDedicated({
          url: redisUrl,
          ...(primary !== undefined && { address: primary, primaryOnly: true }),
          resp3,
          ...(tls !== undefined && { tls }),
          timeoutMs: config.redis.connectTimeoutMs,
        })
        if (sentinel === undefined) return socket
        // Moved while this one was being opened: it is on the old primary.
        if (resolver?.primary() !== primary) {
          socket.destroy()
          throw new BackendUnavailableError('the primary moved while connecting')
        }
        dedicated.add(socket)
        socket.once('close', () => dedicated.delete(socket))
        return socket
      },
      close: () => relay.close(),
    }
  }
  if (sentinel !== undefined) {
    resolver = new SentinelResolver({
      sentinels: sentinel.sentinels,
      masterName: sentinel.masterName,
      username: sentinel.username,
      password: sentinel.password,
      timeoutMs: config.redis.connectTimeoutMs,
      log,
      onSwitch: () => {
        // Connections first, then the cache: once they are dropped nothing
        // more is read from the old primary, so nothing stale is stored
        // after the clear.
        source.reconnect()
        resp2?.reconnect()
        for (const socket of dedicated) socket.destroy()
        dedicated.clear()
        target?.clear()
      },
    })
  }
  return backend
}

const READONLY = Buffer.from('-READONLY')

/** A reply that is Redis's refusal of a write on a replica. */
function isReadOnly(parts: readonly Buffer[]): boolean {
  const first = parts[0]
  if (first === undefined || first[0] !== 45) return false
  const head = first.length >= READONLY.length ? first : Buffer.concat(parts as Buffer[])
  return isReadOnlyIn(head, 0, head.length)
}

function isReadOnlyIn(chunk: Buffer, start: number, end: number): boolean {
  const length = READONLY.length
  return end - start >= length && chunk.compare(READONLY, 0, length, start, start + length) === 0
}

/**
 * A forwarded command's answer, passed on once looked at: a primary demoted
 * without our hearing of it yet refuses writes (READONLY), and the
 * sentinels are asked then.
 */
class ReadOnlyWatch implements RawDone {
  constructor(
    readonly done: RawDone,
    readonly check: () => void,
  ) {}
  replied(parts: Buffer[]): void {
    if (isReadOnly(parts)) this.check()
    this.done.replied(parts)
  }
  repliedIn(chunk: Buffer, start: number, end: number): void {
    if (isReadOnlyIn(chunk, start, end)) this.check()
    this.done.repliedIn(chunk, start, end)
  }
  failed(err: Error): void {
    this.done.failed(err)
  }
}
