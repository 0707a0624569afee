import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  BackendReplyError,
  BackendTimeoutError,
  BackendUnavailableError,
} from '../shared/errors.js'
import type { RedisSource } from '../shared/redis/source.js'

/** One backend as the behaviour suite drives it. Keys are byte strings, as in the source port. */
export type BackendUnderTest = {
  /** A source over this backend, ready to read. */
  open(options: { commandTimeoutMs: number }): Promise<RedisSource>
  /** Stores a string; with `pxMs`, the key expires that many milliseconds from now (SET PX). */
  set(key: string, value: Uint8Array, pxMs?: number): Promise<void>
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

// A deadline far enough ahead that only the command timeout can end a read.
const soon = () => performance.now() + 10_000

/**
 * What every RedisSource must do, written once and run against each
 * implementation: the same bytes, the same null, the same named errors.
 */
export function describeRedisSource(name: string, backend: () => BackendUnderTest): void {
  describe(`RedisSource behaviour: ${name}`, () => {
    let source: RedisSource | undefined
    let restore: (() => Promise<void>) | undefined

    const open = async (commandTimeoutMs = TIMEOUT_MS) => {
      source = await backend().open({ commandTimeoutMs })
      return source
    }
    /** The value alone, or null. */
    const value = async (reader: RedisSource, key: string) =>
      (await reader.get(key, soon()))?.value ?? null

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
      const got = await (await open()).get('bytes', soon())
      expect(got?.value).toBeInstanceOf(Uint8Array)
      expect(Buffer.from(got?.value as Uint8Array).equals(Buffer.from(every))).toBe(true)
      // SET without an expiry: the key lives until deleted.
      expect(got?.ttlMs).toBeNull()
    })

    it('answers the time the key has left in Redis (PTTL) with its value', async () => {
      await backend().set('brief', Uint8Array.of(1), 60_000)
      const got = await (await open()).get('brief', soon())
      expect([...(got?.value ?? [])]).toEqual([1])
      // Generous bounds: the read may come a while after the SET on a busy machine.
      expect(got?.ttlMs).toBeGreaterThan(30_000)
      expect(got?.ttlMs).toBeLessThanOrEqual(60_000)
    })

    it('hands back values that later reads leave intact', async () => {
      const reader = await open()
      const first = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await backend().set(`intact:${i}`, new Uint8Array(100).fill(i))
          return value(reader, `intact:${i}`)
        }),
      )
      // More reads on the same connection, after the values were handed back.
      for (let i = 0; i < 20; i++) {
        await backend().set(`intact:${i}`, new Uint8Array(100).fill(200))
        await value(reader, `intact:${i}`)
      }
      for (const [i, got] of first.entries()) {
        expect([...(got ?? [])]).toEqual(new Array(100).fill(i))
      }
    })

    it('answers null for a missing key', async () => {
      expect(await (await open()).get('missing', soon())).toBeNull()
    })

    it('treats the empty string as a value, not a miss', async () => {
      await backend().set('empty', new Uint8Array(0))
      const got = await value(await open(), 'empty')
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
        const got = await value(opened, key)
        expect(got === null ? null : [...got], JSON.stringify(key)).toEqual([i])
      }
    })

    it('carries a 1 MiB value whole', async () => {
      const big = Uint8Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31 + 7) & 0xff)
      await backend().set('big', big)
      const got = await value(await open(), 'big')
      expect(Buffer.from(got as Uint8Array).equals(Buffer.from(big))).toBe(true)
    })

    it('rejects with a BackendReplyError, neither timeout nor outage, when Redis answers an error', async () => {
      await backend().setWrongType('list')
      const error = await (await open()).get('list', soon()).catch((err: unknown) => err)
      expect(error).toBeInstanceOf(BackendReplyError)
      expect(error).not.toBeInstanceOf(BackendTimeoutError)
      expect(error).not.toBeInstanceOf(BackendUnavailableError)
      expect((error as Error).message).toMatch(/WRONGTYPE/)
    })

    it('rejects with a BackendTimeoutError when no answer comes within the command timeout', async () => {
      const opened = await open()
      await backend().set('k', Uint8Array.of(1))
      expect(await opened.get('k', soon())).not.toBeNull()
      restore = await backend().stall()
      await expect(opened.get('k', soon())).rejects.toBeInstanceOf(BackendTimeoutError)
    })

    it('fails with a BackendTimeoutError, reading nothing, when the deadline has already passed', async () => {
      await backend().set('k', Uint8Array.of(1))
      const opened = await open()
      await expect(opened.get('k', performance.now() - 1)).rejects.toBeInstanceOf(
        BackendTimeoutError,
      )
      // Still usable: the refused read left nothing behind.
      expect([...((await value(opened, 'k')) ?? [])]).toEqual([1])
    })

    it('gives up at the deadline when it comes before the command timeout', async () => {
      const opened = await open(20_000)
      await backend().set('k', Uint8Array.of(1))
      expect(await value(opened, 'k')).not.toBeNull()
      restore = await backend().stall()
      const started = performance.now()
      await expect(opened.get('k', started + 200)).rejects.toBeInstanceOf(BackendTimeoutError)
      // Generous: without the deadline the read would wait the 20 s command timeout.
      expect(performance.now() - started).toBeLessThan(10_000)
    })

    it('rejects with a BackendUnavailableError when the backend cannot be reached', async () => {
      const opened = await open()
      restore = await backend().takeDown()
      await expect(opened.get('k', soon())).rejects.toBeInstanceOf(BackendUnavailableError)
    })

    it('refuses reads once closed', async () => {
      const opened = await open()
      await opened.close()
      expect(opened.state()).toBe('closed')
      await expect(opened.get('k', soon())).rejects.toBeInstanceOf(BackendUnavailableError)
    })
  })
}
