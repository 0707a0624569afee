import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export type ProxyProcess = {
  readonly child: ChildProcess
  /** Everything the process wrote to stderr (its JSON log lines). */
  logs(): string
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** The built proxy (`npm run build` output) as its own process, as an operator runs it. */
export function spawnProxy(args: string[], env: Record<string, string>): ProxyProcess {
  const child = spawn(process.execPath, ['dist/main.js', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let logs = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    logs += chunk.toString()
  })
  child.stdout?.resume()
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
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
