import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { freePort } from '../harness/ports.js'
import { startRedis } from '../harness/redis-server.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Worker as `wrangler deploy` would upload it: one ES module. */
    workerBundle: string
    /** A real redis-server for the Worker under test. */
    redisPort: number
    /** Accepts connections and never answers: a backend that hangs. */
    silentPort: number
    /** Nothing listens there: a backend that is down. */
    closedPort: number
  }
}

/**
 * Runs on the Node side before workerd starts. The Worker cannot spawn
 * processes, so its backends start here and their ports go to the pool
 * options as bindings (test/workerd/pool-options.ts). The Worker itself is
 * bundled by wrangler, exactly as for a deploy, so the tests run the artefact
 * that would ship. Everything is stopped by PID or handle in teardown.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const outdir = mkdtempSync(join(tmpdir(), 'redis-proxy-worker-'))
  await bundleWorker(outdir)
  const redis = await startRedis()
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const address = silent.address()

  project.provide('workerBundle', join(outdir, 'worker.js'))
  project.provide('redisPort', redis.port)
  project.provide('silentPort', typeof address === 'object' && address ? address.port : 0)
  project.provide('closedPort', await freePort())

  return async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => silent.close(() => resolve()))
    await redis.stop()
    rmSync(outdir, { recursive: true, force: true })
  }
}

/** `wrangler deploy --dry-run` builds without uploading anything. */
function bundleWorker(outdir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['node_modules/wrangler/bin/wrangler.js', 'deploy', '--dry-run', '--outdir', outdir],
      {
        env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once('error', reject)
    child.once('exit', (code) => {
      if (code === 0) resolve()
      else reject(new Error(`wrangler deploy --dry-run exited ${code}: ${stderr}`))
    })
  })
}
