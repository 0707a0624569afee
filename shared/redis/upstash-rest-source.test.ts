import { HttpResponse } from 'msw'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { createUpstashRest } from '../../test/harness/upstash-rest.js'
import { BackendError, BackendTimeoutError, BackendUnavailableError } from '../errors.js'
import type { RedisSource } from './source.js'
import { createUpstashRestSource, percentEncodeBytes } from './upstash-rest-source.js'

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

const failure = (key = 'k') => source.get(key).catch((err: unknown) => err)

describe('createUpstashRestSource', () => {
  it('sends GET {url}/get/{key} with the bearer token and asks for base64', async () => {
    rest.set('greeting', new TextEncoder().encode('hello'))
    expect(new TextDecoder().decode((await source.get('greeting')) ?? undefined)).toBe('hello')
    const [request] = rest.requests
    expect(request?.method).toBe('GET')
    expect(request?.url).toBe(`${rest.url}/get/greeting`)
    expect(request?.headers.get('authorization')).toBe(`Bearer ${rest.token}`)
    expect(request?.headers.get('upstash-encoding')).toBe('base64')
  })

  it('percent-encodes every byte of the key outside the unreserved set', async () => {
    await source.get('a/b %\u00ff\u0000?#')
    expect(rest.requests[0]?.url).toBe(`${rest.url}/get/a%2Fb%20%25%FF%00%3F%23`)
  })

  it('sends the keys "." and ".." as a POST body, since URLs resolve them away', async () => {
    rest.set('..', Uint8Array.of(7))
    expect(await source.get('..')).toEqual(Uint8Array.of(7))
    expect(rest.requests[0]?.method).toBe('POST')
    expect(rest.requests[0]?.url).toBe(`${rest.url}/get`)
    expect(await rest.requests[0]?.text()).toBe('..')
  })

  it('rejects a wrong token (401) with a BackendError that says so', async () => {
    const wrong = createUpstashRestSource({ url: rest.url, token: 'wrong' })
    const error = await wrong.get('k').catch((err: unknown) => err)
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
    ['a reply with neither result nor error', () => HttpResponse.json({ nothing: 1 })],
    ['a result that is not a string', () => HttpResponse.json({ result: 42 })],
    ['a result that is not base64', () => HttpResponse.json({ result: 'not base64!' })],
  ])('rejects %s with a BackendError', async (_, respond) => {
    restore = rest.override(respond)
    const error = await failure()
    expect(error).toBeInstanceOf(BackendError)
    expect(error).not.toBeInstanceOf(BackendUnavailableError)
    expect(error).not.toBeInstanceOf(BackendTimeoutError)
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
