import { BackendError, BackendTimeoutError, BackendUnavailableError } from '../errors.js'
import type { RedisSource } from './source.js'

export type UpstashRestSourceOptions = {
  /** The database's REST URL, `https://…` (no trailing slash needed). */
  url: string
  /** Sent as `Authorization: Bearer {token}`. */
  token: string
  /** @default 1000 */
  commandTimeoutMs?: number
  /** The runtime's fetch; tests and platforms with a custom one pass theirs. @default globalThis.fetch */
  fetch?: typeof fetch
}

// Unreserved characters (RFC 3986) go as they are; every other byte is %XX, so
// any byte string survives the trip through the path.
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/
const HEX = '0123456789ABCDEF'

/**
 * `GET {url}/get/{key}` over the Upstash REST protocol, for runtimes without
 * TCP. Values are asked for base64-encoded (`Upstash-Encoding: base64`), since
 * JSON strings cannot carry arbitrary bytes. Stateless: every read is one
 * fetch, so it can be shared by every request of an isolate.
 */
export function createUpstashRestSource(options: UpstashRestSourceOptions): RedisSource {
  const base = options.url.replace(/\/+$/, '')
  const timeoutMs = options.commandTimeoutMs ?? 1000
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init))
  const headers = { Authorization: `Bearer ${options.token}`, 'Upstash-Encoding': 'base64' }
  let closed = false

  return {
    async get(key) {
      if (closed) throw new BackendUnavailableError('REST source is closed')
      const signal = AbortSignal.timeout(timeoutMs)
      let response: Response
      try {
        response = await doFetch(requestUrl(base, key), requestInit(key, headers, signal))
      } catch (err) {
        throw fetchFailure(err, signal, timeoutMs)
      }
      let body: unknown
      try {
        // Not every fetch ties the body to the signal: the timeout covers it here.
        body = await untilAborted(response.json(), signal)
      } catch (err) {
        if (signal.aborted) {
          response.body?.cancel().catch(() => {})
          throw fetchFailure(err, signal, timeoutMs)
        }
        throw statusFailure(response.status, `unreadable reply (HTTP ${response.status})`)
      }
      return decode(response.status, body)
    },
    state() {
      return closed ? 'closed' : 'ready'
    },
    async close() {
      closed = true
    },
  }
}

/**
 * The key is the last path segment. `.` and `..` cannot be: URL parsers
 * resolve them (even as `%2E`) before the request leaves, so those two go as
 * the body of a POST, which Upstash appends as the command's last argument.
 */
function requestUrl(base: string, key: string): string {
  if (key === '.' || key === '..') return `${base}/get`
  return `${base}/get/${percentEncodeBytes(key)}`
}

function requestInit(key: string, headers: Record<string, string>, signal: AbortSignal) {
  if (key === '.' || key === '..') return { method: 'POST', headers, body: key, signal }
  return { method: 'GET', headers, signal }
}

/** A byte string (one char per byte) as a path segment: every byte outside the unreserved set as %XX. */
export function percentEncodeBytes(key: string): string {
  if (UNRESERVED.test(key)) return key
  let out = ''
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    const char = key[i] as string
    if (UNRESERVED.test(char)) out += char
    else out += `%${HEX[code >> 4]}${HEX[code & 15]}`
  }
  return out
}

/** `{ "result": base64 | null }` on success, `{ "error": message }` otherwise. */
function decode(status: number, body: unknown): Uint8Array | null {
  const reply = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
  if (typeof reply.error === 'string') throw statusFailure(status, reply.error)
  if (status !== 200) throw statusFailure(status, `HTTP ${status}`)
  if (!('result' in reply)) throw new BackendError('reply has neither result nor error')
  const result = reply.result
  if (result === null) return null
  if (typeof result !== 'string') {
    throw new BackendError(`expected a string or null, got ${JSON.stringify(result)}`)
  }
  return fromBase64(result)
}

/**
 * 400 is Redis's own error (WRONGTYPE and the like) and 401 a wrong token:
 * retrying will not help, so BackendError. Throttling and server-side failures
 * say the service is not there for us now.
 */
function statusFailure(status: number, message: string): BackendError {
  if (status === 429 || status >= 500) return new BackendUnavailableError(message)
  return new BackendError(status === 401 ? `unauthorized: ${message}` : message)
}

function fetchFailure(err: unknown, signal: AbortSignal, timeoutMs: number): BackendError {
  if (signal.aborted) {
    return new BackendTimeoutError(`REST GET timed out after ${timeoutMs} ms`, { cause: err })
  }
  const message = err instanceof Error ? err.message : String(err)
  return new BackendUnavailableError(message, { cause: err })
}

function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

function fromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0 || !BASE64.test(text)) {
    throw new BackendError('reply is not base64 although base64 was asked for')
  }
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
