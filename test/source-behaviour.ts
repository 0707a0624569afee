import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BackendError, BackendTimeoutError, BackendUnavailableError } from '../shared/errors.js'
import type { RedisSource } from '../shared/redis/source.js'

/** One backend as the behaviour suite drives it. Keys are byte strings, as in the source port. */
export type BackendUnderTest = {
  /** A source over this backend, ready to read. */
  open(options: { commandTimeoutMs: number }): Promise<RedisSource>
  set(key: string, value: Uint8Array): Promise<void>
  /** Stores a key of another type, so GET is answered with WRONGTYPE. */
  setWrongType(key: string): Promise<void>
  /** Empties the backend and puts it back in working order. */
  reset(): Promise<void>
  /** Reads are accepted and never answered until the returned function runs. */
  stall(): Promise<() => Promise<void>>
  /** The backend cannot be reached until the returned function runs. */
  takeDown(): Promise<() => Promise<void>>
}

const TIMEOUT_MS = 300

/**
 * What every RedisSource must do, written once and run against each
 * implementation: the same bytes, the same null, the same named errors.
 */
export function describeRedisSource(name: string, backend: () => BackendUnderTest): void {
  describe(`RedisSource behaviour: ${name}`, () => {
    let source: RedisSource | undefined
    let restore: (() => Promise<void>) | undefined

    const open = async () => {
      source = await backend().open({ commandTimeoutMs: TIMEOUT_MS })
      return source
    }

    beforeEach(async () => {
      await backend().reset()
    })

    afterEach(async () => {
      await restore?.()
      restore = undefined
      await source?.close()
      source = undefined
    })

    it('returns a value byte for byte, all 256 byte values', async () => {
      const every = Uint8Array.from({ length: 256 }, (_, i) => i)
      await backend().set('bytes', every)
      const got = await (await open()).get('bytes')
      expect(got).toBeInstanceOf(Uint8Array)
      expect(Buffer.from(got as Uint8Array).equals(Buffer.from(every))).toBe(true)
    })

    it('hands back each value in memory of its own, so a cached value pins nothing else', async () => {
      await backend().set('a', new Uint8Array(100).fill(1))
      await backend().set('b', new Uint8Array(100).fill(2))
      const reader = await open()
      const [a, b] = await Promise.all([reader.get('a'), reader.get('b')])
      for (const value of [a, b]) {
        expect(value?.byteLength).toBe(100)
        expect(value?.buffer.byteLength).toBe(100)
      }
    })

    it('answers null for a missing key', async () => {
      expect(await (await open()).get('missing')).toBeNull()
    })

    it('treats the empty string as a value, not a miss', async () => {
      await backend().set('empty', new Uint8Array(0))
      const got = await (await open()).get('empty')
      expect(got).not.toBeNull()
      expect(got?.byteLength).toBe(0)
    })

    it('reads keys made of any bytes: separators, dots, percent signs, UTF-8, binary', async () => {
      const keys = [
        'a/b/c',
        'with space',
        '100%',
        'q?x=1#frag',
        '.',
        '..',
        '...',
        Buffer.from('ключ-🔑', 'utf8').toString('latin1'),
        '\u0000\u00ff\r\n',
        String.fromCharCode(...Array.from({ length: 256 }, (_, i) => i)),
      ]
      for (const [i, key] of keys.entries()) await backend().set(key, Uint8Array.of(i))
      const opened = await open()
      for (const [i, key] of keys.entries()) {
        const got = await opened.get(key)
        expect(got === null ? null : [...got], JSON.stringify(key)).toEqual([i])
      }
    })

    it('carries a 1 MiB value whole', async () => {
      const big = Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + 7) & 0xff)
      await backend().set('big', big)
      const got = await (await open()).get('big')
      expect(Buffer.from(got as Uint8Array).equals(Buffer.from(big))).toBe(true)
    })

    it('rejects with a BackendError, neither timeout nor outage, when Redis answers an error', async () => {
      await backend().setWrongType('list')
      const error = await (await open()).get('list').catch((err: unknown) => err)
      expect(error).toBeInstanceOf(BackendError)
      expect(error).not.toBeInstanceOf(BackendTimeoutError)
      expect(error).not.toBeInstanceOf(BackendUnavailableError)
      expect((error as Error).message).toMatch(/WRONGTYPE/)
    })

    it('rejects with a BackendTimeoutError when no answer comes within the command timeout', async () => {
      const opened = await open()
      await backend().set('k', Uint8Array.of(1))
      expect(await opened.get('k')).not.toBeNull()
      restore = await backend().stall()
      await expect(opened.get('k')).rejects.toBeInstanceOf(BackendTimeoutError)
    })

    it('rejects with a BackendUnavailableError when the backend cannot be reached', async () => {
      const opened = await open()
      restore = await backend().takeDown()
      await expect(opened.get('k')).rejects.toBeInstanceOf(BackendUnavailableError)
    })

    it('refuses reads once closed', async () => {
      const opened = await open()
      await opened.close()
      expect(opened.state()).toBe('closed')
      await expect(opened.get('k')).rejects.toBeInstanceOf(BackendUnavailableError)
    })
  })
}
