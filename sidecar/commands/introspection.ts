import { bulkString, encodeStructured, error, type Structured } from '../resp/encoder.js'
import { REDIS_VERSION } from './connection.js'
import type { Command, CommandContext } from './types.js'

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
    const chosen = SECTIONS.filter((section) => all || asked.includes(section))
    const text = chosen.map((section) => renderSection(section, ctx)).join('\r\n')
    return bulkString(text)
  },
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
        ['unstored_loads', stats.unstoredLoads],
      ]
    }
  }
}
