import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startRespProxy, type TestRespProxy } from '../harness/proxy.js'
import { startRedis, type TestRedis } from '../harness/redis-server.js'
import { command, type RawConnection, rawConnect } from '../harness/resp-client.js'

describe('forwarding when the backend fails', () => {
  let redis: TestRedis
  let proxy: TestRespProxy

  beforeAll(async () => {
    redis = await startRedis()
    proxy = await startRespProxy(redis.url, { REDIS_COMMAND_TIMEOUT: '5000' })
  })
  afterAll(async () => {
    await proxy?.close()
    await redis?.stop()
  })

  test('answers every forwarded command with an error at once while Redis is down, and serves again once it is back', async () => {
    const conn = await rawConnect(proxy.port)
    conn.send(command('SET', 'outage:k', 'v'))
    expect(await conn.replies(1)).toEqual(['OK'])
    await redis.kill()
    // Well under the 5 s command timeout: nothing waits in a queue.
    const started = Date.now()
    conn.send(Buffer.concat([command('SET', 'outage:k', 'w'), command('INCR', 'outage:n')]))
    const replies = await conn.replies(2)
    expect(Date.now() - started).toBeLessThan(2000)
    for (const reply of replies) expect(String(reply)).toContain('backing redis unavailable')
    await redis.restart()
    const deadline = Date.now() + 10_000
    for (;;) {
      conn.send(command('SET', 'outage:k', 'back'))
      const [reply] = await conn.replies(1)
      if (reply === 'OK') break
      if (Date.now() > deadline) throw new Error(`still refused: ${String(reply)}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(await redis.command('GET', 'outage:k')).toEqual(Buffer.from('back'))
    conn.close()
  })
})

describe('1,000 clients on backend connections of their own', () => {
  let redis: TestRedis
  let proxy: TestRespProxy
  const held: RawConnection[] = []

  beforeAll(async () => {
    redis = await startRedis()
    proxy = await startRespProxy(redis.url, { MAX_BACKEND_CONNECTIONS: '1000' })
  })
  afterAll(async () => {
    for (const conn of held) conn.close()
    await proxy?.close()
    await redis?.stop()
  })

  test('are all served, the next is refused with an error, others are served meanwhile, and closing frees them', async () => {
    for (let i = 0; i < 1000; i += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => rawConnect(proxy.port)))
      held.push(...batch)
      for (const conn of batch) conn.send(command('MULTI'))
      for (const conn of batch) expect(await conn.replies(1, 10_000)).toEqual(['OK'])
    }
    expect(proxy.server.connections()).toBe(1000)
    const extra = await rawConnect(proxy.port)
    extra.send(Buffer.concat([command('BLPOP', 'none', '0'), command('SET', 'still', 'served')]))
    const [refused, served] = await extra.replies(2)
    expect(String(refused)).toContain('max number of backend connections reached')
    expect(served).toBe('OK')
    // Redis sees the 1,000 transactions open (flag x), one connection each.
    const inMulti = async (): Promise<number> =>
      String(await redis.command('CLIENT', 'LIST'))
        .split('\n')
        .filter((line) => /flags=\S*x/.test(line)).length
    expect(await inMulti()).toBe(1000)
    for (const conn of held.splice(0)) conn.close()
    const deadline = Date.now() + 10_000
    while ((await inMulti()) > 0) {
      if (Date.now() > deadline) throw new Error('backend connections left open')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    extra.send(command('MULTI'))
    expect(await extra.replies(1)).toEqual(['OK'])
    extra.close()
  }, 60_000)
})
