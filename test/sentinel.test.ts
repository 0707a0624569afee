import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { type RespValue, sleep, type TestRedis } from './harness/redis-server.js'
import { command, type RawConnection, rawConnect } from './harness/resp-client.js'
import {
  type ScriptedSentinel,
  type SentinelGroup,
  type SentinelProxy,
  startScriptedSentinel,
  startSentinel,
  startSentinelGroup,
  startSentinelProxy,
  type TestSentinel,
  until,
} from './harness/sentinel.js'

/**
 * One Sentinel group for the file (three data nodes, three sentinels): its
 * tests run in order and each failover leaves the next primary to the test
 * after it.
 */
let group: SentinelGroup
const proxies: SentinelProxy[] = []
const clients: RawConnection[] = []
const extraSentinels: TestSentinel[] = []
const scriptedSentinels: ScriptedSentinel[] = []

beforeAll(async () => {
  group = await startSentinelGroup()
}, 30_000)

afterAll(async () => {
  for (const client of clients) client.close()
  await Promise.all(proxies.map((proxy) => proxy.close()))
  await Promise.all(extraSentinels.map((sentinel) => sentinel.stop()))
  await Promise.all(scriptedSentinels.map((sentinel) => sentinel.close()))
  await group?.stop()
})

async function proxyWith(env: Record<string, string>): Promise<SentinelProxy> {
  const proxy = await startSentinelProxy(env)
  proxies.push(proxy)
  return proxy
}

async function client(proxy: SentinelProxy): Promise<RawConnection> {
  const connection = await rawConnect(proxy.respPort)
  clients.push(connection)
  return connection
}

async function call(connection: RawConnection, ...args: string[]): Promise<RespValue> {
  connection.send(command(...args))
  const [reply] = await connection.replies(1)
  return reply as RespValue
}

function text(value: RespValue | Uint8Array | undefined): string | undefined {
  if (value === undefined || value === null) return undefined
  if (value instanceof Error) return `error: ${value.message}`
  return value instanceof Uint8Array ? Buffer.from(value).toString() : String(value)
}

async function readyz(proxy: SentinelProxy): Promise<number> {
  const res = await fetch(`${proxy.httpUrl}/readyz`)
  await res.arrayBuffer()
  return res.status
}

async function httpGet(proxy: SentinelProxy, key: string): Promise<string> {
  const res = await fetch(`${proxy.httpUrl}/get/${encodeURIComponent(key)}`)
  return `${res.status} ${await res.text()}`
}

/** Until the proxy is ready: connected to the primary, tracking settled. */
async function ready(proxy: SentinelProxy): Promise<void> {
  await until(async () => (await readyz(proxy)) === 200, 'the proxy to be ready')
}

let probes = 0

/**
 * Until a write through the proxy lands on `primary`: the proxy has heard of
 * the switch. (Until then a write may still be accepted by the old primary:
 * Sentinel demotes it some seconds after promoting the new one.)
 */
async function writesReach(connection: RawConnection, primary: TestRedis): Promise<void> {
  await until(
    async () => {
      const probe = `probe-${++probes}`
      if ((await call(connection, 'SET', 'sentinel:probe', probe)) !== 'OK') return false
      return text(await primary.command('GET', 'sentinel:probe')) === probe
    },
    `a write through the proxy to reach ${primary.port}`,
    20_000,
  )
}

describe('Redis Sentinel behind the proxy', () => {
  // Both run through every failover below: one clears its cache only on the
  // switch (tracking off), the other also through tracking's reconnect.
  let untracked: SentinelProxy
  let tracked: SentinelProxy
  let untrackedClient: RawConnection
  let trackedClient: RawConnection

  it('finds the primary through the first sentinel that answers and serves cached reads and forwarded writes', async () => {
    // Nothing listens on the first address: the next sentinel answers.
    const deadSentinel = await freePort()
    const sentinels = `127.0.0.1:${deadSentinel},${group.sentinelsEnv()}`
    const env = {
      REDIS_SENTINELS: sentinels,
      REDIS_SENTINEL_MASTER: group.masterName,
      // Its host and port are not used: the sentinels say where to go.
      REDIS_URL: 'redis://127.0.0.1:1/0',
    }
    untracked = await proxyWith({ ...env, CACHE_INVALIDATION: 'off' })
    tracked = await proxyWith(env)
    await ready(untracked)
    await ready(tracked)
    untrackedClient = await client(untracked)
    trackedClient = await client(tracked)
    const primary = await group.primary()
    expect(primary).toBe(group.nodes[0])

    expect(await call(untrackedClient, 'SET', 'k', 'v1')).toBe('OK')
    expect(await call(untrackedClient, 'INCR', 'n')).toBe(1)
    expect(await call(trackedClient, 'INCR', 'n')).toBe(2)
    expect(text(await primary.command('GET', 'k'))).toBe('v1')
    expect(await primary.command('GET', 'n')).toEqual(Buffer.from('2'))

    for (const [proxy, connection] of [
      [untracked, untrackedClient],
      [tracked, trackedClient],
    ] as const) {
      expect(text(await call(connection, 'GET', 'k'))).toBe('v1')
      expect(text(proxy.service.peek('k') ?? undefined)).toBe('v1')
      expect(await httpGet(proxy, 'k')).toBe('200 v1')
      expect(proxy.service.stats().hits).toBeGreaterThan(0)
    }
  })

  it('is not ready while no sentinel knows the master name', async () => {
    const proxy = await proxyWith({
      REDIS_SENTINELS: group.sentinelsEnv(),
      REDIS_SENTINEL_MASTER: 'no-such-master',
    })
    // Every sentinel has been asked (and said null) more than once by now.
    await sleep(500)
    expect(await readyz(proxy)).toBe(503)
    expect(proxy.service.backend()).not.toBe('ready')
    const connection = await client(proxy)
    expect(text(await call(connection, 'GET', 'k'))).toMatch(/^error: /)
    expect(text(await call(connection, 'SET', 'k', 'nope'))).toMatch(/^error: /)
    expect(text(await (await group.primary()).command('GET', 'k'))).toBe('v1')
  })

  it('is not ready while no sentinel answers, and becomes ready once one does', async () => {
    const port = await freePort()
    const proxy = await proxyWith({
      REDIS_SENTINELS: `127.0.0.1:${port}`,
      REDIS_SENTINEL_MASTER: 'late',
    })
    await sleep(300)
    expect(await readyz(proxy)).toBe(503)
    expect(proxy.service.backend()).not.toBe('ready')
    // A sentinel of its own under another name, so the group's failover
    // majority is not changed.
    const primary = await group.primary()
    const late = await startSentinel('late', primary.port, { port, quorum: 1 })
    extraSentinels.push(late)
    try {
      await ready(proxy)
      const connection = await client(proxy)
      expect(text(await call(connection, 'GET', 'k'))).toBe('v1')
    } finally {
      // Gone before the failovers below: with a quorum of 1 it would act on its own.
      await proxy.close()
      proxies.splice(proxies.indexOf(proxy), 1)
      await late.stop()
    }
  })

  it('refuses an address whose ROLE is not master, asks again, and connects once the primary is named', async () => {
    const primary = await group.primary()
    const replica = group.nodes.find((node) => node !== primary) as TestRedis
    const scripted = await startScriptedSentinel()
    scriptedSentinels.push(scripted)
    scripted.name('scripted', { host: '127.0.0.1', port: replica.port })
    const proxy = await proxyWith({
      REDIS_SENTINELS: `127.0.0.1:${scripted.port}`,
      REDIS_SENTINEL_MASTER: 'scripted',
    })
    // Each refused connection asks the sentinel again.
    await until(() => scripted.asked() >= 3, 'the sentinel to be asked again')
    expect(await readyz(proxy)).toBe(503)
    expect(proxy.service.backend()).not.toBe('ready')
    scripted.name('scripted', { host: '127.0.0.1', port: primary.port })
    await ready(proxy)
    const connection = await client(proxy)
    expect(text(await call(connection, 'GET', 'k'))).toBe('v1')
  })

  it('asks the sentinels again when a write is answered READONLY (a user that may not run ROLE)', async () => {
    const primary = await group.primary()
    const replica = group.nodes.find((node) => node !== primary) as TestRedis
    // ACLs are not replicated: the same user on each node, without ROLE.
    for (const node of [primary, replica]) {
      expect(
        await node.command('ACL', 'SETUSER', 'norole', 'on', '>pw', '~*', '&*', '+@all', '-role'),
      ).toBe('OK')
    }
    const scripted = await startScriptedSentinel()
    scriptedSentinels.push(scripted)
    scripted.name('scripted', { host: '127.0.0.1', port: replica.port })
    const proxy = await proxyWith({
      REDIS_SENTINELS: `127.0.0.1:${scripted.port}`,
      REDIS_SENTINEL_MASTER: 'scripted',
      REDIS_URL: 'redis://norole:pw@127.0.0.1:1/0',
    })
    // ROLE refused (NOPERM): the address cannot be checked and is trusted.
    await ready(proxy)
    const connection = await client(proxy)
    expect(text(await call(connection, 'GET', 'k'))).toBe('v1')
    scripted.name('scripted', { host: '127.0.0.1', port: primary.port })
    const asked = scripted.asked()
    expect(text(await call(connection, 'SET', 'ro', 'x'))).toMatch(/^error: READONLY/)
    await until(() => scripted.asked() > asked, 'the sentinel to be asked again')
    await writesReach(connection, primary)
  })

  it('keeps serving when a sentinel dies: the next one is asked', async () => {
    // The first live one: where both proxies' subscriptions went.
    const [first] = group.sentinels
    await first?.kill()
    for (const [proxy, connection] of [
      [untracked, untrackedClient],
      [tracked, trackedClient],
    ] as const) {
      expect(text(await call(connection, 'GET', 'k'))).toBe('v1')
      expect(await call(connection, 'INCR', 'n')).toBeTypeOf('number')
      expect(await readyz(proxy)).toBe(200)
      // Asked again (as a refresh or a failed connection would), the others answer.
      expect(proxy.service.backend()).toBe('ready')
    }
  })

  /**
   * After a failover: writes reach the new primary, the cache holds nothing
   * read from the old one, and a read sees what was written on the new one
   * (here by another client straight to Redis, which no tracking of the old
   * connection could report).
   */
  async function expectFollowed(old: TestRedis, fresh: TestRedis, key: string): Promise<void> {
    expect(fresh).not.toBe(old)
    expect(text(await fresh.command('SET', key, 'written-on-new-primary'))).toBe('OK')
    for (const [proxy, connection] of [
      [untracked, untrackedClient],
      [tracked, trackedClient],
    ] as const) {
      await writesReach(connection, fresh)
      await ready(proxy)
      expect(proxy.service.peek(key)).toBeNull()
      expect(text(await call(connection, 'GET', key))).toBe('written-on-new-primary')
      expect(await httpGet(proxy, key)).toBe('200 written-on-new-primary')
    }
    // Each proxy's own write, then its read: the new value, nothing stale.
    for (const [name, proxy, connection] of [
      ['untracked', untracked, untrackedClient],
      ['tracked', tracked, trackedClient],
    ] as const) {
      expect(await call(connection, 'SET', key, `after-${name}`)).toBe('OK')
      expect(text(await fresh.command('GET', key))).toBe(`after-${name}`)
      expect(text(await call(connection, 'GET', key))).toBe(`after-${name}`)
      expect(await httpGet(proxy, key)).toBe(`200 after-${name}`)
    }
  }

  /** Reads `key` through both proxies so each has it cached, on every live replica first. */
  async function cacheEverywhere(primary: TestRedis, key: string): Promise<void> {
    expect(await call(untrackedClient, 'SET', key, 'before')).toBe('OK')
    const replicas = group.nodes.filter((node) => node !== primary && node.pid() !== undefined)
    for (const replica of replicas) {
      await until(
        async () => text(await replica.command('GET', key)) === 'before',
        `replica ${replica.port} to have ${key}`,
      )
    }
    for (const [proxy, connection] of [
      [untracked, untrackedClient],
      [tracked, trackedClient],
    ] as const) {
      expect(text(await call(connection, 'GET', key))).toBe('before')
      expect(text(proxy.service.peek(key) ?? undefined)).toBe('before')
    }
  }

  it('follows a primary that is killed, as the remaining sentinels announce: not ready meanwhile', async () => {
    const old = await group.primary()
    await cacheEverywhere(old, 'f1')
    await old.kill()
    await until(async () => (await readyz(untracked)) === 503, 'the proxy to see the primary go')
    expect(text(await call(untrackedClient, 'SET', 'f1', 'lost'))).toMatch(/^error: /)
    const fresh = await group.waitForNewPrimary(old)
    await expectFollowed(old, fresh, 'f1')
  })

  it('follows SENTINEL FAILOVER: writes go to the new primary, the cache is cleared, dedicated connections closed', async () => {
    const old = await group.primary()
    await cacheEverywhere(old, 'f2')
    // A subscription holds a backend connection of its own, on the old primary.
    const subscriber = await client(untracked)
    subscriber.send(command('SUBSCRIBE', 'news'))
    expect(text(((await subscriber.replies(1))[0] as RespValue[])[0])).toBe('subscribe')

    await group.failover()
    const fresh = await group.waitForNewPrimary(old)
    await expectFollowed(old, fresh, 'f2')
    // As when Redis itself goes away: the client's connection is closed.
    await subscriber.closed()
  })
})
