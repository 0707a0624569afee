import { BackendUnavailableError } from '../errors.js'
import { timeLeft } from './deadline.js'
import type { RedisSource } from './source.js'

/**
 * A source that opens a backend connection for each read and lets it go once
 * the reply is in. For runtimes where a socket belongs to the request that
 * opened it (Workers refuse I/O on behalf of another request), so one
 * long-lived connection cannot serve the isolate's later requests. Hits never
 * get here; only misses pay the connect.
 */
export function connectionPerRead(open: () => RedisSource): RedisSource {
  const live = new Set<RedisSource>()
  let closed = false

  const release = (source: RedisSource): Promise<void> =>
    source.close().then(
      () => void live.delete(source),
      () => void live.delete(source),
    )

  return {
    async get(key, deadline) {
      if (closed) throw new BackendUnavailableError('source is closed')
      // Checked before connecting: a connection for a read already given up on is wasted.
      timeLeft(deadline)
      const source = open()
      live.add(source)
      try {
        // The deadline covers the connect too: the command waits for it in
        // the connection's queue, and its timer runs from here.
        return await source.get(key, deadline)
      } finally {
        // Not awaited: the reply is already here, and the caller should not wait for QUIT.
        void release(source)
      }
    },
    state() {
      return closed ? 'closed' : 'ready'
    },
    async close() {
      closed = true
      await Promise.all([...live].map(release))
    },
  }
}
