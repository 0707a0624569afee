import { HttpResponse } from 'msw'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createUpstashRest } from '../../test/harness/upstash-rest.js'
import {
  BackendError,
  BackendReplyError,
  BackendTimeoutError,
  BackendUnavailableError,
} from '../errors.js'
import type { RedisSource } from './source.js'
import { createUpstashRestSource, percentEncodeBytes, utf8 } from './upstash-rest-source.js'

const rest = createUpstashRest()
let source: RedisSource
let restore: (() => void) | undefined

beforeAll(() => rest.listen())
afterAll(() => rest.close())

beforeEach(() => {
  rest.flush()
  source = createUpstashRestSource({
    url: `${rest.url}/`,
    token: rest.token,
    commandTimeoutMs: 300,
  })
})

afterEach(() => {
  restore?.()
  restore = undefined
})

// Far enough ahead that only the command timeout (300 ms) or the test's own deadline matters.
const soon = () => performance.now() + 10_000
const read = (key: string) => source.get(key, soon())
const failure = (key = 'k') => read(key).catch((err: unknown) => err)
const b64 = (text: string) => Buffer.from(text).toString('base64')
const bytes = (text: string) => Buffer.from(text, 'utf8').toString('latin1')

describe('createUpstashRestSource', () => {
  it('sends GET and PTTL in one POST {url}/pipeline with the bearer token, asking for base64', async () => {
    rest.set('greeting', new TextEncoder().encode('hello'))
    const loaded = await read('greeting')
    expect(new TextDecoder().decode(loaded?.value)).toBe('hello')
    expect(loaded?.ttlMs).toBeNull()
    expect(rest.requests).toHaveLength(1)
    const [request] = rest.requests
    expect(request?.method).toBe('POST')
    expect(request?.url).toBe(`${rest.url}/pipeline`)
    expect(await request?.json()).toEqual([
      ['GET', 'greeting'],
      ['PTTL', 'greeting'],
    ])
    expect(request?.headers.get('authorization')).toBe(`Bearer ${rest.token}`)
    expect(request?.headers.get('upstash-encoding')).toBe('base64')
  })

  it('answers the time the key has left in Redis with its value', async () => {
    rest.set('brief', Uint8Array.of(1), 60_000)
    const loaded = await read('brief')
    expect(loaded?.ttlMs).toBeGreaterThan(50_000)
    expect(loaded?.ttlMs).toBeLessThanOrEqual(60_000)
  })

  it('answers a TTL of 0 when the key is gone by the PTTL (-2 after a value)', async () => {
    restore = rest.override(() => HttpResponse.json([{ result: b64('v') }, { result: -2 }]))
    expect(await read('k')).toEqual({ value: new TextEncoder().encode('v'), ttlMs: 0 })
  })

  it('sends a UTF-8 key in the pipeline as the text its bytes encode', async () => {
    const key = bytes('ключ-🔑')
    rest.set(key, Uint8Array.of(5))
    expect((await read(key))?.value).toEqual(Uint8Array.of(5))
    expect(await rest.requests[0]?.json()).toEqual([
      ['GET', 'ключ-🔑'],
      ['PTTL', 'ключ-🔑'],
    ])
  })

  it('sends the keys "." and ".." in the pipeline, where no URL parser resolves them away', async () => {
    rest.set('..', Uint8Array.of(7))
    expect((await read('..'))?.value).toEqual(Uint8Array.of(7))
    expect(rest.requests[0]?.url).toBe(`${rest.url}/pipeline`)
  })

  it('sends a key that is not UTF-8 in the path, percent-encoded byte by byte: GET, then PTTL', async () => {
    const key = 'a/b %\u00ff\u0000?#'
    rest.set(key, Uint8Array.of(9), 60_000)
    const loaded = await read(key)
    expect(loaded?.value).toEqual(Uint8Array.of(9))
    expect(loaded?.ttlMs).toBeGreaterThan(50_000)
    expect(rest.requests.map((request) => `${request.method} ${request.url}`)).toEqual([
      `GET ${rest.url}/get/a%2Fb%20%25%FF%00%3F%23`,
      `GET ${rest.url}/pttl/a%2Fb%20%25%FF%00%3F%23`,
    ])
  })

  it('asks no PTTL for a key that is not UTF-8 and does not exist', async () => {
    expect(await read('\u00ff')).toBeNull()
    expect(rest.requests).toHaveLength(1)
  })

  it.each([
    ['in the pipeline', 'list'],
    ['in the path', '\u00ff'],
  ])(
    'rejects an error reply from Redis (WRONGTYPE) %s with a BackendReplyError',
    async (_, key) => {
      rest.setList(key)
      const error = await failure(key)
      expect(error).toBeInstanceOf(BackendReplyError)
      expect((error as Error).message).toMatch(/^WRONGTYPE/)
    },
  )

  it('fails at once, sending nothing, when the deadline has already passed', async () => {
    const error = await source.get('k', performance.now() - 1).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(BackendTimeoutError)
    expect(rest.requests).toHaveLength(0)
  })

  it('gives up at the deadline when it comes before the command timeout', async () => {
    const patient = createUpstashRestSource({
      url: rest.url,
      token: rest.token,
      commandTimeoutMs: 20_000,
    })
    const resume = rest.stall()
    try {
      const started = performance.now()
      const error = await patient.get('k', started + 200).catch((err: unknown) => err)
      expect(error).toBeInstanceOf(BackendTimeoutError)
      // Generous: without the deadline it would wait the 20 s command timeout.
      expect(performance.now() - started).toBeLessThan(10_000)
    } finally {
      resume()
    }
  })

  it('rejects a wrong token (401) with a BackendError that says so', async () => {
    const wrong = createUpstashRestSource({ url: rest.url, token: 'wrong' })
    const error = await wrong.get('k', soon()).catch((err: unknown) => err)
    expect(error).toBeInstanceOf(BackendError)
    expect(error).not.toBeInstanceOf(BackendUnavailableError)
    expect((error as Error).message).toMatch(/unauthorized/i)
  })

  it.each([500, 502, 503, 429])(
    'treats HTTP %i as the backend being unavailable',
    async (status) => {
      restore = rest.override(() => HttpResponse.json({ error: 'ERR service' }, { status }))
      const error = await failure()
      expect(error).toBeInstanceOf(BackendUnavailableError)
      expect((error as Error).message).toBe('ERR service')
    },
  )

  it('treats a 5xx without a JSON body as unavailable, naming the status', async () => {
    restore = rest.override(() => new HttpResponse('<html>bad gateway</html>', { status: 502 }))
    const error = await failure()
    expect(error).toBeInstanceOf(BackendUnavailableError)
    expect((error as Error).message).toContain('502')
  })

  it.each([
    ['a reply that is not JSON', () => new HttpResponse('OK', { status: 200 })],
    ['a reply that is not an array', () => HttpResponse.json({ result: null })],
    ['an array of one reply', () => HttpResponse.json([{ result: null }])],
    [
      'an entry with neither result nor error',
      () => HttpResponse.json([{ nothing: 1 }, { result: -1 }]),
    ],
    [
      'a GET result that is not a string',
      () => HttpResponse.json([{ result: 42 }, { result: -1 }]),
    ],
    [
      'a GET result that is not base64',
      () => HttpResponse.json([{ result: 'not base64!' }, { result: -1 }]),
    ],
    [
      'a PTTL result that is not an integer',
      () => HttpResponse.json([{ result: b64('v') }, { result: 'soon' }]),
    ],
  ])('rejects %s with a BackendError', async (_, respond) => {
    restore = rest.override(respond)
    const error = await failure()
    expect(error).toBeInstanceOf(BackendError)
    expect(error).not.toBeInstanceOf(BackendUnavailableError)
    expect(error).not.toBeInstanceOf(BackendTimeoutError)
    expect(error).not.toBeInstanceOf(BackendReplyError)
  })

  it('counts a body that stops arriving against the timeout', async () => {
    restore = rest.override(
      () =>
        new HttpResponse(
          new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode('{"result":'))
            },
          }),
          { status: 200, headers: { 'Content-Type': 'application/json' } },
        ),
    )
    expect(await failure()).toBeInstanceOf(BackendTimeoutError)
  })
})

describe('utf8', () => {
  it.each([
    ['plain', 'plain'],
    [bytes('ключ'), 'ключ'],
    // A leading byte-order mark is part of the key, not a marker to drop.
    [bytes('\ufeffk'), '\ufeffk'],
    ['\u00ff', undefined],
    ['\u00c3', undefined],
  ])('reads the bytes of %j as %j', (key, text) => {
    expect(utf8(key)).toBe(text)
  })
})

describe('percentEncodeBytes', () => {
  it.each([
    ['plain-key_1.~', 'plain-key_1.~'],
    ['a/b', 'a%2Fb'],
    ['%', '%25'],
    ['\u0000\u00ff', '%00%FF'],
    ['', ''],
  ])('encodes %j as %j', (key, encoded) => {
    expect(percentEncodeBytes(key)).toBe(encoded)
  })
})
