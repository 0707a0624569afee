import { askUntil } from './ask-until.js'
import { commandStat, type TestRedis } from './redis-server.js'

/**
 * Sets `redis` (started with a low `--busy-reply-threshold`) running an
 * endless script, and resolves once it answers BUSY to other clients. The
 * function it resolves to kills the script and waits for its end: call it
 * in a `finally` too, since a Redis in a script does not stop on SIGTERM
 * (killing one that has none is a harmless NOTBUSY error).
 */
export async function busyWithScript(redis: TestRedis): Promise<() => Promise<void>> {
  const script = redis.command('EVAL', 'while true do end', '0')
  await askUntil(
    async () => String(await redis.command('PING')),
    (reply) => reply.includes('BUSY'),
  )
  return async () => {
    await redis.command('SCRIPT', 'KILL')
    await script
  }
}

/**
 * A script that keeps its Redis busy for 400 ms, then returns: what is sent
 * to that Redis meanwhile waits in its socket (a read held behind it, a
 * write queued after it).
 */
export const SPIN_400_MS =
  "local s = redis.call('TIME') repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 400000"

/** Calls of `command` (as Redis names it: `select`, `client|tracking`) Redis rejected, by INFO commandstats. */
export async function rejectedCalls(redis: TestRedis, command: string): Promise<number> {
  return commandStat(await redis.command('INFO', 'commandstats'), command, 'rejected_calls')
}
