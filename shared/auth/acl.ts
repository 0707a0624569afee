import { createHash, timingSafeEqual } from 'node:crypto'
import { stringMatch } from './glob.js'

/**
 * Users like Redis 7's: the ACL file syntax, its rules applied in order with
 * Redis's semantics (src/acl.c, ACLSetUser and ACLSetSelector), and the
 * questions the interfaces ask of a user: may it run this command, may it
 * read or write this key. Pure: no I/O, no environment, no clock.
 */

/** Redis's command categories (ACLDefaultCommandCategories), without the `@`. */
export const ACL_CATEGORIES: readonly string[] = Object.freeze([
  'keyspace',
  'read',
  'write',
  'set',
  'sortedset',
  'list',
  'hash',
  'string',
  'bitmap',
  'hyperloglog',
  'geo',
  'stream',
  'pubsub',
  'admin',
  'fast',
  'slow',
  'blocking',
  'dangerous',
  'connection',
  'transaction',
  'scripting',
])
const CATEGORIES: ReadonlySet<string> = new Set(ACL_CATEGORIES)

/** An ACL file line, or a rule in it, that Redis would refuse too. */
export class AclError extends Error {
  override readonly name = 'AclError'
}

// Redis's wording (ACLSetUserStringError), so an operator can search for it.
const SYNTAX_ERROR = 'Syntax error'
const UNKNOWN_NAME = 'Unknown command or category name in ACL'
const KEY_AFTER_ALLKEYS =
  "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns"
const CHANNEL_AFTER_ALLCHANNELS =
  "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels"
const NO_SUCH_PASSWORD = 'The password you are trying to remove from the user does not exist'
const BAD_HASH =
  'The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters'
const FIRST_ARG_OF_SUBCOMMAND = 'Allowing first-arg of a subcommand is not supported'
const NO_SELECTORS = 'Selectors (...) are not supported by this proxy'

/**
 * A rule that cannot apply. `showRule` is false where the rule may hold a
 * password (a `<pw` that is not there, or an unknown word that may be a
 * password missing its `>`): Redis, too, names only unknown command and
 * category rules in its ACL LOAD errors, since the message goes to logs.
 */
class RuleError extends Error {
  constructor(
    readonly reason: string,
    readonly showRule: boolean,
  ) {
    super(reason)
  }
}

export type KeyMode = 'read' | 'write'

type CommandRule = Readonly<
  | { kind: 'category'; allow: boolean; name: string }
  | { kind: 'command'; allow: boolean; name: string; sub: string | undefined }
>

type KeyPattern = { readonly pattern: string; read: boolean; write: boolean }

/** A user being built by its rules; frozen into a User once they are all applied. */
type Draft = {
  enabled: boolean
  nopass: boolean
  /** SHA-256 hex digests, lowercase: never a plain password. */
  passwords: Set<string>
  /** The `+@all` / `-@all` base that later command rules adjust. */
  allCommands: boolean
  commandRules: CommandRule[]
  allKeys: boolean
  keyPatterns: KeyPattern[]
  allChannels: boolean
  channelPatterns: Set<string>
}

/** A user as ACLCreateUser makes it: off, no password, no commands, no keys. */
function newDraft(): Draft {
  return {
    enabled: false,
    nopass: false,
    passwords: new Set(),
    allCommands: false,
    commandRules: [],
    allKeys: false,
    keyPatterns: [],
    allChannels: false,
    channelPatterns: new Set(),
  }
}

export class User {
  readonly name: string
  /** `on`: the user may authenticate. */
  readonly enabled: boolean
  /** `nopass`: any password authenticates it. */
  readonly nopass: boolean
  readonly #digests: readonly Buffer[]
  readonly #allCommands: boolean
  readonly #commandRules: readonly CommandRule[]
  readonly #allKeys: boolean
  readonly #keyPatterns: readonly Readonly<KeyPattern>[]
  /**
   * Every command on every key (`+@all ~*`, the default user's rules): the
   * forwarding path then looks for no keys at all for a read.
   */
  readonly unrestricted: boolean

  /** @internal Users come from parseAclFile and createUsers. */
  constructor(name: string, draft: Draft) {
    this.name = name
    this.enabled = draft.enabled
    this.nopass = draft.nopass
    this.#digests = Object.freeze([...draft.passwords].map((hex) => Buffer.from(hex, 'hex')))
    this.#allCommands = draft.allCommands
    this.#commandRules = Object.freeze([...draft.commandRules])
    this.#allKeys = draft.allKeys
    this.#keyPatterns = Object.freeze(draft.keyPatterns.map((p) => Object.freeze({ ...p })))
    // With every rule an allow and the default allowing, no command is refused.
    this.unrestricted =
      draft.allKeys && draft.allCommands && draft.commandRules.every((rule) => rule.allow)
    Object.freeze(this)
  }

  /**
   * Whether the rules let this user run `command` (with `subcommand`, for a
   * container such as CLIENT, or the first argument a `+cmd|arg` rule names),
   * given the command's categories without the `@` as COMMAND INFO reports
   * them (a subcommand's own). Names compare case-insensitively, as in Redis.
   *
   * Redis sets one bit per command as each rule applies; here the last rule
   * that concerns the command decides, which gives the same answer without a
   * command table (the property test in acl.test.ts checks the two agree).
   * Commands Redis lets run before AUTH (AUTH, HELLO) are the caller's to
   * admit.
   */
  canRun(command: string, subcommand: string | undefined, categories: readonly string[]): boolean {
    const name = command.toLowerCase()
    const sub = subcommand?.toLowerCase()
    for (let i = this.#commandRules.length - 1; i >= 0; i--) {
      const rule = this.#commandRules[i] as CommandRule
      if (rule.kind === 'command') {
        if (rule.name === name && (rule.sub === undefined || rule.sub === sub)) return rule.allow
      } else if (categories.some((category) => category.toLowerCase() === rule.name)) {
        return rule.allow
      }
    }
    return this.#allCommands
  }

  /** Whether the key patterns admit `key` (a byte string) for reading or writing. */
  keyAccess(key: string, mode: KeyMode): boolean {
    if (this.#allKeys) return true
    for (const p of this.#keyPatterns) {
      if ((mode === 'read' ? p.read : p.write) && stringMatch(p.pattern, key)) return true
    }
    return false
  }

  /**
   * Whether `password` is one of this user's, comparing SHA-256 digests in
   * constant time. Every digest is compared, so the time reveals only how
   * many passwords the user has. Ignores `enabled`: see Users.authenticate.
   */
  acceptsPassword(password: string | Uint8Array): boolean {
    if (this.nopass) return true
    const digest = sha256(password)
    let found = false
    for (const candidate of this.#digests) {
      if (timingSafeEqual(candidate, digest)) found = true
    }
    return found
  }
}

function sha256(value: string | Uint8Array): Buffer {
  return createHash('sha256').update(value).digest()
}

const HASH = /^[0-9a-f]{64}$/

/** Redis's isspace() or NUL, refused in user names and patterns. */
const HAS_SPACE = /[\s\0]/

/** Patterns are byte strings, like the keys they match: a rule's text becomes its UTF-8 bytes. */
function toByteString(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1')
}

/** ACLSetUser: applies one rule to `draft`, or throws a RuleError leaving it in an unspecified state. */
function applyRule(draft: Draft, rule: string): void {
  if (rule === '') return
  const lower = rule.toLowerCase()
  switch (lower) {
    case 'on':
      draft.enabled = true
      return
    case 'off':
      draft.enabled = false
      return
    case 'nopass':
      draft.nopass = true
      draft.passwords.clear()
      return
    case 'resetpass':
      draft.nopass = false
      draft.passwords.clear()
      return
    case 'reset':
      // Redis: resetpass resetkeys resetchannels off sanitize-payload
      // clearselectors -@all (and allchannels only under acl-pubsub-default
      // allchannels, which Redis 7 no longer defaults to).
      for (const step of ['resetpass', 'resetkeys', 'resetchannels', 'off', '-@all']) {
        applyRule(draft, step)
      }
      return
    // RESTORE payload checks and selectors: the proxy runs no RESTORE and
    // supports no selectors, so there is nothing for these to change.
    case 'sanitize-payload':
    case 'skip-sanitize-payload':
    case 'clearselectors':
      return
    case 'allkeys':
    case '~*':
      draft.allKeys = true
      draft.keyPatterns = []
      return
    case 'resetkeys':
      draft.allKeys = false
      draft.keyPatterns = []
      return
    case 'allchannels':
    case '&*':
      draft.allChannels = true
      draft.channelPatterns.clear()
      return
    case 'resetchannels':
      draft.allChannels = false
      draft.channelPatterns.clear()
      return
    case 'allcommands':
    case '+@all':
      draft.allCommands = true
      draft.commandRules = []
      return
    case 'nocommands':
    case '-@all':
      draft.allCommands = false
      draft.commandRules = []
      return
  }
  const first = rule[0]
  const rest = rule.slice(1)
  if (first === '>' || first === '<' || first === '#' || first === '!') {
    applyPasswordRule(draft, first, rest)
  } else if (first === '~' || first === '%') {
    applyKeyRule(draft, rule)
  } else if (first === '&') {
    if (draft.allChannels) throw new RuleError(CHANNEL_AFTER_ALLCHANNELS, true)
    if (HAS_SPACE.test(rest)) throw new RuleError(SYNTAX_ERROR, true)
    draft.channelPatterns.add(rest)
  } else if (first === '(') {
    throw new RuleError(NO_SELECTORS, true)
  } else if ((first === '+' || first === '-') && rest.startsWith('@')) {
    const name = rest.slice(1).toLowerCase()
    if (!CATEGORIES.has(name)) throw new RuleError(UNKNOWN_NAME, true)
    draft.commandRules.push({ kind: 'category', allow: first === '+', name })
  } else if (first === '+' || first === '-') {
    applyCommandRule(draft, first === '+', rest.toLowerCase())
  } else {
    throw new RuleError(SYNTAX_ERROR, false)
  }
}

function applyPasswordRule(draft: Draft, op: '>' | '<' | '#' | '!', text: string): void {
  let digest: string
  if (op === '>' || op === '<') {
    digest = sha256(text).toString('hex')
  } else {
    if (!HASH.test(text)) throw new RuleError(BAD_HASH, false)
    digest = text
  }
  if (op === '>' || op === '#') {
    draft.passwords.add(digest)
    draft.nopass = false
  } else if (!draft.passwords.delete(digest)) {
    throw new RuleError(NO_SUCH_PASSWORD, false)
  }
}

/** `~pattern`, or `%R~`, `%W~`, `%RW~` (flags once each, either order, either case). */
function applyKeyRule(draft: Draft, rule: string): void {
  if (draft.allKeys) throw new RuleError(KEY_AFTER_ALLKEYS, true)
  let read = true
  let write = true
  let offset = 1
  if (rule[0] === '%') {
    read = false
    write = false
    for (;;) {
      const c = rule[offset]?.toUpperCase()
      offset++
      if (c === 'R' && !read) read = true
      else if (c === 'W' && !write) write = true
      else if (c === '~' && (read || write)) break
      // Redis takes `%R` with no `~` as an empty pattern; refused here as
      // the typo it is.
      else throw new RuleError(SYNTAX_ERROR, true)
    }
  }
  const text = rule.slice(offset)
  if (HAS_SPACE.test(text)) throw new RuleError(SYNTAX_ERROR, true)
  const pattern = toByteString(text)
  const existing = draft.keyPatterns.find((p) => p.pattern === pattern)
  if (existing === undefined) {
    draft.keyPatterns.push({ pattern, read, write })
  } else {
    existing.read ||= read
    existing.write ||= write
  }
}

/**
 * `+cmd`, `-cmd`, `+cmd|sub`, `-cmd|sub`. Redis checks the names against its
 * command table; the proxy has none of Redis's, so any name is taken, and a
 * name the proxy does not serve simply never comes up in canRun.
 */
function applyCommandRule(draft: Draft, allow: boolean, spec: string): void {
  const bar = spec.lastIndexOf('|')
  if (bar === -1) {
    if (spec === '') throw new RuleError(SYNTAX_ERROR, true)
    draft.commandRules.push({ kind: 'command', allow, name: spec, sub: undefined })
    return
  }
  const name = spec.slice(0, bar)
  const sub = spec.slice(bar + 1)
  if (name === '') throw new RuleError(UNKNOWN_NAME, true)
  // `+config|get|x`: Redis finds `config|get`, a subcommand, and refuses.
  if (name.includes('|')) {
    throw new RuleError(allow ? FIRST_ARG_OF_SUBCOMMAND : UNKNOWN_NAME, true)
  }
  if (sub === '') throw new RuleError(SYNTAX_ERROR, true)
  draft.commandRules.push({ kind: 'command', allow, name, sub })
}

/** Builds a user from rules that cannot fail (the proxy's own defaults). */
function userFrom(name: string, rules: readonly string[]): User {
  const draft = newDraft()
  for (const rule of rules) applyRule(draft, rule)
  return new User(name, draft)
}

/** Where a user came from, for the error that names it. */
type Defined = { user: User; line: number }

/**
 * Parses an ACL file: one `user <name> <rule>...` a line, rules applied in
 * order. Blank lines and lines starting with `#` are skipped (Redis itself
 * has no comments in ACL files). `source` names the file in errors, which
 * read as Redis's ACL LOAD errors: `users.acl:3: Syntax error`.
 *
 * @throws AclError for the first bad line; nothing is returned then.
 */
export function parseAclFile(text: string, source = 'ACL file'): User[] {
  return [...parseDefinitions(text, source).values()].map((d) => d.user)
}

function parseDefinitions(text: string, source: string): Map<string, Defined> {
  const users = new Map<string, Defined>()
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1
    const trimmed = (lines[i] as string).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '')
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const at = `${source}:${line}:`
    // Split on single spaces as Redis does: a doubled space is an empty rule, a no-op.
    const [keyword, name, ...rules] = trimmed.split(' ')
    if (keyword !== 'user' || name === undefined) {
      throw new AclError(`${at} should start with user keyword followed by the username`)
    }
    if (HAS_SPACE.test(name)) {
      throw new AclError(`${at} username '${name}' contains invalid characters`)
    }
    if (users.has(name)) throw new AclError(`${at} Duplicate user '${name}' found`)
    const draft = newDraft()
    rules.forEach((raw, index) => {
      const rule = raw.replace(/^[\t\r\n]+|[\t\r\n]+$/g, '')
      try {
        applyRule(draft, rule)
      } catch (err) {
        if (!(err instanceof RuleError)) throw err
        if (err.reason === UNKNOWN_NAME) {
          throw new AclError(`${at} Error in applying operation '${rule}': ${err.reason}`)
        }
        const which = err.showRule ? `'${rule}'` : `${index + 1} (not shown: it may be a password)`
        throw new AclError(`${at} ${err.reason} in rule ${which}`)
      }
    })
    users.set(name, { user: new User(name, draft), line })
  }
  return users
}

export type UsersOptions = {
  /**
   * The default user's password, as Redis's `requirepass`: the default user
   * becomes `on >password ~* &* +@all`. Unset and with no ACL file defining
   * `default`, the default user is Redis's own: `on nopass ~* &* +@all`.
   */
  defaultPassword?: string | undefined
  /** An ACL file's text and the name its errors should give it. */
  aclFile?: Readonly<{ text: string; source: string }> | undefined
}

/** The registry of users the interfaces authenticate against. */
export class Users {
  readonly #users: ReadonlyMap<string, User>
  readonly #default: User

  /** @throws TypeError when no user is named `default`. */
  constructor(users: Iterable<User>) {
    const byName = new Map<string, User>()
    for (const user of users) byName.set(user.name, user)
    const fallback = byName.get('default')
    if (fallback === undefined) throw new TypeError('Expected a user named `default`, got none')
    this.#users = byName
    this.#default = fallback
  }

  /**
   * The user `name` if it is on and `password` is one of its own, else null,
   * alike for an unknown user, a user that is off, and a wrong password. The
   * password is hashed and dropped; only digests are kept.
   */
  authenticate(name: string, password: string | Uint8Array): User | null {
    const user = this.#users.get(name)
    if (user === undefined) {
      // Hash anyway, so an unknown name costs about what a known one does.
      sha256(password)
      return null
    }
    const accepted = user.acceptsPassword(password)
    return accepted && user.enabled ? user : null
  }

  get(name: string): User | null {
    return this.#users.get(name) ?? null
  }

  defaultUser(): User {
    return this.#default
  }

  /**
   * Whether a new connection must authenticate: Redis starts every
   * connection as the default user, already authenticated when that user is
   * on and nopass.
   */
  requiresAuth(): boolean {
    return !(this.#default.enabled && this.#default.nopass)
  }
}

/**
 * The users from an ACL file, if any, and the default user: the file's when
 * it defines one, else from `defaultPassword` as Redis's requirepass, else
 * Redis's open default.
 *
 * Redis would let a file's `default` silently replace requirepass; here a
 * password and a file that defines `default` are refused together, since one
 * of the two would be ignored.
 *
 * @throws AclError for a bad file line or that conflict; TypeError for an empty password.
 */
export function createUsers(options: UsersOptions = {}): Users {
  const { defaultPassword, aclFile } = options
  // Redis reads `requirepass ""` as no password: too quiet a way to open the proxy.
  if (defaultPassword === '') {
    throw new TypeError('Expected `defaultPassword` to be a non-empty string or undefined, got ``')
  }
  const defined =
    aclFile === undefined
      ? new Map<string, Defined>()
      : parseDefinitions(aclFile.text, aclFile.source)
  const fromFile = defined.get('default')
  if (fromFile !== undefined && defaultPassword !== undefined) {
    throw new AclError(
      `${aclFile?.source}:${fromFile.line}: user 'default' is defined here and by a default password (PROXY_PASSWORD): define it in one place`,
    )
  }
  const users = [...defined.values()].map((d) => d.user)
  if (fromFile === undefined) {
    const auth = defaultPassword === undefined ? 'nopass' : `>${defaultPassword}`
    users.push(userFrom('default', ['+@all', '~*', '&*', 'on', auth]))
  }
  return new Users(users)
}
