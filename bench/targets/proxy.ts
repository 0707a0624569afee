import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * The proxy's own entry (main.ts, unchanged) plus a probe the bench asks over
 * IPC for the process's memory after a full GC, which no outside reading of
 * the process can give. The process is not started with --expose-gc, so
 * the proxy's idle collection gets `gc()` as it does when users run it
 * (shared/idle-gc.ts); the probe makes its own the same way on its first
 * use, and the context that costs (about 0.6 MiB) is counted against the
 * proxy in every RSS read after it.
 */
let gc: (() => void) | undefined
process.on('message', (message) => {
  if (message !== 'memory') return
  if (gc === undefined) {
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
    setFlagsFromString('--no-expose-gc')
  }
  gc()
  gc()
  process.send?.({ memory: process.memoryUsage() })
})
// The channel must not keep the process alive once main.ts has shut down.
process.channel?.unref()

await import('../../main.js')
