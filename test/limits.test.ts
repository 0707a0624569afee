import { afterEach, describe, expect, it } from 'vitest'
import { startHttpProxy, startRespProxy, type TestHttpProxy } from './harness/proxy.js'
import { command, rawConnect } from './harness/resp-client.js'
import { type ScriptedRedis, startScriptedRedis } from './harness/scripted-redis.js'

let backend: ScriptedRedis | undefined
let proxy: TestHttpProxy | undefined

afterEach(async () => {
  await proxy?.close()
  await backend?.close()
  proxy = undefined
  backend = undefined
})

describe('MAX_PARALLEL against a slow backend', () => {
  it('keeps exactly MAX_PARALLEL backend GETs outstanding and answers every request', async () => {
    backend = await startScriptedRedis((key) => ({ delayMs: 10, value: `v:${key}` }))
    proxy = await startHttpProxy(backend.url, { MAX_PARALLEL: '4', MAX_QUEUE: '100' })
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`)
    // Held until MAX_PARALLEL GETs are outstanding: however slowly the
    // requests arrive, the limit is reached, and must not be passed.
    const release = backend.hold()
    const pending = keys.map((key) => proxy?.get(key) as Promise<Response>)
    await backend.whenGets(4)
    release()
    const answers = await Promise.all(pending)
    expect(answers.map((res) => res.status)).toEqual(Array(20).fill(200))
    expect(await Promise.all(answers.map((res) => res.text()))).toEqual(keys.map((k) => `v:${k}`))
    expect(backend.peakOutstanding()).toBe(4)
    expect(backend.gets().sort()).toEqual([...keys].sort())
  })

  it('answers 503 with Retry-After once the wait queue is full, and serves the rest', async () => {
    backend = await startScriptedRedis((key) => ({ delayMs: 0, value: `v:${key}` }))
    const limited = await startHttpProxy(backend.url, { MAX_PARALLEL: '2', MAX_QUEUE: '3' })
    proxy = limited
    // Nothing is answered until all ten have arrived, however slowly they
    // come: two run, three wait, and the five refused are the first answers.
    const release = backend.hold()
    let fiveAnswered!: () => void
    const refused = new Promise<void>((resolve) => {
      fiveAnswered = resolve
    })
    let count = 0
    const pending = Array.from({ length: 10 }, (_, i) =>
      limited.get(`k${i}`).then((res) => {
        if (++count === 5) fiveAnswered()
        return res
      }),
    )
    await refused
    release()
    const answers = await Promise.all(pending)
    const statuses = answers.map((res) => res.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(5)
    const rejected = answers.filter((res) => res.status === 503)
    expect(rejected).toHaveLength(5)
    for (const res of rejected) expect(res.headers.get('retry-after')).toBe('1')
    expect(backend.peakOutstanding()).toBe(2)
  })
})

describe('MAX_QUEUE over RESP', () => {
  it('answers -ERR proxy overloaded, retry later once the wait queue is full, in order, and serves the rest', async () => {
    backend = await startScriptedRedis((key) => ({ delayMs: 200, value: `v:${key}` }))
    const resp = await startRespProxy(backend.url, { MAX_PARALLEL: '1', MAX_QUEUE: '1' })
    try {
      const conn = await rawConnect(resp.port)
      // k0 runs, k1 waits for the one slot, k2 and k3 find the queue full.
      conn.send(Buffer.concat(['k0', 'k1', 'k2', 'k3'].map((key) => command('GET', key))))
      const overloaded = new Error('ERR proxy overloaded, retry later')
      expect(await conn.replies(4)).toEqual([
        Buffer.from('v:k0'),
        Buffer.from('v:k1'),
        overloaded,
        overloaded,
      ])
      expect(backend.gets()).toEqual(['k0', 'k1'])
      // Refused, not cached, and the connection still serves.
      conn.send(command('GET', 'k2'))
      expect(await conn.replies(1)).toEqual([Buffer.from('v:k2')])
      conn.close()
    } finally {
      await resp.close()
    }
  })
})
