import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { spawnProxy, waitServing } from './harness/process.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-modules-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/**
 * The packages `node dist/main.js` loads, listed by a preload when the process
 * exits. A bad setting makes main.ts exit once its static imports are in, so
 * no server starts.
 */
function packagesLoaded(): string[] {
  const preload = join(dir, 'list-packages.cjs')
  writeFileSync(
    preload,
    `process.on('exit', () => {
      const names = new Set()
      for (const file of Object.keys(require.cache)) {
        const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file)
        if (m) names.add(m[1])
      }
      process.stderr.write('PACKAGES ' + JSON.stringify([...names]) + '\\n')
    })\n`,
  )
  const run = spawnSync(process.execPath, ['--require', preload, 'dist/main.js'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, PROXY_PORT_TCP: 'not-a-port' },
    encoding: 'utf8',
    timeout: 20_000,
  })
  expect(run.status, run.stderr).not.toBe(0)
  // The exit is config's refusal, so every static import ran before it.
  expect(run.stderr).toMatch(/Invalid PROXY_PORT_TCP="not-a-port"/)
  const line = /^PACKAGES (.*)$/m.exec(run.stderr)
  expect(line, run.stderr).not.toBeNull()
  return JSON.parse(line?.[1] ?? '[]') as string[]
}

describe('the Node runtime at start-up', () => {
  it('does not load ioredis (the native backend needs none of it)', () => {
    const packages = packagesLoaded()
    // The preload sees CommonJS packages: one it lists proves it works.
    expect(packages).toContain('prom-client')
    expect(packages).not.toContain('ioredis')
  })
})

/**
 * Whether a proxy serving `interfaces` loaded Node's fetch implementation
 * (undici, which the global Request and Response load), as a preload lists
 * Node's own modules when the process exits after SIGTERM.
 */
async function loadsUndici(interfaces: string[]): Promise<boolean> {
  const preload = join(dir, 'list-builtins.cjs')
  writeFileSync(
    preload,
    `process.on('exit', () => {
      process.stderr.write('BUILTINS ' + JSON.stringify(process.moduleLoadList) + '\\n')
    })\n`,
  )
  const proxy = spawnProxy(interfaces, {
    NODE_OPTIONS: `--require ${preload}`,
    // Nothing listens there: the servers start all the same.
    REDIS_URL: 'redis://127.0.0.1:1',
    PROXY_HOST_HTTP: '127.0.0.1',
    PROXY_PORT_HTTP: String(await freePort()),
    PROXY_HOST_TCP: '127.0.0.1',
    PROXY_PORT_TCP: String(await freePort()),
  })
  await waitServing(proxy)
  proxy.child.kill('SIGTERM')
  await proxy.exited()
  const line = /^BUILTINS (.*)$/m.exec(proxy.logs())
  expect(line, proxy.logs()).not.toBeNull()
  const builtins = JSON.parse(line?.[1] ?? '[]') as string[]
  // The list is seen either way: what the process had to load to start.
  expect(builtins).toContain('NativeModule net')
  return builtins.some((name) => name.includes('undici'))
}

describe('the sidecar run alone', () => {
  it("does not load the HTTP interface's fetch implementation (undici, about 5 MiB of RSS)", async () => {
    expect(await loadsUndici(['resp'])).toBe(false)
    // The HTTP interface does (Hono's adapter reads the global Request and
    // Response), so the check can see it.
    expect(await loadsUndici(['http'])).toBe(true)
  }, 30_000)
})
