import { newGc } from '../../shared/idle-gc.js'

/**
 * The proxy's own entry (main.ts, unchanged) plus a probe the bench asks over
 * IPC for the process's memory after a full GC, which no outside reading of
 * the process can give. The process is not started with --expose-gc, so
 * the proxy's idle collection gets `gc()` as it does when users run it
 * (shared/idle-gc.ts). The probe makes a `gc()` of its own the same way at
 * each request and lets it go after, so the context that costs (about
 * 0.6 MiB) is garbage by the next collection, not held in the RSS the bench
 * reads at its next step.
 */
process.on('message', (message) => {
  if (message !== 'memory') return
  const gc = newGc()
  gc()
  gc()
  process.send?.({ memory: process.memoryUsage() })
})
// The channel must not keep the process alive once main.ts has shut down.
process.channel?.unref()

await import('../../main.js')
