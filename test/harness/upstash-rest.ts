import { getResponse, HttpResponse, http } from 'msw'
import { setupServer } from 'msw/node'
import { percentDecodeToBytes } from '../../functions/app.js'

/**
 * An Upstash-compatible REST endpoint on msw, for the one backend no real peer
 * can stand in for here (the hosted REST API). It follows the documented
 * contract (https://upstash.com/docs/redis/features/restapi):
 * `{url}/{command}/{arg}/…` with percent-encoded arguments and a POST body
 * appended as the last argument; `POST {url}/pipeline` with a JSON array of
 * commands (each an array of strings and numbers, strings taken as UTF-8),
 * answered 200 with one `{ "result": … }` or `{ "error": … }` per command, in
 * order; `Authorization: Bearer {token}`, else 401 (for a pipeline too); a
 * single command's `{ "result": … }` with 200 or `{ "error": … }` with 400
 * (Redis errors, malformed requests); every string in a result
 * base64-encoded, except `OK`, when the request carries `Upstash-Encoding:
 * base64`. Only GET, PTTL, SET (with PX) and FLUSHALL are implemented; keys
 * expire as in Redis, by the wall clock.
 */
export type UpstashRest = {
  readonly url: string
  readonly token: string
  /** Requests received, in order. */
  readonly requests: Request[]
  /** Stores a string value; with `pxMs`, the key expires that many milliseconds from now. */
  set(key: string, value: Uint8Array, pxMs?: number): void
  /** A key of another type, so GET answers WRONGTYPE. */
  setList(key: string): void
  flush(): void
  /** Until the returned function is called, requests are accepted and never answered. */
  stall(): () => void
  /** Until the returned function is called, every request fails at the network level. */
  takeDown(): () => void
  /** Answer every request with this instead, until the returned function is called. */
  override(respond: (request: Request) => Response | Promise<Response>): () => void
  /** Answers one request directly, for a runtime msw cannot intercept (workerd's outbound fetch). */
  respond(request: Request): Promise<Response>
  /** Starts intercepting fetch in this process. */
  listen(): void
  close(): void
}

type Entry = ({ type: 'string'; value: Uint8Array } | { type: 'list' }) & {
  /** Date.now() at which the key expires; none when undefined. */
  expiresAt?: number | undefined
}

/** One command's outcome, as a reply carries it or a pipeline's array holds it. */
type Outcome = { result: unknown } | { error: string }

export function createUpstashRest(
  url = 'https://eu1-test-12345.upstash.io',
  token = 'test-token',
): UpstashRest {
  const store = new Map<string, Entry>()
  const requests: Request[] = []
  let stalled: Promise<void> | undefined
  let down = false
  let replacement: ((request: Request) => Response | Promise<Response>) | undefined

  // A RegExp without groups: msw would percent-decode a `*` match as UTF-8 and
  // throw on binary keys (`%FF`); the handler decodes the path to bytes itself.
  const origin = new RegExp(`^${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/`)
  const handler = http.all(origin, async ({ request }) => {
    requests.push(request.clone())
    if (down) return HttpResponse.error()
    if (replacement !== undefined) return replacement(request)
    if (stalled !== undefined) await stalled
    if (request.headers.get('authorization') !== `Bearer ${token}`) {
      return HttpResponse.json({ error: 'Unauthorized' }, { status: 401 })
    }
    const base64 = request.headers.get('upstash-encoding') === 'base64'
    const path = new URL(request.url).pathname.slice(1)
    if (path === 'pipeline' && request.method === 'POST') {
      const commands = parsePipeline(await request.text())
      if (commands === undefined) {
        return HttpResponse.json({ error: 'ERR invalid pipeline request' }, { status: 400 })
      }
      return HttpResponse.json(commands.map((args) => encode(execute(args), base64)))
    }
    const args = path.split('/').map(percentDecodeToBytes)
    if (args.some((arg) => arg === null)) {
      return HttpResponse.json({ error: 'ERR bad percent-encoding' }, { status: 400 })
    }
    if (request.method === 'POST') {
      args.push(Buffer.from(await request.arrayBuffer()).toString('latin1'))
    }
    const outcome = encode(execute(args as string[]), base64)
    return HttpResponse.json(outcome, { status: 'error' in outcome ? 400 : 200 })
  })

  /** The live entry of `key`; an expired one is removed first, as Redis does on access. */
  const lookup = (key: string): Entry | undefined => {
    const entry = store.get(key)
    if (entry?.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key)
      return undefined
    }
    return entry
  }

  /** Runs one command; arguments are byte strings (one char per byte). */
  const execute = (args: string[]): Outcome => {
    const [command = '', ...rest] = args
    const wrongArity = { error: `ERR wrong number of arguments for '${command}' command` }
    switch (command.toLowerCase()) {
      case 'get': {
        if (rest.length !== 1) return wrongArity
        const entry = lookup(rest[0] as string)
        if (entry === undefined) return { result: null }
        if (entry.type !== 'string') {
          return { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' }
        }
        return { result: Buffer.from(entry.value) }
      }
      case 'pttl': {
        if (rest.length !== 1) return wrongArity
        const entry = lookup(rest[0] as string)
        if (entry === undefined) return { result: -2 }
        if (entry.expiresAt === undefined) return { result: -1 }
        return { result: entry.expiresAt - Date.now() }
      }
      case 'set': {
        const [key, value, option, amount] = rest
        if (key === undefined || value === undefined) return wrongArity
        let expiresAt: number | undefined
        if (option !== undefined) {
          if (option.toLowerCase() !== 'px' || rest.length !== 4)
            return { error: 'ERR syntax error' }
          const ms = Number(amount)
          if (!Number.isInteger(ms) || ms <= 0) {
            return { error: "ERR invalid expire time in 'set' command" }
          }
          expiresAt = Date.now() + ms
        }
        store.set(key, { type: 'string', value: Buffer.from(value, 'latin1'), expiresAt })
        return { result: 'OK' }
      }
      case 'flushall':
        store.clear()
        return { result: 'OK' }
      default:
        return { error: `ERR unknown command '${command}', with args beginning with: ` }
    }
  }

  const server = setupServer(handler)

  return {
    url,
    token,
    requests,
    set(key, value, pxMs) {
      const expiresAt = pxMs === undefined ? undefined : Date.now() + pxMs
      store.set(key, { type: 'string', value: Uint8Array.from(value), expiresAt })
    },
    setList(key) {
      store.set(key, { type: 'list' })
    },
    flush() {
      store.clear()
      requests.length = 0
    },
    stall() {
      let resume!: () => void
      stalled = new Promise((resolve) => {
        resume = resolve
      })
      return () => {
        stalled = undefined
        resume()
      }
    },
    takeDown() {
      down = true
      return () => {
        down = false
      }
    },
    override(respond) {
      replacement = respond
      return () => {
        replacement = undefined
      }
    },
    async respond(request) {
      return (
        (await getResponse([handler], request)) ??
        HttpResponse.json({ error: 'not an Upstash URL' }, { status: 404 })
      )
    },
    listen() {
      server.listen({ onUnhandledRequest: 'error' })
    },
    close() {
      server.close()
    },
  }
}

/**
 * A pipeline body as commands of byte-string arguments: strings are UTF-8 (as
 * JSON text is), numbers their decimal form. Undefined unless it is an array
 * of non-empty arrays of strings and numbers.
 */
function parsePipeline(text: string): string[][] | undefined {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!Array.isArray(body)) return undefined
  const commands: string[][] = []
  for (const command of body) {
    if (!Array.isArray(command) || command.length === 0) return undefined
    const args: string[] = []
    for (const arg of command) {
      if (typeof arg === 'string') args.push(Buffer.from(arg, 'utf8').toString('latin1'))
      else if (typeof arg === 'number') args.push(String(arg))
      else return undefined
    }
    commands.push(args)
  }
  return commands
}

/** Bulk strings as UTF-8 text, or base64 when asked for; status replies (`OK`) and numbers as they are. */
function encode(outcome: Outcome, base64: boolean): Outcome {
  if (!('result' in outcome) || !Buffer.isBuffer(outcome.result)) return outcome
  return { result: base64 ? outcome.result.toString('base64') : outcome.result.toString('utf8') }
}
