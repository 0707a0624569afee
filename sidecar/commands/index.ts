import { error } from '../resp/encoder.js'
import { client, echo, hello, ping, quit, reset, select, wrongArity } from './connection.js'
import { commandCommand, info } from './introspection.js'
import { get, mget } from './read.js'
import type { Command, CommandContext, Reply } from './types.js'

const list: Command[] = [get, mget, ping, echo, quit, hello, select, client, reset, info]
list.push(commandCommand(() => list))

const table = new Map<string, Command>(list.map((command) => [command.name, command]))

/**
 * Runs one command. Names are matched case-insensitively; GET is recognised
 * from its bytes so the hot path allocates no name string. Nothing reaches
 * the backing Redis except the reads GET and MGET make through the service.
 */
export function dispatch(ctx: CommandContext, args: Buffer[]): Reply | Promise<Reply> {
  const name = args[0] as Buffer
  if (isGet(name)) {
    return args.length === 2 ? get.run(ctx, args) : wrongArity('get')
  }
  // No command name is longer than 7 bytes: a longer one is not converted at all.
  const command = name.length <= 16 ? table.get(name.toString('latin1').toLowerCase()) : undefined
  if (command === undefined) return unknownCommand(args)
  const arity = command.arity
  if ((arity > 0 && args.length !== arity) || args.length < -arity) {
    return wrongArity(command.name)
  }
  return command.run(ctx, args)
}

export function isGet(name: Buffer): boolean {
  return (
    name.length === 3 &&
    ((name[0] as number) | 0x20) === 0x67 && // g
    ((name[1] as number) | 0x20) === 0x65 && // e
    ((name[2] as number) | 0x20) === 0x74 // t
  )
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
