import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type ProxyProcess = {
  readonly child: ChildProcess
  /** Everything the process wrote to stderr (its JSON log lines). */
  logs(): string
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

// Every proxy process a test file spawned and that has not exited: a test
// that fails before its own cleanup must not leave one running (see
// killLeftovers, run after each file by test/harness/setup.ts).
const running = new Set<ChildProcess>()

/** SIGKILLs the proxy processes this test file spawned that are still running. */
export function killLeftovers(): void {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}

/**
 * The built proxy (`npm run build` output) as its own process, as an operator
 * runs it; `nodeArgs` go to node before the script (V8 flags).
 */
export function spawnProxy(
  args: string[],
  env: Record<string, string>,
  nodeArgs: readonly string[] = [],
): ProxyProcess {
  const child = spawn(process.execPath, [...nodeArgs, 'dist/main.js', ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'info',
      // The suite's check on lent reads (vitest.config.ts) holds in the process too.
      ...(process.env.REDIS_PROXY_POISON_READS !== undefined && {
        REDIS_PROXY_POISON_READS: process.env.REDIS_PROXY_POISON_READS,
      }),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let logs = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    logs += chunk.toString()
  })
  child.stdout?.resume()
  running.add(child)
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    }),
  )
  process.once('exit', () => child.kill('SIGKILL'))
  return { child, logs: () => logs, exited: () => exit }
}

export async function waitForHttp(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url)
      await res.arrayBuffer()
      return
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not come up`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

export type ProcessMemory = {
  /** Resident now (VmRSS). */
  readonly rss: number
  /** The most it was ever resident (VmHWM): a peak no sampling can miss. */
  readonly peakRss: number
  /** Its address space (VmSize): counts allocations whose pages were never touched. */
  readonly virtual: number
}

/** Another process's memory from /proc/<pid>/status (Linux), in bytes. */
export function memoryOf(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)
    if (match === null) throw new Error(`no ${field} in /proc/${pid}/status`)
    return Number(match[1]) * 1024
  }
  return { rss: kib('VmRSS'), peakRss: kib('VmHWM'), virtual: kib('VmSize') }
}

/** Until the process logs that every listener is up (the `serving` line). */
export async function waitServing(proxy: ProxyProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!proxy.logs().includes('"msg":"serving"')) {
    if (proxy.child.exitCode !== null) throw new Error(`proxy exited: ${proxy.logs()}`)
    if (Date.now() > deadline) throw new Error(`proxy did not start: ${proxy.logs()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
