import {
  BackendError,
  BackendReplyError,
  BackendTimeoutError,
  BackendUnavailableError,
} from '../errors.js'
import { timeLeft } from './deadline.js'
import { type Loaded, type RedisSource, ttlFromPttl } from './source.js'

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
// fatal: a key that is not UTF-8 must not be "repaired" into another key;
// ignoreBOM: a key may start with the bytes of a byte-order mark.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Reads over the Upstash REST protocol, for runtimes without TCP. A read is
 * GET and PTTL in one `POST {url}/pipeline` (one round trip; the commands run
 * in order, so the TTL is the value's own unless another client's write lands
 * between them). Values are asked for base64-encoded (`Upstash-Encoding:
 * base64`), since JSON strings cannot carry arbitrary bytes. Stateless: every
 * read is one fetch, so it can be shared by every request of an isolate.
 *
 * The pipeline's commands are JSON strings, which Upstash takes as UTF-8: a
 * key whose bytes are not UTF-8 cannot be written there. Such a key goes in
 * the path instead, percent-encoded byte by byte, as `GET {url}/get/{key}`
 * then `GET {url}/pttl/{key}`: two round trips, in that order for the same
 * reason, within the same deadline.
 */
export function createUpstashRestSource(options: UpstashRestSourceOptions): RedisSource {
  const base = options.url.replace(/\/+$/, '')
  const timeoutMs = options.commandTimeoutMs ?? 1000
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init))
  const headers = { Authorization: `Bearer ${options.token}`, 'Upstash-Encoding': 'base64' }
  let closed = false

  /** One request's JSON reply, within the time left. */
  const call = async (url: string, init: RequestInit, deadline: number): Promise<Reply> => {
    // AbortSignal.timeout takes whole milliseconds.
    const ms = Math.ceil(Math.min(timeoutMs, timeLeft(deadline)))
    const signal = AbortSignal.timeout(ms)
    let response: Response
    try {
      response = await doFetch(url, { ...init, signal })
    } catch (err) {
      throw fetchFailure(err, signal, ms)
    }
    let body: unknown
    try {
      // Not every fetch ties the body to the signal: the timeout covers it here.
      body = await untilAborted(response.json(), signal)
    } catch (err) {
      if (signal.aborted) {
        response.body?.cancel().catch(() => {})
        throw fetchFailure(err, signal, ms)
      }
      throw statusFailure(response.status, `unreadable reply (HTTP ${response.status})`)
    }
    return { status: response.status, body }
  }

  return {
    async get(key, deadline) {
      if (closed) throw new BackendUnavailableError('REST source is closed')
      const text = utf8(key)
      if (text !== undefined) {
        const init = {
          method: 'POST',
          headers: { ...headers, 'Content-Type': 'application/json' },
          body: JSON.stringify([
            ['GET', text],
            ['PTTL', text],
          ]),
        }
        const reply = await call(`${base}/pipeline`, init, deadline)
        const [get, pttl] = pipelineResults(reply)
        return loaded(get, pttl)
      }
      const path = percentEncodeBytes(key)
      const get = result(await call(`${base}/get/${path}`, { method: 'GET', headers }, deadline))
      if (get === null) return null
      return loaded(
        get,
        result(await call(`${base}/pttl/${path}`, { method: 'GET', headers }, deadline)),
      )
    },
    state() {
      return closed ? 'closed' : 'ready'
    },
    async close() {
      closed = true
    },
  }
}

type Reply = { status: number; body: unknown }

/** A byte string (one char per byte) as the text whose UTF-8 it is, or undefined when it is not UTF-8. */
export function utf8(key: string): string | undefined {
  const bytes = new Uint8Array(key.length)
  let ascii = true
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i)
    bytes[i] = code
    if (code > 0x7f) ascii = false
  }
  // Plain ASCII, the common case, is its own UTF-8.
  if (ascii) return key
  try {
    return UTF8.decode(bytes)
  } catch {
    return undefined
  }
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

/**
 * The pipeline answers 200 with one `{ result }` or `{ error }` per command;
 * a request refused as a whole (bad token, malformed) is one `{ error }`.
 */
function pipelineResults(reply: Reply): [unknown, unknown] {
  const { status, body } = reply
  if (!Array.isArray(body)) {
    const error = errorOf(body)
    if (error !== undefined) throw statusFailure(status, error)
    throw statusFailure(status, `expected an array of replies (HTTP ${status})`)
  }
  if (status !== 200) throw statusFailure(status, `HTTP ${status}`)
  if (body.length !== 2) throw new BackendError(`expected 2 replies, got ${body.length}`)
  return [commandResult(body[0]), commandResult(body[1])]
}

/** One path-form command's reply: `{ "result": … }` with 200, `{ "error": message }` otherwise. */
function result(reply: Reply): unknown {
  const error = errorOf(reply.body)
  if (error !== undefined) throw statusFailure(reply.status, error)
  if (reply.status !== 200) throw statusFailure(reply.status, `HTTP ${reply.status}`)
  return commandResult(reply.body)
}

function commandResult(entry: unknown): unknown {
  const error = errorOf(entry)
  // An error inside a 200 reply is Redis's own (WRONGTYPE and the like).
  if (error !== undefined) throw new BackendReplyError(error)
  if (typeof entry !== 'object' || entry === null || !('result' in entry)) {
    throw new BackendError('reply has neither result nor error')
  }
  return entry.result
}

function errorOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null || !('error' in body)) return undefined
  return typeof body.error === 'string' ? body.error : JSON.stringify(body.error)
}

/** GET's result (base64 or null) and PTTL's (an integer) as a Loaded. */
function loaded(get: unknown, pttl: unknown): Loaded | null {
  if (get === null) return null
  if (typeof get !== 'string') {
    throw new BackendError(`expected a string or null, got ${JSON.stringify(get)}`)
  }
  if (typeof pttl !== 'number' || !Number.isInteger(pttl)) {
    throw new BackendError(`expected PTTL to answer an integer, got ${JSON.stringify(pttl)}`)
  }
  return { value: fromBase64(get), ttlMs: ttlFromPttl(pttl) }
}

/**
 * 400 is Redis's own error (WRONGTYPE and the like) and 401 a wrong token:
 * retrying will not help. Throttling and server-side failures say the service
 * is not there for us now.
 */
function statusFailure(status: number, message: string): BackendError {
  if (status === 429 || status >= 500) return new BackendUnavailableError(message)
  if (status === 400) return new BackendReplyError(message)
  return new BackendError(status === 401 ? `unauthorized: ${message}` : message)
}

function fetchFailure(err: unknown, signal: AbortSignal, timeoutMs: number): BackendError {
  if (signal.aborted) {
    return new BackendTimeoutError(`REST read timed out after ${Math.ceil(timeoutMs)} ms`, {
      cause: err,
    })
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
