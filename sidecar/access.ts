import type { User } from '../shared/auth/acl.js'
import { keyFromBytes, keyToText } from '../shared/keys.js'
import { type CommandEntry, GET_ENTRY, type Reply } from './commands/index.js'

/**
 * Who may run what, in Redis 7.0's order and words (processCommand:
 * authentication, then the command rules, then the keys). Asked by
 * Connection for every command, the decoder's GET fast path included, so a
 * cache hit is refused exactly as a miss is.
 */

export const NOAUTH: Reply = Buffer.from('-NOAUTH Authentication required.\r\n')
const NO_KEY_PERMISSION: Reply = Buffer.from(
  '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
)

/**
 * Why `user` (null: not authenticated) may not run `entry` with `args`, or
 * undefined when it may. Every key the sidecar's commands take is read, never
 * written (the command table checks they are all readonly), so keys need
 * read access; one key refused refuses the whole command, as Redis does with
 * MGET.
 */
export function refusal(user: User | null, entry: CommandEntry, args: Buffer[]): Reply | undefined {
  // AUTH, HELLO, QUIT, RESET: Redis runs these before authentication and
  // whatever the user's command rules say; none of them has keys.
  if (entry.noAuth) return undefined
  if (user === null) return NOAUTH
  // A container is checked by its subcommand; any other command by its first
  // argument too, which a `+select|0` rule may name.
  const first = entry.sub ?? (args.length > 1 ? (args[1] as Buffer).toString('utf8') : undefined)
  if (!user.canRun(entry.command.name, first, entry.categories)) return entry.noPermission
  const [firstKey, lastKey, step] = entry.command.keys
  if (firstKey > 0) {
    const last = lastKey < 0 ? args.length + lastKey : lastKey
    for (let i = firstKey; i <= last; i += step) {
      if (!user.keyAccess(keyFromBytes(args[i] as Buffer), 'read')) return NO_KEY_PERMISSION
    }
  }
  return undefined
}

/** `refusal` for a GET of `key` (a byte string) as the decoder's fast path hands it over. */
export function getRefusal(user: User | null, key: string): Reply | undefined {
  if (user === null) return NOAUTH
  if (user.unrestricted) return undefined
  // The key is GET's first argument, decoded as the table path decodes it.
  if (!user.canRun('get', keyToText(key), GET_ENTRY.categories)) return GET_ENTRY.noPermission
  return user.keyAccess(key, 'read') ? undefined : NO_KEY_PERMISSION
}
