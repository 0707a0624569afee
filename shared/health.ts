import type { InvalidationMode } from './invalidation.js'
import type { SourceState } from './redis/source.js'

/**
 * One condition readiness depends on. Each part of the process that must be
 * working before traffic is sent here adds its own (the backend connection,
 * the invalidation channel when it is on); `/readyz` passes only when all do.
 */
export type ReadinessCheck = {
  readonly name: string
  ready(): boolean
}

export type Readiness = { ready: boolean; checks: Record<string, boolean> }

/** Ready while the connection to the backing Redis is up. */
export function backendConnected(
  service: { backend(): SourceState },
  name = 'backend',
): ReadinessCheck {
  return { name, ready: () => service.backend() === 'ready' }
}

/**
 * Ready unless invalidation is on and not established: while it is connecting
 * or lost the cache stores nothing new and a replica is better out of rotation.
 * Off, or refused by the backend for good (expiry only), there is nothing to
 * wait for.
 */
export function invalidationEstablished(
  service: { invalidation(): InvalidationMode },
  name = 'invalidation',
): ReadinessCheck {
  return {
    name,
    ready: () => {
      const mode = service.invalidation()
      return mode !== 'connecting' && mode !== 'lost'
    },
  }
}

export function checkReadiness(checks: readonly ReadinessCheck[]): Readiness {
  const results: Record<string, boolean> = {}
  let ready = true
  for (const check of checks) {
    const ok = check.ready()
    results[check.name] = ok
    if (!ok) ready = false
  }
  return { ready, checks: results }
}
