import { getResponse, HttpResponse, http } from 'msw'
import { setupServer } from 'msw/node'
import { percentDecodeToBytes } from '../../functions/app.js'

/**
 * An Upstash-compatible REST endpoint on msw, for the one backend no real peer
 * can stand in for here (the hosted REST API). It follows the documented
 * contract: `{url}/{command}/{arg}/…` with percent-encoded arguments, a POST
 * body appended as the last argument, `Authorization: Bearer {token}`,
 * `{ "result": … }` with 200 or `{ "error": … }` with 400 (Redis errors) or
 * 401 (bad token), and every string base64-encoded when the request carries
 * `Upstash-Encoding: base64`. Only GET, SET and FLUSHALL are implemented.
 */
export type UpstashRest = {
  readonly url: string
  readonly token: string
  /** Requests received, in order. */
  readonly requests: Request[]
  set(key: string, value: Uint8Array): void
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

type Entry = { type: 'string'; value: Uint8Array } | { type: 'list' }

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
    const path = new URL(request.url).pathname.slice(1)
    const args = path.split('/').map(percentDecodeToBytes)
    if (args.some((arg) => arg === null)) {
      return HttpResponse.json({ error: 'ERR bad percent-encoding' }, { status: 400 })
    }
    if (request.method === 'POST') {
      args.push(Buffer.from(await request.arrayBuffer()).toString('latin1'))
    }
    const base64 = request.headers.get('upstash-encoding') === 'base64'
    return execute(args as string[], base64)
  })

  const execute = (args: string[], base64: boolean): Response => {
    const [command = '', ...rest] = args
    const wrongArity = () =>
      HttpResponse.json(
        { error: `ERR wrong number of arguments for '${command}' command` },
        { status: 400 },
      )
    switch (command.toLowerCase()) {
      case 'get': {
        if (rest.length !== 1) return wrongArity()
        const entry = store.get(rest[0] as string)
        if (entry === undefined) return HttpResponse.json({ result: null })
        if (entry.type !== 'string') {
          return HttpResponse.json(
            { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
            { status: 400 },
          )
        }
        const bytes = Buffer.from(entry.value)
        return HttpResponse.json({
          result: base64 ? bytes.toString('base64') : bytes.toString('utf8'),
        })
      }
      case 'set': {
        if (rest.length !== 2) return wrongArity()
        store.set(rest[0] as string, {
          type: 'string',
          value: Buffer.from(rest[1] as string, 'latin1'),
        })
        // Status replies are the one thing base64 mode leaves as they are.
        return HttpResponse.json({ result: 'OK' })
      }
      case 'flushall':
        store.clear()
        return HttpResponse.json({ result: 'OK' })
      default:
        return HttpResponse.json(
          { error: `ERR unknown command '${command}', with args beginning with: ` },
          { status: 400 },
        )
    }
  }

  const server = setupServer(handler)

  return {
    url,
    token,
    requests,
    set(key, value) {
      store.set(key, { type: 'string', value: Uint8Array.from(value) })
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
