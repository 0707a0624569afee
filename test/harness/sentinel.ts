import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHttpServer } from '../../functions/node.js'
import { loadConfig } from '../../shared/config.js'
import { createService } from '../../shared/create-service.js'
import { silentLogger } from '../../shared/log.js'
import { createMetricsRegistry } from '../../shared/metrics.js'
import type { ReadThrough } from '../../shared/read-through.js'
import { nativeBackend } from '../../shared/redis/native-backend.js'
import { startRespServer } from '../../sidecar/server.js'
import { freePort, listenOnLoopback } from './ports.js'
import { type RespValue, sendCommand, sleep, startRedis, type TestRedis } from './redis-server.js'
import { parseCommand } from './scripted-redis.js'

/** One `redis-server --sentinel` on a free port, its config file in a directory of its own. */
export type TestSentinel = {
  readonly port: number
  pid(): number | undefined
  /** Not exited (nor killed). */
  alive(): boolean
  /** SIGKILL: a sentinel that dies. */
  kill(): Promise<void>
  stop(): Promise<void>
  command(...args: string[]): Promise<RespValue>
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * A sentinel monitoring `masterName` at `primaryPort` with `quorum`, quick to
 * act: down after 1 s, a failover given up after 3 s. Sentinel rewrites its
 * config file as it learns, so each gets a file of its own.
 */
export async function startSentinel(
  masterName: string,
  primaryPort: number,
  options: { quorum?: number; port?: number } = {},
): Promise<TestSentinel> {
  const port = options.port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-sentinel-'))
  const conf = join(dir, 'sentinel.conf')
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'daemonize no',
      'logfile ""',
      'loglevel warning',
      `dir ${dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} ${options.quorum ?? 2}`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 3000`,
      `sentinel parallel-syncs ${masterName} 2`,
      '',
    ].join('\n'),
  )
  const child = spawn('redis-server', [conf, '--sentinel'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  running.add(child)
  child.once('exit', () => running.delete(child))
  const terminate = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill(signal)
    await exited
  }
  const sentinel: TestSentinel = {
    port,
    pid: () => child.pid,
    alive: () => child.exitCode === null && child.signalCode === null,
    kill: () => terminate('SIGKILL'),
    async stop() {
      await terminate('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    },
    command: (...args) => sendCommand(port, args),
  }
  try {
    await until(
      async () => (await sentinel.command('PING').catch(() => null)) === 'PONG',
      `sentinel on ${port} to start`,
      5000,
      () => child.exitCode !== null,
    )
  } catch (err) {
    await sentinel.stop()
    throw err
  }
  return sentinel
}

/**
 * A primary, two replicas of it and three sentinels watching it with a
 * quorum of 2, every one on a free port and stopped by PID. Resolves once
 * every sentinel sees the two others and both replicas: a failover can
 * then be agreed on.
 */
export type SentinelGroup = {
  readonly masterName: string
  /** Every data node, the first started as the primary. */
  readonly nodes: readonly TestRedis[]
  readonly sentinels: readonly TestSentinel[]
  /** REDIS_SENTINELS for these sentinels. */
  sentinelsEnv(): string
  /** The node the sentinels name as primary now (asks the first live sentinel). */
  primary(): Promise<TestRedis>
  /**
   * Until every live sentinel names a primary other than `old`, and that
   * node's ROLE says master: the failover is done.
   */
  waitForNewPrimary(old: TestRedis, timeoutMs?: number): Promise<TestRedis>
  /** SENTINEL FAILOVER, retried while the sentinel has no replica it deems good yet. */
  failover(via?: TestSentinel): Promise<void>
  stop(): Promise<void>
}

export async function startSentinelGroup(masterName = 'proxied'): Promise<SentinelGroup> {
  const nodes: TestRedis[] = []
  const sentinels: TestSentinel[] = []
  const stop = async () => {
    await Promise.all(sentinels.map((sentinel) => sentinel.stop()))
    await Promise.all(nodes.map((node) => node.stop()))
  }
  try {
    const primary = await startRedis()
    nodes.push(primary)
    for (let i = 0; i < 2; i++) {
      nodes.push(await startRedis(['--replicaof', '127.0.0.1', String(primary.port)]))
    }
    for (const replica of nodes.slice(1)) {
      await until(
        async () =>
          /master_link_status:up/.test(text(await replica.command('INFO', 'replication'))),
        `replica ${replica.port} to sync`,
      )
    }
    for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(masterName, primary.port))
    for (const sentinel of sentinels) {
      await until(
        async () => {
          const peers = await sentinel.command('SENTINEL', 'SENTINELS', masterName)
          const replicas = await sentinel.command('SENTINEL', 'REPLICAS', masterName)
          return Array.isArray(peers) && peers.length === 2 && goodReplicas(replicas) === 2
        },
        `sentinel ${sentinel.port} to see its peers and the replicas`,
        15_000,
      )
    }
  } catch (err) {
    await stop()
    throw err
  }
  const live = () => sentinels.filter((sentinel) => sentinel.alive())
  const named = async (sentinel: TestSentinel): Promise<TestRedis | undefined> => {
    const reply = await sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)
    if (!Array.isArray(reply)) return undefined
    const port = Number(text(reply[1] ?? null))
    return nodes.find((node) => node.port === port)
  }
  return {
    masterName,
    nodes,
    sentinels,
    sentinelsEnv: () => sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(','),
    async primary() {
      const [first] = live()
      const node = first === undefined ? undefined : await named(first)
      if (node === undefined) throw new Error('no sentinel names a primary')
      return node
    },
    async waitForNewPrimary(old, timeoutMs = 20_000) {
      let found: TestRedis | undefined
      await until(
        async () => {
          const answers = await Promise.all(live().map((sentinel) => named(sentinel)))
          const [first] = answers
          if (first === undefined || first === old) return false
          if (answers.some((answer) => answer !== first)) return false
          const role = await first.command('ROLE')
          if (!Array.isArray(role) || text(role[0] ?? null) !== 'master') return false
          found = first
          return true
        },
        `a primary other than ${old.port}`,
        timeoutMs,
      )
      return found as TestRedis
    },
    async failover(via) {
      const sentinel = via ?? live()[0]
      if (sentinel === undefined) throw new Error('no live sentinel')
      await until(
        async () => {
          const reply = await sentinel.command('SENTINEL', 'FAILOVER', masterName)
          if (reply === 'OK') return true
          if (reply instanceof Error && /NOGOODSLAVE|INPROG/.test(reply.message)) return false
          throw reply instanceof Error ? reply : new Error(String(reply))
        },
        'SENTINEL FAILOVER to be accepted',
        15_000,
      )
    },
    stop,
  }
}

/**
 * The RESP sidecar and the HTTP function in this process over one service,
 * as main.ts wires them, configured by env; not waited on: a test decides
 * what ready means.
 */
export type SentinelProxy = {
  readonly service: ReadThrough
  readonly respPort: number
  readonly httpUrl: string
  close(): Promise<void>
}

export async function startSentinelProxy(env: Record<string, string>): Promise<SentinelProxy> {
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env })
  const backend = nativeBackend(config, config.tcp.redisUrl, silentLogger, { forwarding: true })
  const service = createService(config, backend)
  const forwarder = backend.forwarder as NonNullable<typeof backend.forwarder>
  const resp = await startRespServer({
    forwarder,
    maxBackendConnections: config.maxBackendConnections,
    metrics: createMetricsRegistry({ defaultMetrics: false }),
    service,
    host: '127.0.0.1',
    port: 0,
    maxClients: config.maxClients,
    idleTimeoutMs: config.tcp.idleTimeoutMs,
    handshakeTimeoutMs: config.tcp.handshakeTimeoutMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log: silentLogger,
  })
  const http = await startHttpServer({
    service,
    metrics: createMetricsRegistry({ defaultMetrics: false }),
    host: '127.0.0.1',
    port: 0,
    maxClients: config.maxClients,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    headersTimeoutMs: config.http.headersTimeoutMs,
    requestTimeoutMs: config.http.requestTimeoutMs,
    keepAliveTimeoutMs: config.http.keepAliveTimeoutMs,
    log: silentLogger,
  })
  return {
    service,
    respPort: resp.port,
    httpUrl: `http://127.0.0.1:${http.port}`,
    async close() {
      await Promise.all([resp.close(), http.close()])
      await forwarder.close()
      await service.close()
    },
  }
}

/** Polls `check` every 50 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function until(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 10_000,
  gaveUp: () => boolean = () => false,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    if (gaveUp() || Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${last}`}`)
    }
    await sleep(50)
  }
}

function text(value: RespValue): string {
  return Buffer.isBuffer(value) ? value.toString() : String(value)
}

/** Replicas a sentinel lists without a down or disconnected flag. */
function goodReplicas(reply: RespValue): number {
  if (!Array.isArray(reply)) return 0
  let good = 0
  for (const fields of reply) {
    if (!Array.isArray(fields)) continue
    const at = fields.findIndex((field) => text(field) === 'flags')
    const flags = at === -1 ? '' : text(fields[at + 1] ?? null)
    if (!/s_down|o_down|disconnected/.test(flags)) good++
  }
  return good
}

/**
 * A scripted sentinel for what real ones cannot be made to do on cue: name
 * any address (a replica, one that never answers), miss an announcement,
 * refuse, stop answering. It speaks only what the proxy asks a sentinel:
 * AUTH, SENTINEL GET-MASTER-ADDR-BY-NAME, SENTINEL SENTINELS, SUBSCRIBE, PING.
 */
export type ScriptedSentinel = {
  readonly port: number
  /** What GET-MASTER-ADDR-BY-NAME answers for `name` from now on: an address, or null (unknown). */
  name(master: string, address: { host: string; port: number } | null): void
  /** The other sentinels SENTINEL SENTINELS lists from now on (none at first). */
  peers(ports: number[]): void
  /** A +switch-master message to every subscriber. */
  announce(payload: string): void
  /** Subscribed connections open now. */
  subscribers(): number
  /** GET-MASTER-ADDR-BY-NAME questions received. */
  asked(): number
  /** Every command received, in order. */
  received(): string[][]
  /** From now on nothing is answered (a sentinel that hangs); connections stay open. */
  silence(): void
  /** Closes every connection and the listener: the sentinel died. */
  close(): Promise<void>
}

export async function startScriptedSentinel(
  options: { password?: string; username?: string } = {},
): Promise<ScriptedSentinel> {
  const masters = new Map<string, { host: string; port: number } | null>()
  const subscribed = new Set<Socket>()
  const sockets = new Set<Socket>()
  const received: string[][] = []
  let asked = 0
  let peers: number[] = []
  let silent = false
  const bulk = (value: string) => `$${Buffer.byteLength(value)}\r\n${value}\r\n`
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => {
      sockets.delete(socket)
      subscribed.delete(socket)
    })
    socket.on('error', () => {})
    let authed = options.password === undefined
    let buffered = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      for (;;) {
        const parsed = parseCommand(buffered)
        if (parsed === undefined) break
        buffered = buffered.subarray(parsed.end)
        received.push(parsed.args)
        if (silent) continue
        const [name = '', ...rest] = parsed.args
        const verb = name.toUpperCase()
        if (verb === 'AUTH') {
          const [user, password] = rest.length === 2 ? rest : ['default', rest[0]]
          authed = password === options.password && user === (options.username ?? 'default')
          socket.write(authed ? '+OK\r\n' : '-WRONGPASS invalid username-password pair\r\n')
        } else if (!authed) {
          socket.write('-NOAUTH Authentication required.\r\n')
        } else if (verb === 'SENTINEL' && rest[0]?.toUpperCase() === 'GET-MASTER-ADDR-BY-NAME') {
          asked++
          const address = masters.get(rest[1] ?? '') ?? null
          socket.write(
            address === null
              ? '*-1\r\n'
              : `*2\r\n${bulk(address.host)}${bulk(String(address.port))}`,
          )
        } else if (verb === 'SENTINEL' && rest[0]?.toUpperCase() === 'SENTINELS') {
          let reply = `*${peers.length}\r\n`
          for (const peer of peers) {
            reply += `*6\r\n${bulk('name')}${bulk(`peer-${peer}`)}${bulk('ip')}${bulk('127.0.0.1')}${bulk('port')}${bulk(String(peer))}`
          }
          socket.write(reply)
        } else if (verb === 'SUBSCRIBE') {
          subscribed.add(socket)
          socket.write(`*3\r\n${bulk('subscribe')}${bulk(rest[0] ?? '')}:1\r\n`)
        } else if (verb === 'PING') {
          socket.write(subscribed.has(socket) ? `*2\r\n${bulk('pong')}${bulk('')}` : '+PONG\r\n')
        } else {
          socket.write(`-ERR unknown command '${name}'\r\n`)
        }
      }
    })
  })
  const port = await listenOnLoopback(server)
  return {
    port,
    name: (master, address) => masters.set(master, address),
    peers(ports) {
      peers = ports
    },
    announce(payload) {
      for (const socket of subscribed) {
        socket.write(`*3\r\n${bulk('message')}${bulk('+switch-master')}${bulk(payload)}`)
      }
    },
    subscribers: () => subscribed.size,
    asked: () => asked,
    received: () => received,
    silence() {
      silent = true
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
