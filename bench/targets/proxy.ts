/**
 * The proxy's own entry (main.ts, unchanged) plus a probe the bench asks over
 * IPC for the process's memory after a full GC, which no outside reading of
 * the process can give. Run with --expose-gc.
 */
process.on('message', (message) => {
  if (message !== 'memory') return
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  process.send?.({ memory: process.memoryUsage() })
})
// The channel must not keep the process alive once main.ts has shut down.
process.channel?.unref()

await import('../../main.js')
