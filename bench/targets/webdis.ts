import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { assertPortFree, freePort, run, stop, track, waitFor } from '../lib/processes.js'
import type { HttpTarget } from './start.js'

/**
 * One webdis worker thread: the proxy under test serves HTTP from one Node
 * thread (WORKERS=1), so both sides get one event loop, and the load
 * generator and redis-server keep the machine's other core.
 */
export const WEBDIS_THREADS = 1

/**
 * webdis (Debian's `webdis`), the C HTTP front end to Redis without a cache:
 * every `GET /GET/<key>` is a GET on Redis. Installed with apt-get when
 * missing, started in the foreground on a free loopback port with a config
 * the bench writes, stopped by PID.
 */
export async function startWebdis(redisPort: number): Promise<HttpTarget> {
  const binary = await ensureWebdis()
  const port = await freePort()
  await assertPortFree(port)
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-webdis-'))
  const config = join(dir, 'webdis.json')
  writeFileSync(
    config,
    JSON.stringify({
      redis_host: '127.0.0.1',
      redis_port: redisPort,
      redis_auth: null,
      http_host: '127.0.0.1',
      http_port: port,
      threads: WEBDIS_THREADS,
      daemonize: false,
      database: 0,
      verbosity: 0,
      logfile: join(dir, 'webdis.log'),
    }),
  )
  const child = track(spawn(binary, [config], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] }))
  // libevent warns on stderr about sockets wrk closes at the end of a run; keep only the tail.
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2000)
  })
  const origin = `http://127.0.0.1:${port}`
  try {
    await waitFor('webdis to answer PING', async () => {
      if (child.exitCode !== null)
        throw new Error(`webdis exited with ${child.exitCode}: ${stderr}`)
      const res = await fetch(`${origin}/PING`)
      return res.ok && ((await res.json()) as { PING?: unknown[] }).PING?.[1] === 'PONG'
    })
  } catch (err) {
    await stop(child)
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    origin,
    pid: child.pid as number,
    child,
    async stop() {
      await stop(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

const BINARY = '/usr/bin/webdis'

async function ensureWebdis(): Promise<string> {
  if (existsSync(BINARY)) return BINARY
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await run('apt-get', ['update', '-qq'], { timeoutMs: 180_000, env })
  const installed = await run('apt-get', ['install', '-y', '-qq', 'webdis'], {
    timeoutMs: 180_000,
    env,
  })
  if (installed.code !== 0 || !existsSync(BINARY)) {
    throw new Error(`could not install webdis: ${installed.stderr}`)
  }
  return BINARY
}
