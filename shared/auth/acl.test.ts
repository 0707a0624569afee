import { createHash } from 'node:crypto'
import { inspect } from 'node:util'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { AclError, createUsers, parseAclFile, type User, Users } from './acl.js'

/** The one user a single ACL file line defines. */
function user(line: string): User {
  const [only] = parseAclFile(line, 'users.acl')
  if (only === undefined) throw new Error('no user on that line')
  return only
}

function errorOf(text: string): string {
  try {
    parseAclFile(text, 'users.acl')
  } catch (err) {
    expect(err).toBeInstanceOf(AclError)
    return (err as Error).message
  }
  throw new Error('expected an AclError')
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

// Categories as Redis 7's COMMAND INFO reports them.
const GET = ['read', 'string', 'fast']
const MGET = ['read', 'string', 'fast']
const SET = ['write', 'string', 'slow']
const KEYS = ['keyspace', 'read', 'slow', 'dangerous']
const FLUSHDB = ['keyspace', 'write', 'slow', 'dangerous']
const CLIENT_ID = ['slow', 'connection']
const CLIENT_KILL = ['admin', 'slow', 'dangerous', 'connection']
const SELECT = ['fast', 'connection']

describe('parseAclFile', () => {
  test("reads Redis's own tests/assets/user.acl", () => {
    const users = new Users(
      parseAclFile(
        [
          'user alice on allcommands allkeys &* >alice',
          'user bob on -@all +@set +acl ~set* &* >bob',
          'user doug on resetchannels &test +@all ~* >doug',
        ].join('\n'),
      ).concat(user('user default on nopass ~* +@all')),
    )
    const bob = users.authenticate('bob', 'bob')
    expect(bob?.name).toBe('bob')
    expect(bob?.canRun('sadd', undefined, ['write', 'set', 'fast'])).toBe(true)
    expect(bob?.canRun('get', undefined, GET)).toBe(false)
    expect(bob?.canRun('acl', 'whoami', ['slow'])).toBe(true)
    expect(bob?.keyAccess('set:1', 'write')).toBe(true)
    expect(bob?.keyAccess('other', 'read')).toBe(false)
    expect(users.authenticate('alice', 'alice')?.canRun('flushdb', undefined, FLUSHDB)).toBe(true)
    expect(users.authenticate('doug', 'doug')?.keyAccess('anything', 'write')).toBe(true)
    expect(users.authenticate('alice', 'bob')).toBeNull()
  })

  test('skips blank and # lines, still counting them for error line numbers', () => {
    const text = '\n# the cache readers\n   \nuser reader on >pw ~cache:* +@read\r\n\t\n'
    expect(parseAclFile(text).map((u) => u.name)).toEqual(['reader'])
    expect(errorOf(`${text}user bad +@nosuch`)).toMatch(/^users\.acl:6: /)
  })

  test('takes doubled spaces and stray tabs or CRs around rules as Redis does', () => {
    const reader = user('user reader  on\t >pw\r ~cache:*  +get')
    expect(reader.enabled).toBe(true)
    expect(reader.acceptsPassword('pw')).toBe(true)
    expect(reader.canRun('get', undefined, GET)).toBe(true)
  })

  const badLines: ReadonlyArray<readonly [string, string]> = [
    ['alice on', 'users.acl:1: should start with user keyword followed by the username'],
    ['user', 'users.acl:1: should start with user keyword followed by the username'],
    ['USER alice on', 'users.acl:1: should start with user keyword followed by the username'],
    ['user al\vice on', "users.acl:1: username 'al\vice' contains invalid characters"],
    [
      'user alice on +@nosuch',
      "users.acl:1: Error in applying operation '+@nosuch': Unknown command or category name in ACL",
    ],
    [
      'user alice on hunter2',
      'users.acl:1: Syntax error in rule 2 (not shown: it may be a password)',
    ],
    [
      `user alice #${sha256('x').slice(1)}`,
      'users.acl:1: The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters in rule 1 (not shown: it may be a password)',
    ],
    [
      `user alice #${sha256('x').toUpperCase()}`,
      'users.acl:1: The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters in rule 1 (not shown: it may be a password)',
    ],
    [
      'user alice >one <two',
      'users.acl:1: The password you are trying to remove from the user does not exist in rule 2 (not shown: it may be a password)',
    ],
    [
      `user alice !${sha256('two')}`,
      'users.acl:1: The password you are trying to remove from the user does not exist in rule 1 (not shown: it may be a password)',
    ],
    [
      'user alice allkeys ~foo:*',
      "users.acl:1: Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns in rule '~foo:*'",
    ],
    [
      'user alice &* &news',
      "users.acl:1: Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels in rule '&news'",
    ],
    ['user alice %X~foo', "users.acl:1: Syntax error in rule '%X~foo'"],
    ['user alice %RR~foo', "users.acl:1: Syntax error in rule '%RR~foo'"],
    ['user alice %~foo', "users.acl:1: Syntax error in rule '%~foo'"],
    ['user alice %R', "users.acl:1: Syntax error in rule '%R'"],
    ['user alice ~a\vb', "users.acl:1: Syntax error in rule '~a\vb'"],
    ['user alice +client|', "users.acl:1: Syntax error in rule '+client|'"],
    ['user alice +', "users.acl:1: Syntax error in rule '+'"],
    [
      'user alice +config|get|x',
      "users.acl:1: Allowing first-arg of a subcommand is not supported in rule '+config|get|x'",
    ],
    [
      'user alice on (~foo +get)',
      "users.acl:1: Selectors (...) are not supported by this proxy in rule '(~foo'",
    ],
    ['user alice on\nuser alice off', "users.acl:2: Duplicate user 'alice' found"],
  ]

  test.each(badLines)('refuses %j with %j', (text, message) => {
    expect(errorOf(text)).toBe(message)
  })

  test('never puts a password into an error', () => {
    const message = errorOf('user alice on >s3cret <0ther')
    expect(message).not.toContain('s3cret')
    expect(message).not.toContain('0ther')
  })
})

describe('User passwords', () => {
  test('a user with neither a password nor nopass accepts none', () => {
    const alice = user('user alice on +@all ~*')
    expect(alice.acceptsPassword('')).toBe(false)
    expect(alice.acceptsPassword('anything')).toBe(false)
  })

  test('adds and removes passwords, by text and by SHA-256', () => {
    // Redis's tests/unit/acl.tcl: this digest is the SHA-256 of "passwd4".
    const digest = '34344e4d60c2b6d639b7bd22e18f2b0b91bc34bf0ac5f9952744435093cfb4e6'
    expect(user(`user a on #${digest}`).acceptsPassword('passwd4')).toBe(true)
    expect(user(`user a on #${digest} !${digest}`).acceptsPassword('passwd4')).toBe(false)
    expect(user('user a on >one >two').acceptsPassword('one')).toBe(true)
    const both = user('user a on >one >two <one')
    expect(both.acceptsPassword('one')).toBe(false)
    expect(both.acceptsPassword('two')).toBe(true)
    expect(user(`user a on >passwd4 !${digest}`).acceptsPassword('passwd4')).toBe(false)
  })

  test('compares passwords byte for byte, as UTF-8 for text', () => {
    const a = user('user a on >pässwörd')
    expect(a.acceptsPassword('pässwörd')).toBe(true)
    expect(a.acceptsPassword(Buffer.from('pässwörd', 'utf8'))).toBe(true)
    expect(a.acceptsPassword('passwort')).toBe(false)
    expect(a.acceptsPassword('PÄSSWÖRD')).toBe(false)
  })

  const passwordRules: ReadonlyArray<readonly [string, string, boolean]> = [
    ['nopass', 'anything', true],
    ['>one nopass', 'two', true],
    ['nopass >one', 'two', false], // a password clears nopass
    ['nopass >one', 'one', true],
    ['>one resetpass', 'one', false],
    ['nopass resetpass', 'anything', false],
    ['NOPASS', 'anything', true], // keywords ignore case
  ]
  test.each(passwordRules)('after %j, %j is accepted: %s', (rules, password, expected) => {
    expect(user(`user a on ${rules}`).acceptsPassword(password)).toBe(expected)
  })
})

describe('User.keyAccess', () => {
  const reader = user('user a on %R~r:* %W~w:* %RW~rw:* ~both:* %R~x %W~x')
  const cases: ReadonlyArray<readonly [string, 'read' | 'write', boolean]> = [
    ['r:1', 'read', true],
    ['r:1', 'write', false],
    ['w:1', 'read', false],
    ['w:1', 'write', true],
    ['rw:1', 'read', true],
    ['rw:1', 'write', true],
    ['both:1', 'write', true],
    ['x', 'read', true], // the same pattern twice merges its flags
    ['x', 'write', true],
    ['other', 'read', false],
  ]
  test.each(cases)('%j for %s: %s', (key, mode, expected) => {
    expect(reader.keyAccess(key, mode)).toBe(expected)
  })

  test('allkeys and ~* admit every key, even the empty one; resetkeys admits none', () => {
    expect(user('user a ~foo allkeys').keyAccess('', 'write')).toBe(true)
    expect(user('user a ~foo ~*').keyAccess('bar', 'write')).toBe(true)
    expect(user('user a allkeys resetkeys').keyAccess('bar', 'read')).toBe(false)
    expect(user('user a').keyAccess('bar', 'read')).toBe(false)
  })

  test('%R~* is a pattern, not allkeys: it admits reads only', () => {
    const a = user('user a %R~* ~other')
    expect(a.keyAccess('k', 'read')).toBe(true)
    expect(a.keyAccess('k', 'write')).toBe(false)
  })

  test('matches binary keys, and UTF-8 patterns against the bytes of UTF-8 keys', () => {
    expect(user('user a ~a?b').keyAccess('a\x00b', 'read')).toBe(true)
    expect(user('user a ~\\*').keyAccess('*', 'read')).toBe(true)
    expect(user('user a ~\\*').keyAccess('x', 'read')).toBe(false)
    const cafe = user('user a ~café:*')
    expect(cafe.keyAccess(Buffer.from('café:1', 'utf8').toString('latin1'), 'read')).toBe(true)
    expect(cafe.keyAccess('café:1', 'read')).toBe(false) // é as one byte is not its UTF-8
  })
})

describe('User.canRun', () => {
  const cases: ReadonlyArray<
    readonly [string, string, string | undefined, readonly string[], boolean]
  > = [
    ['', 'get', undefined, GET, false], // a new user runs nothing
    ['+@all -@dangerous +flushdb', 'flushdb', undefined, FLUSHDB, true],
    ['+@all -@dangerous +flushdb', 'keys', undefined, KEYS, false],
    ['+@all -@dangerous +flushdb', 'get', undefined, GET, true],
    ['-@all +@read -get', 'get', undefined, GET, false],
    ['-@all +@read -get', 'mget', undefined, MGET, true],
    ['-get +@read', 'get', undefined, GET, true],
    ['+get -@all', 'get', undefined, GET, false],
    ['allcommands', 'set', undefined, SET, true],
    ['allcommands nocommands', 'set', undefined, SET, false],
    ['+GET', 'get', undefined, GET, true],
    ['+get', 'GET', undefined, GET, true],
    ['+@READ', 'get', undefined, GET, true],
    ['+@read', 'get', undefined, ['READ'], true],
    ['+client|id', 'client', 'id', CLIENT_ID, true],
    ['+client|id', 'client', 'kill', CLIENT_KILL, false],
    ['+client|id', 'client', undefined, [], false],
    ['+client -client|kill', 'client', 'id', CLIENT_ID, true],
    ['+client -client|kill', 'client', 'KILL', CLIENT_KILL, false],
    ['+@all -@dangerous', 'client', 'kill', CLIENT_KILL, false],
    ['+@all -@dangerous', 'client', 'id', CLIENT_ID, true],
    ['+select|0', 'select', '0', SELECT, true],
    ['+select|0', 'select', '1', SELECT, false],
    ['+select|0 -select', 'select', '0', SELECT, false],
    ['+@all reset', 'get', undefined, GET, false],
  ]
  test.each(cases)(
    'after %j, %s %s is allowed: %s',
    (rules, command, sub, categories, expected) => {
      expect(user(`user a on ${rules}`).canRun(command, sub, categories)).toBe(expected)
    },
  )

  test('agrees with the command bitmap Redis keeps, for any sequence of rules', () => {
    // Redis's model (ACLChangeSelectorPerm, ACLSetSelectorCommandBitsForCategory,
    // allowed_firstargs): one bit per command and subcommand, set or cleared as
    // each rule applies, over a small command table.
    type Command = { name: string; categories: string[]; subs?: Command[] }
    const table: Command[] = [
      { name: 'get', categories: GET },
      { name: 'set', categories: SET },
      { name: 'keys', categories: KEYS },
      { name: 'select', categories: SELECT },
      {
        name: 'client',
        categories: [],
        subs: [
          { name: 'id', categories: CLIENT_ID },
          { name: 'kill', categories: CLIENT_KILL },
        ],
      },
    ]
    const rules = fc.constantFrom(
      ...['+@all', '-@all', '+@read', '-@read', '+@fast', '-@fast', '+@dangerous', '-@dangerous'],
      ...['+@connection', '-@connection', '+@slow', '-@slow'],
      ...['+get', '-get', '+set', '-set', '+keys', '-keys', '+select', '-select', '+select|0'],
      ...['+client', '-client', '+client|id', '-client|id', '+client|kill', '-client|kill'],
    )
    const model = (sequence: readonly string[]) => {
      const bits = new Set<string>()
      const firstArgs = new Map<string, Set<string>>()
      const change = (cmd: Command, allow: boolean) => {
        const set = (id: string) => (allow ? bits.add(id) : bits.delete(id))
        set(cmd.name)
        firstArgs.delete(cmd.name)
        for (const sub of cmd.subs ?? []) set(`${cmd.name}|${sub.name}`)
      }
      for (const rule of sequence) {
        const allow = rule[0] === '+'
        const body = rule.slice(1)
        if (body === '@all') {
          bits.clear()
          firstArgs.clear()
          if (allow) for (const c of table) change(c, true)
        } else if (body.startsWith('@')) {
          const category = body.slice(1)
          for (const c of table) {
            if (c.categories.includes(category)) change(c, allow)
            for (const sub of c.subs ?? []) {
              if (sub.categories.includes(category))
                change({ ...sub, name: `${c.name}|${sub.name}` }, allow)
            }
          }
        } else if (body === 'select|0') {
          firstArgs.set('select', new Set([...(firstArgs.get('select') ?? []), '0']))
        } else if (body.includes('|')) {
          if (allow) bits.add(body)
          else bits.delete(body)
        } else {
          change(table.find((c) => c.name === body) as Command, allow)
        }
      }
      return (command: string, sub: string | undefined) => {
        const id = sub !== undefined && command === 'client' ? `${command}|${sub}` : command
        return bits.has(id) || (sub !== undefined && (firstArgs.get(command)?.has(sub) ?? false))
      }
    }
    const probes: ReadonlyArray<readonly [string, string | undefined, readonly string[]]> = [
      ['get', undefined, GET],
      ['set', undefined, SET],
      ['keys', undefined, KEYS],
      ['select', '0', SELECT],
      ['select', '1', SELECT],
      ['client', 'id', CLIENT_ID],
      ['client', 'kill', CLIENT_KILL],
    ]
    fc.assert(
      fc.property(fc.array(rules, { maxLength: 12 }), (sequence) => {
        const expected = model(sequence)
        const actual = user(`user a on ${sequence.join(' ')}`)
        for (const [command, sub, categories] of probes) {
          expect(actual.canRun(command, sub, categories)).toBe(expected(command, sub))
        }
      }),
      { numRuns: 2000 },
    )
  })
})

describe('createUsers', () => {
  test("with no password and no file, the default user is Redis's: on, nopass, everything", () => {
    const users = createUsers()
    expect(users.requiresAuth()).toBe(false)
    expect(users.authenticate('default', 'whatever')).toBe(users.defaultUser())
    expect(users.defaultUser().canRun('flushdb', undefined, FLUSHDB)).toBe(true)
    expect(users.defaultUser().keyAccess('any', 'write')).toBe(true)
  })

  test('a default password works as requirepass', () => {
    const users = createUsers({ defaultPassword: 's3cret' })
    expect(users.requiresAuth()).toBe(true)
    expect(users.authenticate('default', 's3cret')).toBe(users.defaultUser())
    expect(users.authenticate('default', Buffer.from('s3cret'))).toBe(users.defaultUser())
    expect(users.authenticate('default', 'wrong')).toBeNull()
    expect(users.defaultUser().canRun('get', undefined, GET)).toBe(true)
    expect(users.defaultUser().keyAccess('any', 'write')).toBe(true)
  })

  test('keeps no plain password anywhere it could be printed', () => {
    const users = createUsers({
      defaultPassword: 's3cret',
      aclFile: { text: 'user alice on >hunter2 ~*', source: 'users.acl' },
    })
    const shown = inspect(users, { depth: 10, showHidden: true })
    expect(shown).not.toContain('s3cret')
    expect(inspect(users.get('alice'), { depth: 10, showHidden: true })).not.toContain('hunter2')
    expect(JSON.stringify(users.get('alice'))).not.toContain('hunter2')
  })

  test('an ACL file may redefine the default user', () => {
    const users = createUsers({
      aclFile: { text: 'user default on >pw ~cache:* +@read', source: 'users.acl' },
    })
    expect(users.requiresAuth()).toBe(true)
    expect(users.authenticate('default', 'pw')?.keyAccess('cache:1', 'read')).toBe(true)
    expect(users.defaultUser().canRun('set', undefined, SET)).toBe(false)
  })

  test('a default user that is off, or nopass but off, requires authentication', () => {
    const text = 'user default off nopass +@all ~*'
    expect(createUsers({ aclFile: { text, source: 'users.acl' } }).requiresAuth()).toBe(true)
  })

  test('a file without a default user keeps the password for it', () => {
    const users = createUsers({
      defaultPassword: 'pw',
      aclFile: { text: 'user alice on >a ~* +get', source: 'users.acl' },
    })
    expect(users.requiresAuth()).toBe(true)
    expect(users.authenticate('default', 'pw')).toBe(users.defaultUser())
    expect(users.authenticate('alice', 'a')?.name).toBe('alice')
  })

  test('refuses a password and a file that both define the default user', () => {
    expect(() =>
      createUsers({
        defaultPassword: 'pw',
        aclFile: { text: '\nuser default on >x ~*', source: 'users.acl' },
      }),
    ).toThrow(
      new AclError(
        "users.acl:2: user 'default' is defined here and by a default password (PROXY_PASSWORD): define it in one place",
      ),
    )
  })

  test('refuses an empty default password instead of reading it as no password', () => {
    expect(() => createUsers({ defaultPassword: '' })).toThrow(TypeError)
  })

  test('authenticates no unknown user and no user that is off', () => {
    const users = createUsers({
      aclFile: { text: 'user bob off >pw ~* +@all\nuser eve on nopass', source: 'users.acl' },
    })
    expect(users.authenticate('bob', 'pw')).toBeNull()
    expect(users.authenticate('nobody', 'pw')).toBeNull()
    expect(users.authenticate('eve', 'anything')?.name).toBe('eve')
    expect(users.get('nobody')).toBeNull()
    expect(users.get('bob')?.enabled).toBe(false)
  })

  test('user names are case-sensitive, as in Redis', () => {
    const users = createUsers({ aclFile: { text: 'user Bob on >pw', source: 'users.acl' } })
    expect(users.authenticate('bob', 'pw')).toBeNull()
    expect(users.authenticate('Bob', 'pw')?.name).toBe('Bob')
  })
})
