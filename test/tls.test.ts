import { execFile, execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFileSync, utimesSync, writeFileSync } from 'node:fs'
import { connect as connectTcp, type Socket } from 'node:net'
import { join } from 'node:path'
import { connect as connectTls, type TLSSocket } from 'node:tls'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { type ProxyProcess, spawnProxy } from './harness/process.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { makePki, type TestPki } from './harness/tls.js'

let pki: TestPki
let plain: TestRedis

beforeAll(async () => {
  pki = makePki()
  plain = await startRedis()
  await plain.command('SET', 'k', 'plain value')
})
afterAll(async () => {
  await plain?.stop()
  pki?.remove()
})

type Running = { proxy: ProxyProcess; http: number; resp: number; metrics: number }
const running: ProxyProcess[] = []
afterAll(async () => {
  for (const proxy of running) {
    proxy.child.kill('SIGKILL')
    await proxy.exited()
  }
})

/** The built proxy with both interfaces and METRICS_PORT, once it logs `serving`. */
async function startProxy(env: Record<string, string>): Promise<Running> {
  const [http, resp, metrics] = [await freePort(), await freePort(), await freePort()]
  const proxy = spawnProxy([], {
    PROXY_HOST_HTTP: '127.0.0.1',
    PROXY_PORT_HTTP: String(http),
    PROXY_HOST_TCP: '127.0.0.1',
    PROXY_PORT_TCP: String(resp),
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: String(metrics),
    ...env,
  })
  running.push(proxy)
  const deadline = Date.now() + 15_000
  while (!proxy.logs().includes('"msg":"serving"')) {
    if (proxy.child.exitCode !== null) throw new Error(`proxy exited: ${proxy.logs()}`)
    if (Date.now() > deadline) throw new Error(`proxy did not start: ${proxy.logs()}`)
    await sleep(50)
  }
  return { proxy, http, resp, metrics }
}

/**
 * Listening comes before the backend is ready: a read sooner fails, and so
 * does a client that checks readiness on connect (ioredis sends INFO, which
 * the proxy forwards, and closes the connection on its error).
 */
async function backendReady(running: Running): Promise<Running> {
  await until('the backend', async () =>
    running.proxy.logs().includes('backing redis ready') ? true : undefined,
  )
  return running
}

type Ran = { code: number; stdout: string; stderr: string }
function run(file: string, args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

async function readyz(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`)
  await res.arrayBuffer()
  return res.status
}

function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1
}

/** The serial number of the certificate the listener presents to a new connection. */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connectTls({ port, host: '127.0.0.1', rejectUnauthorized: false })
    socket.once('secureConnect', () => {
      resolve(socket.getPeerX509Certificate()?.serialNumber ?? '')
      socket.destroy()
    })
    socket.once('error', reject)
  })
}

const serial = (path: string) => new X509Certificate(pki.read(path)).serialNumber

describe('rediss:// to the backing Redis', () => {
  it('reads through a TLS-only redis-server, trusting REDIS_TLS_CA_FILE only', async () => {
    const redis = await startRedis([], { tls: { pki, authClients: false } })
    try {
      await redis.command('SET', 'k', 'over tls')
      const { http } = await startProxy({ REDIS_URL: redis.url, REDIS_TLS_CA_FILE: pki.ca })
      await until('ready', async () => ((await readyz(http)) === 200 ? true : undefined))
      const res = await fetch(`http://127.0.0.1:${http}/get/k`)
      expect(await res.text()).toBe('over tls')
    } finally {
      await redis.stop()
    }
  })

  it('presents REDIS_TLS_CERT_FILE to a server that requires client certificates', async () => {
    const redis = await startRedis([], { tls: { pki, authClients: true } })
    try {
      await redis.command('SET', 'k', 'mutual')
      const { http } = await startProxy({
        REDIS_URL: redis.url,
        REDIS_TLS_CA_FILE: pki.ca,
        REDIS_TLS_CERT_FILE: pki.clientCert,
        REDIS_TLS_KEY_FILE: pki.clientKey,
      })
      await until('ready', async () => ((await readyz(http)) === 200 ? true : undefined))
      const res = await fetch(`http://127.0.0.1:${http}/get/k`)
      expect(await res.text()).toBe('mutual')
    } finally {
      await redis.stop()
    }
  })

  it.each([
    // redis-server sends its CA along: an unknown CA is a self-signed one in the chain.
    ['a CA that did not sign it', {}, 'otherCa', 'self-signed certificate in certificate chain'],
    ['an expired certificate', { serve: 'expired' }, 'ca', 'certificate has expired'],
  ] as const)(
    'stays not ready and names the reason once, for %s',
    async (_name, options, ca, reason) => {
      const serve = 'serve' in options ? { cert: pki.expiredCert, key: pki.expiredKey } : undefined
      const redis = await startRedis([], {
        tls: { pki, authClients: false, ...(serve !== undefined && { serve }) },
      })
      try {
        const { proxy, http } = await startProxy({
          REDIS_URL: redis.url,
          REDIS_TLS_CA_FILE: pki[ca],
        })
        await until('the warning', async () =>
          proxy.logs().includes('backing redis certificate rejected') ? true : undefined,
        )
        // Retries go on (backoff up to 2 s): still not ready, still one warning.
        await sleep(2500)
        expect(await readyz(http)).toBe(503)
        expect(occurrences(proxy.logs(), 'backing redis certificate rejected')).toBe(1)
        expect(proxy.logs()).toContain(reason)
        expect(proxy.logs()).not.toContain('backing redis ready')
      } finally {
        await redis.stop()
      }
    },
  )
})

describe('TLS on the proxy’s own listeners', () => {
  let tls: Running
  beforeAll(async () => {
    tls = await backendReady(
      await startProxy({
        REDIS_URL: plain.url,
        PROXY_TLS_CERT_FILE: pki.serverCert,
        PROXY_TLS_KEY_FILE: pki.serverKey,
      }),
    )
  })

  it('serves redis-cli --tls and refuses it in plain text', async () => {
    const args = ['-h', '127.0.0.1', '-p', String(tls.resp)]
    const secure = await run('redis-cli', ['--tls', '--cacert', pki.ca, ...args, 'get', 'k'])
    expect(secure.stdout.trim()).toBe('plain value')
    const clear = await run('redis-cli', [...args, 'get', 'k'])
    expect(clear.stdout).not.toContain('plain value')
  })

  it('serves curl over HTTPS, on the HTTP port and on METRICS_PORT', async () => {
    const get = await run('curl', [
      '-sS',
      '--cacert',
      pki.ca,
      `https://localhost:${tls.http}/get/k`,
    ])
    expect(get).toMatchObject({ code: 0, stdout: 'plain value' })
    const health = await run('curl', [
      '-sS',
      '--cacert',
      pki.ca,
      `https://localhost:${tls.metrics}/healthz`,
    ])
    expect(health).toMatchObject({ code: 0, stdout: 'ok\n' })
  })

  it('serves ioredis (tls: { ca }) and node-redis (socket: { tls: true, ca })', async () => {
    const ca = pki.read(pki.ca)
    const io = new Redis({ host: '127.0.0.1', port: tls.resp, tls: { ca }, lazyConnect: true })
    try {
      await io.connect()
      expect(await io.get('k')).toBe('plain value')
    } finally {
      io.disconnect()
    }
    const node = createClient({ socket: { host: '127.0.0.1', port: tls.resp, tls: true, ca } })
    node.on('error', () => {})
    try {
      await node.connect()
      expect(await node.get('k')).toBe('plain value')
    } finally {
      node.destroy()
    }
  })
})

describe('mutual TLS on the listeners (PROXY_TLS_CA_FILE)', () => {
  let mtls: Running
  beforeAll(async () => {
    mtls = await backendReady(
      await startProxy({
        REDIS_URL: plain.url,
        PROXY_TLS_CERT_FILE: pki.serverCert,
        PROXY_TLS_KEY_FILE: pki.serverKey,
        PROXY_TLS_CA_FILE: pki.ca,
      }),
    )
  })

  it('refuses a client without a certificate and serves the client certificate', async () => {
    const resp = ['--tls', '--cacert', pki.ca, '-h', '127.0.0.1', '-p', String(mtls.resp)]
    const anonymous = await run('redis-cli', [...resp, 'get', 'k'])
    expect(anonymous.stdout).not.toContain('plain value')
    const known = await run('redis-cli', [
      ...resp,
      '--cert',
      pki.clientCert,
      '--key',
      pki.clientKey,
      'get',
      'k',
    ])
    expect(known.stdout.trim()).toBe('plain value')

    const url = `https://localhost:${mtls.http}/get/k`
    const noCert = await run('curl', ['-sS', '--cacert', pki.ca, url])
    expect(noCert.code).not.toBe(0)
    expect(noCert.stdout).toBe('')
    const withCert = await run('curl', [
      '-sS',
      '--cacert',
      pki.ca,
      '--cert',
      pki.clientCert,
      '--key',
      pki.clientKey,
      url,
    ])
    expect(withCert).toMatchObject({ code: 0, stdout: 'plain value' })
  })

  it('closes a client whose certificate another CA signed, before reading a byte of it', async () => {
    const stranger = strangerCertificate()
    const resp = ['--tls', '--cacert', pki.ca, '-h', '127.0.0.1', '-p', String(mtls.resp)]
    const cli = await run('redis-cli', [
      ...resp,
      '--cert',
      stranger.cert,
      '--key',
      stranger.key,
      'get',
      'k',
    ])
    expect(cli.stdout).not.toContain('plain value')
    const curl = await run('curl', [
      '-sS',
      '--cacert',
      pki.ca,
      '--cert',
      stranger.cert,
      '--key',
      stranger.key,
      `https://localhost:${mtls.http}/get/k`,
    ])
    expect(curl.code).not.toBe(0)
    expect(curl.stdout).toBe('')
  })
})

/** A client certificate signed by the harness's unrelated CA (its key is in the same directory). */
function strangerCertificate(): { cert: string; key: string } {
  const openssl = (...args: string[]) =>
    execFileSync('openssl', args, { cwd: pki.dir, stdio: 'pipe' })
  openssl(
    'req',
    ...['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
    ...['-keyout', 'stranger.key', '-out', 'stranger.csr', '-subj', '/CN=stranger'],
  )
  openssl(
    'x509',
    ...['-req', '-in', 'stranger.csr', '-CA', 'other-ca.crt', '-CAkey', 'other-ca.key'],
    ...['-CAcreateserial', '-out', 'stranger.crt', '-days', '2', '-extfile', 'client.ext'],
  )
  return { cert: join(pki.dir, 'stranger.crt'), key: join(pki.dir, 'stranger.key') }
}

describe('certificates that clients refuse, and reloading', () => {
  it('serves an expired certificate that curl and redis-cli refuse', async () => {
    const { http, resp } = await startProxy({
      REDIS_URL: plain.url,
      PROXY_TLS_CERT_FILE: pki.expiredCert,
      PROXY_TLS_KEY_FILE: pki.expiredKey,
    })
    const curl = await run('curl', ['-sS', '--cacert', pki.ca, `https://localhost:${http}/get/k`])
    expect(curl.code).toBe(60) // peer certificate cannot be authenticated
    expect(curl.stderr).toContain('expired')
    const cli = await run('redis-cli', [
      '--tls',
      '--cacert',
      pki.ca,
      '-h',
      '127.0.0.1',
      '-p',
      String(resp),
      'get',
      'k',
    ])
    expect(cli.stdout).not.toContain('plain value')
    expect(cli.stdout + cli.stderr).toContain('certificate verify failed')
  })

  it('serves a new certificate to new connections after SIGHUP and after a file change, keeping open ones; a bad file keeps the old', async () => {
    const cert = join(pki.dir, 'reload.crt')
    const key = join(pki.dir, 'reload.key')
    const use = (from: 'server' | 'expired') => {
      copyFileSync(from === 'server' ? pki.serverCert : pki.expiredCert, cert)
      copyFileSync(from === 'server' ? pki.serverKey : pki.expiredKey, key)
    }
    // A whole second, so setting it again restores it exactly.
    const keepTime = () => {
      for (const path of [cert, key]) utimesSync(path, 1_600_000_000, 1_600_000_000)
    }
    use('server')
    keepTime()
    const { proxy, resp } = await backendReady(
      await startProxy({
        REDIS_URL: plain.url,
        PROXY_TLS_CERT_FILE: cert,
        PROXY_TLS_KEY_FILE: key,
      }),
    )
    const open = new Redis({
      host: '127.0.0.1',
      port: resp,
      tls: { ca: pki.read(pki.ca) },
      lazyConnect: true,
    })
    open.on('error', () => {})
    try {
      await open.connect()
      expect(await servedSerial(resp)).toBe(serial(pki.serverCert))

      // Both files replaced with their modification times kept, which the
      // poll ignores: only SIGHUP can load them.
      use('expired')
      keepTime()
      await sleep(1500)
      expect(await servedSerial(resp)).toBe(serial(pki.serverCert))
      proxy.child.kill('SIGHUP')
      await until('the reloaded certificate', async () =>
        (await servedSerial(resp)) === serial(pki.expiredCert) ? true : undefined,
      )
      expect(await open.get('k')).toBe('plain value')

      // No signal: the file change alone.
      const reloads = occurrences(proxy.logs(), 'tls certificate reloaded')
      use('server')
      await until('the file-change reload', async () =>
        (await servedSerial(resp)) === serial(pki.serverCert) ? true : undefined,
      )
      expect(occurrences(proxy.logs(), 'tls certificate reloaded')).toBeGreaterThan(reloads)
      expect(await open.get('k')).toBe('plain value')

      // Not a certificate: one warning, and the old pair is still served.
      writeFileSync(cert, 'not a certificate\n')
      await until('the warning', async () =>
        proxy.logs().includes('tls certificate reload failed') ? true : undefined,
      )
      expect(await servedSerial(resp)).toBe(serial(pki.serverCert))
      expect(occurrences(proxy.logs(), 'tls certificate reload failed')).toBe(1)
      expect(await open.get('k')).toBe('plain value')
      expect(proxy.child.exitCode).toBe(null)
    } finally {
      open.disconnect()
    }
  })
})

describe('client slots and start-up checks', () => {
  it('counts TLS clients against MAX_CLIENTS, refuses the next one in words, and frees a slot a silent handshake holds', async () => {
    const { resp, http } = await backendReady(
      await startProxy({
        REDIS_URL: plain.url,
        PROXY_TLS_CERT_FILE: pki.serverCert,
        PROXY_TLS_KEY_FILE: pki.serverKey,
        MAX_CLIENTS: '1',
        RESP_HANDSHAKE_TIMEOUT: '1000',
        HTTP_HEADERS_TIMEOUT: '1000',
      }),
    )
    const cli = ['--tls', '--cacert', pki.ca, '-h', '127.0.0.1', '-p', String(resp), 'get', 'k']
    for (const port of [resp, http]) {
      // A TCP connection that never starts its handshake takes the one slot.
      const silent = await new Promise<Socket>((resolve) => {
        const socket = connectTcp(port, '127.0.0.1', () => resolve(socket))
      })
      const closed = new Promise<number>((resolve) => {
        const started = Date.now()
        silent.on('close', () => resolve(Date.now() - started))
        silent.on('error', () => {})
      })
      await sleep(100)
      if (port === resp) {
        const refused = await run('redis-cli', cli)
        expect(refused.stdout).toContain('max number of clients reached')
      } else {
        const refused = await run('curl', [
          '-sS',
          '--cacert',
          pki.ca,
          `https://localhost:${http}/get/k`,
        ])
        expect(refused.stdout).toBe('Too many connections\n')
      }
      // The handshake bound frees it, well before Node's own 120 s.
      expect(await closed).toBeLessThan(8000)
      if (port === resp) {
        expect((await run('redis-cli', cli)).stdout.trim()).toBe('plain value')
      } else {
        const served = await run('curl', [
          '-sS',
          '--cacert',
          pki.ca,
          `https://localhost:${http}/get/k`,
        ])
        expect(served.stdout).toBe('plain value')
      }
    }
  })

  it('shuts down on SIGTERM with a TLS client open and handshakes pending, and exits 0', async () => {
    const { proxy, resp, http } = await backendReady(
      await startProxy({
        REDIS_URL: plain.url,
        PROXY_TLS_CERT_FILE: pki.serverCert,
        PROXY_TLS_KEY_FILE: pki.serverKey,
        SHUTDOWN_TIMEOUT: '1000',
      }),
    )
    const open = new Redis({
      host: '127.0.0.1',
      port: resp,
      tls: { ca: pki.read(pki.ca) },
      lazyConnect: true,
    })
    open.on('error', () => {})
    const silent = [connectTcp(resp, '127.0.0.1'), connectTcp(http, '127.0.0.1')]
    for (const socket of silent) socket.on('error', () => {})
    try {
      await open.connect()
      expect(await open.get('k')).toBe('plain value')
      const started = Date.now()
      proxy.child.kill('SIGTERM')
      expect(await proxy.exited()).toEqual({ code: 0, signal: null })
      // SHUTDOWN_TIMEOUT, not the 10 s handshake bounds the handshakes could still wait.
      expect(Date.now() - started).toBeLessThan(6000)
    } finally {
      open.disconnect()
      for (const socket of silent) socket.destroy()
    }
  })

  it.each([
    [
      { PROXY_TLS_CERT_FILE: '/nonexistent.pem', PROXY_TLS_KEY_FILE: '/nonexistent.key' },
      'Invalid PROXY_TLS_CERT_FILE="/nonexistent.pem": cannot read it (ENOENT)',
    ],
    [
      { PROXY_TLS_CERT_FILE: 'server', PROXY_TLS_KEY_FILE: 'client-key' },
      'Invalid PROXY_TLS_KEY_FILE=',
    ],
    [
      {
        PROXY_TLS_CERT_FILE: 'server',
        PROXY_TLS_KEY_FILE: 'server-key',
        PROXY_TLS_CA_FILE: 'server-key',
      },
      'Invalid PROXY_TLS_CA_FILE=',
    ],
    [
      { PROXY_TLS_CERT_FILE: 'server' },
      'Invalid PROXY_TLS_KEY_FILE="": required when PROXY_TLS_CERT_FILE is set',
    ],
    [
      { REDIS_URL: 'rediss://localhost:1', REDIS_TLS_CA_FILE: '/nonexistent.pem' },
      'Invalid REDIS_TLS_CA_FILE="/nonexistent.pem": cannot read it (ENOENT)',
    ],
  ] as const)('stops start-up with one line for %o', async (vars, line) => {
    const paths: Record<string, string> = {
      server: pki.serverCert,
      'server-key': pki.serverKey,
      'client-key': pki.clientKey,
    }
    const env: Record<string, string> = { REDIS_URL: plain.url }
    for (const [name, value] of Object.entries(vars)) env[name] = paths[value] ?? value
    const proxy = spawnProxy([], {
      ...env,
      PROXY_PORT_HTTP: String(await freePort()),
      PROXY_PORT_TCP: String(await freePort()),
    })
    running.push(proxy)
    expect(await proxy.exited()).toEqual({ code: 1, signal: null })
    const lines = proxy.logs().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(`redis-proxy: ${line}`)
  })
})
