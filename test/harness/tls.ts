import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Paths of PEM files made for one test file, and what each is for. */
export type TestPki = {
  readonly dir: string
  /** The CA that signed every certificate below except `otherCa`'s. */
  readonly ca: string
  /** A CA that signed nothing here: trusting it must fail every handshake. */
  readonly otherCa: string
  /** localhost / 127.0.0.1, valid now. */
  readonly serverCert: string
  readonly serverKey: string
  /** localhost / 127.0.0.1, expired yesterday. */
  readonly expiredCert: string
  readonly expiredKey: string
  /** A client certificate for mutual TLS (CN=client). */
  readonly clientCert: string
  readonly clientKey: string
  /** Reads a file of the set. */
  read(path: string): Buffer
  remove(): void
}

/**
 * A throwaway PKI made with the machine's `openssl`: a CA, a server
 * certificate for localhost and 127.0.0.1, an expired one, a client
 * certificate, and an unrelated CA. EC P-256 keys: a whole set takes a few
 * tens of milliseconds.
 */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-pki-'))
  const at = (name: string) => join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const ca = (name: string, cn: string) =>
    openssl(
      'req',
      '-x509',
      ...key,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
    )
  ca('ca', 'redis-proxy test CA')
  ca('other-ca', 'unrelated test CA')
  writeFileSync(at('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  writeFileSync(at('client.ext'), 'extendedKeyUsage=clientAuth\n')
  const leaf = (name: string, cn: string, ext: string, days: string) => {
    openssl('req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`)
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      days,
      '-extfile',
      ext,
    )
  }
  leaf('server', 'localhost', 'server.ext', '2')
  // A negative validity: notAfter before notBefore, so already expired.
  leaf('expired', 'localhost', 'server.ext', '-1')
  leaf('client', 'client', 'client.ext', '2')
  return {
    dir,
    ca: at('ca.crt'),
    otherCa: at('other-ca.crt'),
    serverCert: at('server.crt'),
    serverKey: at('server.key'),
    expiredCert: at('expired.crt'),
    expiredKey: at('expired.key'),
    clientCert: at('client.crt'),
    clientKey: at('client.key'),
    read: (path) => readFileSync(path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/**
 * redis-server arguments for TLS only on `port` (plain TCP off), trusting the
 * test CA; serving `serve` (the expired pair, say) instead of the server pair.
 */
export function redisTlsArgs(
  pki: TestPki,
  options: { authClients: boolean; serve?: { cert: string; key: string } | undefined },
): string[] {
  return [
    '--tls-cert-file',
    options.serve?.cert ?? pki.serverCert,
    '--tls-key-file',
    options.serve?.key ?? pki.serverKey,
    '--tls-ca-cert-file',
    pki.ca,
    '--tls-auth-clients',
    options.authClients ? 'yes' : 'no',
  ]
}
