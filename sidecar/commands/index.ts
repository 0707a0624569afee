import { error } from '../resp/encoder.js'
import { client, echo, hello, ping, quit, reset, select, wrongArity } from './connection.js'
import { commandCommand, info } from './introspection.js'
import { get, mget } from './read.js'
import type { Command, CommandContext, Reply } from './types.js'

const list: Command[] = [get, mget, ping, echo, quit, hello, select, client, reset, info]
list.push(commandCommand(() => list))

const table = new Map<string, Command>(list.map((command) => [command.name, command]))

/**
 * Runs one command (undefined: it answered already, see CommandContext.hit).
 * Names are matched case-insensitively. Nothing reaches the backing Redis
 * except the reads GET and MGET make through the service. A canonical GET is
 * usually recognised by the decoder and handed to readKey directly, the same
 * function the table's `get` runs.
 */
export function dispatch(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> | undefined {
  const name = args[0] as Buffer
  // No command name is longer than 7 bytes: a longer one is not converted at all.
  const command = name.length <= 16 ? table.get(name.toString('latin1').toLowerCase()) : undefined
  if (command === undefined) return unknownCommand(args)
  const arity = command.arity
  if ((arity > 0 && args.length !== arity) || args.length < -arity) {
    return wrongArity(command.name)
  }
  return command.run(ctx, args)
}

/** Redis's wording, byte for byte: name and the quoted arguments both cut at 128. */
function unknownCommand(args: Buffer[]): Reply {
  let quoted = ''
  for (let i = 1; i < args.length && quoted.length < 128; i++) {
    quoted += `'${(args[i] as Buffer).subarray(0, 128 - quoted.length).toString('latin1')}' `
  }
  const name = (args[0] as Buffer).subarray(0, 128).toString('latin1')
  return error(`ERR unknown command '${name}', with args beginning with: ${quoted}`, 'latin1')
}

export type { Command, CommandContext, Reply, ServerView, Session } from './types.js'
