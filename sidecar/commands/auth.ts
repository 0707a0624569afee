import { bulkString, error, OK } from '../resp/encoder.js'
import type { Command, CommandContext, Reply } from './types.js'

// Redis 7.0's replies, byte for byte (authCommand, helloCommand).
const WRONGPASS = error('WRONGPASS invalid username-password pair or user is disabled.')
const DEFAULT_IS_NOPASS = error(
  'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
)
const SYNTAX_ERROR = error('ERR syntax error')
const DEFAULT_USER = Buffer.from('default')

/**
 * Logs the session in as `name` through the gate: undefined once done, else
 * the error to answer. A refusal leaves the session as it was (still logged
 * in as before, if it was), as in Redis. Success also ends the handshake
 * bound (Session.established).
 */
export function logIn(ctx: CommandContext, name: Buffer, password: Buffer): Reply | undefined {
  const session = ctx.session
  const result = ctx.server.gate.authenticate(name.toString('utf8'), password, {
    interface: 'resp',
    address: session.ip,
  })
  if ('refused' in result) {
    if (result.refused === 'wrongpass') return WRONGPASS
    // Redis has no limiter, hence no wording of its own: an ERR that says
    // what happened and when to try again (the README documents it).
    return error(
      `ERR too many failed authentications from this address, retry in ${Math.ceil(result.retryAfterMs)} ms`,
    )
  }
  session.user = result
  session.established = true
  return undefined
}

export const auth: Command = {
  name: 'auth',
  arity: -2,
  flags: ['fast', 'no_auth'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '1.0.0',
  summary: 'Logs the connection in as a user: AUTH [username] password.',
  run(ctx, args) {
    if (args.length > 3) return SYNTAX_ERROR
    if (args.length === 2) {
      // Redis keeps requirepass's old answer to a password nobody asked for.
      if (ctx.server.gate.defaultUser().nopass) return DEFAULT_IS_NOPASS
      return logIn(ctx, DEFAULT_USER, args[1] as Buffer) ?? OK
    }
    return logIn(ctx, args[1] as Buffer, args[2] as Buffer) ?? OK
  },
}

/**
 * ACL WHOAMI only: users come from the ACL file at start-up, so there is
 * nothing to list, set or save, and every other subcommand is answered as
 * Redis answers one it does not know.
 */
export const acl: Command = {
  name: 'acl',
  arity: -2,
  flags: [],
  categories: ['slow'],
  keys: [0, 0, 0],
  group: 'server',
  since: '6.0.0',
  summary: 'ACL WHOAMI: the user the connection runs as.',
  subcommands: new Map([['whoami', { name: 'whoami', arity: 2, flags: [], categories: ['slow'] }]]),
  // Never run unauthenticated (ACL has no no_auth flag), so the user is set.
  run: (ctx) => bulkString(ctx.session.user?.name ?? 'default'),
}
