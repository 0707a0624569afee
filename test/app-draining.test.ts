import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../functions/app.js'
import { loadConfig } from '../shared/config.js'
import { createService } from '../shared/create-service.js'
import { silentLogger } from '../shared/log.js'
import type { ReadThrough } from '../shared/read-through.js'
import { nativeBackend } from '../shared/redis/native-backend.js'
import { waitReady } from './harness/proxy.js'
import { startRedis, type TestRedis } from './harness/redis-server.js'

let redis: TestRedis
let service: ReadThrough

beforeAll(async () => {
  redis = await startRedis()
  const config = loadConfig({ REDIS_URL: redis.url })
  service = createService(config, nativeBackend(config, redis.url, silentLogger))
  await waitReady(service)
})

afterAll(async () => {
  await service?.close()
  await redis?.stop()
})

describe('the app while draining', () => {
  it('asks the client to close the connection on misses, hits and errors alike', async () => {
    let draining = false
    const app = createApp({ service, draining: () => draining })
    await redis.command('SET', 'k', 'v')

    const open = await app.request('/get/k')
    expect(open.headers.get('connection')).toBeNull()
    expect(open.headers.get('x-cache')).toBe('MISS')

    draining = true
    const hit = await app.request('/get/k')
    expect(hit.headers.get('x-cache')).toBe('HIT')
    expect(hit.headers.get('content-type')).toBe('application/octet-stream')
    expect(hit.headers.get('connection')).toBe('close')
    expect(await hit.text()).toBe('v')

    service.clear()
    const miss = await app.request('/get/k')
    expect(miss.headers.get('x-cache')).toBe('MISS')
    expect(miss.headers.get('connection')).toBe('close')

    const missing = await app.request('/get/nope')
    expect(missing.status).toBe(404)
    expect(missing.headers.get('connection')).toBe('close')
  })
})
