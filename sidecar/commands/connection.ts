import {
  bulkReply,
  bulkString,
  encodeStructured,
  error,
  OK,
  PONG,
  type Structured,
  simpleString,
} from '../resp/encoder.js'
import { logIn } from './auth.js'
import type { Command, CommandContext, Reply } from './types.js'

/** The Redis version whose replies the sidecar reproduces, reported by HELLO and INFO. */
export const REDIS_VERSION = '7.0.0'

const RESET = simpleString('RESET')

export const ping: Command = {
  name: 'ping',
  arity: -1,
  flags: ['fast'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '1.0.0',
  summary: 'Returns PONG, or the message given.',
  run(_ctx, args) {
    if (args.length > 2) return wrongArity('ping')
    return args.length === 2 ? bulkReply(args[1] as Buffer) : PONG
  },
}

export const echo: Command = {
  name: 'echo',
  arity: 2,
  flags: ['fast'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '1.0.0',
  summary: 'Returns the message given.',
  run: (_ctx, args) => bulkReply(args[1] as Buffer),
}

export const quit: Command = {
  name: 'quit',
  arity: -1,
  flags: ['fast', 'no_auth'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '1.0.0',
  summary: 'Closes the connection once the replies owed are sent.',
  run(ctx) {
    ctx.session.quitting = true
    return OK
  },
}

export const select: Command = {
  name: 'select',
  arity: 2,
  flags: ['fast'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '1.0.0',
  summary: 'Selects a database: 0 through the cache, any other on a backend connection of its own.',
  run(ctx, args) {
    const index = parseInteger(args[1] as Buffer)
    if (index === null) return error('ERR value is not an integer or out of range')
    if (index === 0) return OK
    // Another database is not the one cached: the client moves to a
    // connection of its own, on which Redis answers (or refuses) the index.
    return ctx.server.forwarder === undefined
      ? error('ERR DB index is out of range')
      : ctx.pin(args)
  },
}

/** RESET's effect on the proxy's side of a session: RESP2, no name, the initial user. */
export function resetSession(ctx: CommandContext): void {
  const session = ctx.session
  session.resp3 = false
  session.name = null
  session.libName = null
  session.libVer = null
  // As Redis's clientSetDefaultAuth: logged out when a password is required.
  session.user = ctx.server.gate.initialUser()
}

export const reset: Command = {
  name: 'reset',
  arity: 1,
  flags: ['fast', 'no_auth'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '6.2.0',
  summary: 'Resets the connection: RESP2, no name, the initial user.',
  run(ctx) {
    resetSession(ctx)
    return RESET
  },
}

export const hello: Command = {
  name: 'hello',
  arity: -1,
  flags: ['fast', 'no_auth'],
  categories: ['fast', 'connection'],
  keys: [0, 0, 0],
  group: 'connection',
  since: '6.0.0',
  summary: 'Negotiates the protocol version (2 or 3), logs in, and returns server facts.',
  run(ctx, args) {
    let resp3 = ctx.session.resp3
    if (args.length >= 2) {
      const version = parseInteger(args[1] as Buffer)
      if (version === null) return error('ERR Protocol version is not an integer or out of range')
      if (version !== 2 && version !== 3) return error('NOPROTO unsupported protocol version')
      resp3 = version === 3
      // Options take effect one by one, as in Redis 7.0: a login or a name
      // before a bad option stays, though HELLO answers with the error.
      for (let i = 2; i < args.length; i++) {
        const option = (args[i] as Buffer).toString('latin1').toLowerCase()
        const left = args.length - i - 1
        if (option === 'auth' && left >= 2) {
          const refused = logIn(ctx, args[i + 1] as Buffer, args[i + 2] as Buffer)
          if (refused !== undefined) return refused
          i += 2
        } else if (option === 'setname' && left >= 1) {
          const name = (args[++i] as Buffer).toString('latin1')
          if (!validClientName(name)) return error(BAD_CLIENT_NAME)
          ctx.session.name = name === '' ? null : name
        } else {
          return error(`ERR Syntax error in HELLO option '${(args[i] as Buffer).toString()}'`)
        }
      }
    }
    if (ctx.session.user === null) return HELLO_NOAUTH
    ctx.session.resp3 = resp3
    const facts = new Map<string, Structured>([
      ['server', 'redis'],
      ['version', REDIS_VERSION],
      ['proto', resp3 ? 3 : 2],
      ['id', ctx.session.id],
      ['mode', 'standalone'],
      ['role', 'master'],
      ['modules', []],
    ])
    return encodeStructured(facts, resp3)
  },
}

const HELLO_NOAUTH = error(
  'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time',
)

/** Redis 7.0's categories of CLIENT LIST and CLIENT KILL. */
const ADMIN = ['admin', 'slow', 'dangerous', 'connection'] as const

const BAD_CLIENT_NAME = 'ERR Client names cannot contain spaces, newlines or special characters.'

export const client: Command = {
  name: 'client',
  arity: -2,
  flags: [],
  categories: ['slow'],
  subcommands: new Map(
    (
      [
        ['id', 2],
        ['getname', 2],
        ['setname', 3],
        // Redis 7.2's; its categories there.
        ['setinfo', 4],
        ['info', 2],
        // These change how Redis treats the connection that runs them: the
        // client gets a backend connection of its own (see sidecar/pinned.ts).
        ['list', -2, ADMIN],
        ['kill', -3, ADMIN],
        ['tracking', -3],
        ['reply', 3],
        ['caching', 3],
        ['no-evict', 3],
        ['no-touch', 3],
      ] as readonly (readonly [string, number, (readonly string[])?])[]
    ).map(([name, arity, categories]) => [
      name,
      { name, arity, flags: [], categories: categories ?? ['slow', 'connection'] },
    ]),
  ),
  keys: [0, 0, 0],
  group: 'connection',
  since: '2.4.0',
  summary: 'Connection facts: ID, SETNAME, GETNAME, SETINFO, INFO.',
  // The dispatcher has found the subcommand and checked its arity.
  run(ctx, args) {
    const sub = (args[1] as Buffer).toString('latin1').toLowerCase()
    const session = ctx.session
    switch (sub) {
      case 'id':
        return encodeStructured(session.id, false)
      case 'getname':
        return session.name === null
          ? encodeStructured(null, session.resp3)
          : bulkString(session.name)
      case 'setname': {
        const name = (args[2] as Buffer).toString('latin1')
        if (!validClientName(name)) return error(BAD_CLIENT_NAME)
        session.name = name === '' ? null : name
        return OK
      }
      case 'setinfo': {
        const attr = (args[2] as Buffer).toString('latin1').toLowerCase()
        const value = (args[3] as Buffer).toString('latin1')
        if (attr !== 'lib-name' && attr !== 'lib-ver') {
          return error(`ERR Unrecognized option '${(args[2] as Buffer).toString()}'`)
        }
        if (!validClientName(value)) {
          return error(`ERR ${attr} cannot contain spaces, newlines or special characters.`)
        }
        if (attr === 'lib-name') session.libName = value
        else session.libVer = value
        return OK
      }
      case 'info':
        return bulkString(`${clientInfoLine(ctx)}\n`)
      case 'list':
        return clientList(ctx, args)
      case 'kill':
        return clientKill(ctx, args)
      default:
        return ctx.server.forwarder === undefined
          ? error(
              `ERR CLIENT ${sub.toUpperCase()} needs a backing redis to forward to (redis-proxy)`,
            )
          : ctx.pin(args)
    }
  },
}

/** CLIENT LIST [TYPE normal] [ID id ...]: the proxy's clients, one CLIENT INFO line each. */
function clientList(ctx: CommandContext, args: Buffer[]): Reply {
  let ids: Set<number> | undefined
  for (let i = 2; i < args.length; i++) {
    const option = (args[i] as Buffer).toString('latin1').toLowerCase()
    if (option === 'type' && i + 1 < args.length) {
      const type = (args[++i] as Buffer).toString('latin1').toLowerCase()
      if (!['normal', 'master', 'replica', 'slave', 'pubsub'].includes(type)) {
        return error(`ERR Unknown client type '${(args[i] as Buffer).toString()}'`)
      }
      // Every proxy client is a normal one.
      if (type !== 'normal') return bulkString('')
    } else if (option === 'id' && i + 1 < args.length) {
      ids = new Set()
      for (i++; i < args.length; i++) {
        const id = parseInteger(args[i] as Buffer)
        if (id === null || id <= 0) return error(`ERR Invalid client ID`)
        ids.add(id)
      }
    } else {
      return error('ERR syntax error')
    }
  }
  let text = ''
  for (const client of ctx.server.clients()) {
    if (ids === undefined || ids.has(client.session.id)) {
      text += `${clientInfoLine({ ...ctx, session: client.session })}\n`
    }
  }
  return bulkString(text)
}

/**
 * CLIENT KILL addr (the old form: +OK, or no such client) or with filters
 * (ID, ADDR, USER, SKIPME): the number killed. Only the proxy's own clients:
 * the backend's connections are the proxy's to manage.
 */
function clientKill(ctx: CommandContext, args: Buffer[]): Reply {
  const self = ctx.session
  if (args.length === 3) {
    const addr = (args[2] as Buffer).toString('latin1')
    for (const client of ctx.server.clients()) {
      if (client.session.addr === addr) {
        client.destroy()
        return OK
      }
    }
    return error('ERR No such client')
  }
  let id: number | undefined
  let addr: string | undefined
  let user: string | undefined
  let skipMe = true
  for (let i = 2; i < args.length; i += 2) {
    const option = (args[i] as Buffer).toString('latin1').toLowerCase()
    const value = args[i + 1]
    if (value === undefined) return error('ERR syntax error')
    const text = value.toString('latin1')
    if (option === 'id') {
      const parsed = parseInteger(value)
      if (parsed === null || parsed <= 0) return error('ERR client-id should be greater than 0')
      id = parsed
    } else if (option === 'addr') {
      addr = text
    } else if (option === 'user') {
      user = text
    } else if (option === 'skipme') {
      const answer = text.toLowerCase()
      if (answer !== 'yes' && answer !== 'no') return error('ERR syntax error')
      skipMe = answer === 'yes'
    } else {
      return error('ERR syntax error')
    }
  }
  let killed = 0
  for (const client of [...ctx.server.clients()]) {
    const session = client.session
    if (skipMe && session === self) continue
    if (id !== undefined && session.id !== id) continue
    if (addr !== undefined && session.addr !== addr) continue
    if (user !== undefined && session.user?.name !== user) continue
    // Itself (SKIPME no): after this reply, as Redis closes it.
    if (session === self) self.quitting = true
    else client.destroy()
    killed++
  }
  return encodeStructured(killed, false)
}

/** CLIENT INFO's line: the fields that mean something for a proxy connection. */
export function clientInfoLine({ session }: CommandContext): string {
  return [
    `id=${session.id}`,
    `addr=${session.addr}`,
    `name=${session.name ?? ''}`,
    'db=0',
    `resp=${session.resp3 ? 3 : 2}`,
    `lib-name=${session.libName ?? ''}`,
    `lib-ver=${session.libVer ?? ''}`,
  ].join(' ')
}

/** Redis allows names of printable ASCII without spaces; empty clears the name. */
function validClientName(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i)
    if (code < 33 || code > 126) return false
  }
  return true
}

/** Redis's own wording, with the command's lower-case full name (`client|setname`). */
export function wrongArity(fullName: string): Reply {
  return error(`ERR wrong number of arguments for '${fullName}' command`)
}

/** A base-10 integer as Redis's string2ll reads it, or null. */
export function parseInteger(bytes: Buffer): number | null {
  const text = bytes.toString('latin1')
  if (!/^-?(0|[1-9][0-9]{0,15})$/.test(text)) return null
  return Number(text)
}
