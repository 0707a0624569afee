import { createRequire } from 'node:module'
import type { HttpLoadOptions, HttpLoadResult } from './http.js'

// autocannon ships no type declarations; this is the part of its result used here.
type AutocannonResult = {
  requests: { total: number }
  duration: number
  latency: { p50: number; p99: number }
  errors: number
  timeouts: number
  non2xx: number
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon
const options = JSON.parse(process.argv[2] ?? '{}') as HttpLoadOptions

const keyed = typeof options.path === 'string' ? null : options.path
let next = keyed?.from ?? 0
const result = await autocannon({
  url: options.origin,
  connections: options.connections,
  duration: options.seconds,
  timeout: 5,
  requests: [
    {
      method: 'GET',
      setupRequest: (request: Record<string, unknown>) => {
        if (keyed === null) return { ...request, path: options.path }
        const n =
          keyed.order === 'random' ? Math.floor(Math.random() * keyed.count) : next++ % keyed.count
        return { ...request, path: keyed.prefix + String(n).padStart(keyed.pad ?? 0, '0') }
      },
    },
  ],
})
const summary: HttpLoadResult = {
  requests: result.requests.total,
  seconds: result.duration,
  rps: result.requests.total / result.duration,
  p50Ms: result.latency.p50,
  p99Ms: result.latency.p99,
  errors: result.errors + result.timeouts,
  non2xx: result.non2xx,
}
process.stdout.write(`BENCH_JSON ${JSON.stringify(summary)}\n`)
