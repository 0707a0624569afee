import { nameCode } from '../../shared/redis/command-table.js'
import { error } from '../resp/encoder.js'
import { acl, auth } from './auth.js'
import { client, echo, hello, ping, quit, reset, select, wrongArity } from './connection.js'
import { commandCommand, info } from './introspection.js'
import { get, mget } from './read.js'
import type { Command, Reply, Subcommand } from './types.js'

const list: Command[] = [get, mget, ping, echo, quit, hello, select, client, reset, info, auth, acl]
list.push(commandCommand(() => list))

/**
 * A command or a container's subcommand as the dispatcher found it, with
 * what the access check asks of it computed once, at module load.
 */
export class CommandEntry {
  readonly command: Command
  /** The subcommand found, for a container (`client|id`); undefined otherwise. */
  readonly sub: string | undefined
  /** `get`, `client|id`: the name Redis gives in arity and NOPERM errors. */
  readonly fullName: string
  readonly arity: number
  readonly categories: readonly string[]
  /** Redis's `no_auth` flag: runs before AUTH and whatever the user's command rules say. */
  readonly noAuth: boolean
  /** `-NOPERM ... to run the '<fullName>' command`, encoded once. */
  readonly noPermission: Reply

  constructor(command: Command, sub?: Subcommand) {
    this.command = command
    this.sub = sub?.name
    this.fullName = sub === undefined ? command.name : `${command.name}|${sub.name}`
    this.arity = sub?.arity ?? command.arity
    this.categories = sub?.categories ?? command.categories
    this.noAuth = (sub?.flags ?? command.flags).includes('no_auth')
    this.noPermission = error(
      `NOPERM this user has no permissions to run the '${this.fullName}' command`,
    )
  }
}

type TableRow = { entry: CommandEntry; subs: Map<string, CommandEntry> | undefined }

const table = new Map<string, TableRow>()
for (const command of list) {
  // The access check asks for read access to every key (see sidecar/access.ts).
  if (command.keys[0] > 0 && !command.flags.includes('readonly')) {
    throw new TypeError(`Expected command \`${command.name}\` with keys to be readonly`)
  }
  const subs =
    command.subcommands === undefined
      ? undefined
      : new Map(
          [...command.subcommands].map(([name, sub]) => [name, new CommandEntry(command, sub)]),
        )
  table.set(command.name, { entry: new CommandEntry(command), subs })
}

const byCode = new Map<number, TableRow>()
for (const [name, row] of table) {
  const code = nameCode(Buffer.from(name, 'latin1'))
  if (code >= 0) byCode.set(code, row)
}

/** GET's entry, for the decoder's fast path, which skips the lookup. */
export const GET_ENTRY = (table.get('get') as TableRow).entry

/**
 * Finds the command (and a container's subcommand) that `args` names and
 * checks its arity: the entry to check and run, or Redis's error. Redis does
 * both before it looks at authentication or permissions, so an unknown
 * command is answered as unknown even to a client that has not logged in.
 * Names are matched case-insensitively.
 */
export function resolve(args: Buffer[]): CommandEntry | Reply | null {
  const name = args[0] as Buffer
  // Short names by their code, no string made; no name here is longer than 16.
  const code = nameCode(name)
  const row =
    code >= 0
      ? byCode.get(code)
      : name.length <= 16
        ? table.get(name.toString('latin1').toLowerCase())
        : undefined
  // Not one of the sidecar's own: the forwarder's (sidecar/forward.ts).
  if (row === undefined) return null
  let entry = row.entry
  if (row.subs !== undefined && args.length >= 2) {
    const sub = args[1] as Buffer
    const found = sub.length <= 16 ? row.subs.get(sub.toString('latin1').toLowerCase()) : undefined
    if (found === undefined) {
      return error(
        `ERR unknown subcommand '${sub.subarray(0, 128).toString()}'. Try ${entry.command.name.toUpperCase()} HELP.`,
      )
    }
    entry = found
  }
  const arity = entry.arity
  if ((arity > 0 && args.length !== arity) || args.length < -arity) {
    return wrongArity(entry.fullName)
  }
  return entry
}

export type { Command, CommandContext, Reply, ServerView, Session } from './types.js'
