import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { readEnv } from './env-file.js'

describe('readEnv', () => {
  it('reads .env and lets the real environment win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-env-'))
    writeFileSync(join(dir, '.env'), 'CACHE_CAPACITY=5\nPROXY_PORT_HTTP=5005\n# comment\n')
    const env = readEnv({ PROXY_PORT_HTTP: '6006' }, dir)
    expect(env.CACHE_CAPACITY).toBe('5')
    expect(env.PROXY_PORT_HTTP).toBe('6006')
  })

  it('works without a .env file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'redis-proxy-env-'))
    expect(readEnv({ A: '1' }, dir)).toEqual({ A: '1' })
  })
})
