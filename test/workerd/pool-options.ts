import { dirname } from 'node:path'
import type { cloudflareTest } from '@cloudflare/vitest-pool-workers'
import { unstable_readConfig } from 'wrangler'
import { type RespValue, sendCommand } from '../harness/redis-server.js'

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
  const proxy = (name: string, bindings: Record<string, string>) => ({
    name,
    modules: true,
    scriptPath: inject('workerBundle'),
    modulesRoot: dirname(inject('workerBundle')),
    compatibilityDate: wrangler.compatibility_date,
    compatibilityFlags: wrangler.compatibility_flags,
    bindings: { ...vars, LOG_LEVEL: 'silent', ...bindings },
  })
  return {
    wrangler: { configPath: './wrangler.toml' },
    miniflare: {
      serviceBindings: {
        PROXY: 'proxy',
        PROXY_CLOSED: 'proxy-closed',
        PROXY_SILENT: 'proxy-silent',
        PROXY_BAD_CONFIG: 'proxy-bad-config',
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
      ],
    },
  }
}

/** Bulk replies as byte strings (one char per byte), errors as `{ error }`. */
function toJson(value: RespValue): unknown {
  if (Buffer.isBuffer(value)) return value.toString('latin1')
  if (value instanceof Error) return { error: value.message }
  if (Array.isArray(value)) return value.map(toJson)
  return value
}
