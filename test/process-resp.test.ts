import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from './harness/ports.js'
import { spawnProxy } from './harness/process.js'
import { sleep, startRedis, type TestRedis } from './harness/redis-server.js'
import { command, type RawConnection, rawConnect } from './harness/resp-client.js'

let redis: TestRedis

beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => redis?.stop())

async function connectWhenUp(port: number): Promise<RawConnection> {
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      return await rawConnect(port)
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(50)
    }
  }
}

describe('the sidecar process (npm run start:sidecar)', () => {
  it('answers what it already received on SIGTERM, closes, and exits 0', async () => {
    const port = await freePort()
    const proxy = spawnProxy(['resp'], {
      REDIS_URL: redis.url,
      PROXY_HOST_TCP: '127.0.0.1',
      PROXY_PORT_TCP: String(port),
      // Longer than the pause below: the backend is slow, not failing.
      REDIS_COMMAND_TIMEOUT: '5000',
    })
    const conn = await connectWhenUp(port)
    conn.send(command('PING'))
    expect(await conn.replies(1)).toEqual(['PONG'])
    await redis.command('SET', 'slow', 'answered')

    const figure = async (name: string) => {
      const info = await rawConnect(port)
      info.send(command('INFO', 'proxy'))
      const text = String((await info.replies(1))[0])
      info.close()
      return Number(new RegExp(`${name}:(\\d+)\r\n`).exec(text)?.[1])
    }
    const coalescedBefore = await figure('coalesced')

    // Hold the backend so the GETs are still in flight when the signal lands.
    await redis.command('CLIENT', 'PAUSE', '3000', 'ALL')
    conn.send(Buffer.concat(Array.from({ length: 20 }, () => command('GET', 'slow'))))
    // The signal lands once the sidecar has read all 20: one backend GET, 19 joining it.
    const deadline = Date.now() + 2500
    while (
      ((await figure('inflight')) !== 1 || (await figure('coalesced')) - coalescedBefore !== 19) &&
      Date.now() < deadline
    ) {
      await sleep(20)
    }
    expect(await figure('inflight')).toBe(1)
    expect((await figure('coalesced')) - coalescedBefore).toBe(19)
    proxy.child.kill('SIGTERM')

    expect(await conn.replies(20)).toEqual(Array(20).fill(Buffer.from('answered')))
    await conn.closed()
    expect(await proxy.exited()).toEqual({ code: 0, signal: null })
    await expect(rawConnect(port)).rejects.toThrow()
    expect(proxy.logs()).toContain('"msg":"stopped"')
  })
})
