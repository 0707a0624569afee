import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sample } from '../../test/harness/metrics.js'
import { sendCommand } from '../../test/harness/redis-server.js'
import { assertPortFree, freePort, stop, track, waitFor } from '../lib/processes.js'

export type HttpTarget = {
  readonly origin: string
  readonly pid: number
  readonly child: ChildProcess
  stop(): Promise<void>
}

export type ProxyStatus = {
  cache: { keys: number; hits: number; misses: number; evictions: number; invalidations?: number }
}

export type ProxyTarget = HttpTarget & {
  /** The sidecar's port when started with `resp: true` or by startSidecar, else 0. */
  readonly respPort: number
  /** The status document of `GET /` (startSidecar: its cache figures, from /metrics). */
  status(): Promise<ProxyStatus>
  /** process.memoryUsage() inside the proxy, after a full GC. */
  memory(): Promise<NodeJS.MemoryUsage>
}

const here = (file: string) => fileURLToPath(new URL(file, import.meta.url))

async function listening(origin: string, path: string): Promise<boolean> {
  const res = await fetch(origin + path)
  await res.arrayBuffer()
  return res.ok
}

function exitedEarly(child: ChildProcess, stderr: () => string): Promise<never> {
  return new Promise((_, reject) =>
    child.once('exit', (code) => reject(new Error(`target exited with ${code}: ${stderr()}`))),
  )
}

async function spawnTarget(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: (origin: string) => Promise<boolean>,
  port: number,
  ipc = false,
  otherPorts: number[] = [],
): Promise<HttpTarget> {
  for (const p of [port, ...otherPorts]) await assertPortFree(p)
  const cwd = mkdtempSync(join(tmpdir(), 'redis-proxy-bench-'))
  const child = track(
    spawn(process.execPath, args, {
      cwd,
      env,
      stdio: ipc ? ['ignore', 'ignore', 'pipe', 'ipc'] : ['ignore', 'ignore', 'pipe'],
    }),
  )
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000)
  })
  const origin = `http://127.0.0.1:${port}`
  const early = exitedEarly(child, () => stderr)
  early.catch(() => {})
  await Promise.race([waitFor(`${origin} to answer`, () => ready(origin)), early])
  return {
    origin,
    pid: child.pid as number,
    child,
    async stop() {
      await stop(child)
      rmSync(cwd, { recursive: true, force: true })
    },
  }
}

/** A bare node:http server answering `bodyBytes` bytes to every request. */
export async function startBareHttp(bodyBytes: number): Promise<HttpTarget> {
  const port = await freePort()
  return spawnTarget(
    [here('./bare-http.js'), String(port), String(bodyBytes)],
    { PATH: process.env.PATH ?? '' },
    (origin) => listening(origin, '/'),
    port,
  )
}

/** A RESP server as the bench starts it: its port and the PID whose CPU is counted. */
export type RespTarget = { readonly port: number; readonly pid: number; stop(): Promise<void> }

/**
 * The bare node:net RESP server (bare-resp.ts): every GET answered with a
 * fixed bulk of `valueBytes` bytes, the floor under any Node RESP server.
 */
export async function startBareResp(valueBytes: number): Promise<RespTarget> {
  const port = await freePort()
  const target = await spawnTarget(
    [here('./bare-resp.js'), String(port), String(valueBytes)],
    { PATH: process.env.PATH ?? '' },
    async () => {
      const reply = await sendCommand(port, ['GET', 'probe'])
      return Buffer.isBuffer(reply) && reply.length === valueBytes
    },
    port,
  )
  return { port, pid: target.pid, stop: () => target.stop() }
}

/**
 * The floor for a forwarding proxy in Node (bare-forward.ts), in front of
 * the redis-server at `redisPort`: ready once a GET of a key that does not
 * exist comes back through it as Redis's nil.
 */
export async function startBareForward(redisPort: number): Promise<RespTarget> {
  const port = await freePort()
  const target = await spawnTarget(
    [here('./bare-forward.js'), String(port), String(redisPort)],
    { PATH: process.env.PATH ?? '' },
    async () => (await sendCommand(port, ['GET', 'bare-forward:probe'])) === null,
    port,
  )
  return { port, pid: target.pid, stop: () => target.stop() }
}

/**
 * The proxy as its own process, configured through its environment: always
 * its HTTP interface (the bench reads `GET /` and the process's memory), and
 * the RESP sidecar too with `resp: true`.
 */
export async function startProxy(
  redisUrl: string,
  env: Record<string, string>,
  options: { resp?: boolean } = {},
): Promise<ProxyTarget> {
  const port = await freePort()
  const resp = options.resp === true
  const respPort = resp ? await freePort() : 0
  const target = await spawnTarget(
    [here('./proxy.js'), 'http', ...(resp ? ['resp'] : [])],
    {
      PATH: process.env.PATH ?? '',
      REDIS_URL: redisUrl,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      ...(resp ? { PROXY_HOST_TCP: '127.0.0.1', PROXY_PORT_TCP: String(respPort) } : {}),
      LOG_LEVEL: 'warn',
      ...env,
    },
    async (origin) => {
      const res = await fetch(`${origin}/`)
      const status = (await res.json()) as { backend?: string }
      if (status.backend !== 'ready') return false
      return !resp || (await sendCommand(respPort, ['PING'])) === 'PONG'
    },
    port,
    true,
    resp ? [respPort] : [],
  )
  return {
    ...target,
    respPort,
    async status() {
      const res = await fetch(`${target.origin}/`)
      return (await res.json()) as ProxyStatus
    },
    memory: () => askMemory(target.child),
  }
}

/** process.memoryUsage() from the proxy's probe (bench/targets/proxy.ts), after a full GC. */
function askMemory(child: ChildProcess): Promise<NodeJS.MemoryUsage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no memory reply from the proxy')), 30_000)
    child.once('message', (message) => {
      clearTimeout(timer)
      resolve((message as { memory: NodeJS.MemoryUsage }).memory)
    })
    child.send('memory')
  })
}

/**
 * The proxy running the RESP sidecar alone (`node dist/main.js resp`), as a
 * sidecar is deployed: the HTTP interface's modules are never loaded. Its
 * /metrics and /readyz are on METRICS_PORT, which is `origin` here, and
 * `status()` reads the cache's figures from /metrics.
 */
export async function startSidecar(
  redisUrl: string,
  env: Record<string, string>,
): Promise<ProxyTarget> {
  const port = await freePort()
  const respPort = await freePort()
  const target = await spawnTarget(
    [here('./proxy.js'), 'resp'],
    {
      PATH: process.env.PATH ?? '',
      REDIS_URL: redisUrl,
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(respPort),
      METRICS_HOST: '127.0.0.1',
      METRICS_PORT: String(port),
      LOG_LEVEL: 'warn',
      ...env,
    },
    async (origin) => {
      const res = await fetch(`${origin}/readyz`)
      await res.arrayBuffer()
      return res.ok && (await sendCommand(respPort, ['PING'])) === 'PONG'
    },
    port,
    true,
    [respPort],
  )
  return {
    ...target,
    respPort,
    async status() {
      const text = await (await fetch(`${target.origin}/metrics`)).text()
      const figure = (name: string) => sample(text, name, { interface: 'resp' }) ?? Number.NaN
      return {
        cache: {
          keys: figure('redis_proxy_cache_keys'),
          hits: figure('redis_proxy_cache_hits_total'),
          misses: figure('redis_proxy_cache_misses_total'),
          evictions: figure('redis_proxy_cache_evictions_total'),
          invalidations: figure('redis_proxy_cache_invalidations_total'),
        },
      }
    },
    memory: () => askMemory(target.child),
  }
}
