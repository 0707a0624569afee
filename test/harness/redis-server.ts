import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as connectTls } from 'node:tls'
import { freePort } from './ports.js'
import { redisTlsArgs, type TestPki } from './tls.js'

/**
 * A throwaway redis-server for one test file: its own free port and directory,
 * nothing saved, stopped by PID. Never the machine's shared 6379.
 */
export type TestRedis = {
  readonly port: number
  readonly url: string
  pid(): number | undefined
  /** SIGKILL: the abrupt failure a crashed backend gives. */
  kill(): Promise<void>
  /** A new process on the same port, empty. */
  restart(): Promise<void>
  stop(): Promise<void>
  /** One command over a fresh connection; replies decoded loosely (bulk/simple/int/array of those). */
  command(...args: (string | Buffer)[]): Promise<RespValue>
}

export type RespValue = string | number | null | Buffer | RespValue[] | Error

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * TLS on the server's one port (plain TCP off), with the harness's PKI;
 * `serve` replaces the server's certificate (the harness's own commands then
 * skip verification, so an expired one can be served on purpose).
 */
export type RedisTls = {
  pki: TestPki
  authClients: boolean
  serve?: { cert: string; key: string }
}

export async function startRedis(
  extraArgs: string[] = [],
  options: { tls?: RedisTls } = {},
): Promise<TestRedis> {
  const port = await freePort()
  const tls = options.tls
  const listen =
    tls === undefined
      ? ['--port', String(port)]
      : ['--port', '0', '--tls-port', String(port), ...redisTlsArgs(tls.pki, tls)]
  const verify = tls?.serve === undefined
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-test-'))
  let child: ChildProcess | undefined

  const launch = async () => {
    const proc = spawn(
      'redis-server',
      [
        ...listen,
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--dir',
        dir,
        '--logfile',
        '',
        '--loglevel',
        'warning',
        ...extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    running.add(proc)
    proc.once('exit', () => running.delete(proc))
    child = proc
    const deadline = Date.now() + 5000
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`)
      try {
        const pong = await sendCommand(port, ['PING'], tls?.pki, verify)
        if (pong === 'PONG') return
      } catch {}
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`)
      await sleep(20)
    }
  }

  const terminate = async (signal: NodeJS.Signals) => {
    const proc = child
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill(signal)
    await exited
    child = undefined
  }

  await launch()
  return {
    port,
    url: tls === undefined ? `redis://127.0.0.1:${port}` : `rediss://localhost:${port}`,
    pid: () => child?.pid,
    kill: () => terminate('SIGKILL'),
    async restart() {
      await terminate('SIGKILL')
      await launch()
    },
    async stop() {
      await terminate('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
    command: (...args) => sendCommand(port, args, tls?.pki, verify),
  }
}

/**
 * A minimal one-shot RESP client, so the harness does not depend on the code
 * under test; over TLS (trusting the test CA, with its client certificate)
 * when given a PKI.
 */
export function sendCommand(
  port: number,
  args: (string | Buffer)[],
  pki?: TestPki,
  verify = true,
): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket =
      pki === undefined
        ? connect(port, '127.0.0.1')
        : connectTls({
            port,
            host: '127.0.0.1',
            servername: 'localhost',
            ca: pki.read(pki.ca),
            cert: pki.read(pki.clientCert),
            key: pki.read(pki.clientKey),
            rejectUnauthorized: verify,
          })
    const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
    for (const arg of args) {
      const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg
      parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'))
    }
    let buffered = Buffer.alloc(0)
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')))
    socket.on('error', reject)
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk])
      const parsed = parseReply(buffered, 0)
      if (parsed !== undefined) {
        socket.end()
        resolve(parsed.value)
      }
    })
    socket.write(Buffer.concat(parts))
  })
}

/** One reply from `buf` at `at`, or undefined while incomplete (RESP2 plus RESP3 null and map). */
export function parseReply(buf: Buffer, at: number): { value: RespValue; end: number } | undefined {
  const eol = buf.indexOf('\r\n', at)
  if (eol === -1) return undefined
  const type = String.fromCharCode(buf[at] ?? 0)
  const line = buf.toString('utf8', at + 1, eol)
  switch (type) {
    case '+':
      return { value: line, end: eol + 2 }
    case '-':
      return { value: new Error(line), end: eol + 2 }
    case ':':
      return { value: Number(line), end: eol + 2 }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, end: eol + 2 }
      if (buf.length < eol + 2 + len + 2) return undefined
      return { value: buf.subarray(eol + 2, eol + 2 + len), end: eol + 2 + len + 2 }
    }
    case '_':
      return { value: null, end: eol + 2 }
    case '%':
    case '*': {
      const count = Number(line) * (type === '%' ? 2 : 1)
      if (count < 0) return { value: null, end: eol + 2 }
      const items: RespValue[] = []
      let end = eol + 2
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, end)
        if (item === undefined) return undefined
        items.push(item.value)
        end = item.end
      }
      return { value: items, end }
    }
    default:
      throw new Error(`unexpected reply type ${JSON.stringify(type)}`)
  }
}

/**
 * One figure of one command from an `INFO commandstats` reply: `field` is
 * Redis's name for it (`calls`, `rejected_calls`, `failed_calls`), `command`
 * Redis's name for the command (`get`, `client|tracking`); 0 for a command
 * that has not been called.
 */
export function commandStat(info: unknown, command: string, field: string): number {
  const text = Buffer.isBuffer(info) ? info.toString() : String(info)
  const line = text.split('\r\n').find((each) => each.startsWith(`cmdstat_${command}:`))
  const match = line === undefined ? null : new RegExp(`[:,]${field}=(\\d+)`).exec(line)
  return match === null ? 0 : Number(match[1])
}

/** The number of GET calls Redis itself has served, from INFO commandstats. */
export async function backendGetCount(redis: TestRedis): Promise<number> {
  return commandStat(await redis.command('INFO', 'commandstats'), 'get', 'calls')
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
