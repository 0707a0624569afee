import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { sendCommand, startRedis, type TestRedis } from './harness/redis-server.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

let redis: TestRedis
let clone: string

/**
 * What a fresh clone of this working tree holds: tracked and new files, not
 * node_modules, dist or anything else .gitignore keeps out.
 */
function freshClone(): string {
  const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-clone-'))
  const listed = spawnSync(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    {
      cwd: ROOT,
      encoding: 'utf8',
    },
  )
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`)
  for (const path of listed.stdout.split('\0')) {
    if (path === '' || !existsSync(join(ROOT, path))) continue
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    cpSync(join(ROOT, path), join(dir, path))
  }
  return dir
}

type Run = { code: number | null; stdout: string; stderr: string }

/** `make <target>` in the clone, with an environment free of this run's npm and make variables. */
function make(target: string, env: Record<string, string>): Promise<Run> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(npm_|MAKE|MFLAGS|INIT_CWD|LOG_LEVEL|REDIS_|PROXY_)/i.test(name),
    ),
  )
  return new Promise((resolve) => {
    const child = spawn('make', ['--no-print-directory', target], {
      cwd: clone,
      env: { ...inherited, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    // The proxy `make run` leaves behind writes to .run/proxy.log, not to these
    // pipes, so they close when make exits.
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

function pidFile(): string {
  return join(clone, '.run', 'proxy.pid')
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  const stat = spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' })
  return stat.stdout.trim() !== '' && !stat.stdout.trim().startsWith('Z')
}

beforeAll(async () => {
  redis = await startRedis()
  clone = freshClone()
})

afterAll(async () => {
  // Whatever happened above, the proxy this file started does not outlive it.
  if (clone !== undefined && existsSync(pidFile())) {
    const pid = Number(readFileSync(pidFile(), 'utf8'))
    if (isAlive(pid)) process.kill(pid, 'SIGKILL')
  }
  if (clone !== undefined) rmSync(clone, { recursive: true, force: true })
  await redis?.stop()
})

describe('the Makefile, from a fresh clone', () => {
  it('make run installs, builds and starts the proxy in the background; make stop ends it', async () => {
    expect(existsSync(join(clone, 'node_modules'))).toBe(false)
    const port = await freePort()
    const respPort = await freePort()
    const env = {
      REDIS_URL: redis.url,
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(respPort),
    }
    const run = await make('run', env)
    expect(run.code, run.stderr).toBe(0)
    const pid = Number(readFileSync(pidFile(), 'utf8'))
    expect(isAlive(pid)).toBe(true)
    expect(run.stdout).toContain(`redis-proxy running (pid ${pid}`)

    await redis.command('SET', 'made', 'by make run')
    const res = await fetch(`http://127.0.0.1:${port}/get/made`)
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('by make run')
    expect(String(await sendCommand(respPort, ['GET', 'made']))).toBe('by make run')

    const again = await make('run', env)
    expect(again.code).not.toBe(0)
    expect(again.stderr).toContain(`already running (pid ${pid})`)
    expect(Number(readFileSync(pidFile(), 'utf8'))).toBe(pid)

    const stop = await make('stop', env)
    expect(stop.code).toBe(0)
    expect(stop.stdout).toContain(`redis-proxy stopped (pid ${pid})`)
    expect(isAlive(pid)).toBe(false)
    expect(existsSync(pidFile())).toBe(false)
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
    const log = readFileSync(join(clone, '.run', 'proxy.log'), 'utf8')
    expect(log).toContain('"msg":"stopped"')

    const stopAgain = await make('stop', env)
    expect(stopAgain.code).toBe(0)
    expect(stopAgain.stdout).toContain('not running')
  }, 240_000)

  it('make run with WORKERS=2 records the primary; make stop drains every worker', async () => {
    // The clone was installed and built by the first test.
    const port = await freePort()
    const respPort = await freePort()
    const env = {
      REDIS_URL: redis.url,
      WORKERS: '2',
      PROXY_HOST_HTTP: '127.0.0.1',
      PROXY_PORT_HTTP: String(port),
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(respPort),
    }
    const run = await make('run', env)
    expect(run.code, run.stderr).toBe(0)
    const pid = Number(readFileSync(pidFile(), 'utf8'))
    const workers = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .map(Number)
    expect(workers).toHaveLength(2)
    await redis.command('SET', 'made', 'by two workers')
    expect(String(await sendCommand(respPort, ['GET', 'made']))).toBe('by two workers')

    const stop = await make('stop', env)
    expect(stop.code).toBe(0)
    expect(stop.stdout).toContain(`redis-proxy stopped (pid ${pid})`)
    for (const worker of [pid, ...workers]) expect(isAlive(worker), `pid ${worker}`).toBe(false)
    const log = readFileSync(join(clone, '.run', 'proxy.log'), 'utf8')
    expect(log.match(/"msg":"worker stopped"/g)).toHaveLength(2)
    expect(log.trim().split('\n').at(-1)).toContain('"msg":"stopped"')
  }, 60_000)

  it('make run fails, leaving no PID file, when the proxy cannot start', async () => {
    const run = await make('run', { REDIS_URL: redis.url, CACHE_CAPACITY: '0' })
    expect(run.code).not.toBe(0)
    expect(run.stderr).toContain('redis-proxy exited during start-up')
    expect(run.stderr).toContain('Invalid CACHE_CAPACITY="0"')
    expect(existsSync(pidFile())).toBe(false)
  }, 120_000)
})
