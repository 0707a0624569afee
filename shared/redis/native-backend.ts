import type { Config } from '../config.js'
import { maskUrl } from '../config.js'
import type { Backend } from '../create-service.js'
import type { Logger } from '../log.js'
import { backendTlsOptions } from '../tls-files.js'
import { openDedicated } from './dedicated.js'
import { RespSource } from './resp-source.js'
import { RespTracking } from './resp-tracking.js'

/** OpenSSL's verification codes and Node's host-name check, as `err.code`. */
const TLS_VERIFY_FAILURE = /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_TLS_CERT_ALTNAME)/

/**
 * The Node backend: one pipelined RESP3 connection (the native client); with
 * CACHE_INVALIDATION=on, client tracking rides on it in-band.
 */
export function nativeBackend(
  config: Config,
  redisUrl: string,
  log: Logger,
  hooks: { onRefused?: (reason: string) => void; forwarding?: boolean } = {},
): Backend {
  const redis = maskUrl(redisUrl)
  // A down backend reports the same error on every retry: log changes, not repeats.
  let lastError = ''
  const tracking = config.cache.invalidation === 'on' ? new RespTracking(log) : undefined
  const tls = backendTlsOptions(config)
  const source = new RespSource({
    url: redisUrl,
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
      log.info('backing redis ready', { redis, resp3 })
    },
    ...tracking?.sourceHooks(),
    ...(hooks.onRefused !== undefined && { onRefused: hooks.onRefused }),
  })
  const backend: Backend = tracking === undefined ? { source } : { source, invalidation: tracking }
  if (hooks.forwarding === true) {
    // RESP2 clients' commands need a RESP2 connection: their replies are
    // relayed byte for byte, and RESP3's types have no RESP2 bytes of their own.
    let lastResp2Error = ''
    const resp2 = new RespSource({
      url: redisUrl,
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
    const timeoutMs = config.redis.commandTimeoutMs
    backend.forwarder = {
      commands: () => source.commands(),
      forward: (args, resp3, stream) =>
        (resp3 ? source : resp2).forward(args, performance.now() + timeoutMs, stream),
      send: (args, resp3, done, stream) =>
        (resp3 ? source : resp2).send(args, performance.now() + timeoutMs, done, stream),
      dedicated: (resp3) =>
        openDedicated({
          url: redisUrl,
          resp3,
          ...(tls !== undefined && { tls }),
          timeoutMs: config.redis.connectTimeoutMs,
        }),
      close: () => resp2.close(),
    }
  }
  return backend
}
