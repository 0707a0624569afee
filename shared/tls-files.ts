import { readFileSync } from 'node:fs'
import { type ConnectionOptions, createSecureContext, type SecureContextOptions } from 'node:tls'
import { type Config, ConfigError } from './config.js'

/**
 * Reading and checking the PEM files the TLS variables name (Node only:
 * shared/config.ts stays free of node:fs for the Worker). Every failure is a
 * ConfigError naming the variable and the path, the one line start-up prints.
 */

/** A file's bytes, or a ConfigError saying why it cannot be read. */
export function readPem(variable: string, path: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw new ConfigError(`Invalid ${variable}=${JSON.stringify(path)}: cannot read it (${code})`)
  }
}

/**
 * A secure context built from exactly these files, so a bad PEM, a key that
 * is not the certificate's, or a CA file without a certificate fails here
 * and not on the first client's handshake.
 */
export function checkedContextOptions(files: {
  cert?: [variable: string, path: string] | undefined
  key?: [variable: string, path: string] | undefined
  ca?: [variable: string, path: string] | undefined
}): SecureContextOptions {
  const options: SecureContextOptions = {}
  if (files.ca !== undefined) {
    const [variable, path] = files.ca
    options.ca = readPem(variable, path)
    check(variable, path, 'expected PEM certificates', () => {
      if (!options.ca?.toString().includes('-----BEGIN CERTIFICATE-----')) throw new Error()
      createSecureContext({ ca: options.ca })
    })
  }
  if (files.cert !== undefined && files.key !== undefined) {
    const [certVariable, certPath] = files.cert
    const [keyVariable, keyPath] = files.key
    options.cert = readPem(certVariable, certPath)
    options.key = readPem(keyVariable, keyPath)
    check(certVariable, certPath, 'expected a PEM certificate', () =>
      createSecureContext({ cert: options.cert }),
    )
    check(keyVariable, keyPath, `expected the PEM private key of ${certVariable}`, () =>
      createSecureContext({ cert: options.cert, key: options.key }),
    )
  }
  return options
}

function check(variable: string, path: string, expected: string, build: () => unknown): void {
  try {
    build()
  } catch (err) {
    const reason = (err as Error).message ? ` (${(err as Error).message})` : ''
    throw new ConfigError(`Invalid ${variable}=${JSON.stringify(path)}: ${expected}${reason}`)
  }
}

/**
 * What a rediss:// connection is given: the CA it trusts (instead of the
 * system's; NODE_EXTRA_CA_CERTS is not needed), the client certificate it
 * presents, and the name the server's certificate must carry. Undefined when
 * nothing is set: the system CAs and the URL's host, as before.
 */
export function backendTlsOptions(config: Config): ConnectionOptions | undefined {
  const tls = config.tls.backend
  if (tls.caFile === undefined && tls.certFile === undefined && tls.servername === undefined) {
    return undefined
  }
  const options: ConnectionOptions = checkedContextOptions({
    ca: tls.caFile === undefined ? undefined : ['REDIS_TLS_CA_FILE', tls.caFile],
    cert: tls.certFile === undefined ? undefined : ['REDIS_TLS_CERT_FILE', tls.certFile],
    key: tls.keyFile === undefined ? undefined : ['REDIS_TLS_KEY_FILE', tls.keyFile],
  })
  if (tls.servername !== undefined) options.servername = tls.servername
  return options
}
