import { dirname } from 'node:path'
import type { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { unstable_readConfig } from 'wrangler'
import { type RespValue, sendCommand } from '../harness/redis-server.js'
import { createUpstashRest } from '../harness/upstash-rest.js'

/** CACHE_GLOBAL_EXPIRY of the `PROXY_SHORT_EXPIRY` Worker. */
export const SHORT_EXPIRY_MS = 1000

type PoolOptions = Parameters<typeof cloudflareTest>[0]
type Inject = Parameters<Extract<PoolOptions, (...args: never[]) => unknown>>[0]['inject']

/**
 * The workerd project: the tests run in workerd with wrangler.toml's
 * compatibility settings, and talk to the bundled Worker through service
 * bindings, one Worker per backend situation, each configured the way a
 * deployment is (string bindings read by loadConfig). `REDIS` lets a test send
 * commands to the real redis-server through the Node side.
 */
export function workerdPoolOptions({ inject }: { inject: Inject }) {
  const wrangler = unstable_readConfig({ config: 'wrangler.toml' })
  const vars = Object.fromEntries(
    Object.entries(wrangler.vars).map(([name, value]) => [name, String(value)]),
  )
  const redisPort = inject('redisPort')
  // The hosted REST API cannot run here: the REST Workers' outbound fetches are
  // answered by the msw Upstash handlers, called directly on the Node side.
  const rest = createUpstashRest()
  const upstash = async (request: Request) => rest.respond(await asGlobalRequest(request))
  const restBindings = { UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: rest.token }
  const proxy = (
    name: string,
    bindings: Record<string, string>,
    outboundService?: (request: Request) => Promise<Response>,
  ) => ({
    name,
    modules: true,
    scriptPath: inject('workerBundle'),
    modulesRoot: dirname(inject('workerBundle')),
    compatibilityDate: wrangler.compatibility_date,
    compatibilityFlags: wrangler.compatibility_flags,
    bindings: { ...vars, LOG_LEVEL: 'silent', ...bindings },
    ...(outboundService === undefined ? {} : { outboundService }),
  })
  return {
    wrangler: { configPath: './wrangler.toml' },
    miniflare: {
      serviceBindings: {
        PROXY: 'proxy',
        PROXY_CLOSED: 'proxy-closed',
        PROXY_SILENT: 'proxy-silent',
        PROXY_BAD_CONFIG: 'proxy-bad-config',
        PROXY_REST: 'proxy-rest',
        PROXY_REST_BAD_TOKEN: 'proxy-rest-bad-token',
        PROXY_REST_SILENT: 'proxy-rest-silent',
        PROXY_SHORT_EXPIRY: 'proxy-short-expiry',
        PROXY_AUTH: 'proxy-auth',
        PROXY_ACL_FILE: 'proxy-acl-file',
        UPSTASH: async (request: Request) => {
          const { op, key = '', value = '', px } = (await request.json()) as Record<string, string>
          if (op === 'set') {
            rest.set(key, Buffer.from(value, 'latin1'), px === undefined ? undefined : Number(px))
          } else if (op === 'setList') rest.setList(key)
          else if (op === 'flush') rest.flush()
          else if (op !== 'count') return new Response(`unknown op ${op}`, { status: 400 })
          return Response.json({ requests: rest.requests.length })
        },
        REDIS: async (request: Request) => {
          const { args } = (await request.json()) as { args: string[] }
          const reply = await sendCommand(
            redisPort,
            args.map((arg) => Buffer.from(arg, 'latin1')),
          )
          return Response.json({ reply: toJson(reply) })
        },
      },
      workers: [
        proxy('proxy', { REDIS_URL: `redis://127.0.0.1:${redisPort}` }),
        proxy('proxy-closed', { REDIS_URL: `redis://127.0.0.1:${inject('closedPort')}` }),
        proxy('proxy-silent', {
          REDIS_URL: `redis://127.0.0.1:${inject('silentPort')}`,
          REDIS_COMMAND_TIMEOUT: '200',
        }),
        proxy('proxy-bad-config', { CACHE_CAPACITY: '0' }),
        proxy('proxy-short-expiry', {
          REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          CACHE_GLOBAL_EXPIRY: String(SHORT_EXPIRY_MS),
        }),
        // The password as a secret binding (wrangler secret put PROXY_PASSWORD)
        // and a reader of cache:* keys inline (PROXY_ACL, also a secret).
        proxy('proxy-auth', {
          REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          PROXY_PASSWORD: 'worker-pw',
          PROXY_ACL: 'user reader on >reader-pw ~cache:* +@read',
        }),
        proxy('proxy-acl-file', { PROXY_ACL_FILE: '/etc/users.acl' }),
        proxy('proxy-rest', restBindings, upstash),
        proxy(
          'proxy-rest-bad-token',
          { ...restBindings, UPSTASH_REDIS_REST_TOKEN: 'wrong' },
          upstash,
        ),
        proxy(
          'proxy-rest-silent',
          { ...restBindings, REDIS_COMMAND_TIMEOUT: '200' },
          () => new Promise<Response>(() => {}),
        ),
      ],
    },
  }
}

/** Miniflare hands over its own Request class; msw wants the runtime's. */
async function asGlobalRequest(request: Request): Promise<Request> {
  const body =
    request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.arrayBuffer()
  return new Request(request.url, { method: request.method, headers: request.headers, body })
}

/** Bulk replies as byte strings (one char per byte), errors as `{ error }`. */
function toJson(value: RespValue): unknown {
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  if (value instanceof Error) return { error: value.message }
  if (Array.isArray(value)) return value.map(toJson)
  return value
}
