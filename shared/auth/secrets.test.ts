import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { ConfigError } from '../config.js'
import { readTextFile } from './read-file-node.js'
import { loadUsers, type ReadTextFile, readAuthSettings, readSecret } from './secrets.js'

/** A reader over an in-memory set of files; a missing one fails as Node's does. */
function files(contents: Record<string, string>): ReadTextFile {
  return (path) => {
    const text = contents[path]
    if (text === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`)
    return text
  }
}

function configError(run: () => unknown): string {
  try {
    run()
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as Error).message
  }
  throw new Error('expected a ConfigError')
}

describe('readSecret', () => {
  const reader = files({ '/run/secrets/pw': 's3cret\n', '/crlf': 's3cret\r\n', '/two': 'a\n\n' })

  test('reads the variable, or the file its _FILE twin names, or nothing', () => {
    expect(readSecret({ PROXY_PASSWORD: 'pw' }, 'PROXY_PASSWORD', reader)).toBe('pw')
    const fromFile = { PROXY_PASSWORD_FILE: '/run/secrets/pw' }
    expect(readSecret(fromFile, 'PROXY_PASSWORD', reader)).toBe('s3cret')
    expect(readSecret({}, 'PROXY_PASSWORD', reader)).toBeUndefined()
    expect(readSecret({ PROXY_PASSWORD: '' }, 'PROXY_PASSWORD', reader)).toBeUndefined()
  })

  test('strips exactly one trailing newline, LF or CRLF', () => {
    expect(readSecret({ PROXY_PASSWORD_FILE: '/crlf' }, 'PROXY_PASSWORD', reader)).toBe('s3cret')
    expect(readSecret({ PROXY_PASSWORD_FILE: '/two' }, 'PROXY_PASSWORD', reader)).toBe('a\n')
  })

  test('an empty variable beside its _FILE twin is not a conflict', () => {
    const env = { PROXY_PASSWORD: '', PROXY_PASSWORD_FILE: '/run/secrets/pw' }
    expect(readSecret(env, 'PROXY_PASSWORD', reader)).toBe('s3cret')
  })

  const failures: ReadonlyArray<
    readonly [Record<string, string>, ReadTextFile | undefined, string]
  > = [
    [
      { PROXY_PASSWORD: 'pw', PROXY_PASSWORD_FILE: '/run/secrets/pw' },
      reader,
      'Invalid PROXY_PASSWORD_FILE="/run/secrets/pw": PROXY_PASSWORD is set too; set one or the other',
    ],
    [
      { PROXY_PASSWORD_FILE: '/missing' },
      reader,
      'Invalid PROXY_PASSWORD_FILE="/missing": cannot read it: ENOENT: no such file or directory, open \'/missing\'',
    ],
    [
      { PROXY_PASSWORD_FILE: '/run/secrets/pw' },
      undefined,
      'Invalid PROXY_PASSWORD_FILE="/run/secrets/pw": this runtime has no filesystem',
    ],
    [
      { PROXY_PASSWORD_FILE: '/empty' },
      files({ '/empty': '\n' }),
      'Invalid PROXY_PASSWORD_FILE="/empty": the file is empty',
    ],
    [
      { PROXY_PASSWORD_FILE: '/odd' },
      () => {
        throw new Error('first\nsecond')
      },
      'Invalid PROXY_PASSWORD_FILE="/odd": cannot read it: first second',
    ],
  ]
  test.each(failures)('for %j refuses with %j', (env, readFile, message) => {
    expect(configError(() => readSecret(env, 'PROXY_PASSWORD', readFile))).toBe(message)
  })

  test('never shows the secret in a message', () => {
    const env = { PROXY_PASSWORD: 'hunter2', PROXY_PASSWORD_FILE: '/run/secrets/pw' }
    expect(configError(() => readSecret(env, 'PROXY_PASSWORD', reader))).not.toContain('hunter2')
  })
})

describe('readAuthSettings', () => {
  test('reads the ACL file through the port, naming it by its path', () => {
    const reader = files({ '/etc/users.acl': 'user alice on >a ~*\n' })
    expect(readAuthSettings({ PROXY_ACL_FILE: '/etc/users.acl' }, reader)).toEqual({
      password: undefined,
      aclFile: {
        text: 'user alice on >a ~*\n',
        source: '/etc/users.acl',
        variable: 'PROXY_ACL_FILE',
      },
    })
    expect(
      configError(() => readAuthSettings({ PROXY_ACL_FILE: '/etc/users.acl' }, undefined)),
    ).toBe('Invalid PROXY_ACL_FILE="/etc/users.acl": this runtime has no filesystem')
  })

  test('takes the same text inline from PROXY_ACL, where there is no filesystem', () => {
    expect(readAuthSettings({ PROXY_ACL: 'user alice on >a ~*' }, undefined).aclFile).toEqual({
      text: 'user alice on >a ~*',
      source: 'PROXY_ACL',
      variable: 'PROXY_ACL',
    })
  })

  test('refuses PROXY_ACL beside PROXY_ACL_FILE, without showing the inline text', () => {
    const reader = files({ '/acl': 'user alice on >a ~*\n' })
    const message = configError(() =>
      readAuthSettings({ PROXY_ACL_FILE: '/acl', PROXY_ACL: 'user bob on >secretpw' }, reader),
    )
    expect(message).toBe(
      'Invalid PROXY_ACL_FILE="/acl": PROXY_ACL is set too; set one or the other',
    )
  })
})

describe('loadUsers', () => {
  test('builds the users, with the password for the default user', () => {
    const reader = files({ '/acl': 'user alice on >a ~cache:* +@read\n', '/pw': 'pw\n' })
    const users = loadUsers({ PROXY_ACL_FILE: '/acl', PROXY_PASSWORD_FILE: '/pw' }, reader)
    expect(users.requiresAuth()).toBe(true)
    expect(users.authenticate('default', 'pw')).toBe(users.defaultUser())
    expect(users.authenticate('alice', 'a')?.keyAccess('cache:1', 'read')).toBe(true)
  })

  test('with nothing set, every connection starts authenticated, as Redis', () => {
    expect(loadUsers({}, undefined).requiresAuth()).toBe(false)
  })

  test('a bad ACL line is one ConfigError naming the variable, the file and the line', () => {
    const reader = files({ '/acl': 'user alice on\nuser bob +@nosuch\n' })
    expect(configError(() => loadUsers({ PROXY_ACL_FILE: '/acl' }, reader))).toBe(
      "Invalid PROXY_ACL_FILE: /acl:2: Error in applying operation '+@nosuch': Unknown command or category name in ACL",
    )
  })

  test('a bad inline ACL line names PROXY_ACL and its line', () => {
    expect(
      configError(() => loadUsers({ PROXY_ACL: 'user alice on\nuser bob +@nosuch' }, undefined)),
    ).toBe(
      "Invalid PROXY_ACL: PROXY_ACL:2: Error in applying operation '+@nosuch': Unknown command or category name in ACL",
    )
  })

  test('refuses a password beside an ACL file that defines the default user', () => {
    const reader = files({ '/acl': 'user default on nopass ~* +@all\n' })
    const message = configError(() =>
      loadUsers({ PROXY_ACL_FILE: '/acl', PROXY_PASSWORD: 'pw' }, reader),
    )
    expect(message).toMatch(/^Invalid PROXY_ACL_FILE: \/acl:1: user 'default' is defined here/)
  })
})

describe('readTextFile', () => {
  test('reads a file from disk as UTF-8, and throws for one that is not there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-auth-'))
    const path = join(dir, 'pw')
    writeFileSync(path, 'pässwörd\n')
    expect(readSecret({ PROXY_PASSWORD_FILE: path }, 'PROXY_PASSWORD', readTextFile)).toBe(
      'pässwörd',
    )
    expect(() => readTextFile(join(dir, 'missing'))).toThrow(/ENOENT/)
  })
})
