import { bulkString, encodeStructured, error, type Structured } from '../resp/encoder.js'
import { REDIS_VERSION } from './connection.js'
import type { Command, CommandContext, Reply } from './types.js'

/**
 * Most names COMMAND INFO and COMMAND DOCS take: the proxy knows a dozen
 * commands, and a reply per name must not let one request build megabytes.
 */
const MAX_NAMES = 1024

/**
 * COMMAND over the given table: the forms redis-cli and client libraries
 * use (no argument, COUNT, LIST, INFO, DOCS), in Redis 7's reply shapes.
 */
export function commandCommand(table: () => readonly Command[]): Command {
  const self: Command = {
    name: 'command',
    arity: -1,
    flags: [],
    categories: ['slow', 'connection'],
    subcommands: new Map(
      (
        [
          ['count', 2],
          ['list', -2],
          ['info', -2],
          ['docs', -2],
          // Answered by the backend's COMMAND (forwarding); unknown to the proxy's own.
          ['getkeys', -3],
          ['getkeysandflags', -3],
          ['help', 2],
        ] as const
      ).map(([name, arity]) => [
        name,
        { name, arity, flags: [], categories: ['slow', 'connection'] },
      ]),
    ),
    keys: [0, 0, 0],
    group: 'server',
    since: '2.8.13',
    summary: 'Describes the commands the proxy answers.',
    run(ctx, args) {
      // Forwarding, the proxy serves every command the backend knows: the
      // backend's own COMMAND describes them (GETKEYS included).
      const forwarder = ctx.server.forwarder
      if (forwarder !== undefined) {
        return forwarder.forward(args, ctx.session.resp3).then(
          (parts) => parts,
          () => error('ERR backing redis unavailable (redis-proxy)'),
        )
      }
      const commands = table()
      const resp3 = ctx.session.resp3
      if (args.length === 1) return encodeStructured(commands.map(describe), resp3)
      const sub = (args[1] as Buffer).subarray(0, 16).toString('latin1').toLowerCase()
      if (args.length - 2 > MAX_NAMES) {
        return error(`ERR too many command names (at most ${MAX_NAMES})`)
      }
      const names = args.slice(2).map((arg) => arg.subarray(0, 16).toString('latin1').toLowerCase())
      // The dispatcher has found the subcommand and checked its arity.
      switch (sub) {
        case 'count':
          return encodeStructured(commands.length, resp3)
        case 'list':
          return encodeStructured(
            commands.map((command) => command.name),
            resp3,
          )
        case 'info': {
          const wanted = names.length === 0 ? commands.map((c) => c.name) : names
          return encodeStructured(
            wanted.map((name) => {
              const command = commands.find((c) => c.name === name)
              return command === undefined ? null : describe(command)
            }),
            resp3,
          )
        }
        default: {
          const docs = new Map<string, Structured>()
          for (const command of commands) {
            if (names.length === 0 || names.includes(command.name)) {
              docs.set(command.name, document(command))
            }
          }
          return encodeStructured(docs, resp3)
        }
      }
    },
  }
  return self
}

/**
 * One entry of COMMAND / COMMAND INFO, as Redis 7 shapes it: ACL categories
 * seventh and a container's subcommands, each an entry of its own, tenth.
 */
function describe(command: Command): Structured {
  const [first, last, step] = command.keys
  const subcommands = [...(command.subcommands?.values() ?? [])].map(
    (sub): Structured => [
      `${command.name}|${sub.name}`,
      sub.arity,
      sub.flags.map((flag) => ({ simple: flag })),
      0,
      0,
      0,
      categoryList(sub.categories),
      [],
      [],
      [],
    ],
  )
  return [
    command.name,
    command.arity,
    command.flags.map((flag) => ({ simple: flag })),
    first,
    last,
    step,
    categoryList(command.categories),
    [],
    [],
    subcommands,
  ]
}

function categoryList(categories: readonly string[]): Structured {
  return categories.map((category) => ({ simple: `@${category}` }))
}

function document(command: Command): Structured {
  return new Map<string, Structured>([
    ['summary', command.summary],
    ['since', command.since],
    ['group', command.group],
  ])
}

const SECTIONS = ['server', 'clients', 'stats', 'proxy'] as const

/** INFO [section ...]: the server, clients, stats and proxy sections. */
export const info: Command = {
  name: 'info',
  arity: -1,
  flags: [],
  categories: ['slow', 'dangerous'],
  keys: [0, 0, 0],
  group: 'server',
  since: '1.0.0',
  summary: 'Server, client, stats and cache figures, one `name:value` per line.',
  run(ctx, args) {
    const asked = args.slice(1).map((arg) => arg.toString('latin1').toLowerCase())
    const all =
      asked.length === 0 || asked.some((s) => s === 'all' || s === 'default' || s === 'everything')
    const forwarder = ctx.server.forwarder
    if (forwarder !== undefined) {
      // The backend's INFO, as it answers it, with the proxy's own section
      // added when asked for (by name, or by asking for everything).
      const proxy = all || asked.includes('proxy') ? renderSection('proxy', ctx) : ''
      const rest = args.slice(1).filter((arg) => arg.toString('latin1').toLowerCase() !== 'proxy')
      if (asked.length > 0 && rest.length === 0) return infoReply(proxy, ctx.session.resp3)
      return forwarder.forward([INFO, ...rest], ctx.session.resp3).then(
        (parts) => withSection(parts, proxy, ctx.session.resp3),
        () => error('ERR backing redis unavailable (redis-proxy)'),
      )
    }
    const chosen = SECTIONS.filter((section) => all || asked.includes(section))
    const text = chosen.map((section) => renderSection(section, ctx)).join('\r\n')
    return bulkString(text)
  },
}

const INFO = Buffer.from('INFO')

/** INFO's reply of `text`: a bulk string, or in RESP3 a verbatim string, as Redis answers. */
function infoReply(text: string, resp3: boolean): Reply {
  if (!resp3) return bulkString(text)
  const body = `txt:${text}`
  return Buffer.from(`=${Buffer.byteLength(body)}\r\n${body}\r\n`)
}

/** The backend's INFO reply with `section` appended; an error reply or an empty section as it is. */
function withSection(parts: Buffer[], section: string, resp3: boolean): Reply {
  if (section === '') return parts
  const reply = Buffer.concat(parts)
  const type = reply[0]
  if (type !== 0x24 && type !== 0x3d) return parts // '$' or '='
  const start = reply.indexOf('\r\n') + 2
  let text = reply.toString('utf8', start, reply.length - 2)
  if (type === 0x3d) text = text.slice(4) // 'txt:'
  return infoReply(text === '' ? section : `${text}\r\n${section}`, resp3)
}

function renderSection(section: (typeof SECTIONS)[number], ctx: CommandContext): string {
  const lines = fields(section, ctx).map(([name, value]) => `${name}:${value}\r\n`)
  const title = section === 'proxy' ? 'Proxy' : section[0]?.toUpperCase() + section.slice(1)
  return `# ${title}\r\n${lines.join('')}`
}

function fields(
  section: (typeof SECTIONS)[number],
  { server }: CommandContext,
): [string, string | number][] {
  switch (section) {
    case 'server':
      return [
        ['redis_version', REDIS_VERSION],
        ['redis_mode', 'standalone'],
        ['proxy', 'redis-proxy'],
        ['os', `${process.platform} ${process.arch}`],
        ['process_id', process.pid],
        ['tcp_port', server.port],
        ['uptime_in_seconds', Math.floor((Date.now() - server.startedAt) / 1000)],
      ]
    case 'clients':
      return [
        ['connected_clients', server.connections()],
        ['maxclients', server.maxClients],
      ]
    case 'stats':
      return [
        ['total_connections_received', server.totals.connections],
        ['total_commands_processed', server.totals.commands],
        ['rejected_connections', server.totals.rejected],
      ]
    case 'proxy': {
      const stats = server.service.stats()
      return [
        // The process that answered: with WORKERS=N each worker has its own
        // cache, so its figures are its own (the backend's INFO server section
        // names the backend's process, not this one).
        ['process_id', process.pid],
        ['backend_state', server.service.backend()],
        ['invalidation', server.service.invalidation()],
        ['cache_keys', stats.keys],
        ['cache_capacity', stats.capacity],
        ['cache_hits', stats.hits],
        ['cache_misses', stats.misses],
        ['cache_evictions', stats.evictions],
        ['cache_expirations', stats.expirations],
        ['coalesced', stats.coalesced],
        ['backend_errors', stats.backendErrors],
        ['inflight', stats.inflight],
        ['queue_depth', stats.queueDepth],
        ['invalidations', stats.invalidations],
        ['invalidation_keys', stats.reportedKeys],
        ['invalidation_keys_cached', stats.reportedCached],
        ['unstored_loads', stats.unstoredLoads],
      ]
    }
  }
}
