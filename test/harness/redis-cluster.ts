import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { listenOnLoopback } from './ports.js'
import { type RespValue, sendCommand, sleep } from './redis-server.js'

const run = promisify(execFile)

/** One redis-server of the test cluster. */
export type ClusterProcess = {
  readonly port: number
  pid(): number | undefined
  /** SIGKILL: the crash a failover test needs. */
  kill(): Promise<void>
  alive(): boolean
}

/**
 * A throwaway Redis Cluster for one test file: `nodes` redis-servers on free
 * loopback ports (each port + 10000, its cluster bus, free and in range too),
 * joined by `redis-cli --cluster create` with `replicas` replicas per primary,
 * node timeout 1000 ms (a killed primary's replica takes over in a few
 * seconds). Everything is stopped by PID, also when start-up fails.
 */
export type TestCluster = {
  readonly nodes: readonly ClusterProcess[]
  /** `127.0.0.1:port,...`: what REDIS_CLUSTER_NODES takes. */
  readonly seeds: string
  /** One command to the node on `port`, over a fresh connection. */
  command(port: number, ...args: (string | Buffer)[]): Promise<RespValue>
  /** The port of the primary serving `slot`, as a live node's CLUSTER SLOTS says. */
  ownerOf(slot: number): Promise<number>
  /** The primaries' ports (from a live node's CLUSTER SLOTS). */
  primaries(): Promise<number[]>
  /** Until every live node says cluster_state:ok and agrees on who owns every slot. */
  waitHealthy(timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

const running = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

async function portFree(port: number): Promise<boolean> {
  const server = createServer()
  server.unref()
  return new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Ports whose bus port (port + 10000) is in range, free, and clear of every other chosen port. */
async function clusterPorts(count: number): Promise<number[]> {
  const ports: number[] = []
  const taken = new Set<number>()
  for (let tries = 0; ports.length < count; tries++) {
    if (tries > 500) throw new Error('no free ports for a cluster')
    const server = createServer()
    server.unref()
    const port = await listenOnLoopback(server)
    await new Promise<void>((resolve) => server.close(() => resolve()))
    const bus = port + 10000
    if (bus > 65535 || taken.has(port) || taken.has(bus)) continue
    if (!(await portFree(bus))) continue
    ports.push(port)
    taken.add(port)
    taken.add(bus)
  }
  return ports
}

export async function startRedisCluster(
  options: { nodes?: number; replicas?: number } = {},
): Promise<TestCluster> {
  const count = options.nodes ?? 6
  const replicas = options.replicas ?? 1
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-cluster-'))
  const ports = await clusterPorts(count)
  const nodes: (ClusterProcess & { child: ChildProcess })[] = []
  const stop = async () => {
    await Promise.all(
      nodes.map(async (node) => {
        const child = node.child
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGKILL')
        await exited
      }),
    )
    rmSync(dir, { recursive: true, force: true })
  }
  const command = (port: number, ...args: (string | Buffer)[]) => sendCommand(port, args)
  try {
    for (const port of ports) {
      const child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          '1000',
          '--save',
          '',
          '--appendonly',
          'no',
          '--dir',
          dir,
          '--dbfilename',
          `dump-${port}.rdb`,
          '--daemonize',
          'no',
          '--logfile',
          '',
          '--loglevel',
          'warning',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      )
      running.add(child)
      child.once('exit', () => running.delete(child))
      nodes.push({
        port,
        child,
        pid: () => child.pid,
        alive: () => child.exitCode === null && child.signalCode === null,
        async kill() {
          if (child.exitCode !== null || child.signalCode !== null) return
          const exited = new Promise((resolve) => child.once('exit', resolve))
          child.kill('SIGKILL')
          await exited
        },
      })
    }
    for (const node of nodes) await waitPing(node.port, node.child)
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((port) => `127.0.0.1:${port}`),
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ])
  } catch (err) {
    await stop()
    throw err
  }

  const live = () => nodes.filter((node) => node.alive())
  const slotsOf = async (): Promise<RespValue[]> => {
    for (const node of live()) {
      try {
        const reply = await command(node.port, 'CLUSTER', 'SLOTS')
        if (Array.isArray(reply)) return reply
      } catch {}
    }
    throw new Error('no live node answers CLUSTER SLOTS')
  }
  const cluster: TestCluster = {
    nodes,
    seeds: ports.map((port) => `127.0.0.1:${port}`).join(','),
    command,
    async ownerOf(slot) {
      for (const range of await slotsOf()) {
        const [start, end, primary] = range as [number, number, RespValue[]]
        if (slot >= start && slot <= end) return primary[1] as number
      }
      throw new Error(`no owner for slot ${slot}`)
    },
    async primaries() {
      const ports = new Set<number>()
      for (const range of await slotsOf()) ports.add((range as RespValue[][])[2]?.[1] as number)
      return [...ports]
    },
    async waitHealthy(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        let healthy = true
        const views = new Set<string>()
        for (const node of live()) {
          try {
            const info = String(await command(node.port, 'CLUSTER', 'INFO'))
            if (!info.includes('cluster_state:ok')) healthy = false
            const slots = (await command(node.port, 'CLUSTER', 'SLOTS')) as RespValue[]
            views.add(
              JSON.stringify(
                slots
                  .map((range) => {
                    const [start, end, primary] = range as [number, number, RespValue[]]
                    return [start, end, primary[1]]
                  })
                  .sort((a, b) => (a[0] as number) - (b[0] as number)),
              ),
            )
            const role = String(await command(node.port, 'INFO', 'replication'))
            if (role.includes('role:slave') && !role.includes('master_link_status:up')) {
              healthy = false
            }
          } catch {
            healthy = false
          }
        }
        if (healthy && views.size === 1) return
        if (Date.now() > deadline) throw new Error('redis cluster did not become healthy')
        await sleep(100)
      }
    },
    stop,
  }
  try {
    await cluster.waitHealthy()
  } catch (err) {
    await stop()
    throw err
  }
  return cluster
}

async function waitPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 5000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
    try {
      if ((await sendCommand(port, ['PING'])) === 'PONG') return
    } catch {}
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`)
    await sleep(20)
  }
}
