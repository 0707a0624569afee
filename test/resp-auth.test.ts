import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { createClient } from 'redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUsers } from '../shared/auth/acl.js'
import { AuthFailureLimiter } from '../shared/auth/failures.js'
import { type AuthClient, AuthGate, type AuthRefusal } from '../shared/auth/gate.js'
import { silentLogger } from '../shared/log.js'
import { startRespProxy, type TestRespProxy } from './harness/proxy.js'
import { backendGetCount, startRedis, type TestRedis } from './harness/redis-server.js'
import { command, rawConnect } from './harness/resp-client.js'

const run = promisify(execFile)

/**
 * One ACL file for the proxy and for a reference redis-server 7.0, so their
 * replies can be compared byte for byte. No blank or comment lines: Redis
 * refuses them.
 */
const ACL = [
  'user default on >default-pw ~* &* +@all',
  'user alice on >alice-pw ~* &* +@all',
  'user reader on >reader-pw ~cache:* +@read',
  'user noget on >noget-pw ~* &* +@all -get',
  'user banned off >banned-pw ~* &* +@all',
  'user sel on >sel-pw ~* -@all +select|0 +client|id +acl|whoami',
].join('\n')

const DATA: [string, string][] = [
  ['cache:1', 'one'],
  ['cache:2', 'two'],
  ['other', 'three'],
  ['other:2', 'four'],
]

/** A gate over the ACL file whose limiter lets the many wrong passwords below through. */
function aclGate(limiter = new AuthFailureLimiter({ maxFailures: 10_000 })): AuthGate {
  const users = createUsers({ aclFile: { text: ACL, source: 'test.acl' } })
  return new AuthGate({ users, log: silentLogger, limiter })
}

let backend: TestRedis
let reference: TestRedis
let proxy: TestRespProxy
let dir: string

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'resp-auth-'))
  const aclFile = join(dir, 'users.acl')
  // The harness knows Redis is up by an unauthenticated PING: start with an
  // open default user, then load the real file.
  writeFileSync(aclFile, 'user default on nopass ~* &* +@all\n')
  ;[backend, reference] = await Promise.all([startRedis(), startRedis(['--aclfile', aclFile])])
  for (const [key, value] of DATA) {
    await backend.command('SET', key, value)
    await reference.command('SET', key, value)
  }
  writeFileSync(aclFile, `${ACL}\n`)
  expect(await reference.command('ACL', 'LOAD')).toBe('OK')
  proxy = await startRespProxy(backend.url, {}, undefined, aclGate())
})

afterAll(async () => {
  await proxy?.close()
  await backend?.stop()
  await reference?.stop()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

/** Sends `requests` in one write on a new connection; every byte of the replies. */
async function exchange(port: number, requests: (Buffer | string)[]): Promise<string> {
  const conn = await rawConnect(port)
  conn.send(Buffer.concat(requests.map((r) => (typeof r === 'string' ? Buffer.from(r) : r))))
  await conn.replies(requests.length)
  conn.close()
  return conn.received().toString('latin1')
}

/** The same requests to the proxy and to Redis 7.0 with the same users: the same bytes back. */
async function expectAsRedis(requests: (Buffer | string)[], against = reference): Promise<string> {
  const direct = await exchange(against.port, requests)
  expect(await exchange(proxy.port, requests)).toBe(direct)
  return direct
}

const as = (user: string) => command('AUTH', user, `${user}-pw`)

describe('as Redis 7.0 answers, byte for byte, with the same ACL file', () => {
  it('answers NOAUTH before authentication, except AUTH, HELLO, QUIT and RESET, and unknown commands and wrong arity first', async () => {
    const replies = await expectAsRedis([
      command('PING'),
      command('GET', 'cache:1'),
      'GET cache:1\r\n',
      command('MGET', 'cache:1', 'other'),
      command('ECHO', 'x'),
      command('SELECT', '0'),
      command('INFO'),
      command('CLIENT', 'ID'),
      command('COMMAND', 'COUNT'),
      command('ACL', 'WHOAMI'),
      command('HELLO'),
      command('HELLO', '3'),
      command('HELLO', '2', 'SETNAME', 'x'),
      command('RESET'),
      command('NOSUCH', 'x'),
      command('GET'),
      command('CLIENT', 'NOSUCH'),
      command('ACL', 'WHOAMI', 'x'),
      command('ACL', 'NOSUCH'),
      command('ACL'),
      command('HELLO', '4'),
      command('HELLO', '3', 'FOO'),
    ])
    expect(replies).toContain('-NOAUTH Authentication required.\r\n')
    expect(replies).toContain('+RESET\r\n')
  })

  it('holds the same rules for forwarded commands: a read-only user writing, keys outside the patterns, write keys', async () => {
    const replies = await expectAsRedis([
      as('reader'),
      command('SET', 'cache:w', 'x'),
      command('STRLEN', 'cache:1'),
      command('STRLEN', 'other'),
      command('EXISTS', 'cache:1', 'other'),
      command('CONFIG', 'GET', 'maxmemory'),
      as('noget'),
      command('SET', 'other:w', 'y'),
      command('GETRANGE', 'other:w', '0', '-1'),
      command('GET', 'other:w'),
      command('COPY', 'other:w', 'cache:copy'),
      command('DEL', 'other:w', 'cache:copy'),
    ])
    expect(replies).toContain("-NOPERM this user has no permissions to run the 'set' command\r\n")
    expect(replies).toContain(
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
    )
    expect(replies).toContain(':2\r\n')
  })

  it('refuses wrong credentials, an unknown user, a disabled user and bad AUTH forms', async () => {
    const replies = await expectAsRedis([
      command('AUTH'),
      command('AUTH', 'a', 'b', 'c'),
      command('AUTH', 'wrong'),
      command('AUTH', 'default', 'wrong'),
      command('AUTH', 'alice', 'default-pw'),
      command('AUTH', 'nosuch', 'x'),
      command('AUTH', 'banned', 'banned-pw'),
      command('HELLO', '3', 'AUTH', 'alice', 'wrong'),
      command('HELLO', '3', 'AUTH', 'banned', 'banned-pw'),
      command('HELLO', '3', 'AUTH', 'alice'),
      command('GET', 'cache:1'),
    ])
    expect(replies).toContain('-WRONGPASS invalid username-password pair or user is disabled.\r\n')
    expect(replies.endsWith('-NOAUTH Authentication required.\r\n')).toBe(true)
  })

  it('logs in with AUTH password, AUTH user password and HELLO AUTH, and RESET logs out', async () => {
    const replies = await expectAsRedis([
      command('AUTH', 'default-pw'),
      command('ACL', 'WHOAMI'),
      command('GET', 'cache:1'),
      as('alice'),
      command('ACL', 'WHOAMI'),
      // A failed AUTH keeps the user logged in.
      command('AUTH', 'reader', 'wrong'),
      command('ACL', 'WHOAMI'),
      command('RESET'),
      command('GET', 'cache:1'),
      // Options take effect in order: the login and the name stay, though HELLO fails.
      command('HELLO', '2', 'AUTH', 'alice', 'alice-pw', 'SETNAME', 'me', 'BAR'),
      command('ACL', 'WHOAMI'),
      command('CLIENT', 'GETNAME'),
    ])
    expect(replies).toContain('$5\r\nalice\r\n')
  })

  it('refuses a user a command it may not run, as NOPERM with its full name', async () => {
    await expectAsRedis([
      as('reader'),
      command('PING'),
      command('CLIENT', 'ID'),
      command('ACL', 'WHOAMI'),
      command('COMMAND', 'COUNT'),
      command('INFO'),
      command('SELECT', '0'),
    ])
    const replies = await expectAsRedis([
      as('noget'),
      command('GET', 'cache:1'),
      'GET cache:1\r\n',
      command('get', 'cache:1'),
      command('MGET', 'cache:1'),
    ])
    expect(replies).toContain("-NOPERM this user has no permissions to run the 'get' command\r\n")
    await expectAsRedis([
      as('sel'),
      command('SELECT', '0'),
      command('SELECT', '1'),
      command('CLIENT', 'GETNAME'),
      command('ACL', 'WHOAMI'),
      command('ECHO', 'x'),
    ])
  })

  it('refuses a key the user may not read, and a whole MGET for one such key', async () => {
    const replies = await expectAsRedis([
      as('reader'),
      command('GET', 'cache:1'),
      command('GET', 'other'),
      'GET other\r\n',
      command('MGET', 'cache:1', 'cache:2'),
      command('MGET', 'cache:1', 'other'),
      command('MGET', 'other', 'cache:1'),
    ])
    expect(replies).toContain(
      '-NOPERM this user has no permissions to access one of the keys used as arguments\r\n',
    )
  })

  it('answers AUTH when the default user has no password as Redis does', async () => {
    const open = await startRespProxy(backend.url)
    try {
      const requests = [
        command('GET', 'cache:1'),
        command('AUTH', 'whatever'),
        command('AUTH', 'default', 'whatever'),
        command('AUTH', 'nosuch', 'x'),
        command('AUTH', 'a', 'b', 'c'),
        command('ACL', 'WHOAMI'),
      ]
      const direct = await exchange(backend.port, requests)
      expect(await exchange(open.port, requests)).toBe(direct)
      expect(direct).toContain('-ERR AUTH <password> called without any password configured')
    } finally {
      await open.close()
    }
  })
})

describe('permissions hold on every path', () => {
  /** A connection logged in as `user`. */
  async function loggedIn(user: string) {
    const conn = await rawConnect(proxy.port)
    conn.send(as(user))
    expect(await conn.replies(1)).toEqual(['OK'])
    return conn
  }

  it('refuses a key outside ~cache:* that another user has cached, on the fast path and the table path', async () => {
    const alice = await loggedIn('alice')
    alice.send(command('GET', 'other'))
    expect(await alice.replies(1)).toEqual([Buffer.from('three')])
    alice.close()
    expect(proxy.service.cached('other')).not.toBeNull()
    const reads = await backendGetCount(backend)
    const reader = await loggedIn('reader')
    // A canonical GET in one write takes the decoder's fast path; inline, the command table.
    reader.send(command('GET', 'other'))
    reader.send('GET other\r\n')
    reader.send(command('MGET', 'cache:1', 'other'))
    const refused = (await reader.replies(3)).map(String)
    expect(refused).toEqual(Array(3).fill(expect.stringMatching(/^Error: NOPERM .* keys/)))
    reader.close()
    expect(await backendGetCount(backend)).toBe(reads)
  })

  it('refuses a key outside ~cache:* that is not cached without asking Redis', async () => {
    expect(proxy.service.cached('other:2')).toBeNull()
    const reads = await backendGetCount(backend)
    const reader = await loggedIn('reader')
    reader.send(command('GET', 'other:2'))
    reader.send(command('MGET', 'other:2'))
    expect((await reader.replies(2)).map(String)).toEqual(
      Array(2).fill(expect.stringMatching(/^Error: NOPERM .* keys/)),
    )
    reader.close()
    expect(await backendGetCount(backend)).toBe(reads)
    expect(proxy.service.cached('other:2')).toBeNull()
  })

  it('refuses GET from the cache to a user without +get', async () => {
    const alice = await loggedIn('alice')
    alice.send(command('GET', 'cache:2'))
    expect(await alice.replies(1)).toEqual([Buffer.from('two')])
    alice.close()
    const noget = await loggedIn('noget')
    noget.send(command('GET', 'cache:2'))
    noget.send(command('MGET', 'cache:2'))
    const [get, mget] = await noget.replies(2)
    expect(String(get)).toBe("Error: NOPERM this user has no permissions to run the 'get' command")
    expect(mget).toEqual([Buffer.from('two')])
    noget.close()
  })

  it('refuses a cached key to a client that has not authenticated', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(command('GET', 'cache:2'))
    expect((await conn.replies(1)).map(String)).toEqual(['Error: NOAUTH Authentication required.'])
    conn.close()
  })
})

describe('real clients with credentials', () => {
  /** redis-cli's output, stdout and stderr, whatever its exit status. */
  async function cli(port: number, args: string[]): Promise<string> {
    try {
      const { stdout, stderr } = await run(
        'redis-cli',
        ['-h', '127.0.0.1', '-p', String(port), '--no-auth-warning', ...args],
        { timeout: 10_000 },
      )
      return `${stdout}${stderr}`
    } catch (err) {
      const { stdout, stderr } = err as { stdout: string; stderr: string }
      return `${stdout}${stderr}`
    }
  }

  it('redis-cli -a and --user/--pass print what they print against Redis itself', async () => {
    for (const args of [
      ['-a', 'default-pw', 'GET', 'cache:1'],
      ['--user', 'reader', '--pass', 'reader-pw', 'GET', 'cache:1'],
      ['--user', 'reader', '--pass', 'reader-pw', 'GET', 'other'],
      ['--user', 'alice', '--pass', 'alice-pw', '-3', 'MGET', 'cache:1', 'other'],
      ['-a', 'wrong', 'GET', 'cache:1'],
      ['GET', 'cache:1'],
    ]) {
      expect(await cli(proxy.port, args), args.join(' ')).toBe(await cli(reference.port, args))
    }
    expect(await cli(proxy.port, ['-a', 'default-pw', 'GET', 'cache:1'])).toBe('one\n')
  })

  it('redis-py logs in with password= and username=, and reports refusals', async () => {
    const script = `
import sys, redis
port = int(sys.argv[1])
def attempt(f):
  try:
    return f()
  except redis.exceptions.RedisError as e:
    return type(e).__name__ + ': ' + str(e)
print(repr({
  'password': attempt(lambda: redis.Redis(port=port, password='default-pw').get('cache:1')),
  'reader': attempt(lambda: redis.Redis(port=port, username='reader', password='reader-pw').get('cache:1')),
  'refused': attempt(lambda: redis.Redis(port=port, username='reader', password='reader-pw').get('other')),
  'wrong': attempt(lambda: redis.Redis(port=port, password='wrong').get('cache:1')),
  'none': attempt(lambda: redis.Redis(port=port).get('cache:1')),
}))
`
    const python = async (port: number) =>
      (await run('/usr/bin/python3', ['-c', script, String(port)], { timeout: 20_000 })).stdout
    const viaProxy = await python(proxy.port)
    expect(viaProxy).toBe(await python(reference.port))
    expect(viaProxy).toContain("'password': b'one'")
    expect(viaProxy).toContain("'refused': 'NoPermissionError")
  })

  it('node-redis logs in with username and password (HELLO 3 AUTH), and fails with wrong ones', async () => {
    const connect = (password: string) =>
      createClient({
        socket: { host: '127.0.0.1', port: proxy.port, reconnectStrategy: false },
        username: 'reader',
        password,
        RESP: 3,
      })
    const client = connect('reader-pw')
    client.on('error', () => {})
    await client.connect()
    try {
      expect(await client.get('cache:1')).toBe('one')
      await expect(client.get('other')).rejects.toThrow(/^NOPERM .* keys/)
    } finally {
      await client.close()
    }
    const wrong = connect('wrong')
    wrong.on('error', () => {})
    await expect(wrong.connect()).rejects.toThrow(/WRONGPASS/)
  })

  it('ioredis logs in with username and password, and fails with wrong ones', async () => {
    const client = new Redis({
      host: '127.0.0.1',
      port: proxy.port,
      username: 'alice',
      password: 'alice-pw',
      lazyConnect: true,
    })
    await client.connect()
    try {
      expect(await client.get('cache:1')).toBe('one')
      expect(await client.call('ACL', 'WHOAMI')).toBe('alice')
    } finally {
      await client.quit()
    }
    const wrong = new Redis({
      host: '127.0.0.1',
      port: proxy.port,
      username: 'alice',
      password: 'wrong',
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
    })
    // ioredis reports the refused AUTH as an error event and closes.
    const errors: Error[] = []
    wrong.on('error', (err: Error) => errors.push(err))
    await expect(wrong.connect()).rejects.toThrow()
    expect(errors.map(String)).toContainEqual(expect.stringMatching(/WRONGPASS/))
    wrong.disconnect()
  })
})

describe('handshake bound and failure limiter', () => {
  it('closes a client that has not logged in within RESP_HANDSHAKE_TIMEOUT, even one sending commands', async () => {
    const timed = await startRespProxy(
      backend.url,
      { RESP_HANDSHAKE_TIMEOUT: '300' },
      undefined,
      aclGate(),
    )
    try {
      const silent = await rawConnect(timed.port)
      const talker = await rawConnect(timed.port)
      talker.send(command('PING'))
      expect((await talker.replies(1)).map(String)).toEqual([
        'Error: NOAUTH Authentication required.',
      ])
      const authed = await rawConnect(timed.port)
      authed.send(as('alice'))
      expect(await authed.replies(1)).toEqual(['OK'])
      await Promise.all([silent.closed(), talker.closed()])
      // Well past the bound, the one that logged in is still served.
      authed.send(command('GET', 'cache:1'))
      expect(await authed.replies(1)).toEqual([Buffer.from('one')])
      authed.close()
    } finally {
      await timed.close()
    }
  })

  it('refuses an address after repeated failures, even the right password, until the block passes', async () => {
    let now = 0
    const refusals: AuthRefusal[] = []
    const limiter = new AuthFailureLimiter({
      maxFailures: 3,
      blockMs: 5000,
      clock: { now: () => now },
    })
    const users = createUsers({ aclFile: { text: ACL, source: 'test.acl' } })
    const gate = new AuthGate({
      users,
      log: silentLogger,
      limiter,
      onRefused: (_client: AuthClient, refusal) => refusals.push(refusal),
    })
    const limited = await startRespProxy(backend.url, {}, undefined, gate)
    try {
      const conn = await rawConnect(limited.port)
      conn.send(
        Buffer.concat([
          command('AUTH', 'alice', 'wrong'),
          command('AUTH', 'alice', 'wrong'),
          command('HELLO', '3', 'AUTH', 'alice', 'wrong'),
          as('alice'),
          command('HELLO', '3', 'AUTH', 'alice', 'alice-pw'),
        ]),
      )
      const limitedReply =
        'Error: ERR too many failed authentications from this address, retry in 5000 ms'
      expect((await conn.replies(5)).map(String)).toEqual([
        'Error: WRONGPASS invalid username-password pair or user is disabled.',
        'Error: WRONGPASS invalid username-password pair or user is disabled.',
        'Error: WRONGPASS invalid username-password pair or user is disabled.',
        limitedReply,
        limitedReply,
      ])
      // The address, not the connection, is blocked.
      const other = await rawConnect(limited.port)
      other.send(as('alice'))
      expect((await other.replies(1)).map(String)).toEqual([limitedReply])
      now += 5000
      other.send(as('alice'))
      expect(await other.replies(1)).toEqual(['OK'])
      expect(refusals.map((r) => r.refused)).toEqual([
        'wrongpass',
        'wrongpass',
        'wrongpass',
        'limited',
        'limited',
        'limited',
      ])
      conn.close()
      other.close()
    } finally {
      await limited.close()
    }
  })
})
