import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sendCommand } from '../../test/harness/redis-server.js'
import { assertPortFree, freePort, run, stop, track, waitFor } from '../lib/processes.js'

export type TwemproxyTarget = { readonly port: number; readonly pid: number; stop(): Promise<void> }

/**
 * twemproxy (Debian's `nutcracker`), the C proxy without a cache that users
 * compare Redis proxies with, in front of one redis-server: installed with
 * apt-get when missing (as .ci/run does for redis-server), started on a free
 * loopback port with a config the bench writes, stopped by PID.
 */
export async function startTwemproxy(redisPort: number): Promise<TwemproxyTarget> {
  const binary = await ensureNutcracker()
  const port = await freePort()
  await assertPortFree(port)
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-twemproxy-'))
  const config = join(dir, 'nutcracker.yml')
  writeFileSync(
    config,
    [
      'bench:',
      `  listen: 127.0.0.1:${port}`,
      '  hash: fnv1a_64',
      '  distribution: ketama',
      '  redis: true',
      '  preconnect: true',
      '  servers:',
      `   - 127.0.0.1:${redisPort}:1`,
      '',
    ].join('\n'),
  )
  // Stats on a port of its own, loopback too (nutcracker's default is 0.0.0.0:22222).
  const statsPort = await freePort()
  const child = track(
    spawn(
      binary,
      ['-c', config, '-s', String(statsPort), '-a', '127.0.0.1', '-o', join(dir, 'log')],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    ),
  )
  await waitFor(
    'twemproxy to answer PING',
    async () => (await sendCommand(port, ['PING'])) === 'PONG',
  )
  return {
    port,
    pid: child.pid as number,
    async stop() {
      await stop(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

const BINARIES = ['/usr/sbin/nutcracker', '/usr/bin/nutcracker']

async function ensureNutcracker(): Promise<string> {
  const found = BINARIES.find((path) => existsSync(path))
  if (found !== undefined) return found
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await run('apt-get', ['update', '-qq'], { timeoutMs: 180_000, env })
  const installed = await run('apt-get', ['install', '-y', '-qq', 'nutcracker'], {
    timeoutMs: 180_000,
    env,
  })
  const binary = BINARIES.find((path) => existsSync(path))
  if (installed.code !== 0 || binary === undefined) {
    throw new Error(`could not install nutcracker: ${installed.stderr}`)
  }
  return binary
}
