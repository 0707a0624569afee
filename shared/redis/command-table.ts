import type { Reply } from './reply-decoder.js'

/**
 * Redis's command table as the backend itself describes it (`COMMAND`, Redis
 * 7 key specs included), so the proxy knows every command the backend knows,
 * with its arity, flags, ACL categories and which arguments are keys, and a
 * new Redis version needs no change here.
 */

/** Where a key spec's keys start (Redis 7 `begin_search`). */
export type BeginSearch =
  | { readonly type: 'index'; readonly index: number }
  | { readonly type: 'keyword'; readonly keyword: string; readonly startFrom: number }
  | { readonly type: 'unknown' }

/** How many keys follow, and how far apart (Redis 7 `find_keys`). */
export type FindKeys =
  | {
      readonly type: 'range'
      readonly lastKey: number
      readonly keyStep: number
      readonly limit: number
    }
  | {
      readonly type: 'keynum'
      readonly keyNumIdx: number
      readonly firstKey: number
      readonly keyStep: number
    }
  | { readonly type: 'unknown' }

export type KeySpec = {
  /** RW, RO, OW, RM, access, update, insert, delete, not_key, incomplete, variable_flags... */
  readonly flags: ReadonlySet<string>
  // The flags keyPositions tests for every command whose keys it walks
  // (MSET, DEL), read from `flags` once when the table is read.
  /** `not_key`: the arguments it names are not keys (skipped, as Redis does). */
  readonly notKey: boolean
  /** `RO`: its keys are only read. */
  readonly ro: boolean
  /** `incomplete`: it may not find every key; every argument is then taken for one. */
  readonly incomplete: boolean
  readonly begin: BeginSearch
  readonly find: FindKeys
}

export type CommandSpec = {
  /** Lower case, as COMMAND reports it; a subcommand is `container|sub`. */
  readonly name: string
  /** Positive: exactly that many arguments with the name; negative: at least -arity. */
  readonly arity: number
  readonly flags: ReadonlySet<string>
  /** ACL categories without the `@`. */
  readonly categories: readonly string[]
  readonly keySpecs: readonly KeySpec[]
  /** By subcommand name in lower case (`config|get` under `get`). */
  readonly subcommands: ReadonlyMap<string, CommandSpec>
  /**
   * `flags` the forwarding path tests for every command, read once here:
   * a lookup in the set per test was 1.7% of the sidecar's samples under
   * pipelined SETs.
   */
  readonly isWrite: boolean
  readonly isReadonly: boolean
  readonly isBlocking: boolean
  /** keyPositions' answer when the keys sit at fixed positions (see fixedPositions), else null. */
  readonly fixedKeys: FixedKeys | null
}

/** Key positions that hold for any call with at least `needs` arguments. */
export type FixedKeys = { readonly keys: KeyPositions; readonly needs: number }

/**
 * Which arguments are keys, and whether each is written (`writes[i]` for
 * `positions[i]`; a spec flagged RO only reads). `exact` is false when Redis
 * itself would need more than the specs.
 */
export type KeyPositions = {
  readonly positions: readonly number[]
  readonly writes: readonly boolean[]
  readonly exact: boolean
}

const NO_KEYS: KeyPositions = Object.freeze({
  positions: Object.freeze([]),
  writes: Object.freeze([]),
  exact: true,
})

/**
 * A command name of up to 6 bytes as one number, upper case folded to lower
 * (A-Z only, as Redis compares names): the lookup of every command, without
 * a string made of its name and lowered. -1 for a longer name.
 */
export function nameCode(bytes: Uint8Array): number {
  const length = bytes.length
  if (length > 6) return -1
  let code = length
  for (let i = 0; i < length; i++) {
    const byte = bytes[i] as number
    code = code * 256 + (byte >= 65 && byte <= 90 ? byte + 32 : byte)
  }
  return code
}

export class CommandTable {
  readonly #commands: ReadonlyMap<string, CommandSpec>
  /** The commands with names of up to 6 bytes, by nameCode. */
  readonly #short = new Map<number, CommandSpec>()

  constructor(commands: Iterable<CommandSpec>) {
    this.#commands = new Map([...commands].map((command) => [command.name, command]))
    for (const [name, command] of this.#commands) {
      const code = nameCode(Buffer.from(name, 'latin1'))
      if (code >= 0) this.#short.set(code, command)
    }
  }

  /** The table from the reply to `COMMAND` (RESP2 or RESP3: maps arrive flattened). */
  static fromReply(reply: Reply): CommandTable {
    if (!Array.isArray(reply)) throw new TypeError('COMMAND did not answer an array')
    return new CommandTable(reply.map((entry) => parseCommand(entry)))
  }

  get size(): number {
    return this.#commands.size
  }

  /**
   * The spec for a command as a client sent it: the subcommand's when the
   * command has subcommands and the second argument names one. Undefined for
   * a command the backend does not know.
   */
  lookup(args: readonly Uint8Array[]): CommandSpec | undefined {
    const name = args[0]
    if (name === undefined || name.length > 64) return undefined
    const code = nameCode(name)
    const command = code >= 0 ? this.#short.get(code) : this.#commands.get(lower(name))
    if (command === undefined || command.subcommands.size === 0) return command
    const sub = args[1]
    if (sub === undefined || sub.length > 64) return command
    return command.subcommands.get(lower(sub)) ?? command
  }
}

/**
 * The positions of the keys in `args` by the command's key specs, as Redis's
 * getKeysUsingKeySpecs finds them. Where a spec cannot say (`unknown`, an
 * `incomplete` spec, a bad key count) the answer is not exact: every
 * argument after the name is then returned, a superset a caller can evict
 * without missing a key. Specs marked not_key are skipped, as Redis does.
 */
export function keyPositions(command: CommandSpec, args: readonly Uint8Array[]): KeyPositions {
  if (command.keySpecs.length === 0) return NO_KEYS
  const fixed = command.fixedKeys
  if (fixed !== null && args.length >= fixed.needs) return fixed.keys
  return keyPositionsBySpecs(command, args)
}

/**
 * Commands whose keys sit at the same positions whatever the arguments
 * (every spec an `index` begin and a `range` with a fixed last key: GET,
 * SET, INCR, LPUSH, RENAME...): their answer, made once when the table is
 * read, for any call with at least `needs` arguments. The forwarding path
 * asks for every command's keys; this spares it two arrays and an object
 * per command.
 */
function fixedPositions(keySpecs: readonly KeySpec[]): FixedKeys | null {
  if (keySpecs.length === 0) return null
  const positions: number[] = []
  const writes: boolean[] = []
  let needs = 0
  for (const spec of keySpecs) {
    if (spec.notKey) continue
    const { begin, find } = spec
    if (begin.type !== 'index' || find.type !== 'range' || spec.incomplete) {
      return null
    }
    if (find.lastKey < 0 || find.keyStep < 1) return null
    const last = begin.index + find.lastKey
    for (let i = begin.index; i <= last; i += find.keyStep) {
      positions.push(i)
      writes.push(!spec.ro)
    }
    needs = Math.max(needs, last + 1)
  }
  // Shared by every call: read-only by type. The arrays are not frozen: V8
  // iterates a frozen array with for-of through an iterator object per step.
  return { keys: Object.freeze({ positions, writes, exact: true }), needs }
}

/** keyPositions by walking the specs for these arguments (see keyPositions). */
export function keyPositionsBySpecs(
  command: CommandSpec,
  args: readonly Uint8Array[],
): KeyPositions {
  if (command.keySpecs.length === 0) return NO_KEYS
  const argc = args.length
  const found: number[] = []
  const writes: boolean[] = []
  for (const spec of command.keySpecs) {
    if (spec.notKey) continue
    const write = !spec.ro
    const first = beginning(spec.begin, args)
    if (first === undefined) return everyArgument(command, argc)
    if (first === 0) continue // keyword absent: this spec names no key here
    let last: number
    let step: number
    const find = spec.find
    if (find.type === 'range') {
      step = find.keyStep
      if (find.lastKey >= 0) last = first + find.lastKey
      else if (find.limit === 0) last = argc + find.lastKey
      else last = first + (Math.trunc((argc - first) / find.limit) + find.lastKey)
    } else if (find.type === 'keynum') {
      step = find.keyStep
      const at = first + find.keyNumIdx
      const count = at < argc ? integerArg(args[at] as Uint8Array) : undefined
      if (count === undefined || count < 0) return everyArgument(command, argc)
      const start = first + find.firstKey
      last = start + count - 1
      if (count === 0) continue
      if (last >= argc || start >= argc) return everyArgument(command, argc)
      for (let i = start; i <= last; i += step) {
        found.push(i)
        writes.push(write)
      }
      if (spec.incomplete) return everyArgument(command, argc)
      continue
    } else {
      return everyArgument(command, argc)
    }
    if (last >= argc || last < first || first >= argc) {
      // Redis reports a syntax error for these; no key is touched then, but
      // a conservative answer costs nothing.
      return everyArgument(command, argc)
    }
    for (let i = first; i <= last; i += step) {
      found.push(i)
      writes.push(write)
    }
    if (spec.incomplete) return everyArgument(command, argc)
  }
  return { positions: found, writes, exact: true }
}

/** The first key's position, 0 when the keyword is absent, undefined when unknown. */
function beginning(begin: BeginSearch, args: readonly Uint8Array[]): number | undefined {
  if (begin.type === 'index') return begin.index
  if (begin.type === 'unknown') return undefined
  const argc = args.length
  const from = begin.startFrom > 0 ? begin.startFrom : argc + begin.startFrom
  const to = begin.startFrom > 0 ? argc - 1 : 1
  const keyword = begin.keyword.toLowerCase()
  for (let i = from; i !== to; i = from <= to ? i + 1 : i - 1) {
    if (i >= argc || i < 1) break
    const arg = args[i] as Uint8Array
    if (arg.length === keyword.length && lower(arg) === keyword) return i + 1
  }
  // As Redis's loop: the end index itself is never looked at.
  return 0
}

/** Every argument after the name, as written when the command writes at all. */
function everyArgument(command: CommandSpec, argc: number): KeyPositions {
  const write = command.isWrite
  const positions: number[] = []
  const writes: boolean[] = []
  for (let i = 1; i < argc; i++) {
    positions.push(i)
    writes.push(write)
  }
  return { positions, writes, exact: false }
}

function integerArg(arg: Uint8Array): number | undefined {
  const text = Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength).toString('latin1')
  return /^-?\d{1,15}$/.test(text) ? Number(text) : undefined
}

function lower(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString('latin1')
    .toLowerCase()
}

function text(reply: Reply | undefined): string {
  if (Buffer.isBuffer(reply)) return reply.toString('latin1')
  if (typeof reply === 'string') return reply
  if (typeof reply === 'number') return String(reply)
  throw new TypeError(`COMMAND: expected a string, got ${String(reply)}`)
}

function int(reply: Reply | undefined): number {
  if (typeof reply === 'number') return reply
  const value = Number(text(reply))
  if (!Number.isInteger(value)) throw new TypeError(`COMMAND: expected an integer, got ${value}`)
  return value
}

function list(reply: Reply | undefined): Reply[] {
  if (reply === null || reply === undefined) return []
  if (!Array.isArray(reply)) throw new TypeError('COMMAND: expected an array')
  return reply
}

/** A map as COMMAND sends it (RESP3 map, or RESP2 flat array): name -> value. */
function fields(reply: Reply | undefined): Map<string, Reply> {
  const items = list(reply)
  const out = new Map<string, Reply>()
  for (let i = 0; i + 1 < items.length; i += 2) out.set(text(items[i]), items[i + 1] as Reply)
  return out
}

function parseCommand(entry: Reply): CommandSpec {
  const items = list(entry)
  const name = text(items[0]).toLowerCase()
  const subcommands = new Map<string, CommandSpec>()
  for (const sub of list(items[9])) {
    const spec = parseCommand(sub)
    subcommands.set(spec.name.slice(spec.name.indexOf('|') + 1), spec)
  }
  const flags = new Set(list(items[2]).map((f) => text(f).toLowerCase()))
  const keySpecs = list(items[8]).map(parseKeySpec)
  return {
    name,
    arity: int(items[1]),
    flags,
    categories: list(items[6]).map((c) => text(c).replace(/^@/, '')),
    keySpecs,
    subcommands,
    isWrite: flags.has('write'),
    isReadonly: flags.has('readonly'),
    isBlocking: flags.has('blocking'),
    fixedKeys: fixedPositions(keySpecs),
  }
}

function parseKeySpec(reply: Reply): KeySpec {
  const spec = fields(reply)
  const begin = fields(spec.get('begin_search'))
  const find = fields(spec.get('find_keys'))
  const bs = fields(begin.get('spec'))
  const fk = fields(find.get('spec'))
  const beginType = text(begin.get('type'))
  const findType = text(find.get('type'))
  const flags = new Set(list(spec.get('flags')).map((f) => text(f).toLowerCase()))
  return {
    flags,
    notKey: flags.has('not_key'),
    ro: flags.has('ro'),
    incomplete: flags.has('incomplete'),
    begin:
      beginType === 'index'
        ? { type: 'index', index: int(bs.get('index')) }
        : beginType === 'keyword'
          ? {
              type: 'keyword',
              keyword: text(bs.get('keyword')),
              startFrom: int(bs.get('startfrom')),
            }
          : { type: 'unknown' },
    find:
      findType === 'range'
        ? {
            type: 'range',
            lastKey: int(fk.get('lastkey')),
            keyStep: int(fk.get('keystep')),
            limit: int(fk.get('limit')),
          }
        : findType === 'keynum'
          ? {
              type: 'keynum',
              keyNumIdx: int(fk.get('keynumidx')),
              firstKey: int(fk.get('firstkey')),
              keyStep: int(fk.get('keystep')),
            }
          : { type: 'unknown' },
  }
}
